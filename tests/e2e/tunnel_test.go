//go:build vmtest

package e2e

// Tunnel forwarding (docs/tunnel.md) end to end: a dsrd director in dir1
// programs IPVS from a file whose services forward by IP-in-IP to a real in
// another subnet (remote, 198.51.100.10, behind the router) and to one on
// its own segment (rs1); the reals decapsulate and answer the client
// straight, which a packet capture on dir1 and on the client shows.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// tunnelDirectorConf is dir1's file: one director, Raft on loopback, the
// lab's VIPs, and web (http/80) and echo (tcp/9000) on each family,
// forwarding by tunnel to remote and rs1. %[1]s is the state directory.
const tunnelDirectorConf = `
node: {id: dir1, interface: eth0, data_dir: %[1]s/data, api_socket: %[1]s/api.sock}
cluster: {bind: "127.0.0.1:7946", peers: ["dir1@127.0.0.1:7946"]}
vips: [{address: 203.0.113.10}, {address: "2001:db8:113::10"}]
x-check: &check {type: tcp, interval: 500ms, timeout: 400ms, rise: 1, fall: 2}
services:
  - {name: web, vip: 203.0.113.10, port: 80, protocol: tcp, scheduler: rr, forwarding: tunnel, health_check: *check,
     reals: [{address: 198.51.100.10}, {address: 192.0.2.21}]}
  - {name: echo, vip: 203.0.113.10, port: 9000, protocol: tcp, scheduler: rr, forwarding: tunnel, health_check: *check,
     reals: [{address: 198.51.100.10}, {address: 192.0.2.21}]}
  - {name: web6, vip: "2001:db8:113::10", port: 80, protocol: tcp, scheduler: rr, health_check: *check,
     reals: [{address: "2001:db8:100::10", forwarding: tunnel}, {address: "2001:db8::21", forwarding: tunnel}]}
  - {name: echo6, vip: "2001:db8:113::10", port: 9000, protocol: tcp, scheduler: rr, forwarding: tunnel, health_check: *check,
     reals: [{address: "2001:db8:100::10"}, {address: "2001:db8::21"}]}
`

// tunnelStartTimeout bounds the director's start: its Raft election on
// one voter, the first checks (rise 1, 500 ms) and a reconcile, a few
// seconds under TCG.
const tunnelStartTimeout = 60 * time.Second

// tunnelReals are the reals of every tunnel service: one behind the
// router, one on the director's segment (allowed: docs/tunnel.md).
var tunnelReals = []lab.Host{lab.Remote, lab.RS1}

// tunnelAddr is h's address of vip's family.
func tunnelAddr(h lab.Host, vip netip.Addr) netip.Addr {
	switch {
	case h == lab.Remote && vip.Is4():
		return lab.RemoteIPv4
	case h == lab.Remote:
		return lab.RemoteIPv6
	case vip.Is4():
		return h.IPv4()
	}
	return h.IPv6()
}

// tunnelProgram is a program of the repository for the VM: DSRD_BIN or
// bin/dsrd, DSRD_BACKEND or .cache/vm/backend.
func tunnelProgram(t *testing.T, env, rel string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	repo, err := lab.Repo()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(repo, rel)
}

// tunnelStart runs name args in h until stop or the end of the test
// (SIGTERM, then SIGKILL after 10 s), its output in a log file printed
// when the test fails.
func tunnelStart(t *testing.T, h lab.Host, name string, args ...string) (stop func()) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), string(h)+"-"+filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(h), name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			logf.Close()
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s %v in %s:\n%s", filepath.Base(name), args[:min(len(args), 2)], h, b)
		}
	})
	return stop
}

// tunnelBackend starts the backend program in h (http :80, tcp :9000).
func tunnelBackend(t *testing.T, h lab.Host) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	tunnelStart(t, h, tunnelProgram(t, "DSRD_BACKEND", ".cache/vm/backend"),
		"--name", string(h), "--ready-file", ready, "--http", ":80", "--tcp", ":9000")
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, err := os.Stat(ready)
		return err
	})
}

// tunnelDecapByHand prepares h to decapsulate as docs/tunnel.md says
// (what dsrd realserver --tunnel does): the modules, tunl0 and ip6tnl0
// up, rp_filter 0 on tunl0 and all, the VIPs on lo, the ARP sysctls.
func tunnelDecapByHand(t *testing.T, h lab.Host) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	for _, m := range []string{"ipip", "ip6_tunnel"} {
		if _, err := lab.Run(ctx, "modprobe", m); err != nil {
			t.Fatal(err)
		}
	}
	lab.MustIPBatch(t, h, "link set tunl0 up", "link set ip6tnl0 up",
		"addr add 203.0.113.10/32 dev lo", "addr add 2001:db8:113::10/128 dev lo")
	for name, value := range map[string]string{
		"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.tunl0.rp_filter": "0",
		"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2",
	} {
		if err := lab.WriteSysctl(h, name, value); err != nil {
			t.Fatal(err)
		}
	}
}

// tunnelDirector writes dir1's file and starts dsrd director with it, then
// waits until IPVS holds every service with both reals up, by tunnel.
func tunnelDirector(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "dir1.yaml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(tunnelDirectorConf, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	tunnelStart(t, lab.Dir1, tunnelProgram(t, "DSRD_BIN", "bin/dsrd"), "director", "--config", conf)
	want := map[string]bool{}
	for _, vip := range []netip.Addr{drVIP4, drVIP6} {
		for _, port := range []uint16{80, 9000} {
			for _, r := range tunnelReals {
				want[netip.AddrPortFrom(vip, port).String()+" "+netip.AddrPortFrom(tunnelAddr(r, vip), port).String()] = true
			}
		}
	}
	lab.Eventually(t, tunnelStartTimeout, 250*time.Millisecond, func() error {
		got, err := tunnelDests(lab.Dir1)
		if err != nil {
			return err
		}
		if !maps.Equal(got, want) {
			return fmt.Errorf("dir1's IPVS tunnel destinations at weight > 0: %v, want %v", got, want)
		}
		return nil
	})
}

// tunnelDests reads h's IPVS destinations that forward by tunnel with a
// weight above 0, as "VIP:port real:port".
func tunnelDests(h lab.Host) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	out, err := lab.InNS(ctx, h, "ipvsadm", "-L", "-n")
	if err != nil {
		return nil, err
	}
	got, svc := map[string]bool{}, ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP") {
			svc = f[1]
			continue
		}
		// "  -> 192.0.2.21:80  Tunnel  100  0  0"
		if len(f) == 6 && f[0] == "->" && f[2] == "Tunnel" && f[3] != "0" {
			got[svc+" "+f[1]] = true
		}
	}
	return got, nil
}

// tunnelOuterProto is the IP protocol of vip's family's encapsulation:
// IPv4 in IPv4 (4), IPv6 in IPv6 (41).
func tunnelOuterProto(vip netip.Addr) uint8 {
	if vip.Is4() {
		return unix.IPPROTO_IPIP
	}
	return unix.IPPROTO_IPV6
}

// TestTunnelForwarding: through a dsrd director whose services forward by
// tunnel, requests to each VIP are answered by the real behind the router
// and by the one on the segment in turn, with the client's address; dir1
// sends the requests encapsulated and sees none of the replies (no frame
// from VIP:80 on its eth0, no outbound packet in its IPVS counters); the
// client gets remote's replies from the router and rs1's from rs1.
func TestTunnelForwarding(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.RouterUp(t)
	for _, h := range tunnelReals {
		tunnelDecapByHand(t, h)
		tunnelBackend(t, h)
	}
	tunnelDirector(t)
	for _, vip := range []netip.Addr{drVIP4, drVIP6} {
		t.Run(tunnelFamily(vip), func(t *testing.T) {
			tunnelServe(t, vip)
		})
	}
}

// tunnelServe is TestTunnelForwarding for one VIP.
func tunnelServe(t *testing.T, vip netip.Addr) {
	clientIP := lab.Client.IPv4()
	if vip.Is6() {
		clientIP = lab.Client.IPv6()
	}
	dirCap, err := lab.StartClusterCapture(lab.Dir1)
	if err != nil {
		t.Fatal(err)
	}
	cliCap, err := lab.StartClusterCapture(lab.Client)
	if err != nil {
		dirCap.Stop()
		t.Fatal(err)
	}
	client := lab.HTTPClient(lab.Client, drRequestTimeout)
	const requests = 6
	seen := map[string]int{}
	for i := range requests {
		name, from, err := drGet(client, vip)
		if err != nil {
			t.Errorf("request %d to %s: %v", i+1, drURL(vip), err)
			continue
		}
		seen[name]++
		if ap, err := netip.ParseAddrPort(from); err != nil || ap.Addr() != clientIP {
			t.Errorf("request %d: the backend saw the client as %q, want %s:PORT", i+1, from, clientIP)
		}
	}
	dirFrames, err := dirCap.Stop()
	if err != nil {
		t.Error(err)
	}
	cliFrames, err := cliCap.Stop()
	if err != nil {
		t.Error(err)
	}
	if want := map[string]int{"remote": requests / 2, "rs1": requests / 2}; !maps.Equal(seen, want) {
		t.Errorf("answers by backend = %v, want %v", seen, want)
	}

	encapsulated, replies := 0, 0
	for _, p := range dirFrames {
		if p.Outgoing && p.Proto == tunnelOuterProto(vip) && p.IPSrc == tunnelAddrOf(lab.Dir1, vip) {
			encapsulated++
		}
		if p.IPSrc == vip && p.SrcPort == 80 {
			replies++
		}
	}
	t.Logf("dir1's eth0: %d encapsulated frames out, %d reply frames from %s:80", encapsulated, replies, vip)
	if encapsulated < requests*3 || replies != 0 {
		t.Errorf("dir1's eth0 saw %d encapsulated frames (want at least %d: a handshake's ACK, a request and a FIN per request) and %d replies from %s:80 (want none)",
			encapsulated, requests*3, replies, vip)
	}
	byMAC := map[string]int{}
	for _, p := range cliFrames {
		if !p.Outgoing && p.IPSrc == vip && p.SrcPort == 80 {
			byMAC[p.Src]++
		}
	}
	t.Logf("the client's replies from %s:80 by source MAC: %v", vip, byMAC)
	routerMAC, rs1MAC := "02:00:00:00:00:01", lab.RS1.MAC()
	if len(byMAC) != 2 || byMAC[routerMAC] < requests/2 || byMAC[rs1MAC] < requests/2 {
		t.Errorf("the client's replies by source MAC: %v; want them from the router (%s, remote's) and rs1 (%s) only, at least %d each",
			byMAC, routerMAC, rs1MAC, requests/2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	key := "TCP " + netip.AddrPortFrom(vip, 80).String()
	lab.Eventually(t, 10*time.Second, 250*time.Millisecond, func() error {
		all, err := lab.IPVSStatsOf(ctx, lab.Dir1)
		if err != nil {
			return err
		}
		st := all[key].IPVSStats
		if st.Conns < requests {
			return fmt.Errorf("IPVS counters of %s: %+v, want %d connections", key, st, requests)
		}
		if st.OutPkts != 0 {
			t.Errorf("IPVS counters of %s on dir1: %+v; want no outbound packet", key, st)
		}
		return nil
	})
}

// tunnelAddrOf is h's segment address of vip's family.
func tunnelAddrOf(h lab.Host, vip netip.Addr) netip.Addr {
	if vip.Is4() {
		return h.IPv4()
	}
	return h.IPv6()
}

// tunnelEchoBytes is one transfer's size each way.
const tunnelEchoBytes = 1 << 20

// tunnelEcho sends tunnelEchoBytes in lines to vip:9000 from the client
// and reads them back (the backend echoes lines); it returns the
// backend's name.
func tunnelEcho(vip netip.Addr) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := lab.Dial(ctx, lab.Client, "tcp", netip.AddrPortFrom(vip, 9000).String())
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	r := bufio.NewReaderSize(c, 64<<10)
	name, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read the backend's name: %w", err)
	}
	line := strings.Repeat("x", 8191) + "\n"
	errc := make(chan error, 1)
	go func() {
		for range tunnelEchoBytes / len(line) {
			if _, err := io.WriteString(c, line); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := 0
	for got < tunnelEchoBytes/len(line)*len(line) {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("after %d bytes echoed: %w", got, err)
		}
		if l != line {
			return "", fmt.Errorf("after %d bytes echoed: a line of %d bytes came back", got, len(l))
		}
		got += len(l)
	}
	if err := <-errc; err != nil {
		return "", err
	}
	return strings.TrimSpace(name), nil
}

// tunnelPathMTU is the client's path MTU toward vip as its route cache
// holds it, 0 when it holds none.
func tunnelPathMTU(t *testing.T, vip netip.Addr) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	out, err := lab.IP(ctx, lab.Client, "route", "get", vip.String())
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`\bmtu (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	var n int
	fmt.Sscan(m[1], &n)
	return n
}

// TestTunnelMTU: full-size segments with DF toward a tunnel real do not
// black-hole. The client's 1500-byte packets do not fit the tunnel; the
// director's IPVS answers with fragmentation needed (ICMPv6 packet too big)
// and the client's path MTU to the VIP drops by the encapsulation (20
// bytes IPv4, 40 IPv6); 1 MiB echoed both ways, twice per real, succeeds.
func TestTunnelMTU(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.RouterUp(t)
	for _, h := range tunnelReals {
		tunnelDecapByHand(t, h)
		tunnelBackend(t, h)
	}
	tunnelDirector(t)
	for _, tc := range []struct {
		vip netip.Addr
		mtu int
	}{{drVIP4, 1480}, {drVIP6, 1460}} {
		t.Run(tunnelFamily(tc.vip), func(t *testing.T) {
			if v := tunnelPathMTU(t, tc.vip); v != 0 {
				t.Fatalf("the client has a path MTU %d toward %s before any transfer", v, tc.vip)
			}
			seen := map[string]int{}
			for i := range 4 {
				start := time.Now()
				name, err := tunnelEcho(tc.vip)
				if err != nil {
					t.Fatalf("transfer %d: %v", i+1, err)
				}
				seen[name]++
				t.Logf("transfer %d: %d bytes each way through %s, real %s, %v", i+1, tunnelEchoBytes, tc.vip, name, time.Since(start).Round(time.Millisecond))
			}
			if want := map[string]int{"remote": 2, "rs1": 2}; !maps.Equal(seen, want) {
				t.Errorf("transfers by real %v, want %v", seen, want)
			}
			if v := tunnelPathMTU(t, tc.vip); v != tc.mtu {
				t.Errorf("the client's path MTU toward %s after the transfers: %d, want %d (1500 less the encapsulation)", tc.vip, v, tc.mtu)
			} else {
				t.Logf("the client's path MTU toward %s: %d", tc.vip, v)
			}
		})
	}
}

// tunnelFamily names vip's family: IPv4 or IPv6.
func tunnelFamily(vip netip.Addr) string {
	if vip.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// tunnelCheck runs dsrd realserver check --tunnel in h and returns the
// codes it reports for each VIP (a VIP that passes has none) and whether
// it exited 0.
func tunnelCheck(t *testing.T, h lab.Host, dataDir string) (map[netip.Addr][]string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	out, err := lab.InNS(ctx, h, tunnelProgram(t, "DSRD_BIN", "bin/dsrd"), "realserver", "check", "--tunnel",
		"--vip", drVIP4.String(), "--vip", drVIP6.String(), "--interface", "eth0", "--data-dir", dataDir, "--json")
	var rep struct {
		OK   bool
		VIPs []struct {
			VIP     netip.Addr
			Reasons []struct{ Code, Severity, Interface, Detail string }
		}
	}
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("dsrd realserver check in %s: %v (%v): %q", h, jerr, err, out)
	}
	if (err == nil) != rep.OK {
		t.Errorf("dsrd realserver check in %s: ok %v but error %v", h, rep.OK, err)
	}
	codes := map[netip.Addr][]string{}
	for _, v := range rep.VIPs {
		codes[v.VIP] = []string{}
		for _, r := range v.Reasons {
			if r.Severity == "fail" {
				codes[v.VIP] = append(codes[v.VIP], r.Code)
				t.Logf("%s %s: %s (%s): %s", h, v.VIP, r.Code, r.Interface, r.Detail)
			}
		}
	}
	return codes, rep.OK
}

// tunnelServes reports whether one request to vip is answered by name.
func tunnelServes(vip netip.Addr, name string) error {
	client := lab.HTTPClient(lab.Client, drRequestTimeout)
	for range 2 { // rr over two reals: one of two requests reaches name
		got, _, err := drGet(client, vip)
		if err != nil {
			return err
		}
		if got == name {
			return nil
		}
	}
	return fmt.Errorf("two requests to %s, none answered by %s", vip, name)
}

// TestTunnelRealserverAgent: dsrd realserver --tunnel readies a host
// that has none of it (modules unloaded, VIPs missing), after which
// dsrd realserver check passes and the host serves through the director;
// with the agent stopped, tunl0 and ip6tnl0 down and a strict rp_filter
// on tunl0 (loose on all) break the service and check names each piece;
// the agent started again repairs them, and while it runs it undoes the
// same breakage within seconds.
func TestTunnelRealserverAgent(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.RouterUp(t)
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	// Nothing else in the VM uses them; removing them removes tunl0 and
	// ip6tnl0 from every namespace.
	if _, err := lab.Run(ctx, "modprobe", "-r", "ipip", "ip6_tunnel"); err != nil {
		t.Fatal(err)
	}
	h := lab.Remote
	dataDir := t.TempDir()
	codes, ok := tunnelCheck(t, h, dataDir)
	for _, vip := range []netip.Addr{drVIP4, drVIP6} {
		if ok || !slices.Contains(codes[vip], "tunnel-module-missing") || !slices.Contains(codes[vip], "vip-missing") {
			t.Errorf("check of an unprepared host, %s: %v (ok %v), want tunnel-module-missing and vip-missing", vip, codes[vip], ok)
		}
	}
	// rs1, the other real, is prepared by hand (which loads the modules
	// again: remote then has tunl0 and ip6tnl0, down).
	tunnelDecapByHand(t, lab.RS1)
	for _, r := range tunnelReals {
		tunnelBackend(t, r)
	}
	tunnelDirector(t)

	agentArgs := []string{"realserver", "--tunnel", "--vip", drVIP4.String(), "--vip", drVIP6.String(),
		"--interface", "eth0", "--data-dir", dataDir, "--log-level", "debug"}
	bin := tunnelProgram(t, "DSRD_BIN", "bin/dsrd")
	stop := tunnelStart(t, h, bin, agentArgs...)
	tunnelReady(t, h, dataDir)

	// Stopped (its changes stay: no cleanup-on-exit), then broken.
	stop()
	tunnelBreak(t, h)
	codes, ok = tunnelCheck(t, h, dataDir)
	if ok || !slices.Contains(codes[drVIP4], "tunnel-down") || !slices.Contains(codes[drVIP4], "tunnel-rp-filter") ||
		!slices.Contains(codes[drVIP6], "tunnel-down") || slices.Contains(codes[drVIP6], "tunnel-rp-filter") {
		t.Errorf("check of the broken host: %v (ok %v); want tunnel-down for both VIPs, tunnel-rp-filter for %s only", codes, ok, drVIP4)
	}
	for _, vip := range []netip.Addr{drVIP4, drVIP6} {
		if err := tunnelServes(vip, string(h)); err == nil {
			t.Errorf("%s still answered by %s with its decapsulation broken (the test breaks nothing)", vip, h)
		}
	}
	tunnelStart(t, h, bin, agentArgs...)
	tunnelReady(t, h, dataDir)

	// Broken while the agent runs: repaired from the link events and the
	// sysctl poll (every second).
	tunnelBreak(t, h)
	start := time.Now()
	tunnelReady(t, h, dataDir)
	t.Logf("repaired and serving again %v after the breakage", time.Since(start).Round(100*time.Millisecond))
}

// tunnelBreak undoes h's decapsulation: both tunnel devices down, strict
// rp_filter on tunl0, loose on all.
func tunnelBreak(t *testing.T, h lab.Host) {
	t.Helper()
	lab.MustIPBatch(t, h, "link set tunl0 down", "link set ip6tnl0 down")
	for name, value := range map[string]string{"net.ipv4.conf.tunl0.rp_filter": "1", "net.ipv4.conf.all.rp_filter": "2"} {
		if err := lab.WriteSysctl(h, name, value); err != nil {
			t.Fatal(err)
		}
	}
}

// tunnelRepairBound bounds the agent's first apply or a repair, with the
// check and the requests that confirm it, under TCG.
const tunnelRepairBound = 20 * time.Second

// tunnelReady waits until dsrd realserver check passes in h and both VIPs
// are served by h through the director.
func tunnelReady(t *testing.T, h lab.Host, dataDir string) {
	t.Helper()
	lab.Eventually(t, tunnelRepairBound, 500*time.Millisecond, func() error {
		if codes, ok := tunnelCheck(t, h, dataDir); !ok {
			return fmt.Errorf("check in %s: %v", h, codes)
		}
		for _, vip := range []netip.Addr{drVIP4, drVIP6} {
			if err := tunnelServes(vip, string(h)); err != nil {
				return err
			}
		}
		return nil
	})
}
