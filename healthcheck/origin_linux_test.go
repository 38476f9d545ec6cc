package healthcheck

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// TestOriginMarkAndSource checks, in a network namespace of its own, the
// two things a check through the VIP relies on: every kind of socket a
// check opens carries Spec.Mark (a policy rule prohibits marked packets,
// so a marked check fails where the unmarked one passes), and
// SourceToward picks the source address of the interface that reaches the
// given address, not the kernel's choice for the target (which, for a
// local target such as a VIP the director holds, would be the target
// itself). (http checks dial with the same function, on the
// transport's goroutines, which do not run in the namespace.)
func TestOriginMarkAndSource(t *testing.T) {
	privileged.Require(t, privileged.NetNS("to add interfaces and policy rules"))
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	run := func(f func() error) {
		t.Helper()
		if err := netnsutil.Run(ns, f); err != nil {
			t.Fatal(err)
		}
	}
	run(func() error {
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"link", "add", "eth0", "type", "veth", "peer", "name", "peer0"}, {"link", "set", "eth0", "up"}, {"link", "set", "peer0", "up"},
			{"addr", "add", "192.0.2.1/24", "dev", "eth0"},
			{"link", "add", "eth1", "type", "veth", "peer", "name", "peer1"}, {"link", "set", "eth1", "up"}, {"link", "set", "peer1", "up"},
			{"addr", "add", "198.51.100.1/24", "dev", "eth1"},
			{"addr", "add", "203.0.113.10/32", "dev", "eth0"},
			// Marked packets are prohibited, before the local table.
			{"rule", "add", "pref", "10", "fwmark", "0xd5d00007", "prohibit"},
			{"rule", "add", "pref", "100", "lookup", "local"},
			{"rule", "del", "pref", "0", "lookup", "local"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				return errors.New("ip " + strings.Join(args, " ") + ": " + err.Error() + ": " + string(out))
			}
		}
		return nil
	})
	// A TCP server in the namespace that answers with the peer's address,
	// and a UDP one that does the same.
	var tcp net.Listener
	var udp net.PacketConn
	run(func() (err error) {
		if tcp, err = net.Listen("tcp", "0.0.0.0:0"); err != nil {
			return err
		}
		udp, err = net.ListenPacket("udp", "203.0.113.10:0")
		return err
	})
	defer tcp.Close()
	defer udp.Close()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = bufio.NewReader(c).ReadString('\n')
				_, _ = io.WriteString(c, "from "+c.RemoteAddr().(*net.TCPAddr).IP.String()+"\n")
			}()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = udp.WriteTo([]byte("from "+from.(*net.UDPAddr).IP.String()), from)
		}
	}()
	tcpPort := uint16(tcp.Addr().(*net.TCPAddr).Port)
	udpPort := uint16(udp.LocalAddr().(*net.UDPAddr).Port)
	check := func(spec Spec, port uint16) Result {
		t.Helper()
		c := mustChecker(t, spec)
		var r Result
		run(func() error {
			r = c.Check(context.Background(), targetOf(t, "203.0.113.10:"+strconv.Itoa(int(port))))
			return nil
		})
		t.Logf("%+v: %s", spec, r)
		return r
	}
	const mark = 0xd5d00007
	toward := netip.MustParseAddr("198.51.100.7")
	probes := []struct {
		name  string
		probe Probe
		port  uint16
	}{
		{"tcp connect", TCP{}, tcpPort},
		{"tcp send/expect", TCP{Send: "hi\n", Expect: "from 198.51.100.1"}, tcpPort},
		{"udp", UDP{Send: "hi", Expect: "from 198.51.100.1"}, udpPort},
	}
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			r := check(Spec{Probe: p.probe, SourceToward: toward}, p.port)
			if !r.Up {
				t.Errorf("unmarked, source toward %s: %s, want up", toward, r)
			}
			if r := check(Spec{Probe: p.probe, SourceToward: toward, Mark: mark}, p.port); r.Up {
				t.Errorf("marked: %s, want down (the mark's rule prohibits it)", r)
			}
		})
	}
	// Without SourceToward the kernel's source for a local target is the
	// target itself.
	if r := check(Spec{Probe: TCP{Send: "hi\n", Expect: "from 203.0.113.10"}}, tcpPort); !r.Up {
		t.Errorf("no SourceToward: %s, want the VIP as the source", r)
	}
	if _, err := NewChecker(Spec{Probe: ICMP{}, Mark: mark}, BuildOptions{}); err == nil {
		t.Error("an icmp check with a mark was built")
	}
	if _, err := NewChecker(Spec{Probe: Exec{Command: []string{"/bin/true"}}, SourceToward: toward}, BuildOptions{}); err == nil {
		t.Error("an exec check with SourceToward was built")
	}
}
