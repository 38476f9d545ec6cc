//go:build vmtest

package e2e

// TestBGPLab proves the lab's BGP/ECMP extension (issue 14) before dsrd's own
// BGP speaker drives it: BIRD stands in for the speaker on dir1..dir3
// (tests/vm/bgp/bird-director.conf, 203.0.113.10/32 and 2001:db8:113::10/128
// from static routes, BFD), and the router runs BIRD or FRR with the
// configurations docs/bgp-routers.md quotes. For each router:
//
//	(a) the three directors' routes make one multipath route per VIP in the
//	    router's kernel, a next hop per director;
//	(b) the flows of one client (bgpFlows source ports) spread over the
//	    three directors: the kernel's choice per flow (ip route get with L4
//	    fields) and real UDP packets counted on the directors agree;
//	(c) a director's link cut silently (its switch port disabled, carrier
//	    up) loses its next hop within BFD's detection time, far below the
//	    BGP hold time (90 s); timed over bgpCutRuns cuts, then restored;
//	(e) a draining director (its routes with the GRACEFUL_SHUTDOWN
//	    community, as dsrd announces them before it withdraws) leaves the
//	    multipath route while its sessions stay up, and comes back;
//	(f) with BIRD, the whole DSR path: IPVS (mh) on every director by
//	    hand, the VIP on their lo as in dsrd's BGP mode, real servers
//	    prepared by hand; HTTP requests from the remote client cross the
//	    router, reach the reals through several directors, and the replies
//	    go from the reals to the router straight.

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

var (
	bgpVIP4 = netip.MustParseAddr("203.0.113.10")
	bgpVIP6 = netip.MustParseAddr("2001:db8:113::10")
)

const (
	// bgpSessions: each director has an IPv4 and an IPv6 session.
	bgpSessions = 6
	// bgpFlows client source ports, from bgpSport0.
	bgpFlows  = 256
	bgpSport0 = 40000
	// bgpCutRuns link cuts per router, one director after the other.
	bgpCutRuns = 3
	// bgpEstablishTimeout bounds the sessions' establishment: about 4 s
	// under TCG on an idle machine (connect delay 1 s, then BFD and BGP).
	bgpEstablishTimeout = 60 * time.Second
	// bgpDetectBound: BFD detects in 1 s (5 x 200 ms); a next hop that
	// stays 5 s is not BFD's doing (the hold time is 90 s).
	bgpDetectBound = 5 * time.Second
	// bgpRestoreTimeout bounds the return of a restored director's next
	// hop: its BIRD waits 1 to 5 s (error wait time) before it reconnects.
	bgpRestoreTimeout = 45 * time.Second
)

func TestBGPLab(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.RouterUp(t)
	results := map[lab.RouterKind]*bgpResult{}
	for _, kind := range []lab.RouterKind{lab.BIRD, lab.FRR} {
		res := &bgpResult{}
		results[kind] = res
		t.Run(string(kind), func(t *testing.T) { bgpLabRun(t, kind, res) })
	}
	for _, kind := range []lab.RouterKind{lab.BIRD, lab.FRR} {
		t.Logf("summary %s: %s", kind, results[kind])
	}
}

// bgpResult is what one router's run measured.
type bgpResult struct {
	established  time.Duration
	flows4       map[lab.Host]int // TCP flows per director (ip route get)
	flows6       map[lab.Host]int
	packets      map[lab.Host]int // real UDP flows per director
	agree        int              // of them, where ip route get said
	detect       []time.Duration  // cut -> next hop gone
	restore      []time.Duration  // restore -> next hop back
	drain        time.Duration    // GRACEFUL_SHUTDOWN -> next hop gone
	dsrReals     map[string]int   // (f) answers by real
	dsrDirectors map[lab.Host]int // (f) IPVS connections by director
}

func (r *bgpResult) String() string {
	return fmt.Sprintf("sessions established in %v; TCP flows per director IPv4 %s, IPv6 %s; real UDP flows %s (ip route get agreed for %d); "+
		"BFD cut -> next hop gone %s; restore -> next hop back %s; drain -> next hop gone %v; DSR answers by real %v, IPVS connections by director %s",
		r.established.Round(100*time.Millisecond), bgpDist(r.flows4), bgpDist(r.flows6), bgpDist(r.packets), r.agree,
		bgpStats(r.detect), bgpStats(r.restore), r.drain.Round(time.Millisecond), r.dsrReals, bgpDist(r.dsrDirectors))
}

func bgpDist(m map[lab.Host]int) string {
	if m == nil {
		return "-"
	}
	var parts []string
	for _, d := range lab.Directors() {
		parts = append(parts, fmt.Sprintf("%s=%d", d, m[d]))
	}
	return strings.Join(parts, " ")
}

// bgpStats is "min/median/max over n".
func bgpStats(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("min %v / median %v / max %v over %d", r(s[0]), r(s[len(s)/2]), r(s[len(s)-1]), len(s))
}

func bgpCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	t.Cleanup(cancel)
	return ctx
}

// bgpDirectorsOf maps next hops to directors, sorted; ok is false when one
// is no director's.
func bgpDirectorsOf(gws []netip.Addr) (hs []lab.Host, ok bool) {
	hs, err := lab.NextHopDirectors(gws)
	if err != nil {
		return nil, false
	}
	slices.Sort(hs)
	return hs, true
}

// bgpAllDirectors is the condition "a next hop per director".
func bgpAllDirectors(got []netip.Addr) bool {
	hs, ok := bgpDirectorsOf(got)
	return ok && slices.Equal(hs, lab.Directors())
}

// bgpWithout is the condition "the two other directors, not d".
func bgpWithout(d lab.Host) func([]netip.Addr) bool {
	return func(got []netip.Addr) bool {
		hs, ok := bgpDirectorsOf(got)
		return ok && len(hs) == 2 && !slices.Contains(hs, d)
	}
}

func bgpLabRun(t *testing.T, kind lab.RouterKind, res *bgpResult) {
	// The router first: it is passive, the directors connect to it.
	router := lab.StartRouter(t, kind)
	start := time.Now()
	phase := func(what string) {
		t.Logf("%s: %s done at +%v", kind, what, time.Since(start).Round(100*time.Millisecond))
	}
	speakers := map[lab.Host]*lab.BIRDDaemon{}
	for _, d := range lab.Directors() {
		speakers[d] = lab.StartBIRD(t, d, "bird-director.conf")
	}
	res.established = router.WaitEstablished(t, bgpSessions, bgpEstablishTimeout)
	phase("start")
	t.Logf("%s: %d sessions established after %v", kind, bgpSessions, res.established.Round(100*time.Millisecond))
	// The next run starts from a router without the VIP routes.
	t.Cleanup(func() {
		router.Stop()
		for _, vip := range []netip.Addr{bgpVIP4, bgpVIP6} {
			if _, gws, err := lab.WaitNextHops(vip, 10*time.Second, 50*time.Millisecond,
				func(g []netip.Addr) bool { return len(g) == 0 }); err != nil {
				t.Errorf("%s stopped, its route stays: %v %v", kind, gws, err)
			}
		}
	})

	// (a) A next hop per director, IPv4 and IPv6.
	for _, vip := range []netip.Addr{bgpVIP4, bgpVIP6} {
		if _, gws, err := lab.WaitNextHops(vip, 20*time.Second, 50*time.Millisecond, bgpAllDirectors); err != nil {
			t.Fatalf("(a) %v", err)
		} else {
			t.Logf("(a) %s: %s via %v", kind, vip, gws)
		}
	}
	t.Logf("(a) %s: ip route show %s; ip -6 route show %s:\n%s%s", kind, bgpVIP4, bgpVIP6,
		lab.MustIP(t, lab.Router, "-4", "route", "show", bgpVIP4.String()),
		lab.MustIP(t, lab.Router, "-6", "route", "show", bgpVIP6.String()))

	phase("(a)")

	// (b) The client's flows spread over the directors.
	bgpFlowSpread(t, kind, res)
	phase("(b)")

	// (c) BFD: cut each director's link in turn.
	dirs := lab.Directors()
	for i := 0; i < bgpCutRuns; i++ {
		d := dirs[i%len(dirs)]
		at := lab.CutLink(t, d)
		seen, gws, err := lab.WaitNextHops(bgpVIP4, bgpDetectBound, 2*time.Millisecond, bgpWithout(d))
		if err != nil {
			t.Fatalf("(c) %s cut: %v", d, err)
		}
		res.detect = append(res.detect, seen.Sub(at))
		// IPv6 goes with it (its own session and BFD session).
		if _, gws6, err := lab.WaitNextHops(bgpVIP6, bgpDetectBound, 10*time.Millisecond, bgpWithout(d)); err != nil {
			t.Fatalf("(c) %s cut, IPv6: %v", d, err)
		} else {
			t.Logf("(c) %s: %s cut: next hop gone after %v (IPv4 %v, IPv6 %v)", kind, d, seen.Sub(at).Round(time.Millisecond), gws, gws6)
		}
		lab.RestoreLink(t, d)
		back := time.Now()
		seen, _, err = lab.WaitNextHops(bgpVIP4, bgpRestoreTimeout, 20*time.Millisecond, bgpAllDirectors)
		if err != nil {
			t.Fatalf("(c) %s restored: %v", d, err)
		}
		res.restore = append(res.restore, seen.Sub(back))
		if _, _, err := lab.WaitNextHops(bgpVIP6, bgpRestoreTimeout, 20*time.Millisecond, bgpAllDirectors); err != nil {
			t.Fatalf("(c) %s restored, IPv6: %v", d, err)
		}
		router.WaitEstablished(t, bgpSessions, bgpRestoreTimeout)
	}
	t.Logf("(c) %s: BFD cut -> next hop gone %s; restore -> back %s", kind, bgpStats(res.detect), bgpStats(res.restore))
	phase("(c)")

	bgpDrain(t, kind, router, speakers[lab.Dir2], lab.Dir2, res)
	phase("(e)")

	if kind == lab.BIRD {
		bgpDSR(t, res)
		phase("(f)")
	}
}

// bgpRequests is the number of HTTP requests of (f), each a new connection.
const bgpRequests = 24

// bgpDSR is (f): DSR through the router, IPVS by hand on all directors.
func bgpDSR(t *testing.T, res *bgpResult) {
	lab.StartBackends(t)
	reals := lab.Backends()
	for _, r := range reals {
		drPrepareReal(t, r, bgpVIP4, drRealSetup{vipOnLo: true, arpSysctls: true})
	}
	svc := netip.AddrPortFrom(bgpVIP4, 80).String()
	// mh with the port in the hash (mh-port): the remote client's
	// connections spread over the reals too; the same order everywhere.
	rules := []string{"-A -t " + svc + " -s mh -b mh-port"}
	for _, r := range reals {
		rules = append(rules, fmt.Sprintf("-a -t %s -r %s -g -w 1", svc, netip.AddrPortFrom(r.IPv4(), 80)))
	}
	for _, d := range lab.Directors() {
		// As dsrd sets it: a director that gets a flow mid-stream (the
		// router's hash moved it) takes it up.
		if err := lab.WriteSysctl(d, "net.ipv4.vs.sloppy_tcp", "1"); err != nil {
			t.Fatal(err)
		}
		lab.MustIPBatch(t, d, fmt.Sprintf("addr add %s/32 dev lo", bgpVIP4))
		if _, err := lab.RunInput(bgpCtx(t), strings.NewReader(strings.Join(rules, "\n")+"\n"),
			"ip", "netns", "exec", string(d), "ipvsadm", "-R"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
			defer cancel()
			_, _ = lab.InNS(ctx, d, "ipvsadm", "-C")
			_, _ = lab.IP(ctx, d, "addr", "del", bgpVIP4.String()+"/32", "dev", "lo")
		})
	}
	client := lab.HTTPClient(lab.Remote, drRequestTimeout)
	byReal := map[string]int{}
	for i := range bgpRequests {
		name, from, err := drGet(client, bgpVIP4)
		if err != nil {
			t.Fatalf("(f) request %d to %s from the remote client: %v", i+1, drURL(bgpVIP4), err)
		}
		byReal[name]++
		if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() != lab.RemoteIPv4 {
			t.Errorf("(f) request %d: the backend saw the client as %q, want %s:PORT", i+1, from, lab.RemoteIPv4)
		}
	}
	res.dsrDirectors = map[lab.Host]int{}
	for _, d := range lab.Directors() {
		conns, err := lab.IPVSConns(bgpCtx(t), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			if c.Virtual == svc {
				res.dsrDirectors[d]++
			}
		}
	}
	res.dsrReals = byReal
	used := 0
	total := 0
	for _, n := range res.dsrDirectors {
		if n > 0 {
			used++
		}
		total += n
	}
	t.Logf("(f) %d HTTP requests from the remote client through the router: answers by real %v; IPVS connections by director %s",
		bgpRequests, byReal, bgpDist(res.dsrDirectors))
	// One entry per request, more if the router moved a flow (a
	// retransmission timeout re-rolls a connected socket's flow hash).
	if total < bgpRequests {
		t.Errorf("(f) the directors hold %d IPVS connections for %s, want %d (one per request)", total, svc, bgpRequests)
	}
	if used < 2 {
		t.Errorf("(f) only %d director(s) carried the %d connections (%s): no ECMP", used, bgpRequests, bgpDist(res.dsrDirectors))
	}
}

// bgpDrain is (e): d's stand-in speaker reconfigured to announce its VIPs
// with GRACEFUL_SHUTDOWN (65535:0), then back.
func bgpDrain(t *testing.T, kind lab.RouterKind, router *lab.BGPRouter, speaker *lab.BIRDDaemon, d lab.Host, res *bgpResult) {
	conf, err := lab.BGPConfig("bird-director.conf")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	drained := string(b)
	for _, route := range []string{"route 203.0.113.10/32 blackhole", "route 2001:db8:113::10/128 blackhole"} {
		if !strings.Contains(drained, route+";") {
			t.Fatalf("(e) %s has no %q: update this test", conf, route+";")
		}
		drained = strings.Replace(drained, route+";", route+" { bgp_community.add((65535, 0)); };", 1)
	}
	path := filepath.Join(t.TempDir(), "bird-director-drain.conf")
	if err := os.WriteFile(path, []byte(drained), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := speaker.Configure(bgpCtx(t), path); err != nil {
		t.Fatalf("(e) %v", err)
	}
	at := time.Now()
	seen, gws, err := lab.WaitNextHops(bgpVIP4, 20*time.Second, 10*time.Millisecond, bgpWithout(d))
	if err != nil {
		t.Fatalf("(e) %s draining: %v", d, err)
	}
	res.drain = seen.Sub(at)
	if _, _, err := lab.WaitNextHops(bgpVIP6, 20*time.Second, 10*time.Millisecond, bgpWithout(d)); err != nil {
		t.Fatalf("(e) %s draining, IPv6: %v", d, err)
	}
	if n, err := router.EstablishedSessions(bgpCtx(t)); err != nil || n != bgpSessions {
		t.Errorf("(e) %s draining: %d sessions established (%v), want all %d: a drain keeps them", d, n, err, bgpSessions)
	}
	t.Logf("(e) %s: %s draining (GRACEFUL_SHUTDOWN): next hop gone after %v, sessions up; next hops %v",
		kind, d, res.drain.Round(time.Millisecond), gws)
	if err := speaker.Configure(bgpCtx(t), conf); err != nil {
		t.Fatalf("(e) %v", err)
	}
	for _, vip := range []netip.Addr{bgpVIP4, bgpVIP6} {
		if _, _, err := lab.WaitNextHops(vip, 20*time.Second, 20*time.Millisecond, bgpAllDirectors); err != nil {
			t.Fatalf("(e) %s undrained: %v", d, err)
		}
	}
}

// bgpFlowSpread is (b): bgpFlows source ports of the remote client, the
// router's choice for each (ip route get, TCP and UDP, IPv4 and IPv6), and
// real UDP packets of the same flows counted on the directors.
func bgpFlowSpread(t *testing.T, kind lab.RouterKind, res *bgpResult) {
	dst4 := netip.AddrPortFrom(bgpVIP4, 80)
	dst6 := netip.AddrPortFrom(bgpVIP6, 80)
	var err error
	if res.flows4, err = lab.FlowsPerDirector(bgpCtx(t), lab.Flows("tcp", lab.RemoteIPv4, dst4, bgpSport0, bgpFlows)); err != nil {
		t.Fatalf("(b) %v", err)
	}
	if res.flows6, err = lab.FlowsPerDirector(bgpCtx(t), lab.Flows("tcp", lab.RemoteIPv6, dst6, bgpSport0, bgpFlows)); err != nil {
		t.Fatalf("(b) %v", err)
	}
	t.Logf("(b) %s: %d TCP flows per director: IPv4 %s; IPv6 %s", kind, bgpFlows, bgpDist(res.flows4), bgpDist(res.flows6))
	// Even spread: each director's share is binomial (n=256, p=1/3), mean
	// 85, standard deviation 7.5; below 40 is no spreading at all.
	for _, m := range []map[lab.Host]int{res.flows4, res.flows6} {
		for _, d := range lab.Directors() {
			if m[d] < 40 {
				t.Errorf("(b) %s gets %d of %d flows: not spread (%s)", d, m[d], bgpFlows, bgpDist(m))
			}
		}
	}
	// Real packets, one UDP datagram per source port: which director each
	// one reached (captures on the directors' eth0), and nftables counters
	// on the directors as a second count.
	dst := netip.AddrPortFrom(bgpVIP4, 9000)
	udp := lab.Flows("udp", lab.RemoteIPv4, dst, bgpSport0, bgpFlows)
	gws, err := lab.RouteGetFlows(bgpCtx(t), lab.Router, "eth1", udp)
	if err != nil {
		t.Fatalf("(b) %v", err)
	}
	predicted, err := lab.NextHopDirectors(gws)
	if err != nil {
		t.Fatalf("(b) %v", err)
	}
	counter := lab.StartPacketCounter(t, dst, lab.Directors()...)
	capture := lab.StartFlowCapture(t, dst, lab.Directors()...)
	if err := lab.SendUDPFlows(lab.Remote, udp); err != nil {
		t.Fatalf("(b) %v", err)
	}
	var seen map[uint16][]lab.Host
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		seen = capture.Directors()
		if len(seen) < bgpFlows {
			return fmt.Errorf("%d of %d flows seen on the directors", len(seen), bgpFlows)
		}
		return nil
	})
	res.packets = map[lab.Host]int{}
	agree := 0
	for i, f := range udp {
		hs := seen[f.SPort]
		if len(hs) != 1 {
			t.Errorf("(b) the flow from port %d reached %v: want exactly one director", f.SPort, hs)
			continue
		}
		res.packets[hs[0]]++
		if hs[0] == predicted[i] {
			agree++
		}
	}
	res.agree = agree
	t.Logf("(b) %s: %d UDP flows, real packets per director: %s; ip route get predicted the same director for %d of them",
		kind, bgpFlows, bgpDist(res.packets), agree)
	if agree != bgpFlows {
		// A session that flapped meanwhile (BFD on a stalled VM) would
		// explain it: say what the router has now.
		gws, err := lab.RouterNextHops(bgpVIP4)
		t.Errorf("(b) ip route get predicted the director of %d of %d real flows, want all (the router's next hops now: %v %v)",
			agree, bgpFlows, gws, err)
	}
	for _, d := range lab.Directors() {
		if res.packets[d] < 40 {
			t.Errorf("(b) %s got %d of %d real flows: not spread (%s)", d, res.packets[d], bgpFlows, bgpDist(res.packets))
		}
	}
	lab.Eventually(t, 5*time.Second, 100*time.Millisecond, func() error {
		counts, err := counter.Counts(bgpCtx(t))
		if err != nil {
			return err
		}
		for _, d := range lab.Directors() {
			if counts[d] != res.packets[d] {
				return fmt.Errorf("nftables counted %s, the captures %s", bgpDist(counts), bgpDist(res.packets))
			}
		}
		return nil
	})
}
