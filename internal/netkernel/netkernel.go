// Package netkernel is the one seam between dsrd and the kernel's links,
// addresses and sysctls of a network namespace: the VIP owner (vrrp) and
// the realserver agent both go through it. [Linux] speaks netlink and
// /proc/sys; [Fake] keeps the same state in memory, with the same
// semantics, for tests without root. One contract test suite runs against
// both (the fake as a unit test, the kernel in a throwaway namespace).
//
// The consumers declare the small interface they need themselves; this
// package declares none.
//
// Conventions shared by both implementations:
//   - Sysctls are named as sysctl(8) prints them, dotted:
//     "net.ipv4.conf.lo.arp_ignore"; a dot inside an interface name is
//     written as a slash ("net.ipv4.conf.eth0/100.arp_ignore").
//   - A missing interface is ErrNoInterface (which also matches
//     fs.ErrNotExist); a missing sysctl matches fs.ErrNotExist.
//   - Adding an address that is there is not an error; deleting one that is
//     not there, or from an interface that is not there, is not an error.
//   - Watch reports link and address changes in one stream, starting with
//     EventSubscribed.
package netkernel

import (
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
)

// ErrNoInterface reports that a named interface does not exist. It also
// matches fs.ErrNotExist.
var ErrNoInterface error = noInterfaceError{}

type noInterfaceError struct{}

func (noInterfaceError) Error() string        { return "interface not found" }
func (noInterfaceError) Is(target error) bool { return target == fs.ErrNotExist }

// Link is a network interface.
type Link struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// Up is the administrative state (IFF_UP).
	Up bool `json:"up"`
	// Running means the interface is up and has a carrier, or is a device
	// without carrier reporting such as dummy (IFF_RUNNING).
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
	// Given to DelAddr, it limits the deletion to the address with that
	// label; empty deletes the address whatever its label.
	Label string `json:"label,omitempty"`
	// Flags are the IFA_F_ flags dsrd cares about.
	Flags AddrFlags `json:"flags,omitempty"`
	// Scope is the address's scope. Given to AddAddr it is used for IPv4;
	// the kernel derives an IPv6 address's scope from the address.
	Scope AddrScope `json:"scope,omitempty"`
}

// AddrScope is an address's scope (the kernel's RT_SCOPE_ values).
type AddrScope uint8

// The scopes. The zero value is global, the kernel's default.
const (
	// ScopeGlobal: valid everywhere (RT_SCOPE_UNIVERSE).
	ScopeGlobal AddrScope = 0
	// ScopeLink: valid on the link only (RT_SCOPE_LINK): fe80::/10.
	ScopeLink AddrScope = 253
	// ScopeHost: valid inside the host only (RT_SCOPE_HOST): 127.0.0.1, ::1.
	ScopeHost AddrScope = 254
)

// String names the scope as ip(8) prints it.
func (s AddrScope) String() string {
	switch s {
	case ScopeGlobal:
		return "global"
	case ScopeLink:
		return "link"
	case ScopeHost:
		return "host"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// ipv6Scope is the scope the kernel gives an IPv6 address
// (ipv6_addr_scope): host for ::1, link for fe80::/10, global otherwise.
func ipv6Scope(a netip.Addr) AddrScope {
	switch {
	case a.IsLoopback():
		return ScopeHost
	case a.IsLinkLocalUnicast():
		return ScopeLink
	}
	return ScopeGlobal
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

// AddrFlags are the address flags dsrd sets or diagnoses.
type AddrFlags uint32

// The address flags, a subset of the kernel's IFA_F_ flags.
const (
	// FlagNoDAD skips duplicate address detection (IFA_F_NODAD).
	FlagNoDAD AddrFlags = 1 << iota
	// FlagTentative marks an IPv6 address still in duplicate address
	// detection: the kernel does not accept traffic for it yet.
	FlagTentative
	// FlagDADFailed marks an IPv6 address that failed duplicate address
	// detection: the kernel never accepts traffic for it.
	FlagDADFailed
	// FlagDeprecated marks an IPv6 address whose preferred lifetime is 0
	// (IFA_F_DEPRECATED): it accepts traffic, but the kernel does not
	// choose it as the source of new connections while another address
	// can be (RFC 6724 rule 3). Settable: AddAddr adds the address with
	// preferred_lft 0 and valid_lft forever.
	FlagDeprecated
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
	if f&FlagDeprecated != 0 {
		parts = append(parts, "preferred_lft 0")
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

// Event is one change reported by Watch.
type Event struct {
	Kind EventKind
	// Link names the interface; "if<index>" when the name could not be
	// resolved (a link already gone).
	Link string
	// Prefix is the address of an address event.
	Prefix netip.Prefix
	// Up and Running are the IFF_UP and IFF_RUNNING state of a link event.
	Up, Running bool
}

// ConfSysctl is the dotted name of the per-interface IPv4 setting
// net.ipv4.conf.<iface>.<name>; iface may be "all" or "default".
func ConfSysctl(iface, name string) string {
	return "net.ipv4.conf." + strings.ReplaceAll(iface, ".", "/") + "." + name
}

// SysctlPath turns a dotted sysctl name into its path under /proc/sys
// ("net.ipv4.conf.eth0/100.arp_ignore" -> "net/ipv4/conf/eth0.100/arp_ignore").
// SysctlName is its inverse.
func SysctlPath(name string) string { return swapDotSlash(name) }

// SysctlName turns a path under /proc/sys into the dotted name sysctl(8)
// prints; the inverse of SysctlPath.
func SysctlName(path string) string { return swapDotSlash(path) }

func swapDotSlash(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, s)
}

// checkSysctlName refuses names that are not a plain dotted name: empty,
// with an empty component, or one that would climb out of /proc/sys.
func checkSysctlName(name string) error {
	for _, part := range strings.Split(SysctlPath(name), "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("invalid sysctl name %q", name)
		}
	}
	return nil
}
