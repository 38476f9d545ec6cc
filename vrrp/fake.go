package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// FakeKernel is an in-memory Kernel for tests: it keeps real state (links,
// their status and addresses), so a wrong sequence of operations shows as
// wrong state, and records every change as an ip(8) command line, in order,
// for tests to compare as text. It is safe for concurrent use.
type FakeKernel struct {
	mu     sync.Mutex
	links  map[string]*fakeLink
	ops    []string
	fail   map[string]error
	subs   map[int]*fakeSub
	nextID int
}

type fakeLink struct {
	up    bool
	addrs []netip.Prefix
}

type fakeSub struct {
	ch     chan Link
	closed bool
}

// NewFakeKernel returns a FakeKernel with the named interfaces, up and
// without addresses.
func NewFakeKernel(ifnames ...string) *FakeKernel {
	f := &FakeKernel{
		links: make(map[string]*fakeLink),
		fail:  make(map[string]error),
		subs:  make(map[int]*fakeSub),
	}
	for _, n := range ifnames {
		f.links[n] = &fakeLink{up: true}
	}
	return f
}

// AddAddr implements Kernel.
func (f *FakeKernel) AddAddr(ifname string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := "ip addr add " + p.String() + " dev " + ifname
	if p.Addr().Is6() {
		op += " nodad"
	} else if l := dsrdLabel(ifname); l != "" {
		op += " label " + l
	}
	f.ops = append(f.ops, op)
	if err := f.fail[op]; err != nil {
		return err
	}
	l, ok := f.links[ifname]
	if !ok {
		return fmt.Errorf("add %s to %s: %w", p, ifname, ErrNoInterface)
	}
	if !slices.Contains(l.addrs, p) {
		l.addrs = append(l.addrs, p)
	}
	return nil
}

// DelAddr implements Kernel.
func (f *FakeKernel) DelAddr(ifname string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	op := "ip addr del " + p.String() + " dev " + ifname
	f.ops = append(f.ops, op)
	if err := f.fail[op]; err != nil {
		return err
	}
	if l, ok := f.links[ifname]; ok {
		l.addrs = slices.DeleteFunc(l.addrs, func(q netip.Prefix) bool { return q == p })
	}
	return nil
}

// Addrs implements Kernel.
func (f *FakeKernel) Addrs(ifname string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[ifname]
	if !ok {
		return nil, fmt.Errorf("list addresses of %s: %w", ifname, ErrNoInterface)
	}
	return slices.Clone(l.addrs), nil
}

// Link implements Kernel.
func (f *FakeKernel) Link(ifname string) (Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.linkLocked(ifname), nil
}

func (f *FakeKernel) linkLocked(ifname string) Link {
	l, ok := f.links[ifname]
	switch {
	case !ok:
		return Link{Name: ifname, Status: LinkMissing}
	case !l.up:
		return Link{Name: ifname, Status: LinkDown}
	}
	return Link{Name: ifname, Status: LinkUp}
}

// SubscribeLinks implements Kernel: every SetLink is delivered to every
// subscription. The subscription's goroutine ends when done is closed or
// BreakSubscriptions ends it.
func (f *FakeKernel) SubscribeLinks(done <-chan struct{}, onError func(error)) (<-chan Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.nextID
	f.nextID++
	// Buffered and never blocking the sender: a test changes links from
	// its own goroutine while the subscriber may be busy.
	sub := &fakeSub{ch: make(chan Link, 64)}
	f.subs[id] = sub
	go func() {
		<-done
		f.mu.Lock()
		defer f.mu.Unlock()
		if !sub.closed {
			sub.closed = true
			close(sub.ch)
		}
		delete(f.subs, id)
	}()
	return sub.ch, nil
}

// BreakSubscriptions ends every current link subscription, as a failing
// netlink socket would, so tests can check that watchers subscribe again.
func (f *FakeKernel) BreakSubscriptions() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.subs {
		if !s.closed {
			s.closed = true
			close(s.ch)
		}
	}
}

// Subscriptions returns how many link subscriptions are open.
func (f *FakeKernel) Subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.subs {
		if !s.closed {
			n++
		}
	}
	return n
}

// SetLink creates, changes or (with LinkMissing) deletes an interface and
// tells the link subscribers. Deleting an interface drops its addresses,
// as the kernel does; taking it down keeps them.
func (f *FakeKernel) SetLink(ifname string, status LinkStatus) {
	f.setLink(ifname, status, true)
}

// SetLinkQuietly is SetLink without telling the subscribers: a lost
// netlink notification, which only a periodic check can catch.
func (f *FakeKernel) SetLinkQuietly(ifname string, status LinkStatus) {
	f.setLink(ifname, status, false)
}

func (f *FakeKernel) setLink(ifname string, status LinkStatus, notify bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[ifname]
	switch status {
	case LinkMissing:
		if ok {
			f.ops = append(f.ops, "ip link del "+ifname)
			delete(f.links, ifname)
		}
	default:
		if !ok {
			f.ops = append(f.ops, "ip link add "+ifname)
			l = &fakeLink{}
			f.links[ifname] = l
		}
		up := status == LinkUp
		if l.up != up || !ok {
			state := "down"
			if up {
				state = "up"
			}
			f.ops = append(f.ops, "ip link set "+ifname+" "+state)
		}
		l.up = up
	}
	if !notify {
		return
	}
	ev := f.linkLocked(ifname)
	for _, s := range f.subs {
		if s.closed {
			continue
		}
		select {
		case s.ch <- ev:
		default:
			// A real netlink socket overflows with ENOBUFS and fails;
			// do the same so the subscriber re-subscribes.
			s.closed = true
			close(s.ch)
		}
	}
}

// SetAddrs replaces the addresses of an existing interface without
// recording an operation: the state a test starts from.
func (f *FakeKernel) SetAddrs(ifname string, ps ...netip.Prefix) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.links[ifname]
	if !ok {
		l = &fakeLink{up: true}
		f.links[ifname] = l
	}
	l.addrs = slices.Clone(ps)
}

// FailOn makes the operation whose command line is op (as Ops prints it)
// fail with err until FailOn is called again with a nil err.
func (f *FakeKernel) FailOn(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.fail, op)
		return
	}
	f.fail[op] = err
}

// Ops returns the recorded operations, in order, one ip(8) command line
// each, like "ip addr add 203.0.113.10/32 dev eth0 label eth0:dsrd".
func (f *FakeKernel) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ops)
}

// ResetOps forgets the recorded operations.
func (f *FakeKernel) ResetOps() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = nil
}

// String prints the current state, one interface a line, sorted:
// "eth0 up 192.0.2.1/24 203.0.113.10/32".
func (f *FakeKernel) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.links))
	for n := range f.links {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		l := f.links[n]
		b.WriteString(n)
		if l.up {
			b.WriteString(" up")
		} else {
			b.WriteString(" down")
		}
		addrs := slices.Clone(l.addrs)
		slices.SortFunc(addrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		for _, a := range addrs {
			b.WriteString(" " + a.String())
		}
		b.WriteString("\n")
	}
	return b.String()
}
