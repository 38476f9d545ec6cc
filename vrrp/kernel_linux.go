package vrrp

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netns"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// Linux is the Kernel over netlink (netkernel.Linux), and the sender of
// announcements (Announce), in one network namespace. It is safe for
// concurrent use.
type Linux struct {
	*netkernel.Linux
}

// NewLinux returns a Linux working in the current network namespace.
func NewLinux() (*Linux, error) {
	k, err := netkernel.New()
	if err != nil {
		return nil, err
	}
	return &Linux{k}, nil
}

// NewLinuxAt returns a Linux working in the network namespace ns,
// whatever the namespace of the calling goroutine. It keeps its own
// duplicate of ns: the caller may close its handle.
func NewLinuxAt(ns netns.NsHandle) (*Linux, error) {
	k, err := netkernel.NewAt(ns)
	if err != nil {
		return nil, err
	}
	return &Linux{k}, nil
}

// Announce implements AnnounceFunc: gratuitous ARP (request and reply
// forms) for an IPv4 addr, an unsolicited neighbour advertisement for an
// IPv6 one, sent on ifname in l's namespace.
func (l *Linux) Announce(ctx context.Context, ifname string, addr netip.Addr) error {
	ifi, err := l.Interface(ifname)
	if err != nil {
		return fmt.Errorf("announce %s: %w", addr, err)
	}
	// The sockets are opened in l's namespace, where ifi's index is valid.
	return l.Run(func() error {
		if addr.Is4() {
			return sendGARP(ctx, ifi, addr)
		}
		return sendUnsolicitedNA(ctx, ifi, addr)
	})
}
