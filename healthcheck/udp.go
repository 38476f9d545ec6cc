package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// udpChecker sends a datagram from a connected UDP socket and waits for a
// reply (containing expect, when set). Because the socket is connected,
// an ICMP port unreachable from the target makes the read fail with
// ECONNREFUSED: that is a down with ReasonRefused. With no_reply_is_up,
// silence until the timeout counts as up, so such a check always lasts its
// whole timeout and holds a worker that long.
type udpChecker struct {
	timeout     time.Duration
	from        origin
	send        []byte
	expect      []byte
	noReplyIsUp bool
	// buffers recycles 64 KiB reply buffers across checks.
	buffers sync.Pool
}

func newUDPChecker(p UDP, from origin, timeout time.Duration) *udpChecker {
	return &udpChecker{
		timeout:     timeout,
		from:        from,
		send:        []byte(p.Send),
		expect:      []byte(p.Expect),
		noReplyIsUp: p.NoReplyIsUp,
	}
}

// Check implements Checker.
func (c *udpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if t.Addr.Port() == 0 {
		return downResult(start, ReasonConfig, "no port to check: set the health check's port")
	}
	conn, err := dialUDP(ctx, c.from, t.Addr)
	if err != nil {
		return errResult(ctx, start, "socket", err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(deadline(ctx, c.timeout))
	stop := interruptOnDone(ctx, conn)
	defer stop()

	if _, err := conn.Write(c.send); err != nil {
		return errResult(ctx, start, "send", err)
	}
	buf, _ := c.buffers.Get().(*[maxBody]byte)
	if buf == nil {
		buf = new([maxBody]byte)
	}
	defer c.buffers.Put(buf)
	n, err := conn.Read(buf[:])
	switch {
	case err == nil:
	case errors.Is(err, syscall.ECONNREFUSED):
		return downResult(start, ReasonRefused, "ICMP port unreachable")
	case c.noReplyIsUp && classify(ctx, err) == ReasonTimeout:
		// Only a timeout is silence: a canceled check proves nothing.
		return Result{Up: true, Reason: ReasonNoReply,
			Message: "no reply and no ICMP port unreachable", Latency: time.Since(start)}
	default:
		return errResult(ctx, start, "waiting for a reply", err)
	}
	if len(c.expect) > 0 && !bytes.Contains(buf[:n], c.expect) {
		return downResult(start, ReasonUnexpectedReply,
			fmt.Sprintf("%q not in the reply (%d bytes): %q", c.expect, n, buf[:min(n, 64)]))
	}
	return upResult(start, fmt.Sprintf("reply of %d bytes", n))
}

// dialUDP returns a UDP socket connected to addr from its origin.
func dialUDP(ctx context.Context, from origin, addr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Control: from.control}
	ip, err := from.local(addr.Addr())
	if err != nil {
		return nil, err
	}
	if ip != nil {
		d.LocalAddr = &net.UDPAddr{IP: ip}
	}
	return d.DialContext(ctx, "udp", addr.String())
}
