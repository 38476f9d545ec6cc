package realserver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// fakeWatchBuffer is how many events a FakeKernel subscriber may have
// pending; like a netlink socket's receive buffer, overflowing it ends the
// subscription with an error.
const fakeWatchBuffer = 256

// FakeKernel is an in-memory Kernel that keeps real state: links,
// addresses, sysctls (with per-interface entries appearing and vanishing
// with their interface), routes, and change events for Watch. It
// reproduces the kernel behaviours the agent depends on: taking lo down
// removes its IPv6 addresses, labels must start with the interface name,
// adding an existing address is accepted, an IPv6 address added without
// nodad on an interface that does neighbour discovery is tentative.
// Tests use its methods both as the agent's kernel and as the operator.
// It is safe for concurrent use.
type FakeKernel struct {
	mu      sync.Mutex
	links   []Link
	addrs   []Addr
	sysctls map[string]string
	// routes map a destination prefix to an interface; the longest match wins.
	routes map[netip.Prefix]string
	subs   map[*fakeSub]struct{}
	// failures injects errors: the next call of the named method fails.
	failures map[string]error
	calls    []string
}

type fakeSub struct {
	ch     chan Event
	failed chan error // buffered(1): why the subscription ended
}

// NewFakeKernel returns a fake with lo up (127.0.0.1/8, ::1/128) and
// net.ipv4.conf.{all,default,lo}.{arp_ignore,arp_announce,rp_filter} at
// the kernel's defaults (0).
func NewFakeKernel() *FakeKernel {
	f := &FakeKernel{
		sysctls:  map[string]string{},
		routes:   map[netip.Prefix]string{},
		subs:     map[*fakeSub]struct{}{},
		failures: map[string]error{},
	}
	for _, conf := range []string{"all", "default"} {
		for _, name := range perInterfaceSysctls() {
			f.sysctls["net/ipv4/conf/"+conf+"/"+name] = "0"
		}
	}
	f.addLinkLocked(Link{Name: "lo", Up: true, Running: true, NoARP: true, Loopback: true})
	f.addrs = append(f.addrs,
		Addr{Link: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/8"), Label: "lo"},
		Addr{Link: "lo", Prefix: netip.MustParsePrefix("::1/128")},
	)
	return f
}

// perInterfaceSysctls are the net.ipv4.conf.<iface> entries the fake models.
func perInterfaceSysctls() []string { return []string{"arp_ignore", "arp_announce", "rp_filter"} }

// AddLink adds an interface (Index is assigned) with its per-interface
// sysctls copied from net.ipv4.conf.default, as the kernel does.
func (f *FakeKernel) AddLink(l Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addLinkLocked(l)
	f.notifyLocked(Event{Kind: EventLinkChanged, Link: l.Name, Up: l.Up})
}

func (f *FakeKernel) addLinkLocked(l Link) {
	l.Index = len(f.links) + 1
	f.links = append(f.links, l)
	for _, name := range perInterfaceSysctls() {
		v := f.sysctls["net/ipv4/conf/default/"+name]
		if v == "" {
			v = "0"
		}
		f.sysctls["net/ipv4/conf/"+l.Name+"/"+name] = v
	}
}

// RemoveLink deletes an interface with its addresses and sysctls.
func (f *FakeKernel) RemoveLink(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.linkIndexLocked(name)
	if i < 0 {
		return
	}
	f.links = slices.Delete(f.links, i, i+1)
	f.addrs = slices.DeleteFunc(f.addrs, func(a Addr) bool { return a.Link == name })
	for _, n := range perInterfaceSysctls() {
		delete(f.sysctls, "net/ipv4/conf/"+name+"/"+n)
	}
	f.notifyLocked(Event{Kind: EventLinkRemoved, Link: name})
}

// SetLinkDown sets an interface administratively down. Like Linux, taking
// lo down removes its IPv6 addresses (net.ipv6.conf.lo.keep_addr_on_down=0).
func (f *FakeKernel) SetLinkDown(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.linkIndexLocked(name)
	if i < 0 {
		return fmt.Errorf("set link %s down: %w", name, fs.ErrNotExist)
	}
	f.links[i].Up, f.links[i].Running = false, false
	f.notifyLocked(Event{Kind: EventLinkChanged, Link: name})
	if f.links[i].Loopback {
		var kept []Addr
		for _, a := range f.addrs {
			if a.Link == name && a.Prefix.Addr().Is6() {
				f.notifyLocked(Event{Kind: EventAddrRemoved, Link: name, Prefix: a.Prefix})
				continue
			}
			kept = append(kept, a)
		}
		f.addrs = kept
	}
	return nil
}

// SetNoARP sets or clears an interface's NOARP flag (ip link set arp off/on).
func (f *FakeKernel) SetNoARP(name string, noarp bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.linkIndexLocked(name)
	if i < 0 {
		return fmt.Errorf("set link %s arp: %w", name, fs.ErrNotExist)
	}
	f.links[i].NoARP = noarp
	f.notifyLocked(Event{Kind: EventLinkChanged, Link: name, Up: f.links[i].Up})
	return nil
}

// SetAddrFlags replaces the flags of an existing address (to model DAD
// results, which only the kernel sets).
func (f *FakeKernel) SetAddrFlags(link string, p netip.Prefix, flags AddrFlags) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.addrs {
		if a.Link == link && a.Prefix == p {
			f.addrs[i].Flags = flags
			return nil
		}
	}
	return fmt.Errorf("address %s on %s: %w", p, link, fs.ErrNotExist)
}

// SetRoute makes RouteInterface answer link for destinations in dst.
func (f *FakeKernel) SetRoute(dst netip.Prefix, link string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[dst.Masked()] = link
}

// FailNext makes the next call of the named Kernel method ("AddAddr",
// "SetSysctl", ...) return err without doing anything.
func (f *FakeKernel) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = err
}

// FailWatch ends every running Watch with err, as a netlink receive error
// would.
func (f *FakeKernel) FailWatch(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		f.endSubLocked(s, err)
	}
}

// Watchers counts the running Watch calls.
func (f *FakeKernel) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Calls returns the changing calls made so far, in order, as ip(8) and
// sysctl(8) command lines ("ip addr add 203.0.113.10/32 dev lo label lo:dsrd").
func (f *FakeKernel) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// String prints the state: links, addresses and sysctls, one per line,
// sorted, for tests that compare it as text.
func (f *FakeKernel) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	for _, l := range f.links {
		state := "down"
		if l.Up {
			state = "up"
		}
		extra := ""
		if l.NoARP {
			extra = " noarp"
		}
		lines = append(lines, fmt.Sprintf("link %s %s%s", l.Name, state, extra))
	}
	var addrs []string
	for _, a := range f.addrs {
		addrs = append(addrs, "addr "+a.String())
	}
	slices.Sort(addrs)
	var ctls []string
	for k, v := range f.sysctls {
		ctls = append(ctls, "sysctl "+sysctlName(k)+"="+v)
	}
	slices.Sort(ctls)
	lines = append(append(lines, addrs...), ctls...)
	return strings.Join(lines, "\n") + "\n"
}

func (f *FakeKernel) linkIndexLocked(name string) int {
	return slices.IndexFunc(f.links, func(l Link) bool { return l.Name == name })
}

func (f *FakeKernel) failLocked(method string) error {
	err, ok := f.failures[method]
	if !ok {
		return nil
	}
	delete(f.failures, method)
	return err
}

func (f *FakeKernel) notifyLocked(ev Event) {
	for s := range f.subs {
		select {
		case s.ch <- ev:
		default:
			f.endSubLocked(s, errors.New("fake netlink: receive buffer overflow (ENOBUFS)"))
		}
	}
}

func (f *FakeKernel) endSubLocked(s *fakeSub, err error) {
	delete(f.subs, s)
	s.failed <- err
}

// Links lists every interface.
func (f *FakeKernel) Links() ([]Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("Links"); err != nil {
		return nil, err
	}
	return slices.Clone(f.links), nil
}

// SetLinkUp sets an interface administratively up.
func (f *FakeKernel) SetLinkUp(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("SetLinkUp"); err != nil {
		return err
	}
	i := f.linkIndexLocked(name)
	if i < 0 {
		return fmt.Errorf("set link %s up: %w", name, fs.ErrNotExist)
	}
	f.calls = append(f.calls, "ip link set "+name+" up")
	f.links[i].Up, f.links[i].Running = true, true
	f.notifyLocked(Event{Kind: EventLinkChanged, Link: name, Up: true})
	return nil
}

// Addrs lists every address.
func (f *FakeKernel) Addrs() ([]Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("Addrs"); err != nil {
		return nil, err
	}
	return slices.Clone(f.addrs), nil
}

// AddAddr adds an address; an existing one (same interface, address and
// prefix length) is left as it is.
func (f *FakeKernel) AddAddr(a Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("AddAddr"); err != nil {
		return err
	}
	i := f.linkIndexLocked(a.Link)
	if i < 0 {
		return fmt.Errorf("add %s: link: %w", a, fs.ErrNotExist)
	}
	if a.Prefix.Addr().Is4() {
		if a.Label == "" {
			a.Label = a.Link
		}
		if !strings.HasPrefix(a.Label, a.Link) || len(a.Label) > 15 {
			return fmt.Errorf("add %s: invalid label", a)
		}
	} else {
		a.Label = ""
	}
	a.Flags &= FlagNoDAD
	l := f.links[i]
	if a.Prefix.Addr().Is6() && a.Flags&FlagNoDAD == 0 && !l.NoARP && !l.Loopback {
		a.Flags |= FlagTentative
	}
	f.calls = append(f.calls, "ip addr add "+a.String())
	for _, b := range f.addrs {
		if b.Link == a.Link && b.Prefix == a.Prefix {
			return nil
		}
	}
	f.addrs = append(f.addrs, a)
	f.notifyLocked(Event{Kind: EventAddrAdded, Link: a.Link, Prefix: a.Prefix})
	return nil
}

// DelAddr removes an address; for IPv4 with a.Label set, only the one with
// that label.
func (f *FakeKernel) DelAddr(a Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("DelAddr"); err != nil {
		return err
	}
	f.calls = append(f.calls, "ip addr del "+a.String())
	for i, b := range f.addrs {
		if b.Link != a.Link || b.Prefix != a.Prefix {
			continue
		}
		if a.Prefix.Addr().Is4() && a.Label != "" && a.Label != b.Label {
			continue
		}
		f.addrs = slices.Delete(f.addrs, i, i+1)
		f.notifyLocked(Event{Kind: EventAddrRemoved, Link: a.Link, Prefix: a.Prefix})
		return nil
	}
	return nil
}

// Sysctl reads a sysctl; fs.ErrNotExist when it does not exist.
func (f *FakeKernel) Sysctl(path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("Sysctl"); err != nil {
		return "", err
	}
	v, ok := f.sysctls[path]
	if !ok {
		return "", fmt.Errorf("read sysctl %s: %w", sysctlName(path), fs.ErrNotExist)
	}
	return v, nil
}

// SetSysctl writes a sysctl that exists; fs.ErrNotExist otherwise.
func (f *FakeKernel) SetSysctl(path, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failLocked("SetSysctl"); err != nil {
		return err
	}
	if _, ok := f.sysctls[path]; !ok {
		return fmt.Errorf("write sysctl %s: %w", sysctlName(path), fs.ErrNotExist)
	}
	f.calls = append(f.calls, "sysctl -w "+sysctlName(path)+"="+value)
	f.sysctls[path] = value
	return nil
}

// RouteInterface answers from SetRoute's table, the longest match first;
// a local address routes to lo.
func (f *FakeKernel) RouteInterface(dst netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.addrs {
		if a.Prefix.Addr() == dst {
			return "lo", nil
		}
	}
	best, link := -1, ""
	for p, l := range f.routes {
		if p.Contains(dst) && p.Bits() > best {
			best, link = p.Bits(), l
		}
	}
	if best < 0 {
		return "", fmt.Errorf("route to %s: no route", dst)
	}
	return link, nil
}

// Watch forwards the fake's changes until ctx ends or FailWatch (or an
// overflow) ends the subscription.
func (f *FakeKernel) Watch(ctx context.Context, events chan<- Event) error {
	s := &fakeSub{ch: make(chan Event, fakeWatchBuffer), failed: make(chan error, 1)}
	f.mu.Lock()
	if err := f.failLocked("Watch"); err != nil {
		f.mu.Unlock()
		return err
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, s)
		f.mu.Unlock()
	}()
	select {
	case events <- Event{Kind: EventSubscribed}:
	case <-ctx.Done():
		return ctx.Err()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-s.failed:
			return err
		case ev := <-s.ch:
			select {
			case events <- ev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}
