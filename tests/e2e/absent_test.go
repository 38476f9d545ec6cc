//go:build vmtest && vmcluster

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// clusterAbsentBound bounds a real kept out of IPVS (disabled, or down
// with on_down remove) leaving both directors' kernels. A disable is one
// Raft commit and one reconcile; a failed backend two check intervals
// (fall 2, interval 1 s) and one reconcile. Without its reason in the
// desired state, the VIP owner kept such a real at weight 0 while it had
// connection entries: after the requests below, FIN_WAIT entries (2 min)
// held it for minutes, up to drain_timeout (5 min).
const clusterAbsentBound = 10 * time.Second

// TestClusterAbsentReals: a real disabled with dsrd disable, and a real
// whose backend stops under on_down remove, are deleted from IPVS on both
// directors within seconds, connection entries on the VIP owner or not,
// and both kernels hold the same table; neither is drained.
func TestClusterAbsentReals(t *testing.T) {
	lab.Require(t)
	c, _ := clusterStart(t)
	t.Run("disable", func(t *testing.T) { clusterDisable(t, c) })
	t.Run("down-remove", func(t *testing.T) { clusterDownRemove(t, c) })
	t.Run("through-vip", func(t *testing.T) { clusterThroughVIP(t, c) })
}

// clusterWeightsWithout is clusterWeightsOf(except) with the destinations
// gone removed from their services (keyed as in except).
func clusterWeightsWithout(except map[string]int, gone ...string) map[string]map[string]int {
	want := clusterWeightsOf(except)
	for _, dests := range want {
		for _, g := range gone {
			delete(dests, g)
		}
	}
	return want
}

// clusterConnsTo sends requests to web until the owner's IPVS counts
// connections (active or not) to one of the reals, and returns that real
// and its count. The requests leave FIN_WAIT entries in the owner's
// connection table: what made the old drain keep a real at weight 0. The
// counts are read from the kernel (ipvsadm -Ln): dsrd status shows them as
// of its last reconcile.
func clusterConnsTo(t *testing.T, owner lab.Host) (lab.Host, int) {
	t.Helper()
	clusterRequests(t, 12)
	out, err := lab.InNS(clusterCtx(t), owner, "ipvsadm", "-L", "-n")
	if err != nil {
		t.Fatal(err)
	}
	web := fmt.Sprintf("TCP %s:80", clusterVIP)
	conns, cur := map[string]int{}, ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP"):
			cur = f[0] + " " + f[1]
		case len(f) == 6 && f[0] == "->" && cur == web:
			active, err1 := strconv.Atoi(f[4])
			inactive, err2 := strconv.Atoi(f[5])
			if err1 != nil || err2 != nil {
				t.Fatalf("ipvsadm -Ln on %s: %q", owner, line)
			}
			conns[f[1]] = active + inactive
		}
	}
	for _, rs := range clusterReals {
		if n := conns[netip.AddrPortFrom(rs.IPv4(), 80).String()]; n > 0 {
			return rs, n
		}
	}
	t.Fatalf("12 requests to web left no connection entry on the owner %s:\n%s", owner, out)
	return "", 0
}

// clusterSameKernels fails unless both directors' IPVS tables (ipvsadm
// -Ln) are the same.
func clusterSameKernels(t *testing.T) {
	t.Helper()
	w := clusterWeights(t)
	if !maps.EqualFunc(w[lab.Dir1], w[lab.Dir2], maps.Equal) {
		t.Errorf("the directors' IPVS differ: dir1 %v, dir2 %v", w[lab.Dir1], w[lab.Dir2])
	}
}

// clusterNoDrainLogged fails if a director logged a drain since the log
// offsets off.
func clusterNoDrainLogged(t *testing.T, c *lab.Cluster, off map[lab.Host]int64) {
	t.Helper()
	for _, d := range lab.ClusterDirectors() {
		log, err := c.LogSince(d, off[d])
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "ipvs draining real") {
				t.Errorf("%s drained: %s", d, line)
			}
		}
	}
}

// clusterLogOffsets are both directors' log sizes now.
func clusterLogOffsets(c *lab.Cluster) map[lab.Host]int64 {
	off := map[lab.Host]int64{}
	for _, d := range lab.ClusterDirectors() {
		off[d] = c.LogSize(d)
	}
	return off
}

// clusterDisable disables, through the follower, a real the owner has
// connections to: both directors delete it; enable brings it back.
func clusterDisable(t *testing.T, c *lab.Cluster) {
	owner := clusterReady(t, c)
	follower := lab.ClusterOtherDirector(owner)
	rs, conns := clusterConnsTo(t, owner)
	addr := rs.IPv4()
	off := clusterLogOffsets(c)

	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterTakeover)
	defer cancel()
	start := time.Now()
	out, _, err := c.CLI(ctx, follower, "disable", "web", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("web (tcp/%s:80) %s: enabled -> disabled", clusterVIP, addr); strings.TrimSpace(out) != want {
		t.Errorf("dsrd disable on %s printed %q, want %q", follower, out, want)
	}
	clusterWaitWeightsWithin(t, clusterWeightsWithout(nil, addr.String()+":80"), clusterAbsentBound)
	t.Logf("dsrd disable web %s (%s), %d connection entries on the owner %s: deleted from both directors' IPVS after %v",
		addr, rs, conns, owner, time.Since(start).Round(time.Millisecond))
	clusterSameKernels(t)
	clusterNoDrainLogged(t, c, off)
	for _, d := range lab.ClusterDirectors() {
		if r := lab.ClusterReal(clusterStatus(t, c, d), "web", addr); r == nil || r.Admin != "disabled" || r.IPVSWeight != -1 {
			t.Errorf("%s's status of web %s: %+v; want disabled, not in IPVS (weight -1)", d, addr, r)
		}
	}
	clusterNewConnsAvoid(t, owner, rs, "disabled in web")

	if _, _, err := c.CLI(ctx, owner, "enable", "web", addr.String()); err != nil {
		t.Fatal(err)
	}
	clusterWaitWeights(t, clusterWeightsOf(nil))
}

// clusterDownRemove sets on_down: remove on web (a reload), then stops the
// backend of a real the owner has connections to: both directors delete
// it from web, while echo and web6 (on_down weight0) keep it at weight 0.
func clusterDownRemove(t *testing.T, c *lab.Cluster) {
	owner := clusterReady(t, c)
	gen0 := clusterStatus(t, c, owner).Generation
	for _, d := range lab.ClusterDirectors() { // both files: either may reload later
		if err := lab.ClusterConfigEdit(c.ConfPath(d), func(doc map[string]any) error {
			svcs, _ := doc["services"].([]any)
			for _, s := range svcs {
				if svc, _ := s.(map[string]any); svc["name"] == "web" {
					svc["on_down"] = "remove"
					return nil
				}
			}
			return fmt.Errorf("no service web")
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Signal(owner, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, clusterConverge, 100*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			st, err := c.Status(clusterCtx(t), d)
			if err != nil {
				return err
			}
			if st.Generation != gen0+1 || st.RunningGeneration != gen0+1 {
				return fmt.Errorf("%s: generation %d running %d, want %d (on_down: remove)", d, st.Generation, st.RunningGeneration, gen0+1)
			}
		}
		return nil
	})

	rs, conns := clusterConnsTo(t, owner)
	addr := rs.IPv4()
	off := clusterLogOffsets(c)
	start := time.Now()
	lab.ClusterBackendStop(t, rs)
	stopped := true
	defer func() {
		if stopped {
			lab.ClusterBackendStart(t, rs)
		}
	}()
	// web's entry is deleted; echo's and web6's, on_down weight0, go to
	// weight 0 (the same backend serves them).
	v6 := netip.AddrPortFrom(rs.IPv6(), 80).String()
	want := clusterWeightsWithout(map[string]int{addr.String() + ":9000": 0, v6: 0}, addr.String()+":80")
	clusterWaitWeightsWithin(t, want, clusterAbsentBound)
	t.Logf("%s's backend stopped under on_down remove, %d connection entries on the owner %s: deleted from web on both directors after %v (interval 1s, fall 2)",
		rs, conns, owner, time.Since(start).Round(time.Millisecond))
	clusterSameKernels(t)
	clusterNoDrainLogged(t, c, off)
	for _, d := range lab.ClusterDirectors() {
		if r := lab.ClusterReal(clusterStatus(t, c, d), "web", addr); r == nil || r.Health != "down" || r.IPVSWeight != -1 {
			t.Errorf("%s's status of web %s: %+v; want down, not in IPVS (weight -1)", d, addr, r)
		}
	}
	clusterNewConnsAvoid(t, owner, rs, "down and removed from web")

	lab.ClusterBackendStart(t, rs)
	stopped = false
	took := clusterWaitWeights(t, clusterWeightsOf(nil))
	t.Logf("%s's backend back: in web again on both directors after %v (rise 2)", rs, took.Round(time.Millisecond))
}
