package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/netnsutil"
)

// Linux is the Kernel over netlink, and the sender of announcements
// (Announce), in one network namespace. It is safe for concurrent use.
type Linux struct {
	ns netns.NsHandle // netns.None(): the caller's namespace

	mu sync.Mutex // netlink.Handle is not safe for concurrent use
	h  *netlink.Handle
}

// NewLinux returns a Linux working in the current network namespace.
func NewLinux() (*Linux, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Linux{ns: netns.None(), h: h}, nil
}

// NewLinuxAt returns a Linux working in the network namespace ns,
// whatever the namespace of the calling goroutine. It keeps its own
// duplicate of ns: the caller may close its handle.
func NewLinuxAt(ns netns.NsHandle) (*Linux, error) {
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
	l.h.Close()
	if l.ns.IsOpen() {
		return l.ns.Close()
	}
	return nil
}

func (l *Linux) link(ifname string) (netlink.Link, error) {
	link, err := l.h.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("%s: %w", ifname, ErrNoInterface)
		}
		return nil, fmt.Errorf("look up interface %s: %w", ifname, err)
	}
	return link, nil
}

func nlAddr(ifname string, p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		// The VIP moves between directors: duplicate address detection
		// would find the previous owner's advertisements and leave the
		// address tentative (unusable) for a second or for good.
		a.Flags = unix.IFA_F_NODAD
	} else {
		a.Label = dsrdLabel(ifname)
	}
	return a
}

// AddAddr implements Kernel.
func (l *Linux) AddAddr(ifname string, p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	link, err := l.link(ifname)
	if err != nil {
		return fmt.Errorf("add %s: %w", p, err)
	}
	if err := l.h.AddrAdd(link, nlAddr(ifname, p)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s to %s: %w", p, ifname, err)
	}
	return nil
}

// DelAddr implements Kernel.
func (l *Linux) DelAddr(ifname string, p netip.Prefix) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	link, err := l.link(ifname)
	if errors.Is(err, ErrNoInterface) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	if err := l.h.AddrDel(link, nlAddr(ifname, p)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("delete %s from %s: %w", p, ifname, err)
	}
	return nil
}

// Addrs implements Kernel.
func (l *Linux) Addrs(ifname string) ([]netip.Prefix, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	link, err := l.link(ifname)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	addrs, err := l.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

// Link implements Kernel.
func (l *Linux) Link(ifname string) (Link, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	link, err := l.link(ifname)
	if errors.Is(err, ErrNoInterface) {
		return Link{Name: ifname, Status: LinkMissing}, nil
	}
	if err != nil {
		return Link{}, err
	}
	return Link{Name: ifname, Status: linkStatus(link.Attrs().Flags)}, nil
}

// linkStatus is up when the interface is administratively up (IFF_UP) and
// operationally up (IFF_RUNNING: carrier, or a device without carrier
// reporting such as dummy).
func linkStatus(f net.Flags) LinkStatus {
	if f&net.FlagUp != 0 && f&net.FlagRunning != 0 {
		return LinkUp
	}
	return LinkDown
}

// SubscribeLinks implements Kernel with netlink.LinkSubscribeWithOptions.
// Its goroutine ends once netlink closes its channel, which it does when
// done is closed or the socket fails.
func (l *Linux) SubscribeLinks(done <-chan struct{}, onError func(error)) (<-chan Link, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: onError}
	if l.ns.IsOpen() {
		opts.Namespace = &l.ns
	}
	if err := netlink.LinkSubscribeWithOptions(updates, done, opts); err != nil {
		return nil, fmt.Errorf("subscribe to link changes: %w", err)
	}
	out := make(chan Link)
	go func() {
		defer close(out)
		// Drain updates until netlink closes it, even after done: its
		// goroutine blocks on a full channel.
		for u := range updates {
			if u.Link == nil || u.Link.Attrs() == nil {
				continue
			}
			link := Link{Name: u.Link.Attrs().Name, Status: linkStatus(u.Link.Attrs().Flags)}
			if u.Header.Type == unix.RTM_DELLINK {
				link.Status = LinkMissing
			}
			select {
			case out <- link:
			case <-done:
			}
		}
	}()
	return out, nil
}

// Announce implements AnnounceFunc: gratuitous ARP (request and reply
// forms) for an IPv4 addr, an unsolicited neighbour advertisement for an
// IPv6 one, sent on ifname in l's namespace.
func (l *Linux) Announce(ctx context.Context, ifname string, addr netip.Addr) error {
	l.mu.Lock()
	link, err := l.link(ifname)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("announce %s: %w", addr, err)
	}
	a := link.Attrs()
	ifi := &net.Interface{Index: a.Index, MTU: a.MTU, Name: a.Name, HardwareAddr: a.HardwareAddr, Flags: a.Flags}
	// The sockets are opened in l's namespace, where ifi's index is valid.
	return netnsutil.Run(l.ns, func() error {
		if addr.Is4() {
			return sendGARP(ctx, ifi, addr)
		}
		return sendUnsolicitedNA(ctx, ifi, addr)
	})
}
