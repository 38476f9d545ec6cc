package healthcheck

import (
	"net"
	"sync"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
)

// udpServer answers each datagram with reply(datagram), or not at all when
// reply returns nil, until the test ends.
func udpServer(t *testing.T, host string, reply func([]byte) []byte) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = pc.Close(); wg.Wait() })
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := reply(buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	})
	return pc.LocalAddr()
}

func TestUDP(t *testing.T) {
	echo := udpServer(t, "127.0.0.1", func(b []byte) []byte { return append([]byte("pong:"), b...) })
	mute := udpServer(t, "127.0.0.1", func([]byte) []byte { return nil })
	closed := closedPort(t, "udp", "127.0.0.1")

	tests := []struct {
		name   string
		hc     config.HealthCheck
		addr   string
		up     bool
		reason Reason
		msg    string
	}{
		{"reply", config.HealthCheck{Type: config.CheckUDP, Send: "ping"}, echo.String(), true, ReasonOK, "reply of 9 bytes"},
		{"expected reply", config.HealthCheck{Type: config.CheckUDP, Send: "ping", Expect: "pong:ping"}, echo.String(), true, ReasonOK, ""},
		{"unexpected reply", config.HealthCheck{Type: config.CheckUDP, Send: "ping", Expect: "PONG"}, echo.String(), false, ReasonUnexpectedReply, "pong:ping"},
		{"port unreachable", config.HealthCheck{Type: config.CheckUDP, Send: "ping"}, closed, false, ReasonRefused, "ICMP port unreachable"},
		{"port unreachable with no_reply_is_up", config.HealthCheck{Type: config.CheckUDP, Send: "ping", NoReplyIsUp: true, Timeout: ms(2000)}, closed, false, ReasonRefused, ""},
		{"no reply", config.HealthCheck{Type: config.CheckUDP, Send: "ping", Timeout: ms(200)}, mute.String(), false, ReasonTimeout, ""},
		{"no reply is up", config.HealthCheck{Type: config.CheckUDP, Send: "ping", Timeout: ms(200), NoReplyIsUp: true}, mute.String(), true, ReasonNoReply, "no ICMP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, runCheck(t, mustChecker(t, tt.hc), targetOf(t, tt.addr)), tt.up, tt.reason, tt.msg)
		})
	}
}

func TestUDPIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback address (::1) in this sandbox")
	}
	echo := udpServer(t, "::1", func(b []byte) []byte { return b })
	c := mustChecker(t, config.HealthCheck{Type: config.CheckUDP, Send: "ping", Expect: "ping"})
	want(t, runCheck(t, c, targetOf(t, echo)), true, ReasonOK, "")
	want(t, runCheck(t, c, targetOf(t, closedPort(t, "udp", "::1"))), false, ReasonRefused, "")
}
