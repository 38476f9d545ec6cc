// Command gen writes the files the dsrd packages derive from the command
// line definition: the man page dsrd.1.gz and the fish completion dsrd.fish.
// packaging/build runs it as
//
//	go run ./packaging/gen -out DIR
//
// Its output depends only on the CLI and the text here, never on the time
// or the machine, so two builds of one commit ship identical files.
package main

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/cpuguy83/go-md2man/v2/md2man"
	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/cli"
)

// manSection is where dsrd's page goes: /usr/bin commands are section 1.
const manSection = 1

// description is the man page's DESCRIPTION: what the README says first,
// in a few lines.
const description = `dsrd manages direct-server-return (DSR) layer-4 load balancing on Linux IPVS.
Directors program IPVS in direct-routing mode and form a Raft cluster whose leader owns the
virtual IPs (VIPs) and announces them with gratuitous ARP and unsolicited neighbour
advertisements. A witness is a Raft voter that gives a pair of directors its third vote.
The realserver agent runs on every backend: it keeps the VIPs on **lo** and sets
**arp_ignore=1** and **arp_announce=2** so that the backend accepts VIP traffic without
answering ARP for it.

Flags override **DSRD_\*** environment variables, which override the configuration file.`

// trailer is appended after the generated COMMANDS section: the sections a
// man page has that the CLI definition does not know about.
const trailer = `
# EXIT STATUS

**0** success; **1** the command ran and found a problem (an invalid configuration,
a broken backend setup); **2** wrong invocation.

# FILES

**/etc/dsrd/director.yaml**, **/etc/dsrd/witness.yaml**, **/etc/dsrd/realserver.yaml**
: the configuration of each daemon; check one with **dsrd config check** *FILE*.

**/var/lib/dsrd**
: Raft log and snapshots, saved sysctl values (the realserver's under **/var/lib/dsrd/realserver**).

**/run/dsrd/dsrd.sock**
: the local API socket used by **dsrd status**.

**/usr/lib/systemd/system/dsrd-director.service**, **dsrd-witness.service**, **dsrd-realserver.service**
: the systemd units; enable the one this machine's role needs.

**/usr/lib/modules-load.d/dsrd.conf**
: loads **ip_vs** and **ip_vs_mh** at boot.

# EXAMPLES

Check the configuration files, then start a director:

    dsrd config check /etc/dsrd/director.yaml
    systemctl enable --now dsrd-director

Diagnose a backend:

    dsrd realserver check

# SEE ALSO

**ipvsadm**(8), **systemctl**(1), **systemd.exec**(5); the commented example
configurations in */usr/share/doc/dsrd/examples/* and the README in */usr/share/doc/dsrd/*.
`

func main() {
	out := flag.String("out", "", "directory to write dsrd.1.gz and dsrd.fish into (required)")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: gen -out DIR")
		os.Exit(2)
	}
	if err := generate(*out); err != nil {
		fmt.Fprintf(os.Stderr, "gen: %v\n", err)
		os.Exit(1)
	}
}

// generate writes dsrd.1.gz and dsrd.fish into dir, creating it if needed.
func generate(dir string) error {
	app := cli.NewApp(io.Discard, io.Discard)
	man, err := manPage(app)
	if err != nil {
		return err
	}
	gz, err := gzipped(man)
	if err != nil {
		return err
	}
	fish, err := app.ToFishCompletion()
	if err != nil {
		return fmt.Errorf("fish completion: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, data := range map[string][]byte{"dsrd.1.gz": gz, "dsrd.fish": []byte(fish)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// manPage renders app's man page in roff. It goes through urfave/cli's
// markdown (what App.ToManWithSection renders) so that the sections the CLI
// cannot know about (EXIT STATUS, FILES, EXAMPLES, SEE ALSO) follow the
// COMMANDS section, where man pages keep them.
func manPage(app *ucli.App) ([]byte, error) {
	app.Description = description
	md, err := app.ToMarkdown()
	if err != nil {
		return nil, fmt.Errorf("man page: %w", err)
	}
	// The title line ToManWithSection would add; ToMarkdown leaves it out.
	src := fmt.Sprintf("%% %s %d\n\n%s\n%s", app.Name, manSection, md, trailer)
	return md2man.Render([]byte(src)), nil
}

// gzipped compresses data at the best level with an empty name and a zero
// modification time in the header, so the result depends on data alone.
func gzipped(data []byte) ([]byte, error) {
	var b bytes.Buffer
	zw, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(data); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
