//go:build vmtest

package e2e

// These tests check the lab itself before dsrd drives it: with IPVS
// programmed by hand (ipvsadm) and the real servers prepared by hand, the lab
// must behave as a direct-routing network, and must stop doing so when the
// real servers are not prepared. Later tests can then trust a failure to be
// dsrd's.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

var (
	drVIP4 = netip.MustParseAddr("203.0.113.10")
	drVIP6 = netip.MustParseAddr("2001:db8:113::10")
)

// drRequestTimeout bounds one HTTP request through the lab. A healthy request
// takes milliseconds even under TCG (the first one also resolves the VIP);
// one that a real server drops stalls until this.
const drRequestTimeout = 3 * time.Second

// drHostBits is the prefix length of a single address of vip's family.
func drHostBits(vip netip.Addr) int { return vip.BitLen() }

// drURL is http://VIP/ with IPv6 in brackets.
func drURL(vip netip.Addr) string {
	return "http://" + netip.AddrPortFrom(vip, 80).String() + "/"
}

// drProgramDirector puts vip on dir1's eth0 (dir1 then answers ARP/ND for it)
// and programs a DR service vip:80/tcp, round robin, over reals.
func drProgramDirector(t *testing.T, vip netip.Addr, reals ...lab.Host) {
	t.Helper()
	addr := fmt.Sprintf("addr add %s/%d dev eth0", vip, drHostBits(vip))
	if vip.Is6() {
		addr += " nodad"
	}
	lab.MustIPBatch(t, lab.Dir1, addr)

	svc := netip.AddrPortFrom(vip, 80).String()
	rules := []string{"-A -t " + svc + " -s rr"}
	for _, r := range reals {
		ra := r.IPv4()
		if vip.Is6() {
			ra = r.IPv6()
		}
		rules = append(rules, fmt.Sprintf("-a -t %s -r %s -g -w 1", svc, netip.AddrPortFrom(ra, 80)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	if _, err := lab.RunInput(ctx, strings.NewReader(strings.Join(rules, "\n")+"\n"),
		"ip", "netns", "exec", string(lab.Dir1), "ipvsadm", "-R"); err != nil {
		t.Fatal(err)
	}
}

// drRealSetup is how a real server is prepared for DR.
type drRealSetup struct {
	vipOnLo    bool // the VIP on lo, so that the real server accepts its traffic
	arpSysctls bool // arp_ignore=1, arp_announce=2 on all and eth0 (IPv4 only)
}

// drPrepareReal does by hand what dsrd's realserver agent will do.
func drPrepareReal(t *testing.T, h lab.Host, vip netip.Addr, s drRealSetup) {
	t.Helper()
	if s.vipOnLo {
		lab.MustIPBatch(t, h, fmt.Sprintf("addr add %s/%d dev lo", vip, drHostBits(vip)))
	}
	if s.arpSysctls {
		for _, dev := range []string{"all", "eth0"} {
			for name, value := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
				if err := lab.WriteSysctl(h, "net.ipv4.conf."+dev+"."+name, value); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// drGet fetches vip's / from the client and returns the backend's name and the
// client address it saw.
func drGet(client *http.Client, vip netip.Addr) (name, clientAddr string, err error) {
	resp, err := client.Get(drURL(vip))
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %s: %q", resp.Status, body)
	}
	return strings.TrimSpace(string(body)), resp.Header.Get("X-Client-Addr"), nil
}

// drCheck is the positive half of the DR tests: requests to vip are
// spread over both reals, the client's address reaches them, the client
// resolved vip to dir1, and dir1 saw only the inbound half of the flows.
func drCheck(t *testing.T, vip netip.Addr, clientIP netip.Addr) {
	t.Helper()
	client := lab.HTTPClient(lab.Client, drRequestTimeout)
	const requests = 6
	seen := map[string]int{}
	for i := range requests {
		name, from, err := drGet(client, vip)
		if err != nil {
			t.Fatalf("request %d to %s: %v", i+1, drURL(vip), err)
		}
		seen[name]++
		ap, err := netip.ParseAddrPort(from)
		if err != nil || ap.Addr() != clientIP {
			t.Errorf("request %d: the backend saw the client as %q, want %s:PORT (DR keeps the client address)", i+1, from, clientIP)
		}
	}
	// Round robin over two reals, one new connection per request.
	want := map[string]int{"rs1": requests / 2, "rs2": requests / 2}
	if !maps.Equal(seen, want) {
		t.Errorf("answers by backend = %v, want %v", seen, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	neigh, err := lab.Neighbours(ctx, lab.Client, vip)
	if err != nil {
		t.Fatal(err)
	}
	if len(neigh) != 1 || neigh[0].LLAddr != lab.Dir1.MAC() {
		t.Errorf("client's neighbour entry for %s = %+v, want one with dir1's MAC %s", vip, neigh, lab.Dir1.MAC())
	}

	conns, err := lab.IPVSConns(ctx, lab.Dir1)
	if err != nil {
		t.Fatal(err)
	}
	svc := netip.AddrPortFrom(vip, 80).String()
	perDest := map[string]int{}
	for _, c := range conns {
		src, err := netip.ParseAddrPort(c.Source)
		if err != nil || src.Addr() != clientIP || c.Virtual != svc {
			t.Errorf("unexpected IPVS connection on dir1: %+v", c)
			continue
		}
		perDest[c.Dest]++
	}
	wantDest := map[string]int{}
	for _, r := range []lab.Host{lab.RS1, lab.RS2} {
		ra := r.IPv4()
		if vip.Is6() {
			ra = r.IPv6()
		}
		wantDest[netip.AddrPortFrom(ra, 80).String()] = requests / 2
	}
	if !maps.Equal(perDest, wantDest) {
		t.Errorf("IPVS connections on dir1 by real = %v, want %v (all: %+v)", perDest, wantDest, conns)
	}

	// The kernel folds its per-CPU counters every 2 s: wait for them.
	key := "TCP " + svc
	var st lab.IPVSStats
	lab.Eventually(t, 10*time.Second, 250*time.Millisecond, func() error {
		all, err := lab.IPVSStatsOf(ctx, lab.Dir1)
		if err != nil {
			return err
		}
		st = all[key].IPVSStats
		if st.Conns < requests {
			return fmt.Errorf("IPVS counters of %s: %+v, want %d connections", key, st, requests)
		}
		return nil
	})
	if st.InPkts == 0 || st.OutPkts != 0 {
		t.Errorf("IPVS counters of %s on dir1: %+v; want inbound packets and no outbound one (replies bypass the director)", key, st)
	}
}

func TestDirectRoutingIPv4(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	for _, rs := range []lab.Host{lab.RS1, lab.RS2} {
		drPrepareReal(t, rs, drVIP4, drRealSetup{vipOnLo: true, arpSysctls: true})
	}
	drProgramDirector(t, drVIP4, lab.RS1, lab.RS2)

	drCheck(t, drVIP4, lab.Client.IPv4())

	// Only dir1 claims the VIP on the segment: the reals hold it on lo and
	// keep quiet (arp_ignore=1).
	macs, err := lab.ARPProbe(lab.Client, drVIP4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(macs, []string{lab.Dir1.MAC()}) {
		t.Errorf("ARP answers for %s = %v, want only dir1's %s", drVIP4, macs, lab.Dir1.MAC())
	}
}

func TestDirectRoutingIPv6(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	// No sysctl for IPv6: Linux answers neighbour solicitations only for
	// addresses of the interface they arrive on, and the reals hold the VIP on lo.
	for _, rs := range []lab.Host{lab.RS1, lab.RS2} {
		drPrepareReal(t, rs, drVIP6, drRealSetup{vipOnLo: true})
	}
	drProgramDirector(t, drVIP6, lab.RS1, lab.RS2)

	drCheck(t, drVIP6, lab.Client.IPv6())
}

// TestRealsWithoutARPIgnoreClaimTheVIP is the negative of the ARP check above:
// reals that hold the VIP on lo with the default arp_ignore=0 answer ARP for
// it, so the segment could send VIP traffic straight to them, past IPVS.
func TestRealsWithoutARPIgnoreClaimTheVIP(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	for _, rs := range []lab.Host{lab.RS1, lab.RS2} {
		drPrepareReal(t, rs, drVIP4, drRealSetup{vipOnLo: true})
	}
	drProgramDirector(t, drVIP4, lab.RS1, lab.RS2)

	macs, err := lab.ARPProbe(lab.Client, drVIP4, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{lab.Dir1.MAC(), lab.RS1.MAC(), lab.RS2.MAC()}
	if !slices.Equal(macs, want) {
		t.Errorf("ARP answers for %s with arp_ignore=0 on the reals = %v, want %v", drVIP4, macs, want)
	}
}

// TestRealWithoutVIPDropsItsShare is the negative of drCheck: a
// real server without the VIP on lo drops what IPVS sends it (the packets
// are addressed to the VIP, which it does not have, and it does not
// forward), so the connections scheduled to it fail.
func TestRealWithoutVIPDropsItsShare(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	drPrepareReal(t, lab.RS1, drVIP4, drRealSetup{vipOnLo: true, arpSysctls: true})
	drPrepareReal(t, lab.RS2, drVIP4, drRealSetup{arpSysctls: true})
	drProgramDirector(t, drVIP4, lab.RS1, lab.RS2)

	client := lab.HTTPClient(lab.Client, drRequestTimeout)
	const requests = 4
	seen := map[string]int{}
	failed := 0
	for i := range requests {
		name, _, err := drGet(client, drVIP4)
		if err != nil {
			var nerr net.Error
			if !errors.As(err, &nerr) || !nerr.Timeout() {
				t.Errorf("request %d: %v, want a timeout", i+1, err)
			}
			failed++
			continue
		}
		seen[name]++
	}
	if want := map[string]int{"rs1": requests / 2}; !maps.Equal(seen, want) || failed != requests/2 {
		t.Errorf("answers by backend = %v and %d failed; want %v and %d failed (rs2 without the VIP on lo)", seen, failed, want, requests/2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	conns, err := lab.IPVSConns(ctx, lab.Dir1)
	if err != nil {
		t.Fatal(err)
	}
	rs2 := netip.AddrPortFrom(lab.RS2.IPv4(), 80).String()
	if !slices.ContainsFunc(conns, func(c lab.IPVSConn) bool { return c.Dest == rs2 }) {
		t.Errorf("no IPVS connection to %s on dir1: the director should still have sent rs2 its share; all: %+v", rs2, conns)
	}
}
