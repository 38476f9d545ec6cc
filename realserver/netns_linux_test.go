//go:build linux

package realserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// host is a fresh network namespace standing for one machine.
type host struct {
	ns netns.NsHandle
	// h is the operator's netlink handle in the namespace; k the agent's kernel.
	h *netlink.Handle
	k *netkernel.Linux
}

// newHost creates an anonymous network namespace with lo up. The namespace
// lives as long as its handle: it goes with the test.
func newHost(t *testing.T) *host {
	t.Helper()
	privileged.Require(t, privileged.NetNS("to create network namespaces"))
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	k, err := netkernel.NewAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	hs := &host{ns: ns, h: h, k: k}
	hs.up(t, "lo")
	return hs
}

// in runs fn on a thread inside h's namespace (sockets fn creates belong
// to it for good).
func (hs *host) in(t *testing.T, fn func()) {
	t.Helper()
	if err := netnsutil.Run(hs.ns, func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func (hs *host) link(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := hs.h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func (hs *host) up(t *testing.T, name string) {
	t.Helper()
	if err := hs.h.LinkSetUp(hs.link(t, name)); err != nil {
		t.Fatal(err)
	}
}

func (hs *host) down(t *testing.T, name string) {
	t.Helper()
	if err := hs.h.LinkSetDown(hs.link(t, name)); err != nil {
		t.Fatal(err)
	}
}

func (hs *host) addr(t *testing.T, link, prefix, label string, flags int) {
	t.Helper()
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		t.Fatal(err)
	}
	a.Label, a.Flags = label, flags
	if err := hs.h.AddrAdd(hs.link(t, link), a); err != nil {
		t.Fatalf("add %s to %s: %v", prefix, link, err)
	}
}

func (hs *host) delAddr(t *testing.T, link, prefix string) {
	t.Helper()
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.h.AddrDel(hs.link(t, link), a); err != nil {
		t.Fatalf("delete %s from %s: %v", prefix, link, err)
	}
}

func (hs *host) set(t *testing.T, name, v string) {
	t.Helper()
	if err := hs.k.SetSysctl(name, v); err != nil {
		t.Fatal(err)
	}
}

// wire connects a and b with a veth pair, aName in a and bName in b, both up.
func wire(t *testing.T, a *host, aName string, b *host, bName string) {
	t.Helper()
	// (The dummy driver is not available on every host; veth is.)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: aName}, PeerName: bName, PeerNamespace: netlink.NsFd(b.ns)}
	if err := a.h.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s-%s: %v", aName, bName, err)
	}
	a.up(t, aName)
	b.up(t, bName)
}

// realServer is a real server wired to a director-side namespace: eth0
// 192.0.2.2/24 and 2001:db8:1::2/64 on the real, 192.0.2.1/24 and
// 2001:db8:1::1/64 on the director's side.
func realServer(t *testing.T) (rs, dir *host) {
	t.Helper()
	rs, dir = newHost(t), newHost(t)
	wire(t, rs, "eth0", dir, "eth0")
	rs.addr(t, "eth0", "192.0.2.2/24", "", 0)
	rs.addr(t, "eth0", "2001:db8:1::2/64", "", unix.IFA_F_NODAD)
	dir.addr(t, "eth0", "192.0.2.1/24", "", 0)
	dir.addr(t, "eth0", "2001:db8:1::1/64", "", unix.IFA_F_NODAD)
	return rs, dir
}

// snapshot prints what the agent may touch: lo's and eth0's addresses
// (with labels and flags) and the ARP sysctls, sorted.
func snapshot(t *testing.T, hs *host) string {
	t.Helper()
	addrs, err := hs.k.Addrs("")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, a := range addrs {
		if a.Link == "lo" || a.Link == "eth0" {
			lines = append(lines, a.String())
		}
	}
	for _, conf := range []string{"all", "eth0"} {
		for _, name := range []string{"arp_ignore", "arp_announce"} {
			v, err := hs.k.Sysctl(netkernel.ConfSysctl(conf, name))
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%s=%s", netkernel.ConfSysctl(conf, name), v))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func findAddr(t *testing.T, k Kernel, link string, p netip.Prefix) (Addr, bool) {
	t.Helper()
	addrs, err := k.Addrs("")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.Link == link && a.Prefix == p {
			return a, true
		}
	}
	return Addr{}, false
}

func TestLinuxApplyIdempotentCleanup(t *testing.T) {
	rs, _ := realServer(t)
	// What was there before: odd values to restore exactly, and the
	// operator's own addresses on lo.
	rs.set(t, "net.ipv4.conf.eth0.arp_announce", "1")
	rs.set(t, "net.ipv4.conf.eth0.arp_ignore", "0")
	rs.addr(t, "lo", "198.51.100.7/32", "", 0)
	rs.addr(t, "lo", "2001:db8::99/128", "", unix.IFA_F_NODAD)
	before := snapshot(t, rs)
	hostBefore, _ := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_ignore")

	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}})
	if _, err := a.Apply(t.Context()); err != nil {
		t.Fatal(err)
	}
	got4, ok := findAddr(t, rs.k, "lo", vipPrefix(vip4))
	if !ok || got4.Label != "lo:dsrd" {
		t.Errorf("IPv4 VIP on lo: %+v, %v; want label lo:dsrd", got4, ok)
	}
	got6, ok := findAddr(t, rs.k, "lo", vipPrefix(vip6))
	if !ok || got6.Flags&netkernel.FlagNoDAD == 0 || got6.Flags&(netkernel.FlagTentative|netkernel.FlagDADFailed) != 0 {
		t.Errorf("IPv6 VIP on lo: %+v, %v; want nodad, not tentative", got6, ok)
	}
	for path, want := range map[string]string{
		"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2",
		"net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "2",
	} {
		if v := sysctl(t, rs.k, path); v != want {
			t.Errorf("%s = %s, want %s", path, v, want)
		}
	}
	// The namespace's sysctls are its own: the test process's are untouched.
	if hostNow, _ := os.ReadFile("/proc/sys/net/ipv4/conf/all/arp_ignore"); string(hostNow) != string(hostBefore) {
		t.Errorf("host's arp_ignore changed: %q -> %q", hostBefore, hostNow)
	}

	applied := snapshot(t, rs)
	ch, err := a.Apply(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ch.Changed() || snapshot(t, rs) != applied {
		t.Errorf("second apply changed %+v", ch)
	}

	rep, err := a.Check(t.Context(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("check after apply: %s", rep.Summary())
	}

	if err := a.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, rs); after != before {
		t.Errorf("after cleanup:\n%s\nwant:\n%s", after, before)
	}
}

func TestLinuxForeignVIPUntouched(t *testing.T) {
	rs, _ := realServer(t)
	rs.addr(t, "lo", "203.0.113.10/32", "", 0)
	rs.addr(t, "lo", "2001:db8::10/128", "", unix.IFA_F_NODAD)
	before := snapshot(t, rs)
	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}})
	ch, err := a.Apply(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.AddedVIPs) != 0 || len(ch.ForeignVIPs) != 2 {
		t.Errorf("changes = %+v, want both VIPs foreign and nothing added", ch)
	}
	if err := a.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, rs); after != before {
		t.Errorf("after cleanup:\n%s\nwant:\n%s", after, before)
	}
}

// Linux runs no duplicate address detection on loopback: an IPv6 address
// added to lo without nodad is tentative only until the kernel's DAD work
// runs (a fraction of a millisecond, seen once in a while right after the
// add) and never fails DAD, so a lasting tentative or dadfailed VIP cannot
// be produced on lo: those reasons are exercised with the fake. The
// agent's nodad closes even that window (TestLinuxApplyIdempotentCleanup
// checks the VIP is not tentative right after Apply).
func TestLinuxIPv6OnLoLeavesTentative(t *testing.T) {
	rs, _ := realServer(t)
	rs.addr(t, "lo", "2001:db8::10/128", "", 0)
	testutil.WaitFor(t, time.Second, "IPv6 on lo without nodad usable", func() (bool, string) {
		a, ok := findAddr(t, rs.k, "lo", vipPrefix(vip6))
		return ok && a.Flags&(netkernel.FlagTentative|netkernel.FlagDADFailed) == 0, "not yet"
	})
}

func TestLinuxRepairAfterAddrDel(t *testing.T) {
	rs, _ := realServer(t)
	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}, ResyncInterval: time.Hour})
	runAgent(t, a)
	rs.delAddr(t, "lo", "203.0.113.10/32")
	start := time.Now()
	testutil.WaitFor(t, time.Second, "IPv4 VIP back", func() (bool, string) {
		got, ok := findAddr(t, rs.k, "lo", vipPrefix(vip4))
		return ok && got.Label == "lo:dsrd", "not yet"
	})
	took := time.Since(start)
	t.Logf("IPv4 VIP repaired in %s", took)
	rs.delAddr(t, "lo", "2001:db8::10/128")
	start = time.Now()
	testutil.WaitFor(t, time.Second, "IPv6 VIP back, and both repairs counted", func() (bool, string) {
		_, ok := findAddr(t, rs.k, "lo", vipPrefix(vip6))
		// The agent counts a repair after it made it.
		return ok && a.Stats().VIPRepairs >= 2, "not yet"
	})
	took = time.Since(start)
	t.Logf("IPv6 VIP repaired in %s", took)
	if s := a.Stats(); s.VIPRepairs != 2 {
		t.Errorf("stats = %+v", s)
	}
}

func TestLinuxRepairLoFlap(t *testing.T) {
	rs, _ := realServer(t)
	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}, ResyncInterval: time.Hour})
	runAgent(t, a)
	rs.down(t, "lo")
	start := time.Now()
	testutil.WaitFor(t, time.Second, "lo up with both VIPs", func() (bool, string) {
		l, err := rs.h.LinkByName("lo")
		if err != nil || l.Attrs().RawFlags&unix.IFF_UP == 0 {
			return false, "not yet"
		}
		_, ok4 := findAddr(t, rs.k, "lo", vipPrefix(vip4))
		_, ok6 := findAddr(t, rs.k, "lo", vipPrefix(vip6))
		// The agent counts the repair after it made it: wait for both.
		return ok4 && ok6 && a.Stats().LoRepairs > 0, "not yet"
	})
	took := time.Since(start)
	t.Logf("lo flap repaired in %s", took)
	if s := a.Stats(); s.LoRepairs != 1 {
		t.Errorf("stats = %+v", s)
	}
}

func TestLinuxCleanupOnExit(t *testing.T) {
	rs, _ := realServer(t)
	before := snapshot(t, rs)
	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}, CleanupOnExit: true})
	stop := runAgent(t, a)
	if snapshot(t, rs) == before {
		t.Fatal("nothing applied")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, rs); after != before {
		t.Errorf("after exit:\n%s\nwant:\n%s", after, before)
	}
}

// Check on a real kernel: the good case passes, each broken one is found.
func TestLinuxCheck(t *testing.T) {
	cfg := Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}}
	tests := []struct {
		name    string
		cfg     *Config
		opts    CheckOptions
		breakIt func(t *testing.T, rs *host)
		want    map[netip.Addr]Code
		warn    bool
	}{
		{name: "good", breakIt: func(*testing.T, *host) {}},
		{
			name:    "vip missing",
			breakIt: func(t *testing.T, rs *host) { rs.delAddr(t, "lo", "203.0.113.10/32") },
			want:    map[netip.Addr]Code{vip4: CodeVIPMissing},
		},
		{
			name:    "vip on an arping interface",
			breakIt: func(t *testing.T, rs *host) { rs.addr(t, "eth0", "203.0.113.10/32", "", 0) },
			want:    map[netip.Addr]Code{vip4: CodeVIPOnARPInterface},
		},
		{
			name: "vip on a noarp interface is fine",
			breakIt: func(t *testing.T, rs *host) {
				wire(t, rs, "noarp0", rs, "noarp1")
				if err := rs.h.LinkSetARPOff(rs.link(t, "noarp0")); err != nil {
					t.Fatal(err)
				}
				rs.addr(t, "noarp0", "203.0.113.10/32", "", 0)
			},
		},
		{
			name: "arp_ignore",
			breakIt: func(t *testing.T, rs *host) {
				rs.set(t, "net.ipv4.conf.all.arp_ignore", "0")
				rs.set(t, "net.ipv4.conf.eth0.arp_ignore", "0")
			},
			want: map[netip.Addr]Code{vip4: CodeARPIgnore},
		},
		{
			name: "arp_announce",
			breakIt: func(t *testing.T, rs *host) {
				rs.set(t, "net.ipv4.conf.all.arp_announce", "1")
				rs.set(t, "net.ipv4.conf.eth0.arp_announce", "0")
			},
			want: map[netip.Addr]Code{vip4: CodeARPAnnounce},
		},
		{
			name:    "strict rp_filter is a warning",
			breakIt: func(t *testing.T, rs *host) { rs.set(t, "net.ipv4.conf.eth0.rp_filter", "1") },
			want:    map[netip.Addr]Code{vip4: CodeRPFilter},
			warn:    true,
		},
		{
			name: "strict rp_filter with a client routed elsewhere",
			opts: CheckOptions{Sources: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
			breakIt: func(t *testing.T, rs *host) {
				rs.set(t, "net.ipv4.conf.all.rp_filter", "1")
				// A management network that holds the clients' route.
				wire(t, rs, "mgmt0", rs, "mgmt1")
				rs.addr(t, "mgmt0", "198.51.100.2/24", "", 0)
			},
			want: map[netip.Addr]Code{vip4: CodeRPFilter},
		},
		{
			name:    "lo down",
			breakIt: func(t *testing.T, rs *host) { rs.down(t, "lo") },
			// Taking lo down also drops its IPv6 addresses.
			want: map[netip.Addr]Code{vip4: CodeLoDown, vip6: CodeVIPMissing},
		},
		{
			name:    "director interface down",
			breakIt: func(t *testing.T, rs *host) { rs.down(t, "eth0") },
			want:    map[netip.Addr]Code{vip4: CodeInterfaceDown, vip6: CodeInterfaceDown},
		},
		{
			name:    "director interface missing",
			cfg:     &Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0", "eth9"}},
			breakIt: func(*testing.T, *host) {},
			want:    map[netip.Addr]Code{vip4: CodeInterfaceMissing},
		},
		{
			name:    "director interface without address",
			breakIt: func(t *testing.T, rs *host) { rs.delAddr(t, "eth0", "192.0.2.2/24") },
			want:    map[netip.Addr]Code{vip4: CodeInterfaceNoAddress},
		},
		{
			name: "no director interface",
			cfg:  &Config{VIPs: []netip.Addr{vip4}},
			breakIt: func(t *testing.T, rs *host) {
				rs.down(t, "eth0")
			},
			want: map[netip.Addr]Code{vip4: CodeNoDirectorInterface},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, _ := realServer(t)
			c := cfg
			if tt.cfg != nil {
				c = *tt.cfg
			}
			a := newTestAgent(t, rs.k, c)
			if _, err := a.Apply(t.Context()); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(t, rs)
			rep, err := a.Check(t.Context(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			rep.Table(&b)
			t.Logf("\n%s", b.String())
			for _, v := range rep.VIPs {
				code, broken := tt.want[v.VIP]
				switch {
				case !broken && (!v.OK || len(v.Reasons) > 0):
					t.Errorf("%s: %v, want OK", v.VIP, v.Reasons)
				case broken && !v.Has(code):
					t.Errorf("%s: %v, want %s", v.VIP, v.Reasons, code)
				case broken && v.OK != tt.warn:
					t.Errorf("%s: OK = %v", v.VIP, v.OK)
				}
			}
		})
	}
}

// The DR path itself, without IPVS: the director side routes the VIP to
// the real's address, which is what IPVS-DR does (only the destination MAC
// changes). With the agent's setup the real accepts the connection and
// does not answer ARP for the VIP; after cleanup it drops the traffic.
func TestLinuxDRPath(t *testing.T) {
	rs, dir := realServer(t)
	var ln net.Listener
	rs.in(t, func() {
		var err error
		ln, err = net.Listen("tcp4", "0.0.0.0:8080")
		if err != nil {
			t.Error(err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	defer ln.Close()
	// Accept and report the client's address until the listener closes.
	clients := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			clients <- c.RemoteAddr().String()
			c.Close()
		}
	}()
	dial := func(t *testing.T) error {
		var err error
		dir.in(t, func() {
			var c net.Conn
			c, err = net.DialTimeout("tcp4", "203.0.113.10:8080", 700*time.Millisecond)
			if err == nil {
				c.Close()
			}
		})
		return err
	}
	route := func(t *testing.T, gw net.IP) {
		t.Helper()
		_, dst, _ := net.ParseCIDR("203.0.113.10/32")
		r := &netlink.Route{Dst: dst, Gw: gw, LinkIndex: dir.link(t, "eth0").Attrs().Index}
		if gw == nil {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := dir.h.RouteReplace(r); err != nil {
			t.Fatal(err)
		}
	}

	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0"}})
	if _, err := a.Apply(t.Context()); err != nil {
		t.Fatal(err)
	}

	route(t, net.ParseIP("192.0.2.2"))
	if err := dial(t); err != nil {
		t.Fatalf("DR connection with the agent's setup: %v", err)
	}
	if c := <-clients; !strings.HasPrefix(c, "192.0.2.1:") {
		t.Errorf("real saw client %s, want 192.0.2.1 (DR keeps the client address)", c)
	}

	// Asking the segment for the VIP itself gets no answer from the real.
	route(t, nil)
	if err := dial(t); err == nil {
		t.Error("the real answered ARP for the VIP with arp_ignore=1")
	}
	// Lowering arp_ignore makes it answer, stealing the VIP; Check says so.
	rs.set(t, "net.ipv4.conf.all.arp_ignore", "0")
	rs.set(t, "net.ipv4.conf.eth0.arp_ignore", "0")
	if err := dir.h.NeighDel(&netlink.Neigh{LinkIndex: dir.link(t, "eth0").Attrs().Index, IP: net.ParseIP("203.0.113.10")}); err != nil {
		t.Logf("flush neighbour: %v", err)
	}
	if err := dial(t); err != nil {
		t.Errorf("with arp_ignore=0 the real should answer ARP for the VIP: %v", err)
	} else {
		<-clients
	}
	rep, err := a.Check(t.Context(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := rep.VIP(vip4); !v.Has(CodeARPIgnore) {
		t.Errorf("check: %v", v.Reasons)
	}
	rs.set(t, "net.ipv4.conf.all.arp_ignore", "1")
	rs.set(t, "net.ipv4.conf.eth0.arp_ignore", "1")

	// Cleaned up, the real drops DR traffic for the VIP.
	route(t, net.ParseIP("192.0.2.2"))
	if err := a.Cleanup(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := dial(t); err == nil {
		t.Error("DR connection accepted after cleanup")
	}
	rep, err = a.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := rep.VIP(vip4); v.OK || !v.Has(CodeVIPMissing) {
		t.Errorf("check after cleanup: %v", v.Reasons)
	}
}
