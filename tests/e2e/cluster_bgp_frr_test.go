//go:build vmtest && vmcluster

package e2e

// TestClusterBGPFRR: three real dsrd directors (dir1, dir2 and dir3, no
// witness: tests/vm/cluster with DSRD_LAB_DIRECTORS=3) announce the bgp
// VIPs 203.0.113.20 and 2001:db8:113::20 to FRR (zebra, bgpd, bfdd with
// tests/vm/bgp/frr-router.conf, the configuration docs/bgp-routers.md
// quotes), one session per address family, with BFD 200 ms x 5; the client
// is the remote namespace behind the router. Kept short: TestClusterBGP
// runs the whole list against BIRD with two directors.
//
//	(a) six sessions up (three directors x IPv4, IPv6) with BFD up on both
//	    ends; the router's kernel routes for both VIPs have the three
//	    directors as next hops (IPv6: FRR installs the link-local ones);
//	    new connections spread over all three directors, counted from
//	    their IPVS stats (each at least a third of its fair share); the
//	    IPv6 VIP answers from remote through every director;
//	(k) SIGKILL of one director: its next hops leave both routes; the
//	    long-lived connections (bgpecho) all still answer; restarted, it
//	    is a next hop of both routes again;
//	(t) SIGTERM of that director: its next hops leave while its sessions
//	    stay up (GRACEFUL_SHUTDOWN, FRR's local-preference 0), before
//	    drain_delay; the connections all still answer.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

const (
	// cfrrRequests new HTTP connections to the IPv4 VIP for the spread.
	// With the router's hash on the five-tuple and random source ports,
	// a director's count is binomial (60, 1/3): mean 20, and fewer than 7
	// (a third of its share, what (a) asserts) about once in 7,000 runs
	// per director.
	cfrrRequests = 60
	// cfrrRequests6 requests to the IPv6 VIP: every director must see one
	// ((2/3)^30, about 5e-6 per director, that one does not).
	cfrrRequests6 = 30
	// cfrrConns long-lived connections to bgpecho across (k) and (t).
	cfrrConns = 30
)

// cfrrDirectors are the three directors of the test.
var cfrrDirectors = []lab.Host{lab.Dir1, lab.Dir2, lab.Dir3}

func TestClusterBGPFRR(t *testing.T) {
	opts := clusterOptions
	opts.BGP = true
	opts.BGP6 = true
	opts.ThreeDirectors = true
	opts.BGPDrainDelay = cbgpDrainDelay
	c := lab.ClusterUp(t, opts)
	lab.RouterUp(t)
	t0 := time.Now()
	router := lab.StartRouter(t, lab.FRR)
	vips := []netip.Addr{cbgpVIP, lab.ClusterBGPVIP6}
	m := map[string]string{}

	// (a) sessions, BFD, next hops, status.
	router.WaitEstablished(t, 6, cbgpAnnounce)
	m["(a) 6 sessions established"] = time.Since(t0).Round(100 * time.Millisecond).String()
	for _, vip := range vips {
		at, gws := cfrrWait(t, "(a) three directors announce "+vip.String(), vip, cbgpAnnounce, cfrrAll)
		m["(a) "+vip.String()+" 3 next hops"] = at.Sub(t0).Round(100 * time.Millisecond).String()
		t.Logf("(a) %s: next hops %v %v after FRR started", vip, gws, m["(a) "+vip.String()+" 3 next hops"])
	}
	cfrrWaitWeights(t)
	for _, d := range cfrrDirectors {
		cfrrWaitStatus(t, c, d)
	}
	cfrrBFDUp(t, router, 6)
	for _, cmd := range []string{"show ip route 203.0.113.20/32", "show ipv6 route 2001:db8:113::20/128"} {
		out, err := router.VTY(clusterCtx(t), cmd)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("(a) FRR %s:\n%s", cmd, strings.TrimSpace(out))
	}

	// (a) new connections spread over the three directors (IPVS stats).
	svc := "TCP " + netip.AddrPortFrom(cbgpVIP, 80).String()
	byDir := cfrrSpread(t, svc, cfrrRequests, cbgpVIP)
	m["(a) IPv4 conns by director"] = fmt.Sprint(byDir)
	for _, d := range cfrrDirectors {
		if byDir[d] < cfrrRequests/9 {
			t.Errorf("(a) %s took %d of %d new connections (%v): less than a third of its fair share", d, byDir[d], cfrrRequests, byDir)
		}
	}
	svc6 := "TCP " + netip.AddrPortFrom(lab.ClusterBGPVIP6, 80).String()
	byDir6 := cfrrSpread(t, svc6, cfrrRequests6, lab.ClusterBGPVIP6)
	m["(a) IPv6 conns by director"] = fmt.Sprint(byDir6)
	for _, d := range cfrrDirectors {
		if byDir6[d] == 0 {
			t.Errorf("(a) no IPv6 connection went through %s (%v): no ECMP", d, byDir6)
		}
	}

	// (k) SIGKILL of a director that does not lead (no election on the
	// way), with long-lived connections open.
	victim := cfrrFollower(t, c)
	cfrrSettled(t, c, "(k)")
	conns := cbgpOpen(t, cfrrConns)
	defer cbgpClose(conns)
	cfrrConnsSpread(t, "(k)", conns)
	kill := time.Now()
	if err := c.Signal(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, vip := range vips {
		at, gws := cfrrWait(t, "(k) "+string(victim)+" killed, "+vip.String(), vip, cbgpDetect, cfrrWithout(victim))
		key := "(k) SIGKILL -> " + vip.String() + " next hop gone"
		m[key] = at.Sub(kill).Round(time.Millisecond).String()
		t.Logf("(k) SIGKILL %s -> %s's next hop gone after %s (now %v)", victim, vip, m[key], gws)
	}
	c.Kill(t, victim)
	alive := cbgpProbe(t, conns, "after the kill")
	m["(k) conns after SIGKILL"] = fmt.Sprintf("%d/%d", alive, len(conns))
	if alive != len(conns) {
		t.Errorf("(k) %d of %d long-lived connections survived the kill of %s", alive, len(conns), victim)
	}
	restart := time.Now()
	c.Start(t, victim)
	for _, vip := range vips {
		at, _ := cfrrWait(t, "(k) "+string(victim)+" restarted, "+vip.String(), vip, cbgpAnnounce, cfrrAll)
		m["(k) restart -> "+vip.String()+" announced"] = at.Sub(restart).Round(100 * time.Millisecond).String()
	}
	cfrrWaitWeights(t)
	cfrrWaitStatus(t, c, victim)
	alive = cbgpProbe(t, conns, "after the restart")
	m["(k) conns after restart"] = fmt.Sprintf("%d/%d", alive, len(conns))
	if alive != len(conns) {
		t.Errorf("(k) %d of %d long-lived connections survived %s's return", alive, len(conns), victim)
	}
	cfrrConnsSpread(t, "(k) after the restart:", conns)

	// (t) SIGTERM of the same director: graceful shutdown through FRR.
	router.WaitEstablished(t, 6, cbgpAnnounce)
	cfrrSettled(t, c, "(t)")
	term := time.Now()
	if err := c.Signal(victim, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	at, gws := cfrrWait(t, "(t) "+string(victim)+" stopping", cbgpVIP, cbgpDrainDelay+cbgpDetect, cfrrWithout(victim))
	gone := at.Sub(term)
	m["(t) SIGTERM -> next hop gone"] = gone.Round(time.Millisecond).String()
	var sessions int
	{
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		n, err := router.EstablishedSessions(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		sessions = n
	}
	t.Logf("(t) SIGTERM %s -> next hop gone after %s (now %v); sessions established then: %d", victim, m["(t) SIGTERM -> next hop gone"], gws, sessions)
	if gone >= cbgpDrainDelay {
		t.Errorf("(t) the next hop left %v after SIGTERM, not within drain_delay %v: FRR did not act on GRACEFUL_SHUTDOWN", gone, cbgpDrainDelay)
	}
	router.WaitEstablished(t, 4, cbgpDrainDelay+20*time.Second)
	m["(t) SIGTERM -> sessions closed"] = time.Since(term).Round(100 * time.Millisecond).String()
	alive = cbgpProbe(t, conns, "after the planned stop")
	m["(t) conns after SIGTERM"] = fmt.Sprintf("%d/%d", alive, len(conns))
	if alive != len(conns) {
		t.Errorf("(t) %d of %d long-lived connections survived the planned stop of %s", alive, len(conns), victim)
	}

	keys := slices.Sorted(maps.Keys(m))
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+m[k])
	}
	t.Logf("summary: %s", strings.Join(parts, "; "))
}

// cfrrAll: the three directors are next hops.
func cfrrAll(g []netip.Addr) bool {
	hs, ok := bgpDirectorsOf(g)
	return ok && slices.Equal(hs, cfrrDirectors)
}

// cfrrWithout: the route has next hops and d is not one of them. (Not
// "both others": a director may withdraw on its own meanwhile, below.)
func cfrrWithout(d lab.Host) func([]netip.Addr) bool {
	return cbgpWithout(d)
}

// cfrrSettled waits, before a scenario, until the three directors are
// next hops of both VIPs and each one's status says both VIPs announced,
// both sessions established with BFD up for cbgpSettle at least. A run
// saw two directors withdraw on their own (health-view-disagrees: their
// 400 ms HTTP checks timed out for 5 s, after the restarted director's
// start burst, three directors' checks on two emulated CPUs) just before
// (t), which then found one next hop instead of two. Bounded by
// cbgpAnnounce.
func cfrrSettled(t *testing.T, c *lab.Cluster, phase string) {
	t.Helper()
	start := time.Now()
	var last string
	err := lab.Poll(cbgpAnnounce, 200*time.Millisecond, func() error {
		for _, vip := range []netip.Addr{cbgpVIP, lab.ClusterBGPVIP6} {
			gws, err := lab.RouterNextHops(vip)
			if err != nil {
				return err
			}
			if !cfrrAll(gws) {
				last = fmt.Sprintf("the router's next hops for %s: %v", vip, gws)
				return errors.New(last)
			}
		}
		for _, d := range cfrrDirectors {
			ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
			st, err := c.Status(ctx, d)
			cancel()
			if err != nil {
				return err
			}
			for _, v := range st.VIPs {
				if v.Mode == "bgp" && !v.Announced {
					last = fmt.Sprintf("%s does not announce %s: %q", d, v.Address, v.Withdrawn)
					return errors.New(last)
				}
			}
			if st.BGP == nil || len(st.BGP.Peers) != 2 {
				last = fmt.Sprintf("%s's BGP %+v", d, st.BGP)
				return errors.New(last)
			}
			for _, p := range st.BGP.Peers {
				if p.State != "established" || p.BFD != "up" || p.Since.IsZero() || time.Since(p.Since) < cbgpSettle {
					last = fmt.Sprintf("%s's session %+v", d, p)
					return errors.New(last)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s the directors not settled within %v: %v (last: %s)", phase, cbgpAnnounce, err, last)
	}
	t.Logf("%s the three directors settled after %v", phase, time.Since(start).Round(100*time.Millisecond))
}

// cfrrWait is cbgpWait for either VIP.
func cfrrWait(t *testing.T, what string, vip netip.Addr, timeout time.Duration, cond func([]netip.Addr) bool) (time.Time, []netip.Addr) {
	t.Helper()
	interval := 5 * time.Millisecond
	if timeout > 10*time.Second {
		interval = 50 * time.Millisecond
	}
	at, gws, err := lab.WaitNextHops(vip, timeout, interval, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return at, gws
}

// cfrrWeights: every real at full weight in the bgp services on each
// director (the arp VIPs' services aside: with three directors and no
// witness the test does not use them).
func cfrrWeights() map[string]map[string]int {
	want := map[string]map[string]int{}
	for _, svc := range []netip.AddrPort{
		netip.AddrPortFrom(cbgpVIP, 80), netip.AddrPortFrom(cbgpVIP, 9000), netip.AddrPortFrom(lab.ClusterBGPVIP6, 80),
	} {
		key := "TCP " + svc.String()
		want[key] = map[string]int{}
		for _, r := range clusterReals {
			a := r.IPv4()
			if svc.Addr().Is6() {
				a = r.IPv6()
			}
			want[key][netip.AddrPortFrom(a, svc.Port()).String()] = 100
		}
	}
	return want
}

// cfrrWaitWeights waits until every director's IPVS holds cfrrWeights.
func cfrrWaitWeights(t *testing.T) {
	t.Helper()
	want := cfrrWeights()
	lab.Eventually(t, clusterConverge, 100*time.Millisecond, func() error {
		for _, d := range cfrrDirectors {
			got, err := lab.ClusterIPVSWeights(clusterCtx(t), d)
			if err != nil {
				return err
			}
			for k, w := range want {
				if !maps.Equal(got[k], w) {
					return fmt.Errorf("IPVS weights of %s on %s: %v, want %v", k, d, got[k], w)
				}
			}
		}
		return nil
	})
}

// cfrrWaitStatus waits until d's status shows both bgp VIPs announced and
// both its sessions (IPv4, IPv6) established with BFD up, one prefix each.
func cfrrWaitStatus(t *testing.T, c *lab.Cluster, d lab.Host) {
	t.Helper()
	var last string
	err := lab.Poll(clusterConverge, 200*time.Millisecond, func() error {
		st, err := c.Status(clusterCtx(t), d)
		if err != nil {
			return err
		}
		last = fmt.Sprintf("vips %+v bgp %+v", st.VIPs, st.BGP)
		for _, vip := range []netip.Addr{cbgpVIP, lab.ClusterBGPVIP6} {
			i := slices.IndexFunc(st.VIPs, func(v api.VIP) bool { return v.Address == vip })
			if i < 0 || st.VIPs[i].Mode != "bgp" || !st.VIPs[i].Announced {
				return fmt.Errorf("%s does not announce %s", d, vip)
			}
		}
		if st.BGP == nil || len(st.BGP.Peers) != 2 {
			return fmt.Errorf("%s's BGP %+v", d, st.BGP)
		}
		for _, p := range st.BGP.Peers {
			if p.State != "established" || p.BFD != "up" || p.Announced != 1 {
				return fmt.Errorf("%s's session %+v", d, p)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("status of %s: %v (last: %s)", d, err, last)
	}
	t.Logf("status of %s: %s", d, last)
}

// cfrrBFDUp checks that FRR's bfdd has n BFD sessions up (show bfd peers
// json).
func cfrrBFDUp(t *testing.T, router *lab.BGPRouter, n int) {
	t.Helper()
	var last string
	err := lab.Poll(clusterConverge, 200*time.Millisecond, func() error {
		out, err := router.VTY(clusterCtx(t), "show bfd peers json")
		if err != nil {
			return err
		}
		var peers []struct {
			Peer   string `json:"peer"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal([]byte(out), &peers); err != nil {
			return fmt.Errorf("show bfd peers json: %w", err)
		}
		var up []string
		for _, p := range peers {
			if p.Status == "up" {
				up = append(up, p.Peer)
			}
		}
		slices.Sort(up)
		last = strings.Join(up, " ")
		if len(up) != n {
			return fmt.Errorf("%d BFD sessions up, want %d: %s", len(up), n, last)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("(a) FRR's BFD: %v", err)
	}
	t.Logf("(a) FRR's BFD sessions up: %s", last)
}

// cfrrSpread makes n HTTP requests from remote to vip, each a new
// connection, and returns how many connections each director's IPVS
// counted for svc ("TCP VIP:80") meanwhile: the stats' conns counter,
// read before and after (polled until the directors' counts add up to n
// and stay: the kernel folds its per-CPU counters every 2 s). Called once
// per service, before any other traffic to it.
func cfrrSpread(t *testing.T, svc string, n int, vip netip.Addr) map[lab.Host]int {
	t.Helper()
	read := func() (map[lab.Host]uint64, error) {
		res := map[lab.Host]uint64{}
		for _, d := range cfrrDirectors {
			st, err := lab.IPVSStatsOf(clusterCtx(t), d)
			if err != nil {
				return nil, err
			}
			res[d] = st[svc].Conns
		}
		return res, nil
	}
	// No connection has reached the service before (its health checks go
	// to the reals, not through IPVS): the counters are at rest.
	before, err := read()
	if err != nil {
		t.Fatal(err)
	}
	client := lab.HTTPClient(lab.Remote, clusterRequestTimeout)
	byReal := map[string]int{}
	for i := range n {
		name, _, err := drGet(client, vip)
		if err != nil {
			t.Fatalf("(a) request %d to %s from remote: %v", i+1, drURL(vip), err)
		}
		byReal[name]++
	}
	// At rest again: at least n, and two reads 2 s apart that agree. (Every
	// run so far counted more than 60 for the 60 IPv4 requests, 61 to 66,
	// each request answered once, and exactly 30 for the 30 IPv6 ones;
	// why is not known yet, so the test asks for at least n.)
	res := map[lab.Host]int{}
	var last map[lab.Host]int
	err = lab.Poll(15*time.Second, 2100*time.Millisecond, func() error {
		now, err := read()
		if err != nil {
			return err
		}
		sum := 0
		cur := map[lab.Host]int{}
		for d, v := range now {
			cur[d] = int(v - before[d])
			sum += cur[d]
		}
		prev := last
		last = cur
		if sum < n {
			return fmt.Errorf("%d connections counted, want %d", sum, n)
		}
		if !maps.Equal(prev, cur) {
			return errors.New("the counters still move")
		}
		res = cur
		return nil
	})
	if err != nil {
		t.Fatalf("(a) IPVS stats of %s: %v (last %v)", svc, err, last)
	}
	// The connection entries beside the counters, by director and state:
	// what to compare when the counters add up to more than n.
	// A run counted 66 for 60: each director held two ESTABLISHED entries
	// beside the requests' FIN_WAIT ones; their sources are logged.
	entries := map[lab.Host]map[string]int{}
	var open []string
	for _, d := range cfrrDirectors {
		conns, err := lab.IPVSConns(clusterCtx(t), d)
		if err != nil {
			t.Fatal(err)
		}
		entries[d] = map[string]int{}
		for _, e := range conns {
			if "TCP "+e.Virtual != svc {
				continue
			}
			entries[d][e.State]++
			if e.State != "FIN_WAIT" && e.State != "TIME_WAIT" && e.State != "CLOSE" && len(open) < 12 {
				open = append(open, fmt.Sprintf("%s: %s %s -> %s", d, e.State, e.Source, e.Dest))
			}
		}
	}
	t.Logf("(a) %d HTTP requests from remote to %s: answers by real %v; new connections by director (IPVS stats) %v; connection entries by director and state %v; entries not closing: %v",
		n, vip, byReal, res, entries, open)
	return res
}

// cfrrFollower is a director that is not the Raft leader.
func cfrrFollower(t *testing.T, c *lab.Cluster) lab.Host {
	t.Helper()
	var leader string
	lab.Eventually(t, clusterTakeover, 200*time.Millisecond, func() error {
		st, err := c.Status(clusterCtx(t), lab.Dir1)
		if err != nil {
			return err
		}
		if st.Raft.LeaderID == "" {
			return fmt.Errorf("no leader: %+v", st.Raft)
		}
		leader = st.Raft.LeaderID
		return nil
	})
	if leader != string(lab.Dir3) {
		return lab.Dir3
	}
	return lab.Dir2
}

// cfrrConnsSpread logs which directors hold an IPVS entry of each
// long-lived connection.
func cfrrConnsSpread(t *testing.T, phase string, conns []*cbgpConn) {
	t.Helper()
	svc := netip.AddrPortFrom(cbgpVIP, 9000).String()
	holders := map[string][]string{}
	for _, d := range cfrrDirectors {
		entries, err := lab.IPVSConns(clusterCtx(t), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Virtual == svc {
				holders[e.Source] = append(holders[e.Source], string(d))
			}
		}
	}
	byDir, byReal := map[string]int{}, map[string]int{}
	for _, c := range conns {
		byReal[c.real]++
		byDir[strings.Join(holders[c.c.LocalAddr().String()], "+")]++
	}
	t.Logf("%s %d long-lived connections: reals %v, IPVS entries by director %v", phase, len(conns), byReal, byDir)
}
