package netkernel

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// kernel is what the contract checks: the methods Linux and Fake share.
type kernel interface {
	Links() ([]Link, error)
	LinkByName(name string) (Link, error)
	SetLinkUp(name string) error
	Addrs(link string) ([]Addr, error)
	AddAddr(a Addr) error
	DelAddr(a Addr) error
	Sysctl(name string) (string, error)
	SetSysctl(name, value string) error
	RouteInterface(dst netip.Addr) (string, error)
	Watch(ctx context.Context, events chan<- Event) error
}

// operator changes the namespace behind a kernel as an administrator
// would, outside the kernel's methods.
type operator interface {
	// addLink creates an interface that does ARP, down; up, it runs.
	addLink(t *testing.T, name string)
	setDown(t *testing.T, name string)
	remove(t *testing.T, name string)
}

// fakeOperator drives a Fake.
type fakeOperator struct{ f *Fake }

func (o fakeOperator) addLink(t *testing.T, name string) { o.f.AddLink(Link{Name: name}) }
func (o fakeOperator) setDown(t *testing.T, name string) {
	if err := o.f.SetLinkDown(name); err != nil {
		t.Fatal(err)
	}
}
func (o fakeOperator) remove(t *testing.T, name string) { o.f.RemoveLink(name) }

func TestFakeContract(t *testing.T) {
	testContract(t, func(t *testing.T) (kernel, operator) {
		f := NewFake()
		return f, fakeOperator{f}
	})
}

// eventWaitTimeout bounds the wait for one event: the kernel delivers in
// microseconds; 5 s only absorbs a loaded test machine.
const eventWaitTimeout = 5 * time.Second

// testContract runs the semantics both implementations promise against a
// fresh namespace from setup: lo up with 127.0.0.1/8 and ::1/128, nothing
// else.
func testContract(t *testing.T, setup func(t *testing.T) (kernel, operator)) {
	pfx := netip.MustParsePrefix

	t.Run("links", func(t *testing.T) {
		k, op := setup(t)
		lo, err := k.LinkByName("lo")
		if err != nil || !lo.Loopback || !lo.Up || !lo.Running || lo.Index == 0 {
			t.Fatalf("LinkByName(lo) = %+v, %v; want up, running, loopback, with an index", lo, err)
		}
		_, err = k.LinkByName("nosuch0")
		if !errors.Is(err, ErrNoInterface) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LinkByName(nosuch0) error = %v, want ErrNoInterface matching fs.ErrNotExist", err)
		}
		op.addLink(t, "dsrd0")
		l, err := k.LinkByName("dsrd0")
		if err != nil || l.Up || l.Loopback || l.Index == 0 || l.Index == lo.Index {
			t.Fatalf("LinkByName(dsrd0) = %+v, %v; want down, its own index", l, err)
		}
		if err := k.SetLinkUp("dsrd0"); err != nil {
			t.Fatal(err)
		}
		if l, _ := k.LinkByName("dsrd0"); !l.Up || !l.Running {
			t.Fatalf("after SetLinkUp: %+v, want up and running", l)
		}
		if err := k.SetLinkUp("nosuch0"); !errors.Is(err, ErrNoInterface) {
			t.Fatalf("SetLinkUp(nosuch0) error = %v, want ErrNoInterface", err)
		}
		links, err := k.Links()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, l := range links {
			names = append(names, l.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"dsrd0", "lo"}) {
			t.Fatalf("Links = %v, want [dsrd0 lo]", names)
		}
		op.remove(t, "dsrd0")
		if _, err := k.LinkByName("dsrd0"); !errors.Is(err, ErrNoInterface) {
			t.Fatalf("removed link: error = %v, want ErrNoInterface", err)
		}
	})

	t.Run("addresses", func(t *testing.T) {
		k, op := setup(t)
		op.addLink(t, "dsrd0")
		if err := k.SetLinkUp("dsrd0"); err != nil {
			t.Fatal(err)
		}
		vip := Addr{Link: "dsrd0", Prefix: pfx("203.0.113.10/32"), Label: "dsrd0:dsrd"}
		for range 2 { // adding what is there is not an error
			if err := k.AddAddr(vip); err != nil {
				t.Fatal(err)
			}
		}
		v6 := Addr{Link: "dsrd0", Prefix: pfx("2001:db8::10/128"), Flags: FlagNoDAD}
		if err := k.AddAddr(v6); err != nil {
			t.Fatal(err)
		}
		deprecated := Addr{Link: "dsrd0", Prefix: pfx("2001:db8::11/128"), Flags: FlagNoDAD | FlagDeprecated}
		if err := k.AddAddr(deprecated); err != nil {
			t.Fatal(err)
		}
		if got := findAddr(t, k, "dsrd0", deprecated.Prefix); got == nil || got.Flags&FlagDeprecated == 0 || got.Flags&FlagNoDAD == 0 {
			t.Fatalf("Addrs(dsrd0) has %+v, want %s nodad and deprecated (preferred_lft 0)", got, deprecated.Prefix)
		}
		hostOnly := Addr{Link: "dsrd0", Prefix: pfx("198.51.100.9/32"), Scope: ScopeHost}
		if err := k.AddAddr(hostOnly); err != nil {
			t.Fatal(err)
		}
		got := findAddr(t, k, "dsrd0", vip.Prefix)
		if got == nil || got.Label != "dsrd0:dsrd" || got.Scope != ScopeGlobal {
			t.Fatalf("Addrs(dsrd0) has %+v, want %s with label dsrd0:dsrd, scope global", got, vip.Prefix)
		}
		got = findAddr(t, k, "dsrd0", v6.Prefix)
		if got == nil || got.Flags&FlagNoDAD == 0 || got.Flags&(FlagTentative|FlagDeprecated) != 0 || got.Scope != ScopeGlobal {
			t.Fatalf("Addrs(dsrd0) has %+v, want %s nodad, not tentative nor deprecated, scope global", got, v6.Prefix)
		}
		if got = findAddr(t, k, "dsrd0", hostOnly.Prefix); got == nil || got.Scope != ScopeHost {
			t.Fatalf("Addrs(dsrd0) has %+v, want %s scope host", got, hostOnly.Prefix)
		}
		linkLocal := Addr{Link: "dsrd0", Prefix: pfx("fe80::9/64"), Flags: FlagNoDAD}
		if err := k.AddAddr(linkLocal); err != nil {
			t.Fatal(err)
		}
		if got = findAddr(t, k, "dsrd0", linkLocal.Prefix); got == nil || got.Scope != ScopeLink {
			t.Fatalf("Addrs(dsrd0) has %+v, want %s scope link", got, linkLocal.Prefix)
		}
		for _, p := range []string{"127.0.0.1/8", "::1/128"} {
			if got = findAddr(t, k, "lo", pfx(p)); got == nil || got.Scope != ScopeHost {
				t.Fatalf("Addrs(lo) has %+v, want %s scope host", got, p)
			}
		}
		all, err := k.Addrs("")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(all, func(a Addr) bool { return a.Link == "lo" && a.Prefix == pfx("127.0.0.1/8") }) ||
			!slices.ContainsFunc(all, func(a Addr) bool { return a.Link == "dsrd0" && a.Prefix == vip.Prefix }) {
			t.Fatalf("Addrs(\"\") = %v, want lo's and dsrd0's", all)
		}
		if _, err := k.Addrs("nosuch0"); !errors.Is(err, ErrNoInterface) {
			t.Fatalf("Addrs(nosuch0) error = %v, want ErrNoInterface", err)
		}
		if err := k.AddAddr(Addr{Link: "nosuch0", Prefix: vip.Prefix}); !errors.Is(err, ErrNoInterface) {
			t.Fatalf("AddAddr on nosuch0: error = %v, want ErrNoInterface", err)
		}

		// A label limits a deletion to the address that carries it.
		if err := k.DelAddr(Addr{Link: "dsrd0", Prefix: vip.Prefix, Label: "dsrd0:other"}); err != nil {
			t.Fatal(err)
		}
		if findAddr(t, k, "dsrd0", vip.Prefix) == nil {
			t.Fatal("DelAddr with another label removed the address")
		}
		// No label deletes the address whatever its label.
		for range 2 { // deleting what is not there is not an error
			if err := k.DelAddr(Addr{Link: "dsrd0", Prefix: vip.Prefix}); err != nil {
				t.Fatal(err)
			}
		}
		if a := findAddr(t, k, "dsrd0", vip.Prefix); a != nil {
			t.Fatalf("DelAddr without a label left %+v", a)
		}
		if err := k.DelAddr(Addr{Link: "nosuch0", Prefix: vip.Prefix}); err != nil {
			t.Fatalf("DelAddr on a missing interface: %v, want nil", err)
		}

		// Deleting an interface takes its addresses.
		op.remove(t, "dsrd0")
		all, _ = k.Addrs("")
		if slices.ContainsFunc(all, func(a Addr) bool { return a.Link == "dsrd0" }) {
			t.Fatalf("addresses of a deleted interface remain: %v", all)
		}
	})

	t.Run("routes", func(t *testing.T) {
		k, op := setup(t)
		op.addLink(t, "dsrd0")
		if err := k.SetLinkUp("dsrd0"); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"198.51.100.1/24", "2001:db8:1::1/64"} {
			if err := k.AddAddr(Addr{Link: "dsrd0", Prefix: pfx(p), Flags: FlagNoDAD}); err != nil {
				t.Fatal(err)
			}
		}
		for dst, want := range map[string]string{
			"198.51.100.7":  "dsrd0", // connected
			"2001:db8:1::7": "dsrd0",
			"198.51.100.1":  "lo", // local
			"127.0.0.1":     "lo",
		} {
			got, err := k.RouteInterface(netip.MustParseAddr(dst))
			if err != nil || got != want {
				t.Errorf("RouteInterface(%s) = %q, %v; want %s", dst, got, err, want)
			}
		}
		if got, err := k.RouteInterface(netip.MustParseAddr("203.0.113.99")); err == nil {
			t.Errorf("RouteInterface without a route = %q, want an error", got)
		}
	})

	t.Run("lo-down-drops-ipv6", func(t *testing.T) {
		k, op := setup(t)
		v6 := Addr{Link: "lo", Prefix: pfx("2001:db8::20/128"), Flags: FlagNoDAD}
		v4 := Addr{Link: "lo", Prefix: pfx("203.0.113.20/32"), Label: "lo:dsrd"}
		for _, a := range []Addr{v4, v6} {
			if err := k.AddAddr(a); err != nil {
				t.Fatal(err)
			}
		}
		op.setDown(t, "lo")
		if a := findAddr(t, k, "lo", v6.Prefix); a != nil {
			t.Fatalf("lo down kept %+v", a)
		}
		if findAddr(t, k, "lo", v4.Prefix) == nil {
			t.Fatalf("lo down dropped %s", v4.Prefix)
		}
	})

	t.Run("sysctls", func(t *testing.T) {
		k, op := setup(t)
		op.addLink(t, "dsrd0.100") // a dot in the name: a slash in the sysctl name
		name := ConfSysctl("dsrd0.100", "arp_ignore")
		if name != "net.ipv4.conf.dsrd0/100.arp_ignore" {
			t.Fatalf("ConfSysctl = %q", name)
		}
		if v, err := k.Sysctl(name); err != nil || v != "0" {
			t.Fatalf("Sysctl(%s) = %q, %v; want 0", name, v, err)
		}
		if err := k.SetSysctl(name, "1"); err != nil {
			t.Fatal(err)
		}
		if v, err := k.Sysctl(name); err != nil || v != "1" {
			t.Fatalf("after SetSysctl: %q, %v; want 1", v, err)
		}
		for _, n := range []string{"all", "lo"} {
			if _, err := k.Sysctl(ConfSysctl(n, "rp_filter")); err != nil {
				t.Fatal(err)
			}
		}
		op.remove(t, "dsrd0.100")
		if _, err := k.Sysctl(name); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Sysctl of a removed interface: error = %v, want fs.ErrNotExist", err)
		}
		if err := k.SetSysctl(name, "1"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("SetSysctl of a removed interface: error = %v, want fs.ErrNotExist", err)
		}
		for _, bad := range []string{"", "net..ipv4", ".net", "net.ipv4.", "net.ipv4.conf.//.arp_ignore"} {
			if _, err := k.Sysctl(bad); err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Sysctl(%q) error = %v, want an invalid name", bad, err)
			}
		}
	})

	t.Run("watch", func(t *testing.T) {
		k, op := setup(t)
		ctx, cancel := context.WithCancel(t.Context())
		events := make(chan Event, 64)
		done := make(chan error, 1)
		go func() { done <- k.Watch(ctx, events) }()
		expect := func(what string, match func(Event) bool) {
			t.Helper()
			timeout := time.After(eventWaitTimeout)
			var seen []string
			for {
				select {
				case ev := <-events:
					if match(ev) {
						return
					}
					seen = append(seen, fmt.Sprintf("%+v", ev))
				case err := <-done:
					t.Fatalf("Watch ended waiting for %s: %v", what, err)
				case <-timeout:
					t.Fatalf("no %s within %s; saw %v", what, eventWaitTimeout, seen)
				}
			}
		}
		expect("EventSubscribed first", func(ev Event) bool {
			if ev.Kind != EventSubscribed {
				t.Fatalf("first event %+v, want EventSubscribed", ev)
			}
			return true
		})
		op.addLink(t, "dsrd0")
		expect("dsrd0 added", func(ev Event) bool { return ev.Kind == EventLinkChanged && ev.Link == "dsrd0" && !ev.Up })
		if err := k.SetLinkUp("dsrd0"); err != nil {
			t.Fatal(err)
		}
		expect("dsrd0 up", func(ev Event) bool {
			return ev.Kind == EventLinkChanged && ev.Link == "dsrd0" && ev.Up && ev.Running
		})
		p := pfx("203.0.113.30/32")
		if err := k.AddAddr(Addr{Link: "dsrd0", Prefix: p}); err != nil {
			t.Fatal(err)
		}
		expect("address added", func(ev Event) bool { return ev.Kind == EventAddrAdded && ev.Link == "dsrd0" && ev.Prefix == p })
		if err := k.DelAddr(Addr{Link: "dsrd0", Prefix: p}); err != nil {
			t.Fatal(err)
		}
		expect("address removed", func(ev Event) bool { return ev.Kind == EventAddrRemoved && ev.Link == "dsrd0" && ev.Prefix == p })
		op.setDown(t, "dsrd0")
		expect("dsrd0 down", func(ev Event) bool { return ev.Kind == EventLinkChanged && ev.Link == "dsrd0" && !ev.Up })
		op.remove(t, "dsrd0")
		expect("dsrd0 removed", func(ev Event) bool { return ev.Kind == EventLinkRemoved && ev.Link == "dsrd0" })
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Watch returned %v after cancel, want context.Canceled", err)
			}
		case <-time.After(eventWaitTimeout):
			t.Fatal("Watch did not return after its context ended")
		}
	})
}

// findAddr returns the address p on link, or nil.
func findAddr(t *testing.T, k kernel, link string, p netip.Prefix) *Addr {
	t.Helper()
	addrs, err := k.Addrs(link)
	if err != nil {
		t.Fatalf("Addrs(%s): %v", link, err)
	}
	for _, a := range addrs {
		if a.Prefix == p {
			return &a
		}
	}
	return nil
}
