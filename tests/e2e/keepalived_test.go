//go:build vmtest

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// kaConf is the keepalived configuration of the round trip: what a
// keepalived operator runs for a DR service, one VRRP instance holding the
// VIP on eth0, a virtual server over rs1-rs3 with HTTP checks. Written as
// keepalived's documentation writes it, not for dsrd's importer.
const kaConf = `global_defs {
   router_id dir1
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    virtual_ipaddress {
        203.0.113.10/32 dev eth0
    }
}

virtual_server 203.0.113.10 80 {
    delay_loop 1
    lb_algo rr
    lb_kind DR
    protocol TCP

    real_server 192.0.2.21 80 {
        weight 1
        HTTP_GET {
            url {
              path /healthz
              status_code 200
            }
            connect_timeout 1
            retry 1
        }
    }
    real_server 192.0.2.22 80 {
        weight 1
        HTTP_GET {
            url {
              path /healthz
              status_code 200
            }
            connect_timeout 1
            retry 1
        }
    }
    real_server 192.0.2.23 80 {
        weight 1
        HTTP_GET {
            url {
              path /healthz
              status_code 200
            }
            connect_timeout 1
            retry 1
        }
    }
}
`

// kaBound bounds keepalived or dsrd taking the VIP and programming IPVS
// with every real: VRRP needs three advert intervals to become master,
// dsrd a Raft election on one node; checks a second or two. Under TCG
// either takes seconds.
const kaBound = 60 * time.Second

// kaServing waits until dir1 holds the VIP on eth0 and its IPVS has the
// web service over rs1-rs3 at weight 1, then sends 12 requests from the
// client and returns the answers by backend and the IPVS table.
func kaServing(t *testing.T, who string) (map[string]int, map[string]map[string]int) {
	t.Helper()
	want := map[string]map[string]int{"TCP 203.0.113.10:80": {}}
	for _, r := range lab.Backends() {
		want["TCP 203.0.113.10:80"][netip.AddrPortFrom(r.IPv4(), 80).String()] = 1
	}
	var table map[string]map[string]int
	lab.Eventually(t, kaBound, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		defer cancel()
		out, err := lab.IP(ctx, lab.Dir1, "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			return err
		}
		if !strings.Contains(out, " 203.0.113.10/32 ") {
			return fmt.Errorf("%s: the VIP is not on dir1's eth0: %s", who, out)
		}
		if table, err = lab.ClusterIPVSWeights(ctx, lab.Dir1); err != nil {
			return err
		}
		if !maps.EqualFunc(table, want, maps.Equal) {
			return fmt.Errorf("%s: dir1's IPVS %v, want %v", who, table, want)
		}
		return nil
	})
	client := lab.HTTPClient(lab.Client, drRequestTimeout)
	seen := map[string]int{}
	for i := range 12 {
		name, _, err := drGet(client, drVIP4)
		if err != nil {
			t.Fatalf("%s: request %d through the VIP: %v", who, i+1, err)
		}
		seen[name]++
	}
	return seen, table
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// kaRun starts a program in dir1's namespace and stops it with SIGTERM
// when stop is called (or the test ends), waiting up to 20 s.
func kaRun(t *testing.T, logPath string, name string, args ...string) (stop func()) {
	t.Helper()
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(lab.Dir1), name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("%s did not stop within 20 s of SIGTERM", name)
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s's log:\n%s", name, lastLines(string(b), 40))
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestKeepalivedRoundTrip (issue 17 A): one keepalived configuration, run
// by Debian's keepalived on dir1 and then, imported with dsrd config
// import keepalived, by a dsrd director on dir1: both hold the same VIP,
// program the same IPVS service over the same reals with the same
// weights, and serve the same client the same way (round robin: each
// backend 4 of 12 requests). keepalived -t accepts the file first, and
// dsrd config check the import.
func TestKeepalivedRoundTrip(t *testing.T) {
	lab.Require(t)
	if _, err := exec.LookPath("keepalived"); err != nil {
		t.Fatal("keepalived not found: install Debian's keepalived package (.ci/run does)")
	}
	repo, err := lab.Repo()
	if err != nil {
		t.Fatal(err)
	}
	bin := os.Getenv("DSRD_BIN")
	if bin == "" {
		bin = filepath.Join(repo, "bin", "dsrd")
	}
	lab.Up(t)
	lab.StartBackends(t)
	for _, r := range lab.Backends() {
		drPrepareReal(t, r, drVIP4, drRealSetup{vipOnLo: true, arpSysctls: true})
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(kaConf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	if out, err := lab.InNS(ctx, lab.Dir1, "keepalived", "-t", "-f", conf); err != nil {
		t.Fatalf("keepalived -t refuses the configuration: %v\n%s", err, out)
	}

	stop := kaRun(t, filepath.Join(dir, "keepalived.log"), "keepalived", "--dont-fork", "--log-console", "--log-detail",
		"-f", conf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"), "-c", filepath.Join(dir, "checkers.pid"))
	kaSeen, kaTable := kaServing(t, "keepalived")
	t.Logf("keepalived: answers by backend %v, IPVS %v", kaSeen, kaTable)
	stop()
	lab.Eventually(t, 20*time.Second, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		defer cancel()
		table, err := lab.ClusterIPVSWeights(ctx, lab.Dir1)
		if err != nil {
			return err
		}
		out, err := lab.IP(ctx, lab.Dir1, "-o", "addr", "show", "dev", "eth0")
		if err != nil {
			return err
		}
		if len(table) > 0 || strings.Contains(out, " 203.0.113.10/32 ") {
			return fmt.Errorf("keepalived stopped, yet dir1 holds IPVS %v or the VIP: %s", table, out)
		}
		return nil
	})

	imported := filepath.Join(dir, "director.yaml")
	importCmd := exec.Command(bin, "config", "import", "keepalived", conf)
	yaml, err := importCmd.Output()
	var report string
	if ee, ok := err.(*exec.ExitError); ok {
		report = string(ee.Stderr)
	}
	if err != nil {
		t.Fatalf("dsrd config import keepalived: %v\n%s", err, report)
	}
	// The node's own directories in the VM's /tmp (the defaults are the
	// packaged daemon's).
	doc := strings.Replace(string(yaml), "node:\n", fmt.Sprintf("node:\n  data_dir: %s\n  api_socket: %s\n", filepath.Join(dir, "data"), filepath.Join(dir, "dsrd.sock")), 1)
	if err := os.WriteFile(imported, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "config", "check", imported).CombinedOutput(); err != nil {
		t.Fatalf("dsrd config check of the import: %v\n%s\n%s", err, out, doc)
	}
	t.Logf("the import (what it reported: %q):\n%s", strings.TrimSpace(report), doc)

	kaRun(t, filepath.Join(dir, "dsrd.log"), bin, "director", "--config", imported)
	dsrdSeen, dsrdTable := kaServing(t, "dsrd")
	t.Logf("dsrd: answers by backend %v, IPVS %v", dsrdSeen, dsrdTable)
	if !maps.EqualFunc(kaTable, dsrdTable, maps.Equal) {
		t.Errorf("IPVS under keepalived %v, under dsrd %v", kaTable, dsrdTable)
	}
	if !maps.Equal(kaSeen, dsrdSeen) {
		t.Errorf("answers by backend under keepalived %v, under dsrd %v", kaSeen, dsrdSeen)
	}
	if names := slices.Sorted(maps.Keys(dsrdSeen)); !slices.Equal(names, []string{"rs1", "rs2", "rs3"}) {
		t.Errorf("backends that answered under dsrd: %v, want rs1, rs2, rs3", names)
	}
}
