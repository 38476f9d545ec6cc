//go:build vmtest && vmcluster

package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// clusterTunnelConns is how many long-lived echo connections ride the
// failover.
const clusterTunnelConns = 10

// TestClusterTunnel: a cluster whose services forward by tunnel to reals
// whose agents run with --tunnel. Both directors program every real as a
// Tunnel destination; 10 long-lived echo connections and new requests
// (IPv4 and IPv6) are served; the VIP owner is killed (SIGKILL with
// release-vips, as systemd would), the other director takes the VIPs and
// the same connections keep echoing through it (mh maps each flow to the
// same real on both directors, sloppy_tcp picks them up mid-stream, and
// the new owner encapsulates toward the same real), and new requests work.
func TestClusterTunnel(t *testing.T) {
	lab.Require(t)
	opts := clusterOptions
	opts.Tunnel = true
	c := lab.ClusterUp(t, opts)
	old := clusterReady(t, c)
	next := lab.ClusterOtherDirector(old)

	want := map[string]bool{}
	for _, vp := range []string{"203.0.113.10:80", "203.0.113.10:9000"} {
		for _, rs := range clusterReals {
			want[vp+" "+netip.AddrPortFrom(rs.IPv4(), netip.MustParseAddrPort(vp).Port()).String()] = true
		}
	}
	for _, rs := range clusterReals {
		want["[2001:db8:113::10]:80 "+netip.AddrPortFrom(rs.IPv6(), 80).String()] = true
	}
	for _, d := range lab.ClusterDirectors() {
		got, err := tunnelDests(d)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s's IPVS tunnel destinations %v, want %v", d, got, want)
		}
	}

	conns := make([]*clusterEcho, clusterTunnelConns)
	reals := map[string]int{}
	for i := range conns {
		conns[i] = clusterDialEcho(t)
		if err := conns[i].once(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatalf("connection %d (real %s) before the failover: %v", i, conns[i].name, err)
		}
		reals[conns[i].name]++
	}
	seen, seen6 := clusterRequests(t, 6), clusterRequestsTo(t, clusterVIP6, 6)
	t.Logf("before the failover: %d echo connections by real %v; 6 requests by %v, 6 over IPv6 by %v", len(conns), reals, seen, seen6)

	start := time.Now()
	c.Kill(t, old)
	if got := c.WaitOwner(t, old, clusterTakeover); got != next {
		t.Fatalf("new owner %s, want %s", got, next)
	}
	t.Logf("%s owns the VIPs %v after the kill of %s", next, time.Since(start).Round(time.Millisecond), old)
	failed := 0
	for i, e := range conns {
		if err := e.once(fmt.Sprintf("after-%d", i)); err != nil {
			failed++
			t.Errorf("connection %d (real %s) after the failover: %v", i, e.name, err)
		}
	}
	seen, seen6 = clusterRequests(t, 6), clusterRequestsTo(t, clusterVIP6, 6)
	t.Logf("after the failover: %d of %d echo connections alive; 6 new requests by %v, 6 over IPv6 by %v", len(conns)-failed, len(conns), seen, seen6)
	// The kernel folds its counters every 2 s.
	lab.Eventually(t, 10*time.Second, 250*time.Millisecond, func() error {
		st, err := lab.IPVSStatsOf(clusterCtx(t), next)
		if err != nil {
			return err
		}
		if s := st["TCP 203.0.113.10:9000"]; s.InPkts == 0 || s.OutPkts != 0 {
			return fmt.Errorf("%s's counters of echo: %+v; want inbound packets (it took the flows) and no outbound one", next, s.IPVSStats)
		}
		return nil
	})
	c.Start(t, old)
	clusterWaitFollower(t, c, old, next)
}
