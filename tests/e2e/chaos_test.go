//go:build vmtest && vmcluster && vmchaos

package e2e

// TestChaos runs seeded schedules of faults (tests/chaos) against the lab
// cluster (directors dir1 and dir2, the witness dir3, realserver agents and
// backends in rs1-rs3, the client) under a workload: a short HTTP request
// to the VIP every 50 ms, long-lived TCP connections to the echo service
// exchanging a line every 100 ms, and a UDP probe to a UDP service every
// 100 ms. It checks the invariants of issue 18: (a) the VIP on at most one
// director at every poll, and on exactly one once no fault has acted for
// chaosSettle; (b) after the quiet end, one leader, both directors' IPVS
// alike and every realserver agent's host checking ok; (c) every
// acknowledged admin change and configuration change is what the cluster
// holds at the end; (d) in a run of DSRD_CHAOS_SOAK (make soak), every
// daemon's goroutines, file descriptors and RSS at the end within a bound
// of their level after warm-up; (e) every workload served at 100 % outside
// the faults' windows, and the longest outage per fault kind.
//
// DSRD_CHAOS_SEEDS (a space-separated list) or DSRD_CHAOS_SEED pick the
// schedules, one subtest each (default: one seed from the time);
// DSRD_CHAOS_LENGTH their length (default 3m). Each seed is logged first:
// the same seed replays the same schedule. Each report is logged and
// written to .cache/chaos/report-SEED.md; DSRD_CHAOS_REPORT names a file
// (docs/reliability.md in make soak) whose soak section gets the report.
//
// Clock steps act on the VM's clock, so on every node at once: network
// namespaces share the kernel's CLOCK_REALTIME (time namespaces offset
// only the monotonic and boot clocks), so one node's clock cannot be
// stepped alone in the lab.

import (
	"context"
	"fmt"
	"net/http"
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

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/tests/chaos"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

const (
	// chaosSettle bounds how long the VIP may be without an owner once no
	// fault acts: a failover under TCG takes a few seconds.
	chaosSettle = 15 * time.Second
	// chaosGrace extends every fault's window for the clients' success
	// rate: the cluster's recovery after the fault ends.
	chaosGrace = 15 * time.Second
	// chaosProbeEvery spaces the client's requests; chaosLongEvery the
	// long-lived connections' lines and the UDP probes.
	chaosProbeEvery = 50 * time.Millisecond
	chaosLongEvery  = 100 * time.Millisecond
	// chaosLongConns is the number of long-lived connections.
	chaosLongConns = 4
	// chaosClockBound bounds the VM clock's total offset from the clock
	// steps (well inside the 5 minutes certificates are backdated by).
	chaosClockBound = 2 * time.Minute
	// chaosAdminRetry bounds how long a drain or an undrain is retried
	// until the cluster acknowledges it (a leader lost under a partition
	// is back within a few seconds).
	chaosAdminRetry = 45 * time.Second
	// chaosUDPPort is the UDP service the run adds (the backends answer
	// UDP on 9000).
	chaosUDPPort = 9000
)

// chaosKinds are the fault kinds this runner applies: all of them.
var chaosKinds = chaos.Kinds

// chaosCLIKinds are the faults applied through dsrd's CLI, one after the
// other on a goroutine of their own (applyCLI).
var chaosCLIKinds = []chaos.Kind{chaos.ValidReload, chaos.InvalidReload, chaos.AdminDrain, chaos.AdminUndrain, chaos.Transfer}

// chaosAgents are the hosts whose realserver agents faults may hit.
var chaosAgents = []string{"rs1", "rs2", "rs3"}

func TestChaos(t *testing.T) {
	lab.Require(t)
	var seeds []uint64
	list := os.Getenv("DSRD_CHAOS_SEEDS")
	if list == "" {
		list = os.Getenv("DSRD_CHAOS_SEED")
	}
	for _, f := range strings.Fields(list) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			t.Fatalf("chaos seed %q: %v", f, err)
		}
		seeds = append(seeds, v)
	}
	if len(seeds) == 0 {
		seeds = []uint64{uint64(time.Now().UnixNano())}
	}
	// Short runs (make chaos runs three in CI): denser than the default,
	// a shorter quiet end (the final checks wait for convergence anyway).
	b := chaos.Bounds{Length: 3 * time.Minute, Warmup: 15 * time.Second, Quiet: 30 * time.Second,
		MeanGap: 5 * time.Second, MaxConcurrent: 2, Kinds: chaosKinds}
	if s := os.Getenv("DSRD_CHAOS_LENGTH"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("DSRD_CHAOS_LENGTH %q: %v", s, err)
		}
		b.Length = d
	}
	soak := os.Getenv("DSRD_CHAOS_SOAK") != ""
	if soak {
		// Five minutes without faults first: the level the leak check
		// compares the end with is the cluster's own, under the workload.
		// Then the default pace: a fault every 8 s on average.
		b.Warmup, b.Quiet, b.MeanGap = 5*time.Minute, 45*time.Second, 8*time.Second
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { chaosRun(t, seed, b, soak) })
	}
}

// chaosRun runs one seed's schedule and checks its invariants.
func chaosRun(t *testing.T, seed uint64, b chaos.Bounds, soak bool) {
	var reals []string
	for _, r := range clusterReals {
		reals = append(reals, "web/"+r.IPv4().String())
	}
	top := chaos.Topology{Directors: []string{"dir1", "dir2"}, Witnesses: []string{"dir3"},
		Backends: []string{"rs1", "rs2", "rs3"}, Agents: chaosAgents, Reals: reals}
	schedule, err := chaos.Generate(seed, b, top)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chaos seed %d (DSRD_CHAOS_SEED=%d replays it): %d faults in %s", seed, seed, len(schedule), b.Length)
	for _, f := range schedule {
		t.Logf("  %s", f)
	}

	// A cluster of its own: a seed replays the same way whatever ran
	// before it (Raft's state, the admin states, survive a plain up).
	repo, err := lab.Repo()
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	_, err = lab.Run(wctx, filepath.Join(repo, "tests", "vm", "cluster"), "wipe")
	wcancel()
	if err != nil {
		t.Fatalf("wipe the lab cluster's state: %v", err)
	}
	c, _ := clusterStart(t)
	r := &chaosRunner{t: t, c: c, cliq: make(chan int, 256), schedule: schedule, cliDone: map[int]time.Duration{}}
	r.addUDPService()
	var cwg sync.WaitGroup
	cwg.Go(func() {
		for i := range r.cliq {
			r.applyCLI(r.schedule[i])
			r.mu.Lock()
			r.cliDone[i] = r.since()
			r.mu.Unlock()
		}
	})
	watch, err := c.Watch(20 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	since := func() time.Duration { return time.Since(start) }
	r.since = since

	// The workload: short requests, long-lived connections, UDP probes.
	probeCtx, stopProbes := context.WithCancel(context.Background())
	short, long, udp := &chaosStream{}, &chaosStream{}, &chaosStream{}
	var pwg sync.WaitGroup
	pwg.Go(func() { chaosShort(probeCtx, since, short, r.diagnose) })
	for range chaosLongConns {
		pwg.Go(func() { chaosLongLived(probeCtx, since, long) })
	}
	pwg.Go(func() { chaosUDP(probeCtx, since, udp) })

	// The daemons' footprint, every minute (every 15 s in a short run).
	every := 15 * time.Second
	if soak {
		every = time.Minute
	}
	res := &chaosResources{c: c}
	pwg.Go(func() { res.run(probeCtx, since, every) })

	// One goroutine, the test's, starts every fault and ends it when due
	// (the lab's helpers may fail the test, which only the test's own
	// goroutine may do).
	type pending struct {
		at   time.Duration
		undo func()
	}
	var undos []pending
	runDue := func(until time.Duration) {
		for {
			slices.SortFunc(undos, func(a, b pending) int { return int(a.at - b.at) })
			if len(undos) == 0 || undos[0].at > until {
				return
			}
			u := undos[0]
			undos = undos[1:]
			if d := u.at - since(); d > 0 {
				time.Sleep(d)
			}
			u.undo()
		}
	}
	var warm map[string]chaos.Resources
	for i, f := range schedule {
		runDue(f.At)
		if d := f.At - since(); d > 0 {
			time.Sleep(d)
		}
		if warm == nil {
			warm = res.read(probeCtx) // the level after warm-up, before the first fault
		}
		if undo := r.apply(i, f); undo != nil {
			undos = append(undos, pending{f.End(), undo})
		}
	}
	runDue(b.Length)
	close(r.cliq)
	cwg.Wait()
	if d := b.Length - since(); d > 0 {
		time.Sleep(d)
	}

	// (b): one leader, both directors' IPVS alike, every agent's host
	// repaired, within the bound.
	var final chaos.Final
	lab.Eventually(t, 2*clusterTakeover, 500*time.Millisecond, func() error {
		final = r.final(since())
		if v := chaos.CheckConverged(final); len(v) > 0 {
			return fmt.Errorf("%v", v)
		}
		return nil
	})
	endRes := res.read(probeCtx)
	stopProbes()
	pwg.Wait()
	r.dwg.Wait()
	changes, err := watch.Stop()
	if err != nil {
		t.Fatal(err)
	}
	end := since()

	// The faults' windows as they acted: a CLI fault queued behind a slow
	// one (a drain retried while the cluster had no leader) acts later
	// than scheduled.
	windows := r.windows(end)
	var violations []chaos.Violation
	violations = append(violations, chaos.CheckVIPOwners(chaosSamples(changes, start, end), []string{clusterVIP.String()}, windows, chaosSettle)...)
	violations = append(violations, chaos.CheckConverged(final)...)
	violations = append(violations, chaos.CheckLedger(r.ops, r.finalValues(), end)...)
	if soak {
		violations = append(violations, chaos.CheckLeaks(warm, endRes, end)...)
	}
	streams := []chaosStreamResult{
		chaosOutages("short requests (HTTP, every 50 ms)", short, windows),
		chaosOutages(fmt.Sprintf("long-lived connections (%d, a line every 100 ms)", chaosLongConns), long, windows),
		chaosOutages("UDP probes (every 100 ms)", udp, windows),
	}
	for _, s := range streams {
		violations = append(violations, s.violations...)
	}

	report := chaosReport(seed, b, schedule, streams, res.all(), violations, r.diagnoses)
	t.Log("\n" + report)
	{
		dir := filepath.Join(repo, ".cache", "chaos")
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("report-%d.md", seed)), []byte(report), 0o644)
	}
	if p := os.Getenv("DSRD_CHAOS_REPORT"); p != "" {
		if !filepath.IsAbs(p) {
			p = filepath.Join(repo, p)
		}
		doc, err := os.ReadFile(p)
		if err == nil {
			var out string
			if out, err = chaos.SpliceReport(string(doc), report); err == nil {
				err = os.WriteFile(p, []byte(out), 0o644)
			}
		}
		if err != nil {
			t.Errorf("write the report into %s: %v", p, err)
		}
	}
	for _, v := range violations {
		t.Errorf("invariant violated: %s", v)
	}
}

// chaosGet sends one request to the VIP: nil when it was answered 200.
func chaosGet(ctx context.Context, client *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+clusterVIP.String()+"/", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// chaosSamples turns the watch's changes into a sample every 250 ms.
func chaosSamples(changes []lab.ClusterHolding, start time.Time, end time.Duration) []chaos.VIPSample {
	var out []chaos.VIPSample
	i := 0
	var holders []lab.Host
	for at := time.Duration(0); at < end; at += 250 * time.Millisecond {
		for i < len(changes) && changes[i].At.Sub(start) <= at {
			holders = changes[i].Holders
			i++
		}
		var hs []string
		for _, h := range holders {
			hs = append(hs, string(h))
		}
		out = append(out, chaos.VIPSample{At: at, Holders: map[string][]string{clusterVIP.String(): hs}})
	}
	// Every change counts for split brain, however short.
	for _, ch := range changes {
		if len(ch.Holders) > 1 {
			var hs []string
			for _, h := range ch.Holders {
				hs = append(hs, string(h))
			}
			out = append(out, chaos.VIPSample{At: ch.At.Sub(start), Holders: map[string][]string{clusterVIP.String(): hs}})
		}
	}
	slices.SortFunc(out, func(a, b chaos.VIPSample) int { return int(a.At - b.At) })
	return out
}

// chaosRunner applies faults to the lab cluster and keeps the ledger of
// admin changes.
type chaosRunner struct {
	t *testing.T
	c *lab.Cluster
	// cliq feeds applyCLI's goroutine with indexes into schedule;
	// cliDone (under mu) says when it was done with each, since the run's
	// start (since).
	cliq    chan int
	cliDone map[int]time.Duration
	since   func() time.Duration
	// schedule is the run's faults (diagnose looks only at failures
	// outside their windows).
	schedule []chaos.Fault
	mu       sync.Mutex
	ops      []chaos.Op
	// diagnoses are the snapshots diagnose took (at most
	// chaosMaxDiagnoses; diagnosing counts those started), dwg its
	// goroutines.
	diagnoses  []string
	diagnosing int
	dwg        sync.WaitGroup
}

func (r *chaosRunner) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

// apply starts fault f and returns what ends it (nil for instant faults).
// A step that fails is logged, not fatal: under chaos a command may fail
// (a leader gone); the invariants judge the run.
func (r *chaosRunner) apply(i int, f chaos.Fault) (undo func()) {
	t := r.t
	h := lab.Host(f.Target)
	agent := false
	if a, ok := strings.CutPrefix(f.Target, "agent@"); ok {
		h, agent = lab.Host(a), true // the realserver agent in that host
	}
	logf := func(format string, args ...any) {
		t.Logf("+%s %s: "+format, append([]any{f.At.Round(time.Millisecond), f.Kind}, args...)...)
	}
	if slices.Contains(chaosCLIKinds, f.Kind) {
		r.cliq <- i
		return nil
	}
	switch f.Kind {
	case chaos.KillDaemon:
		if err := r.c.Signal(h, syscall.SIGKILL); err != nil {
			logf("%v", err)
		}
		if h == lab.Dir1 || h == lab.Dir2 {
			// What the packaged unit's ExecStopPost does after any end of
			// the daemon, a SIGKILL included: without it a killed VIP
			// owner's kernel keeps the VIP until the daemon starts again
			// (and cleans up), while the next leader holds it too, which
			// no daemon can prevent (docs/reliability.md).
			ctx, cancel := r.ctx()
			_, err := lab.InNS(ctx, h, r.c.Bin(), "director", "release-vips", "--config", r.c.ConfPath(h))
			cancel()
			if err != nil {
				logf("release-vips in %s: %v", h, err)
			}
		}
		if agent {
			// While its agent is dead the host loses its IPv4 VIP (an
			// operator's mistake, a network restart): the agent started
			// again must repair it.
			ctx, cancel := r.ctx()
			_, err := lab.InNS(ctx, h, "ip", "addr", "del", clusterVIP.String()+"/32", "dev", "lo")
			cancel()
			if err != nil {
				logf("remove the VIP from %s's lo: %v", h, err)
			}
		}
		return func() { r.restart(h) }
	case chaos.StallDaemon:
		if err := r.c.Signal(h, syscall.SIGSTOP); err != nil {
			logf("%v", err)
			return nil
		}
		return func() {
			if err := r.c.Signal(h, syscall.SIGCONT); err != nil {
				logf("cont: %v", err)
			}
		}
	case chaos.LinkDown:
		port := "v-" + f.Target
		if _, err := lab.Run(context.Background(), "ip", "-n", "lan", "link", "set", port, "down"); err != nil {
			logf("%v", err)
		}
		return func() {
			if _, err := lab.Run(context.Background(), "ip", "-n", "lan", "link", "set", port, "up"); err != nil {
				logf("up: %v", err)
			}
		}
	case chaos.Partition:
		if err := chaosPartition(f, true); err != nil {
			logf("%v", err)
		}
		return func() {
			if err := chaosPartition(f, false); err != nil {
				logf("heal: %v", err)
			}
		}
	default:
		return r.applyOther(f, h, logf)
	}
}

// windows is the schedule with each CLI fault's window stretched from its
// scheduled start to when applyCLI was done with it (end for one still
// queued or under way).
func (r *chaosRunner) windows(end time.Duration) []chaos.Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.schedule)
	for i := range out {
		if !slices.Contains(chaosCLIKinds, out[i].Kind) {
			continue
		}
		done, ok := r.cliDone[i]
		if !ok {
			done = end
		}
		out[i].Duration = max(0, done-out[i].At)
	}
	return out
}

// applyCLI applies the faults that go through dsrd's CLI: reloads, admin
// changes and transfers. They run on a goroutine of their own, one after
// the other, because a CLI call may wait up to its timeout for a cluster
// under faults, and the schedule's other faults (ends of stalls and
// partitions above all) must keep their times meanwhile (a stall's SIGCONT
// held back by a drain waiting for the stalled leader made a 3 s stall
// last 10 s).
func (r *chaosRunner) applyCLI(f chaos.Fault) {
	t := r.t
	h := lab.Host(f.Target)
	logf := func(format string, args ...any) {
		t.Logf("+%s %s: "+format, append([]any{f.At.Round(time.Millisecond), f.Kind}, args...)...)
	}
	switch f.Kind {
	case chaos.ValidReload:
		// A change of web's last real's weight, in both directors' files
		// (so a director started again later submits the same), then a
		// reload through the target: acknowledged, it must be what the
		// cluster holds at the end unless a later change replaced it.
		w := 1 + int(f.At/(10*time.Millisecond))%5
		for _, d := range lab.ClusterDirectors() {
			if err := lab.ClusterConfigEdit(r.c.ConfPath(d), func(doc map[string]any) error {
				real, err := lab.ClusterConfigReal(doc, "web", chaosWeighted.IPv4())
				if err == nil {
					real["weight"] = w
				}
				return err
			}); err != nil {
				t.Errorf("edit %s's file: %v", d, err)
				return
			}
		}
		ctx, cancel := r.ctx()
		_, stderr, err := r.c.CLI(ctx, h, "reload")
		cancel()
		r.mu.Lock()
		r.ops = append(r.ops, chaos.Op{At: f.At, Key: chaosWeightKey, Value: strconv.Itoa(w), Acked: err == nil})
		r.mu.Unlock()
		if err != nil {
			logf("weight %d through %s: %v %s", w, h, err, strings.TrimSpace(stderr))
		}
	case chaos.InvalidReload:
		path := r.c.ConfPath(h)
		good, err := os.ReadFile(path)
		if err != nil {
			logf("%v", err)
			return
		}
		if err := os.WriteFile(path, append(slices.Clone(good), []byte("\nservices: [oops\n")...), 0o600); err != nil {
			logf("%v", err)
			return
		}
		ctx, cancel := r.ctx()
		_, _, err = r.c.CLI(ctx, h, "reload")
		cancel()
		if err == nil {
			t.Errorf("+%s: an invalid file was accepted by %s's reload", f.At.Round(time.Millisecond), h)
		}
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Errorf("restore %s: %v", path, err)
		}
	case chaos.AdminDrain, chaos.AdminUndrain:
		svc, real, _ := strings.Cut(f.Target, "/")
		verb, state := "drain", "drained"
		if f.Kind == chaos.AdminUndrain {
			verb, state = "enable", "enabled"
		}
		d := lab.Dir1
		if f.At%2 == 1 {
			d = lab.Dir2
		}
		// Retried until acknowledged, as an operator would: the schedule
		// never drains a service's last enabled real by its own view of
		// the admin states (chaos.Generate), which holds only if every
		// command it issued took effect. Each attempt is in the ledger.
		deadline := time.Now().Add(chaosAdminRetry)
		for attempt := 1; ; attempt++ {
			ctx, cancel := r.ctx()
			_, stderr, err := r.c.CLI(ctx, d, verb, svc, real)
			cancel()
			r.mu.Lock()
			r.ops = append(r.ops, chaos.Op{At: f.At, Key: "admin/" + f.Target, Value: state, Acked: err == nil})
			r.mu.Unlock()
			if err == nil {
				break
			}
			logf("%s %s through %s (attempt %d): %v %s", verb, f.Target, d, attempt, err, strings.TrimSpace(stderr))
			if time.Now().After(deadline) {
				t.Errorf("+%s: %s %s was not acknowledged in %s of retries", f.At.Round(time.Millisecond), verb, f.Target, chaosAdminRetry)
				break
			}
			time.Sleep(time.Second)
		}
	case chaos.Transfer:
		ctx, cancel := r.ctx()
		defer cancel()
		if _, stderr, err := r.c.CLI(ctx, h, "failover"); err != nil {
			logf("%v %s", err, strings.TrimSpace(stderr))
		}
	}
}

// applyOther is the rest of apply: what acts at once.
func (r *chaosRunner) applyOther(f chaos.Fault, h lab.Host, logf func(string, ...any)) (undo func()) {
	t := r.t
	switch f.Kind {
	case chaos.KillBackend:
		lab.ClusterBackendStop(t, h)
		return func() { lab.ClusterBackendStart(t, h) }
	case chaos.Netem:
		ctx, cancel := r.ctx()
		_, err := lab.InNS(ctx, h, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
			"loss", fmt.Sprintf("%d%%", f.LossPct), "delay", fmt.Sprintf("%dms", f.Delay.Milliseconds()))
		cancel()
		if err != nil {
			logf("%v", err)
			return nil
		}
		return func() {
			ctx, cancel := r.ctx()
			defer cancel()
			if _, err := lab.InNS(ctx, h, "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil {
				logf("remove netem: %v", err)
			}
		}
	case chaos.ClockStep:
		step := f.Step
		if d := chaosClockOffset + step; d > chaosClockBound || d < -chaosClockBound {
			step = -step // keep the VM clock within the bound of true time
		}
		now := time.Now().Add(step)
		ctx, cancel := r.ctx()
		_, err := lab.Run(ctx, "date", "-u", "-s", fmt.Sprintf("@%d.%09d", now.Unix(), now.Nanosecond()))
		cancel()
		if err != nil {
			logf("%v", err)
			return nil
		}
		chaosClockOffset += step
		logf("the VM's clock stepped by %s (now %s off)", step, chaosClockOffset)
	default:
		logf("not run by this runner")
	}
	return nil
}

// chaosClockOffset is how far the clock steps have moved the VM's clock
// (one VM, one clock: shared by every run of the test process).
var chaosClockOffset time.Duration

// restart starts a killed daemon again, as systemd would.
func (r *chaosRunner) restart(h lab.Host) {
	if r.c.Running(h) {
		return
	}
	ctx, cancel := r.ctx()
	defer cancel()
	if _, err := r.c.Script(ctx, "start", string(h)); err != nil {
		r.t.Logf("start %s again: %v", h, err)
	}
}

// chaosPartition drops (or stops dropping) the cluster port between f's
// target and its peers, in the target's namespace: both directions, or
// only its outbound packets.
func chaosPartition(f chaos.Fault, cut bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	table := "dsrd_chaos"
	if !cut {
		_, err := lab.InNS(ctx, lab.Host(f.Target), "nft", "delete", "table", "inet", table)
		return err
	}
	var peers []string
	for _, p := range f.Peers {
		peers = append(peers, lab.Host(p).IPv4().String())
	}
	set := strings.Join(peers, ", ")
	rules := fmt.Sprintf("table inet %s {\n chain out { type filter hook output priority 0; ip daddr { %s } tcp dport 7946 drop; ip daddr { %s } tcp sport 7946 drop; }\n", table, set, set)
	if !f.OneWay {
		rules += fmt.Sprintf(" chain in { type filter hook input priority 0; ip saddr { %s } tcp dport 7946 drop; ip saddr { %s } tcp sport 7946 drop; }\n", set, set)
	}
	rules += "}\n"
	_, err := lab.RunInput(ctx, strings.NewReader(rules), "ip", "netns", "exec", f.Target, "nft", "-f", "-")
	return err
}

// final reads what the invariants of the end need.
func (r *chaosRunner) final(at time.Duration) chaos.Final {
	f := chaos.Final{At: at, IPVS: map[string]string{}}
	ctx, cancel := r.ctx()
	defer cancel()
	for _, d := range []lab.Host{lab.Dir1, lab.Dir2, lab.Dir3} {
		st, err := r.c.Status(ctx, d)
		if err == nil && st.Raft.Leader {
			f.Leaders = append(f.Leaders, string(d))
		}
	}
	f.Expected = map[string]string{}
	for _, d := range lab.ClusterDirectors() {
		w, err := lab.ClusterIPVSWeights(ctx, d)
		if err != nil {
			f.IPVS[string(d)] = "unreadable: " + err.Error()
			continue
		}
		f.IPVS[string(d)] = fmt.Sprint(w)
		st, err := r.c.Status(ctx, d)
		if err != nil {
			f.Expected[string(d)] = "unreadable: " + err.Error()
			continue
		}
		f.Expected[string(d)] = fmt.Sprint(chaosExpected(st))
	}
	f.Desired = f.IPVS[string(lab.Dir1)] // the directors must agree with each other
	f.Repaired = map[string]bool{}
	for _, a := range chaosAgents {
		h := lab.Host(a)
		_, err := lab.InNS(ctx, h, r.c.Bin(), "realserver", "check", "--vip", clusterVIP.String(),
			"--vip", lab.ClusterVIP6.String(), "--interface", "eth0")
		f.Repaired["agent@"+a] = err == nil && r.c.Running(h)
	}
	return f
}

// chaosExpected is the IPVS table (as lab.ClusterIPVSWeights reads it)
// that a director's status calls for, by the lab's rules (on_down
// weight0, no sorry servers): a disabled real is deleted, a drained or
// unhealthy one is at weight 0, the others at their configured weight.
func chaosExpected(st api.Status) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, s := range st.Services {
		proto, addr, _ := strings.Cut(s.Key, "/")
		svc, err := netip.ParseAddrPort(addr)
		if err != nil {
			continue // a fwmark service: the lab has none
		}
		m := map[string]int{}
		for _, r := range s.Reals {
			port := r.Port
			if port == 0 {
				port = svc.Port()
			}
			w := r.Weight
			switch {
			case r.Admin == "disabled":
				continue
			case r.Admin == "drained" || r.Health != "up":
				w = 0
			}
			m[netip.AddrPortFrom(r.Address, port).String()] = w
		}
		out[strings.ToUpper(proto)+" "+svc.String()] = m
	}
	return out
}

// chaosWeighted is the real whose weight in web valid reloads change,
// and chaosWeightKey its key in the ledger.
var chaosWeighted = lab.RS3

const chaosWeightKey = "config/web/weight-of-rs3"

// finalValues reads, from dir1's status, the reals' admin states of web
// and the weight valid reloads set.
func (r *chaosRunner) finalValues() map[string]string {
	ctx, cancel := r.ctx()
	defer cancel()
	out := map[string]string{}
	st, err := r.c.Status(ctx, lab.Dir1)
	if err != nil {
		return out
	}
	for _, s := range st.Services {
		if s.Name != "web" {
			continue
		}
		for _, rs := range s.Reals {
			out["admin/web/"+rs.Address.String()] = rs.Admin
			if rs.Address == chaosWeighted.IPv4() {
				out[chaosWeightKey] = strconv.Itoa(rs.Weight)
			}
		}
	}
	return out
}

// chaosReport is the run's report in Markdown.
func chaosReport(seed uint64, b chaos.Bounds, schedule []chaos.Fault, streams []chaosStreamResult, res []chaos.ResourceSample, violations []chaos.Violation, diagnoses []string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "chaos run: seed %d, %s, %d faults; %d invariant violations\n\n", seed, b.Length, len(schedule), len(violations))
	s.WriteString("| workload | probes | served outside faults |\n| --- | --: | --: |\n")
	for _, st := range streams {
		fmt.Fprintf(&s, "| %s | %d | %.2f %% |\n", st.name, st.probes, st.outside)
	}
	s.WriteString("\nOutages (a run of failed probes that began in a fault's window), min / median / max:\n\n")
	s.WriteString("| fault | injected |")
	for _, st := range streams {
		fmt.Fprintf(&s, " %s |", strings.SplitN(st.name, " (", 2)[0])
	}
	s.WriteString("\n| --- | --: |" + strings.Repeat(" --- |", len(streams)) + "\n")
	counts := chaos.Counts(schedule)
	for _, k := range chaos.Kinds {
		seen := counts[k] > 0
		for _, st := range streams {
			seen = seen || len(st.worst[k]) > 0
		}
		if !seen {
			continue
		}
		fmt.Fprintf(&s, "| %s | %d |", k, counts[k])
		for _, st := range streams {
			fmt.Fprintf(&s, " %s |", chaos.Spread(st.worst[k]))
		}
		s.WriteString("\n")
	}
	if len(res) > 0 {
		s.WriteString("\nThe daemons' footprint (* a process started again since the previous column):\n\n")
		s.WriteString(chaos.ResourceTables(res, 7))
	}
	if len(violations) > 0 {
		s.WriteString("\nViolations:\n")
		for _, v := range violations {
			fmt.Fprintf(&s, "\n- %s", v)
		}
		s.WriteString("\n")
	}
	if len(diagnoses) > 0 {
		fmt.Fprintf(&s, "\nWhat the first %d requests that failed outside every fault's window met (taken as each failed):\n\n```\n", len(diagnoses))
		for _, d := range diagnoses {
			s.WriteString(d)
		}
		s.WriteString("```\n")
	}
	return s.String()
}
