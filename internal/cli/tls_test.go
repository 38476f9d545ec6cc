package cli

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/raft/pki"
)

// mode returns the permission bits of path.
func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// dirNames returns the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// mustRun runs dsrd args and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errOut := run(t, args...)
	if code != 0 {
		t.Fatalf("dsrd %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestTLSCreateIssueShow(t *testing.T) {
	root := t.TempDir()
	caDir := filepath.Join(root, "tls")
	witDir := filepath.Join(root, "wit")
	mustRun(t, "tls", "ca", "create", "--dir", caDir, "--name", "test cluster CA", "--days", "60")
	mustRun(t, "tls", "cert", "issue", "--ca-dir", caDir, "--id", "dir1", "--role", "director",
		"--ip", "192.0.2.1", "--ip", "2001:db8::1", "--dns", "dir1.example.net", "--days", "20")
	mustRun(t, "tls", "cert", "issue", "--ca-dir", caDir, "--id", "wit1", "--role", "witness",
		"--ip", "192.0.2.3", "--days", "10", "--out-dir", witDir)

	if got, want := dirNames(t, caDir), []string{"ca.crt", "ca.key", "dir1.crt", "dir1.key"}; !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", caDir, got, want)
	}
	if got, want := dirNames(t, witDir), []string{"wit1.crt", "wit1.key"}; !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v (nothing copied)", witDir, got, want)
	}
	for _, dir := range []string{caDir, witDir} {
		if m := mode(t, dir); m != 0o700 {
			t.Errorf("%s: mode %v, want 0700", dir, m)
		}
		for _, name := range dirNames(t, dir) {
			if m := mode(t, filepath.Join(dir, name)); m != 0o600 {
				t.Errorf("%s: mode %v, want 0600", name, m)
			}
		}
	}

	ca, err := pki.ReadCertFile(filepath.Join(caDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, tt := range []struct {
		path string
		want pki.Identity
		ips  []netip.Addr
	}{
		{filepath.Join(caDir, "dir1.crt"), pki.Identity{NodeID: "dir1", Role: pki.RoleDirector},
			[]netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}},
		{filepath.Join(witDir, "wit1.crt"), pki.Identity{NodeID: "wit1", Role: pki.RoleWitness},
			[]netip.Addr{netip.MustParseAddr("192.0.2.3")}},
	} {
		cert, err := pki.ReadCertFile(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		info := pki.Describe(cert)
		if info.Identity != tt.want || info.IdentityErr != nil || !slices.Equal(info.IPs, tt.ips) {
			t.Errorf("%s: %v, %v, IPs %v", tt.path, info.Identity, info.IdentityErr, info.IPs)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", tt.path, err)
		}
	}

	out := mustRun(t, "tls", "show", filepath.Join(caDir, "ca.crt"), filepath.Join(caDir, "dir1.crt"), filepath.Join(witDir, "wit1.crt"))
	for _, want := range []string{
		filepath.Join(caDir, "ca.crt") + "\n  identity  none (a CA)\n  ca        yes\n  subject   CN=test cluster CA\n",
		"  expiry    59 days left\n", // the CA: 60 days less a moment
		filepath.Join(caDir, "dir1.crt") + "\n  identity  director dir1\n  ca        no\n  subject   CN=dir1\n  issuer    CN=test cluster CA\n",
		"  ips       192.0.2.1, 2001:db8::1\n  dns       dir1.example.net\n  key       ECDSA P-256\n",
		"  identity  witness wit1\n",
		"  expiry    expires in 9 days: renew\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tls show output lacks %q:\n%s", want, out)
		}
	}

	code, out, errOut := run(t, "tls", "show", filepath.Join(witDir, "wit1.crt"), filepath.Join(witDir, "wit1.key"), "--json")
	if code != exitFailure || !strings.Contains(errOut, "dsrd tls show: "+filepath.Join(witDir, "wit1.key")+": no PEM CERTIFICATE block") {
		t.Errorf("show of a key: exit %d, stderr %q", code, errOut)
	}
	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if len(got) != 2 || got[0]["identity"].(map[string]any)["node_id"] != "wit1" || got[0]["expiry"] != "renew" ||
		!strings.Contains(got[1]["error"].(string), "wit1.key: no PEM CERTIFICATE block, only PRIVATE KEY") {
		t.Errorf("--json:\n%s", out)
	}
}

func TestTLSRefusesToOverwrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	mustRun(t, "tls", "ca", "create", "--dir", dir)
	issue := []string{"tls", "cert", "issue", "--ca-dir", dir, "--id", "dir1", "--role", "director", "--ip", "192.0.2.1"}
	mustRun(t, issue...)
	read := func() map[string][]byte {
		files := map[string][]byte{}
		for _, name := range dirNames(t, dir) {
			data, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			files[name] = data
		}
		return files
	}
	before := read()

	for _, tt := range []struct {
		args []string
		file string
	}{
		{[]string{"tls", "ca", "create", "--dir", dir}, "ca.key"},
		{issue, "dir1.key"},
	} {
		code, _, errOut := run(t, tt.args...)
		if want := filepath.Join(dir, tt.file) + " already exists: give --force to replace it"; code != exitFailure || !strings.Contains(errOut, want) {
			t.Errorf("dsrd %s: exit %d, stderr %q, want %q", strings.Join(tt.args, " "), code, errOut, want)
		}
	}
	// One of the two files there is enough to refuse, and nothing is written.
	if err := os.Remove(filepath.Join(dir, "dir1.key")); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, issue...); code != exitFailure || !strings.Contains(errOut, "dir1.crt already exists") {
		t.Errorf("certificate left, key gone: exit %d, stderr %q", code, errOut)
	}
	after := read()
	delete(before, "dir1.key")
	for name, data := range before {
		if !bytes.Equal(after[name], data) {
			t.Errorf("%s changed without --force", name)
		}
	}
	if len(after) != len(before) {
		t.Errorf("files %v, want %d", dirNames(t, dir), len(before))
	}

	mustRun(t, append(issue, "--force")...)
	mustRun(t, "tls", "ca", "create", "--dir", dir, "--force")
	after = read()
	if got, want := dirNames(t, dir), []string{"ca.crt", "ca.key", "dir1.crt", "dir1.key"}; !slices.Equal(got, want) {
		t.Errorf("after --force: %v, want %v (no temporary files left)", got, want)
	}
	for _, name := range []string{"ca.crt", "ca.key", "dir1.crt"} {
		if bytes.Equal(after[name], before[name]) {
			t.Errorf("%s not replaced by --force", name)
		}
		if m := mode(t, filepath.Join(dir, name)); m != 0o600 {
			t.Errorf("%s: mode %v after --force, want 0600", name, m)
		}
	}
}

func TestTLSUsageErrors(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, "tls", "ca", "create", "--dir", dir)
	issue := func(args ...string) []string {
		return append([]string{"tls", "cert", "issue", "--ca-dir", dir}, args...)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{issue("--id", "../x", "--role", "director", "--ip", "192.0.2.1"), `--id "../x" must be 1 to 64 characters`},
		{issue("--id", "d", "--role", "leader", "--ip", "192.0.2.1"), `--role: unknown role "leader": want director or witness`},
		{issue("--id", "d", "--role", "director", "--ip", "192.0.2.300"), `--ip "192.0.2.300": not an IP address`},
		{issue("--id", "d", "--role", "director"), `Required flag "ip" not set`},
		{issue("--id", "d", "--role", "director", "--ip", "192.0.2.1", "--days", "0"), "--days 0: want 1 to"},
		{issue("--id", "d", "--role", "director", "--ip", "192.0.2.1", "--key-type", "rsa"), `--key-type: unknown key type "rsa"`},
		{issue("--id", "ca", "--role", "director", "--ip", "192.0.2.1", "--force"), "--id ca would overwrite the CA's own files"},
		{issue("--id", "d", "--role", "director", "--ip", "192.0.2.1", "extra"), `unexpected argument "extra"`},
		{[]string{"tls", "ca", "create", "--dir", dir, "--days", "-1"}, "--days -1: want 1 to"},
		{[]string{"tls", "show"}, "name at least one FILE"},
	} {
		code, _, errOut := run(t, tt.args...)
		if code != exitUsage || !strings.Contains(errOut, tt.want) {
			t.Errorf("dsrd %s: exit %d, stderr %q, want %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{issue("--id", "d", "--role", "director", "--ip", "192.0.2.1", "--days", "826"), "validity of 826 days: must be positive and at most 825 days"},
		{[]string{"tls", "ca", "create", "--dir", filepath.Join(dir, "short"), "--days", "10"}, ""},
		{[]string{"tls", "cert", "issue", "--ca-dir", filepath.Join(dir, "short"), "--id", "d", "--role", "director", "--ip", "192.0.2.1", "--out-dir", filepath.Join(dir, "out")},
			"validity of 365 days would outlast the ca certificate CN=dsrd cluster CA, which expires at "},
		{[]string{"tls", "cert", "issue", "--ca-dir", filepath.Join(dir, "none"), "--id", "d", "--role", "director", "--ip", "192.0.2.1"},
			"dsrd tls cert issue: read ca certificate: open " + filepath.Join(dir, "none", "ca.crt")},
	} {
		code, _, errOut := run(t, tt.args...)
		if tt.want == "" {
			if code != 0 {
				t.Fatalf("dsrd %s: exit %d, stderr %q", strings.Join(tt.args, " "), code, errOut)
			}
			continue
		}
		if code != exitFailure || !strings.Contains(errOut, tt.want) {
			t.Errorf("dsrd %s: exit %d, stderr %q, want %q", strings.Join(tt.args, " "), code, errOut, tt.want)
		}
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"ca.crt", "ca.key", "short"}) {
		t.Errorf("failed commands left %v", names)
	}
}

func TestTLSShowText(t *testing.T) {
	now := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	node := pki.Info{
		Identity: pki.Identity{NodeID: "dir1", Role: pki.RoleDirector},
		Subject:  "CN=dir1", Issuer: "CN=dsrd cluster CA", Serial: "5A1E",
		NotBefore: now.Add(-300 * 24 * time.Hour), NotAfter: now.Add(65 * 24 * time.Hour),
		IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, DNSNames: []string{"dir1.example.net"},
		PublicKey: "ECDSA P-256", SHA256: "AB:CD",
	}
	with := func(f func(*pki.Info)) pki.Info { i := node; f(&i); return i }
	shown := []shownCert{
		{file: "ca.crt", index: 1, count: 2, info: pki.Info{IsCA: true, IdentityErr: pki.ErrNoIdentity, Subject: "CN=old CA", Issuer: "CN=old CA",
			Serial: "1", NotBefore: now.Add(-3650 * 24 * time.Hour), NotAfter: now.Add(-time.Hour), PublicKey: "Ed25519", SHA256: "01"}},
		{file: "ca.crt", index: 2, count: 2, info: pki.Info{IsCA: true, IdentityErr: pki.ErrNoIdentity, Subject: "CN=new CA", Issuer: "CN=new CA",
			Serial: "2", NotBefore: now.Add(-time.Hour), NotAfter: now.Add(3650 * 24 * time.Hour), PublicKey: "ECDSA P-256", SHA256: "02"}},
		{file: "dir1.crt", index: 1, count: 1, info: node},
		{file: "missing.crt", err: errors.New("read certificate: open missing.crt: no such file or directory")},
		{file: "dir2.crt", index: 1, count: 1, info: with(func(i *pki.Info) {
			i.Identity, i.Subject, i.NotAfter = pki.Identity{NodeID: "dir2", Role: pki.RoleDirector}, "CN=dir2", now.Add(29*24*time.Hour+time.Hour)
		})},
		{file: "old.crt", index: 1, count: 1, info: with(func(i *pki.Info) {
			i.Identity, i.IdentityErr, i.Subject = pki.Identity{}, pki.ErrNoIdentity, "CN=old"
			i.NotAfter, i.IPs, i.DNSNames = now.Add(-3*24*time.Hour-time.Hour), nil, nil
		})},
		{file: "bad.crt", index: 1, count: 1, info: with(func(i *pki.Info) {
			i.Identity, i.IdentityErr = pki.Identity{}, errors.New(`role URI "dsrd://role/admin": want dsrd://role/director or dsrd://role/witness`)
			i.NotBefore, i.NotAfter = now.Add(2*time.Hour), now.Add(400*24*time.Hour)
		})},
		{file: "today.crt", index: 1, count: 1, info: with(func(i *pki.Info) { i.NotAfter = now.Add(time.Hour) })},
	}
	var out bytes.Buffer
	if err := writeCerts(&out, shown, now); err != nil {
		t.Fatal(err)
	}
	golden(t, "tls_show.golden", out.Bytes())
}
