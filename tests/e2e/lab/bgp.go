package lab

// The BGP/ECMP extension of the lab (issue 14): a router in front of the
// directors, running BIRD or FRR, and a client behind it. tests/vm/topology
// "router up" builds the network; this file starts the routing daemons,
// reads the router's multipath routes and its per-flow choices, cuts a
// director's link, and counts the flows each director receives.
//
//	remote (198.51.100.10) -- eth1 router eth0 (192.0.2.1) -- br0 -- dir1..dir3 (192.0.2.11..13)
//
// The configuration files are in tests/vm/bgp; docs/bgp-routers.md quotes
// the router's.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The hosts of the BGP extension (tests/vm/topology router up).
const (
	// Router is on the directors' segment (eth0) and on the remote
	// client's (eth1).
	Router Host = "router"
	// Remote is a client behind the router.
	Remote Host = "remote"
)

// Addresses of the BGP extension.
var (
	RouterIPv4 = netip.MustParseAddr("192.0.2.1")
	RouterIPv6 = netip.MustParseAddr("2001:db8::1")
	RemoteIPv4 = netip.MustParseAddr("198.51.100.10")
	RemoteIPv6 = netip.MustParseAddr("2001:db8:100::10")
)

// Directors lists the director hosts of the standard lab.
func Directors() []Host { return []Host{Dir1, Dir2, Dir3} }

// LinkLocal is h's link-local address on eth0, fe80::ff:fe00:NN.
func (h Host) LinkLocal() netip.Addr {
	return netip.MustParseAddr("fe80::ff:fe00:" + strconv.Itoa(h.part()))
}

// DirectorAt is the director whose segment address (IPv4, IPv6 or IPv6
// link-local: FRR installs an eBGP neighbour's IPv6 routes via its
// link-local address) is a.
func DirectorAt(a netip.Addr) (Host, bool) {
	a = a.WithZone("")
	for _, d := range Directors() {
		if a == d.IPv4() || a == d.IPv6() || a == d.LinkLocal() {
			return d, true
		}
	}
	return "", false
}

// RouterUp adds the router and the remote client to a lab that is up (Up
// first); they are removed when the test ends.
func RouterUp(t testing.TB) {
	t.Helper()
	if err := Topology(context.Background(), "router", "up"); err != nil {
		t.Fatalf("router up: %v", err)
	}
	t.Cleanup(func() {
		if err := Topology(context.Background(), "router", "down"); err != nil {
			t.Errorf("router down: %v", err)
		}
	})
}

// RouterKind selects the routing software of the router.
type RouterKind string

// The routers the lab runs.
const (
	BIRD RouterKind = "bird" // Debian package bird2
	FRR  RouterKind = "frr"  // Debian package frr: zebra, bgpd, bfdd
)

// BGPConfig is the path of a file in tests/vm/bgp.
func BGPConfig(name string) (string, error) {
	repo, err := Repo()
	if err != nil {
		return "", err
	}
	p := filepath.Join(repo, "tests", "vm", "bgp", name)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// frrDir is where Debian's frr package puts the daemons.
const frrDir = "/usr/lib/frr"

// RequireProgram fails the test (never skips) when a program the lab needs
// is missing, naming the Debian package that has it.
func RequireProgram(t testing.TB, program, pkg string) string {
	t.Helper()
	p, err := findProgram(program)
	if err != nil {
		t.Fatalf("the lab needs %s, which is missing (%v): install the Debian package %s (apt-get install %s; .ci/run does)", program, err, pkg, pkg)
	}
	return p
}

func findProgram(program string) (string, error) {
	if strings.Contains(program, "/") {
		fi, err := os.Stat(program)
		if err != nil {
			return "", err
		}
		if fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not executable", program)
		}
		return program, nil
	}
	return exec.LookPath(program)
}

// bgpState is where the daemons' sockets, pid files and logs go (tmpfs).
func bgpState() (string, error) {
	dir := "/run/dsrd-lab/bgp"
	return dir, os.MkdirAll(dir, 0o755)
}

// Daemon is a program running in a namespace, in the foreground, its output
// in a log file.
type Daemon struct {
	Name string // for messages: "bird in router"
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startDaemon starts argv in h (ip netns exec, which execs the program in
// place: the child's pid is the program's) with its output in logPath.
func startDaemon(h Host, name, logPath string, argv ...string) (*Daemon, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(h)}, argv...)...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &Daemon{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// Running reports whether the daemon has not exited.
func (d *Daemon) Running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// Exited is an error saying that the daemon exited, with its log's tail, or
// nil while it runs.
func (d *Daemon) Exited() error {
	if d.Running() {
		return nil
	}
	return fmt.Errorf("%s exited (%v): %s", d.Name, d.err, d.LogTail(10))
}

// LogTail is the last n lines of the daemon's log.
func (d *Daemon) LogTail(n int) string {
	b, err := os.ReadFile(d.Log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// daemonStopTimeout bounds a daemon's exit after SIGTERM.
const daemonStopTimeout = 5 * time.Second

// Stop ends the daemon: SIGTERM, SIGKILL after daemonStopTimeout.
func (d *Daemon) Stop() {
	if !d.Running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(daemonStopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// Kill ends the daemon at once (SIGKILL): a crash, as the router sees it.
func (d *Daemon) Kill() {
	if d.Running() {
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// daemonStartTimeout bounds a daemon's start (its sockets appearing). BIRD
// and FRR start in well under a second; under TCG on a loaded machine a few.
const daemonStartTimeout = 20 * time.Second

// waitFiles waits until every path exists, or the daemon exits.
func waitFiles(d *Daemon, paths ...string) error {
	return Poll(daemonStartTimeout, 20*time.Millisecond, func() error {
		if err := d.Exited(); err != nil {
			return err
		}
		for _, p := range paths {
			if _, err := os.Stat(p); err != nil {
				return fmt.Errorf("%s: no %s after %v", d.Name, p, daemonStartTimeout)
			}
		}
		return nil
	})
}

// keepLogOnFailure shows the daemon's log tail when the test failed.
func keepLogOnFailure(t testing.TB, d *Daemon) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s (%s), last lines:\n%s", d.Name, d.Log, d.LogTail(25))
		}
	})
}

// StartBIRD runs BIRD in h with the configuration conf (a file name in
// tests/vm/bgp or a path), its control socket in the lab's state directory;
// it is stopped when the test ends.
func StartBIRD(t testing.TB, h Host, conf string) *BIRDDaemon {
	t.Helper()
	bird := RequireProgram(t, "bird", "bird2")
	RequireProgram(t, "birdc", "bird2")
	path := conf
	if !strings.Contains(conf, "/") {
		var err error
		if path, err = BGPConfig(conf); err != nil {
			t.Fatal(err)
		}
	}
	state, err := bgpState()
	if err != nil {
		t.Fatal(err)
	}
	b := &BIRDDaemon{Socket: filepath.Join(state, "bird-"+string(h)+".ctl")}
	_ = os.Remove(b.Socket)
	d, err := startDaemon(h, "bird in "+string(h), filepath.Join(state, "bird-"+string(h)+".log"),
		bird, "-f", "-c", path, "-s", b.Socket, "-P", filepath.Join(state, "bird-"+string(h)+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	b.Daemon = d
	keepLogOnFailure(t, d)
	t.Cleanup(d.Stop)
	if err := waitFiles(d, b.Socket); err != nil {
		t.Fatal(err)
	}
	return b
}

// Configure makes bird load the configuration file path ("birdc
// configure"): a soft reconfiguration, sessions whose settings did not
// change stay up.
func (b *BIRDDaemon) Configure(ctx context.Context, path string) error {
	out, err := Run(ctx, "birdc", "-s", b.Socket, "configure", strconv.Quote(path))
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Reconfigured") && !strings.Contains(out, "Reconfiguration in progress") {
		return fmt.Errorf("birdc configure %s: %s", path, strings.TrimSpace(out))
	}
	return nil
}

// BIRDDaemon is a running bird.
type BIRDDaemon struct {
	*Daemon
	Socket string
}

// Show runs "birdc -s SOCKET show ARGS" (the control socket is a file: no
// namespace needed).
func (b *BIRDDaemon) Show(ctx context.Context, args ...string) (string, error) {
	return Run(ctx, "birdc", append([]string{"-s", b.Socket, "show"}, args...)...)
}

// EstablishedSessions counts BGP protocols in state Established.
func (b *BIRDDaemon) EstablishedSessions(ctx context.Context) (int, error) {
	out, err := b.Show(ctx, "protocols")
	if err != nil {
		return 0, err
	}
	return ParseBIRDEstablished(out), nil
}

// ParseBIRDEstablished counts the BGP protocols of "birdc show protocols"
// whose info column says Established.
func ParseBIRDEstablished(out string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[1] == "BGP" && f[3] == "up" && f[len(f)-1] == "Established" {
			n++
		}
	}
	return n
}

// BGPRouter is the router's routing software, BIRD or FRR.
type BGPRouter struct {
	Kind    RouterKind
	daemons []*Daemon
	bird    *BIRDDaemon
	vtyDir  string // FRR's vty sockets
}

// StartRouter runs BIRD (tests/vm/bgp/bird-router.conf) or FRR (zebra,
// bgpd and bfdd, configured with tests/vm/bgp/frr-router.conf through vtysh)
// in the router namespace; it is stopped when the test ends (or by Stop).
func StartRouter(t testing.TB, kind RouterKind) *BGPRouter {
	t.Helper()
	r := &BGPRouter{Kind: kind}
	switch kind {
	case BIRD:
		r.bird = StartBIRD(t, Router, "bird-router.conf")
		r.daemons = []*Daemon{r.bird.Daemon}
	case FRR:
		r.startFRR(t)
	default:
		t.Fatalf("unknown router kind %q", kind)
	}
	return r
}

// StartBIRDRouter runs BIRD in the router namespace with the configuration
// file conf (a path, e.g. bird-router.conf with other BFD timers); it is
// stopped when the test ends (or by Stop).
func StartBIRDRouter(t testing.TB, conf string) *BGPRouter {
	t.Helper()
	r := &BGPRouter{Kind: BIRD, bird: StartBIRD(t, Router, conf)}
	r.daemons = []*Daemon{r.bird.Daemon}
	return r
}

// startFRR starts zebra, then bgpd and bfdd (both talk to zebra), then
// applies the configuration with vtysh.
func (r *BGPRouter) startFRR(t testing.TB) {
	t.Helper()
	zebra := RequireProgram(t, frrDir+"/zebra", "frr")
	bgpd := RequireProgram(t, frrDir+"/bgpd", "frr")
	bfdd := RequireProgram(t, frrDir+"/bfdd", "frr")
	vtysh := RequireProgram(t, "vtysh", "frr")
	conf, err := BGPConfig("frr-router.conf")
	if err != nil {
		t.Fatal(err)
	}
	state, err := bgpState()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(state, "frr")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The daemons run as Debian's frr user (in group frrvty, which FRR
	// insists its user be in), keeping the capabilities they need.
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatalf("the frr user is missing (%v): install the Debian package frr (apt-get install frr; .ci/run does)", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	r.vtyDir = dir
	zapi := filepath.Join(dir, "zserv.api")
	// No vty TCP port (-P 0), sockets and pid files in dir, logs to stdout
	// (the daemon's log file).
	common := func(name string) []string {
		return []string{"-u", "frr", "-g", "frr", "-P", "0", "--vty_socket", dir,
			"-i", filepath.Join(dir, name+".pid"), "-z", zapi, "--log", "stdout", "--log-level", "info"}
	}
	start := func(name, bin string, extra ...string) *Daemon {
		d, err := startDaemon(Router, name+" in router", filepath.Join(dir, name+".log"),
			append(append([]string{bin}, common(name)...), extra...)...)
		if err != nil {
			t.Fatal(err)
		}
		r.daemons = append(r.daemons, d)
		keepLogOnFailure(t, d)
		t.Cleanup(d.Stop)
		return d
	}
	z := start("zebra", zebra)
	if err := waitFiles(z, zapi, filepath.Join(dir, "zebra.vty")); err != nil {
		t.Fatal(err)
	}
	b := start("bgpd", bgpd)
	f := start("bfdd", bfdd, "--bfdctl", filepath.Join(dir, "bfdd.sock"))
	if err := waitFiles(b, filepath.Join(dir, "bgpd.vty")); err != nil {
		t.Fatal(err)
	}
	if err := waitFiles(f, filepath.Join(dir, "bfdd.vty")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	if out, err := Run(ctx, vtysh, "--vty_socket", dir, "-f", conf); err != nil {
		t.Fatalf("apply %s: %v\n%s", conf, err, out)
	}
}

// TraceSessions makes the router log its BFD and BGP sessions' state
// changes and events (BIRD: "birdc debug PROTOCOL { states, events }" for
// bfd1 and every dir* protocol; why a session went down: "Session to ADDR
// expired" is a BFD detection timeout), to read with LogLines. FRR: a no-op.
func (r *BGPRouter) TraceSessions(ctx context.Context) error {
	if r.Kind != BIRD {
		return nil
	}
	for _, proto := range []string{"bfd1", `"dir*"`} {
		if out, err := Run(ctx, "birdc", "-s", r.bird.Socket, "debug", proto, "{ states, events }"); err != nil {
			return fmt.Errorf("birdc debug %s: %v: %s", proto, err, strings.TrimSpace(out))
		}
	}
	return nil
}

// LogLines are the lines of the router's logs that contain any of subs.
func (r *BGPRouter) LogLines(subs ...string) []string {
	var res []string
	for _, d := range r.daemons {
		b, err := os.ReadFile(d.Log)
		if err != nil {
			res = append(res, fmt.Sprintf("%s: %v", d.Name, err))
			continue
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			for _, s := range subs {
				if strings.Contains(line, s) {
					res = append(res, line)
					break
				}
			}
		}
	}
	return res
}

// Stop stops the router's daemons (FRR's in reverse start order).
func (r *BGPRouter) Stop() {
	for i := len(r.daemons) - 1; i >= 0; i-- {
		r.daemons[i].Stop()
	}
}

// Exited is an error when one of the router's daemons has exited.
func (r *BGPRouter) Exited() error {
	for _, d := range r.daemons {
		if err := d.Exited(); err != nil {
			return err
		}
	}
	return nil
}

// VTY runs a vtysh command against the FRR router.
func (r *BGPRouter) VTY(ctx context.Context, command string) (string, error) {
	if r.Kind != FRR {
		return "", fmt.Errorf("vtysh: the router runs %s", r.Kind)
	}
	return Run(ctx, "vtysh", "--vty_socket", r.vtyDir, "-c", command)
}

// EstablishedSessions counts the router's BGP sessions in state
// Established (each address family of a director is a session).
func (r *BGPRouter) EstablishedSessions(ctx context.Context) (int, error) {
	if err := r.Exited(); err != nil {
		return 0, err
	}
	if r.Kind == BIRD {
		return r.bird.EstablishedSessions(ctx)
	}
	out, err := r.VTY(ctx, "show bgp neighbors json")
	if err != nil {
		return 0, err
	}
	return ParseFRREstablished(out)
}

// ParseFRREstablished counts the neighbours of vtysh's "show bgp neighbors
// json" whose bgpState is Established.
func ParseFRREstablished(out string) (int, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return 0, fmt.Errorf("show bgp neighbors json: %w", err)
	}
	n := 0
	for k, v := range m {
		if _, err := netip.ParseAddr(k); err != nil {
			continue
		}
		var nb struct {
			BGPState string `json:"bgpState"`
		}
		if err := json.Unmarshal(v, &nb); err != nil {
			return 0, fmt.Errorf("show bgp neighbors json, %s: %w", k, err)
		}
		if nb.BGPState == "Established" {
			n++
		}
	}
	return n, nil
}

// WaitEstablished waits until exactly n sessions are established, within
// timeout, and returns how long that took.
func (r *BGPRouter) WaitEstablished(t testing.TB, n int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last int
	err := Poll(timeout, 200*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
		defer cancel()
		got, err := r.EstablishedSessions(ctx)
		if err != nil {
			return err
		}
		last = got
		if got != n {
			return fmt.Errorf("%d of %d BGP sessions established", got, n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s router: not within %v: %v (last count %d)", r.Kind, timeout, err, last)
	}
	return time.Since(start)
}

// OpenNetlink opens a netlink (route) handle inside h's namespace; close it
// with Close.
func OpenNetlink(h Host) (*netlink.Handle, error) {
	var nh *netlink.Handle
	err := Do(h, func() error {
		var err error
		nh, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", h, err)
	}
	return nh, nil
}

// NextHops reads the kernel's route for the host prefix of vip (main
// table) through nh and returns its gateways, sorted: one for a plain
// route, one per path for a multipath one, none when there is no route.
func NextHops(nh *netlink.Handle, vip netip.Addr) ([]netip.Addr, error) {
	family := netlink.FAMILY_V4
	if vip.Is6() {
		family = netlink.FAMILY_V6
	}
	dst := &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(vip.BitLen(), vip.BitLen())}
	routes, err := nh.RouteListFiltered(family, &netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("route list %s: %w", vip, err)
	}
	var gws []netip.Addr
	add := func(ip net.IP) {
		if a, ok := netip.AddrFromSlice(ip); ok {
			gws = append(gws, a.Unmap())
		}
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() != dst.String() {
			continue
		}
		if r.Gw != nil {
			add(r.Gw)
		}
		for _, p := range r.MultiPath {
			if p.Gw != nil {
				add(p.Gw)
			}
		}
	}
	sort.Slice(gws, func(i, j int) bool { return gws[i].Less(gws[j]) })
	return gws, nil
}

// RouterNextHops is NextHops in the router's namespace.
func RouterNextHops(vip netip.Addr) ([]netip.Addr, error) {
	nh, err := OpenNetlink(Router)
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	return NextHops(nh, vip)
}

// NextHopDirectors maps next hops to directors; an address that is no
// director's is an error.
func NextHopDirectors(gws []netip.Addr) ([]Host, error) {
	var hs []Host
	for _, g := range gws {
		d, ok := DirectorAt(g)
		if !ok {
			return nil, fmt.Errorf("next hop %s is no director's", g)
		}
		hs = append(hs, d)
	}
	return hs, nil
}

// WaitNextHops polls the router's route for vip every interval until
// cond(next hops) holds, within timeout; it returns when that was first
// seen and the next hops then. Polling is in-process (netlink), a
// millisecond or so per poll even under TCG.
func WaitNextHops(vip netip.Addr, timeout, interval time.Duration, cond func([]netip.Addr) bool) (time.Time, []netip.Addr, error) {
	nh, err := OpenNetlink(Router)
	if err != nil {
		return time.Time{}, nil, err
	}
	defer nh.Close()
	deadline := time.Now().Add(timeout)
	var last []netip.Addr
	for {
		gws, err := NextHops(nh, vip)
		now := time.Now()
		if err != nil {
			return now, nil, err
		}
		last = gws
		if cond(gws) {
			return now, gws, nil
		}
		if now.After(deadline) {
			return now, last, fmt.Errorf("router's next hops for %s still %v after %v", vip, last, timeout)
		}
		time.Sleep(interval)
	}
}

// Flow is what the router's multipath hash sees of a packet.
type Flow struct {
	Src, Dst     netip.Addr
	Proto        string // "tcp", "udp"
	SPort, DPort uint16
}

// RouteGetFlows asks h's kernel which next hop it picks for each flow
// arriving on iif: "ip route get DST from SRC iif IIF ipproto P sport S
// dport D", all in one ip process (ip -batch). The kernel builds a packet
// with those headers and routes it as a received one, through the same
// multipath hash a forwarded packet takes.
func RouteGetFlows(ctx context.Context, h Host, iif string, flows []Flow) ([]netip.Addr, error) {
	lines := make([]string, len(flows))
	for i, f := range flows {
		lines[i] = fmt.Sprintf("route get %s from %s iif %s ipproto %s sport %d dport %d",
			f.Dst, f.Src, iif, f.Proto, f.SPort, f.DPort)
	}
	out, err := RunInput(ctx, strings.NewReader(strings.Join(lines, "\n")+"\n"), "ip", "-n", string(h), "-batch", "-")
	if err != nil {
		return nil, err
	}
	return ParseRouteGet(out, len(flows))
}

var viaRE = regexp.MustCompile(`\bvia (?:inet6? )?(\S+)`)

// ParseRouteGet reads the gateways of n "ip route get" answers: each
// answer starts with an unindented line (continuation lines such as
// "    cache" are indented).
func ParseRouteGet(out string, n int) ([]netip.Addr, error) {
	var gws []netip.Addr
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		m := viaRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("ip route get: no gateway in %q", line)
		}
		a, err := netip.ParseAddr(m[1])
		if err != nil {
			return nil, fmt.Errorf("ip route get: %q: %w", line, err)
		}
		gws = append(gws, a)
	}
	if len(gws) != n {
		return nil, fmt.Errorf("ip route get: %d answers for %d flows:\n%s", len(gws), n, out)
	}
	return gws, nil
}

// Flows is count flows from src to dst:dport, source ports sport0,
// sport0+1, ...
func Flows(proto string, src netip.Addr, dst netip.AddrPort, sport0 uint16, count int) []Flow {
	fs := make([]Flow, count)
	for i := range fs {
		fs[i] = Flow{Src: src, Dst: dst.Addr(), Proto: proto, SPort: sport0 + uint16(i), DPort: dst.Port()}
	}
	return fs
}

// FlowsPerDirector asks the router which director each flow goes to
// (RouteGetFlows, as arriving from the remote client on eth1) and counts
// them per director.
func FlowsPerDirector(ctx context.Context, flows []Flow) (map[Host]int, error) {
	gws, err := RouteGetFlows(ctx, Router, "eth1", flows)
	if err != nil {
		return nil, err
	}
	hs, err := NextHopDirectors(gws)
	if err != nil {
		return nil, err
	}
	m := map[Host]int{}
	for _, h := range hs {
		m[h]++
	}
	return m, nil
}

// SetSwitchPort sets the bridge state of h's port on the switch: forwarding
// (3) or disabled (0). A disabled port neither forwards nor receives while
// both veth ends keep their carrier: a silent link failure that only BFD
// (or a hold timer) can see. In-process (netlink), so the moment of the cut
// is known to the millisecond.
func SetSwitchPort(h Host, forwarding bool) error {
	state := byte(0)
	if forwarding {
		state = 3
	}
	port := "v-" + string(h)
	return Do("lan", func() error {
		link, err := netlink.LinkByName(port)
		if err != nil {
			return fmt.Errorf("switch port %s: %w", port, err)
		}
		req := nl.NewNetlinkRequest(unix.RTM_SETLINK, unix.NLM_F_ACK)
		msg := nl.NewIfInfomsg(unix.AF_BRIDGE)
		msg.Index = int32(link.Attrs().Index)
		req.AddData(msg)
		info := nl.NewRtAttr(unix.IFLA_PROTINFO|unix.NLA_F_NESTED, nil)
		info.AddRtAttr(nl.IFLA_BRPORT_STATE, []byte{state})
		req.AddData(info)
		if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
			return fmt.Errorf("switch port %s state %d: %w", port, state, err)
		}
		return nil
	})
}

// CutLink disables h's switch port (SetSwitchPort) and restores it when the
// test ends if the test did not; RestoreLink restores it.
func CutLink(t testing.TB, h Host) time.Time {
	t.Helper()
	if err := SetSwitchPort(h, false); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	t.Cleanup(func() { _ = SetSwitchPort(h, true) })
	return at
}

// RestoreLink sets h's switch port forwarding again.
func RestoreLink(t testing.TB, h Host) {
	t.Helper()
	if err := SetSwitchPort(h, true); err != nil {
		t.Fatal(err)
	}
}

// nftTable is the table CountPackets adds to each director.
const nftTable = "dsrd_lab_flows"

// PacketCounter counts, on each director, the UDP packets to one address
// and port, in an nftables counter at prerouting (before anything could
// drop them; a director without the VIP drops them after).
type PacketCounter struct {
	dirs []Host
}

// StartPacketCounter adds the counter to each director; it is removed when
// the test ends.
func StartPacketCounter(t testing.TB, dst netip.AddrPort, dirs ...Host) *PacketCounter {
	t.Helper()
	nft := RequireProgram(t, "nft", "nftables")
	match := "ip daddr"
	if dst.Addr().Is6() {
		match = "ip6 daddr"
	}
	rules := fmt.Sprintf(`table inet %s {
	counter flows {
	}
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		%s %s udp dport %d counter name "flows"
	}
}
`, nftTable, match, dst.Addr(), dst.Port())
	for _, d := range dirs {
		ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
		_, err := RunInput(ctx, strings.NewReader(rules), "ip", "netns", "exec", string(d), nft, "-f", "-")
		cancel()
		if err != nil {
			t.Fatalf("nftables counter in %s: %v", d, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
			defer cancel()
			_, _ = InNS(ctx, d, nft, "delete", "table", "inet", nftTable)
		})
	}
	return &PacketCounter{dirs: dirs}
}

var packetsRE = regexp.MustCompile(`packets (\d+)`)

// Counts reads each director's counter.
func (c *PacketCounter) Counts(ctx context.Context) (map[Host]int, error) {
	m := map[Host]int{}
	for _, d := range c.dirs {
		out, err := InNS(ctx, d, "nft", "list", "counter", "inet", nftTable, "flows")
		if err != nil {
			return nil, err
		}
		mm := packetsRE.FindStringSubmatch(out)
		if mm == nil {
			return nil, fmt.Errorf("nft counter in %s: no packet count in %q", d, out)
		}
		n, _ := strconv.Atoi(mm[1])
		m[d] = n
	}
	return m, nil
}

// SendUDPFlows sends one datagram per flow from h, each from its own source
// port (flows' Src, SPort) to its Dst:DPort. Nothing answers: captures or
// counters on the directors see them.
//
// The sockets are not connected: a connected socket gives its packets a
// random flow hash (sk_txhash), which survives the veth into the router's
// namespace, and the router's multipath choice would then follow that hash
// (skb->l4_hash) instead of the five-tuple. An unconnected socket's packets
// carry no hash, so the router hashes their headers, as it does for
// packets from a NIC without receive hashing. (A NIC with RSS hands over
// its own five-tuple hash: a different function of the same fields.)
func SendUDPFlows(h Host, flows []Flow) error {
	return Do(h, func() error {
		for _, f := range flows {
			if f.Proto != "udp" {
				return fmt.Errorf("flow %v: not udp", f)
			}
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(f.Src, f.SPort)))
			if err != nil {
				return fmt.Errorf("flow from port %d: %w", f.SPort, err)
			}
			_, err = c.WriteToUDPAddrPort([]byte("dsrd-lab flow\n"), netip.AddrPortFrom(f.Dst, f.DPort))
			c.Close()
			if err != nil {
				return fmt.Errorf("flow from port %d: %w", f.SPort, err)
			}
		}
		return nil
	})
}

// FlowCapture records, per director, the source ports of the UDP packets
// to one address and port that reach its eth0: which director each flow
// went to.
type FlowCapture struct {
	dst  netip.AddrPort
	caps map[Host]*ClusterCapture
}

// StartFlowCapture starts capturing on each director's eth0 (AF_PACKET, in
// process); it is stopped when the test ends, or by Stop.
func StartFlowCapture(t testing.TB, dst netip.AddrPort, dirs ...Host) *FlowCapture {
	t.Helper()
	fc := &FlowCapture{dst: dst, caps: map[Host]*ClusterCapture{}}
	for _, d := range dirs {
		c, err := StartClusterCapture(d)
		if err != nil {
			t.Fatal(err)
		}
		fc.caps[d] = c
		t.Cleanup(func() { _, _ = c.Stop() })
	}
	return fc
}

// Directors maps each source port seen (UDP to dst, arriving) to the
// director that received it.
func (fc *FlowCapture) Directors() map[uint16][]Host {
	m := map[uint16][]Host{}
	for d, c := range fc.caps {
		for _, p := range c.Packets() {
			if p.Outgoing || p.Proto != unix.IPPROTO_UDP || p.IPDst != fc.dst.Addr() || p.DstPort != fc.dst.Port() {
				continue
			}
			m[p.SrcPort] = append(m[p.SrcPort], d)
		}
	}
	return m
}
