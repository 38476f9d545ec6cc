//go:build linux

package realserver

import (
	"context"
	"errors"
	"fmt"
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

// LinuxKernel is the Kernel of a Linux network namespace, over netlink and
// /proc/sys. Its methods are safe for concurrent use.
type LinuxKernel struct {
	mu sync.Mutex // serialises requests on h
	h  *netlink.Handle
	// ns is the namespace when one was given; hasNS says so.
	ns    netns.NsHandle
	hasNS bool
}

// LinuxKernelOption configures NewLinuxKernel.
type LinuxKernelOption func(*LinuxKernel)

// InNetns makes the kernel act on the network namespace ns instead of the
// caller's: netlink requests and subscriptions are opened there and sysctls
// are read and written from a thread that enters it. ns stays owned by the
// caller and must outlive the kernel.
func InNetns(ns netns.NsHandle) LinuxKernelOption {
	return func(k *LinuxKernel) {
		k.ns = ns
		k.hasNS = true
	}
}

// NewLinuxKernel opens a netlink handle on the current network namespace,
// or on the one given with InNetns. Close releases it.
func NewLinuxKernel(opts ...LinuxKernelOption) (*LinuxKernel, error) {
	k := &LinuxKernel{ns: netns.None()}
	for _, o := range opts {
		o(k)
	}
	var (
		h   *netlink.Handle
		err error
	)
	if k.hasNS {
		h, err = netlink.NewHandleAt(k.ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("open netlink handle: %w", err)
	}
	k.h = h
	return k, nil
}

// Close releases the netlink handle. The namespace given with InNetns is
// not closed.
func (k *LinuxKernel) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.h != nil {
		k.h.Close()
		k.h = nil
	}
	return nil
}

// Links lists every network interface.
func (k *LinuxKernel) Links() ([]Link, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	nls, err := k.linkList()
	if err != nil {
		return nil, err
	}
	links := make([]Link, 0, len(nls))
	for _, l := range nls {
		links = append(links, linkFromNetlink(l))
	}
	return links, nil
}

// linkList dumps the links, repeating an interrupted dump. Call with k.mu held.
func (k *LinuxKernel) linkList() ([]netlink.Link, error) {
	var err error
	for range dumpRetries {
		var ls []netlink.Link
		ls, err = k.h.LinkList()
		if err == nil {
			return ls, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	return nil, fmt.Errorf("list links: %w", err)
}

func linkFromNetlink(l netlink.Link) Link {
	a := l.Attrs()
	return Link{
		Name:     a.Name,
		Index:    a.Index,
		Up:       a.RawFlags&unix.IFF_UP != 0,
		Running:  a.RawFlags&unix.IFF_RUNNING != 0,
		NoARP:    a.RawFlags&unix.IFF_NOARP != 0,
		Loopback: a.RawFlags&unix.IFF_LOOPBACK != 0,
	}
}

// SetLinkUp sets the named interface administratively up.
func (k *LinuxKernel) SetLinkUp(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := k.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := k.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("set link %s up: %w", name, err)
	}
	return nil
}

// Addrs lists every address of every interface, both families.
func (k *LinuxKernel) Addrs() ([]Addr, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	links, err := k.linkList()
	if err != nil {
		return nil, err
	}
	names := make(map[int]string, len(links))
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var nas []netlink.Addr
	for range dumpRetries {
		nas, err = k.h.AddrList(nil, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
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
		addrs = append(addrs, Addr{Link: name, Prefix: p, Label: na.Label, Flags: flagsFromNetlink(na.Flags)})
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
	ip = ip.Unmap()
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip, ones), true
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
	return out
}

func toNetlinkAddr(a Addr) *netlink.Addr {
	ip := net.IP(a.Prefix.Addr().AsSlice())
	bits := 32
	if a.Prefix.Addr().Is6() {
		bits = 128
	}
	na := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(a.Prefix.Bits(), bits)}}
	if a.Prefix.Addr().Is4() {
		na.Label = a.Label
	}
	if a.Flags&FlagNoDAD != 0 {
		na.Flags |= unix.IFA_F_NODAD
	}
	return na
}

// AddAddr adds an address; one that is already there is not an error.
func (k *LinuxKernel) AddAddr(a Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := k.h.LinkByName(a.Link)
	if err != nil {
		return fmt.Errorf("add %s: find link: %w", a, err)
	}
	if err := k.h.AddrAdd(l, toNetlinkAddr(a)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add %s: %w", a, err)
	}
	return nil
}

// DelAddr removes an address (for IPv4 only the one with a.Label when
// set); an absent one is not an error.
func (k *LinuxKernel) DelAddr(a Addr) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	l, err := k.h.LinkByName(a.Link)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("delete %s: find link: %w", a, err)
	}
	if err := k.h.AddrDel(l, toNetlinkAddr(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("delete %s: %w", a, err)
	}
	return nil
}

// Sysctl reads /proc/sys/<path> in the kernel's namespace.
func (k *LinuxKernel) Sysctl(path string) (string, error) {
	if err := checkSysctlPath(path); err != nil {
		return "", err
	}
	var out string
	err := k.inNetns(func() error {
		b, err := os.ReadFile(filepath.Join(procSys, path))
		if err != nil {
			return err
		}
		out = strings.TrimSpace(string(b))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", sysctlName(path), err)
	}
	return out, nil
}

// SetSysctl writes value to /proc/sys/<path> in the kernel's namespace.
func (k *LinuxKernel) SetSysctl(path, value string) error {
	if err := checkSysctlPath(path); err != nil {
		return err
	}
	err := k.inNetns(func() error {
		// No O_CREATE: a missing entry must fail with ErrNotExist.
		f, err := os.OpenFile(filepath.Join(procSys, path), os.O_WRONLY|os.O_TRUNC, 0)
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
		return fmt.Errorf("write sysctl %s=%s: %w", sysctlName(path), value, err)
	}
	return nil
}

func checkSysctlPath(path string) error {
	if path == "" || filepath.IsAbs(path) || filepath.Clean(path) != path || strings.HasPrefix(path, "..") {
		return fmt.Errorf("invalid sysctl path %q", path)
	}
	return nil
}

// inNetns runs fn on an OS thread inside the kernel's namespace: the
// /proc/sys/net entries a process sees belong to the namespace of the
// thread that opens them (checked on this project's hosts: a file opened
// by a thread inside a namespace keeps reading that namespace's values).
// Without InNetns (k.ns is then not open) fn runs directly.
func (k *LinuxKernel) inNetns(fn func() error) error {
	return netnsutil.Run(k.ns, fn)
}

// RouteInterface names the interface the kernel would send a packet to dst
// through.
func (k *LinuxKernel) RouteInterface(dst netip.Addr) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	routes, err := k.h.RouteGet(net.IP(dst.AsSlice()))
	if err != nil {
		return "", fmt.Errorf("route to %s: %w", dst, err)
	}
	if len(routes) == 0 {
		return "", fmt.Errorf("route to %s: no route", dst)
	}
	l, err := k.h.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return "", fmt.Errorf("route to %s: link %d: %w", dst, routes[0].LinkIndex, err)
	}
	return l.Attrs().Name, nil
}

// Watch subscribes to address and link changes and forwards them as Events
// until ctx ends or a subscription fails (an overflowing receive buffer
// reports ENOBUFS). Both subscriptions are closed, and their goroutines
// drained, before it returns.
func (k *LinuxKernel) Watch(ctx context.Context, events chan<- Event) error {
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
	if k.hasNS {
		ns := k.ns
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
			ev = Event{Kind: EventAddrRemoved, Link: k.linkName(u.LinkIndex), Prefix: p}
			if u.NewAddr {
				ev.Kind = EventAddrAdded
			}
		case u, ok := <-linkCh:
			if !ok {
				linkOpen = false
				return errors.New("link subscription closed")
			}
			ev = Event{Kind: EventLinkChanged, Link: u.Attrs().Name, Up: u.Attrs().RawFlags&unix.IFF_UP != 0}
			if u.Header.Type == unix.RTM_DELLINK {
				ev.Kind = EventLinkRemoved
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
func (k *LinuxKernel) linkName(index int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.h != nil {
		if l, err := k.h.LinkByIndex(index); err == nil {
			return l.Attrs().Name
		}
	}
	return fmt.Sprintf("if%d", index)
}
