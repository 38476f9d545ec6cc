package vrrp

import (
	"context"
	"errors"
	"strconv"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// ErrNoInterface reports that a named interface does not exist.
var ErrNoInterface = netkernel.ErrNoInterface

// Kernel is what the VIP owner needs from the kernel: the part of
// netkernel's seam it uses. Implementations must be safe for concurrent
// use. [Linux] is the real one, [FakeKernel] the one for tests.
type Kernel interface {
	// AddAddr adds an address; one already present is not an error. A
	// missing interface is reported with ErrNoInterface.
	AddAddr(a netkernel.Addr) error
	// DelAddr removes an address, whatever its label when a.Label is
	// empty. An address or interface that is not there is not an error.
	DelAddr(a netkernel.Addr) error
	// Addrs lists the addresses of the interface, all families. A missing
	// interface is reported with ErrNoInterface.
	Addrs(link string) ([]netkernel.Addr, error)
	// LinkByName reports the interface; ErrNoInterface when it is missing.
	LinkByName(name string) (netkernel.Link, error)
	// Watch sends link and address changes until ctx ends or the
	// subscription fails, and returns why it stopped; its first event is
	// netkernel.EventSubscribed.
	Watch(ctx context.Context, events chan<- netkernel.Event) error
}

// LinkStatus is the state of an interface as far as VIP ownership goes.
type LinkStatus int

// The link states. Only LinkUp can carry VIPs.
const (
	// LinkMissing: the interface does not exist.
	LinkMissing LinkStatus = iota
	// LinkDown: the interface exists but is administratively down or has
	// no carrier (not IFF_UP and IFF_RUNNING).
	LinkDown
	// LinkUp: the interface is up and running.
	LinkUp
)

// String returns "missing", "down" or "up".
func (s LinkStatus) String() string {
	switch s {
	case LinkMissing:
		return "missing"
	case LinkDown:
		return "down"
	case LinkUp:
		return "up"
	}
	return "LinkStatus(" + strconv.Itoa(int(s)) + ")"
}

// Link is the state of one interface.
type Link struct {
	// Name is the interface name.
	Name string
	// Status says whether the interface exists and is up.
	Status LinkStatus
}

// statusOf is the VIP owner's view of an interface's flags: up when it is
// administratively up (IFF_UP) and operationally up (IFF_RUNNING: carrier,
// or a device without carrier reporting such as dummy).
func statusOf(up, running bool) LinkStatus {
	if up && running {
		return LinkUp
	}
	return LinkDown
}

// readLink reports the state of the interface; a missing interface is a
// Link with Status LinkMissing, not an error.
func readLink(k Kernel, ifname string) (Link, error) {
	l, err := k.LinkByName(ifname)
	if errors.Is(err, ErrNoInterface) {
		return Link{Name: ifname, Status: LinkMissing}, nil
	}
	if err != nil {
		return Link{}, err
	}
	return Link{Name: ifname, Status: statusOf(l.Up, l.Running)}, nil
}

// vipAddr is the address a VIP is added as: IPv6 without duplicate address
// detection (the VIP moves between directors: DAD would find the previous
// owner's advertisements and leave the address tentative, unusable, for a
// second or for good) and deprecated (preferred_lft 0: the director then
// never takes it as the source of its own connections, where RFC 6724's
// longest-prefix rule would for destinations closer to the VIP than to the
// director's address, e.g. a tunnel real in 2001:db8:100::/64 beside a VIP
// in 2001:db8:113::/64: its health checks and IPVS's tunnel headers would
// come from the VIP, which the real holds on lo, and be lost; verified in
// the lab VM, docs/tunnel.md), IPv4 with the label "<interface>:dsrd"
// where the name fits.
func vipAddr(v VIP) netkernel.Addr {
	a := netkernel.Addr{Link: v.Interface, Prefix: v.Prefix()}
	if v.Address.Is6() {
		a.Flags = netkernel.FlagNoDAD | netkernel.FlagDeprecated
	} else {
		a.Label = dsrdLabel(v.Interface)
	}
	return a
}

// dsrdLabel returns the IPv4 address label marking an address as dsrd's,
// "eth0:dsrd", or "" when it would not fit the kernel's 15 characters
// (labels must start with the interface name, by iproute2's convention).
func dsrdLabel(ifname string) string {
	const maxLabel = 15 // IFNAMSIZ - 1
	l := ifname + ":dsrd"
	if len(l) > maxLabel {
		return ""
	}
	return l
}
