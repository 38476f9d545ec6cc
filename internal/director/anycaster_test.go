package director

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/vrrp/bgp"
)

// fakeSpeaker records what the anycaster told it.
type fakeSpeaker struct {
	mu        sync.Mutex
	announced []netip.Prefix
	graceful  bool
	calls     []string
	fail      error
}

func (f *fakeSpeaker) Announce(_ context.Context, p []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "announce")
	if f.fail != nil {
		return f.fail
	}
	f.announced = slices.Clone(p)
	return nil
}

func (f *fakeSpeaker) SetGraceful(_ context.Context, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.calls = append(f.calls, "graceful")
	} else {
		f.calls = append(f.calls, "normal")
	}
	if f.fail != nil {
		return f.fail
	}
	f.graceful = on
	return nil
}

func (f *fakeSpeaker) state() ([]netip.Prefix, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.announced), f.graceful
}

type anycastRig struct {
	a         *anycaster
	sp        *fakeSpeaker
	now       time.Time
	connected bool
	withdrawn map[string]int
}

func newAnycastRig() *anycastRig {
	r := &anycastRig{sp: &fakeSpeaker{}, now: time.Unix(1_000_000, 0), connected: true, withdrawn: map[string]int{}}
	r.a = newAnycaster(r.sp, func() bool { return r.connected }, func(c string) { r.withdrawn[c]++ },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.a.now = func() time.Time { return r.now }
	return r
}

var (
	vipA = netip.MustParseAddr("203.0.113.10")
	vipB = netip.MustParseAddr("203.0.113.11")
)

func hostRoutes(addrs ...netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

func (r *anycastRig) expect(t *testing.T, what string, want []netip.Prefix, graceful bool) {
	t.Helper()
	got, g := r.sp.state()
	if !slices.Equal(got, want) || g != graceful {
		t.Errorf("%s: speaker announces %v (graceful %v), want %v (graceful %v)", what, got, g, want, graceful)
	}
}

func TestAnycasterAnnouncesWhatTheRulesAllow(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.step(ctx)
	if len(r.sp.calls) != 0 {
		t.Fatalf("before the loop's first report the speaker was called: %v", r.sp.calls)
	}
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}, {Address: vipB, Serving: false}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "converged", hostRoutes(vipA), false)

	// Nothing changes: the speaker is not called again.
	n := len(r.sp.calls)
	r.now = r.now.Add(time.Second)
	r.a.step(ctx)
	if len(r.sp.calls) != n {
		t.Errorf("an unchanged decision called the speaker again: %v", r.sp.calls[n:])
	}

	// The service of B comes up; A's goes down.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: false}, {Address: vipB, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "after health changes", hostRoutes(vipB), false)
	if r.withdrawn[withdrawNoQuorum] != 1 {
		t.Errorf("withdrawals = %v, want one %s", r.withdrawn, withdrawNoQuorum)
	}
}

func TestAnycasterWithdrawsAfterPartitionHold(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "connected", hostRoutes(vipA), false)

	r.connected = false
	r.a.step(ctx)
	r.now = r.now.Add(14 * time.Second)
	r.a.step(ctx)
	r.expect(t, "cut off for 14s of a 15s hold", hostRoutes(vipA), false)
	r.now = r.now.Add(time.Second)
	r.a.step(ctx)
	r.expect(t, "cut off for 15s", nil, false)
	if st := r.a.status(); st.Decision.Withdrawn[vipA] != withdrawPartitioned {
		t.Errorf("status = %+v, want %s", st.Decision, withdrawPartitioned)
	}

	// Back in the cluster: announced again at once.
	r.connected = true
	r.a.step(ctx)
	r.expect(t, "reconnected", hostRoutes(vipA), false)
}

func TestAnycasterWithdrawsWhenIPVSDoesNotConverge(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	// Generation 4 arrives and cannot be applied.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 4, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "new generation, not yet applied", hostRoutes(vipA), false)
	r.now = r.now.Add(convergeGrace)
	r.a.step(ctx)
	r.expect(t, "not applied for convergeGrace", nil, false)
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 4, 4, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "applied", hostRoutes(vipA), false)
}

func TestAnycasterStopDrainsThenWithdraws(t *testing.T) {
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(context.Background())
	r.sp.calls = nil
	// A cancelled context ends the drain delay at once: the order of the
	// calls is what is tested here, the delay's length is the timer's.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.a.stop(ctx, 10*time.Second)
	// stop's calls ran with a cancelled context; the fake does not care.
	want := []string{"graceful", "announce", "announce", "normal"}
	if !slices.Equal(r.sp.calls, want) {
		t.Errorf("calls = %v, want %v (graceful first, then withdraw all)", r.sp.calls, want)
	}
	r.expect(t, "stopped", nil, false)
	if r.withdrawn[withdrawDrained] != 1 {
		t.Errorf("withdrawals = %v, want one %s", r.withdrawn, withdrawDrained)
	}
}

// The cluster's drain record: announcing as leaving for the drain delay,
// then withdrawn; the record's removal announces again; a record that
// arrives before anything was announced withdraws at once.
func TestAnycasterFollowsTheClusterDrain(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.a.followDrain(true, 10*time.Second)
	r.a.step(ctx)
	r.expect(t, "drained for 0s of 10s", hostRoutes(vipA), true)
	r.now = r.now.Add(9 * time.Second)
	r.a.followDrain(true, 10*time.Second) // every pass reports it again
	r.a.step(ctx)
	r.expect(t, "drained for 9s of 10s", hostRoutes(vipA), true)
	r.now = r.now.Add(time.Second)
	r.a.step(ctx)
	r.expect(t, "drained for 10s", nil, false)
	r.a.followDrain(false, 10*time.Second)
	r.a.step(ctx)
	r.expect(t, "undrained", hostRoutes(vipA), false)

	fresh := newAnycastRig()
	fresh.a.followDrain(true, 10*time.Second)
	fresh.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	fresh.a.step(ctx)
	fresh.expect(t, "started drained", nil, false)
	if slices.Contains(fresh.sp.calls, "graceful") {
		t.Errorf("a director started drained announced as leaving: %v", fresh.sp.calls)
	}
}

// A stop during the cluster drain's graceful phase waits the shorter of
// its own drain delay and what is left of the drain's, and an undrain
// that arrives while stopping does not announce again.
func TestAnycasterStopDuringAClusterDrain(t *testing.T) {
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(context.Background())
	r.a.followDrain(true, time.Hour)
	r.a.step(context.Background())
	r.expect(t, "draining", hostRoutes(vipA), true)
	r.a.now = time.Now // stop's wait is on the real clock
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.a.stop(context.Background(), 0)
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("stop waited for the drain's hour instead of the stop's drain delay")
	}
	r.a.followDrain(false, time.Hour)
	r.a.step(context.Background())
	r.expect(t, "stopped, then undrained", nil, false)

	short := newAnycastRig()
	short.a.now = time.Now
	short.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	short.a.step(context.Background())
	short.a.followDrain(true, 100*time.Millisecond)
	short.a.step(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		short.a.stop(context.Background(), time.Hour)
	}()
	select {
	case <-done:
	case <-time.After(testTimeout):
		t.Fatal("stop waited its hour though the drain's graceful phase had 100ms left")
	}
	short.expect(t, "stopped", nil, false)
}

func TestAnycasterRetriesAFailedCall(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.sp.fail = errors.New("speaker down")
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	if st := r.a.status(); st.Err == nil {
		t.Error("a failed announcement is not in the status")
	}
	r.sp.fail = nil
	r.a.step(ctx)
	r.expect(t, "after the retry", hostRoutes(vipA), false)
	if st := r.a.status(); st.Err != nil {
		t.Errorf("status error = %v after a successful retry", st.Err)
	}
}

func TestAnycasterWithdrawsAfterALastingDisagreement(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true, Disagrees: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "disagreeing for 0s", hostRoutes(vipA), false)
	r.now = r.now.Add(disagreeGrace / 2)
	// A new pass keeps the disagreement's start.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true, Disagrees: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "disagreeing for half the grace", hostRoutes(vipA), false)
	r.now = r.now.Add(disagreeGrace / 2)
	r.a.step(ctx)
	r.expect(t, "disagreeing for the grace", nil, false)
	// Agreement again: announced again, and a new disagreement starts
	// its grace afresh.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "agreeing", hostRoutes(vipA), false)
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true, Disagrees: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "disagreeing anew", hostRoutes(vipA), false)
}

// The rest of the speaker's life, for a director running with a fake.
func (f *fakeSpeaker) Start(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start")
	return nil
}

func (f *fakeSpeaker) Reconfigure(_ context.Context, cfg bgp.Config) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("reconfigure %d peers", len(cfg.Peers)))
	return nil
}

func (f *fakeSpeaker) Status() bgp.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bgp.Status{Peers: []bgp.PeerStatus{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, State: "established", Since: time.Now().Add(-time.Minute).Truncate(time.Second), Uptime: time.Minute}},
		Announced: slices.Clone(f.announced), Graceful: f.graceful}
}

func (f *fakeSpeaker) Stop(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop")
	f.announced = nil
	return nil
}

func (f *fakeSpeaker) callsNow() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// A director with a bgp VIP: holds it on lo (not on eth0: the ARP owner
// does not take it), announces it once IPVS holds the configuration and
// its service is up, withdraws it when every real is down, shows it in
// status, and on stop announces it as leaving for drain_delay before it
// withdraws and stops the speaker, then releases lo.
func TestDirectorAnnouncesBGPVIPs(t *testing.T) {
	const anyVIP = "203.0.113.50"
	vip := netip.MustParseAddr(anyVIP)
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	n.vips.AddLink(netkernel.Link{Name: "lo", Index: 1, Up: true, Running: true, NoARP: true, Loopback: true})
	service := fmt.Sprintf("  - name: anycast\n    vip: %s\n    port: 80\n    protocol: tcp\n    scheduler: mh\n    health_check: %s\n    reals: [{address: 192.0.2.21}]\n", anyVIP, l.check())
	file := strings.Replace(l.directorFile(n, service), "vips:\n",
		"bgp:\n  asn: 64513\n  drain_delay: 300ms\n  peers: [{address: 192.0.2.1, asn: 64500}]\nvips:\n  - {address: "+anyVIP+", mode: bgp}\n", 1)
	writeFile(t, n.conf, file)
	l.setHealth("192.0.2.21", true)

	sp := &fakeSpeaker{}
	d := l.newDirector(n)
	d.opts.Speaker = sp
	var stopping atomic.Int64
	d.opts.Stopping = func(atMost time.Duration) { stopping.Store(int64(atMost)) }
	l.run(n, d)
	testutil.WaitFor(t, testTimeout, "the bgp VIP announced", func() (bool, string) {
		got, _ := sp.state()
		return slices.Equal(got, hostRoutes(vip)), fmt.Sprint(got)
	})
	lo, err := n.vips.Addrs("lo")
	if err != nil || !slices.ContainsFunc(lo, func(a netkernel.Addr) bool { return a.Prefix == netip.PrefixFrom(vip, 32) }) {
		t.Errorf("lo holds %v (%v), want the bgp VIP", lo, err)
	}
	if holdsVIP(n.vips, vip) {
		t.Error("the bgp VIP is on eth0: the ARP owner took it")
	}
	if v, _ := n.sys.Get("net.ipv4.conf.all.arp_ignore"); v != "1" {
		t.Errorf("arp_ignore = %q, want 1 while a bgp VIP is on lo", v)
	}
	c := apiClient(t, n.sock)
	st := status(t, c)
	i := slices.IndexFunc(st.VIPs, func(v api.VIP) bool { return v.Address == vip })
	if i < 0 || !st.VIPs[i].Announced || st.VIPs[i].Mode != "bgp" || !st.VIPs[i].Held || st.BGP == nil || len(st.BGP.Peers) != 1 {
		t.Errorf("status vips %+v bgp %+v, want %s held on lo and announced, one peer", st.VIPs, st.BGP, anyVIP)
	}

	// Its only real goes down: the routers should send the VIP's traffic
	// nowhere.
	l.setHealth("192.0.2.21", false)
	testutil.WaitFor(t, testTimeout, "the bgp VIP withdrawn", func() (bool, string) {
		got, _ := sp.state()
		return len(got) == 0, fmt.Sprint(got)
	})
	st = status(t, c)
	if i := slices.IndexFunc(st.VIPs, func(v api.VIP) bool { return v.Address == vip }); i < 0 || st.VIPs[i].Withdrawn != withdrawNoQuorum {
		t.Errorf("status vips %+v, want %s withdrawn: %s", st.VIPs, anyVIP, withdrawNoQuorum)
	}
	l.setHealth("192.0.2.21", true)
	testutil.WaitFor(t, testTimeout, "the bgp VIP announced again", func() (bool, string) {
		got, _ := sp.state()
		return slices.Equal(got, hostRoutes(vip)), fmt.Sprint(got)
	})

	// A drain of the only announcer is refused; forced, it announces as
	// leaving, then withdraws; undrained, it announces again.
	if _, err := c.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: true}); err == nil || !strings.Contains(err.Error(), "no other director announces") {
		t.Errorf("drain of the only announcer: %v, want refused", err)
	}
	res, err := c.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: true, Force: true})
	if err != nil || !res.Draining || len(res.Orphaned) != 1 {
		t.Fatalf("forced drain: %+v, %v", res, err)
	}
	testutil.WaitFor(t, testTimeout, "the drained VIP withdrawn after drain_delay", func() (bool, string) {
		got, _ := sp.state()
		return len(got) == 0, fmt.Sprint(got, sp.callsNow())
	})
	if calls := sp.callsNow(); !slices.Contains(calls, "graceful") {
		t.Errorf("calls %v: the drain did not announce as leaving first", calls)
	}
	if _, err := c.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: false}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, testTimeout, "the VIP announced again after undrain", func() (bool, string) {
		got, g := sp.state()
		return slices.Equal(got, hostRoutes(vip)) && !g, fmt.Sprint(got, g)
	})

	before := len(sp.callsNow())
	l.stop(n)
	calls := sp.callsNow()[before:]
	want := []string{"graceful", "announce", "announce", "normal", "stop"}
	if !slices.Equal(calls, want) {
		t.Errorf("calls at stop = %v, want %v (leaving first, then withdraw, then stop)", calls, want)
	}
	if got, want := time.Duration(stopping.Load()), 300*time.Millisecond+speakerStopTimeout; got != want {
		t.Errorf("the stop announced it takes up to %v, want drain_delay + %v = %v", got, speakerStopTimeout, want)
	}
	lo, _ = n.vips.Addrs("lo")
	if slices.ContainsFunc(lo, func(a netkernel.Addr) bool { return a.Prefix == netip.PrefixFrom(vip, 32) }) {
		t.Errorf("lo still holds the bgp VIP after stop: %v", lo)
	}
}

// TestPeersOfSince: dsrd status shows when an established session came up
// from its first second on (gobgp counts uptime in whole seconds: a
// session up for less than one has a zero Uptime, and was shown with a
// zero Since, as if it were not up), and no Since for a session that is
// not established.
func TestPeersOfSince(t *testing.T) {
	up := time.Now().Truncate(time.Second)
	got := peersOf(bgp.Status{Peers: []bgp.PeerStatus{
		{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, State: "established", Since: up, Uptime: 0, BFD: "up", Announced: 1},
		{Address: netip.MustParseAddr("192.0.2.2"), ASN: 64500, State: "active", BFD: "down"},
	}})
	want := []api.BGPPeer{
		{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, State: "established", Since: up, BFD: "up", Announced: 1},
		{Address: netip.MustParseAddr("192.0.2.2"), ASN: 64500, State: "active", BFD: "down"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("peersOf = %+v, want %+v", got, want)
	}
}
