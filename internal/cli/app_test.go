package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run runs the CLI with args and returns its exit code, stdout and stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), append([]string{"dsrd"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpNamesEveryCommand(t *testing.T) {
	code, out, _ := run(t, "--help")
	if code != 0 {
		t.Fatalf("dsrd --help: exit %d", code)
	}
	for _, cmd := range []string{"director", "witness", "realserver", "config", "status", "tls", "version"} {
		if !strings.Contains(out, "\n   "+cmd) {
			t.Errorf("dsrd --help does not list %q:\n%s", cmd, out)
		}
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{
		{"director", "--help"}, {"witness", "--help"}, {"realserver", "--help"},
		{"realserver", "check", "--help"}, {"config", "check", "--help"},
		{"config", "import", "keepalived", "--help"},
		{"status", "--help"}, {"version", "--help"},
		{"tls", "ca", "create", "--help"}, {"tls", "cert", "issue", "--help"}, {"tls", "show", "--help"},
	} {
		code, out, errOut := run(t, args...)
		if code != 0 || !strings.Contains(out, "USAGE:") {
			t.Errorf("dsrd %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, "version")
	if code != 0 || !strings.HasPrefix(out, "dsrd ") || !strings.Contains(out, "go1.") {
		t.Fatalf("dsrd version: exit %d, %q", code, out)
	}
}

func TestUnknownFlagIsUsageError(t *testing.T) {
	code, _, errOut := run(t, "config", "check", "--no-such-flag", "x")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d; stderr %q", code, exitUsage, errOut)
	}
}

func TestConfigCheckValid(t *testing.T) {
	files, err := filepath.Glob("../../packaging/examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example configurations found: %v", err)
	}
	code, out, errOut := run(t, append([]string{"config", "check"}, files...)...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	for _, f := range files {
		if !strings.Contains(out, f+": ok\n") {
			t.Errorf("no %q in output:\n%s", f+": ok", out)
		}
	}
}

func TestConfigCheckReportsEveryError(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "broken.yaml")
	broken := `node:
  id: dir1
  data_dri: /var/lib/dsrd
cluster:
  bind: 192.0.2.11:7946
  peers: [dir1@192.0.2.11:7946]
vips:
  - address: 203.0.113.10
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    protocol: tcp
    scheduler: fastest
    reals:
      - address: 192.0.2.21
        port: 8080
`
	if err := os.WriteFile(name, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "config", "check", "--kind", "director", name)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailure, errOut)
	}
	for _, want := range []string{name + ":3:3:", name + ":14:16:", name + ":17:15:"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks an error at %s:\n%s", want, errOut)
		}
	}
}

func TestConfigCheckMissingFile(t *testing.T) {
	code, _, errOut := run(t, "config", "check", filepath.Join(t.TempDir(), "nope.yaml"))
	if code != exitFailure || !strings.Contains(errOut, "no such file") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestConfigCheckBadKind(t *testing.T) {
	code, _, _ := run(t, "config", "check", "--kind", "router", "x.yaml")
	if code != exitUsage {
		t.Fatalf("exit %d, want %d", code, exitUsage)
	}
}

func TestDaemonsWithoutConfigSayWhatToGive(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	for _, cmd := range []string{"director", "witness", "realserver"} {
		code, _, errOut := run(t, cmd, "--config", missing)
		if code != exitUsage || !strings.Contains(errOut, "give --config FILE") {
			t.Errorf("dsrd %s --config %s: exit %d, stderr %q", cmd, missing, code, errOut)
		}
	}
}

func TestDaemonsRejectInvalidFilesWithPositions(t *testing.T) {
	name := filepath.Join(t.TempDir(), "director.yaml")
	if err := os.WriteFile(name, []byte("node:\n  id: dir1\n  colour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "director", "--config", name)
	if code != exitFailure || !strings.Contains(errOut, name+":3:3:") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestDirectorFlagErrorsAreUsageErrors(t *testing.T) {
	code, _, errOut := run(t, "director", "--config", "../../packaging/examples/director.yaml", "--bind", "not-an-address")
	if code != exitUsage || !strings.Contains(errOut, "--bind") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestConfigCheckWarns: a valid file with overlapping allow and deny
// entries is ok (exit 0), and the overlap is said on stderr at its line.
func TestConfigCheckWarns(t *testing.T) {
	name := filepath.Join(t.TempDir(), "director.yaml")
	doc := `node: {id: dir1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: [dir1@127.0.0.1:7946]}
vips:
  - address: 203.0.113.10
    admission:
      allow: [198.51.100.0/24]
      deny: [198.51.100.7]
services:
  - {name: web, vip: 203.0.113.10, port: 80, protocol: tcp, reals: [{address: 192.0.2.21}]}
`
	if err := os.WriteFile(name, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "config", "check", name)
	if code != 0 || out != name+": ok\n" {
		t.Fatalf("exit %d, stdout %q; stderr:\n%s", code, out, errOut)
	}
	want := name + ":7:14: warning: vips[0].admission.deny[0]: service web: deny 198.51.100.7/32 overlaps allow 198.51.100.0/24: deny wins, 198.51.100.7/32 is dropped\n"
	if errOut != want {
		t.Errorf("stderr %q, want %q", errOut, want)
	}
}
