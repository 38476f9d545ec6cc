//go:build vmbench

package main

// TestAnycastBench is the measuring side of the BGP scale-out benchmark
// (tests/bench/anycast/run boots the VM lab and runs it; build tag
// vmbench, never part of make test). For each cluster of the schedule
// (Schedule: one per BFD setting) it brings up the lab cluster of
// tests/vm/cluster with DSRD_LAB_BGP=1, the router (BIRD, with the same
// BFD timers) and the remote client behind it, then runs its phases:
//
//	cut-*, kill-*  a director lost, N times: new connections from remote
//	               every 20 ms and long-lived echo flows, timed across the
//	               loss (a link cut on the switch, or SIGKILL with no
//	               ExecStopPost); for a bgp VIP also the time until the
//	               router's kernel route drops the lost director.
//	flows          long-lived flows to bgpecho (mh, sloppy_tcp) and to a
//	               baseline rr service on tcp/9001, through a director
//	               added, drained and lost.
//	fib            every real down, then one back: the router's route.
//
// Results go to $DSRD_BENCH_OUT/results.txt line by line (report.go), the
// daemons' logs to $DSRD_BENCH_OUT/CLUSTER/.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/tests/e2e/lab"
)

const (
	// rrPort is the baseline service's port on the bgp VIP: rr, which
	// dsrd refuses on a bgp VIP, so it is added with ipvsadm beside
	// dsrd's services (dsrd leaves services it does not declare alone).
	rrPort = 9001
	// echoPort is bgpecho's (and the arp VIP's echo service's) port.
	echoPort = 9000
	// Probes: a new connection every probeEvery overall, from
	// probeWorkers workers in turn (a failed probe blocks its worker for
	// probeTimeout, the others go on), each bounded by probeTimeout as in
	// tests/bench/failover.
	probeEvery   = 20 * time.Millisecond
	probeWorkers = 8
	probeTimeout = 250 * time.Millisecond
	// maxProbes bounds each worker's loop: 10 minutes of probes.
	maxProbes = int(10 * time.Minute / (probeEvery * probeWorkers))
	// echoEvery paces each long-lived flow's request/echo: every 200 ms
	// keeps the load the flows put on the emulated VM (2 CPUs under TCG,
	// shared with the daemons measured) to about one echo per
	// millisecond of wall time at most; at 50 ms the directors' Raft lost
	// its leader under the load. echoTimeout bounds one echo: longer than
	// the hold timer and TCP's backoff after it, so that a flow that
	// recovers is seen to recover.
	echoEvery   = 200 * time.Millisecond
	echoTimeout = 30 * time.Second
	maxEchoes   = int(10 * time.Minute / echoEvery)
	// lossFlows, flowsPerService: long-lived flows per loss and per
	// service in the flows phase.
	lossFlows       = 12
	flowsPerService = 16
	// recoverWait bounds the wait for every flow and the client to be
	// served again after a loss: the hold timer (9 s), BIRD's delay after
	// it, TCP's retransmission backoff, TCG.
	recoverWait = 45 * time.Second
	// announceWait bounds a director's route reaching the router (session,
	// BFD, health rising) and a cluster settling, under TCG.
	announceWait = 90 * time.Second
	// changeWait bounds a withdrawal or announcement after a change.
	changeWait = 40 * time.Second
	// quiet is how long the client is served before each event, and after
	// an event's convergence before the flows are counted.
	quiet = 1 * time.Second
	// drainDelay is the directors' bgp.drain_delay (the lab's 3 s).
	drainDelay = 3 * time.Second
)

var (
	bgpVIP = lab.ClusterBGPVIP
	arpVIP = lab.ClusterVIP
	reals  = []lab.Host{lab.RS1, lab.RS2, lab.RS3}
	// backendArgs: the lab's listeners plus the rr service's port.
	backendArgs = []string{"--http", ":80", "--tcp", ":9000,:9001", "--udp", ":9000"}
)

// bench is the run's state shared by the phases.
type bench struct {
	out     string
	results *os.File
	mu      sync.Mutex
	reps    map[string]int // repetitions per phase kind
}

// record appends one result line and logs it.
func (b *bench) record(t *testing.T, phase, metric, value string) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	line := ResultLine(phase, metric, value)
	if _, err := fmt.Fprintln(b.results, line); err != nil {
		t.Errorf("results: %v", err)
	}
	t.Log(line)
}

// note appends a footnote.
func (b *bench) note(t *testing.T, format string, args ...any) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintln(b.results, "note "+msg)
	t.Log("note: " + msg)
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 100 {
		t.Fatalf("%s=%q: want 1 to 100", name, s)
	}
	return n
}

func TestAnycastBench(t *testing.T) {
	lab.Require(t)
	out := os.Getenv("DSRD_BENCH_OUT")
	if out == "" {
		t.Fatal("DSRD_BENCH_OUT is not set: run tests/bench/anycast/run")
	}
	spec := os.Getenv("DSRD_BENCH_PHASES")
	if spec == "" {
		spec = DefaultPhases
	}
	phases, err := ParsePhases(spec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(out, "results.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := &bench{out: out, results: f, reps: map[string]int{
		"cut":   envInt(t, "DSRD_BENCH_N", 5),
		"kill":  envInt(t, "DSRD_BENCH_KILLS", 3),
		"flows": envInt(t, "DSRD_BENCH_FLOW_REPS", 3),
		"fib":   envInt(t, "DSRD_BENCH_N", 5),
	}}
	for i, cl := range Schedule(phases) {
		name := fmt.Sprintf("%d-bfd-%s", i+1, strings.ReplaceAll(cl.BFD, ",", "x"))
		t.Run(name, func(t *testing.T) { b.runCluster(t, name, cl) })
	}
}

// runCluster brings up one cluster and runs its phases; a phase that
// fails ends its own subtest, the next phase still runs.
func (b *bench) runCluster(t *testing.T, name string, cl Cluster) {
	c := lab.ClusterUp(t, lab.ClusterOptions{
		BGP: true, BGPBFD: cl.BFD, BackendArgs: backendArgs,
		BGPDrainDelay: drainDelay, BGPPartitionHold: 5 * time.Second,
	})
	t.Cleanup(func() { b.keepLogs(t, name, c) })
	lab.RouterUp(t)
	repo, err := lab.Repo()
	if err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(filepath.Join(repo, "tests", "vm", "bgp", "bird-router.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := RouterConf(string(base), cl.BFD)
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(t.TempDir(), "bird-router.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	router := lab.StartBIRDRouter(t, confPath)
	// The arp VIP through the router, on-link on the directors' segment:
	// the router resolves it by ARP, and a failover's gratuitous ARP
	// moves its neighbour entry.
	lab.MustIP(t, lab.Router, "route", "add", arpVIP.String()+"/32", "dev", "eth0")
	for _, d := range lab.ClusterDirectors() {
		addRRService(t, d)
	}
	b.ready(t, c, router)
	for _, p := range cl.Phases {
		t.Run(p.Name, func(t *testing.T) {
			b.ready(t, c, router)
			switch p.Kind {
			case "cut", "kill":
				b.loss(t, c, router, p)
			case "flows":
				b.flows(t, c, router, p)
			case "fib":
				b.fib(t, c, router, p)
			}
		})
	}
}

// keepLogs copies the daemons' logs and configurations to OUT/NAME/.
func (b *bench) keepLogs(t *testing.T, name string, c *lab.Cluster) {
	dir := filepath.Join(b.out, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("logs: %v", err)
		return
	}
	var files []string
	for _, n := range []lab.Host{lab.Dir1, lab.Dir2, lab.Dir3} {
		files = append(files, c.LogPath(n), c.ConfPath(n))
	}
	files = append(files, "/run/dsrd-lab/bgp/bird-router.log")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), data, 0o644); err != nil {
			t.Logf("logs: %v", err)
		}
	}
}

// addRRService adds the baseline: VIP:9001, rr, the three reals, DR.
func addRRService(t *testing.T, d lab.Host) {
	t.Helper()
	svc := netip.AddrPortFrom(bgpVIP, rrPort).String()
	lab.MustInNS(t, d, "ipvsadm", "-A", "-t", svc, "-s", "rr")
	for _, r := range reals {
		lab.MustInNS(t, d, "ipvsadm", "-a", "-t", svc, "-r", netip.AddrPortFrom(r.IPv4(), rrPort).String(), "-g", "-w", "100")
	}
}

// both: both directors are the route's next hops.
func both(g []netip.Addr) bool {
	hs, err := lab.NextHopDirectors(g)
	return err == nil && slices.Equal(hs, []lab.Host{lab.Dir1, lab.Dir2})
}

// only: d alone is the route's next hop.
func only(d lab.Host) func([]netip.Addr) bool {
	return func(g []netip.Addr) bool {
		hs, err := lab.NextHopDirectors(g)
		return err == nil && slices.Equal(hs, []lab.Host{d})
	}
}

func other(d lab.Host) lab.Host { return lab.ClusterOtherDirector(d) }

// ready waits until the cluster is as a phase starts it: one director
// holds the arp VIP, both sessions are up and both directors are the bgp
// VIP's next hops, every real at full weight in bgpecho on both.
func (b *bench) ready(t *testing.T, c *lab.Cluster, router *lab.BGPRouter) {
	t.Helper()
	c.WaitOwner(t, "", announceWait)
	router.WaitEstablished(t, 2, announceWait)
	if _, gws, err := lab.WaitNextHops(bgpVIP, announceWait, 20*time.Millisecond, both); err != nil {
		t.Fatalf("not ready: %v (%v)", err, gws)
	}
	// The arp VIP's echo service follows each director's own checks: a
	// director back from a cut sees the reals up again a rise later.
	lab.Eventually(t, announceWait, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		defer cancel()
		for _, d := range lab.ClusterDirectors() {
			w, err := lab.ClusterIPVSWeights(ctx, d)
			if err != nil {
				return err
			}
			for _, vip := range []netip.Addr{bgpVIP, arpVIP} {
				key := fmt.Sprintf("TCP %s", netip.AddrPortFrom(vip, echoPort))
				for _, r := range reals {
					if got := w[key][netip.AddrPortFrom(r.IPv4(), echoPort).String()]; got != 100 {
						return fmt.Errorf("%s: %s weight %d on %s", d, r, got, key)
					}
				}
			}
		}
		return nil
	})
}

// ---- the client -----------------------------------------------------------

// prober opens new connections from remote to a target, probeWorkers
// workers in turn, until stop.
type prober struct {
	mu     sync.Mutex
	probes []Probe
	stop   chan struct{}
	wg     sync.WaitGroup
}

// startProber starts the workers; stopProber (their only way to end, or
// maxProbes each) waits for them.
func startProber(t *testing.T, target netip.AddrPort) *prober {
	t.Helper()
	p := &prober{stop: make(chan struct{})}
	for k := range probeWorkers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			err := lab.Do(lab.Remote, func() error {
				select {
				case <-p.stop:
					return nil
				case <-time.After(time.Duration(k) * probeEvery):
				}
				tick := time.NewTicker(probeEvery * probeWorkers)
				defer tick.Stop()
				for range maxProbes {
					select {
					case <-p.stop:
						return nil
					case <-tick.C:
					}
					start := time.Now()
					c, err := net.DialTimeout("tcp4", target.String(), probeTimeout)
					end := time.Now()
					if err == nil {
						if tc, ok := c.(*net.TCPConn); ok {
							_ = tc.SetLinger(0)
						}
						c.Close()
					}
					p.mu.Lock()
					p.probes = append(p.probes, Probe{Start: start, End: end, OK: err == nil})
					p.mu.Unlock()
				}
				return nil
			})
			if err != nil {
				t.Errorf("prober: %v", err)
			}
		}()
	}
	return p
}

func (p *prober) snapshot() []Probe {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.probes)
}

func (p *prober) stopProber() []Probe {
	close(p.stop)
	p.wg.Wait()
	return p.snapshot()
}

// flow is a long-lived connection from remote that sends a line every
// echoEvery and reads it back, until stopped or broken.
type flow struct {
	c      net.Conn
	r      *bufio.Reader
	real   string
	sport  uint16
	mu     sync.Mutex
	echoes []Echo
	err    error
}

// flowSet is flows started together.
type flowSet struct {
	flows []*flow
	stop  chan struct{}
	wg    sync.WaitGroup
}

// openFlows opens n connections to target from remote, reads their
// greetings and starts their echo loops.
func openFlows(t *testing.T, target netip.AddrPort, n int) *flowSet {
	t.Helper()
	fs := &flowSet{stop: make(chan struct{})}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		nc, err := lab.Dial(ctx, lab.Remote, "tcp4", target.String())
		cancel()
		if err != nil {
			fs.close()
			t.Fatalf("flow %d to %s: %v", i, target, err)
		}
		f := &flow{c: nc, r: bufio.NewReader(nc), sport: uint16(nc.LocalAddr().(*net.TCPAddr).Port)}
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := f.r.ReadString('\n')
		if err != nil {
			nc.Close()
			fs.close()
			t.Fatalf("flow %d to %s: greeting: %v", i, target, err)
		}
		f.real = strings.TrimSpace(line)
		fs.flows = append(fs.flows, f)
	}
	for i, f := range fs.flows {
		fs.wg.Add(1)
		go func() {
			defer fs.wg.Done()
			f.run(i, fs.stop)
		}()
	}
	return fs
}

// run is the flow's echo loop; it ends on stop, on an error, or after
// maxEchoes. A request goes echoEvery after the last one was sent, or at
// once when its answer came later than that.
func (f *flow) run(i int, stop chan struct{}) {
	var last time.Time
	for n := range maxEchoes {
		wait := time.Until(last.Add(echoEvery))
		if wait < 0 {
			wait = 0
		}
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
		msg := fmt.Sprintf("flow %d echo %d", i, n)
		sent := time.Now()
		last = sent
		f.c.SetDeadline(sent.Add(echoTimeout))
		_, err := fmt.Fprintf(f.c, "%s\n", msg)
		var line string
		if err == nil {
			line, err = f.r.ReadString('\n')
			if err == nil && strings.TrimSpace(line) != msg {
				err = fmt.Errorf("echo %q, want %q", strings.TrimSpace(line), msg)
			}
		}
		got := time.Now()
		f.mu.Lock()
		if err != nil {
			f.err = err
			f.mu.Unlock()
			return
		}
		f.echoes = append(f.echoes, Echo{Sent: sent, Got: got})
		f.mu.Unlock()
	}
}

// state returns the flow's echoes and error so far.
func (f *flow) state() ([]Echo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.echoes), f.err
}

// settledSince: every flow has had an answer to a request sent at or
// after at, or broken.
func (fs *flowSet) settledSince(at time.Time) bool {
	for _, f := range fs.flows {
		e, err := f.state()
		if err == nil && (len(e) == 0 || e[len(e)-1].Sent.Before(at)) {
			return false
		}
	}
	return true
}

// close stops the loops (a loop blocked in a read ends when its
// connection closes) and closes the connections.
func (fs *flowSet) close() {
	select {
	case <-fs.stop:
	default:
		close(fs.stop)
	}
	for _, f := range fs.flows {
		f.c.Close()
	}
	fs.wg.Wait()
}

// alive counts the flows not broken that echoed after at.
func (fs *flowSet) alive(at time.Time) Fraction {
	fr := Fraction{Total: len(fs.flows)}
	for _, f := range fs.flows {
		e, err := f.state()
		if err == nil && len(e) > 0 && e[len(e)-1].Got.After(at) {
			fr.Alive++
		}
	}
	return fr
}

// onDirector counts the flows the router sends to d now.
func (fs *flowSet) onDirector(t *testing.T, target netip.AddrPort, d lab.Host) Fraction {
	t.Helper()
	var lf []lab.Flow
	for _, f := range fs.flows {
		lf = append(lf, lab.Flow{Src: lab.RemoteIPv4, Dst: target.Addr(), Proto: "tcp", SPort: f.sport, DPort: target.Port()})
	}
	ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
	defer cancel()
	gws, err := lab.RouteGetFlows(ctx, lab.Router, "eth1", lf)
	if err != nil {
		t.Fatal(err)
	}
	fr := Fraction{Total: len(gws)}
	for _, g := range gws {
		if h, ok := lab.DirectorAt(g); ok && h == d {
			fr.Alive++
		}
	}
	return fr
}

// ---- (1) a director lost ----------------------------------------------------

// loss measures p's loss N times. bgp: the victim is the Raft follower
// (its loss moves no arp VIP: only BGP acts); arp: the VIP's owner.
func (b *bench) loss(t *testing.T, c *lab.Cluster, router *lab.BGPRouter, p Phase) {
	vip := bgpVIP
	if p.Mode == "arp" {
		vip = arpVIP
	}
	target := netip.AddrPortFrom(vip, echoPort)
	for i := range b.reps[p.Kind] {
		if i > 0 {
			b.ready(t, c, router)
		}
		owner := c.WaitOwner(t, "", announceWait)
		victim := other(owner)
		if p.Mode == "arp" {
			victim = owner
		}
		flows := openFlows(t, target, lossFlows)
		pr := startProber(t, target)
		time.Sleep(quiet)
		var event time.Time
		switch p.Kind {
		case "cut":
			if err := lab.SetSwitchPort(victim, false); err != nil {
				t.Fatal(err)
			}
			event = time.Now()
		case "kill":
			event = time.Now()
			if err := c.Signal(victim, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
		// The router's way to the VIP: for bgp its route without the lost
		// director, for arp its ARP entry for the VIP on the new owner's
		// MAC (a gratuitous ARP moved it).
		if p.Mode == "bgp" {
			at, gws, err := lab.WaitNextHops(bgpVIP, recoverWait, 5*time.Millisecond, only(other(victim)))
			if err != nil {
				t.Errorf("rep %d: %v", i+1, err)
			} else {
				b.record(t, p.Name, "fib_ms", Ms(float64(at.Sub(event).Microseconds())/1000))
				t.Logf("rep %d: %s lost, next hops %v after %v", i+1, victim, gws, at.Sub(event))
			}
		} else {
			want := other(victim).MAC()
			var at time.Time
			err := lab.Poll(recoverWait, 5*time.Millisecond, func() error {
				mac, state, _, err := c.Neighbour(lab.Router, arpVIP)
				if err != nil {
					return err
				}
				if !strings.EqualFold(mac, want) {
					return fmt.Errorf("the router's ARP entry for %s: %q %s, want %s", arpVIP, mac, state, want)
				}
				at = time.Now()
				return nil
			})
			if err != nil {
				t.Errorf("rep %d: %v", i+1, err)
			} else {
				b.record(t, p.Name, "fib_ms", Ms(float64(at.Sub(event).Microseconds())/1000))
				t.Logf("rep %d: %s lost, the router's ARP entry on %s after %v", i+1, victim, other(victim), at.Sub(event))
			}
		}
		// Served again: every flow echoed after the loss (or broke), and
		// the client's new connections have all succeeded for a while.
		err := lab.Poll(recoverWait, 50*time.Millisecond, func() error {
			if !flows.settledSince(event) {
				return fmt.Errorf("flows not all answered since the loss")
			}
			probes := pr.snapshot()
			var tail []Probe
			for _, q := range probes {
				if q.Start.After(time.Now().Add(-quiet - probeTimeout)) {
					tail = append(tail, q)
				}
			}
			if len(tail) < probeWorkers || slices.ContainsFunc(tail, func(q Probe) bool { return !q.OK }) {
				return fmt.Errorf("new connections still fail")
			}
			return nil
		})
		end := time.Now()
		probes := pr.stopProber()
		alive := flows.alive(event)
		var worst time.Duration
		for _, f := range flows.flows {
			e, _ := f.state()
			if d, _ := AnsweredAgain(e, event, end); d > worst {
				worst = d
			}
		}
		flows.close()
		served, failed, ok := ServedAgain(probes, event)
		var fails []string
		for _, q := range probes {
			if !q.OK && q.End.After(event) && len(fails) < 40 {
				fails = append(fails, strconv.FormatInt(q.Start.Sub(event).Milliseconds(), 10))
			}
		}
		if len(fails) > 0 {
			t.Logf("rep %d: failed probes started at (ms from the loss): %s", i+1, strings.Join(fails, " "))
		}
		if err != nil || !ok {
			t.Errorf("rep %d: not served again within %v: %v (failed probes %d)", i+1, recoverWait, err, failed)
		} else {
			b.record(t, p.Name, "served_ms", Ms(float64(served.Microseconds())/1000))
		}
		b.record(t, p.Name, "answered_ms", Ms(float64(worst.Microseconds())/1000))
		b.record(t, p.Name, "alive", fmt.Sprintf("%d/%d", alive.Alive, alive.Total))
		t.Logf("rep %d: %s %s: new connections served again after %v (%d failed of %d), every flow answering again after %v, flows alive %d/%d",
			i+1, p.Kind, victim, served, failed, len(probes), worst, alive.Alive, alive.Total)
		// Back to both directors.
		switch p.Kind {
		case "cut":
			if err := lab.SetSwitchPort(victim, true); err != nil {
				t.Fatal(err)
			}
		case "kill":
			lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
				if c.Running(victim) {
					return fmt.Errorf("%s still runs", victim)
				}
				return nil
			})
			c.Start(t, victim)
		}
		if p.Mode == "arp" {
			// The old owner back as a follower: the VIP on one director.
			lab.Eventually(t, announceWait, 100*time.Millisecond, func() error {
				hs, err := c.Holders()
				if err != nil {
					return err
				}
				if len(hs) != 1 {
					return fmt.Errorf("the arp VIP on %v", hs)
				}
				return nil
			})
		}
	}
}

// ---- (2) flows through a director added, drained, lost ----------------------

func (b *bench) flows(t *testing.T, c *lab.Cluster, router *lab.BGPRouter, p Phase) {
	mhT := netip.AddrPortFrom(bgpVIP, echoPort)
	rrT := netip.AddrPortFrom(bgpVIP, rrPort)
	const d = lab.Dir2 // the director added, drained, lost
	type event struct {
		name   string
		before func() // the state the flows open in
		act    func() time.Time
		// converged waits for the router to reflect the event.
		converged func()
		// movedAfter: count the flows on d after the event (added), not
		// before it.
		movedAfter bool
		restore    func()
	}
	wait := func(what string, cond func([]netip.Addr) bool, timeout time.Duration) {
		if _, gws, err := lab.WaitNextHops(bgpVIP, timeout, 20*time.Millisecond, cond); err != nil {
			t.Fatalf("%s: %v (%v)", what, err, gws)
		}
	}
	ctl := func(args ...string) error {
		ctx, cancel := context.WithTimeout(context.Background(), lab.CommandTimeout)
		defer cancel()
		out, _, err := c.CLI(ctx, d, args...)
		if err != nil {
			return fmt.Errorf("%w (%s)", err, out)
		}
		return nil
	}
	// drain: dsrd bgp drain, which asks the other director what it
	// announces (2 s per question) and refuses when it hears nothing; a
	// refusal while the router has both next hops is retried, then
	// forced, and said in a note.
	drain := func() time.Time {
		var err error
		for try := range 3 {
			at := time.Now()
			if err = ctl("bgp", "drain"); err == nil {
				if try > 0 {
					b.note(t, "dsrd bgp drain on %s was refused %d time(s) while the router had both next hops", d, try)
				}
				return at
			}
			t.Logf("drain refused: %v", err)
			time.Sleep(time.Second)
		}
		b.note(t, "dsrd bgp drain on %s was refused 3 times while the router had both next hops (%v): drained with --force", d, err)
		at := time.Now()
		if err := ctl("bgp", "drain", "--force"); err != nil {
			t.Fatal(err)
		}
		return at
	}
	events := []event{
		{
			name: "added",
			before: func() {
				c.Stop(t, d)
				wait("stopped", only(other(d)), changeWait)
			},
			act:        func() time.Time { at := time.Now(); c.Start(t, d); return at },
			converged:  func() { wait("added", both, announceWait) },
			movedAfter: true,
			restore:    func() {},
		},
		{
			name:   "drained",
			before: func() {},
			act:    drain,
			// The next hop leaves at once (GRACEFUL_SHUTDOWN, local-pref
			// 0 on the router); the routes are withdrawn drain_delay
			// later, with the session kept up: counted after that.
			converged: func() { wait("drained", only(other(d)), changeWait); time.Sleep(drainDelay) },
			restore: func() {
				if err := ctl("bgp", "undrain"); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name:   "lost",
			before: func() {},
			act: func() time.Time {
				if err := lab.SetSwitchPort(d, false); err != nil {
					t.Fatal(err)
				}
				return time.Now()
			},
			converged: func() { wait("lost", only(other(d)), recoverWait) },
			restore: func() {
				if err := lab.SetSwitchPort(d, true); err != nil {
					t.Fatal(err)
				}
			},
		},
	}
	for i := range b.reps["flows"] {
		for _, ev := range events {
			b.ready(t, c, router)
			ev.before()
			mh := openFlows(t, mhT, flowsPerService)
			rr := openFlows(t, rrT, flowsPerService)
			var moved Fraction
			if !ev.movedAfter {
				m1, m2 := mh.onDirector(t, mhT, d), rr.onDirector(t, rrT, d)
				moved = Fraction{m1.Alive + m2.Alive, m1.Total + m2.Total}
			}
			time.Sleep(quiet)
			at := ev.act()
			ev.converged()
			if ev.movedAfter {
				m1, m2 := mh.onDirector(t, mhT, d), rr.onDirector(t, rrT, d)
				moved = Fraction{m1.Alive + m2.Alive, m1.Total + m2.Total}
			}
			// Every flow answered (or broke) since the change, then a
			// moment more: a flow the router moved has sent through
			// the other director by then.
			_ = lab.Poll(recoverWait, 50*time.Millisecond, func() error {
				if !mh.settledSince(time.Now().Add(-3*echoEvery)) || !rr.settledSince(time.Now().Add(-3*echoEvery)) {
					return fmt.Errorf("not settled")
				}
				return nil
			})
			time.Sleep(quiet)
			am, ar := mh.alive(at), rr.alive(at)
			// Counted from the event: alive means answering now.
			now := time.Now().Add(-2 * quiet)
			am2, ar2 := mh.alive(now), rr.alive(now)
			mh.close()
			rr.close()
			if am2.Alive < am.Alive {
				am = am2
			}
			if ar2.Alive < ar.Alive {
				ar = ar2
			}
			b.record(t, p.Name, ev.name+"_moved", fmt.Sprintf("%d/%d", moved.Alive, moved.Total))
			b.record(t, p.Name, ev.name+"_mh", fmt.Sprintf("%d/%d", am.Alive, am.Total))
			b.record(t, p.Name, ev.name+"_rr", fmt.Sprintf("%d/%d", ar.Alive, ar.Total))
			t.Logf("rep %d %s: flows moved %d/%d; alive: mh %d/%d, rr %d/%d", i+1, ev.name,
				moved.Alive, moved.Total, am.Alive, am.Total, ar.Alive, ar.Total)
			ev.restore()
		}
	}
}

// ---- (3) health to the router's FIB -----------------------------------------

func (b *bench) fib(t *testing.T, c *lab.Cluster, router *lab.BGPRouter, p Phase) {
	for i := range b.reps["fib"] {
		if i > 0 {
			b.ready(t, c, router)
		}
		var pids []int
		for _, rs := range reals {
			data, err := os.ReadFile(filepath.Join("/run/dsrd-lab", string(rs)+".pid"))
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
		}
		down := time.Now()
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
		}
		at, _, err := lab.WaitNextHops(bgpVIP, changeWait, 5*time.Millisecond, func(g []netip.Addr) bool { return len(g) == 0 })
		if err != nil {
			t.Fatalf("rep %d: %v", i+1, err)
		}
		gone := at.Sub(down)
		b.record(t, p.Name, "down_ms", Ms(float64(gone.Microseconds())/1000))
		lab.Eventually(t, 10*time.Second, 20*time.Millisecond, func() error {
			for _, pid := range pids {
				if syscall.Kill(pid, 0) == nil {
					return fmt.Errorf("backend %d still runs", pid)
				}
			}
			return nil
		})
		// One real back: timed from when it listens.
		lab.ClusterBackendStartArgs(t, reals[0], backendArgs...)
		up := time.Now()
		at, gws, err := lab.WaitNextHops(bgpVIP, changeWait, 5*time.Millisecond, func(g []netip.Addr) bool { return len(g) > 0 })
		if err != nil {
			t.Fatalf("rep %d: %v", i+1, err)
		}
		b.record(t, p.Name, "up_ms", Ms(float64(at.Sub(up).Microseconds())/1000))
		t.Logf("rep %d: reals down -> route gone %v; one back -> route via %v after %v", i+1,
			gone, gws, at.Sub(up))
		for _, rs := range reals[1:] {
			lab.ClusterBackendStartArgs(t, rs, backendArgs...)
		}
	}
}
