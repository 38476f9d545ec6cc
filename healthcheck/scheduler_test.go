package healthcheck

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"

	"github.com/dsrd/dsrd/ipvs"
)

// eventBound is how long a scheduler test waits for the events it expects.
const eventBound = 20 * time.Second

// fakeChecker answers from a per-key table and counts its runs.
type fakeChecker struct {
	mu   sync.Mutex
	up   map[Key]bool
	runs map[Key]int
	// gate, when not nil, makes every check wait for it to be closed (or
	// for its context to end).
	gate     chan struct{}
	inflight atomic.Int32
	maxIn    atomic.Int32
}

func newFakeChecker() *fakeChecker {
	return &fakeChecker{up: make(map[Key]bool), runs: make(map[Key]int)}
}

func (f *fakeChecker) set(up bool, keys ...Key) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		f.up[k] = up
	}
}

func (f *fakeChecker) count(k Key) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.runs[k]
}

// Check implements Checker.
func (f *fakeChecker) Check(ctx context.Context, t Target) Result {
	n := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		m := f.maxIn.Load()
		if n <= m || f.maxIn.CompareAndSwap(m, n) {
			break
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return Result{Reason: ReasonCanceled}
		}
	}
	k := Key{Service: ipvs.MustParseServiceKey(t.Service), Real: t.Real}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[k]++
	if f.up[k] {
		return Result{Up: true, Reason: ReasonOK}
	}
	return Result{Reason: ReasonRefused, Message: "fake refused"}
}

// fakeKey is the key of the i-th fake real.
func fakeKey(i int) Key {
	return Key{Service: ipvs.FWMarkKey(ipvs.IPv4, uint32(1+i%7)), Real: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)}), uint16(1000+i))}
}

// fakeChecks returns n checks of keys from..from+n-1 using c.
func fakeChecks(c Checker, from, n int, p Params) []Check {
	checks := make([]Check, n)
	for i := range checks {
		k := fakeKey(from + i)
		checks[i] = Check{
			Key: k, Target: Target{Service: k.Service.String(), Real: k.Real, Addr: k.Real},
			Type: TypeTCP, Checker: c, Params: p, Fingerprint: "v1",
		}
	}
	return checks
}

func keysOf(checks []Check) []Key {
	keys := make([]Key, len(checks))
	for i, c := range checks {
		keys[i] = c.Key
	}
	return keys
}

// runScheduler runs s until the test ends and checks that Run returns.
func runScheduler(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(eventBound):
			t.Errorf("Run did not return after cancel")
		}
	})
}

// collect reads events until it has one for every key in keys, failing on
// an event of another key or state.
func collect(t *testing.T, events <-chan Event, state State, keys []Key) map[Key]Event {
	t.Helper()
	wantKeys := make(map[Key]bool, len(keys))
	for _, k := range keys {
		wantKeys[k] = true
	}
	got := make(map[Key]Event, len(keys))
	timeout := time.After(eventBound)
	for len(got) < len(keys) {
		select {
		case ev := <-events:
			if !wantKeys[ev.Key] || ev.State != state {
				t.Fatalf("unexpected event %+v while waiting for %s events", ev, state)
			}
			if _, dup := got[ev.Key]; dup {
				t.Fatalf("second %s event for %s", state, ev.Key)
			}
			got[ev.Key] = ev
		case <-timeout:
			t.Fatalf("got %d of %d %s events within %s", len(got), len(keys), state, eventBound)
		}
	}
	return got
}

// settle waits until every key ran at least n more times than now.
func settle(t *testing.T, f *fakeChecker, keys []Key, n int) {
	t.Helper()
	base := make([]int, len(keys))
	for i, k := range keys {
		base[i] = f.count(k)
	}
	testutil.WaitFor(t, eventBound, fmt.Sprintf("%d more runs of %d checks", n, len(keys)), func() (bool, string) {
		for i, k := range keys {
			if f.count(k) < base[i]+n {
				return false, "not yet"
			}
		}
		return true, ""
	})
}

// noEvent fails if an event is pending.
func noEvent(t *testing.T, events <-chan Event) {
	t.Helper()
	select {
	case ev := <-events:
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

var fastParams = Params{Interval: 10 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2, Initial: StateDown}

func TestSchedulerEvents(t *testing.T) {
	f := newFakeChecker()
	events := make(chan Event, 10000)
	s := NewScheduler(SchedulerOptions{Concurrency: 16, OnChange: func(ev Event) { events <- ev }})
	checks := fakeChecks(f, 0, 300, fastParams)
	keys := keysOf(checks)
	f.set(true, keys...)
	s.Update(checks)
	runScheduler(t, s)

	ups := collect(t, events, StateUp, keys)
	for _, ev := range ups {
		if ev.Previous != StateDown || ev.Reason != ReasonOK || ev.Since.IsZero() {
			t.Fatalf("bad up event %+v", ev)
		}
	}
	// Repeated up results: no more events.
	settle(t, f, keys, 3)
	noEvent(t, events)

	// Half go down.
	downKeys := keys[:150]
	f.set(false, downKeys...)
	downs := collect(t, events, StateDown, downKeys)
	for _, ev := range downs {
		if ev.Previous != StateUp || ev.Reason != ReasonRefused || ev.Message != "fake refused" {
			t.Fatalf("bad down event %+v", ev)
		}
	}
	settle(t, f, keys, 3)
	noEvent(t, events)

	snap := s.Snapshot()
	if len(snap) != len(keys) {
		t.Fatalf("snapshot of %d checks, want %d", len(snap), len(keys))
	}
	for i := 1; i < len(snap); i++ {
		if snap[i-1].Key.compare(snap[i].Key) >= 0 {
			t.Fatalf("snapshot not ordered at %d", i)
		}
	}
	for _, st := range snap {
		wantState := StateUp
		if _, isDown := downs[st.Key]; isDown {
			wantState = StateDown
		}
		if st.State != wantState || st.Runs == 0 || st.LastRun.IsZero() || st.Type != TypeTCP {
			t.Fatalf("status %+v, want state %s", st, wantState)
		}
	}
}

func TestSchedulerNoEventWithoutChange(t *testing.T) {
	for _, initial := range []State{StateDown, StateUp} {
		t.Run(initial.String(), func(t *testing.T) {
			f := newFakeChecker()
			events := make(chan Event, 100)
			s := NewScheduler(SchedulerOptions{OnChange: func(ev Event) { events <- ev }})
			p := fastParams
			p.Initial = initial
			checks := fakeChecks(f, 0, 50, p)
			f.set(initial == StateUp, keysOf(checks)...)
			s.Update(checks)
			runScheduler(t, s)
			settle(t, f, keysOf(checks), 5)
			noEvent(t, events)
			for _, st := range s.Snapshot() {
				if st.State != initial {
					t.Fatalf("status %+v, want %s", st, initial)
				}
			}
		})
	}
}

func TestSchedulerUpdate(t *testing.T) {
	f := newFakeChecker()
	events := make(chan Event, 1000)
	s := NewScheduler(SchedulerOptions{OnChange: func(ev Event) { events <- ev }})
	checks := fakeChecks(f, 0, 10, fastParams)
	keys := keysOf(checks)
	f.set(true, keys...)
	s.Update(checks)
	runScheduler(t, s)
	collect(t, events, StateUp, keys)

	before := make(map[Key]Status)
	for _, st := range s.Snapshot() {
		before[st.Key] = st
	}

	// 0-4 unchanged, 5 redefined, 6-9 removed, 10-11 added.
	next := append([]Check(nil), checks[:6]...)
	next[5].Fingerprint = "v2"
	next[5].Params.Interval = 20 * time.Millisecond
	added := fakeChecks(f, 10, 2, fastParams)
	f.set(true, keysOf(added)...)
	next = append(next, added...)
	s.Update(next)
	removedRuns := make(map[Key]int)
	for _, k := range keys[6:] {
		removedRuns[k] = f.count(k)
		if _, ok := s.Status(k); ok {
			t.Fatalf("%s still has a status after removal", k)
		}
	}
	if s.Len() != 8 {
		t.Fatalf("%d checks, want 8", s.Len())
	}

	// The new checks come up from their initial state; nothing else moves.
	collect(t, events, StateUp, keysOf(added))
	settle(t, f, keysOf(next), 3)
	noEvent(t, events)
	for _, k := range keys[:6] {
		st, ok := s.Status(k)
		if !ok || st.State != StateUp || !st.Since.Equal(before[k].Since) {
			t.Fatalf("%s: status %+v, want up since %s", k, st, before[k].Since)
		}
	}
	if st, _ := s.Status(keys[0]); st.Runs <= before[keys[0]].Runs {
		t.Errorf("unchanged check's run count went from %d to %d", before[keys[0]].Runs, st.Runs)
	}
	// A run in flight at removal may still reach the checker, no more.
	for k, n := range removedRuns {
		if got := f.count(k); got > n+1 {
			t.Errorf("removed check %s ran %d times after removal", k, got-n)
		}
	}

	// Remove and Add one at a time.
	if !s.Remove(keys[0]) || s.Remove(keys[0]) {
		t.Error("Remove: want true then false")
	}
	s.Add(checks[0])
	if st, ok := s.Status(keys[0]); !ok || st.State != StateDown {
		t.Errorf("re-added check: %+v, want its initial state down", st)
	}
	collect(t, events, StateUp, keys[:1])
}

func TestSchedulerRedefinedKeepsState(t *testing.T) {
	f := newFakeChecker()
	events := make(chan Event, 100)
	s := NewScheduler(SchedulerOptions{OnChange: func(ev Event) { events <- ev }})
	p := fastParams
	p.Fall = 3
	checks := fakeChecks(f, 0, 1, p)
	f.set(true, checks[0].Key)
	s.Update(checks)
	runScheduler(t, s)
	collect(t, events, StateUp, keysOf(checks))

	// The new definition fails: the state stays up until fall failures.
	changed := checks[0]
	changed.Fingerprint = "v2"
	f.set(false, changed.Key)
	s.Add(changed)
	if st, _ := s.Status(changed.Key); st.State != StateUp {
		t.Fatalf("state %s right after the update, want up", st.State)
	}
	ev := collect(t, events, StateDown, keysOf(checks))[changed.Key]
	if ev.Previous != StateUp {
		t.Errorf("event %+v", ev)
	}
}

func TestSchedulerCancelEndsGoroutines(t *testing.T) {
	baseline := runtime.NumGoroutine()
	f := newFakeChecker()
	f.gate = make(chan struct{}) // never opened: checks end with ctx
	s := NewScheduler(SchedulerOptions{Concurrency: 8})
	s.Update(fakeChecks(f, 0, 100, Params{Interval: 10 * time.Millisecond, Timeout: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	testutil.WaitFor(t, eventBound, "all workers busy", func() (bool, string) { return f.inflight.Load() == 8, "not yet" })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(eventBound):
		t.Fatal("Run did not return after cancel")
	}
	if n := f.inflight.Load(); n != 0 {
		t.Errorf("%d checks still running after Run returned", n)
	}
	testutil.WaitFor(t, eventBound, "goroutines back to the baseline", func() (bool, string) { return runtime.NumGoroutine() <= baseline, "not yet" })
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestSchedulerConcurrencyBound(t *testing.T) {
	f := newFakeChecker()
	f.gate = make(chan struct{})
	s := NewScheduler(SchedulerOptions{Concurrency: 4})
	checks := fakeChecks(f, 0, 40, Params{Interval: time.Millisecond, Timeout: time.Hour})
	s.Update(checks)
	runScheduler(t, s)
	testutil.WaitFor(t, eventBound, "4 checks in flight", func() (bool, string) { return f.inflight.Load() == 4, "not yet" })
	close(f.gate)
	settle(t, f, keysOf(checks), 1)
	if m := f.maxIn.Load(); m != 4 {
		t.Errorf("up to %d checks ran at once, want 4", m)
	}
}

func TestSchedulerCheckerPanics(t *testing.T) {
	events := make(chan Event, 10)
	s := NewScheduler(SchedulerOptions{OnChange: func(ev Event) { events <- ev }})
	k := fakeKey(0)
	s.Add(Check{Key: k, Target: Target{Service: k.Service.String(), Real: k.Real, Addr: k.Real},
		Checker: CheckerFunc(func(context.Context, Target) Result { panic("boom") }),
		Params:  Params{Interval: 10 * time.Millisecond, Fall: 1, Initial: StateUp}})
	runScheduler(t, s)
	ev := collect(t, events, StateDown, []Key{k})[k]
	if ev.Reason != ReasonError || ev.Message != "checker panicked: boom" {
		t.Errorf("event %+v", ev)
	}
}

// fakeClock is a Clock whose time moves only when told to.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clock  *fakeClock
	c      chan time.Time
	when   time.Time
	active bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	c.mu.Lock()
	c.timers = append(c.timers, t)
	c.mu.Unlock()
	t.Reset(d)
	return t
}

func (c *fakeClock) timerCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves the time forward and fires the timers due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for _, t := range c.timers {
		t.fireLocked()
	}
}

func (t *fakeTimer) fireLocked() {
	if t.active && !t.when.After(t.clock.now) {
		t.active = false
		select {
		case t.c <- t.clock.now:
		default:
		}
	}
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Reset(d time.Duration) {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	select {
	case <-t.c: // no stale time after Reset, as time.Timer since Go 1.23
	default:
	}
	t.when, t.active = t.clock.now.Add(d), true
	t.fireLocked()
}

func (t *fakeTimer) Stop() {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	t.active = false
	select {
	case <-t.c:
	default:
	}
}

func TestSchedulerSpreadAndPhase(t *testing.T) {
	const (
		n        = 1000
		interval = time.Second
		buckets  = 10
	)
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	var (
		mu   sync.Mutex
		runs = make(map[Key]Run)
	)
	s := NewScheduler(SchedulerOptions{Clock: clock, OnRun: func(r Run) {
		mu.Lock()
		runs[r.Key] = r
		mu.Unlock()
	}})
	f := newFakeChecker()
	s.Update(fakeChecks(f, 0, n, Params{Interval: interval, Timeout: time.Second}))
	runScheduler(t, s)
	// The loop creates its timer after spreading the checks added before Run.
	testutil.WaitFor(t, eventBound, "the loop to start", func() (bool, string) { return clock.timerCount() > 0, "not yet" })

	// First runs are spread uniformly over one interval from now.
	first := make(map[Key]time.Time)
	var hist [buckets]int
	for _, st := range s.Snapshot() {
		if st.Next.Before(t0) || !st.Next.Before(t0.Add(interval)) {
			t.Fatalf("%s first due at %s, want within [%s, +%s)", st.Key, st.Next, t0, interval)
		}
		first[st.Key] = st.Next
		hist[st.Next.Sub(t0)*buckets/interval]++
	}
	// Expected n/buckets = 100 per bucket, standard deviation about 9.5.
	for i, c := range hist {
		if c < 50 || c > 150 {
			t.Errorf("bucket %d of the first interval has %d first runs, want about %d: %v", i, c, n/buckets, hist)
		}
	}
	if len(runs) != 0 {
		t.Fatalf("%d checks ran before their time", len(runs))
	}

	// One interval later every check ran once, at its scheduled time, and
	// is due again one interval after it: the phase is kept.
	clock.Advance(interval)
	testutil.WaitFor(t, eventBound, "every check to run", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(runs) == n, "not yet"
	})
	mu.Lock()
	defer mu.Unlock()
	for _, st := range s.Snapshot() {
		r := runs[st.Key]
		if !r.Scheduled.Equal(first[st.Key]) || !r.Started.Equal(t0.Add(interval)) {
			t.Fatalf("%s: run %+v, want scheduled at %s", st.Key, r, first[st.Key])
		}
		if st.Next.IsZero() {
			continue // its next run is being dispatched
		}
		if !st.Next.Equal(r.Scheduled.Add(interval)) {
			t.Fatalf("%s next due at %s, want %s", st.Key, st.Next, r.Scheduled.Add(interval))
		}
	}
}

func TestNextRun(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	sec := time.Second
	tests := []struct {
		name string
		now  time.Duration // after the scheduled time
		want time.Duration
	}{
		{"on time", 10 * time.Millisecond, sec},
		{"late within the interval", 900 * time.Millisecond, sec},
		{"exactly one interval late", sec, 2 * sec},
		{"two and a half intervals late", 2500 * time.Millisecond, 3 * sec},
	}
	for _, tt := range tests {
		if got := nextRun(t0, sec, t0.Add(tt.now)).Sub(t0); got != tt.want {
			t.Errorf("%s: next after %s, want %s", tt.name, got, tt.want)
		}
	}
}
