package cli

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/kaimport"
)

func configImportCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "import",
		Usage: "translate another load balancer's configuration into a dsrd director file",
		Subcommands: []*ucli.Command{{
			Name:      "keepalived",
			Usage:     "translate keepalived.conf (and its includes) into a director file on stdout; what is lost goes to stderr",
			ArgsUsage: "FILE|-",
			Description: "Reads a keepalived configuration (- for standard input) as keepalived does, includes and globs included,\n" +
				"and writes a dsrd director file that dsrd config check accepts. Every setting not translated, or\n" +
				"translated with a change of meaning, is reported on stderr as file:line: kind: keyword: message.\n" +
				"keepalived has no Raft cluster: --node-id, --bind, --peer and --interface fill node and cluster\n" +
				"(by default a single-node cluster on loopback, to be edited). docs/migrating-from-keepalived.md.\n" +
				"Exit status: 0 when a file was written; 1 when nothing useful could be translated, or with --strict\n" +
				"when anything was lost (nothing is written then); 2 on usage errors.",
			Flags: []ucli.Flag{
				&ucli.StringFlag{Name: "node-id", Usage: "node.id (default: global_defs router_id when valid, else " + kaimport.DefaultNodeID + ")"},
				&ucli.StringFlag{Name: "bind", Usage: "cluster.bind, ip:port (default " + kaimport.DefaultBind.String() + ")"},
				&ucli.StringSliceFlag{Name: "peer", Usage: "a cluster.peers entry, id@ip:port; repeat for each member (default: this node alone)"},
				&ucli.StringFlag{Name: "interface", Usage: "node.interface (default: the interface of most vrrp_instances, else " + kaimport.DefaultInterface + ")"},
				&ucli.BoolFlag{Name: "strict", Usage: "fail, writing nothing, when anything is not translated or changes meaning"},
			},
			Action: configImportKeepalived,
		}},
	}
}

func configImportKeepalived(c *ucli.Context) error {
	if c.NArg() != 1 {
		return ucli.Exit("dsrd config import keepalived: name one FILE, or - for standard input", exitUsage)
	}
	opt := kaimport.Options{NodeID: c.String("node-id"), Peers: c.StringSlice("peer"), Interface: c.String("interface")}
	if b := c.String("bind"); b != "" {
		ap, err := netip.ParseAddrPort(b)
		if err != nil {
			return ucli.Exit(fmt.Sprintf("dsrd config import keepalived: --bind %q: want ip:port", b), exitUsage)
		}
		opt.Bind = ap
	}
	name := c.Args().First()
	var data []byte
	if name == "-" {
		var err error
		data, err = io.ReadAll(io.LimitReader(os.Stdin, kaimport.DefaultFileSize+1))
		if err != nil {
			return ucli.Exit(fmt.Sprintf("dsrd config import keepalived: standard input: %v", err), exitFailure)
		}
		name = kaimport.StdinName
	}
	f, err := kaimport.Parse(kaimport.OSSource{}, name, data, kaimport.Limits{})
	if err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd config import keepalived: %v", err), exitFailure)
	}
	res, err := kaimport.Translate(f, opt)
	if err != nil {
		code := exitUsage
		if errors.Is(err, kaimport.ErrInvalidOutput) {
			code = exitFailure
		}
		return ucli.Exit(fmt.Sprintf("dsrd config import keepalived: %v", err), code)
	}
	for _, i := range res.Issues {
		fmt.Fprintln(c.App.ErrWriter, i.String())
	}
	summary := fmt.Sprintf("dsrd config import keepalived: %d VIPs, %d services; %d settings lost or changed, %d replaced by dsrd's design",
		res.VIPs, res.Services, res.Losses(), len(res.Issues)-res.Losses())
	switch {
	case !res.Useful():
		return ucli.Exit(summary+": nothing to run (no VIP, no service translated)", exitFailure)
	case c.Bool("strict") && res.Losses() > 0:
		return ucli.Exit(summary+": --strict: nothing written", exitFailure)
	}
	if _, err := c.App.Writer.Write(res.YAML); err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd config import keepalived: write: %v", err), exitFailure)
	}
	fmt.Fprintln(c.App.ErrWriter, summary)
	return nil
}
