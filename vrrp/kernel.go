package vrrp

import (
	"errors"
	"net/netip"
	"strconv"
)

// ErrNoInterface reports that a named interface does not exist.
var ErrNoInterface = errors.New("interface not found")

// Kernel is what the VIP owner needs from the kernel. Implementations must
// be safe for concurrent use. [Linux] is the real one, [FakeKernel] the one
// for tests.
type Kernel interface {
	// AddAddr adds p to the interface as a dsrd address: IPv6 without
	// duplicate address detection (nodad), IPv4 with the label
	// "<interface>:dsrd" where the name fits. An address already present
	// is not an error. A missing interface is reported with ErrNoInterface.
	AddAddr(ifname string, p netip.Prefix) error
	// DelAddr removes p from the interface. An address or interface that
	// is not there is not an error.
	DelAddr(ifname string, p netip.Prefix) error
	// Addrs lists the addresses of the interface, all families. A missing
	// interface is reported with ErrNoInterface.
	Addrs(ifname string) ([]netip.Prefix, error)
	// Link reports the state of the interface; a missing interface is a
	// Link with Status LinkMissing, not an error.
	Link(ifname string) (Link, error)
	// SubscribeLinks delivers changes of every link until done is closed or
	// the subscription fails (onError, when not nil, is told why); then
	// the returned channel is closed. The caller must drain the channel
	// until it is closed.
	SubscribeLinks(done <-chan struct{}, onError func(error)) (<-chan Link, error)
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
