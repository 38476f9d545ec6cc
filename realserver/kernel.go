package realserver

import (
	"context"
	"net/netip"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// Kernel is the part of the network stack the agent reads and changes:
// interfaces, addresses, sysctls, one route lookup and change events.
// netkernel.Linux is the real one (over netlink and /proc/sys),
// netkernel.Fake keeps the same state in memory for tests without root.
//
// Implementations must be safe for concurrent use: the agent's loop and the
// status endpoint call them at the same time.
type Kernel interface {
	// Links lists every network interface.
	Links() ([]Link, error)
	// SetLinkUp sets the named interface administratively up.
	SetLinkUp(name string) error
	// Addrs lists the addresses of the named interface, or of every
	// interface when link is empty, both families.
	Addrs(link string) ([]Addr, error)
	// AddAddr adds an address to a.Link with a.Label (IPv4) and the
	// settable flags of a.Flags (FlagNoDAD). Adding an address that is
	// already there is not an error.
	AddAddr(a Addr) error
	// DelAddr removes an address from a.Link; for IPv4 only the one with
	// a.Label when set. Removing an absent address is not an error.
	DelAddr(a Addr) error
	// Sysctl reads a sysctl by its dotted name
	// ("net.ipv4.conf.all.arp_ignore"); an error wrapping fs.ErrNotExist
	// when the entry does not exist (an interface that is not there).
	Sysctl(name string) (string, error)
	// SetSysctl writes a sysctl by its dotted name.
	SetSysctl(name, value string) error
	// RouteInterface names the interface the kernel would use to send a
	// packet to dst: the reverse path strict rp_filter checks.
	RouteInterface(dst netip.Addr) (string, error)
	// Watch sends an Event for every address and link change until ctx
	// ends or the subscription fails, and returns why it stopped (never
	// nil). Its first event is netkernel.EventSubscribed, once the
	// subscription is open: every change after it is reported. Changes
	// while no Watch runs are lost: a caller that (re)subscribes must
	// re-read the state.
	Watch(ctx context.Context, events chan<- Event) error
}

// The agent speaks of the kernel's links, addresses and events in
// netkernel's terms.
type (
	// Link is a network interface.
	Link = netkernel.Link
	// Addr is an address on an interface.
	Addr = netkernel.Addr
	// Event is one change reported by Kernel.Watch.
	Event = netkernel.Event
)
