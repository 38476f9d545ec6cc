//go:build linux

package netkernel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/netnsutil"
)

// procSys is where sysctls live.
const procSys = "/proc/sys"

// dumpRetries bounds how often a netlink dump interrupted by a concurrent
// change (NLM_F_DUMP_INTR) is repeated before its partial result is an error.
const dumpRetries = 5

// watchReceiveBuffer is the receive buffer asked for the event
// subscriptions: 1 MiB holds the burst of a host adding hundreds of
// addresses at once; a smaller one overflows (ENOBUFS) and forces a
// re-subscription, which is handled but costs a full re-read. The kernel
// caps it at net.core.rmem_max.
const watchReceiveBuffer = 1 << 20

// Linux is the kernel of one network namespace, over netlink and
// /proc/sys. Its methods are safe for concurrent use.
type Linux struct {
	ns netns.NsHandle // netns.None(): the caller's namespace

	mu sync.Mutex // netlink.Handle is not safe for concurrent use
	h  *netlink.Handle
}

// New returns a Linux working in the current network namespace.
func New() (*Linux, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Linux{ns: netns.None(), h: h}, nil
}

// NewAt returns a Linux working in the network namespace ns, whatever the
// namespace of the calling goroutine: netlink requests and subscriptions
// are opened there and sysctls are read and written from a thread inside
// it. It keeps its own duplicate of ns: the caller may close its handle.
func NewAt(ns netns.NsHandle) (*Linux, error) {
	if !ns.IsOpen() {
		return nil, errors.New("open netlink: network namespace handle is not open")
	}
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate network namespace handle: %w", err)
	}
	own := netns.NsHandle(fd)
	h, err := netlink.NewHandleAt(own, unix.NETLINK_ROUTE)
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("open netlink in namespace %s: %w", own, err)
	}
	return &Linux{ns: own, h: h}, nil
}

// Close releases the netlink socket and the namespace handle.
func (l *Linux) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h != nil {
		l.h.Close()
		l.h = nil
	}
	if l.ns.IsOpen() {
		err := l.ns.Close()
		l.ns = netns.None()
		return err
	}
	return nil
}

// Run runs fn on an OS thread inside l's namespace (directly when l works
// in the caller's): sockets fn opens belong to that namespace.
func (l *Linux) Run(fn func() error) error { return netnsutil.Run(l.ns, fn) }

// linkByName looks a link up; ErrNoInterface when it does not exist. Call
// with l.mu held.
func (l *Linux) linkByName(name string) (netlink.Link, error) {
	link, err := l.h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("%s: %w", name, ErrNoInterface)
		}
		return nil, fmt.Errorf("look up interface %s: %w", name, err)
	}
	return link, nil
}

// linkList dumps the links, repeating an interrupted dump. Call with l.mu held.
func (l *Linux) linkList() ([]netlink.Link, error) {
	var err error
	for range dumpRetries {
		var ls []netlink.Link
		ls, err = l.h.LinkList()
		if err == nil {
			return ls, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}

func linkFromNetlink(nl netlink.Link) Link {
	a := nl.Attrs()
	return Link{
		Name:     a.Name,
		Index:    a.Index,
		Up:       a.RawFlags&unix.IFF_UP != 0,
		Running:  a.RawFlags&unix.IFF_RUNNING != 0,
		NoARP:    a.RawFlags&unix.IFF_NOARP != 0,
		Loopback: a.RawFlags&unix.IFF_LOOPBACK != 0,
	}
}

// Links lists every network interface.
func (l *Linux) Links() ([]Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nls, err := l.linkList()
	if err != nil {
		return nil, err
	}
	links := make([]Link, 0, len(nls))
	for _, nl := range nls {
		links = append(links, linkFromNetlink(nl))
	}
	return links, nil
}

// LinkByName returns the named interface; ErrNoInterface when it does not
// exist.
func (l *Linux) LinkByName(name string) (Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nl, err := l.linkByName(name)
	if err != nil {
		return Link{}, err
	}
	return linkFromNetlink(nl), nil
}

// Interface returns the named interface as the net package describes it
// (index, MTU, hardware address), for sockets opened with Run.
func (l *Linux) Interface(name string) (*net.Interface, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	nl, err := l.linkByName(name)
	if err != nil {
		return nil, err
	}
	a := nl.Attrs()
	return &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}, nil
}

// SetLinkUp sets the named interface administratively up.
func (l *Linux) SetLinkUp(name string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	nl, err := l.linkByName(name)
	if err != nil {
		return fmt.Errorf("set link up: %w", err)
	}
	if err := l.h.LinkSetUp(nl); err != nil {
		return fmt.Errorf("set link %s up: %w", name, err)
	}
	return nil
}

// Addrs lists the addresses of the named interface, or of every interface
// when link is empty, both families. A missing interface is ErrNoInterface.
func (l *Linux) Addrs(link string) ([]Addr, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var (
		nas   []netlink.Addr
		names = map[int]string{}
	)
	if link != "" {
		nl, err := l.linkByName(link)
		if err != nil {
			return nil, fmt.Errorf("list addresses: %w", err)
		}
		names[nl.Attrs().Index] = link
		nas, err = l.h.AddrList(nl, netlink.FAMILY_ALL)
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", link, err)
		}
	} else {
		links, err := l.linkList()
		if err != nil {
			return nil, err
		}
		for _, nl := range links {
			names[nl.Attrs().Index] = nl.Attrs().Name
		}
		for range dumpRetries {
			nas, err = l.h.AddrList(nil, netlink.FAMILY_ALL)
			if !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("list addresses: %w", err)
		}
	}
	addrs := make([]Addr, 0, len(nas))
	for _, na := range nas {
		p, ok := prefixFromIPNet(na.IPNet)
		if !ok {
			continue
		}
		name, ok := names[na.LinkIndex]
		if !ok {
			name = fmt.Sprintf("if%d", na.LinkIndex)
		}
		addrs = append(addrs, Addr{Link: name, Prefix: p, Label: na.Label, Flags: flagsFromNetlink(na.Flags), Scope: AddrScope(na.Scope)})
	}
	return addrs, nil
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

func flagsFromNetlink(f int) AddrFlags {
	var out AddrFlags
	if f&unix.IFA_F_NODAD != 0 {
		out |= FlagNoDAD
	}
	if f&unix.IFA_F_TENTATIVE != 0 {
		out |= FlagTentative
	}
	if f&unix.IFA_F_DADFAILED != 0 {
		out |= FlagDADFailed
	}
	if f&unix.IFA_F_DEPRECATED != 0 {
		out |= FlagDeprecated
	}
	return out
}

func toNetlinkAddr(a Addr) *netlink.Addr {
	na := &netlink.Addr{IPNet: &net.IPNet{
		IP:   a.Prefix.Addr().AsSlice(),
		Mask: net.CIDRMask(a.Prefix.Bits(), a.Prefix.Addr().BitLen()),
	}}
	if a.Prefix.Addr().Is4() {
		na.Label = a.Label
		na.Scope = int(a.Scope)
	}
	if a.Flags&FlagNoDAD != 0 {
		na.Flags |= unix.IFA_F_NODAD
	}
	if a.Flags&FlagDeprecated != 0 && a.Prefix.Addr().Is6() {
		// preferred_lft 0, valid_lft forever (netlink sends the
		// lifetimes when either is non-zero).
		na.PreferedLft, na.ValidLft = 0, math.MaxUint32
	}
	return na
}

// AddAddr adds a.Prefix to a.Link with a.Label (IPv4) and the settable
// flags of a.Flags (FlagNoDAD, FlagDeprecated). An address already there is not an error;
// a missing interface is ErrNoInterface.
func (l *Linux) AddAddr(a Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	nl, err := l.linkByName(a.Link)
	if err != nil {
		return fmt.Errorf("add %s: %w", a, err)
	}
	if err := l.h.AddrAdd(nl, toNetlinkAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s: %w", a, err)
	}
	return nil
}

// DelAddr removes a.Prefix from a.Link; for IPv4 with a.Label set, only
// the address with that label. An address or interface that is not there
// is not an error.
func (l *Linux) DelAddr(a Addr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	nl, err := l.linkByName(a.Link)
	if errors.Is(err, ErrNoInterface) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", a, err)
	}
	if err := l.h.AddrDel(nl, toNetlinkAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("delete %s: %w", a, err)
	}
	return nil
}

// Sysctl reads a sysctl by its dotted name ("net.ipv4.conf.all.arp_ignore")
// in l's namespace, without the trailing newline; an error matching
// fs.ErrNotExist when it does not exist.
func (l *Linux) Sysctl(name string) (string, error) {
	if err := checkSysctlName(name); err != nil {
		return "", err
	}
	var out string
	err := l.Run(func() error {
		b, err := os.ReadFile(filepath.Join(procSys, SysctlPath(name)))
		if err != nil {
			return err
		}
		out = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return out, nil
}

// SetSysctl writes a sysctl by its dotted name in l's namespace; an error
// matching fs.ErrNotExist when it does not exist.
func (l *Linux) SetSysctl(name, value string) error {
	if err := checkSysctlName(name); err != nil {
		return err
	}
	err := l.Run(func() error {
		// No O_CREATE: a missing entry must fail with ErrNotExist.
		f, err := os.OpenFile(filepath.Join(procSys, SysctlPath(name)), os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(value); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// RouteInterface names the interface the kernel would send a packet to dst
// through.
func (l *Linux) RouteInterface(dst netip.Addr) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	routes, err := l.h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return "", fmt.Errorf("route to %s: %w", dst, err)
	}
	if len(routes) == 0 {
		return "", fmt.Errorf("route to %s: no route", dst)
	}
	nl, err := l.h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("route to %s: link %d: %w", dst, routes[0].LinkIndex, err)
	}
	return nl.Attrs().Name, nil
}

// Watch sends an Event for every address and link change until ctx ends
// or the subscription fails (an overflowing receive buffer reports
// ENOBUFS), and returns why it stopped (never nil). Its first event is
// EventSubscribed, once both subscriptions are open: every change after it
// is reported. Changes while no Watch runs are lost: a caller that
// (re)subscribes must re-read the state. Both subscriptions are closed,
// and their goroutines drained, before it returns.
func (l *Linux) Watch(ctx context.Context, events chan<- Event) error {
	done := make(chan struct{})
	addrCh := make(chan netlink.AddrUpdate, 64)
	linkCh := make(chan netlink.LinkUpdate, 64)
	errCh := make(chan error, 2)
	onError := func(err error) {
		select {
		case errCh <- err:
		default:
		}
	}
	var nsp *netns.NsHandle
	if l.ns.IsOpen() {
		ns := l.ns
		nsp = &ns
	}
	// netlink's receive goroutines end when done closes (it closes their
	// sockets), but only after their last send on addrCh/linkCh: the
	// deferred drain reads both until netlink closes them.
	addrOpen, linkOpen := false, false
	defer func() {
		close(done)
		for addrOpen || linkOpen {
			select {
			case _, ok := <-addrCh:
				addrOpen = addrOpen && ok
			case _, ok := <-linkCh:
				linkOpen = linkOpen && ok
			}
		}
	}()
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{
		Namespace:         nsp,
		ErrorCallback:     onError,
		ReceiveBufferSize: watchReceiveBuffer,
	}); err != nil {
		return fmt.Errorf("subscribe to address changes: %w", err)
	}
	addrOpen = true
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{
		Namespace:         nsp,
		ErrorCallback:     onError,
		ReceiveBufferSize: watchReceiveBuffer,
	}); err != nil {
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	linkOpen = true
	select {
	case events <- Event{Kind: EventSubscribed}:
	case <-ctx.Done():
		return ctx.Err()
	}

	for {
		var ev Event
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errCh:
			return fmt.Errorf("netlink subscription: %w", err)
		case u, ok := <-addrCh:
			if !ok {
				addrOpen = false
				return errors.New("address subscription closed")
			}
			p, ok := prefixFromIPNet(&u.LinkAddress)
			if !ok {
				continue
			}
			ev = Event{Kind: EventAddrRemoved, Link: l.linkName(u.LinkIndex), Prefix: p}
			if u.NewAddr {
				ev.Kind = EventAddrAdded
			}
		case u, ok := <-linkCh:
			if !ok {
				linkOpen = false
				return errors.New("link subscription closed")
			}
			if u.Link == nil || u.Link.Attrs() == nil {
				continue
			}
			a := u.Link.Attrs()
			ev = Event{Kind: EventLinkChanged, Link: a.Name,
				Up: a.RawFlags&unix.IFF_UP != 0, Running: a.RawFlags&unix.IFF_RUNNING != 0}
			if u.Header.Type == unix.RTM_DELLINK {
				ev = Event{Kind: EventLinkRemoved, Link: a.Name}
			}
		}
		select {
		case events <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// linkName resolves an interface index for an event, "if<index>" when the
// link is gone.
func (l *Linux) linkName(index int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.h != nil {
		if nl, err := l.h.LinkByIndex(index); err == nil {
			return nl.Attrs().Name
		}
	}
	return fmt.Sprintf("if%d", index)
}
