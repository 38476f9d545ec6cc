package vrrp

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// sendUnsolicitedNA sends one unsolicited neighbour advertisement for vip
// out of ifi (RFC 4861 7.2.6): to all nodes (ff02::1), hop limit 255,
// solicited flag clear (a receiver drops a solicited one sent to a
// multicast address), override flag set (so receivers replace the MAC
// they have), with the target link-layer address option carrying ours.
// It is sent from vip itself, which is on ifi (added without DAD, so never
// tentative). A receiving Linux updates an existing neighbour entry; it
// creates a missing one only with accept_untracked_na=1 (or 2 for an
// address in a subnet of the receiving interface), Linux 5.19+.
func sendUnsolicitedNA(ctx context.Context, ifi *net.Interface, vip netip.Addr) error {
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("neighbour advertisement for %s on %s: %w", vip, ifi.Name, ErrNoHardwareAddress)
	}
	// ndp.Listen sets the hop limit of unicast and multicast to 255.
	c, _, err := ndp.Listen(ifi, ndp.Addr(vip.String()))
	if err != nil {
		return fmt.Errorf("neighbour advertisement for %s on %s: open icmpv6 socket: %w", vip, ifi.Name, err)
	}
	defer c.Close()
	// Send only: let nothing queue up on the socket.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := c.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("neighbour advertisement for %s on %s: %w", vip, ifi.Name, err)
	}
	if d, ok := ctx.Deadline(); ok {
		if err := c.SetWriteDeadline(d); err != nil {
			return fmt.Errorf("neighbour advertisement for %s on %s: %w", vip, ifi.Name, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("neighbour advertisement for %s on %s: %w", vip, ifi.Name, err)
	}
	if err := c.WriteTo(unsolicitedNA(ifi.HardwareAddr, vip), nil, netip.IPv6LinkLocalAllNodes()); err != nil {
		return fmt.Errorf("neighbour advertisement for %s on %s: %w", vip, ifi.Name, err)
	}
	return nil
}

// unsolicitedNA builds the advertisement sendUnsolicitedNA sends.
func unsolicitedNA(mac net.HardwareAddr, vip netip.Addr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Solicited:     false,
		Override:      true,
		TargetAddress: vip,
		Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac},
		},
	}
}
