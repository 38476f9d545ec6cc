//go:build vmtest

package e2e

// Admission control (internal/admission) against the real kernel: the dsrd
// nftables table on dir1's input hook at priority 0 runs before IPVS's
// LOCAL_IN hooks (98 and 99), which this test shows with packets: a denied
// source's SYNs raise the deny counter and leave no IPVS connection entry,
// while an allowed source is served. A per-source rate drops new
// connections past the burst; the foreign nftables table and iptables rule
// on dir1 survive every replace and the release.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/admission"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

var (
	// The client's second address, the one the rules deny.
	badClient4 = netip.MustParseAddr("192.0.2.50")
	badClient6 = netip.MustParseAddr("2001:db8::50")
)

// admissionDo runs f with the kernel backend inside dir1.
func admissionDo(t *testing.T, f func(k admission.NFT) error) {
	t.Helper()
	if err := lab.Do(lab.Dir1, func() error { return f(admission.NFT{}) }); err != nil {
		t.Fatal(err)
	}
}

// admissionCounters reads dir1's dsrd counters.
func admissionCounters(t *testing.T) map[string]uint64 {
	t.Helper()
	var c map[string]uint64
	admissionDo(t, func(k admission.NFT) error {
		var err error
		c, err = k.Counters(context.Background())
		return err
	})
	return c
}

// tryDial connects from the client's address src to addr and reads the
// greeting; a dropped SYN ends in the timeout. It reports success.
func tryDial(t *testing.T, src netip.Addr, addr netip.AddrPort, timeout time.Duration) bool {
	ok, _ := dialOutcome(t, src, addr, timeout)
	return ok
}

// dialOutcome is tryDial that also reports whether the SYN was answered at
// all: a reset (nothing listening) is an answer.
func dialOutcome(t *testing.T, src netip.Addr, addr netip.AddrPort, timeout time.Duration) (ok, answered bool) {
	t.Helper()
	err := lab.Do(lab.Client, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			answered = errors.Is(err, syscall.ECONNREFUSED)
			return nil
		}
		answered = true
		defer c.Close()
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			tc.SetLinger(0)
		}
		c.SetDeadline(time.Now().Add(ipvsIOTimeout))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		ok = n > 0
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok, answered
}

// ipvsConnsFrom counts dir1's IPVS connection entries from src.
func ipvsConnsFrom(t *testing.T, src netip.Addr) int {
	t.Helper()
	conns, err := lab.IPVSConns(context.Background(), lab.Dir1)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range conns {
		if h, _, err := net.SplitHostPort(c.Source); err == nil && h == src.String() {
			n++
		} else if strings.HasPrefix(c.Source, "["+src.String()+"]") {
			n++
		}
	}
	return n
}

// foreignRules adds to dir1 an nftables table and an iptables rule dsrd
// must never touch, and returns a check that they are still there.
func foreignRules(t *testing.T) func(when string) {
	t.Helper()
	return foreignRulesOn(t, lab.Dir1)
}

// foreignRulesOn is foreignRules on director h.
func foreignRulesOn(t *testing.T, h lab.Host) func(when string) {
	t.Helper()
	ctx := context.Background()
	if _, err := lab.InNS(ctx, h, "nft", "add table inet foreign; add chain inet foreign c { type filter hook input priority 10; }; add rule inet foreign c meta l4proto tcp counter"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.InNS(ctx, h, "iptables", "-A", "INPUT", "-s", "203.0.113.99", "-j", "ACCEPT"); err != nil {
		t.Fatal(err)
	}
	return func(when string) {
		t.Helper()
		out, err := lab.InNS(ctx, h, "nft", "list", "table", "inet", "foreign")
		if err != nil || !strings.Contains(out, "meta l4proto tcp counter") {
			t.Errorf("%s: %s's foreign nftables table: %v\n%s", when, h, err, out)
		}
		out, err = lab.InNS(ctx, h, "iptables", "-S", "INPUT")
		if err != nil || !strings.Contains(out, "-A INPUT -s 203.0.113.99/32 -j ACCEPT") {
			t.Errorf("%s: %s's iptables rule: %v\n%s", when, h, err, out)
		}
	}
}

func TestAdmission(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	ctx := context.Background()
	r, _ := ipvsDirector(t, ipvsVIP4, lab.RS1, lab.RS2)
	ipvsDirector(t, ipvsVIP6, lab.RS1, lab.RS2) // the VIP and the reals' setup
	lab.MustIPBatch(t, lab.Client, "addr add "+badClient4.String()+"/24 dev eth0", "addr add "+badClient6.String()+"/64 dev eth0 nodad")
	web4 := netip.AddrPortFrom(ipvsVIP4, 9000)
	web6 := netip.AddrPortFrom(ipvsVIP6, 9000)
	rate4 := netip.AddrPortFrom(ipvsVIP4, 9001)
	st := ipvs.State{}
	for _, a := range []netip.AddrPort{web4, rate4, web6} {
		maps.Copy(st, ipvsState(ipvs.NewServiceKey(ipvs.TCP, a), a.Port(), a.Addr(), nil, lab.RS1, lab.RS2))
	}
	mustApply(t, r, st)
	// The backends listen on 9000 only: rate4 forwards to 9001, where a
	// real answers with a reset, which is enough to tell a SYN got through.
	survive := foreignRules(t)

	svc := func(name string, a netip.AddrPort) admission.Service {
		fam := 4
		if a.Addr().Is6() {
			fam = 6
		}
		return admission.Service{Name: name, Family: fam, Protocol: "tcp", VIP: a.Addr(), Port: a.Port()}
	}
	w4, w6, rl := svc("web4", web4), svc("web6", web6), svc("rate4", rate4)
	w4.Deny = []netip.Prefix{netip.PrefixFrom(badClient4, 32), netip.MustParsePrefix("198.51.100.0/24")}
	w6.Deny = []netip.Prefix{netip.PrefixFrom(badClient6, 128)}
	rl.SourceRate = &admission.SourceRate{Rate: admission.Rate{Count: 1, Per: time.Minute, Burst: 3}, PrefixV4: 32, PrefixV6: 64}
	admissionDo(t, func(k admission.NFT) error {
		p, err := admission.Build(admission.Config{Services: []admission.Service{w4, w6, rl}})
		if err != nil {
			return err
		}
		return k.Replace(ctx, p)
	})
	out := lab.MustInNS(t, lab.Dir1, "nft", "list", "table", "inet", "dsrd")
	t.Logf("the dsrd table:\n%s", out)
	if !strings.Contains(out, "hook input priority filter") {
		t.Errorf("the base chain is not at the filter priority of the input hook")
	}
	survive("after the first replace")

	// Allowed: served, IPv4 and IPv6.
	for _, a := range []struct {
		src netip.Addr
		to  netip.AddrPort
	}{{lab.Client.IPv4(), web4}, {lab.Client.IPv6(), web6}} {
		if !tryDial(t, a.src, a.to, ipvsIOTimeout) {
			t.Errorf("%s to %s: refused, want served", a.src, a.to)
		}
	}
	// Denied: no answer, the counter rises, IPVS made no entry.
	for _, a := range []struct {
		src     netip.Addr
		to      netip.AddrPort
		counter string
	}{{badClient4, web4, "deny_web4"}, {badClient6, web6, "deny_web6"}} {
		if tryDial(t, a.src, a.to, time.Second) {
			t.Errorf("%s to %s: served, want dropped", a.src, a.to)
		}
		if c := admissionCounters(t)[a.counter]; c == 0 {
			t.Errorf("%s: %d packets, want some", a.counter, c)
		}
		if n := ipvsConnsFrom(t, a.src); n != 0 {
			t.Errorf("%d IPVS connections from the denied %s, want none: admission runs after IPVS", n, a.src)
		}
	}
	if n := ipvsConnsFrom(t, lab.Client.IPv4()); n == 0 {
		t.Errorf("no IPVS connection from the allowed client: cannot tell the denied one's absence from a broken listing")
	}

	// Rate: 1/minute with a burst of 3; 8 new connections from one source
	// in a few seconds get at most 1+3 through (nft counts the burst on
	// top of the first token).
	passed := 0
	for range 8 {
		if _, answered := dialOutcome(t, lab.Client.IPv4(), rate4, 500*time.Millisecond); answered {
			passed++
		}
	}
	dropped := admissionCounters(t)["rate_rate4"]
	t.Logf("rate: %d of 8 connections passed, %d SYNs dropped", passed, dropped)
	if passed < 1 || passed > 4 || dropped == 0 {
		t.Errorf("rate: %d of 8 passed (want 1 to 4), %d dropped (want some)", passed, dropped)
	}
	// The meter holds the one source.
	admissionDo(t, func(k admission.NFT) error {
		n, err := k.SetSize(ctx, admission.MeterName("rate4"))
		if err == nil && n != 1 {
			err = fmt.Errorf("meter has %d sources, want 1", n)
		}
		return err
	})

	// A reload to an allow list: the denied address is now not allowed,
	// the client still served.
	w4.Deny, w4.Allow = nil, []netip.Prefix{netip.PrefixFrom(lab.Client.IPv4(), 32)}
	admissionDo(t, func(k admission.NFT) error {
		p, err := admission.Build(admission.Config{Services: []admission.Service{w4, w6}})
		if err != nil {
			return err
		}
		return k.Replace(ctx, p)
	})
	survive("after the second replace")
	if !tryDial(t, lab.Client.IPv4(), web4, ipvsIOTimeout) {
		t.Errorf("the allowed client is refused after the reload")
	}
	if tryDial(t, badClient4, web4, time.Second) {
		t.Errorf("the address out of the allow list is served")
	}
	if c := admissionCounters(t)["not_allowed_web4"]; c == 0 {
		t.Errorf("not_allowed_web4 counted nothing")
	}

	// Release: the table goes, the foreign rules stay, traffic flows.
	admissionDo(t, func(k admission.NFT) error { return k.Delete(ctx) })
	if out, err := lab.InNS(ctx, lab.Dir1, "nft", "list", "table", "inet", "dsrd"); err == nil {
		t.Errorf("the dsrd table is still there after delete:\n%s", out)
	}
	survive("after the delete")
	if !tryDial(t, badClient4, web4, ipvsIOTimeout) {
		t.Errorf("released, %s is still refused", badClient4)
	}
	// Deleting what is not there is no error.
	admissionDo(t, func(k admission.NFT) error { return k.Delete(ctx) })
}

// TestAdmissionFlood: a SYN flood from four (spoofed) sources against a
// service with a per-source rate, while a legitimate client keeps
// connecting within its rate: the client is served at least 99 % of the
// time, the flood's SYNs beyond each source's burst are dropped before
// IPVS (the rate counter, IPVS's connection entries from the flooding
// sources bounded by the rate), the flood is bounded (20,000 SYNs), and
// the service's top offenders, read back from the kernel with their
// counters, are exactly the flooding sources.
func TestAdmissionFlood(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	ctx := context.Background()
	r, _ := ipvsDirector(t, ipvsVIP4, lab.RS1, lab.RS2)
	web := netip.AddrPortFrom(ipvsVIP4, 9000)
	mustApply(t, r, ipvsState(ipvs.NewServiceKey(ipvs.TCP, web), 9000, ipvsVIP4, nil, lab.RS1, lab.RS2))
	svc := admission.Service{Name: "web", Family: 4, Protocol: "tcp", VIP: ipvsVIP4, Port: 9000,
		SourceRate: &admission.SourceRate{Rate: admission.Rate{Count: 10, Per: time.Second, Burst: 20}, PrefixV4: 32, PrefixV6: 64}}
	// Through a Controller, as the director does, for its Top.
	ctl := admission.NewController(admission.NFT{})
	admissionDo(t, func(admission.NFT) error {
		return ctl.Apply(ctx, admission.Config{Services: []admission.Service{svc}})
	})
	attackers := []netip.Addr{netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("192.0.2.101"),
		netip.MustParseAddr("192.0.2.102"), netip.MustParseAddr("192.0.2.103")}

	const floodSYNs, probes = 20000, 100
	start := time.Now()
	type result struct {
		sent int
		err  error
	}
	floodc := make(chan result, 1)
	go func() { // ends after floodSYNs sends
		n, err := lab.SYNFlood(attackers, web, floodSYNs)
		floodc <- result{n, err}
	}()
	// The client connects 8 times a second, under its own rate of 10/s:
	// a client that behaves is never dropped, and the top offenders
	// must not name it. (Unpaced, it connected about 12 times a second
	// under TCG and had 7 of its SYNs dropped by its rate, which is the
	// rule doing its job.)
	tick := time.NewTicker(125 * time.Millisecond)
	defer tick.Stop()
	served, duringFlood := 0, 0
	var flood result
	floodDone := false
	for range probes {
		if tryDial(t, lab.Client.IPv4(), web, ipvsIOTimeout) {
			served++
		}
		if !floodDone {
			duringFlood++
			select {
			case flood = <-floodc:
				floodDone = true
			default:
			}
		}
		<-tick.C
	}
	if !floodDone {
		flood = <-floodc
	}
	took := time.Since(start)
	if flood.err != nil {
		t.Fatal(flood.err)
	}
	sent := flood.sent
	dropped := admissionCounters(t)["rate_web"]
	flooders := 0
	for _, a := range attackers {
		flooders += ipvsConnsFrom(t, a)
	}
	// Each source: its burst, then its rate, over the run (and a second
	// of slack for the bucket's rounding).
	bound := len(attackers) * (20 + 10*int(took.Seconds()+1))
	t.Logf("flood: %d SYNs from %d sources, %d of the client's attempts during it; in all %v; the client served %d/%d; %d SYNs dropped by the rate; %d IPVS entries from the flooders (bound %d)",
		sent, len(attackers), duringFlood, took.Round(time.Millisecond), served, probes, dropped, flooders, bound)
	if served < probes*99/100 {
		t.Errorf("the client was served %d of %d times during the flood, want at least 99 %%", served, probes)
	}
	if sent < floodSYNs/2 {
		t.Errorf("only %d of %d SYNs sent", sent, floodSYNs)
	}
	if int(dropped) < sent-bound {
		t.Errorf("%d SYNs dropped by the rate, want at least %d (sent %d, bound %d)", dropped, sent-bound, sent, bound)
	}
	if flooders > bound {
		t.Errorf("%d IPVS connection entries from the flooding sources, want at most %d", flooders, bound)
	}

	// The top offenders, read back from the kernel's offender set: the
	// four flooding sources and not the client, their packets adding up
	// to the rate counter (each dropped SYN is counted by both), each
	// about a quarter of it.
	var top map[string][]admission.SourceCount
	admissionDo(t, func(admission.NFT) error {
		var err error
		top, err = ctl.Top(ctx, admission.MaxTop)
		return err
	})
	t.Logf("top offenders of web: %+v", top["web"])
	var sum uint64
	var got []netip.Addr
	for _, s := range top["web"] {
		sum += s.Packets
		got = append(got, s.Source)
		if s.Packets < dropped/8 || s.Expires <= 0 {
			t.Errorf("offender %s: %d packets (of %d dropped), expires in %v", s.Source, s.Packets, dropped, s.Expires)
		}
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, attackers) || sum != dropped {
		t.Errorf("top offenders %v with %d packets, want exactly the flooding sources %v with the %d the rate dropped", got, sum, attackers, dropped)
	}
	for i := 1; i < len(top["web"]); i++ {
		if top["web"][i].Packets > top["web"][i-1].Packets {
			t.Errorf("top offenders not sorted: %+v", top["web"])
		}
	}
}

// TestAdmissionReloadProbe: replacing the table from one allow list to
// another never refuses an address both allow, even for a moment: a probe
// connects through six replaces of a table made large (10,000 IPv6
// prefixes on a second service) so that each takes a while, and is served
// every time.
func TestAdmissionReloadProbe(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	ctx := context.Background()
	r, _ := ipvsDirector(t, ipvsVIP4, lab.RS1, lab.RS2)
	web := netip.AddrPortFrom(ipvsVIP4, 9000)
	mustApply(t, r, ipvsState(ipvs.NewServiceKey(ipvs.TCP, web), 9000, ipvsVIP4, nil, lab.RS1, lab.RS2))
	big := make([]netip.Prefix, 10000)
	for i := range big {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0x80, byte(i >> 15), byte(i >> 7), byte(i<<1) & 0xfe}
		big[i] = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	other := admission.Service{Name: "other", Family: 6, Protocol: "tcp", VIP: ipvsVIP6, Port: 9000, Deny: big}
	lists := [][]netip.Prefix{
		{netip.PrefixFrom(lab.Client.IPv4(), 32), netip.MustParsePrefix("198.51.100.0/24")},
		{netip.MustParsePrefix("192.0.2.0/25")},
	}
	replace := func(allow []netip.Prefix) time.Duration {
		svc := admission.Service{Name: "web", Family: 4, Protocol: "tcp", VIP: ipvsVIP4, Port: 9000, Allow: allow}
		var took time.Duration
		admissionDo(t, func(k admission.NFT) error {
			p, err := admission.Build(admission.Config{Services: []admission.Service{svc, other}})
			if err != nil {
				return err
			}
			start := time.Now()
			err = k.Replace(ctx, p)
			took = time.Since(start)
			return err
		})
		return took
	}
	replace(lists[0])

	stop := make(chan struct{})
	type result struct{ ok, failed int }
	probec := make(chan result, 1)
	go func() { // ends when stop is closed
		var res result
		for {
			select {
			case <-stop:
				probec <- res
				return
			default:
			}
			served := false
			_ = lab.Do(lab.Client, func() error {
				c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial("tcp", web.String())
				if err == nil {
					served = true
					if tc, ok := c.(*net.TCPConn); ok {
						tc.SetLinger(0)
					}
					c.Close()
				}
				return nil
			})
			if served {
				res.ok++
			} else {
				res.failed++
			}
		}
	}()
	var took []time.Duration
	for i := range 6 {
		took = append(took, replace(lists[(i+1)%2]).Round(time.Millisecond))
	}
	close(stop)
	res := <-probec
	t.Logf("6 replaces (%v) while the probe connected: %d served, %d not", took, res.ok, res.failed)
	if res.failed != 0 || res.ok == 0 {
		t.Errorf("the probe, allowed by both lists, was refused %d times (served %d) across the replaces", res.failed, res.ok)
	}
}
