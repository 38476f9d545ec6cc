package healthcheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// tcpChecker connects to the target and, optionally, sends bytes and
// expects a substring in the reply. It closes with a reset (SO_LINGER 0):
// at thousands of checks a second a normal close would leave the director
// with tens of thousands of sockets in TIME_WAIT (60 s each on Linux), as
// HAProxy's checks avoid the same way. Backends may log the reset.
type tcpChecker struct {
	timeout time.Duration
	from    origin
	send    []byte
	expect  []byte
	proxy   ProxyProtocol
}

func newTCPChecker(p TCP, from origin, timeout time.Duration) *tcpChecker {
	return &tcpChecker{
		timeout: timeout,
		from:    from,
		send:    []byte(p.Send),
		expect:  []byte(p.Expect),
		proxy:   p.Proxy,
	}
}

// Check implements Checker.
func (c *tcpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if t.Addr.Port() == 0 {
		return downResult(start, ReasonConfig, "no port to check: set the health check's port")
	}
	if len(c.send) == 0 && len(c.expect) == 0 && c.proxy == ProxyNone && t.Addr.Addr().Zone() == "" {
		if err := connectProbe(ctx, c.from, t.Addr); err != nil {
			return errResult(ctx, start, "connect", err)
		}
		return upResult(start, "connected")
	}
	conn, err := dialTCP(ctx, c.from, t.Addr)
	if err != nil {
		return errResult(ctx, start, "connect", err)
	}
	defer func() {
		_ = conn.SetLinger(0)
		_ = conn.Close()
	}()
	if err := sendProxyHeader(conn, c.proxy, deadline(ctx, DefaultTimeout)); err != nil {
		return errResult(ctx, start, "send", err)
	}
	if len(c.send) == 0 && len(c.expect) == 0 {
		if c.proxy != ProxyNone {
			return upResult(start, "connected, PROXY "+string(c.proxy)+" header sent")
		}
		return upResult(start, "connected")
	}
	return exchangeStream(ctx, start, conn, c.send, c.expect)
}

// connectProbe connects to addr from its origin and closes the
// connection at once with a reset, bounded by ctx.
//
// It is the plain tcp check's fast path, on raw system calls rather than
// net.Dialer, which sets options a probe does not need (TCP_NODELAY,
// keep-alive), asks for both addresses and registers every socket with the
// runtime's poller. Here a handshake that completed within connect (on
// loopback and close hosts the kernel runs it in the call) costs socket,
// connect, connect again (to learn the outcome), setsockopt and close, and
// no goroutine switch;
// only a handshake still in progress waits in the runtime's poller (an
// os.File of the socket), like any Go I/O.
func connectProbe(ctx context.Context, from origin, addr netip.AddrPort) error {
	ip := addr.Addr().Unmap()
	src, err := from.local(ip)
	if err != nil {
		return err
	}
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	if err := from.setMark(fd); err != nil {
		_ = unix.Close(fd)
		return err
	}
	if src != nil {
		srcAddr, _ := netip.AddrFromSlice(src)
		if err := unix.Bind(fd, sockaddr(srcAddr, 0)); err != nil {
			_ = unix.Close(fd)
			return os.NewSyscallError("bind", err)
		}
	}
	sa := sockaddr(ip, addr.Port())
	switch err := unix.Connect(fd, sa); err {
	case nil:
		resetClose(fd)
		return nil
	case unix.EINPROGRESS:
	default:
		_ = unix.Close(fd)
		return os.NewSyscallError("connect", err)
	}
	if done, err := connectDone(fd, sa); done {
		resetClose(fd)
		return err
	}

	// Still in progress: wait for writability in the runtime's poller.
	f := os.NewFile(uintptr(fd), "tcp-check") // owns fd from here
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("raw connection: %w", err)
	}
	defer func() {
		_ = rc.Control(func(fd uintptr) { resetLinger(int(fd)) })
		_ = f.Close()
	}()
	_ = f.SetWriteDeadline(deadline(ctx, DefaultTimeout))
	stop := interruptOnDone(ctx, f)
	defer stop()
	var connErr error
	if err := rc.Write(func(fd uintptr) bool {
		var done bool
		done, connErr = connectDone(int(fd), sa)
		return done
	}); err != nil {
		return err
	}
	return connErr
}

// connectDone reports whether the connection attempt on fd has ended, and
// how, without waiting: on Linux a second connect on a non-blocking socket
// answers in one system call, EALREADY while the handshake is in progress,
// 0 once connected (EISCONN if asked again) and the socket's error when the
// attempt failed.
func connectDone(fd int, sa unix.Sockaddr) (bool, error) {
	switch err := unix.Connect(fd, sa); err {
	case nil, unix.EISCONN:
		return true, nil
	case unix.EALREADY, unix.EINPROGRESS, unix.EINTR:
		return false, nil
	default:
		return true, os.NewSyscallError("connect", err)
	}
}

// resetLinger makes closing fd send a reset.
func resetLinger(fd int) {
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
}

// resetClose closes fd with a reset.
func resetClose(fd int) {
	resetLinger(fd)
	_ = unix.Close(fd)
}

// sockaddr converts an address and port to a unix.Sockaddr.
func sockaddr(ip netip.Addr, port uint16) unix.Sockaddr {
	if ip.Is4() {
		return &unix.SockaddrInet4{Addr: ip.As4(), Port: int(port)}
	}
	return &unix.SockaddrInet6{Addr: ip.As16(), Port: int(port)}
}

// dialTCP connects to addr from its origin, bounded by ctx. TCP
// keep-alive is off: the connection lives for one check only, and turning it
// on costs four system calls a check.
func dialTCP(ctx context.Context, from origin, addr netip.AddrPort) (*net.TCPConn, error) {
	d := net.Dialer{KeepAlive: -1, Control: from.control}
	ip, err := from.local(addr.Addr())
	if err != nil {
		return nil, err
	}
	if ip != nil {
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	return conn.(*net.TCPConn), nil
}

// exchangeStream writes send to conn and, when expect is set, reads until
// expect is seen, the peer closes, maxBody bytes were read or ctx ends.
func exchangeStream(ctx context.Context, start time.Time, conn net.Conn, send, expect []byte) Result {
	_ = conn.SetDeadline(deadline(ctx, DefaultTimeout))
	stop := interruptOnDone(ctx, conn)
	defer stop()
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			return errResult(ctx, start, "send", err)
		}
	}
	if len(expect) == 0 {
		return upResult(start, "sent "+strconv.Itoa(len(send))+" bytes")
	}
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			if cap(buf) >= maxBody {
				return downResult(start, ReasonUnexpectedReply,
					fmt.Sprintf("%q not in the first %d bytes of the reply", expect, len(buf)))
			}
			buf = append(buf, make([]byte, min(cap(buf), maxBody-cap(buf)))...)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if bytes.Contains(buf, expect) {
			return upResult(start, fmt.Sprintf("got %q", expect))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return downResult(start, ReasonUnexpectedReply,
					fmt.Sprintf("%q not in the reply (%d bytes): %q", expect, len(buf), buf[:min(len(buf), 64)]))
			}
			return errResult(ctx, start, fmt.Sprintf("waiting for %q", expect), err)
		}
	}
}
