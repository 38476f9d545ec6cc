package vrrp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// These tests build a small L2 segment in two fresh network namespaces:
//
//	"director" dsrd0 02:00:00:00:00:01  192.0.2.1/24 2001:db8::1/64
//	    |  veth
//	"client"   client0 02:00:00:00:00:02  192.0.2.2/24 2001:db8::2/64
//
// and prove on the wire (a packet socket on the client) and in the client
// kernel's neighbour table what Acquire, Release and Announce do.

// newNetNS creates a fresh network namespace, closed at the end of the
// test, without moving the test's goroutine.
func newNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatalf("network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

type lab struct {
	dir, cli       netns.NsHandle
	hDir, hCli     *netlink.Handle
	dirMAC, cliMAC net.HardwareAddr
	cliIndex       int
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func newLab(t *testing.T) *lab {
	t.Helper()
	privileged.Require(t,
		privileged.NetNS("to create network namespaces and veth pairs"),
		privileged.Caps("to send and capture ARP and NDP on packet sockets", privileged.CapNetRaw))
	l := &lab{
		dir:    newNetNS(t),
		cli:    newNetNS(t),
		dirMAC: mustMAC("02:00:00:00:00:01"),
		cliMAC: mustMAC("02:00:00:00:00:02"),
	}
	var err error
	if l.hDir, err = netlink.NewHandleAt(l.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.hDir.Close)
	if l.hCli, err = netlink.NewHandleAt(l.cli); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.hCli.Close)

	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: "dsrd0", HardwareAddr: l.dirMAC},
		PeerName:         "client0",
		PeerHardwareAddr: l.cliMAC,
		PeerNamespace:    netlink.NsFd(int(l.cli)),
	}
	if err := l.hDir.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	setup := func(h *netlink.Handle, name string, addrs ...string) int {
		t.Helper()
		for _, n := range []string{"lo", name} {
			link, err := h.LinkByName(n)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(link); err != nil {
				t.Fatal(err)
			}
		}
		link, _ := h.LinkByName(name)
		for _, a := range addrs {
			p := netip.MustParsePrefix(a)
			na := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			if p.Addr().Is6() {
				na.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(link, na); err != nil {
				t.Fatalf("add %s to %s: %v", a, name, err)
			}
		}
		return link.Attrs().Index
	}
	setup(l.hDir, "dsrd0", "192.0.2.1/24", "2001:db8::1/64")
	l.cliIndex = setup(l.hCli, "client0", "192.0.2.2/24", "2001:db8::2/64")
	l.waitUp(t, l.hDir, "dsrd0")
	l.waitUp(t, l.hCli, "client0")
	return l
}

func (l *lab) waitUp(t *testing.T, h *netlink.Handle, name string) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, name+" up and running", func() (bool, string) {
		link, err := h.LinkByName(name)
		return err == nil && statusOf(link.Attrs().Flags&net.FlagUp != 0, link.Attrs().Flags&net.FlagRunning != 0) == LinkUp, "not yet"
	})
}

func (l *lab) sysctl(t *testing.T, ns netns.NsHandle, path, value string) {
	t.Helper()
	err := netnsutil.Run(ns, func() error {
		return os.WriteFile(filepath.Join("/proc/sys/net", path), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("sysctl %s=%s: %v", path, value, err)
	}
}

// clientNeigh returns the client's neighbour entry for ip, if any.
func (l *lab) clientNeigh(t *testing.T, ip netip.Addr) (netlink.Neigh, bool) {
	t.Helper()
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := l.hCli.NeighList(l.cliIndex, fam)
	if err != nil {
		t.Fatalf("list client neighbours: %v", err)
	}
	for _, n := range ns {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n, true
		}
	}
	return netlink.Neigh{}, false
}

// setClientNeigh makes the client believe ip is at mac (a STALE entry, as
// left by an earlier owner: a PERMANENT one would never be updated).
func (l *lab) setClientNeigh(t *testing.T, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	err := l.hCli.NeighSet(&netlink.Neigh{
		LinkIndex: l.cliIndex, State: netlink.NUD_STALE, IP: ip.AsSlice(), HardwareAddr: mac,
	})
	if err != nil {
		t.Fatalf("ip neigh replace %s lladdr %s nud stale: %v", ip, mac, err)
	}
}

func (l *lab) waitClientNeigh(t *testing.T, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("client neighbour %s at %s", ip, mac), func() (bool, string) {
		n, ok := l.clientNeigh(t, ip)
		return ok && bytes.Equal(n.HardwareAddr, mac), "not yet"
	})
}

// capture collects what the client receives on client0: ARP frames (a
// packet socket through arp.Client) and neighbour advertisements (a raw
// ICMPv6 socket through ndp.Conn), until the test ends.
type capture struct {
	mu  sync.Mutex
	arp []arpFrame
	na  []naMsg
}

type arpFrame struct {
	p   arp.Packet
	dst net.HardwareAddr
}

type naMsg struct {
	na       ndp.NeighborAdvertisement
	hopLimit int
	dst      net.IP
}

func (l *lab) capture(t *testing.T) *capture {
	t.Helper()
	c := &capture{}
	var (
		ac *arp.Client
		nc *ndp.Conn
	)
	err := netnsutil.Run(l.cli, func() error {
		ifi, err := net.InterfaceByName("client0")
		if err != nil {
			return err
		}
		if ac, err = arp.Dial(ifi); err != nil {
			return fmt.Errorf("arp socket: %w", err)
		}
		if nc, _, err = ndp.Listen(ifi, ndp.Unspecified); err != nil {
			return fmt.Errorf("ndp socket: %w", err)
		}
		return nc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst, true)
	})
	if err != nil {
		t.Fatalf("client capture: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			p, f, err := ac.Read()
			if err != nil {
				return // closed at cleanup
			}
			c.mu.Lock()
			c.arp = append(c.arp, arpFrame{p: *p, dst: f.Destination})
			c.mu.Unlock()
		}
	})
	wg.Go(func() {
		for {
			m, cm, _, err := nc.ReadFrom()
			if err != nil {
				return // closed at cleanup
			}
			na, ok := m.(*ndp.NeighborAdvertisement)
			if !ok || cm == nil {
				continue
			}
			c.mu.Lock()
			c.na = append(c.na, naMsg{na: *na, hopLimit: cm.HopLimit, dst: cm.Dst})
			c.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ac.Close()
		nc.Close()
		wg.Wait()
	})
	return c
}

// garps counts the gratuitous ARPs for ip from mac, by form.
func (c *capture) garps(ip netip.Addr, mac net.HardwareAddr) (requests, replies int, bad []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	zero := make(net.HardwareAddr, 6)
	for _, f := range c.arp {
		p := f.p
		if p.SenderIP != ip || !bytes.Equal(p.SenderHardwareAddr, mac) {
			continue
		}
		switch {
		case p.TargetIP != ip || !bytes.Equal(f.dst, ethernet.Broadcast):
			bad = append(bad, fmt.Sprintf("%+v to %s", p, f.dst))
		case p.Operation == arp.OperationRequest && bytes.Equal(p.TargetHardwareAddr, zero):
			requests++
		case p.Operation == arp.OperationReply && bytes.Equal(p.TargetHardwareAddr, mac):
			replies++
		default:
			bad = append(bad, fmt.Sprintf("%+v to %s", p, f.dst))
		}
	}
	return requests, replies, bad
}

// nas counts the unsolicited neighbour advertisements for ip announcing
// mac, and describes any that is malformed.
func (c *capture) nas(ip netip.Addr, mac net.HardwareAddr) (n int, bad []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.na {
		if m.na.TargetAddress != ip {
			continue
		}
		var lla net.HardwareAddr
		for _, o := range m.na.Options {
			if l, ok := o.(*ndp.LinkLayerAddress); ok && l.Direction == ndp.Target {
				lla = l.Addr
			}
		}
		if !m.na.Override || m.na.Solicited || m.na.Router || !bytes.Equal(lla, mac) ||
			m.hopLimit != 255 || !m.dst.Equal(net.IPv6linklocalallnodes) {
			bad = append(bad, fmt.Sprintf("%+v lla=%s hoplimit=%d dst=%s", m.na, lla, m.hopLimit, m.dst))
			continue
		}
		n++
	}
	return n, bad
}

// Acquire adds the VIPs and announces them: the client sees both forms of
// gratuitous ARP and the unsolicited NAs, and its kernel moves its
// existing (stale, wrong) neighbour entries to the director's MAC without
// asking. Release removes the VIPs and nothing else.
func TestPrivilegedAcquireAnnouncesOnTheWire(t *testing.T) {
	l := newLab(t)
	ctx := t.Context()
	v4, v6 := netip.MustParseAddr("192.0.2.100"), netip.MustParseAddr("2001:db8::100")
	oldMAC := mustMAC("02:00:00:00:00:99")

	lx, err := NewLinuxAt(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lx.Close()
	// An address of the director that is not a VIP: must survive.
	if err := lx.AddAddr(netkernel.Addr{Link: "dsrd0", Prefix: pfx("192.0.2.50/32")}); err != nil {
		t.Fatal(err)
	}

	// The client's kernel believes the VIPs are at a previous owner's MAC,
	// with entries just updated (well within the 1 s locktime), and with
	// the default arp_accept=0: an existing entry is still updated.
	l.sysctl(t, l.cli, "ipv4/conf/client0/arp_accept", "0")
	l.setClientNeigh(t, v4, oldMAC)
	l.setClientNeigh(t, v6, oldMAC)
	c := l.capture(t)

	log, _ := testLogger(t)
	a := Announce{Count: 2, Interval: 1100 * time.Millisecond, Refresh: RefreshOff}
	o, err := NewOwner([]VIP{{v4, "dsrd0", a}, {v6, "dsrd0", a}}, lx, lx.Announce, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Acquire(ctx); err != nil {
		t.Fatalf("Acquire: %v", err)
	}

	// The director has the VIPs, marked as dsrd's.
	link, _ := l.hDir.LinkByName("dsrd0")
	addrs, err := l.hDir.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var found4, found6 bool
	for _, ad := range addrs {
		ones, _ := ad.Mask.Size()
		switch {
		case ad.IP.Equal(v4.AsSlice()) && ones == 32:
			found4 = true
			if ad.Label != "dsrd0:dsrd" {
				t.Errorf("label of %s = %q, want dsrd0:dsrd", v4, ad.Label)
			}
		case ad.IP.Equal(v6.AsSlice()) && ones == 128:
			found6 = true
			if ad.Flags&unix.IFA_F_NODAD == 0 || ad.Flags&unix.IFA_F_TENTATIVE != 0 || ad.Flags&unix.IFA_F_DEPRECATED == 0 || ad.PreferedLft != 0 {
				t.Errorf("flags of %s = %#x, preferred_lft %d: want nodad, deprecated (preferred_lft 0: never a source address) and not tentative", v6, ad.Flags, ad.PreferedLft)
			}
		}
	}
	if !found4 || !found6 {
		t.Fatalf("director addresses after Acquire: %v", addrs)
	}

	// On the wire: the whole burst, both ARP forms, the NAs, from the
	// director's MAC.
	testutil.WaitFor(t, 20*time.Second, "two gratuitous ARPs of each form and two NAs", func() (bool, string) {
		req, rep, _ := c.garps(v4, l.dirMAC)
		na, _ := c.nas(v6, l.dirMAC)
		return req >= 2 && rep >= 2 && na >= 2, "not yet"
	})
	if _, _, bad := c.garps(v4, l.dirMAC); len(bad) > 0 {
		t.Errorf("malformed gratuitous ARP: %v", bad)
	}
	if _, bad := c.nas(v6, l.dirMAC); len(bad) > 0 {
		t.Errorf("malformed neighbour advertisement: %v", bad)
	}

	// The client's kernel followed, without asking.
	l.waitClientNeigh(t, v4, l.dirMAC)
	l.waitClientNeigh(t, v6, l.dirMAC)

	if err := o.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	got, err := lx.Addrs("dsrd0")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range got {
		if a.Prefix.Addr() == v4 || a.Prefix.Addr() == v6 {
			t.Errorf("%s still on dsrd0 after Release", a)
		}
	}
	if !containsPrefix(got, pfx("192.0.2.50/32")) || !containsPrefix(got, pfx("192.0.2.1/24")) {
		t.Errorf("Release removed addresses that are not VIPs: %v", got)
	}
}

func containsPrefix(as []netkernel.Addr, p netip.Prefix) bool {
	for _, a := range as {
		q := a.Prefix
		if q == p {
			return true
		}
	}
	return false
}

// What a client network needs: an existing neighbour entry is updated by
// the announcements with the defaults (previous test); a missing one is
// created only with arp_accept=1 (IPv4), or, for IPv6, only on a router
// (forwarding=1) with accept_untracked_na=1 (RFC 9131): an IPv6 host never
// creates an entry from an unsolicited advertisement.
func TestPrivilegedClientCreatesEntriesOnlyWhenAccepting(t *testing.T) {
	l := newLab(t)
	ctx := t.Context()
	lx, err := NewLinuxAt(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lx.Close()
	c := l.capture(t)

	announce := func(ip netip.Addr) {
		t.Helper()
		if err := lx.AddAddr(vipAddr(VIP{Address: ip, Interface: "dsrd0"})); err != nil {
			t.Fatal(err)
		}
		if err := lx.Announce(ctx, "dsrd0", ip); err != nil {
			t.Fatalf("Announce %s: %v", ip, err)
		}
		testutil.WaitFor(t, 20*time.Second, "the announcement of "+ip.String()+" at the client", func() (bool, string) {
			if ip.Is4() {
				_, rep, _ := c.garps(ip, l.dirMAC)
				return rep > 0, "not yet"
			}
			n, _ := c.nas(ip, l.dirMAC)
			return n > 0, "not yet"
		})
	}
	// processed returns once the client's kernel has processed every
	// announcement sent so far, for the negative checks: it announces
	// marker, for which the client has an entry at another MAC (an
	// existing entry follows an announcement whatever the settings, as the
	// previous test shows), and waits for the entry to follow. Frames from
	// one sender through one veth are processed in order.
	processed := func(marker netip.Addr) {
		t.Helper()
		l.setClientNeigh(t, marker, mustMAC("02:00:00:00:00:98"))
		announce(marker)
		l.waitClientNeigh(t, marker, l.dirMAC)
	}

	t.Run("ipv4", func(t *testing.T) {
		l.sysctl(t, l.cli, "ipv4/conf/all/arp_accept", "0")
		l.sysctl(t, l.cli, "ipv4/conf/client0/arp_accept", "0")
		ignored := netip.MustParseAddr("192.0.2.101")
		announce(ignored)
		processed(netip.MustParseAddr("192.0.2.150"))
		if n, ok := l.clientNeigh(t, ignored); ok {
			t.Errorf("arp_accept=0 created an entry: %+v", n)
		}
		l.sysctl(t, l.cli, "ipv4/conf/client0/arp_accept", "1")
		created := netip.MustParseAddr("192.0.2.102")
		announce(created)
		l.waitClientNeigh(t, created, l.dirMAC)
	})
	t.Run("ipv6", func(t *testing.T) {
		if _, err := os.Stat("/proc/sys/net/ipv6/conf/default/accept_untracked_na"); err != nil {
			t.Skip("skipped: this kernel has no accept_untracked_na (Linux 5.19+); NAs never create entries here")
		}
		l.sysctl(t, l.cli, "ipv6/conf/all/accept_untracked_na", "0")
		l.sysctl(t, l.cli, "ipv6/conf/client0/accept_untracked_na", "0")
		ignored := netip.MustParseAddr("2001:db8::101")
		announce(ignored)
		processed(netip.MustParseAddr("2001:db8::150"))
		if n, ok := l.clientNeigh(t, ignored); ok {
			t.Errorf("accept_untracked_na=0 created an entry: %+v", n)
		}
		l.sysctl(t, l.cli, "ipv6/conf/client0/accept_untracked_na", "1")
		hostIgnored := netip.MustParseAddr("2001:db8::102")
		announce(hostIgnored)
		processed(netip.MustParseAddr("2001:db8::151"))
		if n, ok := l.clientNeigh(t, hostIgnored); ok {
			t.Errorf("a host (forwarding=0) created an entry: %+v", n)
		}
		l.sysctl(t, l.cli, "ipv6/conf/client0/forwarding", "1")
		created := netip.MustParseAddr("2001:db8::103")
		announce(created)
		l.waitClientNeigh(t, created, l.dirMAC)
	})
}

// The announce errors say what is wrong.
func TestPrivilegedAnnounceErrors(t *testing.T) {
	l := newLab(t)
	lx, err := NewLinuxAt(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lx.Close()
	// An interface without any address (a veth pair: this kernel may
	// lack the dummy driver).
	noip := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "noip0"}, PeerName: "noip1"}
	if err := l.hDir.LinkAdd(noip); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"noip0", "noip1"} {
		link, err := l.hDir.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.hDir.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
	}
	err = lx.Announce(t.Context(), "noip0", netip.MustParseAddr("192.0.2.200"))
	if !errors.Is(err, ErrNoIPv4Address) {
		t.Errorf("gratuitous ARP on an interface without IPv4 = %v, want ErrNoIPv4Address", err)
	}
	err = lx.Announce(t.Context(), "nosuch0", netip.MustParseAddr("192.0.2.200"))
	if !errors.Is(err, ErrNoInterface) {
		t.Errorf("announce on a missing interface = %v, want ErrNoInterface", err)
	}
	if err := lx.AddAddr(netkernel.Addr{Link: "nosuch0", Prefix: pfx("192.0.2.200/32")}); !errors.Is(err, ErrNoInterface) {
		t.Errorf("AddAddr on a missing interface = %v, want ErrNoInterface", err)
	}
	if err := lx.DelAddr(netkernel.Addr{Link: "nosuch0", Prefix: pfx("192.0.2.200/32")}); err != nil {
		t.Errorf("DelAddr on a missing interface = %v, want nil", err)
	}
	if err := lx.DelAddr(netkernel.Addr{Link: "dsrd0", Prefix: pfx("192.0.2.200/32")}); err != nil {
		t.Errorf("DelAddr of an absent address = %v, want nil", err)
	}
	if err := lx.AddAddr(netkernel.Addr{Link: "dsrd0", Prefix: pfx("192.0.2.1/24")}); err != nil {
		t.Errorf("AddAddr of a present address = %v, want nil", err)
	}
}

// The machine on the real kernel: MASTER adds the VIPs; the interface
// going down (a netlink notification) is a FAULT that removes them and
// signals; the interface back is BACKUP; deleting it is a FAULT again.
func TestPrivilegedMachineFollowsLink(t *testing.T) {
	l := newLab(t)
	lx, err := NewLinuxAt(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lx.Close()
	v4 := netip.MustParseAddr("192.0.2.100")
	log, _ := testLogger(t)
	o, err := NewOwner([]VIP{{v4, "dsrd0", Announce{Count: 1, Refresh: RefreshOff}}}, lx, lx.Announce, log)
	if err != nil {
		t.Fatal(err)
	}
	// A check interval longer than the test: only notifications act.
	m := NewMachine(o, MachineOptions{CheckInterval: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	has := func() bool {
		ps, err := lx.Addrs("dsrd0")
		return err == nil && containsPrefix(ps, pfx("192.0.2.100/32"))
	}
	testutil.WaitFor(t, 20*time.Second, "BACKUP", func() (bool, string) { return m.State() == StateBackup, "not yet" })
	m.SetLeader(true)
	testutil.WaitFor(t, 20*time.Second, "MASTER with the VIP", func() (bool, string) { return m.State() == StateMaster && has(), "not yet" })

	link, _ := l.hDir.LinkByName("dsrd0")
	if err := l.hDir.LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "FAULT", func() (bool, string) { return m.State() == StateFault, "not yet" })
	if has() {
		t.Fatal("VIP still on dsrd0 in FAULT")
	}
	select {
	case f := <-m.Faults():
		if f.Interface != "dsrd0" {
			t.Fatalf("fault %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fault signal")
	}
	if err := l.hDir.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "BACKUP after the link is back", func() (bool, string) { return m.State() == StateBackup, "not yet" })
	if err := l.hDir.LinkDel(link); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "FAULT after the link is deleted", func() (bool, string) { return m.State() == StateFault, "not yet" })
}

// A VIP found on the interface without dsrd's label (added by hand, or by
// another program) is adopted on Acquire and, like any held VIP, removed
// on Release: the kernel deletes an IPv4 address named with a label only
// if the labels match, so the release must not name one.
func TestPrivilegedReleaseRemovesAdoptedVIP(t *testing.T) {
	l := newLab(t)
	lx, err := NewLinuxAt(l.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lx.Close()
	v4 := netip.MustParseAddr("192.0.2.110")
	link, err := l.hDir.LinkByName("dsrd0")
	if err != nil {
		t.Fatal(err)
	}
	byHand := &netlink.Addr{IPNet: &net.IPNet{IP: v4.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := l.hDir.AddrAdd(link, byHand); err != nil {
		t.Fatal(err)
	}
	log, _ := testLogger(t)
	o, err := NewOwner([]VIP{{v4, "dsrd0", Announce{Count: 1, Refresh: RefreshOff}}}, lx, lx.Announce, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := o.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := lx.Addrs("dsrd0")
	if err != nil {
		t.Fatal(err)
	}
	if containsPrefix(got, netip.PrefixFrom(v4, 32)) {
		t.Fatalf("%s, added without a label, still on dsrd0 after Release: %v", v4, got)
	}
}
