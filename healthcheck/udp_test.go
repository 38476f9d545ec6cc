package healthcheck

import (
	"net"
	"sync"
	"testing"
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
		spec   Spec
		addr   string
		up     bool
		reason Reason
		msg    string
	}{
		{"reply", Spec{Probe: UDP{Send: "ping"}}, echo.String(), true, ReasonOK, "reply of 9 bytes"},
		{"expected reply", Spec{Probe: UDP{Send: "ping", Expect: "pong:ping"}}, echo.String(), true, ReasonOK, ""},
		{"unexpected reply", Spec{Probe: UDP{Send: "ping", Expect: "PONG"}}, echo.String(), false, ReasonUnexpectedReply, "pong:ping"},
		{"port unreachable", Spec{Probe: UDP{Send: "ping"}}, closed, false, ReasonRefused, "ICMP port unreachable"},
		{"port unreachable with no_reply_is_up", Spec{Params: Params{Timeout: ms(2000)}, Probe: UDP{Send: "ping", NoReplyIsUp: true}}, closed, false, ReasonRefused, ""},
		{"no reply", Spec{Params: Params{Timeout: ms(200)}, Probe: UDP{Send: "ping"}}, mute.String(), false, ReasonTimeout, ""},
		{"no reply is up", Spec{Params: Params{Timeout: ms(200)}, Probe: UDP{Send: "ping", NoReplyIsUp: true}}, mute.String(), true, ReasonNoReply, "no ICMP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, runCheck(t, mustChecker(t, tt.spec), targetOf(t, tt.addr)), tt.up, tt.reason, tt.msg)
		})
	}
}

func TestUDPIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback address (::1) in this sandbox")
	}
	echo := udpServer(t, "::1", func(b []byte) []byte { return b })
	c := mustChecker(t, Spec{Probe: UDP{Send: "ping", Expect: "ping"}})
	want(t, runCheck(t, c, targetOf(t, echo)), true, ReasonOK, "")
	want(t, runCheck(t, c, targetOf(t, closedPort(t, "udp", "::1"))), false, ReasonRefused, "")
}
