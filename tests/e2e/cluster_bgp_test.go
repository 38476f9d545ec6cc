//go:build vmtest && vmcluster

package e2e

// TestClusterBGP: real dsrd directors (dir1, dir2, witness dir3; the lab
// cluster of tests/vm/cluster with DSRD_LAB_BGP=1) announce the bgp VIP
// 203.0.113.20 to the lab router (BIRD, tests/vm/bgp/bird-router.conf) from
// their embedded speakers, with BFD; the services bgpweb (tcp/80) and
// bgpecho (tcp/9000), mh with mh-port over rs1-rs3, serve it; the client is
// the remote namespace behind the router. The arp VIPs stay as they are.
//
//	(a) both sessions up; the router's kernel route for the VIP has both
//	    directors as next hops; HTTP from remote is answered through both;
//	    dsrd status says announced, its sessions established with BFD up;
//	(b) every real down: the route leaves the router (no-service-up); the
//	    reals back: it returns;
//	(w) one backend down (its server stopped): its weight in both bgp
//	    services goes to 0 on both directors within one health-check
//	    interval of each other (the cluster's verdict, replicated through
//	    Raft), and back to full weight alike when it returns (the issue's
//	    item 6(e));
//	(c) SIGKILL of a director: its next hop leaves within BFD's time;
//	    long-lived TCP connections survive the routers' rehash (mh and
//	    sloppy_tcp on both directors); restarted, it is announced again;
//	(c2) a director's link cut (its port on the switch disabled: both
//	    ends keep their carrier, only BFD can tell): its next hop leaves
//	    within BFD's detection time (1 s) and the long-lived connections
//	    that went through it go on through the other director; the link
//	    restored, it is announced again and they all still answer;
//	(d) SIGTERM of a director: its next hop leaves (GRACEFUL_SHUTDOWN, the
//	    router's local-pref 0) while its session stays up, then the
//	    session closes after drain_delay; connections survive;
//	(h) that director started again rejoins and is announced again: the
//	    connections opened before (d) all still answer, from the same
//	    real (another real would reset them);
//	(e) a director cut off from Raft (nftables drop on 7946 both ways)
//	    keeps announcing for partition_hold, then withdraws, and announces
//	    again once healed.
//
// A scenario that follows a director's start begins once that director
// is settled (cbgpSettled): its start's burst is over (every real at full
// weight on both directors) and its session, with BFD up, has carried its
// announcement for cbgpSettle, as both the router and its own status say.
// Each phase logs what it measured; the summary line has them all.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

const (
	// cbgpDrainDelay and cbgpPartitionHold are the directors' bgp timers.
	cbgpDrainDelay    = 3 * time.Second
	cbgpPartitionHold = 5 * time.Second
	// cbgpAnnounce bounds a director's route reaching the router from its
	// start (session, BFD, health checks rising): seconds under TCG.
	cbgpAnnounce = 60 * time.Second
	// cbgpDetect bounds a killed director's next hop leaving: BFD detects
	// in 1 s (5 x 200 ms); the BGP hold time is 90 s on the router.
	cbgpDetect = 5 * time.Second
	// cbgpChange bounds a withdrawal or an announcement after a health or
	// partition change.
	cbgpChange = 40 * time.Second
	// cbgpSettle is how long a started director's session (with BFD up)
	// must have been established before a scenario relies on it. A
	// session that had just come up with the director's start was seen
	// to lose BFD at the router 3 s later, under TCG, while the start's
	// health checks and IPVS writes were still going on (then gobgp's
	// stale "BFD is down" reset the next session too): the partition
	// scenario then found the director already gone from the route.
	// Three BFD detection times (1 s) past the start's burst; Since has a
	// resolution of a second.
	cbgpSettle = 3 * time.Second
	// cbgpConns long-lived TCP connections from remote to bgpecho.
	cbgpConns = 50
	// cbgpRequests HTTP requests of (a), each a new connection.
	cbgpRequests = 24
)

var cbgpVIP = lab.ClusterBGPVIP

func TestClusterBGP(t *testing.T) {
	opts := clusterOptions
	opts.BGP = true
	opts.BGPDrainDelay = cbgpDrainDelay
	opts.BGPPartitionHold = cbgpPartitionHold
	c := lab.ClusterUp(t, opts)
	lab.RouterUp(t)
	router := lab.StartRouter(t, lab.BIRD)
	{
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		err := router.TraceSessions(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	// What the router saw of the sessions: why each went down, if any did.
	t.Cleanup(func() {
		lines := router.LogLines("bfd1: Session", "State changed", "BGP session", "Received:", "Error:")
		if len(lines) > 200 {
			lines = append(lines[:100], append([]string{"..."}, lines[len(lines)-100:]...)...)
		}
		t.Logf("the router's session events:\n%s", strings.Join(lines, "\n"))
	})
	t0 := time.Now()
	owner := cbgpReady(t, c)
	// The follower is the one stopped and cut off: the leader keeps the
	// Raft majority (with the witness) and with it its announcement.
	follower := lab.ClusterOtherDirector(owner)
	m := map[string]string{}
	est := router.WaitEstablished(t, 2, cbgpAnnounce)
	m["(a) established"] = time.Since(t0).Round(100 * time.Millisecond).String()
	at, gws := cbgpWait(t, "(a) both directors announce", cbgpAnnounce, cbgpBoth)
	m["(a) announced"] = at.Sub(t0).Round(100 * time.Millisecond).String()
	t.Logf("(a) sessions established %v after the router started (the directors were already up, retrying; last poll %v); route %s via %v %v after",
		m["(a) established"], est.Round(100*time.Millisecond), cbgpVIP, gws, m["(a) announced"])

	// (a) status, HTTP through both directors.
	for _, d := range lab.ClusterDirectors() {
		cbgpWaitStatus(t, c, d, true, "")
	}
	out, _, err := c.CLI(clusterCtx(t), follower, "status", "--json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"announced"`) || !strings.Contains(out, "established") {
		t.Errorf("(a) dsrd status --json on %s shows no announced VIP or established session:\n%s", follower, out)
	}
	t.Logf("(a) ip route show %s in router: %s", cbgpVIP, strings.TrimSpace(lab.MustIP(t, lab.Router, "-4", "route", "show", cbgpVIP.String())))
	client := lab.HTTPClient(lab.Remote, clusterRequestTimeout)
	byReal := map[string]int{}
	for i := range cbgpRequests {
		name, from, err := drGet(client, cbgpVIP)
		if err != nil {
			t.Fatalf("(a) request %d to %s from remote: %v", i+1, drURL(cbgpVIP), err)
		}
		byReal[name]++
		if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() != lab.RemoteIPv4 {
			t.Errorf("(a) request %d: the backend saw the client as %q, want %s:PORT", i+1, from, lab.RemoteIPv4)
		}
	}
	byDir := cbgpConnsByDirector(t, netip.AddrPortFrom(cbgpVIP, 80))
	t.Logf("(a) %d HTTP requests from remote: answers by real %v; IPVS connections by director %v", cbgpRequests, byReal, byDir)
	m["(a) http"] = fmt.Sprintf("reals %v directors %v", byReal, byDir)
	for _, d := range lab.ClusterDirectors() {
		if byDir[d] == 0 {
			t.Errorf("(a) no connection went through %s (%v): no ECMP", d, byDir)
		}
	}

	// (b) every real down, then back.
	for _, rs := range clusterReals {
		lab.ClusterBackendStop(t, rs)
	}
	down := time.Now()
	at, _ = cbgpWait(t, "(b) the reals are down", cbgpChange, func(g []netip.Addr) bool { return len(g) == 0 })
	m["(b) reals down -> route gone"] = at.Sub(down).Round(time.Millisecond).String()
	for _, d := range lab.ClusterDirectors() {
		cbgpWaitStatus(t, c, d, false, "no-service-up")
	}
	// Timed from the first start: each start waits until its backend
	// listens (a second or more under TCG), and the route comes back with
	// the first real up.
	up := time.Now()
	for _, rs := range clusterReals {
		lab.ClusterBackendStart(t, rs)
	}
	at, _ = cbgpWait(t, "(b) the reals are back", cbgpChange, cbgpBoth)
	m["(b) reals back -> route back"] = at.Sub(up).Round(time.Millisecond).String()
	// The route is back as soon as one real of one service is up; the
	// connections of (c) need every real up on both directors, or a
	// real coming up later changes mh's table under them.
	clusterWaitWeights(t, cbgpWeights())
	t.Logf("(b) reals down -> route gone %s; first real started -> both next hops %s", m["(b) reals down -> route gone"], m["(b) reals back -> route back"])

	// (w) one backend down, then back: the weights on both directors.
	cbgpOneBackend(t, m)

	// (c) SIGKILL of the follower.
	conns := cbgpOpen(t, cbgpConns)
	cbgpSpread(t, "(c)", conns)
	// The signal from here, timed; then the script's kill, for what
	// systemd's ExecStopPost does (release-vips), once the route moved.
	kill := time.Now()
	if err := c.Signal(follower, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	at, gws = cbgpWait(t, "(c) "+string(follower)+" killed", cbgpDetect, cbgpWithout(follower))
	m["(c) SIGKILL -> next hop gone"] = at.Sub(kill).Round(time.Millisecond).String()
	c.Kill(t, follower)
	alive := cbgpProbe(t, conns, "after the kill")
	m["(c) conns after SIGKILL"] = fmt.Sprintf("%d/%d", alive, len(conns))
	t.Logf("(c) SIGKILL %s -> next hop gone after %s (now %v); %d of %d connections answer", follower, m["(c) SIGKILL -> next hop gone"], gws, alive, len(conns))
	if alive != len(conns) {
		t.Errorf("(c) %d of %d long-lived connections survived the kill of %s", alive, len(conns), follower)
	}
	restart := time.Now()
	c.Start(t, follower)
	at, _ = cbgpWait(t, "(c) "+string(follower)+" restarted", cbgpAnnounce, cbgpBoth)
	m["(c) restart -> announced"] = at.Sub(restart).Round(100 * time.Millisecond).String()
	cbgpSettled(t, c, follower, "(c)")
	alive = cbgpProbe(t, conns, "after the restart")
	m["(c) conns after restart"] = fmt.Sprintf("%d/%d", alive, len(conns))
	t.Logf("(c) %s restarted: announced again after %s; %d of %d connections answer", follower, m["(c) restart -> announced"], alive, len(conns))
	if alive != len(conns) {
		t.Errorf("(c) %d of %d long-lived connections survived %s's return", alive, len(conns), follower)
	}
	cbgpClose(conns)

	// (c2) the follower's link cut: only BFD can tell.
	conns = cbgpOpen(t, cbgpConns)
	via := cbgpSpread(t, "(c2)", conns)
	through := 0
	for _, h := range via {
		if h == follower {
			through++
		}
	}
	if through == 0 {
		t.Errorf("(c2) none of %d connections went through %s: no ECMP", len(conns), follower)
	}
	cut := lab.CutLink(t, follower)
	at, gws = cbgpWait(t, "(c2) "+string(follower)+"'s link cut", cbgpDetect, cbgpWithout(follower))
	m["(c2) link cut -> next hop gone"] = at.Sub(cut).Round(time.Millisecond).String()
	answered := cbgpProbeEach(t, conns, "after the link cut")
	alive, aliveThrough := 0, 0
	for i, ok := range answered {
		if ok {
			alive++
			if via[i] == follower {
				aliveThrough++
			}
		}
	}
	m["(c2) conns after link cut"] = fmt.Sprintf("%d/%d (through %s: %d/%d)", alive, len(conns), follower, aliveThrough, through)
	t.Logf("(c2) %s's link cut -> next hop gone after %s (now %v); %d of %d connections answer, %d of the %d that went through %s",
		follower, m["(c2) link cut -> next hop gone"], gws, alive, len(conns), aliveThrough, through, follower)
	if alive != len(conns) {
		t.Errorf("(c2) %d of %d long-lived connections survived the cut of %s's link (%d of the %d through it)", alive, len(conns), follower, aliveThrough, through)
	}
	cbgpSpread(t, "(c2) after the cut:", conns)
	lab.RestoreLink(t, follower)
	restored := time.Now()
	at, _ = cbgpWait(t, "(c2) "+string(follower)+"'s link restored", cbgpAnnounce, cbgpBoth)
	m["(c2) link restored -> announced"] = at.Sub(restored).Round(100 * time.Millisecond).String()
	cbgpSettled(t, c, follower, "(c2)")
	alive = cbgpProbe(t, conns, "after the link's return")
	m["(c2) conns after link restored"] = fmt.Sprintf("%d/%d", alive, len(conns))
	t.Logf("(c2) %s's link restored -> announced again after %s; %d of %d connections answer", follower, m["(c2) link restored -> announced"], alive, len(conns))
	if alive != len(conns) {
		t.Errorf("(c2) %d of %d long-lived connections survived the return of %s's link", alive, len(conns), follower)
	}
	cbgpClose(conns)

	// (d) SIGTERM of the follower: drain, then withdraw.
	router.WaitEstablished(t, 2, cbgpAnnounce)
	clusterWaitWeights(t, cbgpWeights())
	conns = cbgpOpen(t, cbgpConns)
	defer cbgpClose(conns)
	cbgpSpread(t, "(d)", conns)
	term := time.Now()
	if err := c.Signal(follower, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	at, gws = cbgpWait(t, "(d) "+string(follower)+" stopping", cbgpDrainDelay+cbgpDetect, cbgpWithout(follower))
	gone := at.Sub(term)
	m["(d) SIGTERM -> next hop gone"] = gone.Round(time.Millisecond).String()
	var closed time.Duration
	var sessionsAtGone int
	{
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		n, err := router.EstablishedSessions(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		sessionsAtGone = n
		if err := lab.Poll(cbgpDrainDelay+20*time.Second, 20*time.Millisecond, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
			defer cancel()
			n, err := router.EstablishedSessions(ctx)
			if err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("%d sessions established", n)
			}
			return nil
		}); err != nil {
			t.Fatalf("(d) %s's session did not close: %v", follower, err)
		}
		closed = time.Since(term)
	}
	m["(d) SIGTERM -> session closed"] = closed.Round(time.Millisecond).String()
	alive = cbgpProbe(t, conns, "after the planned stop")
	m["(d) conns after SIGTERM"] = fmt.Sprintf("%d/%d", alive, len(conns))
	t.Logf("(d) SIGTERM %s -> next hop gone after %v (now %v; sessions established then: %d), session closed after %v; %d of %d connections answer",
		follower, m["(d) SIGTERM -> next hop gone"], gws, sessionsAtGone, m["(d) SIGTERM -> session closed"], alive, len(conns))
	if gone >= cbgpDrainDelay {
		t.Errorf("(d) the next hop left %v after SIGTERM, not within drain_delay %v: no graceful shutdown", gone, cbgpDrainDelay)
	}
	if sessionsAtGone != 2 && closed-gone < time.Second {
		t.Errorf("(d) the session closed (%v) with the next hop (%v): the drain did not keep it up", closed, gone)
	}
	if alive != len(conns) {
		t.Errorf("(d) %d of %d long-lived connections survived the planned stop of %s", alive, len(conns), follower)
	}

	// (h) the follower started again rejoins; (d)'s connections stay open.
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		if c.Running(follower) {
			return fmt.Errorf("%s still runs", follower)
		}
		return nil
	})
	restart = time.Now()
	c.Start(t, follower)
	at, _ = cbgpWait(t, "(h) "+string(follower)+" restarted", cbgpAnnounce, cbgpBoth)
	m["(h) restart -> announced"] = at.Sub(restart).Round(100 * time.Millisecond).String()
	cbgpSettled(t, c, follower, "(h)")
	alive = cbgpProbe(t, conns, "after the rejoin")
	m["(h) conns after rejoin"] = fmt.Sprintf("%d/%d", alive, len(conns))
	t.Logf("(h) %s started again: announced after %s; %d of %d connections opened before its stop answer", follower, m["(h) restart -> announced"], alive, len(conns))
	cbgpSpread(t, "(h) after the rejoin:", conns)
	if alive != len(conns) {
		t.Errorf("(h) %d of %d long-lived connections opened before %s's stop survived its return", alive, len(conns), follower)
	}
	cbgpClose(conns)

	// (e) the follower cut off from Raft, once settled.
	cbgpSettled(t, c, follower, "(e)")
	cbgpPartition(t, follower, true)
	cutRaft := time.Now()
	at, _ = cbgpWait(t, "(e) "+string(follower)+" cut off", cbgpPartitionHold+cbgpChange, cbgpWithout(follower))
	m["(e) partition -> next hop gone"] = at.Sub(cutRaft).Round(100 * time.Millisecond).String()
	st, err := c.Status(clusterCtx(t), follower)
	if err == nil {
		t.Logf("(e) %s's view: %+v bgp %+v", follower, cbgpVIPOf(st), st.BGP)
	}
	if at.Sub(cutRaft) < cbgpPartitionHold {
		why := "its status could not be read"
		if v := cbgpVIPOf(st); err == nil && v != nil {
			why = fmt.Sprintf("it announces %v, withdrawn %q; its sessions %+v: ", v.Announced, v.Withdrawn, st.BGP)
			if v.Announced {
				why += "the router dropped its session"
			} else {
				why += "dsrd withdrew"
			}
		}
		t.Errorf("(e) %s left the route %v after the cut, before partition_hold %v: %s", follower, at.Sub(cutRaft), cbgpPartitionHold, why)
	}
	cbgpPartition(t, follower, false)
	heal := time.Now()
	at, _ = cbgpWait(t, "(e) "+string(follower)+" healed", cbgpChange, cbgpBoth)
	m["(e) heal -> announced"] = at.Sub(heal).Round(100 * time.Millisecond).String()
	t.Logf("(e) partition of %s -> next hop gone after %s (partition_hold %v); healed -> announced after %s",
		follower, m["(e) partition -> next hop gone"], cbgpPartitionHold, m["(e) heal -> announced"])

	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+": "+m[k])
	}
	t.Logf("summary: %s", strings.Join(parts, "; "))
}

// cbgpReady is clusterReady with the bgp VIP's services: one director
// holds the arp VIPs, the other follows, every real at full weight in
// every service on both; it returns the owner.
func cbgpReady(t *testing.T, c *lab.Cluster) lab.Host {
	t.Helper()
	owner := c.WaitOwner(t, "", clusterTakeover)
	clusterWaitFollower(t, c, lab.ClusterOtherDirector(owner), owner)
	clusterWaitWeights(t, cbgpWeights())
	return owner
}

// cbgpWeights: every real at full weight in every service.
func cbgpWeights() map[string]map[string]int {
	want := clusterWeightsOf(nil)
	for _, port := range []uint16{80, 9000} {
		key := fmt.Sprintf("TCP %s", netip.AddrPortFrom(cbgpVIP, port))
		want[key] = map[string]int{}
		for _, r := range clusterReals {
			want[key][netip.AddrPortFrom(r.IPv4(), port).String()] = 100
		}
	}
	return want
}

// cbgpBoth: both directors are next hops.
func cbgpBoth(g []netip.Addr) bool {
	hs, ok := bgpDirectorsOf(g)
	return ok && slices.Equal(hs, []lab.Host{lab.Dir1, lab.Dir2})
}

// cbgpWithout: the route has next hops and d is not one of them.
func cbgpWithout(d lab.Host) func([]netip.Addr) bool {
	return func(g []netip.Addr) bool {
		hs, ok := bgpDirectorsOf(g)
		return ok && len(hs) > 0 && !slices.Contains(hs, d)
	}
}

// cbgpWait waits for the router's next hops for the VIP to satisfy cond:
// every 5 ms for a detection (timeout up to 10 s), measured to the
// millisecond; every 50 ms for the longer waits (an announcement after a
// start, measured to 100 ms), which would otherwise take a fair share of
// the emulated VM's CPU from the daemons under test.
func cbgpWait(t *testing.T, what string, timeout time.Duration, cond func([]netip.Addr) bool) (time.Time, []netip.Addr) {
	t.Helper()
	interval := 5 * time.Millisecond
	if timeout > 10*time.Second {
		interval = 50 * time.Millisecond
	}
	at, gws, err := lab.WaitNextHops(cbgpVIP, timeout, interval, cond)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return at, gws
}

func cbgpVIPOf(st api.Status) *api.VIP {
	for i := range st.VIPs {
		if st.VIPs[i].Address == cbgpVIP {
			return &st.VIPs[i]
		}
	}
	return nil
}

// cbgpWaitStatus waits until d's status shows the VIP announced (and its
// session established with BFD up), or withdrawn for why.
func cbgpWaitStatus(t *testing.T, c *lab.Cluster, d lab.Host, announced bool, why string) {
	t.Helper()
	var last string
	err := lab.Poll(clusterConverge, 100*time.Millisecond, func() error {
		st, err := c.Status(clusterCtx(t), d)
		if err != nil {
			return err
		}
		v := cbgpVIPOf(st)
		if v == nil {
			return fmt.Errorf("no VIP %s in %s's status", cbgpVIP, d)
		}
		last = fmt.Sprintf("%+v bgp %+v", *v, st.BGP)
		if v.Mode != "bgp" || v.Announced != announced || (!announced && v.Withdrawn != why) {
			return fmt.Errorf("%s's VIP %s", d, last)
		}
		if announced {
			if st.BGP == nil || len(st.BGP.Peers) != 1 || st.BGP.Peers[0].State != "established" ||
				st.BGP.Peers[0].BFD != "up" || st.BGP.Peers[0].Announced != 1 {
				return fmt.Errorf("%s's BGP %+v", d, st.BGP)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("status of %s (want announced %v %s): %v", d, announced, why, err)
	}
	t.Logf("status of %s: %s", d, last)
}

// cbgpConnsByDirector counts each director's IPVS connections to svc.
func cbgpConnsByDirector(t *testing.T, svc netip.AddrPort) map[lab.Host]int {
	t.Helper()
	res := map[lab.Host]int{}
	for _, d := range lab.ClusterDirectors() {
		conns, err := lab.IPVSConns(clusterCtx(t), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			if c.Virtual == svc.String() {
				res[d]++
			}
		}
	}
	return res
}

// cbgpConn is a long-lived connection from remote to bgpecho.
type cbgpConn struct {
	c    net.Conn
	r    *bufio.Reader
	real string
}

// cbgpOpen opens n connections and reads their greetings.
func cbgpOpen(t *testing.T, n int) []*cbgpConn {
	t.Helper()
	var res []*cbgpConn
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), clusterRequestTimeout)
		nc, err := lab.Dial(ctx, lab.Remote, "tcp", netip.AddrPortFrom(cbgpVIP, 9000).String())
		cancel()
		if err != nil {
			cbgpClose(res)
			t.Fatalf("connection %d: %v", i, err)
		}
		cc := &cbgpConn{c: nc, r: bufio.NewReader(nc)}
		nc.SetReadDeadline(time.Now().Add(clusterRequestTimeout))
		line, err := cc.r.ReadString('\n')
		if err != nil {
			nc.Close()
			cbgpClose(res)
			t.Fatalf("connection %d: greeting: %v", i, err)
		}
		cc.real = strings.TrimSpace(line)
		res = append(res, cc)
	}
	return res
}

func cbgpClose(conns []*cbgpConn) {
	for _, c := range conns {
		c.c.Close()
	}
}

// cbgpSpread logs which director holds an IPVS entry of each connection
// and returns, for each, the director when exactly one does ("" if none
// or both: a connection that moved leaves its entry on the first).
func cbgpSpread(t *testing.T, phase string, conns []*cbgpConn) []lab.Host {
	t.Helper()
	svc := netip.AddrPortFrom(cbgpVIP, 9000).String()
	holders := map[netip.AddrPort][]lab.Host{}
	for _, d := range lab.ClusterDirectors() {
		entries, err := lab.IPVSConns(clusterCtx(t), d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			src, err := netip.ParseAddrPort(e.Source)
			if e.Virtual != svc || err != nil {
				continue
			}
			holders[src] = append(holders[src], d)
		}
	}
	via := make([]lab.Host, len(conns))
	byReal, byDir := map[string]int{}, map[string]int{}
	for i, c := range conns {
		byReal[c.real]++
		src, _ := netip.ParseAddrPort(c.c.LocalAddr().String())
		hs := holders[src]
		if len(hs) == 1 {
			via[i] = hs[0]
		}
		var names []string
		for _, h := range hs {
			names = append(names, string(h))
		}
		byDir[strings.Join(names, "+")]++
	}
	t.Logf("%s %d long-lived connections: reals %v, IPVS entries by director %v", phase, len(conns), byReal, byDir)
	return via
}

// cbgpProbe sends a line on every connection at once and counts the echoes
// (each bounded by clusterRequestTimeout: a flow moved to the other
// director waits for a retransmission).
func cbgpProbe(t *testing.T, conns []*cbgpConn, when string) int {
	t.Helper()
	alive := 0
	for _, ok := range cbgpProbeEach(t, conns, when) {
		if ok {
			alive++
		}
	}
	return alive
}

// cbgpProbeEach is cbgpProbe, connection by connection: whether each
// echoed. An echo comes from the real that greeted: another real would
// reset the connection.
func cbgpProbeEach(t *testing.T, conns []*cbgpConn, when string) []bool {
	t.Helper()
	var wg sync.WaitGroup
	ok := make([]bool, len(conns))
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("probe %d %d", i, time.Now().UnixNano())
			c.c.SetDeadline(time.Now().Add(clusterRequestTimeout))
			if _, err := fmt.Fprintf(c.c, "%s\n", msg); err != nil {
				t.Logf("connection %d (%s) %s: write: %v", i, c.real, when, err)
				return
			}
			line, err := c.r.ReadString('\n')
			if err != nil || strings.TrimSpace(line) != msg {
				t.Logf("connection %d (%s) %s: read %q: %v", i, c.real, when, line, err)
				return
			}
			ok[i] = true
		}()
	}
	wg.Wait()
	return ok
}

// cbgpSettled waits until d, just started or back, is settled: its
// start's burst is over (every real at full weight in every service on
// both directors) and its session is established with BFD up, announcing
// the VIP, for cbgpSettle at least, while the router routes the VIP
// through both directors. A session that flaps meanwhile starts the wait
// for cbgpSettle again (its Since moves). Bounded by cbgpAnnounce.
func cbgpSettled(t *testing.T, c *lab.Cluster, d lab.Host, phase string) {
	t.Helper()
	start := time.Now()
	clusterWaitWeights(t, cbgpWeights())
	weights := time.Since(start)
	var last string
	var since time.Time
	err := lab.Poll(cbgpAnnounce, 200*time.Millisecond, func() error {
		gws, err := lab.RouterNextHops(cbgpVIP)
		if err != nil {
			return err
		}
		if !cbgpBoth(gws) {
			last = fmt.Sprintf("the router's next hops %v", gws)
			return errors.New(last)
		}
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		st, err := c.Status(ctx, d)
		cancel()
		if err != nil {
			return err
		}
		v := cbgpVIPOf(st)
		if v == nil || !v.Announced || st.BGP == nil || len(st.BGP.Peers) != 1 {
			last = fmt.Sprintf("%s's VIP %+v bgp %+v", d, v, st.BGP)
			return errors.New(last)
		}
		p := st.BGP.Peers[0]
		if p.State != "established" || p.BFD != "up" || p.Announced != 1 || p.Since.IsZero() {
			last = fmt.Sprintf("%s's session %+v", d, p)
			return errors.New(last)
		}
		if up := time.Since(p.Since); up < cbgpSettle {
			last = fmt.Sprintf("%s's session up for %v", d, up.Round(100*time.Millisecond))
			return errors.New(last)
		}
		since = p.Since
		return nil
	})
	if err != nil {
		t.Fatalf("%s %s not settled within %v: %v (last: %s)", phase, d, cbgpAnnounce, err, last)
	}
	t.Logf("%s %s settled after %v (weights after %v; its session up since %s)", phase, d,
		time.Since(start).Round(100*time.Millisecond), weights.Round(100*time.Millisecond), since.Format("15:04:05"))
}

// cbgpPartition drops (or stops dropping) d's Raft traffic, port 7946 both
// ways, in d's namespace.
func cbgpPartition(t *testing.T, d lab.Host, cut bool) {
	t.Helper()
	nft := lab.RequireProgram(t, "nft", "nftables")
	const table = "dsrd_lab_partition"
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	if !cut {
		if _, err := lab.InNS(ctx, d, nft, "delete", "table", "inet", table); err != nil {
			t.Fatal(err)
		}
		return
	}
	rules := fmt.Sprintf(`table inet %[1]s {
	chain in {
		type filter hook input priority -300; policy accept;
		tcp dport 7946 drop
		tcp sport 7946 drop
	}
	chain out {
		type filter hook output priority -300; policy accept;
		tcp dport 7946 drop
		tcp sport 7946 drop
	}
}
`, table)
	if _, err := lab.RunInput(ctx, strings.NewReader(rules), "ip", "netns", "exec", string(d), nft, "-f", "-"); err != nil {
		t.Fatalf("partition %s: %v", d, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		defer cancel()
		_, _ = lab.InNS(ctx, d, nft, "delete", "table", "inet", table)
	})
}

// cbgpWeightPoll is how often cbgpWeightsReach reads a director's weights:
// one netlink dump per service, a few milliseconds under TCG.
const cbgpWeightPoll = 10 * time.Millisecond

// cbgpWeightSeen is when a director's IPVS was first seen with a weight:
// At, the first read that found it; Before, the read before it (the
// change happened between the two); MaxGap, the longest time between two
// reads (the resolution).
type cbgpWeightSeen struct {
	At, Before time.Time
	MaxGap     time.Duration
	Reads      int
}

// cbgpWeightsReach reads, on each director of dirs at once, the weight of
// rs's destination in every service of svcs (over netlink, in-process),
// until it is want in all of them, within timeout, and returns when each
// director got there.
func cbgpWeightsReach(t *testing.T, dirs []lab.Host, svcs []netip.AddrPort, rs lab.Host, want int, timeout time.Duration) map[lab.Host]cbgpWeightSeen {
	t.Helper()
	type result struct {
		d    lab.Host
		seen cbgpWeightSeen
		err  error
	}
	ch := make(chan result, len(dirs))
	for _, d := range dirs {
		go func() {
			res := result{d: d}
			defer func() { ch <- res }()
			ctx, cancel := context.WithTimeout(context.Background(), timeout+lab.CommandTimeout)
			defer cancel()
			k, err := ipvs.OpenNetlink(ctx, "/run/netns/"+string(d))
			if err != nil {
				res.err = err
				return
			}
			defer k.Close()
			deadline := time.Now().Add(timeout)
			var last time.Time
			var got []string
			for {
				now := time.Now()
				if !last.IsZero() {
					res.seen.MaxGap = max(res.seen.MaxGap, now.Sub(last))
				}
				res.seen.Reads++
				ok := true
				got = got[:0]
				for _, svc := range svcs {
					addr := rs.IPv4()
					if svc.Addr().Is6() {
						addr = rs.IPv6()
					}
					dests, err := k.GetDestinations(ctx, ipvs.NewServiceKey(ipvs.TCP, svc))
					if err != nil {
						res.err = fmt.Errorf("destinations of %s on %s: %w", svc, d, err)
						return
					}
					w := -1
					for _, dst := range dests {
						if dst.Key.Addr == addr && dst.Key.Port == svc.Port() {
							w = dst.Weight
						}
					}
					got = append(got, fmt.Sprintf("%s: %d", svc, w))
					ok = ok && w == want
				}
				if ok {
					res.seen.At, res.seen.Before = now, last
					return
				}
				if now.After(deadline) {
					res.err = fmt.Errorf("the weight of %s on %s is not %d after %v: %v", rs, d, want, timeout, got)
					return
				}
				last = now
				time.Sleep(cbgpWeightPoll)
			}
		}()
	}
	res := map[lab.Host]cbgpWeightSeen{}
	var errs []error
	for range dirs {
		r := <-ch
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		res[r.d] = r.seen
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return res
}

// cbgpWeightSpread is how far apart the directors reached the weight
// (latest At minus earliest At) and the reads' resolution (the longest
// gap between two reads of any director: each At may be that late).
func cbgpWeightSpread(seen map[lab.Host]cbgpWeightSeen) (spread, resolution time.Duration) {
	var first, last time.Time
	for _, s := range seen {
		if first.IsZero() || s.At.Before(first) {
			first = s.At
		}
		if s.At.After(last) {
			last = s.At
		}
		resolution = max(resolution, s.MaxGap)
	}
	return last.Sub(first), resolution
}

// cbgpOneBackend is (w): rs1's server stopped, its weight in bgpweb and
// bgpecho goes to 0 on both directors within one health-check interval
// of each other; started again, back to 100 alike. The bound is the
// issue's ("within one check interval of each other"), plus the reads'
// resolution: a director's At is up to one gap between reads after its
// change.
func cbgpOneBackend(t *testing.T, m map[string]string) {
	t.Helper()
	const rs = lab.RS1
	svcs := []netip.AddrPort{netip.AddrPortFrom(cbgpVIP, 80), netip.AddrPortFrom(cbgpVIP, 9000)}
	bound := clusterOptions.CheckInterval
	for _, step := range []struct {
		name   string
		weight int
		do     func()
	}{
		{"down", 0, func() { lab.ClusterBackendStop(t, rs) }},
		{"back", 100, func() { lab.ClusterBackendStart(t, rs) }},
	} {
		start := time.Now()
		step.do()
		seen := cbgpWeightsReach(t, lab.ClusterDirectors(), svcs, rs, step.weight, cbgpChange)
		spread, res := cbgpWeightSpread(seen)
		var parts []string
		for _, d := range lab.ClusterDirectors() {
			parts = append(parts, fmt.Sprintf("%s %v (%d reads)", d, seen[d].At.Sub(start).Round(time.Millisecond), seen[d].Reads))
		}
		key := fmt.Sprintf("(w) %s %s -> weight %d", rs, step.name, step.weight)
		m[key] = fmt.Sprintf("%s; spread %v", strings.Join(parts, ", "), spread.Round(time.Millisecond))
		t.Logf("%s on every director: %s; between directors %v (reads every %v at worst; the bound: check interval %v + that)",
			key, strings.Join(parts, ", "), spread.Round(time.Millisecond), res.Round(time.Millisecond), bound)
		if spread > bound+res {
			t.Errorf("%s: the directors reached it %v apart, more than one check interval (%v) + the reads' resolution (%v)", key, spread, bound, res)
		}
	}
	clusterWaitWeights(t, cbgpWeights())
}
