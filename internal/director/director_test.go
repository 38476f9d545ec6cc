package director

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// A director restarted over its kernel entries keeps their weights until
// each real's check has a verdict. A real found down confirms the initial
// state of its check: no state change, no health event; its weight must
// still go to 0 at that verdict, and the service's status must count it
// out, not wait for the 30 s resync. (The desired state used to be
// recomputed on state-change events only, so the adopted weight stayed
// until the resync while dsrd status showed the real down, its weight
// 100, "healthy 2".)
func TestAdoptedRealFoundDownLosesItsWeightAtItsVerdict(t *testing.T) {
	reals := []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"}
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	// An interval of 1 s puts the verdict on .23 (its second run) after
	// every other start-up event (the other reals' first runs), so that
	// nothing else triggers a recomputation after it.
	l.writeDirector(n, l.serviceWith("web", 80, `{type: exec, command: [/bin/sh, -c, 'test -e `+l.health+`/"$DSRD_REAL_ADDRESS"'], interval: 1s, timeout: 500ms, rise: 1, fall: 2}`, reals...))
	l.setHealth("192.0.2.21", true)
	l.setHealth("192.0.2.22", true)
	adopted := ipvs.NewService(labWeb, "mh")
	for _, r := range reals {
		adopted.Put(ipvs.NewDestination(netip.MustParseAddr(r), 80, 100))
	}
	n.ipvs.Seed(adopted)

	l.start(n)
	c := apiClient(t, n.sock)
	// Well under the resync interval: the verdict comes within rise/fall
	// and one interval of spread after the configuration.
	testutil.WaitFor(t, resyncInterval/3, ".23 at weight 0 on its down verdict", func() (bool, string) {
		got := weightsOf(n.ipvs, labWeb)
		return slices.Equal(got, []string{"192.0.2.21:80=100", "192.0.2.22:80=100", "192.0.2.23:80=0"}), fmt.Sprint(got)
	})
	s, _ := serviceOf(status(t, c), "web")
	if s.Healthy != 2 || !s.Up {
		t.Errorf("web = %+v, want up with 2 healthy", s)
	}
	for _, r := range s.Reals {
		want := "up"
		if r.Address == netip.MustParseAddr("192.0.2.23") {
			want = "down"
		}
		if r.Health != want {
			t.Errorf("real %s health %q, want %q", r.Address, r.Health, want)
		}
	}
}

// A configuration the director cannot fully follow (a sysctl it cannot
// write) does not freeze IPVS: services are programmed and follow health,
// and the failure is reported and retried.
func TestIPVSFollowsHealthWhenSysctlsFail(t *testing.T) {
	reals := []string{"192.0.2.21", "192.0.2.22"}
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	l.writeDirector(n, l.service("web", 80, reals...))
	for _, r := range reals {
		l.setHealth(r, true)
	}
	n.sys.fail.Store(true)
	l.start(n)
	l.waitWeights(labWeb, "192.0.2.21:80=100", "192.0.2.22:80=100")
	l.setHealth("192.0.2.22", false)
	l.waitWeights(labWeb, "192.0.2.21:80=100", "192.0.2.22:80=0")
	c := apiClient(t, n.sock)
	testutil.WaitFor(t, testTimeout, "the status to follow health too", func() (bool, string) {
		s, _ := serviceOf(status(t, c), "web")
		return s.Healthy == 1, fmt.Sprintf("%+v", s)
	})
	st := status(t, c)
	if st.Reconcile.OK || !strings.Contains(st.Reconcile.Error, "sysctl") {
		t.Errorf("reconcile = %+v, want the sysctl failure", st.Reconcile)
	}
	n.sys.fail.Store(false)
	testutil.WaitFor(t, testTimeout, "the sysctls retried and the reconcile ok", func() (bool, string) {
		st := status(t, c)
		v, _ := n.sys.Get("net.ipv4.vs.sloppy_tcp")
		return st.Reconcile.OK && v == "1", fmt.Sprintf("%+v sloppy_tcp=%q", st.Reconcile, v)
	})
}

// checkRan asks for a recomputation whenever a run changes what the last
// computation took from its check, state change or not, and only then.
func TestCheckRanPokesOnEveryInputChange(t *testing.T) {
	var result atomic.Pointer[healthcheck.Result]
	set := func(r healthcheck.Result) { result.Store(&r) }
	set(healthcheck.Result{Reason: healthcheck.ReasonRefused})
	d := &Director{healthChanged: make(chan struct{}, 1)}
	d.checks = healthcheck.NewScheduler(healthcheck.SchedulerOptions{OnRun: d.checkRan})
	d.inputs = newHealthInputs(d.checks.Status)
	k := key("web", "192.0.2.21", 80)
	p := healthcheck.Params{Interval: 10 * time.Millisecond, Timeout: 5 * time.Millisecond, Rise: 1, Fall: 3, Initial: healthcheck.StateUp}
	d.checks.Add(healthcheck.Check{Key: k, Params: p, Checker: healthcheck.CheckerFunc(func(context.Context, healthcheck.Target) healthcheck.Result {
		return *result.Load()
	})})
	ctx := ctxTimeout(t)
	done := make(chan struct{})
	go func() { defer close(done); d.checks.Run(ctx) }() // ends with ctx
	t.Cleanup(func() { <-done })

	runs := func() uint64 { s, _ := d.checks.Status(k); return s.Runs }
	// compute stands for a desired computation: it records the input.
	compute := func() healthInput {
		d.inputs.begin()
		in, ok := d.inputs.view(k, p)
		if !ok {
			t.Fatal("no status")
		}
		select { // forget the pokes that came before
		case <-d.healthChanged:
		default:
		}
		return in
	}
	waitPoke := func(what string, cond func(healthInput) bool) healthInput {
		t.Helper()
		for deadline := time.Now().Add(testTimeout); ; {
			select {
			case <-d.healthChanged:
				if in := compute(); cond(in) {
					return in
				}
			case <-time.After(time.Until(deadline)):
				t.Fatalf("no recomputation asked for %s", what)
			}
		}
	}

	// Up initially, failing: no verdict until fall runs, then down.
	in := compute()
	if in.State != healthcheck.StateUp || in.Settled {
		t.Fatalf("first input %+v, want up without a verdict", in)
	}
	waitPoke("the first failure's reason", func(in healthInput) bool { return in.Reason == healthcheck.ReasonRefused })
	waitPoke("the down verdict", func(in healthInput) bool { return in.State == healthcheck.StateDown && in.Settled })

	// Same result again and again: nothing to recompute.
	from := runs()
	testutil.WaitFor(t, testTimeout, "five more runs", func() (bool, string) { return runs() >= from+5, fmt.Sprint(runs()) })
	select {
	case <-d.healthChanged:
		t.Error("a recomputation was asked for though no input changed")
	default:
	}

	// A drain answer changes no state (already down) but the reason.
	set(healthcheck.Result{Reason: healthcheck.ReasonDraining})
	waitPoke("a drain answer", func(in healthInput) bool { return in.Reason == healthcheck.ReasonDraining })
	set(healthcheck.Result{Up: true})
	waitPoke("the rise", func(in healthInput) bool { return in.State == healthcheck.StateUp })
}

// A restarted director programs nothing while Raft replays its log
// through older states: the kernel already holds a later one, and an
// older one would undo it for a moment (here: drain a real that the
// operator drained and enabled again many times before the restart).
func TestRestartHoldsIPVSWhileRaftReplays(t *testing.T) {
	reals := []string{"192.0.2.21", "192.0.2.22"}
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	l.writeDirector(n, l.serviceWith("web", 80, "{type: none}", reals...))
	l.start(n)
	l.waitWeights(labWeb, "192.0.2.21:80=100", "192.0.2.22:80=100")
	c := apiClient(t, n.sock)
	for i := range 30 {
		state := "drained"
		if i%2 == 1 {
			state = "enabled"
		}
		if err := retryTransient(t, func() error {
			_, err := c.SetAdmin(ctxTimeout(t), api.AdminRequest{Service: "web", Real: netip.MustParseAddr("192.0.2.22"), State: state})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	l.waitWeights(labWeb, "192.0.2.21:80=100", "192.0.2.22:80=100")
	testutil.WaitFor(t, testTimeout, "the last state recorded", func() (bool, string) {
		saved, err := loadOwned(n.data)
		return err == nil && saved.index == n.d.node.State().Index, fmt.Sprint(saved.index, err)
	})
	l.stop(n)
	n.ipvs.ResetCalls()
	l.start(n)
	testutil.WaitFor(t, testTimeout, "the restarted director to run the cluster's state", func() (bool, string) {
		st := status(t, c)
		return st.Generation > 0 && st.RunningGeneration == st.Generation && st.Reconcile.OK && !st.Reconcile.At.IsZero(),
			fmt.Sprintf("%+v", st.Reconcile)
	})
	if w := n.ipvs.Writes(); w != 0 {
		t.Errorf("the restart made %d IPVS writes, want none: %v", w, n.ipvs.Calls())
	}
}

func TestCatchUp(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	d := &catchUp{log: testutil.Logger(t), started: start, below: 10}
	at := func(index uint64) raft.State { return raft.State{Index: index} }
	steps := []struct {
		name   string
		index  uint64
		leader bool
		after  time.Duration
		hold   bool
	}{
		{"replaying, no leader yet", 3, false, time.Second, true},
		{"replaying, leader known", 7, true, 2 * time.Second, true},
		{"no leader for long: still held", 7, false, time.Hour, true},
		{"caught up", 10, true, 3 * time.Second, false},
		{"over for good", 4, true, 3 * time.Second, false},
	}
	for _, s := range steps {
		err := d.check(at(s.index), s.leader, start.Add(s.after))
		if hold := errors.Is(err, errCatchingUp); hold != s.hold || (err != nil && !hold) {
			t.Errorf("%s: catchUp = %v, want hold %v", s.name, err, s.hold)
		}
	}
	// A state that stays older while a leader is known: the cluster went
	// back (rebuilt); followed after catchUpMax.
	d = &catchUp{log: testutil.Logger(t), started: start, below: 10}
	if err := d.check(at(2), true, start.Add(catchUpMax-time.Millisecond)); !errors.Is(err, errCatchingUp) {
		t.Errorf("before catchUpMax: %v, want a hold", err)
	}
	if err := d.check(at(2), true, start.Add(catchUpMax)); err != nil {
		t.Errorf("after catchUpMax with a leader: %v, want none", err)
	}
}

// A SIGHUP during start-up calls Reload before Run has started Raft: it
// used to dereference the nil node and crash the daemon. Such a reload
// now waits for the director to be ready, bounded by its context.
func TestReloadBeforeRunWaitsForReady(t *testing.T) {
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	l.writeDirector(n, l.service("web", 80, "192.0.2.21"))
	d := l.newDirector(n)

	// Not ready within its deadline: a clear error, nothing else.
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if res, err := d.Reload(ctx); !errors.Is(err, errStarting) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("reload before run: %+v, %v; want errStarting after the deadline", res, err)
	}
	if !strings.Contains(errStarting.Error(), "try the reload again") {
		t.Errorf("errStarting %q does not say what to do", errStarting)
	}

	// Asked for before Run, done once the director is ready: not lost.
	type outcome struct {
		res api.ReloadResult
		err error
	}
	got := make(chan outcome, 1)
	go func() { // ends when the reload is done or ctxTimeout expires
		res, err := d.Reload(ctxTimeout(t))
		got <- outcome{res, err}
	}()
	l.run(n, d)
	select {
	case o := <-got:
		// The file was read; its submission may meet a cluster that has
		// not elected its leader yet, which the result says (as any
		// reload's would then).
		if o.err != nil || o.res.At.IsZero() || !o.res.OK && !(len(o.res.Errors) == 1 && strings.HasPrefix(o.res.Errors[0], "submit to the cluster")) {
			t.Fatalf("reload asked for during start: %+v, %v", o.res, o.err)
		}
	case <-time.After(testTimeout):
		t.Fatal("a reload asked for during start was not done once the director was ready")
	}
}

// node.notify reaches the VIP state machine: a lone director runs its
// backup program at start and its master program when it takes the VIPs.
func TestNotifyProgramsRunOnTransitions(t *testing.T) {
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	out := joinPath(l.dir, "transitions")
	script := joinPath(l.dir, "notify.sh")
	writeFile(t, script, "#!/bin/sh\necho \"$1 $DSRD_STATE $DSRD_VIPS\" >> \"$2\"\n")
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}
	notify := fmt.Sprintf("  notify: {backup: [%s, backup, %s], master: [%[1]s, master, %[2]s], timeout: 10s}\n", script, out)
	file := strings.Replace(l.directorFile(n, l.service("web", 80, "192.0.2.21")), "  interface: eth0\n", "  interface: eth0\n"+notify, 1)
	writeFile(t, n.conf, file)
	l.start(n)
	testutil.WaitFor(t, testTimeout, "the backup then master programs", func() (bool, string) {
		b, _ := os.ReadFile(out)
		return string(b) == "backup BACKUP "+labVIP.String()+"\nmaster MASTER "+labVIP.String()+"\n", string(b)
	})
}
