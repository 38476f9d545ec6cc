package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/raft/pki"
)

// maxDays bounds --days so that a duration in days cannot overflow.
const maxDays = 100 * 365

func tlsCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "tls",
		Usage: "create the cluster CA and node certificates, and show certificates",
		Description: "The cluster CA is dedicated to one cluster: every certificate it signs is a candidate member,\n" +
			"and the node id and role the certificate carries decide which member it is and what it may do.",
		Subcommands: []*ucli.Command{{
			Name:  "ca",
			Usage: "work with the cluster CA",
			Subcommands: []*ucli.Command{{
				Name:  "create",
				Usage: "create a cluster CA: DIR/ca.crt and DIR/ca.key",
				Description: "Creates a self-signed CA that may sign node certificates only (path length 0). Files are\n" +
					"written mode 0600 and DIR, when created, 0700. Keep ca.key on the machine that issues\n" +
					"certificates, not on the cluster's members; give every member ca.crt.",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "dir", Required: true, Usage: "where to write ca.crt and ca.key"},
					&ucli.StringFlag{Name: "name", Value: pki.DefaultCAName, Usage: "the CA's common name"},
					&ucli.IntFlag{Name: "days", Value: int(pki.DefaultCAValidity / day), Usage: "how many days the CA is valid"},
					keyTypeFlag(), forceFlag(),
				},
				Action: tlsCACreate,
			}},
		}, {
			Name:  "cert",
			Usage: "work with node certificates",
			Subcommands: []*ucli.Command{{
				Name:  "issue",
				Usage: "issue a node certificate: OUT-DIR/ID.crt and OUT-DIR/ID.key",
				Description: "Signs a certificate naming the node id and role (URI SANs dsrd://node/ID and\n" +
					"dsrd://role/ROLE) with the CA in --ca-dir, good for both ends of mutual TLS, valid from 5\n" +
					"minutes ago (clock skew) for --days (at most 825, and never past the CA's expiry). Files\n" +
					"are written mode 0600 and OUT-DIR, when created, 0700; ca.crt is not copied.",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "ca-dir", Required: true, Usage: "the directory holding ca.crt and ca.key"},
					&ucli.StringFlag{Name: "id", Required: true, Usage: "the node id, as in the node's config (node.id)"},
					&ucli.StringFlag{Name: "role", Required: true, Usage: "director or witness"},
					&ucli.StringSliceFlag{Name: "ip", Required: true, Usage: "an address of the node, as an IP SAN (repeatable)"},
					&ucli.StringSliceFlag{Name: "dns", Usage: "a DNS name of the node, as a DNS SAN (repeatable)"},
					&ucli.IntFlag{Name: "days", Value: int(pki.DefaultNodeValidity / day), Usage: "how many days the certificate is valid"},
					&ucli.StringFlag{Name: "out-dir", Usage: "where to write ID.crt and ID.key (default: --ca-dir)"},
					keyTypeFlag(), forceFlag(),
				},
				Action: tlsCertIssue,
			}},
		}, {
			Name:      "show",
			Usage:     "describe certificates: identity, CA or not, issuer, serial, validity, SANs",
			ArgsUsage: "FILE [FILE...]",
			Description: "Prints every certificate of each PEM file: the node identity it carries (or why it has\n" +
				"none), whether it is a CA, issuer, serial, validity window and days until expiry (renew\n" +
				"within 30 days), IP and DNS SANs, key and SHA-256 fingerprint. It does not verify chains.\n" +
				"Exit status: 0, or 1 when a file cannot be read or holds no certificate.",
			Flags: []ucli.Flag{
				&ucli.BoolFlag{Name: "json", Usage: "print the certificates as JSON for machines"},
			},
			Action: tlsShow,
		}},
	}
}

// forceFlag and keyTypeFlag are flags both ca create and cert issue take;
// a flag is not shared between commands (it keeps state).
func forceFlag() ucli.Flag {
	return &ucli.BoolFlag{Name: "force", Usage: "replace existing files (atomically)"}
}

func keyTypeFlag() ucli.Flag {
	return &ucli.StringFlag{Name: "key-type", Value: string(pki.KeyECDSAP256), Usage: "ecdsa-p256 or ed25519"}
}

// day is the unit of --days.
const day = 24 * time.Hour

// daysFlag returns the validity --days asks for.
func daysFlag(c *ucli.Context, cmd string) (time.Duration, error) {
	days := c.Int("days")
	if days < 1 || days > maxDays {
		return 0, usage(cmd, "--days %d: want 1 to %d", days, maxDays)
	}
	return time.Duration(days) * day, nil
}

func tlsCACreate(c *ucli.Context) error {
	const cmd = "tls ca create"
	if err := noArgs(c, cmd); err != nil {
		return err
	}
	validity, err := daysFlag(c, cmd)
	if err != nil {
		return err
	}
	keyType, err := pki.ParseKeyType(c.String("key-type"))
	if err != nil {
		return usage(cmd, "--key-type: %v", err)
	}
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{Name: c.String("name"), Validity: validity, KeyType: keyType})
	if err != nil {
		return failure(cmd, err)
	}
	dir := c.String("dir")
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := writeFiles(dir, []outFile{{keyPath, keyPEM}, {certPath, certPEM}}, c.Bool("force")); err != nil {
		return failure(cmd, err)
	}
	fmt.Fprintf(c.App.Writer, "wrote %s and %s\n", certPath, keyPath)
	return nil
}

func tlsCertIssue(c *ucli.Context) error {
	const cmd = "tls cert issue"
	if err := noArgs(c, cmd); err != nil {
		return err
	}
	req := pki.NodeRequest{NodeID: c.String("id"), DNSNames: c.StringSlice("dns")}
	if err := pki.CheckNodeID(req.NodeID); err != nil {
		return usage(cmd, "--id %q %v", req.NodeID, err)
	}
	role, err := pki.ParseRole(c.String("role"))
	if err != nil {
		return usage(cmd, "--role: %v", err)
	}
	req.Role = role
	for _, s := range c.StringSlice("ip") {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return usage(cmd, "--ip %q: not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	if req.Validity, err = daysFlag(c, cmd); err != nil {
		return err
	}
	if req.KeyType, err = pki.ParseKeyType(c.String("key-type")); err != nil {
		return usage(cmd, "--key-type: %v", err)
	}
	caDir, outDir := c.String("ca-dir"), c.String("out-dir")
	if outDir == "" {
		outDir = caDir
	}
	if req.NodeID == "ca" && sameDir(caDir, outDir) {
		return usage(cmd, "--id ca would overwrite the CA's own files in %s: give another --out-dir", outDir)
	}
	caPEM, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		return failure(cmd, fmt.Errorf("read ca certificate: %w", err))
	}
	caKeyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	if err != nil {
		return failure(cmd, fmt.Errorf("read ca key: %w", err))
	}
	certPEM, keyPEM, err := pki.IssueNode(caPEM, caKeyPEM, req)
	if err != nil {
		return failure(cmd, err)
	}
	certPath, keyPath := filepath.Join(outDir, req.NodeID+".crt"), filepath.Join(outDir, req.NodeID+".key")
	if err := writeFiles(outDir, []outFile{{keyPath, keyPEM}, {certPath, certPEM}}, c.Bool("force")); err != nil {
		return failure(cmd, err)
	}
	fmt.Fprintf(c.App.Writer, "wrote %s and %s for %s\n", certPath, keyPath, pki.Identity{NodeID: req.NodeID, Role: req.Role})
	return nil
}

// failure is the exit of a command that could not do its work.
func failure(cmd string, err error) error {
	return ucli.Exit(fmt.Sprintf("dsrd %s: %v", cmd, err), exitFailure)
}

// sameDir reports whether a and b name the same existing directory.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	fa, errA := os.Stat(a)
	fb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(fa, fb)
}

// outFile is a file to write: its path and contents.
type outFile struct {
	path string
	data []byte
}

// writeFiles creates dir (0700) when it does not exist and writes files in
// it, each mode 0600. Without force it refuses when any of them exists and
// writes none, and creates each with O_EXCL; with force it writes them all
// to temporary files in dir first, then renames each over its path, so that
// a failure before the renames leaves the old files as they were.
func writeFiles(dir string, files []outFile, force bool) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	if force {
		return replaceFiles(dir, files)
	}
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return fmt.Errorf("%s already exists: give --force to replace it", f.path)
		}
	}
	for i, f := range files {
		if err := createFile(f); err != nil {
			for _, done := range files[:i] {
				os.Remove(done.path)
			}
			return err
		}
	}
	return nil
}

// createFile creates f.path (mode 0600), which must not exist, with f.data.
func createFile(f outFile) error {
	out, err := os.OpenFile(f.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists: give --force to replace it", f.path)
	}
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	if err := writeClose(out, f.data); err != nil {
		os.Remove(f.path)
		return err
	}
	return nil
}

// replaceFiles writes files to temporary files in dir, then renames them
// over their paths and syncs dir.
func replaceFiles(dir string, files []outFile) error {
	temps := make([]string, 0, len(files))
	defer func() {
		for _, t := range temps {
			os.Remove(t) // gone already when renamed
		}
	}()
	for _, f := range files {
		out, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*") // mode 0600
		if err != nil {
			return fmt.Errorf("create temporary file: %w", err)
		}
		temps = append(temps, out.Name())
		if err := writeClose(out, f.data); err != nil {
			return err
		}
	}
	for i, f := range files {
		if err := os.Rename(temps[i], f.path); err != nil {
			return fmt.Errorf("replace file: %w", err)
		}
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// writeClose writes data to f, syncs and closes it.
func writeClose(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return nil
}

// shownCert is one certificate tls show describes, or the error of a file
// that holds none it can read.
type shownCert struct {
	file         string
	index, count int // the certificate's place in its file, from 1
	info         pki.Info
	err          error
}

func tlsShow(c *ucli.Context) error {
	const cmd = "tls show"
	files, err := positional(c)
	if err != nil {
		return usage(cmd, "%v", err)
	}
	if len(files) == 0 {
		return usage(cmd, "name at least one FILE")
	}
	var shown []shownCert
	failed := false
	for _, file := range files {
		certs, err := pki.ReadCertsFile(file)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "dsrd %s: %v\n", cmd, err)
			shown = append(shown, shownCert{file: file, err: err})
			failed = true
			continue
		}
		for i, cert := range certs {
			shown = append(shown, shownCert{file: file, index: i + 1, count: len(certs), info: pki.Describe(cert)})
		}
	}
	now := time.Now()
	if c.Bool("json") {
		err = writeCertsJSON(c.App.Writer, shown, now)
	} else {
		err = writeCerts(c.App.Writer, shown, now)
	}
	if err != nil {
		return failure(cmd, fmt.Errorf("write: %w", err))
	}
	if failed {
		return ucli.Exit("", exitFailure)
	}
	return nil
}

// writeCerts writes shown for people, a block of lines per certificate;
// it passes over the files' errors (tlsShow reports them as they come).
func writeCerts(w io.Writer, shown []shownCert, now time.Time) error {
	first := true
	for _, s := range shown {
		if s.err != nil {
			continue
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		title := s.file
		if s.count > 1 {
			title = fmt.Sprintf("%s (certificate %d of %d)", s.file, s.index, s.count)
		}
		fmt.Fprintln(w, title)
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		i := s.info
		line := func(key, value string) { fmt.Fprintf(tw, "  %s\t%s\n", key, value) }
		line("identity", identityText(i))
		line("ca", map[bool]string{true: "yes", false: "no"}[i.IsCA])
		line("subject", i.Subject)
		line("issuer", i.Issuer)
		line("serial", i.Serial)
		line("valid", i.NotBefore.UTC().Format(timeLayout)+" to "+i.NotAfter.UTC().Format(timeLayout))
		line("expiry", expiryText(i, now))
		line("ips", listText(i.IPs))
		line("dns", listText(i.DNSNames))
		line("key", i.PublicKey)
		line("sha256", i.SHA256)
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// timeLayout is how tls show writes instants.
const timeLayout = "2006-01-02 15:04:05 MST"

// identityText says who the certificate names, or why it names no one.
func identityText(i pki.Info) string {
	switch {
	case i.IdentityErr == nil:
		return i.Identity.String()
	case i.IsCA && errors.Is(i.IdentityErr, pki.ErrNoIdentity):
		return "none (a CA)"
	case errors.Is(i.IdentityErr, pki.ErrNoIdentity):
		return "none: " + i.IdentityErr.Error() + "; the cluster refuses it: reissue with dsrd tls cert issue"
	}
	return "INVALID: " + i.IdentityErr.Error()
}

// expiryText says how long the certificate stays valid at now, and warns
// when it is time to renew it.
func expiryText(i pki.Info, now time.Time) string {
	switch i.ExpiryAt(now) {
	case pki.ExpiryNotYetValid:
		return "NOT YET VALID: starts in " + daysText(i.NotBefore.Sub(now))
	case pki.ExpiryExpired:
		return "EXPIRED " + daysText(now.Sub(i.NotAfter)) + " ago"
	case pki.ExpiryRenew:
		return "expires in " + daysText(i.NotAfter.Sub(now)) + ": renew"
	}
	return fmt.Sprintf("%d days left", i.DaysLeft(now))
}

// daysText writes d in whole days, or as less than a day.
func daysText(d time.Duration) string {
	switch n := int(d / day); n {
	case 0:
		return "less than a day"
	case 1:
		return "1 day"
	default:
		return fmt.Sprintf("%d days", n)
	}
}

// listText joins a list with commas, or says "-" when it is empty.
func listText[T any](items []T) string {
	if len(items) == 0 {
		return "-"
	}
	s := make([]string, len(items))
	for i, item := range items {
		s[i] = fmt.Sprint(item)
	}
	return strings.Join(s, ", ")
}

// certJSON is a certificate as tls show --json writes it.
type certJSON struct {
	File          string        `json:"file"`
	Index         int           `json:"index,omitempty"`
	Error         string        `json:"error,omitempty"`
	Identity      *pki.Identity `json:"identity,omitempty"`
	IdentityError string        `json:"identity_error,omitempty"`
	IsCA          bool          `json:"is_ca"`
	Subject       string        `json:"subject,omitempty"`
	Issuer        string        `json:"issuer,omitempty"`
	Serial        string        `json:"serial,omitempty"`
	NotBefore     *time.Time    `json:"not_before,omitempty"`
	NotAfter      *time.Time    `json:"not_after,omitempty"`
	DaysLeft      *int          `json:"days_left,omitempty"`
	Expiry        pki.Expiry    `json:"expiry,omitempty"`
	IPs           []netip.Addr  `json:"ips,omitempty"`
	DNSNames      []string      `json:"dns_names,omitempty"`
	PublicKey     string        `json:"public_key,omitempty"`
	SHA256        string        `json:"sha256,omitempty"`
}

// writeCertsJSON writes shown as a JSON array, errors included.
func writeCertsJSON(w io.Writer, shown []shownCert, now time.Time) error {
	out := make([]certJSON, 0, len(shown))
	for _, s := range shown {
		if s.err != nil {
			out = append(out, certJSON{File: s.file, Error: s.err.Error()})
			continue
		}
		i := s.info
		days := i.DaysLeft(now)
		j := certJSON{
			File: s.file, Index: s.index, IsCA: i.IsCA, Subject: i.Subject, Issuer: i.Issuer, Serial: i.Serial,
			NotBefore: &i.NotBefore, NotAfter: &i.NotAfter, DaysLeft: &days, Expiry: i.ExpiryAt(now),
			IPs: i.IPs, DNSNames: i.DNSNames, PublicKey: i.PublicKey, SHA256: i.SHA256,
		}
		if i.IdentityErr == nil {
			j.Identity = &i.Identity
		} else {
			j.IdentityError = i.IdentityErr.Error()
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // "dsrd://node/<id>" in errors, not "\u003cid\u003e"
	return enc.Encode(out)
}
