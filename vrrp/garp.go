package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
)

// ErrNoIPv4Address reports an interface without any IPv4 address:
// github.com/mdlayher/arp cannot open a client on it. The VIP itself,
// once added, is enough, so this means the VIP is not (or no longer) on
// the interface.
var ErrNoIPv4Address = errors.New("interface has no IPv4 address (is the vip on it?)")

// ErrNoHardwareAddress reports an interface without a link-layer address
// (a tunnel, a point-to-point link): there is no neighbour to update.
var ErrNoHardwareAddress = errors.New("interface has no link-layer address")

// sendGARP broadcasts two gratuitous ARP packets for vip out of ifi, so
// that every form of neighbour cache update is covered:
//
//   - the request form (RFC 5227 "ARP announcement"): op request,
//     sender = target = vip, sender MAC = ours, target MAC 00:00:00:00:00:00;
//   - the reply form (RFC 5944 4.6): op reply, sender = target = vip,
//     sender MAC = target MAC = ours. Linux treats a reply as gratuitous
//     only when the target MAC equals the sender MAC; some other stacks
//     and switches only learn from replies.
//
// Both are sent to the Ethernet broadcast address. A receiving Linux
// updates an existing neighbour entry from either (with arp_accept=0, the
// default); it creates a missing one only with arp_accept=1 (or 2 for an
// address in a subnet of the receiving interface, Linux 6.0+), and ignores
// both with drop_gratuitous_arp=1.
func sendGARP(ctx context.Context, ifi *net.Interface, vip netip.Addr) error {
	if len(ifi.HardwareAddr) != 6 {
		return fmt.Errorf("gratuitous arp for %s on %s: %w", vip, ifi.Name, ErrNoHardwareAddress)
	}
	// arp.Dial fails on an interface without an IPv4 address, with an
	// unexported error: check first to say it clearly.
	has4, err := hasIPv4(ifi)
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s on %s: %w", vip, ifi.Name, err)
	}
	if !has4 {
		return fmt.Errorf("gratuitous arp for %s on %s: %w", vip, ifi.Name, ErrNoIPv4Address)
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s on %s: open arp socket: %w", vip, ifi.Name, err)
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		if err := c.SetWriteDeadline(d); err != nil {
			return fmt.Errorf("gratuitous arp for %s on %s: %w", vip, ifi.Name, err)
		}
	}
	packets, err := garpPackets(ifi.HardwareAddr, vip)
	if err != nil {
		return fmt.Errorf("gratuitous arp for %s on %s: %w", vip, ifi.Name, err)
	}
	for _, p := range packets {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gratuitous arp for %s on %s: %w", vip, ifi.Name, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return fmt.Errorf("gratuitous arp %s for %s on %s: %w", p.Operation, vip, ifi.Name, err)
		}
	}
	return nil
}

// garpPackets builds the request and reply forms of a gratuitous ARP.
func garpPackets(mac net.HardwareAddr, vip netip.Addr) ([]*arp.Packet, error) {
	zero := make(net.HardwareAddr, len(mac))
	req, err := arp.NewPacket(arp.OperationRequest, mac, vip, zero, vip)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	rep, err := arp.NewPacket(arp.OperationReply, mac, vip, mac, vip)
	if err != nil {
		return nil, fmt.Errorf("build reply: %w", err)
	}
	return []*arp.Packet{req, rep}, nil
}

func hasIPv4(ifi *net.Interface) (bool, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return false, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return true, nil
		}
	}
	return false, nil
}
