//go:build vmtest

package e2e

// Real traffic through IPVS programmed by package ipvs on dir1: a drained
// real keeps its established connection, IPv6 and firewall-mark services
// carry traffic, a weight change moves new flows. The unit and kernel tests
// of package ipvs cover the programming itself; these cover the packets.

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

var (
	ipvsVIP4 = netip.MustParseAddr("203.0.113.30")
	ipvsVIP6 = netip.MustParseAddr("2001:db8:113::30")
)

// ipvsIOTimeout bounds one read or write on a connection through the lab:
// milliseconds when healthy, even under TCG.
const ipvsIOTimeout = 3 * time.Second

// testLogWriter sends slog output to the test log.
type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// ipvsDirector puts vip on dir1's eth0, prepares the reals for DR (VIP on
// lo, ARP sysctls) and returns a reconciler on dir1's IPVS.
func ipvsDirector(t *testing.T, vip netip.Addr, reals ...lab.Host) (*ipvs.Reconciler, *ipvs.Netlink) {
	t.Helper()
	bits := vip.BitLen()
	nodad := ""
	if vip.Is6() {
		nodad = " nodad"
	}
	lab.MustIPBatch(t, lab.Dir1, fmt.Sprintf("addr add %s/%d dev eth0%s", vip, bits, nodad))
	for _, h := range reals {
		lab.MustIPBatch(t, h, fmt.Sprintf("addr add %s/%d dev lo", vip, bits))
		if vip.Is4() {
			for _, dev := range []string{"all", "eth0"} {
				for name, value := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
					if err := lab.WriteSysctl(h, "net.ipv4.conf."+dev+"."+name, value); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	k, err := ipvs.OpenNetlink(context.Background(), "/run/netns/"+string(lab.Dir1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return ipvs.NewReconciler(k, slog.New(slog.NewTextHandler(testLogWriter{t}, nil))), k
}

// realAddr is h's address of vip's family.
func realAddr(h lab.Host, vip netip.Addr) netip.Addr {
	if vip.Is6() {
		return h.IPv6()
	}
	return h.IPv4()
}

// ipvsState is one service key over reals (port as given, weight 1 unless
// weights says otherwise), round robin, with a drain timeout.
func ipvsState(key ipvs.ServiceKey, port uint16, vip netip.Addr, weights map[lab.Host]int, reals ...lab.Host) ipvs.State {
	s := ipvs.NewService(key, "rr")
	s.DrainTimeout = time.Minute
	for _, h := range reals {
		w, ok := weights[h]
		if !ok {
			w = 1
		}
		s.Put(ipvs.NewDestination(realAddr(h, vip), port, w))
	}
	return ipvs.State{key: s}
}

// mustApply applies st on the reconciler.
func mustApply(t *testing.T, r *ipvs.Reconciler, st ipvs.State) {
	t.Helper()
	if _, err := r.Apply(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// echoConn is a connection to the backends' TCP echo service.
type echoConn struct {
	net.Conn
	r    *bufio.Reader
	name string // the backend that greeted
}

// dialEcho connects from the client to addr and reads the greeting.
func dialEcho(t *testing.T, addr netip.AddrPort) *echoConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ipvsIOTimeout)
	defer cancel()
	c, err := lab.Dial(ctx, lab.Client, "tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	e := &echoConn{Conn: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(ipvsIOTimeout))
	line, err := e.r.ReadString('\n')
	if err != nil {
		c.Close()
		t.Fatalf("greeting from %s: %v", addr, err)
	}
	e.name = strings.TrimSpace(line)
	return e
}

// echo sends a line and checks it comes back.
func (e *echoConn) echo(t *testing.T, line string) {
	t.Helper()
	e.SetDeadline(time.Now().Add(ipvsIOTimeout))
	if _, err := fmt.Fprintf(e, "%s\n", line); err != nil {
		t.Fatalf("write to %s: %v", e.name, err)
	}
	got, err := e.r.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != line {
		t.Fatalf("echo from %s: %q, %v; want %q", e.name, got, err, line)
	}
}

// abort closes the connection with a reset, which IPVS expires in 10 s
// (a FIN would leave the entry in TIME_WAIT for 2 minutes).
func (e *echoConn) abort() {
	if tc, ok := e.Conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	e.Close()
}

// greetings opens n connections to addr and counts who greeted.
func greetings(t *testing.T, addr netip.AddrPort, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		e := dialEcho(t, addr)
		seen[e.name]++
		e.abort()
	}
	return seen
}

// TestIPVSDrainKeepsEstablishedConnection removes the real serving an
// established TCP connection from the desired state: the real stays at
// weight 0, the connection keeps working, new connections go to the other
// real, and the real is deleted once its connection is gone.
func TestIPVSDrainKeepsEstablishedConnection(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	r, k := ipvsDirector(t, ipvsVIP4, lab.RS1, lab.RS2)
	vip := netip.AddrPortFrom(ipvsVIP4, 9000)
	key := ipvs.NewServiceKey(ipvs.TCP, vip)
	mustApply(t, r, ipvsState(key, 9000, ipvsVIP4, nil, lab.RS1, lab.RS2))

	c := dialEcho(t, vip)
	defer c.Close()
	c.echo(t, "before")
	serving, other := lab.RS1, lab.RS2
	if c.name == string(lab.RS2) {
		serving, other = lab.RS2, lab.RS1
	}
	servingDest := ipvs.DestKey{Addr: serving.IPv4(), Port: 9000}

	mustApply(t, r, ipvsState(key, 9000, ipvsVIP4, nil, other))
	ds, err := k.GetDestinations(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range ds {
		if d.Key == servingDest {
			found = true
			if d.Weight != 0 || d.Conns() == 0 {
				t.Errorf("the draining real: %+v; want weight 0 with its connection", d)
			}
		}
	}
	if !found || r.Draining() != 1 {
		t.Fatalf("the removed real with an established connection is gone (draining %d): %+v", r.Draining(), ds)
	}
	c.echo(t, "while draining")
	if got, want := greetings(t, vip, 4), map[string]int{string(other): 4}; !maps.Equal(got, want) {
		t.Errorf("new connections while %s drains went to %v, want %v", serving, got, want)
	}
	c.echo(t, "still")

	c.abort()
	lab.Eventually(t, 40*time.Second, time.Second, func() error {
		mustApply(t, r, ipvsState(key, 9000, ipvsVIP4, nil, other))
		ds, err := k.GetDestinations(context.Background(), key)
		if err != nil {
			return err
		}
		for _, d := range ds {
			if d.Key == servingDest {
				return fmt.Errorf("%s still there: %+v", serving, d)
			}
		}
		return nil
	})
	if r.Draining() != 0 {
		t.Errorf("draining %d after the delete", r.Draining())
	}
}

// TestIPVSIPv6AndWeights sends real traffic through an IPv6 service and
// checks that a weight of 0 (a real that failed its checks) takes no new
// flows while the service and the real stay.
func TestIPVSIPv6AndWeights(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	r, _ := ipvsDirector(t, ipvsVIP6, lab.RS1, lab.RS2)
	vip := netip.AddrPortFrom(ipvsVIP6, 9000)
	key := ipvs.NewServiceKey(ipvs.TCP, vip)
	mustApply(t, r, ipvsState(key, 9000, ipvsVIP6, nil, lab.RS1, lab.RS2))
	if got, want := greetings(t, vip, 4), map[string]int{"rs1": 2, "rs2": 2}; !maps.Equal(got, want) {
		t.Errorf("greetings %v, want %v", got, want)
	}
	mustApply(t, r, ipvsState(key, 9000, ipvsVIP6, map[lab.Host]int{lab.RS2: 0}, lab.RS1, lab.RS2))
	if got, want := greetings(t, vip, 3), map[string]int{"rs1": 3}; !maps.Equal(got, want) {
		t.Errorf("greetings with rs2 at weight 0: %v, want %v", got, want)
	}
}

// TestIPVSFWMarkServices marks the VIP's packets on dir1's ingress (tc, so
// that no netfilter tool is needed) and balances them with firewall-mark
// services, IPv4 and IPv6; DR keeps the port, so the reals have port 0.
// Removing a service with connections drains it before deleting it.
func TestIPVSFWMarkServices(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	for _, tc := range []struct {
		name string
		vip  netip.Addr
		mark uint32
	}{
		{"ipv4", ipvsVIP4, 7},
		{"ipv6", ipvsVIP6, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, k := ipvsDirector(t, tc.vip, lab.RS1, lab.RS2)
			proto, fam := "ip", ipvs.IPv4
			if tc.vip.Is6() {
				proto, fam = "ipv6", ipvs.IPv6
			}
			lab.MustInNS(t, lab.Dir1, "tc", "qdisc", "replace", "dev", "eth0", "clsact")
			lab.MustInNS(t, lab.Dir1, "tc", "filter", "add", "dev", "eth0", "ingress", "protocol", proto,
				"flower", "dst_ip", tc.vip.String(), "action", "skbedit", "mark", fmt.Sprint(tc.mark))
			key := ipvs.FWMarkKey(fam, tc.mark)
			mustApply(t, r, ipvsState(key, 0, tc.vip, nil, lab.RS1, lab.RS2))
			vip := netip.AddrPortFrom(tc.vip, 9000)
			if got, want := greetings(t, vip, 4), map[string]int{"rs1": 2, "rs2": 2}; !maps.Equal(got, want) {
				t.Errorf("greetings through fwmark %d: %v, want %v", tc.mark, got, want)
			}
			// Removed from the desired state, the service drains: its reals
			// at weight 0 while the (reset) connections expire, then it goes.
			mustApply(t, r, ipvs.State{})
			ds, err := k.GetDestinations(context.Background(), key)
			if err != nil || len(ds) != 2 || ds[0].Weight != 0 || ds[1].Weight != 0 {
				t.Errorf("a removed service with connections: %+v, %v; want its 2 reals at weight 0", ds, err)
			}
			lab.Eventually(t, 40*time.Second, time.Second, func() error {
				mustApply(t, r, ipvs.State{})
				svcs, err := k.GetServices(context.Background())
				if err != nil {
					return err
				}
				for _, s := range svcs {
					if s.Key == key {
						return fmt.Errorf("%s still there", key)
					}
				}
				return nil
			})
		})
	}
}
