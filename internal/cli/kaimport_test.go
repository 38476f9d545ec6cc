package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
)

const kaDR = `vrrp_instance VI_1 {
    interface eth1
    virtual_ipaddress {
        203.0.113.10
    }
}
virtual_server 203.0.113.10 80 {
    lb_kind DR
    delay_loop 2
    real_server 198.51.100.21 80 {
        TCP_CHECK {
            connect_timeout 1
            digest_like_unknown yes
        }
    }
}
`

func writeKA(t *testing.T, body string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestConfigImportKeepalived(t *testing.T) {
	name := writeKA(t, kaDR)
	code, out, errOut := run(t, "config", "import", "keepalived", "--node-id", "lb1", name)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, errOut)
	}
	if _, err := config.ParseDirector("out.yaml", []byte(out)); err != nil {
		t.Fatalf("output does not validate: %v\n%s", err, out)
	}
	if !strings.Contains(out, "id: lb1") || !strings.Contains(out, "interface: eth1") {
		t.Errorf("flags or interface not applied:\n%s", out)
	}
	if !strings.Contains(errOut, name+":13: dropped: digest_like_unknown:") || !strings.Contains(errOut, "1 VIPs, 1 services; 1 settings lost") {
		t.Errorf("report:\n%s", errOut)
	}
	// What it wrote, dsrd config check accepts as it is.
	out2 := filepath.Join(t.TempDir(), "director.yaml")
	if err := os.WriteFile(out2, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "config", "check", out2); code != 0 {
		t.Fatalf("config check: exit %d: %s", code, errOut)
	}
}

func TestConfigImportKeepalivedStrict(t *testing.T) {
	code, out, errOut := run(t, "config", "import", "keepalived", "--strict", writeKA(t, kaDR))
	if code != exitFailure || out != "" || !strings.Contains(errOut, "--strict: nothing written") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestConfigImportKeepalivedNothingUseful(t *testing.T) {
	code, out, errOut := run(t, "config", "import", "keepalived", writeKA(t, "virtual_server 192.0.2.1 80 {\n lb_kind NAT\n}\n"))
	if code != exitFailure || out != "" || !strings.Contains(errOut, "lb_kind NAT") || !strings.Contains(errOut, "nothing to run") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestConfigImportKeepalivedStdin(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		w.WriteString(kaDR)
		w.Close()
	}()
	saved := os.Stdin
	os.Stdin = r
	defer func() { os.Stdin = saved }()
	code, out, errOut := run(t, "config", "import", "keepalived", "-")
	if code != 0 || !strings.Contains(out, "203.0.113.10") || !strings.Contains(errOut, "<stdin>:13:") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestConfigImportKeepalivedUsage(t *testing.T) {
	for _, args := range [][]string{
		{"config", "import", "keepalived"},
		{"config", "import", "keepalived", "--bind", "nope", "x.conf"},
		{"config", "import", "keepalived", "--node-id", "bad id", writeKA(t, kaDR)},
	} {
		if code, _, errOut := run(t, args...); code != exitUsage {
			t.Errorf("dsrd %s: exit %d, want %d; stderr %q", strings.Join(args, " "), code, exitUsage, errOut)
		}
	}
	if code, _, errOut := run(t, "config", "import", "keepalived", filepath.Join(t.TempDir(), "missing.conf")); code != exitFailure || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing file: exit %d, stderr %q", code, errOut)
	}
}
