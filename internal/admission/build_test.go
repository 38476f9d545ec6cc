package admission

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestBuildText(t *testing.T) {
	cfg := Config{Services: []Service{
		{Name: "plain", Family: 4, Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.10"), Port: 80},
		{Name: "web", Family: 4, Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.10"), Port: 443,
			Allow:       pfx("198.51.100.0/24", "198.51.100.128/25", "203.0.113.0/25", "203.0.113.128/25", "2001:db8::/32"),
			Deny:        pfx("198.51.100.7/32"),
			SourceRate:  &SourceRate{Rate: Rate{Count: 10, Per: time.Second, Burst: 20}, PrefixV4: 24, PrefixV6: 64},
			ServiceRate: &Rate{Count: 1000, Per: time.Second, Burst: 100}},
		{Name: "dns6", Family: 6, Protocol: "udp", VIP: netip.MustParseAddr("2001:db8::53"), Port: 53,
			Deny:       pfx("2001:db8:bad::/48", "::/0"),
			SourceRate: &SourceRate{Rate: Rate{Count: 5, Per: time.Minute, Burst: 5}, PrefixV4: 32, PrefixV6: 128}},
		{Name: "mark", Family: 4, FWMark: 7, ServiceRate: &Rate{Count: 1, Per: time.Hour, Burst: 1}},
	}}
	p, err := Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := `table inet dsrd {
	counter deny_web {
	}
	counter not_allowed_web {
	}
	counter rate_web {
	}
	counter cap_web {
	}
	counter deny_dns6 {
	}
	counter rate_dns6 {
	}
	counter cap_mark {
	}
	set deny_web {
		type ipv4_addr
		flags interval
		elements = { 198.51.100.7/32 }
	}
	set top_web {
		type ipv4_addr
		size 4096
		flags dynamic,timeout
		timeout 10m0s
	}
	set allow_web {
		type ipv4_addr
		flags interval
		elements = { 198.51.100.0/24, 203.0.113.0/24 }
	}
	set meter_web {
		type ipv4_addr
		size 65536
		flags dynamic,timeout
		timeout 1m0s
	}
	set deny_dns6 {
		type ipv6_addr
		flags interval
		elements = { ::/0 }
	}
	set top_dns6 {
		type ipv6_addr
		size 4096
		flags dynamic,timeout
		timeout 10m0s
	}
	set meter_dns6 {
		type ipv6_addr
		size 65536
		flags dynamic,timeout
		timeout 1m0s
	}
	chain input {
		type filter hook input priority 0; policy accept;
		meta nfproto ipv4 ip daddr 192.0.2.10 meta l4proto tcp th dport 443 jump svc_web
		meta nfproto ipv6 ip6 daddr 2001:db8::53 meta l4proto udp th dport 53 jump svc_dns6
		meta nfproto ipv4 meta mark 0x00000007 jump svc_mark
	}
	chain svc_web {
		ip saddr @deny_web counter name "deny_web" goto drop_web
		ip saddr != @allow_web counter name "not_allowed_web" goto drop_web
		tcp flags & (syn | ack) != syn return
		update @meter_web { ip saddr and /24 limit rate over 10/second burst 20 packets } counter name "rate_web" goto drop_web
		limit rate over 1000/second burst 100 packets counter name "cap_web" drop
	}
	chain drop_web {
		update @top_web { ip saddr counter }
		drop
	}
	chain svc_dns6 {
		ip6 saddr @deny_dns6 counter name "deny_dns6" goto drop_dns6
		update @meter_dns6 { ip6 saddr limit rate over 5/minute burst 5 packets } counter name "rate_dns6" goto drop_dns6
	}
	chain drop_dns6 {
		update @top_dns6 { ip6 saddr counter }
		drop
	}
	chain svc_mark {
		limit rate over 1/hour burst 1 packets counter name "cap_mark" drop
	}
}
`
	if got := p.String(); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if len(p.Services) != 3 || p.Services[0].Meter != "meter_web" || p.Services[2].Counters[ReasonCap] != "cap_mark" ||
		p.Services[0].Top != "top_web" || p.Services[1].Top != "top_dns6" || p.Services[2].Top != "" {
		t.Errorf("services %+v", p.Services)
	}
}

// TestBuildExprs checks the expressions behind the text where a mistake
// would not show in it: set references, the end of an interval that
// reaches the top of the address space, the mask of a meter key.
func TestBuildExprs(t *testing.T) {
	p, err := Build(Config{Services: []Service{{Name: "s", Family: 4, Protocol: "tcp",
		VIP: netip.MustParseAddr("192.0.2.1"), Port: 80, Deny: pfx("255.255.255.0/24", "198.51.100.0/24"),
		SourceRate: &SourceRate{Rate: Rate{Count: 1, Per: time.Second, Burst: 1}, PrefixV4: 20, PrefixV6: 64}}}})
	if err != nil {
		t.Fatal(err)
	}
	deny := p.Sets[0]
	// 198.51.100.0 start, 198.51.101.0 end, 255.255.255.0 start, no end.
	if len(deny.Elements) != 3 || !deny.Elements[1].IntervalEnd || deny.Elements[2].IntervalEnd ||
		netip.AddrFrom4([4]byte(deny.Elements[1].Key)) != netip.MustParseAddr("198.51.101.0") {
		t.Errorf("deny elements %+v", deny.Elements)
	}
	ids := map[string]uint32{}
	for _, s := range p.Sets {
		if s.Set.ID == 0 || ids[s.Set.Name] != 0 {
			t.Errorf("set %s id %d", s.Set.Name, s.Set.ID)
		}
		ids[s.Set.Name] = s.Set.ID
	}
	var sawLookup, sawDynset, sawTop bool
	for _, r := range p.Rules {
		for i, e := range r.Exprs {
			switch x := e.(type) {
			case *expr.Lookup:
				sawLookup = true
				if x.SetID != ids[x.SetName] {
					t.Errorf("lookup %s id %d, set has %d", x.SetName, x.SetID, ids[x.SetName])
				}
			case *expr.Dynset:
				sawDynset = true
				if x.SetID != ids[x.SetName] {
					t.Errorf("dynset %s id %d, set has %d", x.SetName, x.SetID, ids[x.SetName])
				}
				if x.SetName == TopName("s") {
					// The offender set: the whole source, a counter.
					_, isPayload := r.Exprs[i-1].(*expr.Payload)
					if _, isCounter := x.Exprs[0].(*expr.Counter); !isPayload || !isCounter || len(x.Exprs) != 1 {
						t.Errorf("offender update %+v after %T", x, r.Exprs[i-1])
					}
					sawTop = true
					continue
				}
				mask := r.Exprs[i-1].(*expr.Bitwise).Mask
				if fmt.Sprint(mask) != "[255 255 240 0]" {
					t.Errorf("meter mask %v", mask)
				}
				if l := x.Exprs[0].(*expr.Limit); !l.Over || l.Rate != 1 || l.Burst != 1 || l.Unit != expr.LimitTimeSecond {
					t.Errorf("limit %+v", l)
				}
			}
		}
	}
	if !sawLookup || !sawDynset || !sawTop {
		t.Error("no lookup, no dynset or no offender update")
	}
}

func TestBuildRefuses(t *testing.T) {
	vip := netip.MustParseAddr("192.0.2.1")
	ok := Service{Name: "s", Family: 4, Protocol: "tcp", VIP: vip, Port: 80, Deny: pfx("198.51.100.0/24")}
	for name, mut := range map[string]func(*Service){
		"bad name":   func(s *Service) { s.Name = "a b" },
		"family":     func(s *Service) { s.Family = 5 },
		"vip family": func(s *Service) { s.Family = 6 },
		"protocol":   func(s *Service) { s.Protocol = "icmp" },
		"rate 0":     func(s *Service) { s.ServiceRate = &Rate{Per: time.Second} },
		"odd unit":   func(s *Service) { s.ServiceRate = &Rate{Count: 1, Per: 3 * time.Second} },
		"prefix length": func(s *Service) {
			s.SourceRate = &SourceRate{Rate: Rate{Count: 1, Per: time.Second}, PrefixV4: 33, PrefixV6: 64}
		},
		"too many": func(s *Service) { s.Deny = make([]netip.Prefix, MaxPrefixes+1) },
	} {
		s := ok
		mut(&s)
		if _, err := Build(Config{Services: []Service{s}}); err == nil {
			t.Errorf("%s: built", name)
		}
	}
	if _, err := Build(Config{Services: []Service{ok, ok}}); err == nil {
		t.Error("duplicate name built")
	}
	if _, err := Build(Config{Services: []Service{ok}}); err != nil {
		t.Error(err)
	}
}

func TestSpans(t *testing.T) {
	got := spans(pfx("192.0.2.0/25", "192.0.2.128/25", "192.0.2.64/26", "10.0.0.0/8", "2001:db8::/32", "198.51.100.1/32", "198.51.100.3/32"), 4)
	var s []string
	for _, x := range got {
		s = append(s, spanText(x))
	}
	if want := "10.0.0.0/8 192.0.2.0/24 198.51.100.1/32 198.51.100.3/32"; strings.Join(s, " ") != want {
		t.Errorf("spans %v, want %s", s, want)
	}
	for _, tc := range []struct{ first, last, want string }{
		{"192.0.2.0", "192.0.2.255", "192.0.2.0/24"},
		{"192.0.2.7", "192.0.2.7", "192.0.2.7/32"},
		{"192.0.2.0", "192.0.2.2", "192.0.2.0-192.0.2.2"},
		{"192.0.2.1", "192.0.2.2", "192.0.2.1-192.0.2.2"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"2001:db8::", "2001:db8:0:1::ffff", "2001:db8::-2001:db8:0:1::ffff"},
	} {
		if got := spanText(span{netip.MustParseAddr(tc.first), netip.MustParseAddr(tc.last)}); got != tc.want {
			t.Errorf("spanText(%s, %s) = %s, want %s", tc.first, tc.last, got, tc.want)
		}
	}
	got = spans(pfx("0.0.0.0/0", "192.0.2.0/24"), 4)
	if len(got) != 1 || spanText(got[0]) != "0.0.0.0/0" {
		t.Errorf("spans %v", got)
	}
}

func TestCounterNames(t *testing.T) {
	for _, r := range Reasons {
		s, got, ok := ParseCounterName(CounterName("rate_x", r))
		if !ok || s != "rate_x" || got != r {
			t.Errorf("%s: %q %q %v", r, s, got, ok)
		}
	}
	if _, _, ok := ParseCounterName("other"); ok {
		t.Error("parsed other")
	}
}

func TestController(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	c := NewController(f)
	web := Service{Name: "web", Family: 4, Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.1"), Port: 80,
		Deny: pfx("198.51.100.0/24"), SourceRate: &SourceRate{Rate: Rate{Count: 1, Per: time.Second, Burst: 1}, PrefixV4: 32, PrefixV6: 128}}
	plain := Service{Name: "plain", Family: 4, Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.1"), Port: 81}
	if c.Covers(web) || !c.Covers(plain) {
		t.Fatal("covers before any apply")
	}
	if err := c.Apply(ctx, Config{Services: []Service{web, plain}}); err != nil {
		t.Fatal(err)
	}
	if !c.Covers(web) || !strings.Contains(f.Table(), "chain svc_web") {
		t.Fatalf("after apply: %v\n%s", c.Covers(web), f.Table())
	}
	// The same configuration again sends nothing.
	if err := c.Apply(ctx, Config{Services: []Service{web, plain}}); err != nil || f.Replaced() != 1 {
		t.Fatalf("reapply: %v, %d replaces", err, f.Replaced())
	}
	// A failed replace keeps the old rules, which still cover web as it
	// was, not as it was asked to become.
	f.Fail(errors.New("boom"))
	web2 := web
	web2.Deny = pfx("203.0.113.0/24")
	if err := c.Apply(ctx, Config{Services: []Service{web2}}); err == nil {
		t.Fatal("apply succeeded")
	}
	if c.Covers(web2) || !c.Covers(web) || !strings.Contains(f.Table(), "198.51.100.0/24") || c.Err() == nil {
		t.Fatal("failed apply changed the state")
	}
	f.Fail(nil)
	f.Count("deny_web", 42, "meter_web", 3)
	st, err := c.Stats(ctx)
	if err != nil || len(st) != 1 || st[0].Dropped[ReasonDeny] != 42 || st[0].MeterSources != 3 {
		t.Fatalf("stats %+v %v", st, err)
	}
	// Status: web2 was asked for and is not in place; its counters are
	// those of the rules in place (web's).
	ss, err := c.Status(ctx)
	if err != nil || len(ss) != 1 || ss[0].Name != "web" || ss[0].InPlace || ss[0].Deny != 1 ||
		ss[0].SourceRate != "1/second burst 1 packets" || ss[0].SourcePrefix != 32 || ss[0].Dropped[ReasonDeny] != 42 {
		t.Fatalf("status %+v %v", ss, err)
	}
	// No admission left: the table goes.
	if err := c.Apply(ctx, Config{Services: []Service{plain}}); err != nil || f.Table() != "" {
		t.Fatalf("empty config: %v %q", err, f.Table())
	}
	if err := c.Apply(ctx, Config{Services: []Service{web}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Release(ctx); err != nil || f.Table() != "" || c.Covers(web) {
		t.Fatal("release")
	}
}

// TestControllerTop: the offender sets are read per service, sorted by
// dropped packets (ties by address) and cut at n, n capped at MaxTop; a
// service with only a cap has no set; a set the kernel cannot read is an
// error naming its service, and the others are still reported.
func TestControllerTop(t *testing.T) {
	ctx := context.Background()
	f := &Fake{}
	c := NewController(f)
	web := Service{Name: "web", Family: 4, Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.1"), Port: 80,
		SourceRate: &SourceRate{Rate: Rate{Count: 1, Per: time.Second, Burst: 1}, PrefixV4: 32, PrefixV6: 128}}
	dns := Service{Name: "dns", Family: 6, Protocol: "udp", VIP: netip.MustParseAddr("2001:db8::53"), Port: 53,
		Deny: pfx("2001:db8:bad::/48")}
	capped := Service{Name: "capped", Family: 4, Protocol: "tcp", VIP: netip.MustParseAddr("192.0.2.1"), Port: 81,
		ServiceRate: &Rate{Count: 1, Per: time.Second, Burst: 1}}
	if top, err := c.Top(ctx, 5); err != nil || top != nil {
		t.Fatalf("top before any apply: %v %v", top, err)
	}
	if err := c.Apply(ctx, Config{Services: []Service{web, dns, capped}}); err != nil {
		t.Fatal(err)
	}
	var srcs []SourceCount
	for i := range 2 * MaxTop {
		// 192.0.2.100 .. 119 with 1 .. 20 packets, and two ties.
		srcs = append(srcs, SourceCount{Source: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), Packets: uint64(i + 1)})
	}
	srcs = append(srcs, SourceCount{Source: netip.MustParseAddr("192.0.2.99"), Packets: 20},
		SourceCount{Source: netip.MustParseAddr("192.0.2.200"), Packets: 20})
	f.Offend(TopName("web"), srcs...)
	f.Offend(TopName("dns"), SourceCount{Source: netip.MustParseAddr("2001:db8:bad::1"), Packets: 3})

	top, err := c.Top(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	text := func(l []SourceCount) string {
		var w []string
		for _, s := range l {
			w = append(w, fmt.Sprintf("%s=%d", s.Source, s.Packets))
		}
		return strings.Join(w, " ")
	}
	if got, want := text(top["web"]), "192.0.2.99=20 192.0.2.119=20 192.0.2.200=20"; got != want {
		t.Errorf("web top 3: %s, want %s", got, want)
	}
	if got := text(top["dns"]); got != "2001:db8:bad::1=3" {
		t.Errorf("dns top: %s", got)
	}
	if _, ok := top["capped"]; ok || len(top) != 2 {
		t.Errorf("top %v: want web and dns only", top)
	}
	for _, n := range []int{MaxTop, MaxTop + 1, 1 << 30} {
		if top, err := c.Top(ctx, n); err != nil || len(top["web"]) != MaxTop {
			t.Errorf("top %d: %d sources, %v; want %d", n, len(top["web"]), err, MaxTop)
		}
	}
	for _, n := range []int{0, -1} {
		if top, err := c.Top(ctx, n); err != nil || top != nil {
			t.Errorf("top %d: %v %v, want nothing", n, top, err)
		}
	}
	// A table that lost its sets (another program replaced it): the
	// error names the services.
	if err := f.Replace(ctx, &Plan{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Top(ctx, 3); err == nil || !strings.Contains(err.Error(), "service web") || !strings.Contains(err.Error(), "service dns") {
		t.Errorf("top of a table without the sets: %v", err)
	}
	if err := c.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if top, err := c.Top(ctx, 3); err != nil || top != nil {
		t.Errorf("top after release: %v %v", top, err)
	}
}

// TestSourceCounts: the kernel's elements become sources; a key that is
// not an address, or an element without its counter, is an error rather
// than a made-up count.
func TestSourceCounts(t *testing.T) {
	got, err := sourceCounts("top_web", []nftables.SetElement{
		{Key: []byte{192, 0, 2, 1}, Counter: &expr.Counter{Packets: 5, Bytes: 300}, Expires: time.Minute},
		{Key: netip.MustParseAddr("2001:db8::1").AsSlice(), Counter: &expr.Counter{Packets: 1}},
	})
	if err != nil || len(got) != 2 || got[0] != (SourceCount{netip.MustParseAddr("192.0.2.1"), 5, time.Minute}) ||
		got[1].Source != netip.MustParseAddr("2001:db8::1") || got[1].Packets != 1 {
		t.Fatalf("sources %+v %v", got, err)
	}
	if _, err := sourceCounts("top_web", []nftables.SetElement{{Key: []byte{1, 2, 3}, Counter: &expr.Counter{}}}); err == nil {
		t.Error("a 3-byte key was taken for an address")
	}
	if _, err := sourceCounts("top_web", []nftables.SetElement{{Key: []byte{192, 0, 2, 1}}}); !errors.Is(err, ErrNoElementCounters) {
		t.Errorf("an element without a counter: %v", err)
	}
}

// BenchmarkBuild100k measures turning 100,000 IPv6 prefixes into a plan
// (the host side of a replace; make bench-admission measures the kernel's).
func BenchmarkBuild100k(b *testing.B) {
	ps := make([]netip.Prefix, 100000)
	for i := range ps {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0x80 | byte(i>>23), byte(i >> 15), byte(i >> 7), byte(i<<1) & 0xfe}
		ps[i] = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	cfg := Config{Services: []Service{{Name: "b", Family: 6, Protocol: "tcp", VIP: netip.MustParseAddr("2001:db8::1"), Port: 80, Deny: ps}}}
	for b.Loop() {
		if _, err := Build(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// FuzzSpans checks the interval set's ranges against the prefixes they
// come from, address by address, inside 198.51.100.0/24: every address is
// in a range exactly when it is in a prefix, and the ranges are sorted,
// disjoint and not adjacent (the kernel refuses overlapping intervals).
func FuzzSpans(f *testing.F) {
	f.Add([]byte{0, 24, 7, 32, 128, 25})
	f.Add([]byte{255, 32, 254, 31, 0, 30, 4, 30})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ps []netip.Prefix
		for i := 0; i+1 < len(data) && len(ps) < 64; i += 2 {
			bits := 24 + int(data[i+1])%9
			ps = append(ps, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, data[i]}), bits).Masked())
		}
		sp := spans(ps, 4)
		for i := 1; i < len(sp); i++ {
			if sp[i].first.Compare(sp[i-1].last.Next()) <= 0 {
				t.Fatalf("ranges %v and %v overlap or touch", sp[i-1], sp[i])
			}
		}
		for x := range 256 {
			a := netip.AddrFrom4([4]byte{198, 51, 100, byte(x)})
			inPrefix, inSpan := false, false
			for _, p := range ps {
				inPrefix = inPrefix || p.Contains(a)
			}
			for _, s := range sp {
				inSpan = inSpan || (s.first.Compare(a) <= 0 && a.Compare(s.last) <= 0)
			}
			if inPrefix != inSpan {
				t.Fatalf("%s: in a prefix %v, in a range %v (prefixes %v, ranges %v)", a, inPrefix, inSpan, ps, sp)
			}
		}
	})
}
