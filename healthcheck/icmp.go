package healthcheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// icmpChecker sends one ICMP or ICMPv6 echo request and waits for the
// matching echo reply.
//
// It prefers unprivileged datagram ICMP sockets ("ping sockets", allowed by
// net.ipv4.ping_group_range, which also governs ICMPv6), where the kernel
// picks the identifier and delivers only this socket's replies. When those
// are refused it falls back to raw sockets (root or CAP_NET_RAW), on which
// every ICMP packet of the host arrives, including, on loopback, the request
// itself: a socket filter keeps only echo replies with this check's
// identifier (IPv4: BPF as iputils' ping does; IPv6: ICMP6_FILTER), and
// replies are matched in user space on type, identifier (raw only),
// sequence, payload and source address. Each check uses its own socket.
type icmpChecker struct {
	timeout time.Duration
	source  netip.Addr
	seq     atomic.Uint32
	// rawOnly is set once datagram ICMP sockets were refused, to not try
	// them again on every check.
	rawOnly atomic.Bool
}

func newICMPChecker(source netip.Addr, timeout time.Duration) *icmpChecker {
	return &icmpChecker{timeout: timeout, source: source}
}

// Check implements Checker.
func (c *icmpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	dst := t.Addr.Addr().Unmap()
	if _, err := localIP(c.source, dst); err != nil {
		return downResult(start, ReasonConfig, err.Error())
	}
	id := uint16(rand.N(1 << 16))
	conn, raw, err := c.listen(dst.Is4(), id)
	if err != nil {
		return errResult(ctx, start, "icmp socket", err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(deadline(ctx, c.timeout))
	stop := interruptOnDone(ctx, conn)
	defer stop()

	seq := int(uint16(c.seq.Add(1)))
	var payload [16]byte
	binary.BigEndian.PutUint64(payload[:8], rand.Uint64())
	copy(payload[8:], "dsrd-hc\x00")
	var (
		reqType  icmp.Type = ipv4.ICMPTypeEcho
		respType icmp.Type = ipv4.ICMPTypeEchoReply
		proto              = 1 // ICMP
	)
	if !dst.Is4() {
		reqType, respType, proto = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: int(id), Seq: seq, Data: payload[:]}}
	// For ICMPv6 the kernel computes the checksum (nil pseudo-header).
	wire, err := msg.Marshal(nil)
	if err != nil {
		return downResult(start, ReasonError, "marshal echo: "+err.Error())
	}
	var to net.Addr = &net.UDPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	if raw {
		to = &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	}
	if _, err := conn.WriteTo(wire, to); err != nil {
		return errResult(ctx, start, "send echo", err)
	}
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			return errResult(ctx, start, "waiting for echo reply", err)
		}
		if !peerIs(peer, dst) {
			continue
		}
		reply, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || reply.Type != respType {
			continue
		}
		echo, ok := reply.Body.(*icmp.Echo)
		// A datagram socket's identifier is chosen by the kernel.
		if !ok || echo.Seq != seq || (raw && echo.ID != int(id)) || !bytes.Equal(echo.Data, payload[:]) {
			continue
		}
		return upResult(start, "echo reply")
	}
}

// listen opens an ICMP socket for the family: a datagram one when allowed,
// a raw one otherwise. raw reports which.
func (c *icmpChecker) listen(v4 bool, id uint16) (conn *icmp.PacketConn, raw bool, err error) {
	src := ""
	if c.source.IsValid() {
		src = c.source.Unmap().String()
	}
	dgram, rawNet := "udp4", "ip4:icmp"
	if !v4 {
		dgram, rawNet = "udp6", "ip6:ipv6-icmp"
	}
	var dgramErr error
	if !c.rawOnly.Load() {
		conn, dgramErr = icmp.ListenPacket(dgram, src)
		if dgramErr == nil {
			return conn, false, nil
		}
		if errors.Is(dgramErr, syscall.EACCES) || errors.Is(dgramErr, syscall.EPERM) {
			c.rawOnly.Store(true)
		}
	}
	conn, err = icmp.ListenPacket(rawNet, src)
	if err != nil {
		if dgramErr != nil {
			return nil, false, fmt.Errorf("datagram icmp socket: %v (net.ipv4.ping_group_range); raw icmp socket: %w", dgramErr, err)
		}
		return nil, false, fmt.Errorf("raw icmp socket (datagram sockets refused before): %w", err)
	}
	if v4 {
		_ = conn.IPv4PacketConn().SetBPF(echoReplyFilter(id))
	} else {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		_ = conn.IPv6PacketConn().SetICMPFilter(&f)
	}
	return conn, true, nil
}

// echoReplyFilter is a BPF program for a raw IPv4 ICMP socket that accepts
// only echo replies with identifier id (the kernel runs it on the packet
// with its IP header, as in iputils' ping).
func echoReplyFilter(id uint16) []bpf.RawInstruction {
	prog, err := bpf.Assemble(echoReplyFilterProgram(id))
	if err != nil {
		// The program is constant but for id: it always assembles.
		panic(fmt.Sprintf("assembling the echo reply filter: %v", err))
	}
	return prog
}

// echoReplyFilterProgram is the program of echoReplyFilter.
func echoReplyFilterProgram(id uint16) []bpf.Instruction {
	return []bpf.Instruction{
		bpf.LoadMemShift{Off: 0},                              // X = IP header length
		bpf.LoadIndirect{Off: 0, Size: 1},                     // A = ICMP type
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipFalse: 3}, // echo reply?
		bpf.LoadIndirect{Off: 4, Size: 2},                     // A = identifier
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	}
}

// peerIs reports whether a packet's source address is want.
func peerIs(peer net.Addr, want netip.Addr) bool {
	var ip net.IP
	switch a := peer.(type) {
	case *net.IPAddr:
		ip = a.IP
	case *net.UDPAddr:
		ip = a.IP
	default:
		return false
	}
	got, ok := netip.AddrFromSlice(ip)
	return ok && got.Unmap() == want.WithZone("")
}
