package healthcheck

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"

	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// requireICMP gates the tests that need ICMP sockets of the family: a
// datagram one (net.ipv4.ping_group_range including our group) or a raw one
// (CAP_NET_RAW), the one case where an icmp check cannot work at all.
func requireICMP(t *testing.T, v4 bool) {
	t.Helper()
	dgram, raw := "udp4", "ip4:icmp"
	if !v4 {
		dgram, raw = "udp6", "ip6:ipv6-icmp"
	}
	privileged.Require(t, privileged.Need{
		What: "an ICMP socket (" + dgram + " with net.ipv4.ping_group_range including our group, or " + raw + " with CAP_NET_RAW), to send echo requests",
		Missing: func() error {
			var errs []error
			for _, network := range []string{dgram, raw} {
				c, err := icmp.ListenPacket(network, "")
				if err == nil {
					_ = c.Close()
					return nil
				}
				errs = append(errs, err)
			}
			return errors.Join(errs...)
		},
	})
}

func TestICMP(t *testing.T) {
	for _, tt := range []struct {
		name string
		addr string
	}{
		{"ipv4", "127.0.0.1"},
		{"ipv6", "::1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := netip.MustParseAddr(tt.addr)
			requireICMP(t, addr.Is4())
			if !addr.Is4() && !hasIPv6Loopback() {
				t.Skip("no IPv6 loopback address (::1) in this sandbox")
			}
			c := mustChecker(t, Spec{Params: Params{Timeout: ms(2000)}, Probe: ICMP{}})
			target := Target{Service: "ping", Real: netip.AddrPortFrom(addr, 80), Addr: netip.AddrPortFrom(addr, 80)}
			// Several in a row and at once: sequence numbers and
			// identifiers must keep the replies apart.
			for range 3 {
				want(t, runCheck(t, c, target), true, ReasonOK, "echo reply")
			}
			results := make(chan Result, 8)
			for range cap(results) {
				go func() { results <- runCheck(t, c, target) }()
			}
			for range cap(results) {
				want(t, <-results, true, ReasonOK, "")
			}
			t.Logf("raw sockets only: %v", c.(*icmpChecker).rawOnly.Load())
		})
	}
	t.Run("source of another family", func(t *testing.T) {
		c := mustChecker(t, Spec{Source: netip.MustParseAddr("::1"), Probe: ICMP{}})
		want(t, runCheck(t, c, targetOf(t, "127.0.0.1:0")), false, ReasonConfig, "families")
	})
}

func TestEchoReplyFilter(t *testing.T) {
	vm, err := bpf.NewVM(echoReplyFilterProgram(0x1234))
	if err != nil {
		t.Fatal(err)
	}
	packet := func(ihl int, typ byte, id uint16) []byte {
		b := make([]byte, ihl*4+16)
		b[0] = 0x40 | byte(ihl)
		b[ihl*4] = typ
		b[ihl*4+4], b[ihl*4+5] = byte(id>>8), byte(id)
		return b
	}
	for _, tt := range []struct {
		name   string
		packet []byte
		accept bool
	}{
		{"echo reply, our id", packet(5, 0, 0x1234), true},
		{"echo reply, our id, ip options", packet(7, 0, 0x1234), true},
		{"echo reply, other id", packet(5, 0, 0x1235), false},
		{"echo request, our id (our own request on loopback)", packet(5, 8, 0x1234), false},
		{"destination unreachable", packet(5, 3, 0x1234), false},
	} {
		n, err := vm.Run(tt.packet)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (n > 0) != tt.accept {
			t.Errorf("%s: filter returned %d, want accept=%v", tt.name, n, tt.accept)
		}
	}
}
