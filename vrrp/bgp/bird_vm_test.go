//go:build vmtest

// The speaker against BIRD (Debian's bird2) in the VM lab, with the real
// kernel: BIRD in a network namespace (the router, 192.0.2.1) installs
// what the speaker, in another namespace (192.0.2.2), announces; both are
// plugged into a bridge in a third namespace, so that cutting the
// speaker's port leaves the router's own link up and only BFD or the hold
// timer can tell. Run with:
//
//	DSRD_E2E_PKG=./vrrp/bgp tests/vm/e2e -test.run 'BIRD'
package bgp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil/privileged"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const (
	vmRouter  = "192.0.2.1"
	vmSpeaker = "192.0.2.2"
	vmVIP     = "203.0.113.10/32"
	// helperEnv makes TestVMSpeakerHelper run the speaker (in the
	// speaker's namespace, where the parent test starts it): "bfd" or "hold".
	helperEnv = "DSRD_BGP_VM_HELPER"
	// BFD timers of both sides: gobgp's defaults, 900 ms to detect.
	vmBFDInterval   = 300 * time.Millisecond
	vmBFDMultiplier = 3
)

// TestBIRDDetectionBFD: with BFD, the router drops the route within about
// multiplier x interval of the link being cut.
func TestBIRDDetectionBFD(t *testing.T) {
	d := birdDetection(t, "bfd")
	t.Logf("BFD %s x %d: the route left the router's kernel table %s after the link was cut", vmBFDInterval, vmBFDMultiplier, d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Errorf("BFD detection took %s, want well under the 9 s hold time", d)
	}
}

// TestBIRDDetectionHoldTimer: without BFD, the router drops the route when
// its hold timer (9 s, dsrd's default) expires.
func TestBIRDDetectionHoldTimer(t *testing.T) {
	d := birdDetection(t, "hold")
	t.Logf("hold timer %s, no BFD: the route left the router's kernel table %s after the link was cut", DefaultHoldTime, d.Round(time.Millisecond))
	if d > DefaultHoldTime+5*time.Second {
		t.Errorf("hold timer detection took %s, want at most about %s", d, DefaultHoldTime)
	}
}

func vmRun(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func birdConf(bfd bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\n", vmRouter)
	b.WriteString("protocol device { scan time 10; }\n")
	b.WriteString("protocol kernel { ipv4 { import none; export all; }; }\n")
	if bfd {
		fmt.Fprintf(&b, "protocol bfd { interface \"eth0\" { min rx interval %d ms; min tx interval %d ms; multiplier %d; }; }\n",
			vmBFDInterval.Milliseconds(), vmBFDInterval.Milliseconds(), vmBFDMultiplier)
	}
	fmt.Fprintf(&b, "protocol bgp dsrd {\n  local %s as %d;\n  neighbor %s as %d;\n  hold time 90;\n  ipv4 { import all; export none; };\n", vmRouter, routerASN, vmSpeaker, speakerASN)
	if bfd {
		b.WriteString("  bfd on;\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// birdDetection builds the lab (birdLab), cuts the speaker's link and
// returns how long the route took to go.
func birdDetection(t *testing.T, mode string) time.Duration {
	l := birdLab(t, mode)
	// Cut the speaker's port on the switch: the router's link stays up.
	port, err := l.lan.LinkByName("v-spk")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.lan.LinkSetDown(port); err != nil {
		t.Fatalf("cut the link: %v", err)
	}
	cut := time.Now()
	deadline := cut.Add(60 * time.Second)
	for {
		ok, state := l.present()
		if !ok {
			return time.Since(cut)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VIP still in the router's kernel table 60s after the link was cut: %s", state)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBIRDRestartBFD: the router ends the session itself, with BFD (birdc
// restart: a Cease, and BIRD drops its BFD session, so the speaker's BFD
// session goes down while its BGP session is already down); the next
// session must then stay up. gobgp v4.8.0 resets its peer when its BFD
// session goes down, and a reset while the session is down waited for
// the next session and ended it as soon as it was established ("BFD is
// down"): the speaker renews such a peer (watchSessions).
func TestBIRDRestartBFD(t *testing.T) {
	l := birdLab(t, "bfd")
	birdc := func(args ...string) string {
		out, err := exec.Command("birdc", append([]string{"-s", l.ctl}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("birdc %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	birdc("restart", "dsrd")
	restart := time.Now()
	// The route goes, comes back, and stays for 4 s (4 BFD detection
	// times: a reset pending from the session before ends the new one
	// within milliseconds).
	const stay = 4 * time.Second
	var back time.Time
	deadline := restart.Add(60 * time.Second)
	for {
		ok, state := l.present()
		switch {
		case ok && back.IsZero():
			back = time.Now()
		case !ok && !back.IsZero():
			t.Logf("the route left again %s after it came back", time.Since(back).Round(time.Millisecond))
			back = time.Time{}
		}
		if !back.IsZero() && time.Since(back) >= stay {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VIP not back for %v in the router's kernel table within 60s of birdc restart: %s", stay, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("birdc restart: the route back after %s", back.Sub(restart).Round(time.Millisecond))
	if out := birdc("show", "protocols", "all", "dsrd"); strings.Contains(out, "BFD is down") {
		t.Errorf("after birdc restart, the speaker reset the next session with \"BFD is down\" (a reset left pending while the session was down):\n%s", out)
	}
}

// birdLabT is the lab of the BIRD tests: the lan's netlink handle, the
// router's BIRD control socket, and whether the router's kernel routes
// the VIP through the speaker.
type birdLabT struct {
	lan     *netlink.Handle
	ctl     string
	present func() (bool, string)
}

// birdLab builds the lab, starts BIRD and the speaker (mode "bfd" or
// "hold"), and waits for the VIP in the router's kernel table.
func birdLab(t *testing.T, mode string) birdLabT {
	privileged.Require(t,
		privileged.NetNS("to build the router's and the speaker's network namespaces"),
		privileged.Need{What: "bird (Debian's bird2), the router", Missing: func() error {
			_, err := exec.LookPath("bird")
			return err
		}})
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	lan, rtr, spk := "bgplan"+suffix, "bgprtr"+suffix, "bgpspk"+suffix
	for _, ns := range []string{lan, rtr, spk} {
		vmRun(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	for _, c := range [][]string{
		{"-n", lan, "link", "add", "br0", "type", "bridge"},
		{"-n", lan, "link", "set", "br0", "up"},
		{"-n", rtr, "link", "add", "eth0", "type", "veth", "peer", "name", "v-rtr", "netns", lan},
		{"-n", spk, "link", "add", "eth0", "type", "veth", "peer", "name", "v-spk", "netns", lan},
		{"-n", lan, "link", "set", "v-rtr", "master", "br0", "up"},
		{"-n", lan, "link", "set", "v-spk", "master", "br0", "up"},
		{"-n", rtr, "addr", "add", vmRouter + "/24", "dev", "eth0"},
		{"-n", spk, "addr", "add", vmSpeaker + "/24", "dev", "eth0"},
		{"-n", rtr, "link", "set", "eth0", "up"},
		{"-n", spk, "link", "set", "eth0", "up"},
		{"-n", rtr, "link", "set", "lo", "up"},
		{"-n", spk, "link", "set", "lo", "up"},
	} {
		vmRun(t, append([]string{"ip"}, c...)...)
	}

	// The router.
	dir := t.TempDir()
	conf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(conf, []byte(birdConf(mode == "bfd")), 0o644); err != nil {
		t.Fatal(err)
	}
	bird := exec.Command("ip", "netns", "exec", rtr, "bird", "-f", "-c", conf, "-s", filepath.Join(dir, "bird.ctl"), "-P", filepath.Join(dir, "bird.pid"))
	bird.Stdout, bird.Stderr = os.Stderr, os.Stderr
	if err := bird.Start(); err != nil {
		t.Fatalf("bird: %v", err)
	}
	t.Cleanup(func() { bird.Process.Kill(); bird.Wait() })

	// The speaker, in its namespace: this test binary again, running
	// TestVMSpeakerHelper.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	helper := exec.Command("ip", "netns", "exec", spk, self, "-test.run=^TestVMSpeakerHelper$", "-test.v")
	helper.Env = append(os.Environ(), helperEnv+"="+mode)
	helper.Stderr = os.Stderr
	stdin, err := helper.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatalf("speaker: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper stops the speaker and exits
		done := make(chan error, 1)
		go func() { done <- helper.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			helper.Process.Kill()
			<-done
		}
	})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(os.Stderr, "speaker:", line)
			if line == "HELPER ready" {
				close(ready)
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	select {
	case <-ready:
	case <-time.After(90 * time.Second):
		t.Fatal("the speaker's session (and BFD) not up after 90s")
	}

	rtrNS, err := netns.GetFromName(rtr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rtrNS.Close() })
	rh, err := netlink.NewHandleAt(rtrNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rh.Close)
	lanNS, err := netns.GetFromName(lan)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lanNS.Close() })
	lh, err := netlink.NewHandleAt(lanNS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lh.Close)

	_, vip, _ := net.ParseCIDR(vmVIP)
	present := func() (bool, string) {
		routes, err := rh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: vip}, netlink.RT_FILTER_DST)
		if err != nil {
			t.Fatalf("router: list routes: %v", err)
		}
		for _, r := range routes {
			if r.Gw.Equal(net.ParseIP(vmSpeaker)) {
				return true, r.String()
			}
		}
		return false, fmt.Sprint(routes)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := present()
		if ok {
			t.Logf("router's kernel: %s", state)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the VIP not in the router's kernel table after 60s: %s", state)
		}
		time.Sleep(20 * time.Millisecond)
	}

	return birdLabT{lan: lh, ctl: filepath.Join(dir, "bird.ctl"), present: present}
}

// TestVMSpeakerHelper is the speaker's side of the BIRD tests, started by
// them in the speaker's network namespace (gobgp's goroutines run on any
// thread, so the whole process must be in the namespace). It announces the
// VIP, says "HELPER ready" once the session (and BFD) is up, and stops the
// speaker when its stdin closes.
func TestVMSpeakerHelper(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("the speaker's side of TestBIRDDetection*, which starts it")
	}
	cfg := Config{
		ASN:      speakerASN,
		RouterID: netip.MustParseAddr(vmSpeaker),
		Peers:    []Peer{{Address: netip.MustParseAddr(vmRouter), ASN: routerASN}},
	}
	if mode == "bfd" {
		cfg.Peers[0].BFD = &BFD{MinRx: vmBFDInterval, MinTx: vmBFDInterval, Multiplier: vmBFDMultiplier}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := New(log, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.Stop(sctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	if err := s.Announce(ctx, []netip.Prefix{netip.MustParsePrefix(vmVIP)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(80 * time.Second)
	for {
		st := s.Status()
		p := st.Peers[0]
		if p.State == "established" && (mode != "bfd" || p.BFD == "up") {
			fmt.Printf("status %+v\n", p)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not up after 80s: %+v", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Println("HELPER ready")
	if _, err := io.Copy(io.Discard, os.Stdin); err != nil && !errors.Is(err, os.ErrClosed) {
		t.Logf("stdin: %v", err)
	}
}
