package healthcheck

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/testutil"
)

// tcpServer serves each connection with handle until the test ends.
func tcpServer(t *testing.T, host string, handle func(net.Conn)) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(c) })
		}
	})
	return ln.Addr()
}

// silent holds a connection open, answering nothing, until the peer closes.
func silent(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func TestTCP(t *testing.T) {
	closeAtOnce := tcpServer(t, "127.0.0.1", func(net.Conn) {})
	pingPong := tcpServer(t, "127.0.0.1", func(c net.Conn) {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		if strings.TrimSpace(line) == "PING" {
			_, _ = io.WriteString(c, "+PONG\r\n")
		} else {
			_, _ = io.WriteString(c, "-ERR unknown\r\n")
		}
	})
	mute := tcpServer(t, "127.0.0.1", silent)

	tests := []struct {
		name   string
		spec   Spec
		addr   string
		up     bool
		reason Reason
		msg    string
	}{
		{"connect", Spec{Probe: TCP{}}, closeAtOnce.String(), true, ReasonOK, "connected"},
		{"refused", Spec{Probe: TCP{}}, closedPort(t, "tcp", "127.0.0.1"), false, ReasonRefused, "refused"},
		{"send and expect", Spec{Probe: TCP{Send: "PING\r\n", Expect: "+PONG"}}, pingPong.String(), true, ReasonOK, "+PONG"},
		{"unexpected reply", Spec{Probe: TCP{Send: "HELLO\r\n", Expect: "+PONG"}}, pingPong.String(), false, ReasonUnexpectedReply, "-ERR"},
		{"closed without reply", Spec{Probe: TCP{Send: "PING\r\n", Expect: "+PONG"}}, closeAtOnce.String(), false, ReasonConnection, ""},
		{"never answers", Spec{Params: Params{Timeout: ms(200)}, Probe: TCP{Send: "PING\r\n", Expect: "+PONG"}}, mute.String(), false, ReasonTimeout, "+PONG"},
		{"source address", Spec{Source: netip.MustParseAddr("127.0.0.1"), Probe: TCP{}}, closeAtOnce.String(), true, ReasonOK, ""},
		{"source of another family", Spec{Source: netip.MustParseAddr("::1"), Probe: TCP{}}, closeAtOnce.String(), false, ReasonConfig, "address families"},
		{"no port", Spec{Probe: TCP{}}, "127.0.0.1:0", false, ReasonConfig, "no port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCheck(t, mustChecker(t, tt.spec), targetOf(t, tt.addr))
			if tt.reason == ReasonConnection && !r.Up && (r.Reason == ReasonConnection || r.Reason == ReasonUnexpectedReply) {
				return // EOF or reset, depending on timing
			}
			want(t, r, tt.up, tt.reason, tt.msg)
		})
	}
}

func TestTCPIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback address (::1) in this sandbox")
	}
	addr := tcpServer(t, "::1", func(net.Conn) {})
	want(t, runCheck(t, mustChecker(t, Spec{Probe: TCP{}}), targetOf(t, addr)), true, ReasonOK, "")
	want(t, runCheck(t, mustChecker(t, Spec{Probe: TCP{}}), targetOf(t, closedPort(t, "tcp", "::1"))), false, ReasonRefused, "")
}

// fullListener returns the address of a loopback listener whose accept
// queue is full: the kernel drops new SYNs, so a connect stays in progress
// until the listener's accept drains the queue.
func fullListener(t *testing.T) (addr string, accept func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil { // room for one connection
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String()
	filler, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	t.Cleanup(func() { _ = filler.Close(); _ = unix.Close(fd) })
	return addr, func() {
		once.Do(func() {
			for range 2 { // the filler, then the probe once its SYN is retransmitted
				nfd, _, err := unix.Accept(fd)
				if err != nil {
					return
				}
				_ = unix.Close(nfd)
			}
		})
	}
}

func TestTCPHandshakeInProgress(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		addr, _ := fullListener(t)
		c := mustChecker(t, Spec{Params: Params{Timeout: ms(300)}, Probe: TCP{}})
		want(t, runCheck(t, c, targetOf(t, addr)), false, ReasonTimeout, "connect")
	})
	t.Run("completes in the poller", func(t *testing.T) {
		addr, accept := fullListener(t)
		c := mustChecker(t, Spec{Params: Params{Timeout: ms(8000)}, Probe: TCP{}})
		done := make(chan Result, 1)
		go func() { done <- c.Check(t.Context(), targetOf(t, addr)) }()
		// Once the check's SYN was dropped, draining the queue lets the
		// retransmitted SYN (about 1 s later) in: the check must then see
		// the connection complete in the poller.
		testutil.WaitFor(t, checkBound, "a connection in SYN_SENT", func() (bool, string) { return synSent(t, addr), "not yet" })
		go accept()
		select {
		case r := <-done:
			want(t, r, true, ReasonOK, "connected")
		case <-time.After(checkBound):
			t.Fatal("check did not return")
		}
	})
	t.Run("canceled", func(t *testing.T) {
		addr, _ := fullListener(t)
		c := mustChecker(t, Spec{Params: Params{Timeout: ms(8000)}, Probe: TCP{}})
		ctx, cancel := contextWithCancel(t)
		done := make(chan Result, 1)
		go func() { done <- c.Check(ctx, targetOf(t, addr)) }()
		cancel()
		select {
		case r := <-done:
			want(t, r, false, ReasonCanceled, "")
		case <-time.After(checkBound):
			t.Fatal("check did not return when canceled")
		}
	})
}

// synSent reports whether a socket of this host is in SYN_SENT to addr,
// from /proc/net/tcp.
func synSent(t *testing.T, addr string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("cannot read /proc/net/tcp: %v", err)
	}
	port := fmt.Sprintf(":%04X", netip.MustParseAddrPort(addr).Port())
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local_address rem_address st ...; 02 is SYN_SENT.
		if len(f) > 3 && strings.HasSuffix(f[2], port) && f[3] == "02" {
			return true
		}
	}
	return false
}
