//go:build vmtest && vmcluster

package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// syncConns is how many long-lived echo connections cross each failover.
const syncConns = 20

// TestClusterSync kills the VIP owner (SIGKILL, then release-vips) under 20
// long-lived connections to the echo service scheduled by wlc, with
// sloppy_tcp off: with ipvs.sync (the owner's master daemon sending its
// connections to the other director's backup daemon) all 20 go on through
// the new owner; without it all 20 break (the new owner has no entry and
// its stack resets them). Nothing else keeps them: wlc picks reals by load,
// not by a hash of the flow as mh does. The same with echo persistent on
// rr (persistence 300 s): the connections and their persistence template
// are synchronised, and all 20 go on.
func TestClusterSync(t *testing.T) {
	lab.Require(t)
	c, _ := clusterStart(t)
	t.Run("sync", func(t *testing.T) { clusterSyncFailover(t, c, true, "wlc", false) })
	t.Run("sync-persistent-rr", func(t *testing.T) { clusterSyncFailover(t, c, true, "rr", true) })
	t.Run("nosync", func(t *testing.T) { clusterSyncFailover(t, c, false, "wlc", false) })
}

// clusterSyncConfigure writes ipvs.sync (on or off), sloppy_tcp off and
// echo on scheduler sched (persistent for 300 s or not) into both
// directors' files, reloads the owner's, and waits until both directors
// run the daemons the configuration asks for.
func clusterSyncConfigure(t *testing.T, c *lab.Cluster, owner lab.Host, on bool, sched string, persistent bool) {
	t.Helper()
	for _, d := range lab.ClusterDirectors() {
		if err := lab.ClusterConfigEdit(c.ConfPath(d), func(doc map[string]any) error {
			ipvs, _ := doc["ipvs"].(map[string]any)
			if ipvs == nil {
				ipvs = map[string]any{}
				doc["ipvs"] = ipvs
			}
			ipvs["sloppy_tcp"] = false
			ipvs["sync"] = map[string]any{"enabled": on, "sync_id": 42}
			svcs, _ := doc["services"].([]any)
			for _, s := range svcs {
				if svc, _ := s.(map[string]any); svc["name"] == "echo" {
					svc["scheduler"] = sched
					delete(svc, "scheduler_flags")
					delete(svc, "persistence")
					if persistent {
						svc["persistence"] = map[string]any{"timeout": "300s"}
					}
					return nil
				}
			}
			return fmt.Errorf("no echo service")
		}); err != nil {
			t.Fatal(err)
		}
	}
	st0, err := c.Status(clusterCtx(t), owner)
	if err != nil {
		t.Fatal(err)
	}
	gen := st0.Generation + 1
	if err := c.Signal(owner, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// Both directors' IPVS on the new generation, not only their sync
	// daemons as asked: the daemons may already be what the new file
	// asks for while the scheduler change is still on its way, and a
	// scheduler change refuses new connections for a moment (the kernel
	// unbinds the old scheduler, waits an RCU grace period, binds the
	// new one: a SYN in between finds no scheduler and is answered with
	// ICMP port unreachable). A run that dialled in that window failed
	// with "connection refused".
	lab.Eventually(t, clusterConverge, 200*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			st, err := c.Status(clusterCtx(t), d)
			if err != nil {
				return err
			}
			if st.Generation != gen || st.RunningGeneration != gen {
				return fmt.Errorf("%s: generation %d running %d, want %d", d, st.Generation, st.RunningGeneration, gen)
			}
			if err := syncStatusWant(st, on, d == owner); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
		}
		return nil
	})
}

// syncStatusWant checks a director's sync daemons in its status: none when
// off; the backup, and the master on the owner, when on.
func syncStatusWant(st api.Status, on, owner bool) error {
	var sync *api.IPVSSync
	if st.IPVS != nil {
		sync = st.IPVS.Sync
	}
	if !on {
		if sync != nil {
			return fmt.Errorf("sync daemons with ipvs.sync off: %+v", sync)
		}
		return nil
	}
	if sync == nil || sync.Error != "" {
		return fmt.Errorf("sync status %+v", sync)
	}
	var states []string
	for _, d := range sync.Daemons {
		if d.SyncID != 42 || d.Interface != "eth0" {
			return fmt.Errorf("daemon %+v", d)
		}
		states = append(states, d.State)
	}
	want := "backup"
	if owner {
		want = "master backup"
	}
	if got := strings.Join(states, " "); got != want {
		return fmt.Errorf("sync daemons %q, want %q", got, want)
	}
	return nil
}

func clusterSyncFailover(t *testing.T, c *lab.Cluster, on bool, sched string, persistent bool) {
	old := clusterReady(t, c)
	next := lab.ClusterOtherDirector(old)
	clusterSyncConfigure(t, c, old, on, sched, persistent)

	echoes := make([]*clusterEcho, syncConns)
	greeted := map[string]int{}
	start := time.Now()
	for i := range echoes {
		echoes[i] = clusterDialEcho(t)
		greeted[echoes[i].name]++
		if err := echoes[i].once(fmt.Sprintf("before %d", i)); err != nil {
			t.Fatalf("connection %d (%s): %v", i, echoes[i].name, err)
		}
	}
	// next's IPVS table: every connection with sync (within the kernel's
	// 2 s flush time and the lab's slowness), none without.
	onNext := func() (int, error) {
		conns, err := lab.IPVSConns(clusterCtx(t), next)
		if err != nil {
			return 0, err
		}
		n := 0
		for _, e := range echoes {
			src := netip.AddrPortFrom(lab.Client.IPv4(), e.port).String()
			for _, ic := range conns {
				if ic.Source == src && ic.State == "ESTABLISHED" {
					n++
					break
				}
			}
		}
		return n, nil
	}
	if on {
		lab.Eventually(t, clusterConverge, 100*time.Millisecond, func() error {
			n, err := onNext()
			if err == nil && n < syncConns {
				err = fmt.Errorf("%d of %d connections in %s's table", n, syncConns, next)
			}
			return err
		})
		t.Logf("%d connections (greeted by %v) in %s's table %v after the first was opened", syncConns, greeted, next, time.Since(start).Round(10*time.Millisecond))
	} else if n, err := onNext(); err != nil || n != 0 {
		t.Fatalf("without sync, %d connections in %s's table (%v)", n, next, err)
	}

	c.Kill(t, old)
	if got := c.WaitOwner(t, old, clusterTakeover); got != next {
		t.Fatalf("new owner %s, want %s", got, next)
	}
	ok := 0
	var failed []string
	for i, e := range echoes {
		if err := e.once(fmt.Sprintf("after %d", i)); err != nil {
			failed = append(failed, fmt.Sprintf("%d (%s): %v", i, e.name, err))
			continue
		}
		ok++
	}
	t.Logf("sync %v, %s (persistent %v): %d of %d connections survived the kill of %s", on, sched, persistent, ok, syncConns, old)
	if on && ok != syncConns {
		t.Errorf("with sync, connections broke:\n%s", strings.Join(failed, "\n"))
	}
	if !on && ok != 0 {
		t.Errorf("without sync, %d of %d connections survived: the test shows nothing", ok, syncConns)
	}
	if on {
		// The new owner runs the master now (alone: old is down).
		lab.Eventually(t, clusterConverge, 200*time.Millisecond, func() error {
			st, err := c.Status(clusterCtx(t), next)
			if err != nil {
				return err
			}
			return syncStatusWant(st, true, true)
		})
	}
	for _, e := range echoes {
		e.conn.Close()
	}
	c.Start(t, old)
	clusterWaitFollower(t, c, old, next)
}
