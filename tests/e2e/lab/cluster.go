package lab

// A real dsrd cluster in the lab, driven through tests/vm/cluster (which
// writes the configurations and starts, stops, kills the nodes), plus what
// the cluster tests need to watch it from the outside without disturbing
// it: in-process netlink readings of addresses, neighbours and link
// counters, a packet capture, the nodes' API, and a VIP-holder timeline.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
)

// ClusterVIP is the VIP of the lab cluster (tests/vm/cluster).
var ClusterVIP = netip.MustParseAddr("203.0.113.10")

// ClusterVIP6 is the lab cluster's IPv6 VIP, the web6 service's.
var ClusterVIP6 = netip.MustParseAddr("2001:db8:113::10")

// ClusterDirectors are the directors of the lab cluster; dir3 is the witness.
func ClusterDirectors() []Host { return []Host{Dir1, Dir2} }

// ClusterOtherDirector is the director that is not h.
func ClusterOtherDirector(h Host) Host {
	if h == Dir1 {
		return Dir2
	}
	return Dir1
}

// Bounds of the cluster script's commands under TCG. "up" starts six
// daemons and waits for an election (its own bound is 60 s); the others
// start or stop one process (stop's own bound is 10 s, then SIGKILL).
const (
	clusterUpTimeout  = 120 * time.Second
	clusterCmdTimeout = 60 * time.Second
)

// ClusterOptions are the knobs of tests/vm/cluster a test may turn. Zero
// values leave dsrd's (or the script's) defaults.
type ClusterOptions struct {
	// Raft timings (DSRD_LAB_HEARTBEAT, _ELECTION, _LEASE).
	Heartbeat, Election, Lease time.Duration
	// CheckInterval is the health checks' interval (DSRD_LAB_CHECK_INTERVAL).
	CheckInterval time.Duration
	// BGP adds the bgp VIP ClusterBGPVIP and the directors' bgp sections
	// (DSRD_LAB_BGP=1); BGPDrainDelay and BGPPartitionHold set theirs
	// (DSRD_LAB_BGP_DRAIN_DELAY, _PARTITION_HOLD; the script's defaults 3s
	// and 5s).
	BGP                             bool
	BGPDrainDelay, BGPPartitionHold time.Duration
	// BGPBFD is the directors' BFD with the router (DSRD_LAB_BGP_BFD):
	// "INTERVAL,MULT" or "off"; empty leaves the script's 200ms,5.
	BGPBFD string
	// BackendArgs are the backend program's listeners (StartBackends);
	// nil leaves its defaults.
	BackendArgs []string
	// Tunnel makes web, web6 and echo forward by IP-in-IP and runs the
	// realserver agents with --tunnel (DSRD_LAB_TUNNEL=1).
	Tunnel bool
	// BGP6 (with BGP) adds the IPv6 bgp VIP ClusterBGPVIP6, its service
	// bgpweb6 (tcp/80) and an IPv6 session per director with the router's
	// RouterIPv6 (DSRD_LAB_BGP6=1).
	BGP6 bool
	// ThreeDirectors runs dir3 as a director instead of the witness
	// (DSRD_LAB_DIRECTORS=3). ClusterDirectors still lists dir1 and dir2:
	// a test that sets it names its directors itself.
	ThreeDirectors bool
}

// ClusterBGPVIP6 is the lab cluster's IPv6 bgp VIP (ClusterOptions.BGP6),
// with the service bgpweb6 (tcp/80).
var ClusterBGPVIP6 = netip.MustParseAddr("2001:db8:113::20")

// ClusterBGPVIP is the lab cluster's bgp VIP (ClusterOptions.BGP), with the
// services bgpweb (tcp/80) and bgpecho (tcp/9000).
var ClusterBGPVIP = netip.MustParseAddr("203.0.113.20")

// env renders the options as the script's environment variables.
func (o ClusterOptions) env() []string {
	var env []string
	for _, v := range []struct {
		name string
		d    time.Duration
	}{
		{"DSRD_LAB_HEARTBEAT", o.Heartbeat},
		{"DSRD_LAB_ELECTION", o.Election},
		{"DSRD_LAB_LEASE", o.Lease},
		{"DSRD_LAB_CHECK_INTERVAL", o.CheckInterval},
		{"DSRD_LAB_BGP_DRAIN_DELAY", o.BGPDrainDelay},
		{"DSRD_LAB_BGP_PARTITION_HOLD", o.BGPPartitionHold},
	} {
		if v.d > 0 {
			env = append(env, v.name+"="+v.d.String())
		}
	}
	if o.BGP {
		env = append(env, "DSRD_LAB_BGP=1")
	}
	if o.Tunnel {
		env = append(env, "DSRD_LAB_TUNNEL=1")
	}
	if o.BGP6 {
		env = append(env, "DSRD_LAB_BGP6=1")
	}
	if o.ThreeDirectors {
		env = append(env, "DSRD_LAB_DIRECTORS=3")
	}
	if o.BGPBFD != "" {
		env = append(env, "DSRD_LAB_BGP_BFD="+o.BGPBFD)
	}
	return env
}

// Cluster is a running lab cluster: realserver agents in rs1-rs3, directors
// in dir1 and dir2, the witness in dir3.
type Cluster struct {
	script string // tests/vm/cluster
	bin    string // the dsrd binary the nodes run (a tmpfs copy)
	env    []string
	state  string // the script's state directory

	mu      sync.Mutex
	handles map[Host]*netlink.Handle
}

// Copies of the programs on the VM's tmpfs: the repository is a 9p mount
// without cache, where every exec of the 15 MB dsrd reads it again over
// virtio (measured 2.7 to 5.3 s per `dsrd version` under TCG, against
// 0.08 s from tmpfs). Made once per test process (the VM is thrown away
// after it), hence the package-level cache.
var (
	clusterCopyOnce sync.Once
	clusterCopyDir  string
	clusterCopyErr  error
)

// clusterPrograms returns tmpfs copies of dsrd (DSRD_BIN, default
// $DSRD_REPO/bin/dsrd) and of the backend (DSRD_BACKEND, default
// $DSRD_REPO/.cache/vm/backend).
func clusterPrograms(repo string) (bin, backend string, err error) {
	clusterCopyOnce.Do(func() {
		src := map[string]string{
			"dsrd":    os.Getenv("DSRD_BIN"),
			"backend": os.Getenv("DSRD_BACKEND"),
		}
		if src["dsrd"] == "" {
			src["dsrd"] = filepath.Join(repo, "bin", "dsrd")
		}
		if src["backend"] == "" {
			src["backend"] = filepath.Join(repo, ".cache", "vm", "backend")
		}
		dir, err := os.MkdirTemp("", "dsrd-e2e-cluster-")
		if err != nil {
			clusterCopyErr = err
			return
		}
		for name, from := range src {
			if err := clusterCopyFile(from, filepath.Join(dir, name)); err != nil {
				clusterCopyErr = fmt.Errorf("%w (make build and go build -o .cache/vm/backend ./tests/backend; tests/vm/e2e does both)", err)
				return
			}
		}
		clusterCopyDir = dir
	})
	if clusterCopyErr != nil {
		return "", "", clusterCopyErr
	}
	return filepath.Join(clusterCopyDir, "dsrd"), filepath.Join(clusterCopyDir, "backend"), nil
}

func clusterCopyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", from, err)
	}
	return out.Close()
}

// ClusterUp gives the test a fresh lab with the backends running and a dsrd
// cluster on it (tests/vm/cluster up: one director holds the VIP when it
// returns; the health checks may still be rising), and takes everything
// down when the test ends. When the test failed, the end of every
// director's log goes to the test log first, and all the logs to
// .cache/vm/cluster-logs/ (see keepLogs).
func ClusterUp(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	repo, err := Repo()
	if err != nil {
		t.Fatal(err)
	}
	bin, backend, err := clusterPrograms(repo)
	if err != nil {
		t.Fatalf("cluster programs: %v", err)
	}
	t0 := time.Now()
	Up(t)
	t.Setenv("DSRD_BACKEND", backend)
	StartBackends(t, opts.BackendArgs...)
	labUp := time.Since(t0)

	c := &Cluster{
		script:  filepath.Join(repo, "tests", "vm", "cluster"),
		bin:     bin,
		env:     append(opts.env(), "DSRD_BIN="+bin),
		handles: map[Host]*netlink.Handle{},
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), clusterUpTimeout)
	defer cancel()
	// Registered before up runs: a partial start is taken down too.
	t.Cleanup(func() { c.down(t) })
	if _, err := c.Script(ctx, "up"); err != nil {
		c.state = "/run/dsrd-lab/cluster" // best effort, for the logs
		t.Fatalf("cluster up: %v", err)
	}
	conf, err := c.Script(ctx, "conf", string(Dir1))
	if err != nil {
		t.Fatal(err)
	}
	c.state = filepath.Dir(strings.TrimSpace(conf))
	t.Logf("lab and backends up in %v, cluster up in %v (%s)", labUp.Round(time.Millisecond),
		time.Since(start).Round(time.Millisecond), strings.Join(opts.env(), " "))
	return c
}

// down ends every node (killAll, then the script's down for its own
// bookkeeping) and closes the netlink handles before the lab's namespaces
// go.
func (c *Cluster) down(t testing.TB) {
	t.Helper()
	if t.Failed() && c.state != "" {
		for _, n := range []Host{Dir1, Dir2, Dir3} {
			t.Logf("log of %s (end):\n%s", n, c.LogTail(n, 60))
		}
		c.keepLogs(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterUpTimeout)
	defer cancel()
	start := time.Now()
	if c.state != "" {
		c.killAll(t)
	}
	if _, err := c.Script(ctx, "down"); err != nil {
		t.Errorf("cluster down: %v", err)
	}
	t.Logf("cluster down in %v", time.Since(start).Round(time.Millisecond))
	c.mu.Lock()
	for h, nl := range c.handles {
		nl.Close()
		delete(c.handles, h)
	}
	c.mu.Unlock()
}

// killAll ends every node with SIGKILL and waits for them to be gone. The
// test is over and the lab's namespaces, with their addresses, sysctls and
// IPVS tables, are deleted next, so a graceful stop (a leadership transfer
// for each director, one node after the other: 5 to 10 s under TCG) would
// only cost time; the script's down then finds nothing left to stop.
func (c *Cluster) killAll(t testing.TB) {
	var pids []int
	for _, n := range []Host{Dir1, Dir2, Dir3, RS1, RS2, RS3} {
		if pid, err := c.PID(n); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
			pids = append(pids, pid)
		}
	}
	err := Poll(10*time.Second, 20*time.Millisecond, func() error {
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return fmt.Errorf("pid %d still runs after SIGKILL", pid)
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("cluster teardown: %v", err)
	}
}

// keepLogs copies the nodes' logs and configurations of a failed test to
// .cache/vm/cluster-logs/ in the repository, which outlives the VM.
func (c *Cluster) keepLogs(t testing.TB) {
	repo, err := Repo()
	if err != nil {
		return
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir := filepath.Join(repo, ".cache", "vm", "cluster-logs", name+"-"+time.Now().Format("20060102-150405"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	ents, err := os.ReadDir(c.state)
	if err != nil {
		t.Logf("keep logs: %v", err)
		return
	}
	for _, e := range ents {
		if ext := filepath.Ext(e.Name()); ext == ".log" || ext == ".yaml" {
			if err := clusterCopyFile(filepath.Join(c.state, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Logf("keep logs: %v", err)
			}
		}
	}
	t.Logf("the nodes' logs and configurations are in %s", dir)
}

// Script runs tests/vm/cluster with args and returns its standard output.
func (c *Cluster) Script(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.script, args...)
	cmd.Env = append(os.Environ(), c.env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("tests/vm/cluster %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustScript is Script that fails the test on error, bounded by
// clusterCmdTimeout.
func (c *Cluster) MustScript(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterCmdTimeout)
	defer cancel()
	out, err := c.Script(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Start, Stop, Kill and Crash run the script's command of that name on one
// node: start it again; SIGTERM and wait; SIGKILL then release-vips (what
// systemd's ExecStopPost does); SIGKILL only.
func (c *Cluster) Start(t testing.TB, n Host) { t.Helper(); c.MustScript(t, "start", string(n)) }
func (c *Cluster) Stop(t testing.TB, n Host)  { t.Helper(); c.MustScript(t, "stop", string(n)) }
func (c *Cluster) Kill(t testing.TB, n Host)  { t.Helper(); c.MustScript(t, "kill", string(n)) }
func (c *Cluster) Crash(t testing.TB, n Host) { t.Helper(); c.MustScript(t, "crash", string(n)) }

// Bin is the dsrd binary the nodes run.
func (c *Cluster) Bin() string { return c.bin }

// ConfPath is n's configuration file, LogPath its log.
func (c *Cluster) ConfPath(n Host) string { return filepath.Join(c.state, string(n)+".yaml") }
func (c *Cluster) LogPath(n Host) string  { return filepath.Join(c.state, string(n)+".log") }

// Socket is n's API socket, as its configuration file names it.
func (c *Cluster) Socket(n Host) (string, error) {
	b, err := os.ReadFile(c.ConfPath(n))
	if err != nil {
		return "", err
	}
	var f struct {
		Node struct {
			APISocket string `yaml:"api_socket"`
		} `yaml:"node"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return "", fmt.Errorf("%s: %w", c.ConfPath(n), err)
	}
	if f.Node.APISocket == "" {
		return "", fmt.Errorf("%s: no node.api_socket", c.ConfPath(n))
	}
	return f.Node.APISocket, nil
}

// TLS is n's cluster.tls (its certificate, key and the cluster CA), as its
// configuration file names them: tests/vm/cluster makes them with dsrd tls.
func (c *Cluster) TLS(n Host) (config.TLS, error) {
	b, err := os.ReadFile(c.ConfPath(n))
	if err != nil {
		return config.TLS{}, err
	}
	var f struct {
		Cluster struct {
			TLS config.TLS `yaml:"tls"`
		} `yaml:"cluster"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return config.TLS{}, fmt.Errorf("%s: %w", c.ConfPath(n), err)
	}
	if f.Cluster.TLS.Cert == "" || f.Cluster.TLS.Key == "" || f.Cluster.TLS.CA == "" {
		return config.TLS{}, fmt.Errorf("%s: cluster.tls is not complete: %+v", c.ConfPath(n), f.Cluster.TLS)
	}
	return f.Cluster.TLS, nil
}

// PID is the process id of n's daemon (the script's pid file: ip netns exec
// execs, so it is dsrd's own).
func (c *Cluster) PID(n Host) (int, error) {
	b, err := os.ReadFile(filepath.Join(c.state, string(n)+".pid"))
	if err != nil {
		return 0, fmt.Errorf("pid of %s: %w", n, err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Running reports whether n's daemon runs.
func (c *Cluster) Running(n Host) bool {
	pid, err := c.PID(n)
	return err == nil && syscall.Kill(pid, 0) == nil
}

// Signal sends sig to n's daemon.
func (c *Cluster) Signal(n Host, sig syscall.Signal) error {
	pid, err := c.PID(n)
	if err != nil {
		return err
	}
	return syscall.Kill(pid, sig)
}

// LogTail is the last lines of n's log.
func (c *Cluster) LogTail(n Host, lines int) string {
	b, err := os.ReadFile(c.LogPath(n))
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// LogSize is the size of n's log now, to read what is written after it.
func (c *Cluster) LogSize(n Host) int64 {
	fi, err := os.Stat(c.LogPath(n))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// LogSince is n's log from offset on.
func (c *Cluster) LogSince(n Host, offset int64) (string, error) {
	b, err := os.ReadFile(c.LogPath(n))
	if err != nil {
		return "", err
	}
	if offset > int64(len(b)) {
		return "", fmt.Errorf("log of %s is shorter (%d) than offset %d", n, len(b), offset)
	}
	return string(b[offset:]), nil
}

// CLI runs "dsrd ARGS --socket SOCKET" in n's namespace against n's daemon
// and returns its standard output and standard error; err is set when it
// exits non-zero (an *exec.ExitError inside).
func (c *Cluster) CLI(ctx context.Context, n Host, args ...string) (stdout, stderr string, err error) {
	sock, err := c.Socket(n)
	if err != nil {
		return "", "", err
	}
	argv := append([]string{"netns", "exec", string(n), c.bin}, args...)
	argv = append(argv, "--socket", sock)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s: %w: %s", cmdline("ip", argv), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// Status asks n's daemon for its own view over its API socket (in-process:
// no exec, so it can be polled).
func (c *Cluster) Status(ctx context.Context, n Host) (api.Status, error) {
	sock, err := c.Socket(n)
	if err != nil {
		return api.Status{}, err
	}
	cl := api.NewClient(sock)
	defer cl.Close()
	st, err := cl.Status(ctx)
	if err != nil {
		return api.Status{}, fmt.Errorf("status of %s: %w", n, err)
	}
	return st, nil
}

// ClusterReal finds the real addr of service name in st (nil when absent).
func ClusterReal(st api.Status, service string, addr netip.Addr) *api.Real {
	for i := range st.Services {
		if st.Services[i].Name != service {
			continue
		}
		for j := range st.Services[i].Reals {
			if st.Services[i].Reals[j].Address == addr {
				return &st.Services[i].Reals[j]
			}
		}
	}
	return nil
}

// handle is a netlink handle in n's namespace, opened on first use and
// closed by the cluster's cleanup. Its socket belongs to the namespace, so
// any goroutine can use it.
func (c *Cluster) handle(n Host) (*netlink.Handle, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h, ok := c.handles[n]; ok {
		return h, nil
	}
	h, err := clusterOpenHandle(n)
	if err != nil {
		return nil, err
	}
	c.handles[n] = h
	return h, nil
}

// clusterOpenHandle opens a netlink (route) handle inside n's namespace.
func clusterOpenHandle(n Host) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := Do(n, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", n, err)
	}
	return h, nil
}

// clusterHoldsVIP reports whether h's eth0 holds the VIP.
func clusterHoldsVIP(nl *netlink.Handle) (bool, error) {
	link, err := nl.LinkByName("eth0")
	if err != nil {
		return false, err
	}
	addrs, err := nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == ClusterVIP {
			return true, nil
		}
	}
	return false, nil
}

// Holders lists the directors whose eth0 holds the VIP now (more than one
// is a split brain; none, a gap).
func (c *Cluster) Holders() ([]Host, error) {
	var out []Host
	for _, d := range ClusterDirectors() {
		nl, err := c.handle(d)
		if err != nil {
			return nil, err
		}
		held, err := clusterHoldsVIP(nl)
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", d, err)
		}
		if held {
			out = append(out, d)
		}
	}
	return out, nil
}

// WaitOwner waits until exactly one director other than not holds the VIP,
// and returns it.
func (c *Cluster) WaitOwner(t testing.TB, not Host, timeout time.Duration) Host {
	t.Helper()
	var owner Host
	Eventually(t, timeout, 20*time.Millisecond, func() error {
		hs, err := c.Holders()
		if err != nil {
			return err
		}
		if len(hs) != 1 || hs[0] == not {
			return fmt.Errorf("the VIP is held by %v, want one director other than %q", hs, not)
		}
		owner = hs[0]
		return nil
	})
	return owner
}

// Neighbour is n's neighbour entry for addr on eth0, read over netlink (no
// packet is sent): its MAC ("" when it has none) and state (ip neigh's
// word: REACHABLE, STALE, ...); ok is false when there is no entry.
func (c *Cluster) Neighbour(n Host, addr netip.Addr) (mac, state string, ok bool, err error) {
	nl, err := c.handle(n)
	if err != nil {
		return "", "", false, err
	}
	link, err := nl.LinkByName("eth0")
	if err != nil {
		return "", "", false, err
	}
	fam := netlink.FAMILY_V4
	if addr.Is6() {
		fam = netlink.FAMILY_V6
	}
	ns, err := nl.NeighList(link.Attrs().Index, fam)
	if err != nil {
		return "", "", false, err
	}
	for _, e := range ns {
		if ip, ok := netip.AddrFromSlice(e.IP); ok && ip.Unmap() == addr {
			return e.HardwareAddr.String(), clusterNeighState(e.State), true, nil
		}
	}
	return "", "", false, nil
}

// clusterNeighState names a neighbour state as ip neigh does.
func clusterNeighState(s int) string {
	names := []struct {
		bit  int
		name string
	}{
		{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"},
		{netlink.NUD_STALE, "STALE"}, {netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"},
		{netlink.NUD_FAILED, "FAILED"}, {netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"},
	}
	var out []string
	for _, n := range names {
		if s&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	if len(out) == 0 {
		return "NONE"
	}
	return strings.Join(out, ",")
}

// ClusterLinkStats are an interface's packet and byte counters.
type ClusterLinkStats struct {
	RxPackets, TxPackets, RxBytes, TxBytes uint64
}

// Sub is s - o, counter by counter.
func (s ClusterLinkStats) Sub(o ClusterLinkStats) ClusterLinkStats {
	return ClusterLinkStats{s.RxPackets - o.RxPackets, s.TxPackets - o.TxPackets, s.RxBytes - o.RxBytes, s.TxBytes - o.TxBytes}
}

// LinkStats reads the counters of n's eth0 over netlink (sysfs would show
// the namespace sysfs was mounted in, not n's).
func (c *Cluster) LinkStats(n Host) (ClusterLinkStats, error) {
	nl, err := c.handle(n)
	if err != nil {
		return ClusterLinkStats{}, err
	}
	link, err := nl.LinkByName("eth0")
	if err != nil {
		return ClusterLinkStats{}, err
	}
	s := link.Attrs().Statistics
	if s == nil {
		return ClusterLinkStats{}, fmt.Errorf("no statistics for eth0 in %s", n)
	}
	return ClusterLinkStats{s.RxPackets, s.TxPackets, s.RxBytes, s.TxBytes}, nil
}

// ClusterIPVSWeights reads the weights of h's IPVS destinations (ipvsadm
// -Ln), keyed by "PROTO VIP:port" then by the real's address:port.
func ClusterIPVSWeights(ctx context.Context, h Host) (map[string]map[string]int, error) {
	out, err := InNS(ctx, h, "ipvsadm", "-L", "-n")
	if err != nil {
		return nil, err
	}
	return ParseClusterIPVSWeights(out)
}

// ParseClusterIPVSWeights parses the output of ipvsadm -Ln.
func ParseClusterIPVSWeights(out string) (map[string]map[string]int, error) {
	res := map[string]map[string]int{}
	var cur string
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) < 2, f[0] == "IP", f[0] == "Prot", f[1] == "RemoteAddress:Port":
		case f[0] == "->" && len(f) == 6:
			if cur == "" {
				return nil, fmt.Errorf("ipvsadm line %d: destination before any service", i+1)
			}
			w, err := strconv.Atoi(f[3])
			if err != nil {
				return nil, fmt.Errorf("ipvsadm line %d: weight %q: %w", i+1, f[3], err)
			}
			res[cur][f[1]] = w
		case f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM":
			cur = f[0] + " " + f[1]
			res[cur] = map[string]int{}
		default:
			return nil, fmt.Errorf("ipvsadm line %d: unexpected %q", i+1, line)
		}
	}
	return res, nil
}

// ClusterBackendStop stops the backend program in rs (SIGTERM to the pid
// tests/vm/topology recorded) and waits for it to end.
func ClusterBackendStop(t testing.TB, rs Host) {
	t.Helper()
	pidFile := filepath.Join("/run/dsrd-lab", string(rs)+".pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("backend of %s: %v", rs, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("backend pid of %s: %v", rs, err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("stop the backend of %s: %v", rs, err)
	}
	Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			return fmt.Errorf("the backend of %s (pid %d) still runs", rs, pid)
		}
		return nil
	})
	os.Remove(pidFile)
}

// ClusterBackendStart starts the backend program in rs again as
// tests/vm/topology does (same arguments, log, pid and ready files, so its
// "backends stop" ends it) and waits until it listens.
func ClusterBackendStart(t testing.TB, rs Host) {
	t.Helper()
	ClusterBackendStartArgs(t, rs)
}

// ClusterBackendStartArgs is ClusterBackendStart with the backend's
// listeners (args, as ClusterOptions.BackendArgs); none: the defaults.
func ClusterBackendStartArgs(t testing.TB, rs Host, args ...string) {
	t.Helper()
	if len(args) == 0 {
		args = []string{"--http", ":80", "--tcp", ":9000", "--udp", ":9000"}
	}
	state := "/run/dsrd-lab"
	ready := filepath.Join(state, string(rs)+".ready")
	os.Remove(ready)
	logf, err := os.OpenFile(filepath.Join(state, string(rs)+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(rs), os.Getenv("DSRD_BACKEND"),
		"--name", string(rs), "--ready-file", ready}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the backend of %s: %v", rs, err)
	}
	go cmd.Wait() // reaps it whoever stops it
	if err := os.WriteFile(filepath.Join(state, string(rs)+".pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, 20*time.Millisecond, func() error {
		if _, err := os.Stat(ready); err != nil {
			return fmt.Errorf("the backend of %s is not listening", rs)
		}
		return nil
	})
}

// ClusterHolding is one change of the set of VIP holders, as a poll saw it.
type ClusterHolding struct {
	At      time.Time
	Holders []Host
}

// ClusterVIPWatch polls which directors hold the VIP, every interval, from
// Watch until Stop, and keeps the changes.
type ClusterVIPWatch struct {
	stop    chan struct{}
	done    chan struct{}
	changes []ClusterHolding
	polls   int
	maxPoll time.Duration // the longest time between two polls' starts
	err     error
}

// Watch starts polling the VIP holders every interval on its own netlink
// handles; Stop ends it (its goroutine's only way to end).
func (c *Cluster) Watch(interval time.Duration) (*ClusterVIPWatch, error) {
	hs := map[Host]*netlink.Handle{}
	for _, d := range ClusterDirectors() {
		h, err := clusterOpenHandle(d)
		if err != nil {
			for _, o := range hs {
				o.Close()
			}
			return nil, err
		}
		hs[d] = h
	}
	w := &ClusterVIPWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer func() {
			for _, h := range hs {
				h.Close()
			}
		}()
		t := time.NewTicker(interval)
		defer t.Stop()
		var last time.Time
		for {
			now := time.Now()
			if !last.IsZero() {
				w.maxPoll = max(w.maxPoll, now.Sub(last))
			}
			last = now
			var held []Host
			for _, d := range ClusterDirectors() {
				ok, err := clusterHoldsVIP(hs[d])
				if err != nil {
					w.err = fmt.Errorf("addresses of %s: %w", d, err)
					return
				}
				if ok {
					held = append(held, d)
				}
			}
			w.polls++
			if n := len(w.changes); n == 0 || !slices.Equal(w.changes[n-1].Holders, held) {
				w.changes = append(w.changes, ClusterHolding{At: now, Holders: held})
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w, nil
}

// Stop ends the polling and returns the changes seen (the first entry is
// the state when polling began).
func (w *ClusterVIPWatch) Stop() ([]ClusterHolding, error) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	return w.changes, w.err
}

// Resolution reports how many polls ran and the longest time between two.
func (w *ClusterVIPWatch) Resolution() (polls int, longest time.Duration) {
	<-w.done
	return w.polls, w.maxPoll
}

// ClusterHoldingSummary describes a timeline of holders from its start to end.
type ClusterHoldingSummary struct {
	// LongestGap is the longest time no director held the VIP, and when it began.
	LongestGap      time.Duration
	LongestGapStart time.Time
	// Overlap is the total time two directors held it at once.
	Overlap time.Duration
}

// SummarizeClusterHoldings measures gaps and overlaps of changes up to end.
func SummarizeClusterHoldings(changes []ClusterHolding, end time.Time) ClusterHoldingSummary {
	var s ClusterHoldingSummary
	for i, ch := range changes {
		until := end
		if i+1 < len(changes) {
			until = changes[i+1].At
		}
		d := until.Sub(ch.At)
		switch {
		case len(ch.Holders) == 0 && d > s.LongestGap:
			s.LongestGap, s.LongestGapStart = d, ch.At
		case len(ch.Holders) > 1:
			s.Overlap += d
		}
	}
	return s
}

// FormatClusterHoldings renders a timeline relative to its first entry.
func FormatClusterHoldings(changes []ClusterHolding) string {
	if len(changes) == 0 {
		return "(no poll)"
	}
	var b strings.Builder
	for _, ch := range changes {
		fmt.Fprintf(&b, "  +%v %v\n", ch.At.Sub(changes[0].At).Round(time.Millisecond), ch.Holders)
	}
	return b.String()
}

// ClusterPacket is the summary of one captured Ethernet frame.
type ClusterPacket struct {
	At        time.Time
	Outgoing  bool // sent by the capturing host (PACKET_OUTGOING)
	Src, Dst  string
	EtherType uint16
	// IPv4 (EtherType 0x0800): addresses, protocol, and ports for TCP/UDP.
	IPSrc, IPDst     netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	TCPFlags         uint8
	// ARP (EtherType 0x0806): operation, sender and target.
	ARPOp                uint16
	ARPSender, ARPTarget netip.Addr
	ARPSenderMAC         string
	// IPv6 (EtherType 0x86dd) fills IPSrc, IPDst, Proto (the first next
	// header), the ports and TCPFlags as IPv4 does; for ICMPv6, the type,
	// and for neighbour solicitations (135) and advertisements (136) the
	// target address.
	ICMPv6Type uint8
	NDTarget   netip.Addr
}

// ClusterCapture captures every frame on a host's eth0, both directions,
// from Capture until Stop, with an AF_PACKET socket (no tcpdump).
type ClusterCapture struct {
	host Host
	fd   int
	stop chan struct{}
	done chan struct{}

	mu      sync.Mutex
	packets []ClusterPacket
	err     error
}

// clusterCaptureBuffer is the capture socket's receive buffer: far more
// than a test's few thousand frames arriving between two reads.
const clusterCaptureBuffer = 4 << 20

// StartClusterCapture starts capturing on h's eth0.
func StartClusterCapture(h Host) (*ClusterCapture, error) {
	var fd int
	err := Do(h, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ALL)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, clusterCaptureBuffer); err != nil {
			unix.Close(fd)
			return fmt.Errorf("capture buffer: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind packet socket: %w", err)
		}
		tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return fmt.Errorf("set receive timeout: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("capture on %s: %w", h, err)
	}
	c := &ClusterCapture{host: h, fd: fd, stop: make(chan struct{}), done: make(chan struct{})}
	go c.run()
	return c, nil
}

// run reads frames until Stop (checked between reads, which time out every
// 50 ms), the only way its goroutine ends.
func (c *ClusterCapture) run() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		p, ok := ParseClusterPacket(buf[:n])
		if !ok {
			continue
		}
		p.At = time.Now()
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			p.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		}
		c.mu.Lock()
		c.packets = append(c.packets, p)
		c.mu.Unlock()
	}
}

// Packets returns the frames captured so far.
func (c *ClusterCapture) Packets() []ClusterPacket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.packets)
}

// Stop ends the capture and returns the frames; it fails when the kernel
// dropped any (the counts would be wrong).
func (c *ClusterCapture) Stop() ([]ClusterPacket, error) {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
	defer unix.Close(c.fd)
	if c.err != nil {
		return c.packets, fmt.Errorf("capture on %s: %w", c.host, c.err)
	}
	st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS)
	if err != nil {
		return c.packets, fmt.Errorf("capture statistics on %s: %w", c.host, err)
	}
	if st.Drops > 0 {
		return c.packets, fmt.Errorf("capture on %s dropped %d frames", c.host, st.Drops)
	}
	return c.packets, nil
}

// ParseClusterPacket summarizes an Ethernet frame; ok is false for frames
// too short to hold their headers.
func ParseClusterPacket(b []byte) (ClusterPacket, bool) {
	if len(b) < 14 {
		return ClusterPacket{}, false
	}
	p := ClusterPacket{
		Dst:       net.HardwareAddr(b[0:6]).String(),
		Src:       net.HardwareAddr(b[6:12]).String(),
		EtherType: binary.BigEndian.Uint16(b[12:14]),
	}
	l3 := b[14:]
	switch p.EtherType {
	case unix.ETH_P_IP:
		if len(l3) < 20 || l3[0]>>4 != 4 {
			return p, true
		}
		ihl := int(l3[0]&0x0f) * 4
		p.Proto = l3[9]
		p.IPSrc = netip.AddrFrom4([4]byte(l3[12:16]))
		p.IPDst = netip.AddrFrom4([4]byte(l3[16:20]))
		if len(l3) < ihl+4 || (p.Proto != unix.IPPROTO_TCP && p.Proto != unix.IPPROTO_UDP) {
			return p, true
		}
		l4 := l3[ihl:]
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		if p.Proto == unix.IPPROTO_TCP && len(l4) >= 14 {
			p.TCPFlags = l4[13]
		}
	case unix.ETH_P_IPV6:
		if len(l3) < 40 || l3[0]>>4 != 6 {
			return p, true
		}
		p.Proto = l3[6]
		p.IPSrc = netip.AddrFrom16([16]byte(l3[8:24]))
		p.IPDst = netip.AddrFrom16([16]byte(l3[24:40]))
		l4 := l3[40:]
		switch {
		case (p.Proto == unix.IPPROTO_TCP || p.Proto == unix.IPPROTO_UDP) && len(l4) >= 4:
			p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
			p.DstPort = binary.BigEndian.Uint16(l4[2:4])
			if p.Proto == unix.IPPROTO_TCP && len(l4) >= 14 {
				p.TCPFlags = l4[13]
			}
		case p.Proto == unix.IPPROTO_ICMPV6 && len(l4) >= 1:
			p.ICMPv6Type = l4[0]
			if (p.ICMPv6Type == 135 || p.ICMPv6Type == 136) && len(l4) >= 24 {
				p.NDTarget = netip.AddrFrom16([16]byte(l4[8:24]))
			}
		}
	case unix.ETH_P_ARP:
		if len(l3) < arpPacketLen {
			return p, true
		}
		p.ARPOp = binary.BigEndian.Uint16(l3[6:8])
		p.ARPSenderMAC = net.HardwareAddr(l3[8:14]).String()
		p.ARPSender = netip.AddrFrom4([4]byte(l3[14:18]))
		p.ARPTarget = netip.AddrFrom4([4]byte(l3[24:28]))
	}
	return p, true
}

// ClusterConfigEdit loads a director's YAML file as generic values, lets
// edit change them, and writes the result back (comments are lost; keys
// come out sorted).
func ClusterConfigEdit(path string, edit func(doc map[string]any) error) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := edit(doc); err != nil {
		return fmt.Errorf("edit %s: %w", path, err)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// ClusterConfigReal finds the real addr of service name in a config
// document as ClusterConfigEdit gives it.
func ClusterConfigReal(doc map[string]any, service string, addr netip.Addr) (map[string]any, error) {
	svcs, _ := doc["services"].([]any)
	for _, s := range svcs {
		svc, _ := s.(map[string]any)
		if svc["name"] != service {
			continue
		}
		reals, _ := svc["reals"].([]any)
		for _, r := range reals {
			real, _ := r.(map[string]any)
			if real["address"] == addr.String() {
				return real, nil
			}
		}
		return nil, fmt.Errorf("service %s has no real %s", service, addr)
	}
	return nil, fmt.Errorf("no service %s", service)
}
