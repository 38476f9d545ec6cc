//go:build vmtest && vmcluster

package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// checkMarkFirst is the first firewall mark dsrd takes for checks through
// the VIP, of 65536 (internal/director/throughvip.go); ipvsadm -Ln lists
// such a service as "FWM <mark>".
const checkMarkFirst = 0xd5d00000

// clusterCheckServices splits a director's IPVS weights (ipvsadm -Ln as
// lab.ClusterIPVSWeights reads it) into the configured services and the
// services of checks through the VIP, the latter as the destinations they
// send to.
func clusterCheckServices(w map[string]map[string]int) (services map[string]map[string]int, checks map[string]int) {
	services, checks = map[string]map[string]int{}, map[string]int{}
	for k, dests := range w {
		// ipvsadm prints a mark as a signed 32-bit number.
		mark, ok := strings.CutPrefix(k, "FWM ")
		if n, err := strconv.ParseInt(mark, 10, 64); ok && err == nil && uint32(n)&^0xffff == checkMarkFirst {
			for d, weight := range dests {
				checks[d] = weight
			}
			continue
		}
		services[k] = dests
	}
	return services, checks
}

// clusterWaitThroughVIP waits until both directors hold the configured
// services' weights want and exactly the check services checks (real
// address:0 -> weight).
func clusterWaitThroughVIP(t *testing.T, want map[string]map[string]int, checks map[string]int) time.Duration {
	t.Helper()
	start := time.Now()
	lab.Eventually(t, clusterConverge, 100*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			w, err := lab.ClusterIPVSWeights(clusterCtx(t), d)
			if err != nil {
				return err
			}
			got, gotChecks := clusterCheckServices(w)
			if !maps.EqualFunc(got, want, maps.Equal) {
				return fmt.Errorf("IPVS weights on %s: %v, want %v", d, got, want)
			}
			if !maps.Equal(gotChecks, checks) {
				return fmt.Errorf("check services on %s: %v, want %v", d, gotChecks, checks)
			}
		}
		return nil
	})
	return time.Since(start)
}

// clusterSetThroughVIP turns web's and web6's through_vip on or off (with
// on_down weight0, which an earlier phase may have changed) in both
// directors' files and reloads the owner; it waits for the new generation.
func clusterSetThroughVIP(t *testing.T, c *lab.Cluster, owner lab.Host, on bool) {
	t.Helper()
	gen0 := clusterStatus(t, c, owner).Generation
	clusterEditServices(t, c, func(svc map[string]any) {
		hc, _ := svc["health_check"].(map[string]any)
		if hc == nil {
			t.Fatalf("service %v has no health_check to send through the VIP", svc["name"])
		}
		hc["through_vip"] = on
		svc["on_down"] = "weight0"
	}, "web", "web6")
	clusterReloadWait(t, c, owner, gen0)
}

// clusterThroughVIP (issue 17 B): rs3 loses both VIPs from lo (its agent
// stopped, so nothing repairs them): it would drop every client packet,
// yet its plain checks pass and it stays in web, web6 and echo. With the
// checks of web and web6 through the VIP, both directors (VIP owner or
// not) hold one IPVS service per real for the checks, and rs3 fails both
// and goes to weight 0 in web and web6 (echo, checked plainly, keeps it);
// with the VIPs back on lo it comes back. Turning through_vip off removes
// the check services.
//
// A director needs a route to the VIP for a check's socket to connect
// (IPVS forwards the packet before the route is used); the lab's
// directors have none but their own segment's, where a real director has
// its default route. The test adds the VIP prefixes on-link while it
// runs.
func clusterThroughVIP(t *testing.T, c *lab.Cluster) {
	owner := clusterReady(t, c)
	for _, d := range lab.ClusterDirectors() {
		for _, p := range []string{"203.0.113.0/24", "2001:db8:113::/64"} {
			if _, err := lab.InNS(clusterCtx(t), d, "ip", "route", "add", p, "dev", "eth0"); err != nil {
				t.Fatal(err)
			}
			defer func() { _, _ = lab.InNS(clusterCtx(t), d, "ip", "route", "del", p, "dev", "eth0") }()
		}
	}
	rs := lab.RS3
	c.Stop(t, rs) // the agent would put the VIPs back
	defer c.Start(t, rs)
	vips := []string{netip.PrefixFrom(clusterVIP, 32).String(), netip.PrefixFrom(clusterVIP6, 128).String()}
	for _, vip := range vips {
		_, _ = lab.InNS(clusterCtx(t), rs, "ip", "addr", "del", vip, "dev", "lo") // the agent may have removed it on stop
	}
	clusterSetThroughVIP(t, c, owner, false)
	// The plain checks pass: rs3 keeps its weight everywhere.
	clusterWaitThroughVIP(t, clusterWeightsOf(nil), map[string]int{})
	for _, d := range lab.ClusterDirectors() {
		if r := lab.ClusterReal(clusterStatus(t, c, d), "web", rs.IPv4()); r == nil || r.Health != "up" || r.CheckThroughVIP {
			t.Errorf("%s's status of web %s with the plain check: %+v; want up, not through the VIP", d, rs.IPv4(), r)
		}
	}

	start := time.Now()
	clusterSetThroughVIP(t, c, owner, true)
	checks := map[string]int{}
	for _, r := range clusterReals {
		checks[r.IPv4().String()+":0"] = 1
		checks[netip.AddrPortFrom(r.IPv6(), 0).String()] = 1
	}
	clusterWaitThroughVIP(t, clusterWeightsOf(map[string]int{
		rs.IPv4().String() + ":80": 0, netip.AddrPortFrom(rs.IPv6(), 80).String(): 0,
	}), checks)
	t.Logf("checks through the VIP: %s (no VIP on lo) at weight 0 in web and web6 on both directors %v after the reload (echo, checked plainly, keeps it)",
		rs, time.Since(start).Round(time.Millisecond))
	for _, d := range lab.ClusterDirectors() {
		st := clusterStatus(t, c, d)
		for _, svc := range []struct {
			name string
			ip   func(lab.Host) netip.Addr
		}{{"web", lab.Host.IPv4}, {"web6", lab.Host.IPv6}} {
			if r := lab.ClusterReal(st, svc.name, svc.ip(rs)); r == nil || r.Health != "down" || !r.CheckThroughVIP {
				t.Errorf("%s's status of %s %s: %+v; want down, through the VIP", d, svc.name, svc.ip(rs), r)
			}
			for _, other := range []lab.Host{lab.RS1, lab.RS2} {
				if r := lab.ClusterReal(st, svc.name, svc.ip(other)); r == nil || r.Health != "up" || !r.CheckThroughVIP {
					t.Errorf("%s's status of %s %s: %+v; want up, through the VIP", d, svc.name, svc.ip(other), r)
				}
			}
		}
		for _, s := range st.Services {
			if strings.HasPrefix(s.Key, "fwmark/") {
				t.Errorf("%s's status lists the check service %s", d, s.Key)
			}
		}
	}
	clusterNewConnsAvoid(t, owner, rs, "down through the VIP in web")

	for _, vip := range vips {
		if _, err := lab.InNS(clusterCtx(t), rs, "ip", "addr", "add", vip, "dev", "lo"); err != nil {
			t.Fatal(err)
		}
	}
	took := clusterWaitThroughVIP(t, clusterWeightsOf(nil), checks)
	t.Logf("the VIPs back on %s's lo: in web and web6 again on both directors after %v (rise 2)", rs, took.Round(time.Millisecond))

	clusterSetThroughVIP(t, c, owner, false)
	clusterWaitThroughVIP(t, clusterWeightsOf(nil), map[string]int{})
}
