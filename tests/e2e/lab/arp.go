package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// ARP field values (RFC 826) for Ethernet and IPv4.
const (
	arpHardwareEthernet = 1
	arpOpRequest        = 1
	arpOpReply          = 2
	arpPacketLen        = 28
)

// ARPProbe broadcasts one ARP request for target from h's eth0, as h (its
// segment address and MAC), and returns the MACs of every host that answered
// within wait, sorted. Unlike the kernel's neighbour table, which keeps the
// first answer, it shows every host that claims target.
func ARPProbe(h Host, target netip.Addr, wait time.Duration) ([]string, error) {
	if !target.Is4() {
		return nil, fmt.Errorf("arp probe: %s is not IPv4", target)
	}
	var macs []string
	err := Do(h, func() error {
		var err error
		macs, err = arpProbe(h, target, wait)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("arp probe for %s from %s: %w", target, h, err)
	}
	return macs, nil
}

// arpProbe does ARPProbe's work in the current thread's network namespace.
func arpProbe(h Host, target netip.Addr, wait time.Duration) ([]string, error) {
	ifi, err := net.InterfaceByName("eth0")
	if err != nil {
		return nil, err
	}
	proto := htons(unix.ETH_P_ARP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
	if err != nil {
		return nil, fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("bind packet socket: %w", err)
	}
	req := ARPRequest(ifi.HardwareAddr, h.IPv4(), target)
	bcast := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	if err := unix.Sendto(fd, req, 0, bcast); err != nil {
		return nil, fmt.Errorf("send arp request: %w", err)
	}

	var macs []string
	deadline := time.Now().Add(wait)
	buf := make([]byte, 128)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return nil, fmt.Errorf("set receive timeout: %w", err)
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		if mac, ok := ARPReplyFrom(buf[:n], target); ok && !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	slices.Sort(macs)
	return macs, nil
}

// ARPRequest builds the ARP payload of a request for target from sender.
func ARPRequest(senderMAC net.HardwareAddr, sender, target netip.Addr) []byte {
	b := make([]byte, arpPacketLen)
	binary.BigEndian.PutUint16(b[0:], arpHardwareEthernet)
	binary.BigEndian.PutUint16(b[2:], unix.ETH_P_IP)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], arpOpRequest)
	copy(b[8:14], senderMAC)
	s4, t4 := sender.As4(), target.As4()
	copy(b[14:18], s4[:])
	// Target hardware address b[18:24] stays zero: it is what is asked.
	copy(b[24:28], t4[:])
	return b
}

// ARPReplyFrom returns the sender MAC of b if b is an ARP reply for target.
func ARPReplyFrom(b []byte, target netip.Addr) (string, bool) {
	if len(b) < arpPacketLen ||
		binary.BigEndian.Uint16(b[0:]) != arpHardwareEthernet ||
		binary.BigEndian.Uint16(b[2:]) != unix.ETH_P_IP ||
		b[4] != 6 || b[5] != 4 ||
		binary.BigEndian.Uint16(b[6:]) != arpOpReply {
		return "", false
	}
	if netip.AddrFrom4([4]byte(b[14:18])) != target {
		return "", false
	}
	return net.HardwareAddr(b[8:14]).String(), true
}

// htons converts a 16-bit value to network byte order, as AF_PACKET wants its
// protocol numbers.
func htons(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}
