package netkernel

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

// fakeWatchBuffer is how many events a Fake watcher may have pending; like
// a netlink socket's receive buffer, overflowing it ends the subscription
// with an error.
const fakeWatchBuffer = 256

// maxLabel is the longest IPv4 address label the kernel takes (IFNAMSIZ - 1).
const maxLabel = 15

// Fake is an in-memory kernel that keeps real state: links, addresses,
// sysctls (the per-interface net.ipv4.conf entries appearing and vanishing
// with their interface), routes, and change events for Watch. It has the
// semantics the contract tests check on Linux, and reproduces the kernel
// behaviours dsrd depends on: taking lo down removes its IPv6 addresses,
// deleting an interface removes its addresses, labels must start with the
// interface name, adding an existing address is accepted, an IPv4 address
// deleted with a label goes only if the label matches, an IPv6 address
// added without nodad on an interface that does neighbour discovery is
// tentative.
//
// Tests use its methods both as the code's kernel and as the operator
// (AddLink, SetLinkDown, RemoveLink, SetAddrs: changes no Calls line
// records). It records every change made through the kernel methods as an
// ip(8) or sysctl(8) command line (Calls). It is safe for concurrent use.
type Fake struct {
	mu        sync.Mutex
	links     []Link
	nextIndex int
	addrs     []Addr
	sysctls   map[string]string
	// routes map a destination prefix to an interface; the longest match wins.
	routes map[netip.Prefix]string
	subs   map[*fakeSub]struct{}
	// failNext makes the next call of a method fail; failOn makes every
	// change whose command line matches fail.
	failNext map[string]error
	failOn   map[string]error
	// lose drops events instead of delivering them.
	lose  bool
	calls []string
}

type fakeSub struct {
	ch     chan Event
	failed chan error // buffered(1): why the subscription ended
}

// confSysctls are the net.ipv4.conf.<iface> entries the fake models.
var confSysctls = []string{"arp_ignore", "arp_announce", "rp_filter"}

// NewFake returns a namespace with lo up (127.0.0.1/8, ::1/128) and
// net.ipv4.conf.{all,default,lo}.{arp_ignore,arp_announce,rp_filter} at
// the kernel's defaults (0), plus the named interfaces, up and running,
// without addresses.
func NewFake(links ...string) *Fake {
	f := &Fake{
		sysctls:  map[string]string{},
		routes:   map[netip.Prefix]string{},
		subs:     map[*fakeSub]struct{}{},
		failNext: map[string]error{},
		failOn:   map[string]error{},
	}
	for _, conf := range []string{"all", "default"} {
		for _, name := range confSysctls {
			f.sysctls[ConfSysctl(conf, name)] = "0"
		}
	}
	// Linux's default: SYN cookies sent when the SYN backlog overflows.
	f.sysctls["net.ipv4.tcp_syncookies"] = "1"
	f.setLinkLocked(Link{Name: "lo", Up: true, Running: true, NoARP: true, Loopback: true})
	f.addrs = append(f.addrs,
		Addr{Link: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/8"), Label: "lo", Scope: ScopeHost},
		Addr{Link: "lo", Prefix: netip.MustParsePrefix("::1/128"), Scope: ScopeHost},
	)
	for _, n := range links {
		f.setLinkLocked(Link{Name: n, Up: true, Running: true})
	}
	return f
}

// AddLink adds an interface (Index is assigned), with its per-interface
// sysctls copied from net.ipv4.conf.default as the kernel does, or changes
// the flags of an existing one (its index and addresses stay; taking lo
// down drops its IPv6 addresses as SetLinkDown says). Watchers are told.
func (f *Fake) AddLink(l Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setLinkLocked(l)
}

// setLinkLocked is AddLink with f.mu held.
func (f *Fake) setLinkLocked(l Link) {
	i := f.linkIndexLocked(l.Name)
	if i < 0 {
		f.nextIndex++
		l.Index = f.nextIndex
		f.links = append(f.links, l)
		for _, name := range confSysctls {
			v := f.sysctls[ConfSysctl("default", name)]
			if v == "" {
				v = "0"
			}
			f.sysctls[ConfSysctl(l.Name, name)] = v
		}
	} else {
		l.Index = f.links[i].Index
		f.links[i] = l
	}
	f.notifyLocked(Event{Kind: EventLinkChanged, Link: l.Name, Up: l.Up, Running: l.Running})
	if !l.Up && l.Loopback {
		// Linux with net.ipv6.conf.lo.keep_addr_on_down=0.
		f.addrs = slices.DeleteFunc(f.addrs, func(a Addr) bool {
			if a.Link == l.Name && a.Prefix.Addr().Is6() {
				f.notifyLocked(Event{Kind: EventAddrRemoved, Link: l.Name, Prefix: a.Prefix})
				return true
			}
			return false
		})
	}
}

// RemoveLink deletes an interface with its addresses and sysctls.
func (f *Fake) RemoveLink(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.linkIndexLocked(name)
	if i < 0 {
		return
	}
	f.links = slices.Delete(f.links, i, i+1)
	f.addrs = slices.DeleteFunc(f.addrs, func(a Addr) bool { return a.Link == name })
	for _, n := range confSysctls {
		delete(f.sysctls, ConfSysctl(name, n))
	}
	f.notifyLocked(Event{Kind: EventLinkRemoved, Link: name})
}

// SetLinkDown sets an interface administratively down. Like Linux, taking
// lo down removes its IPv6 addresses (net.ipv6.conf.lo.keep_addr_on_down=0).
func (f *Fake) SetLinkDown(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.linkIndexLocked(name)
	if i < 0 {
		return fmt.Errorf("set link %s down: %w", name, ErrNoInterface)
	}
	l := f.links[i]
	l.Up, l.Running = false, false
	f.setLinkLocked(l)
	return nil
}

// SetNoARP sets or clears an interface's NOARP flag (ip link set arp off/on).
func (f *Fake) SetNoARP(name string, noarp bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.linkIndexLocked(name)
	if i < 0 {
		return fmt.Errorf("set link %s arp: %w", name, ErrNoInterface)
	}
	l := f.links[i]
	l.NoARP = noarp
	f.setLinkLocked(l)
	return nil
}

// SetAddrs replaces the addresses of an interface (creating it, up, when
// missing) without recording a call or telling watchers: the state a test
// starts from. IPv4 addresses get the interface name as label.
func (f *Fake) SetAddrs(link string, ps ...netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.linkIndexLocked(link) < 0 {
		lose := f.lose
		f.lose = true
		f.setLinkLocked(Link{Name: link, Up: true, Running: true})
		f.lose = lose
	}
	f.addrs = slices.DeleteFunc(f.addrs, func(a Addr) bool { return a.Link == link })
	for _, p := range ps {
		a := Addr{Link: link, Prefix: p, Scope: ipv6Scope(p.Addr())}
		if p.Addr().Is4() {
			a.Label = link
			if p.Addr().IsLoopback() {
				a.Scope = ScopeHost // as lo's own 127.0.0.1 comes
			}
		}
		f.addrs = append(f.addrs, a)
	}
}

// SetAddrFlags replaces the flags of an existing address (to model DAD
// results, which only the kernel sets).
func (f *Fake) SetAddrFlags(link string, p netip.Prefix, flags AddrFlags) error {
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
func (f *Fake) SetRoute(dst netip.Prefix, link string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[dst.Masked()] = link
}

// FailNext makes the next call of the named method ("AddAddr",
// "SetSysctl", "Watch", ...) return err without doing anything.
func (f *Fake) FailNext(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[method] = err
}

// FailOn makes every change whose command line is op (as Calls prints it)
// fail with err, after being recorded, until FailOn is called again with a
// nil err.
func (f *Fake) FailOn(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.failOn, op)
		return
	}
	f.failOn[op] = err
}

// LoseEvents makes the fake drop the events of the changes that follow
// instead of telling watchers, as lost netlink notifications would, until
// it is called with false: only a periodic re-read can catch them.
func (f *Fake) LoseEvents(lose bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lose = lose
}

// FailWatch ends every running Watch with err, as a netlink receive error
// would.
func (f *Fake) FailWatch(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		f.endSubLocked(s, err)
	}
}

// Watchers counts the running Watch calls.
func (f *Fake) Watchers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// Calls returns the changes made through the kernel methods so far, in
// order, as ip(8) and sysctl(8) command lines
// ("ip addr add 203.0.113.10/32 dev lo label lo:dsrd").
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls forgets the recorded calls.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// String prints the state: links, addresses and sysctls, one per line,
// sorted, for tests that compare it as text.
func (f *Fake) String() string {
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
		ctls = append(ctls, "sysctl "+k+"="+v)
	}
	slices.Sort(ctls)
	lines = append(append(lines, addrs...), ctls...)
	return strings.Join(lines, "\n") + "\n"
}

func (f *Fake) linkIndexLocked(name string) int {
	return slices.IndexFunc(f.links, func(l Link) bool { return l.Name == name })
}

func (f *Fake) failNextLocked(method string) error {
	err, ok := f.failNext[method]
	if !ok {
		return nil
	}
	delete(f.failNext, method)
	return err
}

// recordLocked records a change and returns the error FailOn set for it.
func (f *Fake) recordLocked(op string) error {
	f.calls = append(f.calls, op)
	return f.failOn[op]
}

func (f *Fake) notifyLocked(ev Event) {
	if f.lose {
		return
	}
	for s := range f.subs {
		select {
		case s.ch <- ev:
		default:
			f.endSubLocked(s, errors.New("fake netlink: receive buffer overflow (ENOBUFS)"))
		}
	}
}

func (f *Fake) endSubLocked(s *fakeSub, err error) {
	delete(f.subs, s)
	s.failed <- err
}

// Links lists every interface.
func (f *Fake) Links() ([]Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("Links"); err != nil {
		return nil, err
	}
	return slices.Clone(f.links), nil
}

// LinkByName returns the named interface; ErrNoInterface when it does not
// exist.
func (f *Fake) LinkByName(name string) (Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("LinkByName"); err != nil {
		return Link{}, err
	}
	i := f.linkIndexLocked(name)
	if i < 0 {
		return Link{}, fmt.Errorf("%s: %w", name, ErrNoInterface)
	}
	return f.links[i], nil
}

// SetLinkUp sets an interface administratively up (and, the fake having
// no carrier to lose, running).
func (f *Fake) SetLinkUp(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("SetLinkUp"); err != nil {
		return err
	}
	i := f.linkIndexLocked(name)
	if i < 0 {
		return fmt.Errorf("set link up: %s: %w", name, ErrNoInterface)
	}
	if err := f.recordLocked("ip link set " + name + " up"); err != nil {
		return err
	}
	l := f.links[i]
	l.Up, l.Running = true, true
	f.setLinkLocked(l)
	return nil
}

// Addrs lists the addresses of the named interface, or of every interface
// when link is empty. A missing interface is ErrNoInterface.
func (f *Fake) Addrs(link string) ([]Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("Addrs"); err != nil {
		return nil, err
	}
	if link == "" {
		return slices.Clone(f.addrs), nil
	}
	if f.linkIndexLocked(link) < 0 {
		return nil, fmt.Errorf("list addresses: %s: %w", link, ErrNoInterface)
	}
	var out []Addr
	for _, a := range f.addrs {
		if a.Link == link {
			out = append(out, a)
		}
	}
	return out, nil
}

// AddAddr adds an address; an existing one (same interface, address and
// prefix length) is left as it is.
func (f *Fake) AddAddr(a Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("AddAddr"); err != nil {
		return err
	}
	i := f.linkIndexLocked(a.Link)
	if i < 0 {
		return fmt.Errorf("add %s: %w", a, ErrNoInterface)
	}
	if a.Prefix.Addr().Is4() {
		if a.Label == "" {
			a.Label = a.Link
		}
		if !strings.HasPrefix(a.Label, a.Link) || len(a.Label) > maxLabel {
			return fmt.Errorf("add %s: invalid label", a)
		}
	} else {
		a.Label = ""
		a.Scope = ipv6Scope(a.Prefix.Addr())
	}
	a.Flags &= FlagNoDAD | FlagDeprecated
	if a.Prefix.Addr().Is4() {
		a.Flags &^= FlagDeprecated
	}
	l := f.links[i]
	if a.Prefix.Addr().Is6() && a.Flags&FlagNoDAD == 0 && !l.NoARP && !l.Loopback {
		a.Flags |= FlagTentative
	}
	if err := f.recordLocked("ip addr add " + a.String()); err != nil {
		return err
	}
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
// that label. An address or interface that is not there is not an error.
func (f *Fake) DelAddr(a Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("DelAddr"); err != nil {
		return err
	}
	if err := f.recordLocked("ip addr del " + a.String()); err != nil {
		return err
	}
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

// Sysctl reads a sysctl by its dotted name; an error matching
// fs.ErrNotExist when it does not exist.
func (f *Fake) Sysctl(name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("Sysctl"); err != nil {
		return "", err
	}
	if err := checkSysctlName(name); err != nil {
		return "", err
	}
	v, ok := f.sysctls[name]
	if !ok {
		return "", fmt.Errorf("read sysctl %s: %w", name, fs.ErrNotExist)
	}
	return v, nil
}

// SetSysctl writes a sysctl that exists; an error matching fs.ErrNotExist
// otherwise.
func (f *Fake) SetSysctl(name, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNextLocked("SetSysctl"); err != nil {
		return err
	}
	if err := checkSysctlName(name); err != nil {
		return err
	}
	if _, ok := f.sysctls[name]; !ok {
		return fmt.Errorf("write sysctl %s=%s: %w", name, value, fs.ErrNotExist)
	}
	if err := f.recordLocked("sysctl -w " + name + "=" + value); err != nil {
		return err
	}
	f.sysctls[name] = value
	return nil
}

// RouteInterface answers as the kernel's main table would: a local
// address routes to lo; otherwise the longest match among SetRoute's
// routes and the connected routes of the addresses of interfaces that are
// up (192.0.2.5/24 on eth0: 192.0.2.0/24 via eth0).
func (f *Fake) RouteInterface(dst netip.Addr) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.addrs {
		if a.Prefix.Addr() == dst {
			return "lo", nil
		}
	}
	best, link := -1, ""
	consider := func(p netip.Prefix, l string) {
		if p.Contains(dst) && p.Bits() > best {
			best, link = p.Bits(), l
		}
	}
	for p, l := range f.routes {
		consider(p, l)
	}
	for _, a := range f.addrs {
		if i := f.linkIndexLocked(a.Link); i >= 0 && f.links[i].Up && !f.links[i].Loopback {
			consider(a.Prefix.Masked(), a.Link)
		}
	}
	if best < 0 {
		return "", fmt.Errorf("route to %s: no route", dst)
	}
	return link, nil
}

// Watch forwards the fake's changes until ctx ends or FailWatch (or an
// overflow) ends the subscription, and returns why it stopped (never nil).
// Its first event is EventSubscribed.
func (f *Fake) Watch(ctx context.Context, events chan<- Event) error {
	s := &fakeSub{ch: make(chan Event, fakeWatchBuffer), failed: make(chan error, 1)}
	f.mu.Lock()
	if err := f.failNextLocked("Watch"); err != nil {
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
