package realserver

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// Kernel is the part of the network stack the agent reads and changes:
// interfaces, addresses, sysctls, one route lookup and change events. The
// Linux implementation speaks netlink and /proc/sys (NewLinuxKernel);
// FakeKernel keeps the same state in memory for tests without root.
//
// Implementations must be safe for concurrent use: the agent's loop and the
// status endpoint call them at the same time.
type Kernel interface {
	// Links lists every network interface.
	Links() ([]Link, error)
	// SetLinkUp sets the named interface administratively up.
	SetLinkUp(name string) error
	// Addrs lists every address of every interface, both families.
	Addrs() ([]Addr, error)
	// AddAddr adds an address to a.Link with a.Label (IPv4) and the
	// settable flags of a.Flags (FlagNoDAD). Adding an address that is
	// already there is not an error.
	AddAddr(a Addr) error
	// DelAddr removes an address from a.Link; for IPv4 only the one with
	// a.Label when set. Removing an absent address is not an error.
	DelAddr(a Addr) error
	// Sysctl reads /proc/sys/<path> ("net/ipv4/conf/all/arp_ignore"),
	// without the trailing newline; an error wrapping fs.ErrNotExist when
	// the entry does not exist (an interface that is not there).
	Sysctl(path string) (string, error)
	// SetSysctl writes value to /proc/sys/<path>.
	SetSysctl(path, value string) error
	// RouteInterface names the interface the kernel would use to send a
	// packet to dst: the reverse path strict rp_filter checks.
	RouteInterface(dst netip.Addr) (string, error)
	// Watch sends an Event for every address and link change until ctx
	// ends or the subscription fails, and returns why it stopped (never
	// nil). Its first event is EventSubscribed, once the subscription is
	// open: every change after it is reported. Changes while no Watch runs
	// are lost: a caller that (re)subscribes must re-read the state.
	Watch(ctx context.Context, events chan<- Event) error
}

// Link is a network interface.
type Link struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Up is the administrative state (IFF_UP).
	Up bool `json:"up"`
	// Running means the interface is up and has a carrier (IFF_RUNNING).
	Running bool `json:"running"`
	// NoARP is set on interfaces that neither answer ARP nor do neighbour
	// discovery (IFF_NOARP): lo, dummy, tunnels.
	NoARP bool `json:"noarp"`
	// Loopback marks lo (IFF_LOOPBACK).
	Loopback bool `json:"loopback"`
}

// Addr is an address on an interface.
type Addr struct {
	// Link names the interface.
	Link string `json:"link"`
	// Prefix is the address and its prefix length (203.0.113.10/32).
	Prefix netip.Prefix `json:"prefix"`
	// Label is the IPv4 address label ("lo:dsrd"); the kernel reports the
	// interface name for unlabelled IPv4 addresses and nothing for IPv6.
	Label string `json:"label,omitempty"`
	// Flags are the IFA_F_ flags the agent cares about.
	Flags AddrFlags `json:"flags,omitempty"`
}

// String formats the address the way ip(8) would add it.
func (a Addr) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s dev %s", a.Prefix, a.Link)
	if a.Label != "" && a.Label != a.Link {
		fmt.Fprintf(&b, " label %s", a.Label)
	}
	if a.Flags != 0 {
		fmt.Fprintf(&b, " %s", a.Flags)
	}
	return b.String()
}

// AddrFlags are the address flags the agent sets or diagnoses.
type AddrFlags uint32

// The address flags, a subset of the kernel's IFA_F_ flags.
const (
	// FlagNoDAD skips duplicate address detection (IFA_F_NODAD); the
	// agent sets it on IPv6 VIPs.
	FlagNoDAD AddrFlags = 1 << iota
	// FlagTentative marks an IPv6 address still in duplicate address
	// detection: the kernel does not accept traffic for it yet.
	FlagTentative
	// FlagDADFailed marks an IPv6 address that failed duplicate address
	// detection: the kernel never accepts traffic for it.
	FlagDADFailed
)

// String lists the flags as ip(8) prints them.
func (f AddrFlags) String() string {
	var parts []string
	if f&FlagNoDAD != 0 {
		parts = append(parts, "nodad")
	}
	if f&FlagTentative != 0 {
		parts = append(parts, "tentative")
	}
	if f&FlagDADFailed != 0 {
		parts = append(parts, "dadfailed")
	}
	return strings.Join(parts, " ")
}

// EventKind says what changed.
type EventKind int

// The kinds of events.
const (
	// EventSubscribed is Watch's first event: the subscription is open.
	EventSubscribed EventKind = iota + 1
	// EventAddrAdded is an address added to an interface.
	EventAddrAdded
	// EventAddrRemoved is an address removed from an interface.
	EventAddrRemoved
	// EventLinkChanged is an interface added or changed (up, down, flags).
	EventLinkChanged
	// EventLinkRemoved is an interface removed.
	EventLinkRemoved
)

// String names the kind for logs.
func (k EventKind) String() string {
	switch k {
	case EventSubscribed:
		return "subscribed"
	case EventAddrAdded:
		return "addr-added"
	case EventAddrRemoved:
		return "addr-removed"
	case EventLinkChanged:
		return "link-changed"
	case EventLinkRemoved:
		return "link-removed"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is one change reported by Kernel.Watch.
type Event struct {
	Kind EventKind
	// Link names the interface; "if<index>" when the name could not be
	// resolved (a link already gone).
	Link string
	// Prefix is the address of an address event.
	Prefix netip.Prefix
	// Up is the administrative state of a link event.
	Up bool
}

// sysctlName turns a /proc/sys path into the dotted name sysctl(8) prints
// ("net/ipv4/conf/eth0.100/arp_ignore" -> "net.ipv4.conf.eth0/100.arp_ignore").
func sysctlName(path string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, path)
}
