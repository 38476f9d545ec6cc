package realserver

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"
)

// A lowered sysctl gives no event: the poll finds it at its next pass,
// within sysctlPollInterval, and not before (in fake time).
func TestRunPollRepairsSysctlDrift(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fk := newFakeHost()
		var logs testutil.SyncBuffer
		log := slog.New(slog.NewTextHandler(io.MultiWriter(&logs, tWriter{t}), nil))
		a, err := New(Config{
			VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0"},
			DataDir: t.TempDir(), ResyncInterval: time.Hour,
		}, log, WithKernel(fk))
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		// No fake time passes before the loop starts its poll ticker.
		start := time.Now()
		runAgent(t, a)
		const path = "net.ipv4.conf.eth0.arp_ignore"

		for round := range 2 {
			pass := start.Add(time.Duration(round+1) * sysctlPollInterval)
			time.Sleep(300 * time.Millisecond)
			must(fk.SetSysctl(path, "0"))
			drifted := time.Now()

			// Just before the next pass nothing has seen it.
			time.Sleep(time.Until(pass) - time.Millisecond)
			synctest.Wait()
			if v := sysctl(t, fk, path); v != "0" {
				t.Fatalf("round %d: repaired %s after the drift, before the next poll", round, time.Since(drifted))
			}
			for sysctl(t, fk, path) != "1" {
				if time.Since(drifted) > sysctlPollInterval {
					t.Fatalf("round %d: not repaired within %s", round, sysctlPollInterval)
				}
				time.Sleep(time.Millisecond)
			}
			t.Logf("round %d: repaired %s (fake time) after the drift", round, time.Since(drifted))
			// Line up with the poll's ticks for the next round.
			time.Sleep(time.Until(pass))
		}

		s := a.Stats()
		if s.SysctlRepairs != 2 || s.LastRepairWhat != "net.ipv4.conf.eth0.arp_ignore=1" {
			t.Errorf("stats = %+v", s)
		}
		want := `level=WARN msg="sysctl drifted below the value DR needs; repairing" sysctl=net.ipv4.conf.eth0.arp_ignore old=1 new=0 min=1`
		if n := strings.Count(logs.String(), want); n != 2 {
			t.Errorf("logged %d times %s, want 2 (each drift, with its old value)", n, want)
		}
		if !strings.Contains(logs.String(), `level=WARN msg=repaired reason="sysctl drifted: net.ipv4.conf.eth0.arp_ignore=0" net.ipv4.conf.eth0.arp_ignore=0->1`) {
			t.Error("repair not logged with its reason")
		}
	})
}

func TestPollSysctls(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0", "eth9"}})
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	rules := sysctlRules(a.Config().Interfaces)
	seen := map[string]string{}
	if why, drifted := a.pollSysctls(rules, seen); drifted {
		t.Fatalf("drift right after apply: %s", why)
	}
	if len(seen) != 4 || seen["net.ipv4.conf.all.arp_announce"] != "2" {
		t.Errorf("seen = %v, want the 4 existing entries (eth9 is missing)", seen)
	}

	// Stricter is not a drift; lower is, on all as on an interface.
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_ignore", "8"))
	must(fk.SetSysctl("net.ipv4.conf.all.arp_announce", "1"))
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_announce", "0"))
	why, drifted := a.pollSysctls(rules, seen)
	want := "sysctl drifted: net.ipv4.conf.all.arp_announce=1, net.ipv4.conf.eth0.arp_announce=0"
	if !drifted || why != want {
		t.Errorf("poll = %q, %v; want %q", why, drifted, want)
	}
	if seen["net.ipv4.conf.eth0.arp_ignore"] != "8" || seen["net.ipv4.conf.all.arp_announce"] != "2" {
		t.Errorf("seen = %v, want the stricter value read and the value the repair writes", seen)
	}

	// A read that fails is no drift: the resync retries it.
	fk.FailNext("Sysctl", io.ErrUnexpectedEOF)
	must(fk.SetSysctl("net.ipv4.conf.all.arp_announce", "2"))
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_announce", "2"))
	if why, drifted := a.pollSysctls(rules, seen); drifted {
		t.Errorf("drift reported after a failed read: %s", why)
	}
}
