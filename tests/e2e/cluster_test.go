//go:build vmtest && vmcluster

// The cluster end-to-end tests run with make test (make e2e) and alone with
// make e2e-cluster. Their build tag keeps them out of a plain
// tests/vm/e2e run: about 2.5 minutes under TCG.

package e2e

// A real dsrd cluster in the lab (tests/vm/cluster: realserver agents in
// rs1-rs3, directors dir1 and dir2, the witness dir3), real IPVS, real ARP
// and Raft over the lab's bridge. Each test brings the lab and the cluster
// up and takes them down; a test's phases (subtests) share its cluster, each
// starting from a ready one (clusterReady): bringing the lab and a cluster up
// costs 15 to 30 s under TCG. The directors' VIPs are 203.0.113.10 and
// 2001:db8:113::10; the services are web (tcp/80, http check) and echo
// (tcp/9000, tcp check) on the first, web6 (tcp/80, http check) on the
// second, all mh with mh-port over rs1-rs3.
//
// Readings that the tests poll are in-process (netlink in the namespace,
// the API socket, AF_PACKET): under TCG one exec costs 50 ms to seconds,
// and ip neigh from the client must not send anything.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// Bounds of the cluster tests under TCG on a shared machine. With the
// timings of clusterOptions a failover takes a heartbeat timeout (3 to 6 s),
// an election and a barrier; a health verdict two check intervals (1 s).
// The bounds are several times that: a test that needs them is broken.
const (
	// clusterTakeover bounds a new director taking the VIP.
	clusterTakeover = 30 * time.Second
	// clusterConverge bounds a change (health, admin, configuration)
	// reaching both directors' IPVS.
	clusterConverge = 30 * time.Second
	// clusterRequestTimeout bounds one request or echo through the VIP.
	// A flow caught by a failover waits for a TCP retransmission
	// (SYN: 1 s, then 2 s) to reach the new owner.
	clusterRequestTimeout = 10 * time.Second
	// clusterWatchInterval is how often the VIP holders are polled.
	clusterWatchInterval = 5 * time.Millisecond
	// clusterSettle is how long after a repair the VIP must stay put.
	clusterSettle = 6 * time.Second
)

var clusterVIP = lab.ClusterVIP

// clusterVIP6 is the IPv6 VIP, of the web6 service.
var clusterVIP6 = lab.ClusterVIP6

// clusterOptions are the cluster's timings in these tests. dsrd's Raft
// defaults (heartbeat and election 500 ms, lease 250 ms) are for real
// machines: under TCG on a shared host, heartbeats measured 250 to 700 ms
// late (load 5 to 11), so the leader lost its lease and leadership moved
// every 10 to 30 s, with no fault injected. Four times the defaults was
// not enough either (at a load of 10 a new leader missed its 1 s lease on
// a reachable witness). Six times the defaults, in the same proportions
// (lease half the heartbeat timeout, so that an isolated leader steps down
// before a follower may call an election), keep the leader stable. Checks
// every second instead of 500 ms halve the load the health checks put on
// the VM (each director checks six reals).
var clusterOptions = lab.ClusterOptions{
	Heartbeat:     3 * time.Second,
	Election:      3 * time.Second,
	Lease:         1500 * time.Millisecond,
	CheckInterval: time.Second,
}

// clusterReals are the real servers of both services.
var clusterReals = []lab.Host{lab.RS1, lab.RS2, lab.RS3}

// clusterRealMACs maps the reals' MACs to their hosts.
func clusterRealMACs() map[string]lab.Host {
	m := map[string]lab.Host{}
	for _, h := range clusterReals {
		m[h.MAC()] = h
	}
	return m
}

// clusterCtx is a context bounded by lab.CommandTimeout.
func clusterCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	t.Cleanup(cancel)
	return ctx
}

// clusterHTTP is the client's HTTP client: a new connection per request.
func clusterHTTP() *http.Client { return lab.HTTPClient(lab.Client, clusterRequestTimeout) }

// clusterRequests sends n requests to the web service and counts answers by
// backend; any failure fails the test.
func clusterRequests(t *testing.T, n int) map[string]int {
	t.Helper()
	return clusterRequestsTo(t, clusterVIP, n)
}

// clusterRequestsTo sends n requests to port 80 of vip (web's or web6's)
// and counts answers by backend; any failure fails the test.
func clusterRequestsTo(t *testing.T, vip netip.Addr, n int) map[string]int {
	t.Helper()
	client := clusterHTTP()
	src := lab.Client.IPv4()
	if vip.Is6() {
		src = lab.Client.IPv6()
	}
	seen := map[string]int{}
	for i := range n {
		name, from, err := drGet(client, vip)
		if err != nil {
			t.Fatalf("request %d/%d to %s: %v%s", i+1, n, drURL(vip), err, clusterRefusedHint(err))
		}
		if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() != src {
			t.Errorf("request %d: the backend saw the client as %q, want %s:PORT", i+1, from, src)
		}
		seen[name]++
	}
	return seen
}

// clusterRefusedHint explains a refused connection with both directors'
// IPVS weights now: IPVS answers a connection it cannot schedule with ICMP
// port unreachable, which the client reports as "connection refused", and
// mh without mh-fallback cannot schedule the connections that hash to a
// real at weight 0 (a failed check, a drain, a check not risen yet).
func clusterRefusedHint(err error) string {
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return ""
	}
	var b strings.Builder
	b.WriteString(" (IPVS weights now:")
	for _, d := range lab.ClusterDirectors() {
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		w, err := lab.ClusterIPVSWeights(ctx, d)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, " %s: %v;", d, err)
			continue
		}
		fmt.Fprintf(&b, " %s %v;", d, w[fmt.Sprintf("TCP %s:80", clusterVIP)])
	}
	b.WriteString(" mh without mh-fallback refuses the connections that hash to a real at weight 0)")
	return b.String()
}

// clusterTryRequests sends n requests to the web service and counts
// answers by backend, failures by error, and the ICMP packets the client
// received meanwhile by sender MAC (an IPVS that cannot schedule a
// connection answers with ICMP port unreachable).
func clusterTryRequests(t *testing.T, n int) (seen, failed, icmp map[string]int) {
	t.Helper()
	capt, err := lab.StartClusterCapture(lab.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ps, err := capt.Stop()
		if err != nil {
			t.Error(err)
		}
		icmp = map[string]int{}
		for _, p := range ps {
			if !p.Outgoing && p.EtherType == syscall.ETH_P_IP && p.Proto == syscall.IPPROTO_ICMP {
				icmp[fmt.Sprintf("%s (%s)", p.Src, p.IPSrc)]++
			}
		}
	}()
	client := clusterHTTP()
	seen, failed = map[string]int{}, map[string]int{}
	for range n {
		name, _, err := drGet(client, clusterVIP)
		if err != nil {
			msg := err.Error()
			if i := strings.LastIndex(msg, ": "); i >= 0 {
				msg = msg[i+2:]
			}
			failed[msg]++
			continue
		}
		seen[name]++
	}
	return seen, failed, nil
}

// clusterStatus reads n's status, failing the test on error.
func clusterStatus(t *testing.T, c *lab.Cluster, n lab.Host) api.Status {
	t.Helper()
	st, err := c.Status(clusterCtx(t), n)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// clusterWantHolders fails unless exactly the directors want hold the VIP.
func clusterWantHolders(t *testing.T, c *lab.Cluster, want ...lab.Host) {
	t.Helper()
	hs, err := c.Holders()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(hs, want) {
		t.Errorf("the VIP is held by %v, want %v", hs, want)
	}
}

// clusterWaitFollower waits until n is a Raft follower of leader, in
// BACKUP, holding no VIP, with its IPVS on the cluster's generation.
func clusterWaitFollower(t *testing.T, c *lab.Cluster, n, leader lab.Host) api.Status {
	t.Helper()
	var st api.Status
	lab.Eventually(t, clusterTakeover, 100*time.Millisecond, func() error {
		var err error
		st, err = c.Status(clusterCtx(t), n)
		if err != nil {
			return err
		}
		if st.Raft.State != "Follower" || st.Raft.LeaderID != string(leader) || st.VRRPState != "BACKUP" ||
			st.Generation == 0 || st.RunningGeneration != st.Generation || !st.Reconcile.OK {
			return fmt.Errorf("%s: raft %s (leader %q), vrrp %s, generation %d running %d, reconcile %+v; want a follower of %s in BACKUP on the cluster's generation",
				n, st.Raft.State, st.Raft.LeaderID, st.VRRPState, st.Generation, st.RunningGeneration, st.Reconcile, leader)
		}
		for _, v := range st.VIPs {
			// A bgp VIP is held (on lo) by every ready director.
			if v.Held && v.Mode != "bgp" {
				return fmt.Errorf("%s reports holding %s", n, v.Address)
			}
		}
		return nil
	})
	return st
}

// clusterStart brings the lab and the cluster up (down at the test's end)
// and waits until it is ready; it returns the VIP owner.
func clusterStart(t *testing.T) (*lab.Cluster, lab.Host) {
	t.Helper()
	c := lab.ClusterUp(t, clusterOptions)
	return c, clusterReady(t, c)
}

// clusterReady waits until both directors run, one holds the VIP and the
// other follows it, and both have every real at full weight (the checks
// have risen: tests/vm/cluster up only waits for the VIP); it returns the
// owner.
func clusterReady(t *testing.T, c *lab.Cluster) lab.Host {
	t.Helper()
	for _, d := range lab.ClusterDirectors() {
		if !c.Running(d) {
			c.Start(t, d)
		}
	}
	owner := c.WaitOwner(t, "", clusterTakeover)
	clusterWaitFollower(t, c, lab.ClusterOtherDirector(owner), owner)
	clusterWaitWeights(t, clusterWeightsOf(nil))
	return owner
}

// clusterSteady checks, every 20 ms until the time until, that exactly
// owner holds the VIP.
func clusterSteady(t *testing.T, c *lab.Cluster, owner lab.Host, until time.Time) {
	t.Helper()
	for time.Now().Before(until) {
		hs, err := c.Holders()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(hs, []lab.Host{owner}) {
			t.Errorf("the VIP is held by %v, want only %s", hs, owner)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// clusterWaitNeighbour waits until the client's neighbour entry for vip
// holds mac, reading it over netlink (the client sends nothing), and
// returns how long that took.
func clusterWaitNeighbour(t *testing.T, c *lab.Cluster, vip netip.Addr, mac string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	lab.Eventually(t, timeout, 10*time.Millisecond, func() error {
		got, state, ok, err := c.Neighbour(lab.Client, vip)
		if err != nil {
			return err
		}
		if !ok || got != mac {
			return fmt.Errorf("client's neighbour entry for %s: %q (%s, present %v), want %s", vip, got, state, ok, mac)
		}
		return nil
	})
	return time.Since(start)
}

// clusterWeights reads both directors' IPVS weights (ipvsadm -Ln).
func clusterWeights(t *testing.T) map[lab.Host]map[string]map[string]int {
	t.Helper()
	out := map[lab.Host]map[string]map[string]int{}
	for _, d := range lab.ClusterDirectors() {
		w, err := lab.ClusterIPVSWeights(clusterCtx(t), d)
		if err != nil {
			t.Fatal(err)
		}
		out[d] = w
	}
	return out
}

// clusterWeightsOf is what both directors' IPVS should hold: every real of
// the three services (web, echo, web6) at weight 100 except those in except
// (keyed "192.0.2.22:80", "[2001:db8::22]:80").
func clusterWeightsOf(except map[string]int) map[string]map[string]int {
	want := map[string]map[string]int{}
	for _, svc := range []struct {
		vip  netip.Addr
		port uint16
	}{{clusterVIP, 80}, {clusterVIP, 9000}, {clusterVIP6, 80}} {
		key := fmt.Sprintf("TCP %s", netip.AddrPortFrom(svc.vip, svc.port))
		want[key] = map[string]int{}
		for _, r := range clusterReals {
			addr := r.IPv4()
			if svc.vip.Is6() {
				addr = r.IPv6()
			}
			d := netip.AddrPortFrom(addr, svc.port).String()
			w, ok := except[d]
			if !ok {
				w = 100
			}
			want[key][d] = w
		}
	}
	return want
}

// clusterWaitWeights waits until both directors' IPVS (ipvsadm -Ln) holds
// want, and returns how long that took.
func clusterWaitWeights(t *testing.T, want map[string]map[string]int) time.Duration {
	t.Helper()
	return clusterWaitWeightsWithin(t, want, clusterConverge)
}

// clusterWaitWeightsWithin is clusterWaitWeights with its own bound.
func clusterWaitWeightsWithin(t *testing.T, want map[string]map[string]int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	lab.Eventually(t, timeout, 100*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			got, err := lab.ClusterIPVSWeights(clusterCtx(t), d)
			if err != nil {
				return err
			}
			if !maps.EqualFunc(got, want, maps.Equal) {
				return fmt.Errorf("IPVS weights on %s: %v, want %v", d, got, want)
			}
		}
		return nil
	})
	return time.Since(start)
}

// TestClusterDirectRouting: requests through the VIP reach every backend
// through the VIP owner, the client resolves the VIP to the owner's MAC,
// and the replies never pass the director: a capture on the owner's eth0
// sees every request packet come in from the client and leave towards a
// real (same IP header, a real's MAC), and no packet from the VIP at all,
// while the client's capture sees every reply arrive from a real's MAC.
func TestClusterDirectRouting(t *testing.T) {
	lab.Require(t)
	// Both directors program IPVS, leader or not: the standby is warm.
	c, owner := clusterStart(t)
	follower := lab.ClusterOtherDirector(owner)

	dcap, err := lab.StartClusterCapture(owner)
	if err != nil {
		t.Fatal(err)
	}
	ccap, err := lab.StartClusterCapture(lab.Client)
	if err != nil {
		dcap.Stop()
		t.Fatal(err)
	}
	dBefore, err1 := c.LinkStats(owner)
	cBefore, err2 := c.LinkStats(lab.Client)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}

	const requests = 30
	seen := clusterRequests(t, requests)
	for _, r := range clusterReals {
		if seen[string(r)] == 0 {
			t.Errorf("no answer from %s: answers by backend %v", r, seen)
		}
	}
	// The same over the IPv6 VIP (web6).
	seen6 := clusterRequestsTo(t, clusterVIP6, requests)
	for _, r := range clusterReals {
		if seen6[string(r)] == 0 {
			t.Errorf("no answer from %s over IPv6: answers by backend %v", r, seen6)
		}
	}

	// The last packets of each connection (the client's final ACK) may
	// still be on their way: wait until the director has seen as many
	// packets to the VIP as the client sent.
	toVIP := func(p lab.ClusterPacket) bool {
		return p.EtherType == syscall.ETH_P_IP && p.IPDst == clusterVIP && p.DstPort == 80
	}
	fromVIP := func(p lab.ClusterPacket) bool {
		return p.EtherType == syscall.ETH_P_IP && p.IPSrc == clusterVIP
	}
	count := func(ps []lab.ClusterPacket, f func(lab.ClusterPacket) bool) int {
		n := 0
		for _, p := range ps {
			if f(p) {
				n++
			}
		}
		return n
	}
	clientSent := func(p lab.ClusterPacket) bool { return p.Outgoing && toVIP(p) }
	dirIn := func(p lab.ClusterPacket) bool { return !p.Outgoing && toVIP(p) }
	dirOut := func(p lab.ClusterPacket) bool { return p.Outgoing && toVIP(p) }
	lab.Eventually(t, 10*time.Second, 50*time.Millisecond, func() error {
		sent, in, out := count(ccap.Packets(), clientSent), count(dcap.Packets(), dirIn), count(dcap.Packets(), dirOut)
		if sent == 0 || in != sent || out != in {
			return fmt.Errorf("client sent %d packets to the VIP, %s received %d and forwarded %d", sent, owner, in, out)
		}
		return nil
	})
	dAfter, err1 := c.LinkStats(owner)
	cAfter, err2 := c.LinkStats(lab.Client)
	dps, err3 := dcap.Stop()
	cps, err4 := ccap.Stop()
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		t.Fatal(err)
	}

	realMACs := clusterRealMACs()
	var dirIns, dirOuts, replies int
	for _, p := range dps {
		switch {
		case fromVIP(p):
			t.Errorf("a packet from the VIP passed %s (replies must go from the real to the client): %+v", owner, p)
		case dirIn(p):
			dirIns++
			if p.Src != lab.Client.MAC() || p.IPSrc != lab.Client.IPv4() {
				t.Errorf("%s received a packet for the VIP not from the client: %+v", owner, p)
			}
		case dirOut(p):
			dirOuts++
			// DR: only the destination MAC is rewritten.
			if _, ok := realMACs[p.Dst]; !ok || p.Src != owner.MAC() || p.IPSrc != lab.Client.IPv4() {
				t.Errorf("%s forwarded a packet for the VIP other than to a real's MAC with the client's source: %+v", owner, p)
			}
		}
	}
	repliesBy := map[string]int{}
	for _, p := range cps {
		if p.Outgoing || !fromVIP(p) {
			continue
		}
		replies++
		h, ok := realMACs[p.Src]
		if !ok {
			t.Errorf("the client received a packet from the VIP through %s, not from a real: %+v", p.Src, p)
			continue
		}
		repliesBy[string(h)]++
	}
	if replies == 0 || dirIns == 0 || dirOuts != dirIns {
		t.Errorf("%s saw %d packets for the VIP come in and forwarded %d; the client received %d from the VIP", owner, dirIns, dirOuts, replies)
	}
	dDelta, cDelta := dAfter.Sub(dBefore), cAfter.Sub(cBefore)
	t.Logf("%d requests: answers %v; %s received %d request packets and forwarded %d, saw 0 replies; the client received %d reply packets straight from the reals %v",
		requests, seen, owner, dirIns, dirOuts, replies, repliesBy)
	t.Logf("interface counters over the requests (they include Raft and health-check traffic): %s eth0 %+v, client eth0 %+v", owner, dDelta, cDelta)

	// The client resolved the VIP to the owner, the only host answering ARP.
	mac, state, ok, err := c.Neighbour(lab.Client, clusterVIP)
	if err != nil {
		t.Fatal(err)
	}
	if !ok || mac != owner.MAC() {
		t.Errorf("client's neighbour entry for the VIP: %q (%s), want %s's %s", mac, state, owner, owner.MAC())
	}
	macs, err := lab.ARPProbe(lab.Client, clusterVIP, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(macs, []string{owner.MAC()}) {
		t.Errorf("ARP answers for the VIP: %v, want only %s's %s", macs, owner, owner.MAC())
	}
	clusterWantHolders(t, c, owner)

	// IPVS itself: inbound packets counted, no outbound one (DR).
	key := fmt.Sprintf("TCP %s:80", clusterVIP)
	lab.Eventually(t, 10*time.Second, 250*time.Millisecond, func() error {
		all, err := lab.IPVSStatsOf(clusterCtx(t), owner)
		if err != nil {
			return err
		}
		st := all[key].IPVSStats
		if st.Conns < requests || st.InPkts == 0 || st.OutPkts != 0 {
			return fmt.Errorf("IPVS counters of %s on %s: %+v; want %d connections, inbound packets and no outbound one", key, owner, st, requests)
		}
		return nil
	})
	// The standby saw none of it.
	all, err := lab.IPVSStatsOf(clusterCtx(t), follower)
	if err != nil {
		t.Fatal(err)
	}
	if st := all[key].IPVSStats; st.Conns != 0 {
		t.Errorf("the standby %s balanced connections: %+v", follower, st)
	}

	// The metrics say the same, from the kernel's own counters: the owner
	// leads, holds the VIP and forwarded packets to every real of web; the
	// standby holds nothing and forwarded nothing; no packet went out
	// through either (DR).
	vip := fmt.Sprintf(`vip="%s"`, clusterVIP)
	for _, h := range []lab.Host{owner, follower} {
		m := clusterMetrics(t, h)
		clusterMonitoring(t, c, h, m)
		lead, owned := 0.0, 1.0
		if h == owner {
			lead = 1
		} else {
			owned = 0
		}
		if v, ok := m.value("dsrd_raft_leader"); !ok || v != lead {
			t.Errorf("%s: dsrd_raft_leader %v (present %v), want %v", h, v, ok, lead)
		}
		if v, ok := m.value("dsrd_vip_owned", vip); !ok || v != owned {
			t.Errorf("%s: dsrd_vip_owned{%s} %v (present %v), want %v", h, vip, v, ok, owned)
		}
		for _, r := range clusterReals {
			real := fmt.Sprintf(`real="%s:80"`, r.IPv4())
			if w, ok := m.value("dsrd_real_weight", `service="web"`, real); !ok || w <= 0 {
				t.Errorf("%s: dsrd_real_weight{web,%s} %v (present %v), want > 0", h, r, w, ok)
			}
			in, _ := m.value("dsrd_real_packets_in_total", `service="web"`, real)
			out, _ := m.value("dsrd_real_packets_out_total", `service="web"`, real)
			if (h == owner) != (in > 0) || out != 0 {
				t.Errorf("%s: real %s forwarded %v packets in, %v out; want in > 0 only on the owner %s, out 0", h, r, in, out, owner)
			}
		}
	}
}

// clusterMonitoring checks, on h's metrics listener, what operators are
// given to watch it: every metric the shipped alerting rules and dashboard
// (packaging/monitoring) name is in the scrape m, but those of features
// this lab does not run (bgp), and the status page at / lists every
// service and real of h's status.
func clusterMonitoring(t *testing.T, c *lab.Cluster, h lab.Host, m clusterMetricLines) {
	t.Helper()
	var names []string
	for _, f := range []string{"dsrd-alerts.yml", "dsrd-dashboard.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "monitoring", f))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, regexp.MustCompile(`\bdsrd_[a-z_]+`).FindAllString(string(b), -1)...)
	}
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		if strings.HasPrefix(n, "dsrd_bgp_") || n == "dsrd_vip_announced" || strings.HasSuffix(n, "_bucket") ||
			strings.HasPrefix(n, "dsrd_ipvs_sync_") || strings.HasPrefix(n, "dsrd_admission_") {
			continue // no bgp, sync or admission in this lab's start; histograms are checked by their name
		}
		if !slices.ContainsFunc(m, func(l string) bool {
			return strings.HasPrefix(l, n+"{") || strings.HasPrefix(l, n+" ") || strings.HasPrefix(l, n+"_bucket{")
		}) {
			t.Errorf("%s: %s, named by packaging/monitoring, is not in the scrape", h, n)
		}
	}

	st, err := c.Status(clusterCtx(t), h)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(clusterCtx(t), http.MethodGet, "http://127.0.0.1:9796/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := lab.HTTPClient(h, 10*time.Second).Do(req)
	if err != nil {
		t.Fatalf("%s's status page: %v", h, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s's status page: %d, %v", h, resp.StatusCode, err)
	}
	page := string(body)
	for _, svc := range st.Services {
		if !strings.Contains(page, `data-service="`+svc.Key+`"`) {
			t.Errorf("%s's status page lacks service %s", h, svc.Key)
		}
		for _, r := range svc.Reals {
			if key := svc.Key + "/" + netip.AddrPortFrom(r.Address, r.Port).String(); !strings.Contains(page, `data-real="`+key+`"`) {
				t.Errorf("%s's status page lacks real %s", h, key)
			}
		}
	}
}

// clusterMetricLines is a scrape of dsrd's /metrics, as text lines.
type clusterMetricLines []string

// value returns the value of the first sample of metric name whose labels
// contain every one of labels (`key="value"`).
func (m clusterMetricLines) value(name string, labels ...string) (float64, bool) {
	for _, l := range m {
		head, val, ok := strings.Cut(l, " ")
		if !ok || (head != name && !strings.HasPrefix(head, name+"{")) {
			continue
		}
		match := true
		for _, want := range labels {
			if !strings.Contains(head, want) {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		return f, err == nil
	}
	return 0, false
}

// clusterMetrics scrapes h's metrics endpoint (127.0.0.1:9796 in h's
// namespace, as tests/vm/cluster configures it).
func clusterMetrics(t *testing.T, h lab.Host) clusterMetricLines {
	t.Helper()
	req, err := http.NewRequestWithContext(clusterCtx(t), http.MethodGet, "http://127.0.0.1:9796/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := lab.HTTPClient(h, 10*time.Second).Do(req)
	if err != nil {
		t.Fatalf("scrape %s's metrics: %v", h, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s's metrics: status %d, %v", h, resp.StatusCode, err)
	}
	var lines clusterMetricLines
	for l := range strings.Lines(string(body)) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// clusterARPFrom reports whether p is an ARP packet announcing the VIP
// from mac (a gratuitous ARP or a reply).
func clusterARPFrom(p lab.ClusterPacket, mac string) bool {
	return p.EtherType == syscall.ETH_P_ARP && p.ARPSender == clusterVIP && p.ARPSenderMAC == mac
}

// TestClusterOwnerCrash kills the VIP owner's dsrd, twice on one cluster:
// first as a crash that systemd cleans up after, then without the cleanup.
func TestClusterOwnerCrash(t *testing.T) {
	lab.Require(t)
	c, _ := clusterStart(t)
	t.Run("kill", func(t *testing.T) { clusterKillOwner(t, c) })
	// The killed director is back as a follower: the cluster is whole.
	t.Run("crash-without-release", func(t *testing.T) { clusterCrashOwner(t, c) })
}

// clusterKillOwner kills the VIP owner's dsrd as a crash that systemd
// cleans up after (SIGKILL, then ExecStopPost's release-vips): the other
// director takes the VIP, and its gratuitous ARP moves the client's
// neighbour entry before the client sends anything; new connections work;
// started again, the killed director follows.
func clusterKillOwner(t *testing.T, c *lab.Cluster) {
	old := clusterReady(t, c)
	next := lab.ClusterOtherDirector(old)

	// The client knows both VIPs as old's MAC.
	clusterRequests(t, 3)
	clusterRequestsTo(t, clusterVIP6, 3)
	for _, vip := range []netip.Addr{clusterVIP, clusterVIP6} {
		if mac, state, _, err := c.Neighbour(lab.Client, vip); err != nil || mac != old.MAC() {
			t.Fatalf("client's neighbour entry for %s before the kill: %q (%s), %v; want %s", vip, mac, state, err, old.MAC())
		}
	}

	capt, err := lab.StartClusterCapture(lab.Client)
	if err != nil {
		t.Fatal(err)
	}
	nextLog := c.LogSize(next)
	start := time.Now()
	c.Kill(t, old)
	killed := time.Since(start)
	if hs, err := c.Holders(); err != nil || slices.Contains(hs, old) {
		t.Errorf("after kill (with release-vips) the VIP is held by %v (%v); want not by %s", hs, err, old)
	}
	// Nothing from the client until its entries have moved.
	took := clusterWaitNeighbour(t, c, clusterVIP, next.MAC(), clusterTakeover)
	took6 := clusterWaitNeighbour(t, c, clusterVIP6, next.MAC(), clusterTakeover)
	packets, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	garps, nas := 0, 0
	for _, p := range packets {
		switch {
		case p.Outgoing && p.EtherType == syscall.ETH_P_ARP && p.ARPTarget == clusterVIP && (p.Dst == "ff:ff:ff:ff:ff:ff" || p.Dst == next.MAC()):
			// A unicast probe to old's MAC (an entry in PROBE) cannot
			// be answered by next; a broadcast or a probe to next could.
			t.Errorf("the client asked for the VIP before its entry moved (the move must come from the new owner's announcement): %+v", p)
		case p.Outgoing && p.EtherType == syscall.ETH_P_IP && p.IPDst == clusterVIP && (p.TCPFlags&0x02 != 0 || p.Dst == next.MAC()):
			// The last packets of the earlier requests' connections
			// (an ACK of a late FIN) may still go out to old's MAC.
			t.Errorf("the client opened a connection to the VIP, or reached next, before its entry moved: %+v", p)
		case !p.Outgoing && clusterARPFrom(p, next.MAC()):
			garps++
		case p.Outgoing && p.EtherType == syscall.ETH_P_IPV6 && p.ICMPv6Type == 135 && p.NDTarget == clusterVIP6:
			t.Errorf("the client solicited %s before its entry moved (the move must come from the new owner's advertisement): %+v", clusterVIP6, p)
		case p.Outgoing && p.EtherType == syscall.ETH_P_IPV6 && p.IPDst == clusterVIP6 && (p.TCPFlags&0x02 != 0 || p.Dst == next.MAC()):
			t.Errorf("the client opened a connection to %s, or reached next, before its entry moved: %+v", clusterVIP6, p)
		case !p.Outgoing && p.Src == next.MAC() && p.ICMPv6Type == 136 && p.NDTarget == clusterVIP6:
			nas++
		}
	}
	if garps == 0 {
		t.Errorf("no ARP announcement of the VIP from %s reached the client", next)
	}
	if nas == 0 {
		t.Errorf("no unsolicited neighbour advertisement of %s from %s reached the client", clusterVIP6, next)
	}
	t.Logf("kill of %s (with release-vips) took %v; the client's entries moved to %s %v (IPv4, %d ARP announcements) and %v (IPv6, %d advertisements) later",
		old, killed.Round(time.Millisecond), next, took.Round(time.Millisecond), garps, took6.Round(time.Millisecond), nas)

	if got := c.WaitOwner(t, old, clusterTakeover); got != next {
		t.Fatalf("new owner %s, want %s", got, next)
	}
	// release-vips told next the leader was gone, and next stood for
	// election at once rather than wait for its heartbeat timeout.
	if l, err := c.LogSince(next, nextLog); err != nil || !strings.Contains(l, "standing for election at once") {
		t.Errorf("%s did not stand for election on release-vips's word (%v); its log since the kill:\n%s", next, err, l)
	}
	clusterWantHolders(t, c, next)
	seen := clusterRequests(t, 12)
	seen6 := clusterRequestsTo(t, clusterVIP6, 12)
	t.Logf("after the kill, 12 new connections answered by %v, 12 over IPv6 by %v", seen, seen6)
	if st := clusterStatus(t, c, next); st.Raft.State != "Leader" || st.VRRPState != "MASTER" {
		t.Errorf("%s: raft %s, vrrp %s; want Leader, MASTER", next, st.Raft.State, st.VRRPState)
	}
	c.Start(t, old)
	clusterWaitFollower(t, c, old, next)
	clusterWantHolders(t, c, next)
}

// clusterCrashOwner documents the hazard release-vips exists for: a
// director killed without it (SIGKILL only, no ExecStopPost) leaves the VIP
// on its interface, and its kernel keeps answering ARP for it while the new
// leader holds it too. Started again, the director removes the VIP (it
// starts as BACKUP) and stays BACKUP.
func clusterCrashOwner(t *testing.T, c *lab.Cluster) {
	old := clusterReady(t, c)
	next := lab.ClusterOtherDirector(old)

	c.Crash(t, old)
	// tests/vm/cluster wait-owner cannot be used here: its owner check
	// dies on the split brain this test makes on purpose.
	lab.Eventually(t, clusterTakeover, 20*time.Millisecond, func() error {
		hs, err := c.Holders()
		if err != nil {
			return err
		}
		if !slices.Contains(hs, next) {
			return fmt.Errorf("the VIP is held by %v, waiting for %s to take it", hs, next)
		}
		return nil
	})
	// The hazard: both directors hold the VIP, both answer ARP for it.
	clusterWantHolders(t, c, lab.Dir1, lab.Dir2)
	macs, err := lab.ARPProbe(lab.Client, clusterVIP, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{lab.Dir1.MAC(), lab.Dir2.MAC()}; !slices.Equal(macs, want) {
		t.Errorf("ARP answers for the VIP after a crash without release-vips: %v, want both directors %v", macs, want)
	}
	t.Logf("after the crash of %s without release-vips, the VIP is on both directors and both answer ARP: %v", old, macs)

	// Started again, old removes the stale VIP and follows next.
	watch, err := c.Watch(clusterWatchInterval)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.Start(t, old)
	lab.Eventually(t, clusterTakeover, 20*time.Millisecond, func() error {
		hs, err := c.Holders()
		if err != nil {
			return err
		}
		if !slices.Equal(hs, []lab.Host{next}) {
			return fmt.Errorf("the VIP is held by %v, want only %s", hs, next)
		}
		return nil
	})
	removed := time.Since(start)
	clusterWaitFollower(t, c, old, next)
	// It stays BACKUP: the cluster still answers and old never takes the
	// VIP back (no preemption), watched for clusterSettle.
	clusterRequests(t, 10)
	clusterSteady(t, c, next, start.Add(removed+clusterSettle))
	changes, err := watch.Stop()
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	if last := changes[len(changes)-1]; !slices.Equal(last.Holders, []lab.Host{next}) {
		t.Errorf("holders at the end: %v, want %v", last.Holders, next)
	}
	for _, ch := range changes {
		if len(ch.Holders) == 0 {
			t.Errorf("no director held the VIP at some point after the restart:\n%s", lab.FormatClusterHoldings(changes))
			break
		}
	}
	seenOnlyNext := 0
	for _, ch := range changes {
		if slices.Equal(ch.Holders, []lab.Host{next}) {
			seenOnlyNext++
		} else if seenOnlyNext > 0 {
			t.Errorf("the VIP moved again after %s removed it:\n%s", old, lab.FormatClusterHoldings(changes))
			break
		}
	}
	st := clusterStatus(t, c, old)
	if st.VRRPState != "BACKUP" || st.Raft.State != "Follower" {
		t.Errorf("%s after its restart: raft %s, vrrp %s; want Follower, BACKUP", old, st.Raft.State, st.VRRPState)
	}
	t.Logf("restarted, %s removed the stale VIP %v after its start command and stayed BACKUP for %v",
		old, removed.Round(time.Millisecond), end.Sub(start).Round(time.Millisecond))
}

// TestClusterPartition cuts the VIP owner off the segment, twice: a cable
// pull (its switch port down: the director sees the carrier go) and a
// silent partition (the switch port stops forwarding while the carrier
// stays). Either way the old owner must drop the VIP before the new one
// adds it, and after the link comes back stay BACKUP without the VIP.
//
// The cable pull is modelled in the switch (lan) rather than with "ip link
// set eth0 down" on the director: a pulled cable leaves the host's
// interface administratively up with its addresses (IPv6 ones included,
// which an admin down flushes) and only takes the carrier away, exactly
// what a veth whose peer goes down shows; and nothing on the director is
// touched, so the recovery is the director's own work.
func TestClusterPartition(t *testing.T) {
	lab.Require(t)
	c, _ := clusterStart(t)

	// The switch port of h, in lan, set down or up (cable) or to the
	// bridge state disabled (0) or forwarding (3).
	port := func(h lab.Host) string { return "v-" + string(h) }
	link := func(state string) func(t *testing.T, h lab.Host) {
		return func(t *testing.T, h lab.Host) { lab.MustIP(t, "lan", "link", "set", port(h), state) }
	}
	bridgeState := func(state string) func(t *testing.T, h lab.Host) {
		return func(t *testing.T, h lab.Host) {
			// Not "ip link set ... type bridge_slave state": it exits 0
			// and leaves the state as it was.
			if _, err := lab.Run(clusterCtx(t), "bridge", "-n", "lan", "link", "set", "dev", port(h), "state", state); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name     string
		cut, fix func(t *testing.T, h lab.Host)
		fault    bool   // the director sees its interface fail
		why      string // in the old owner's log: why it let go
	}{
		{"cable-pull", link("down"), link("up"), true, "state=FAULT"},
		// A disabled bridge port neither forwards nor receives; the
		// veth's carrier stays up, so only the Raft lease can tell.
		{"silent", bridgeState("0"), bridgeState("3"), false, "failed to contact quorum of nodes, stepping down"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// After the first case, the directors' checks must rise again
			// on the one that was cut off.
			old := clusterReady(t, c)
			next := lab.ClusterOtherDirector(old)
			logOff := c.LogSize(old)

			watch, err := c.Watch(clusterWatchInterval)
			if err != nil {
				t.Fatal(err)
			}
			cut := time.Now()
			tc.cut(t, old)
			fixed := false
			defer func() {
				if !fixed {
					tc.fix(t, old)
				}
			}()
			if got := c.WaitOwner(t, old, clusterTakeover); got != next {
				t.Fatalf("new owner %s, want %s", got, next)
			}
			tc.fix(t, old)
			fixed = true
			healed := time.Now()
			clusterWaitFollower(t, c, old, next)
			// Requests through the new owner, and the holders watched for
			// clusterSettle after the link came back: what old's side had
			// queued while cut off reaches the segment in that time (TCP
			// retransmissions back off to a few seconds).
			clusterRequests(t, 10)
			clusterSteady(t, c, next, healed.Add(clusterSettle))
			changes, err := watch.Stop()
			if err != nil {
				t.Fatal(err)
			}
			end := time.Now()
			polls, res := watch.Resolution()

			// The last time old held the VIP (its last change point with
			// old among the holders ends at the next change) and the
			// first time next did.
			var oldGone, nextIn time.Time
			for i, ch := range changes {
				if slices.Contains(ch.Holders, old) && i+1 < len(changes) && !slices.Contains(changes[i+1].Holders, old) {
					oldGone = changes[i+1].At
				}
				if nextIn.IsZero() && slices.Contains(ch.Holders, next) {
					nextIn = ch.At
				}
			}
			sum := lab.SummarizeClusterHoldings(changes, end)
			t.Logf("holders (polled every %v, %d polls, longest interval %v), from the cut:\n%s",
				clusterWatchInterval, polls, res.Round(time.Microsecond), lab.FormatClusterHoldings(changes))
			switch {
			case oldGone.IsZero() || nextIn.IsZero():
				t.Fatalf("no handover seen:\n%s", lab.FormatClusterHoldings(changes))
			case !oldGone.Before(nextIn) || sum.Overlap > 0:
				t.Errorf("%s still held the VIP when %s added it (released %v after the cut, added %v after it; overlap %v)",
					old, next, oldGone.Sub(cut), nextIn.Sub(cut), sum.Overlap)
			default:
				t.Logf("%s released the VIP %v after the cut, %s added it %v after the cut: a gap of %v",
					old, oldGone.Sub(cut).Round(time.Millisecond), next, nextIn.Sub(cut).Round(time.Millisecond), nextIn.Sub(oldGone).Round(time.Millisecond))
			}
			// From next's takeover on, exactly next: old never took it back
			// after the link returned (healed at +healed).
			for _, ch := range changes {
				if !ch.At.Before(nextIn) && !slices.Equal(ch.Holders, []lab.Host{next}) {
					t.Errorf("after the takeover the VIP was held by %v at +%v (link back at +%v)", ch.Holders, ch.At.Sub(cut), healed.Sub(cut))
				}
			}
			clusterWantHolders(t, c, next)

			log, err := c.LogSince(old, logOff)
			if err != nil {
				t.Fatal(err)
			}
			if fault := strings.Contains(log, "state=FAULT"); fault != tc.fault {
				t.Errorf("%s entered FAULT: %v, want %v", old, fault, tc.fault)
			}
			if !strings.Contains(log, tc.why) {
				t.Errorf("%s's log does not say %q:\n%s", old, tc.why, log)
			}
		})
	}
}

// clusterEcho is a long-lived connection to the echo service.
type clusterEcho struct {
	conn net.Conn
	r    *bufio.Reader
	name string // the real that greeted
	port uint16 // the client's port

	mu       sync.Mutex // guards the fields below, written by once
	echoes   int
	lastEcho time.Time
	slowest  time.Duration
	err      error // the first failure
}

// stats reads what once recorded.
func (e *clusterEcho) stats() (echoes int, last time.Time, slowest time.Duration, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.echoes, e.lastEcho, e.slowest, e.err
}

// clusterDialEcho opens a connection to the echo service and reads the
// greeting.
func clusterDialEcho(t *testing.T) *clusterEcho {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterRequestTimeout)
	defer cancel()
	conn, err := lab.Dial(ctx, lab.Client, "tcp", netip.AddrPortFrom(clusterVIP, 9000).String())
	if err != nil {
		t.Fatal(err)
	}
	e := &clusterEcho{conn: conn, r: bufio.NewReader(conn)}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(clusterRequestTimeout))
	line, err := e.r.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	e.name = strings.TrimSpace(line)
	e.port = netip.MustParseAddrPort(conn.LocalAddr().String()).Port()
	return e
}

// once sends a line and reads it back; one goroutine at a time.
func (e *clusterEcho) once(line string) error {
	start := time.Now()
	err := e.roundTrip(start, line)
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		if e.err == nil {
			e.err = err
		}
		return err
	}
	e.echoes++
	e.lastEcho = now
	e.slowest = max(e.slowest, now.Sub(start))
	return nil
}

func (e *clusterEcho) roundTrip(start time.Time, line string) error {
	e.conn.SetDeadline(start.Add(clusterRequestTimeout))
	if _, err := fmt.Fprintf(e.conn, "%s\n", line); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got, err := e.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if strings.TrimSpace(got) != line {
		return fmt.Errorf("echo %q, want %q", got, line)
	}
	return nil
}

// TestClusterPlannedChanges moves leadership the two planned ways, under
// load, on one cluster: dsrd failover, then a graceful restart of the
// leader's dsrd.
func TestClusterPlannedChanges(t *testing.T) {
	lab.Require(t)
	c, _ := clusterStart(t)
	t.Run("failover", func(t *testing.T) { clusterPlannedFailover(t, c) })
	t.Run("leader-restart", func(t *testing.T) { clusterLeaderRestart(t, c) })
}

// clusterPlannedFailover hands leadership over with dsrd failover while
// long-lived connections to the echo service keep echoing: none is reset
// (mh maps each flow to the same real on both directors, sloppy_tcp lets
// the new one pick it up mid-stream), and new connections work.
func clusterPlannedFailover(t *testing.T, c *lab.Cluster) {
	old := clusterReady(t, c)
	next := lab.ClusterOtherDirector(old)

	const conns = 9
	echoes := make([]*clusterEcho, conns)
	greeted := map[string]int{}
	for i := range echoes {
		echoes[i] = clusterDialEcho(t)
		greeted[echoes[i].name]++
		if err := echoes[i].once(fmt.Sprintf("before %d", i)); err != nil {
			t.Fatalf("connection %d (%s): %v", i, echoes[i].name, err)
		}
	}
	t.Logf("%d connections greeted by %v", conns, greeted)

	// Load: every connection echoes a line every 100 ms until stopped or
	// it fails.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, e := range echoes {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if e.once(fmt.Sprintf("conn %d line %d", i, n)) != nil {
					return
				}
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	watch, err := c.Watch(clusterWatchInterval)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterTakeover)
	defer cancel()
	out, _, err := c.CLI(ctx, old, "failover")
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("leadership moved from %s to %s", old, next); strings.TrimSpace(out) != want {
		t.Errorf("dsrd failover printed %q, want %q", out, want)
	}
	if got := c.WaitOwner(t, old, clusterTakeover); got != next {
		t.Fatalf("new owner %s, want %s", got, next)
	}
	moved := time.Now()
	// Every connection echoes again, now through next.
	lab.Eventually(t, 2*clusterRequestTimeout, 50*time.Millisecond, func() error {
		for i, e := range echoes {
			_, last, _, err := e.stats()
			if err != nil {
				continue // reported below
			}
			if !last.After(moved.Add(500 * time.Millisecond)) {
				return fmt.Errorf("connection %d has not echoed since the VIP moved", i)
			}
		}
		return nil
	})
	stopLoad()
	changes, err := watch.Stop()
	if err != nil {
		t.Fatal(err)
	}
	sum := lab.SummarizeClusterHoldings(changes, time.Now())
	t.Logf("dsrd failover and takeover in %v; holders:\n%s", moved.Sub(start).Round(time.Millisecond), lab.FormatClusterHoldings(changes))
	if sum.Overlap > 0 {
		t.Errorf("both directors held the VIP for %v", sum.Overlap)
	}
	var slowest time.Duration
	for i, e := range echoes {
		n, _, slow, err := e.stats()
		if err != nil {
			t.Errorf("connection %d (greeted by %s, port %d) broke after %d echoes: %v", i, e.name, e.port, n, err)
			continue
		}
		slowest = max(slowest, slow)
		if err := e.once("after"); err != nil {
			t.Errorf("connection %d (greeted by %s): %v", i, e.name, err)
		}
	}
	t.Logf("no-VIP gap %v; slowest echo %v", sum.LongestGap.Round(time.Millisecond), slowest.Round(time.Millisecond))

	// next picked the flows up mid-stream, each to the real that greeted.
	ipvsConns, err := lab.IPVSConns(clusterCtx(t), next)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range echoes {
		src := netip.AddrPortFrom(lab.Client.IPv4(), e.port).String()
		want := ""
		for _, r := range clusterReals {
			if string(r) == e.name {
				want = netip.AddrPortFrom(r.IPv4(), 9000).String()
			}
		}
		idx := slices.IndexFunc(ipvsConns, func(ic lab.IPVSConn) bool { return ic.Source == src })
		switch {
		case idx < 0:
			t.Errorf("connection %d (%s) is not in %s's IPVS table", i, src, next)
		case ipvsConns[idx].Dest != want:
			t.Errorf("connection %d (%s) greeted by %s goes to %s on %s", i, src, e.name, ipvsConns[idx].Dest, next)
		}
	}

	if mac, state, _, err := c.Neighbour(lab.Client, clusterVIP); err != nil || mac != next.MAC() {
		t.Errorf("client's neighbour entry for the VIP: %q (%s), %v; want %s", mac, state, err, next.MAC())
	}
	for range 6 {
		e := clusterDialEcho(t)
		if err := e.once("new"); err != nil {
			t.Errorf("new connection (%s): %v", e.name, err)
		}
	}
	clusterWantHolders(t, c, next)
	clusterWaitFollower(t, c, old, next)
}

// TestClusterChanges changes what the directors' IPVS must hold, three
// ways, on one cluster: a backend fails and returns (each director's own
// health checks), an admin drain (Raft), a configuration reload (Raft);
// and a browser watches a backend fail on the leader's status page.
func TestClusterChanges(t *testing.T) {
	lab.Require(t)
	c, _ := clusterStart(t)
	t.Run("backend-failure", func(t *testing.T) { clusterBackendFailure(t, c) })
	t.Run("drain", func(t *testing.T) { clusterDrain(t, c) })
	// Before reload, which leaves a real at another weight.
	t.Run("status-page-browser", func(t *testing.T) { clusterStatusPageBrowser(t, c) })
	t.Run("reload", func(t *testing.T) { clusterReload(t, c) })
}

// clusterNewConnsAvoid sends new connections to the web service while the
// real avoid is at weight 0 on both directors: all must be answered, none
// by avoid. With mh (without the mh-fallback flag) the kernel keeps a
// weight-0 real's slots in its lookup table and refuses (ICMP port
// unreachable: "connection refused") the connections that hash to it
// instead of skipping it.
func clusterNewConnsAvoid(t *testing.T, leader, avoid lab.Host, why string) {
	t.Helper()
	const tries = 15
	seen, failed, icmp := clusterTryRequests(t, tries)
	if seen[string(avoid)] != 0 || len(failed) > 0 {
		t.Errorf("%d new connections with %s %s: answered by %v, failed %v (ICMP received from %v; the leader is %s, %s); want all answered, none by %s",
			tries, avoid, why, seen, failed, icmp, leader, leader.MAC(), avoid)
	}
}

// clusterBackendFailure stops rs2's backend: both directors' checks set
// its weight to 0 within rise/fall, and back when it returns.
func clusterBackendFailure(t *testing.T, c *lab.Cluster) {
	leader := clusterReady(t, c)

	rs2 := lab.RS2.IPv4()
	rs2v6 := netip.AddrPortFrom(lab.RS2.IPv6(), 80).String()
	down := clusterWeightsOf(map[string]int{rs2.String() + ":80": 0, rs2.String() + ":9000": 0, rs2v6: 0})
	lab.ClusterBackendStop(t, lab.RS2)
	took := clusterWaitWeights(t, down)
	t.Logf("rs2's backend stopped: weight 0 on both directors after %v (interval 1s, fall 2)", took.Round(time.Millisecond))
	for _, d := range lab.ClusterDirectors() {
		st := clusterStatus(t, c, d)
		for _, svc := range []string{"web", "echo"} {
			r := lab.ClusterReal(st, svc, rs2)
			if r == nil || r.Health != "down" || r.IPVSWeight != 0 || r.Admin != "enabled" {
				t.Errorf("%s's status of %s %s: %+v; want down, IPVS weight 0, enabled", d, svc, rs2, r)
			}
		}
	}
	clusterNewConnsAvoid(t, leader, lab.RS2, "down (weight 0 on both directors)")

	lab.ClusterBackendStart(t, lab.RS2)
	took = clusterWaitWeights(t, clusterWeightsOf(nil))
	t.Logf("rs2's backend back: weight 100 on both directors after %v (rise 2)", took.Round(time.Millisecond))
}

// clusterDrain drains a real through the follower: the admin state goes
// through Raft to both directors; dsrd enable on the leader undoes it.
func clusterDrain(t *testing.T, c *lab.Cluster) {
	leader := clusterReady(t, c)
	follower := lab.ClusterOtherDirector(leader)
	rs1 := lab.RS1.IPv4()
	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterTakeover)
	defer cancel()
	out, _, err := c.CLI(ctx, follower, "drain", "web", rs1.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("web (tcp/%s:80) %s: enabled -> drained", clusterVIP, rs1); strings.TrimSpace(out) != want {
		t.Errorf("dsrd drain on %s printed %q, want %q", follower, out, want)
	}
	took := clusterWaitWeights(t, clusterWeightsOf(map[string]int{rs1.String() + ":80": 0}))
	t.Logf("dsrd drain on the follower %s: web's %s at weight 0 on both directors after %v", follower, rs1, took.Round(time.Millisecond))
	for _, d := range lab.ClusterDirectors() {
		st := clusterStatus(t, c, d)
		if r := lab.ClusterReal(st, "web", rs1); r == nil || r.Admin != "drained" || r.Health != "up" {
			t.Errorf("%s's status of web %s: %+v; want drained and up", d, rs1, r)
		}
		if r := lab.ClusterReal(st, "echo", rs1); r == nil || r.Admin != "enabled" {
			t.Errorf("%s's status of echo %s: %+v; want enabled (the drain names web only)", d, rs1, r)
		}
	}
	clusterNewConnsAvoid(t, leader, lab.RS1, "drained in web")

	out, _, err = c.CLI(ctx, leader, "enable", "web", rs1.String())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("web (tcp/%s:80) %s: drained -> enabled", clusterVIP, rs1); strings.TrimSpace(out) != want {
		t.Errorf("dsrd enable on %s printed %q, want %q", leader, out, want)
	}
	clusterWaitWeights(t, clusterWeightsOf(nil))
}

// clusterStream sends requests to the web service one after the other
// until stopped, and records each.
type clusterStream struct {
	stop chan struct{}
	done chan struct{}
	// results, written by the stream's goroutine, read after done.
	ok      int
	failed  []string
	slowest time.Duration
	slowAt  time.Time
}

// clusterStartStream starts the stream: a request every 50 ms.
func clusterStartStream() *clusterStream {
	s := &clusterStream{stop: make(chan struct{}), done: make(chan struct{})}
	client := clusterHTTP()
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			start := time.Now()
			_, _, err := drGet(client, clusterVIP)
			d := time.Since(start)
			if err != nil {
				s.failed = append(s.failed, fmt.Sprintf("%s: %v", start.Format("15:04:05.000"), err))
				continue
			}
			s.ok++
			if d > s.slowest {
				s.slowest, s.slowAt = d, start
			}
		}
	}()
	return s
}

// end stops the stream and waits for its last request.
func (s *clusterStream) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// clusterLeaderRestart restarts the leader's dsrd gracefully while the
// client sends a steady stream of requests: the stop hands leadership over
// first, no request fails, and the restarted director adopts its IPVS
// entries instead of recreating them (its counters go on; a new service
// would start from zero) and stays BACKUP.
func clusterLeaderRestart(t *testing.T, c *lab.Cluster) {
	old := clusterReady(t, c)
	next := lab.ClusterOtherDirector(old)

	// Counters on old to compare: the kernel folds them every 2 s.
	const warm = 10
	clusterRequests(t, warm)
	key := fmt.Sprintf("TCP %s:80", clusterVIP)
	var before lab.IPVSStats
	lab.Eventually(t, 10*time.Second, 250*time.Millisecond, func() error {
		all, err := lab.IPVSStatsOf(clusterCtx(t), old)
		if err != nil {
			return err
		}
		before = all[key].IPVSStats
		if before.Conns < warm {
			return fmt.Errorf("IPVS counters of %s on %s: %+v, want %d connections", key, old, before, warm)
		}
		return nil
	})
	logOff := c.LogSize(old)

	watch, err := c.Watch(clusterWatchInterval)
	if err != nil {
		t.Fatal(err)
	}
	stream := clusterStartStream()
	defer stream.end()
	start := time.Now()
	c.Stop(t, old)
	stopped := time.Since(start)
	// Stopped, old keeps its IPVS entries in the kernel.
	all, err := lab.IPVSStatsOf(clusterCtx(t), old)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := all[key]; !ok || st.Conns < before.Conns {
		t.Errorf("after dsrd stopped, %s's IPVS has %s: %+v (present %v); want its entries kept", old, key, st.IPVSStats, ok)
	}
	if got := c.WaitOwner(t, old, clusterTakeover); got != next {
		t.Fatalf("new owner %s, want %s", got, next)
	}
	c.Start(t, old)
	clusterWaitFollower(t, c, old, next)
	// Its checks settle (every real up, IPVS at full weight again).
	clusterWaitWeights(t, clusterWeightsOf(nil))
	restarted := time.Since(start)
	// Some more requests through the new owner, then stop.
	clusterRequests(t, 5)
	stream.end()
	changes, err := watch.Stop()
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now()

	if len(stream.failed) > 0 {
		t.Errorf("%d of %d requests failed during the restart: %v", len(stream.failed), len(stream.failed)+stream.ok, stream.failed)
	}
	sum := lab.SummarizeClusterHoldings(changes, end)
	if sum.Overlap > 0 {
		t.Errorf("both directors held the VIP for %v", sum.Overlap)
	}
	t.Logf("graceful stop of %s took %v, restart and settle %v; %d requests, none failed: %v; slowest %v (at %s); longest time without a VIP holder %v (from +%v); holders:\n%s",
		old, stopped.Round(time.Millisecond), restarted.Round(time.Millisecond), stream.ok, len(stream.failed) == 0,
		stream.slowest.Round(time.Millisecond), stream.slowAt.Format("15:04:05.000"),
		sum.LongestGap.Round(time.Millisecond), sum.LongestGapStart.Sub(changes[0].At).Round(time.Millisecond),
		lab.FormatClusterHoldings(changes))
	clusterWantHolders(t, c, next)

	// Adopted, not recreated: the counters went on, and the restarted
	// director's log has no add or delete of a service or destination.
	all, err = lab.IPVSStatsOf(clusterCtx(t), old)
	if err != nil {
		t.Fatal(err)
	}
	if after := all[key].IPVSStats; after.Conns < before.Conns || after.InPkts < before.InPkts {
		t.Errorf("IPVS counters of %s on %s went from %+v to %+v across the restart: the service was recreated", key, old, before, after)
	}
	log, err := c.LogSince(old, logOff)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(log, "\n") {
		for _, op := range []string{"op=add-service", "op=del-service", "op=add-dest", "op=del-dest"} {
			if strings.Contains(line, op) {
				t.Errorf("the restarted %s changed IPVS instead of adopting it: %s", old, line)
			}
		}
	}
}

// clusterReload changes a weight in one director's file and sends it
// SIGHUP: the cluster configuration (shared through Raft) changes and
// reaches both directors' IPVS. The other director's file is now stale: an
// explicit reload of it submits the old configuration, which wins (the
// last file submitted is the cluster's); a restart with it, unchanged since
// that director last submitted it, follows the cluster instead. An invalid
// file is rejected with file:line:col, and nothing changes.
func clusterReload(t *testing.T, c *lab.Cluster) {
	leader := clusterReady(t, c)
	follower := lab.ClusterOtherDirector(leader)
	gen0 := clusterStatus(t, c, leader).Generation

	// waitGeneration waits until both directors run generation gen.
	waitGeneration := func(t *testing.T, gen uint64) {
		t.Helper()
		lab.Eventually(t, clusterConverge, 100*time.Millisecond, func() error {
			for _, d := range lab.ClusterDirectors() {
				st, err := c.Status(clusterCtx(t), d)
				if err != nil {
					return err
				}
				if st.Generation != gen || st.RunningGeneration != gen {
					return fmt.Errorf("%s: generation %d running %d, want %d", d, st.Generation, st.RunningGeneration, gen)
				}
			}
			return nil
		})
	}

	rs3 := lab.RS3.IPv4()
	edited := c.ConfPath(follower)
	if err := lab.ClusterConfigEdit(edited, func(doc map[string]any) error {
		r, err := lab.ClusterConfigReal(doc, "web", rs3)
		if err != nil {
			return err
		}
		r["weight"] = 50
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	logOff := c.LogSize(follower)
	if err := c.Signal(follower, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	weighted := clusterWeightsOf(map[string]int{rs3.String() + ":80": 50})
	took := clusterWaitWeights(t, weighted)
	waitGeneration(t, gen0+1)
	t.Logf("SIGHUP to %s with web's %s at weight 50: generation %d on both directors' IPVS after %v", follower, rs3, gen0+1, took.Round(time.Millisecond))
	lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
		log, err := c.LogSince(follower, logOff)
		if err != nil {
			return err
		}
		if !strings.Contains(log, "msg=reloaded") || !strings.Contains(log, "changed=true") {
			return fmt.Errorf("no reload logged by %s yet:\n%s", follower, log)
		}
		return nil
	})
	if st := clusterStatus(t, c, follower); !st.Reload.OK || !st.Reload.Changed || st.Reload.Generation != gen0+1 {
		t.Errorf("%s's last reload: %+v; want ok, changed, generation %d", follower, st.Reload, gen0+1)
	}

	t.Run("stale file on the other director", func(t *testing.T) {
		// The leader's file still has weight 100: the cluster's
		// configuration is the last file submitted, so an explicit reload
		// of it reverts the change made through the follower.
		ctx, cancel := context.WithTimeout(context.Background(), 2*clusterTakeover)
		defer cancel()
		out, _, err := c.CLI(ctx, leader, "reload")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("reloaded: the configuration changed, now generation %d", gen0+2); strings.TrimSpace(out) != want {
			t.Errorf("dsrd reload on %s with its unchanged file printed %q, want %q", leader, out, want)
		}
		clusterWaitWeights(t, clusterWeightsOf(nil))
		waitGeneration(t, gen0+2)
		t.Logf("dsrd reload of %s's unchanged (stale) file reverted the cluster to weight 100 as generation %d: the last file submitted wins", leader, gen0+2)
		// Back to the edited configuration, from the follower's file.
		out, _, err = c.CLI(ctx, follower, "reload")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("reloaded: the configuration changed, now generation %d", gen0+3); strings.TrimSpace(out) != want {
			t.Errorf("dsrd reload on %s printed %q, want %q", follower, out, want)
		}
		clusterWaitWeights(t, weighted)
		waitGeneration(t, gen0+3)

		// A restart of the director with the stale file does not: an
		// unchanged file (the one it last submitted) follows the cluster.
		c.Stop(t, leader)
		c.Start(t, leader)
		clusterWaitFollower(t, c, leader, follower)
		for _, d := range lab.ClusterDirectors() {
			if st := clusterStatus(t, c, d); st.Generation != gen0+3 {
				t.Errorf("%s: generation %d after %s restarted with its stale file, want %d (unchanged)", d, st.Generation, leader, gen0+3)
			}
		}
		clusterWaitWeights(t, weighted)
		t.Logf("a restart of %s with its stale, unchanged file kept the cluster's generation %d (weight 50)", leader, gen0+3)
	})

	t.Run("invalid file", func(t *testing.T) {
		st := clusterStatus(t, c, follower)
		gen := st.Generation
		before := clusterWeights(t)
		valid, err := os.ReadFile(edited)
		if err != nil {
			t.Fatal(err)
		}
		// A typo'd top-level key on a line of its own, so that its
		// position is known.
		text := strings.TrimRight(string(valid), "\n") + "\n"
		line := strings.Count(text, "\n") + 1
		if err := os.WriteFile(edited, []byte(text+"servcies: []\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		wantPos := fmt.Sprintf("%s:%d:1: unknown key", edited, line)
		wantErr := wantPos + ` "servcies" (did you mean "services"?)`

		ctx, cancel := context.WithTimeout(context.Background(), 2*clusterTakeover)
		defer cancel()
		out, stderr, err := c.CLI(ctx, follower, "reload")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("dsrd reload of an invalid file: %v (stdout %q); want exit status 1", err, out)
		}
		if !strings.Contains(stderr, wantErr) || !strings.Contains(stderr, fmt.Sprintf("the running configuration (generation %d) stays", gen)) {
			t.Errorf("dsrd reload of an invalid file printed:\n%s\nwant %q and the generation %d staying", stderr, wantErr, gen)
		}

		logOff := c.LogSize(follower)
		if err := c.Signal(follower, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		lab.Eventually(t, 10*time.Second, 100*time.Millisecond, func() error {
			log, err := c.LogSince(follower, logOff)
			if err != nil {
				return err
			}
			// slog quotes the message's quotes: look for the position.
			if !strings.Contains(log, "reload rejected") || !strings.Contains(log, wantPos) {
				return fmt.Errorf("no rejected reload with %q in %s's log yet:\n%s", wantPos, follower, log)
			}
			return nil
		})
		for _, d := range lab.ClusterDirectors() {
			st := clusterStatus(t, c, d)
			if st.Generation != gen || st.RunningGeneration != gen {
				t.Errorf("%s after the invalid reload: generation %d running %d, want %d", d, st.Generation, st.RunningGeneration, gen)
			}
		}
		if st := clusterStatus(t, c, follower); st.Reload.OK || len(st.Reload.Errors) == 0 {
			t.Errorf("%s's last reload: %+v; want rejected with errors", follower, st.Reload)
		}
		if after := clusterWeights(t); !maps.EqualFunc(after, before, func(a, b map[string]map[string]int) bool {
			return maps.EqualFunc(a, b, maps.Equal)
		}) {
			t.Errorf("IPVS changed after the invalid reload: %v, was %v", after, before)
		}
	})
}

// TestClusterHelpers checks the lab's parsers and summaries the cluster
// tests rely on (no VM needed, but built with the other e2e tests).
func TestClusterHelpers(t *testing.T) {
	t.Run("ipvsadm weights", func(t *testing.T) {
		out := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  203.0.113.10:80 mh (mh-port)
  -> 192.0.2.21:80                Route   100    0          0
  -> 192.0.2.22:80                Route   0      1          4
FWM  7 rr
  -> [2001:db8::21]:0             Route   1      0          0
`
		got, err := lab.ParseClusterIPVSWeights(out)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]int{
			"TCP 203.0.113.10:80": {"192.0.2.21:80": 100, "192.0.2.22:80": 0},
			"FWM 7":               {"[2001:db8::21]:0": 1},
		}
		if !maps.EqualFunc(got, want, maps.Equal) {
			t.Errorf("ParseClusterIPVSWeights = %v, want %v", got, want)
		}
		if _, err := lab.ParseClusterIPVSWeights("  -> 192.0.2.21:80 Route 1 0 0\n"); err == nil {
			t.Error("a destination before any service was accepted")
		}
	})
	t.Run("packets", func(t *testing.T) {
		eth := func(dst, src []byte, typ uint16) []byte {
			return append(append(append([]byte{}, dst...), src...), byte(typ>>8), byte(typ))
		}
		client := []byte{2, 0, 0, 0, 0, 0x10}
		dir := []byte{2, 0, 0, 0, 0, 0x11}
		// A TCP SYN from the client to VIP:80 (IPv4 header of 20 bytes).
		ip := []byte{0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6, 0, 0, 192, 0, 2, 10, 203, 0, 113, 10}
		tcp := []byte{0xc3, 0x50, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0}
		p, ok := lab.ParseClusterPacket(append(append(eth(dir, client, 0x0800), ip...), tcp...))
		if !ok || p.Src != lab.Client.MAC() || p.Dst != lab.Dir1.MAC() || p.IPSrc != lab.Client.IPv4() ||
			p.IPDst != clusterVIP || p.Proto != 6 || p.SrcPort != 50000 || p.DstPort != 80 || p.TCPFlags != 0x02 {
			t.Errorf("TCP SYN parsed as %+v, %v", p, ok)
		}
		// A gratuitous ARP request from dir1 for the VIP.
		mac, _ := net.ParseMAC(lab.Dir1.MAC())
		garp := lab.ARPRequest(mac, clusterVIP, clusterVIP)
		p, ok = lab.ParseClusterPacket(append(eth([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, dir, 0x0806), garp...))
		if !ok || !clusterARPFrom(p, lab.Dir1.MAC()) || p.ARPOp != 1 || p.ARPTarget != clusterVIP {
			t.Errorf("gratuitous ARP parsed as %+v, %v", p, ok)
		}
		// An unsolicited neighbour advertisement from dir1 for the IPv6
		// VIP, to all nodes, and a TCP SYN from the client to it.
		ip6 := func(next byte, src, dst netip.Addr, payload []byte) []byte {
			h := []byte{0x60, 0, 0, 0, byte(len(payload) >> 8), byte(len(payload)), next, 255}
			h = append(h, src.AsSlice()...)
			return append(append(h, dst.AsSlice()...), payload...)
		}
		na := append([]byte{136, 0, 0, 0, 0x20, 0, 0, 0}, clusterVIP6.AsSlice()...)
		p, ok = lab.ParseClusterPacket(append(eth([]byte{0x33, 0x33, 0, 0, 0, 1}, dir, 0x86dd),
			ip6(58, clusterVIP6, netip.MustParseAddr("ff02::1"), na)...))
		if !ok || p.Src != lab.Dir1.MAC() || p.Proto != 58 || p.ICMPv6Type != 136 || p.NDTarget != clusterVIP6 || p.IPSrc != clusterVIP6 {
			t.Errorf("unsolicited NA parsed as %+v, %v", p, ok)
		}
		p, ok = lab.ParseClusterPacket(append(eth(dir, client, 0x86dd), ip6(6, lab.Client.IPv6(), clusterVIP6, tcp)...))
		if !ok || p.IPSrc != lab.Client.IPv6() || p.IPDst != clusterVIP6 || p.Proto != 6 || p.DstPort != 80 || p.TCPFlags != 0x02 || p.ICMPv6Type != 0 {
			t.Errorf("IPv6 TCP SYN parsed as %+v, %v", p, ok)
		}
		if _, ok := lab.ParseClusterPacket([]byte{1, 2, 3}); ok {
			t.Error("a runt frame was parsed")
		}
	})
	t.Run("holdings", func(t *testing.T) {
		t0 := time.Now()
		at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
		changes := []lab.ClusterHolding{
			{At: at(0), Holders: []lab.Host{lab.Dir1}},
			{At: at(100), Holders: nil},
			{At: at(400), Holders: []lab.Host{lab.Dir2}},
			{At: at(500), Holders: []lab.Host{lab.Dir1, lab.Dir2}},
			{At: at(550), Holders: nil},
			{At: at(600), Holders: []lab.Host{lab.Dir2}},
		}
		got := lab.SummarizeClusterHoldings(changes, at(1000))
		want := lab.ClusterHoldingSummary{LongestGap: 300 * time.Millisecond, LongestGapStart: at(100), Overlap: 50 * time.Millisecond}
		if got != want {
			t.Errorf("SummarizeClusterHoldings = %+v, want %+v", got, want)
		}
	})
}

// clusterEditServices edits the services named in both directors' files
// (either may reload later, and neither may be left stale): edit is called
// with each one's document; a name not found fails the test.
func clusterEditServices(t *testing.T, c *lab.Cluster, edit func(svc map[string]any), names ...string) {
	t.Helper()
	for _, d := range lab.ClusterDirectors() {
		if err := lab.ClusterConfigEdit(c.ConfPath(d), func(doc map[string]any) error {
			svcs, _ := doc["services"].([]any)
			found := map[string]bool{}
			for _, s := range svcs {
				if svc, _ := s.(map[string]any); svc != nil && slices.Contains(names, fmt.Sprint(svc["name"])) {
					edit(svc)
					found[fmt.Sprint(svc["name"])] = true
				}
			}
			for _, n := range names {
				if !found[n] {
					return fmt.Errorf("no service %s", n)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// clusterReloadWait reloads via's file (SIGHUP) and waits until both
// directors run the generation after gen0, and returns it.
func clusterReloadWait(t *testing.T, c *lab.Cluster, via lab.Host, gen0 uint64) uint64 {
	t.Helper()
	if err := c.Signal(via, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	lab.Eventually(t, clusterConverge, 100*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			st, err := c.Status(clusterCtx(t), d)
			if err != nil {
				return err
			}
			if st.Generation != gen0+1 || st.RunningGeneration != gen0+1 {
				return fmt.Errorf("%s: generation %d running %d, want %d", d, st.Generation, st.RunningGeneration, gen0+1)
			}
		}
		return nil
	})
	return gen0 + 1
}
