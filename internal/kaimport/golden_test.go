package kaimport

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// translateFile imports a keepalived file as the command does.
func translateFile(t *testing.T, name string, opt Options) *Result {
	t.Helper()
	f, err := Parse(OSSource{}, name, nil, Limits{})
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	res, err := Translate(f, opt)
	if err != nil {
		t.Fatalf("translate %s: %v", name, err)
	}
	return res
}

func report(res *Result) string {
	var b strings.Builder
	for _, i := range res.Issues {
		b.WriteString(i.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// TestGolden imports each testdata/golden/*.conf and compares the director
// file with its .yaml and the report with its .report; go test -update
// rewrites them. Every produced file must pass dsrd's own validation.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			res := translateFile(t, file, Options{})
			if _, err := config.ParseDirector("out.yaml", res.YAML); err != nil {
				t.Fatalf("the translation does not validate: %v\n%s", err, res.YAML)
			}
			base := strings.TrimSuffix(file, ".conf")
			for _, g := range []struct{ ext, got string }{{".yaml", string(res.YAML)}, {".report", report(res)}} {
				golden := base + g.ext
				if *update {
					if err := os.WriteFile(golden, []byte(g.got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (go test -update creates it)", err)
				}
				if g.got != string(want) {
					t.Errorf("%s differs (go test -update if the change is right)\ngot:\n%s\nwant:\n%s", golden, g.got, want)
				}
			}
		})
	}
}

// TestFlagsMakeTheCluster checks that --node-id, --bind, --peer and
// --interface land in the file and that it still validates.
func TestFlagsMakeTheCluster(t *testing.T) {
	res := translateFile(t, "testdata/golden/dr_http.conf", Options{
		NodeID: "dir2", Bind: mustAddrPort("192.0.2.12:7946"), Interface: "bond0",
		Peers: []string{"dir1@192.0.2.11:7946", "dir2@192.0.2.12:7946", "wit1@192.0.2.13:7946"},
	})
	if _, err := config.ParseDirector("out.yaml", res.YAML); err != nil {
		t.Fatalf("the translation does not validate: %v\n%s", err, res.YAML)
	}
	for _, want := range []string{"id: dir2", "bind: 192.0.2.12:7946", "wit1@192.0.2.13:7946", "interface: bond0", "interface: eth1", "cert: /etc/dsrd/tls/dir2.crt"} {
		if !strings.Contains(string(res.YAML), want) {
			t.Errorf("no %q in\n%s", want, res.YAML)
		}
	}
}

func mustAddrPort(s string) (ap netip.AddrPort) { return netip.MustParseAddrPort(s) }

// TestInvalidInterfaceNames is the regression test for what FuzzImport
// found in CI: a vrrp_instance interface (or an address's dev) that is not
// a Linux interface name was copied into the output, which dsrd config
// check then refused. Now it is reported at its line and left out.
func TestInvalidInterfaceNames(t *testing.T) {
	src := MapSource{"k.conf": []byte(`vrrp_instance VI_1 {
  interface eth0.0.25tual_ro
  virtual_ipaddress {
    192.0.2.100
    192.0.2.101 dev has/slash
  }
}
`)}
	file, err := Parse(src, "k.conf", nil, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := Translate(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.ParseDirector("out.yaml", res.YAML); err != nil {
		t.Fatalf("the translation does not validate: %v\n%s", err, res.YAML)
	}
	var got []string
	for _, i := range res.Issues {
		got = append(got, i.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{"k.conf:2:", "longer than 15 bytes", "k.conf:5:", "contains '/'"} {
		if !strings.Contains(all, want) {
			t.Errorf("no %q in the report:\n%s", want, all)
		}
	}
	if _, err := Translate(file, Options{Interface: "bond0:1"}); err == nil || !strings.Contains(err.Error(), "--interface") {
		t.Errorf("an invalid --interface: %v", err)
	}
}
