package healthcheck

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// DefaultConcurrency is how many checks run at once when
// SchedulerOptions.Concurrency is zero.
const DefaultConcurrency = 256

// dispatchSlack is the least time the dispatch loop sleeps once it has
// handed out every due check: it caps the loop's wake-ups at 1,000 a second
// whatever the number of checks (10,000 checks a second would otherwise
// wake it every 100 µs), at the price of starting a check up to about 1 ms
// late, negligible next to intervals of seconds.
const dispatchSlack = time.Millisecond

// Event is a change of a real's health state.
type Event struct {
	Key Key
	// Service is the service's name (the check's Target.Service).
	Service string
	// State is the new state; Previous the one it replaces.
	State, Previous State
	// Reason and Message are those of the result that made the change.
	Reason  Reason
	Message string
	// Since is when the state changed.
	Since time.Time
}

// Run describes one completed run of a check, for metrics.
type Run struct {
	Key Key
	// Service is the service's name (the check's Target.Service).
	Service string
	// Scheduled is when the run was due; Started when it began. Their
	// difference is the scheduler's lateness (start jitter).
	Scheduled, Started time.Time
	Result             Result
}

// Status is a check's current state and last result.
type Status struct {
	Key    Key
	Target Target
	Type   Type
	// State is the rise/fall state, Since when it was entered (or the
	// check added).
	State State
	Since time.Time
	// Successes and Failures are the consecutive results counted so far.
	Successes, Failures int
	// Last is the last result; LastRun when it started (zero before the
	// first run).
	Last    Result
	LastRun time.Time
	// Next is when the check is due next (zero while it runs).
	Next time.Time
	// Runs counts completed runs.
	Runs uint64
}

// SchedulerOptions configures a Scheduler. The zero value is usable.
type SchedulerOptions struct {
	// Concurrency bounds how many checks run at once; DefaultConcurrency
	// when zero. Size it to at least checks-per-second × typical check
	// duration: a check that hits its timeout holds a worker that long.
	Concurrency int
	// Logger receives state changes (info) and checker panics (error);
	// nothing is logged when nil.
	Logger *slog.Logger
	// Clock is the source of time; SystemClock when nil.
	Clock Clock
	// OnChange receives every state change, in the order they happened,
	// one call at a time from one goroutine. It may call the scheduler's
	// methods. While it blocks, later events queue up (they are not
	// dropped, nor do they slow the checks).
	OnChange func(Event)
	// OnRun, when set, is called after every counted run (not those of a
	// check removed or redefined while it ran), concurrently
	// from the workers: it must be safe for concurrent use and fast.
	OnRun func(Run)
}

// Scheduler runs checks at their intervals with bounded concurrency and
// turns their results into states with rise and fall.
//
// One goroutine (Run's) keeps every check in a min-heap ordered by next
// run time and sleeps on a single timer until the earliest is due, then
// hands it to a fixed pool of workers: an idle check costs no goroutine
// and no timer. The loop sleeps at least 1 ms between wake-ups, so a check
// starts up to about 1 ms after it is due. A check's first run is spread uniformly at random over its
// interval, so checks added together do not fire together; later runs keep
// that phase (fixed rate), skipping slots missed while the check was late
// or slow. A check never runs twice at once, except that a redefined
// check may start while the run of its old definition, whose result is
// discarded, finishes.
//
// Checks can be added, updated and removed at any time, before or while
// Run runs; all methods are safe for concurrent use.
type Scheduler struct {
	workers  int
	log      *slog.Logger
	clock    Clock
	onChange func(Event)
	onRun    func(Run)

	// wake tells the loop the earliest due time may have moved earlier.
	wake chan struct{}
	// notify tells the notifier that events are pending.
	notify chan struct{}

	// epoch is the origin of entry.at.
	epoch time.Time

	mu      sync.Mutex
	entries map[Key]*entry
	queue   entryHeap
	pending []Event
	started bool
}

// entry is the scheduler's record of one check. Guarded by Scheduler.mu.
type entry struct {
	check   Check
	rf      RiseFall
	since   time.Time
	last    Result
	lastRun time.Time
	runs    uint64
	// next is when the check is due, at the same as nanoseconds since the
	// scheduler's epoch (cheaper to compare in the heap); index is the
	// entry's position in the heap, -1 while it runs or after removal.
	next  time.Time
	at    int64
	index int
	// gen changes when the check is redefined or removed: a run started
	// under another gen is discarded.
	gen uint64
}

// job is one run handed to a worker.
type job struct {
	e         *entry
	gen       uint64
	check     Check
	scheduled time.Time
}

// NewScheduler returns a scheduler with no checks. Call Run to start it.
func NewScheduler(opts SchedulerOptions) *Scheduler {
	s := &Scheduler{
		workers:  opts.Concurrency,
		log:      opts.Logger,
		clock:    opts.Clock,
		onChange: opts.OnChange,
		onRun:    opts.OnRun,
		wake:     make(chan struct{}, 1),
		notify:   make(chan struct{}, 1),
		entries:  make(map[Key]*entry),
	}
	if s.workers <= 0 {
		s.workers = DefaultConcurrency
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = SystemClock{}
	}
	s.epoch = s.clock.Now()
	return s
}

// setNext sets when e is due; s.mu is held and e is not in the heap, or
// heap.Fix follows.
func (s *Scheduler) setNext(e *entry, next time.Time) {
	e.next = next
	e.at = int64(next.Sub(s.epoch))
	if e.index >= 0 {
		s.queue[e.index].at = e.at
	}
}

// Add adds a check, or updates the check with the same key: when its
// fingerprint is unchanged nothing happens; otherwise the new definition
// replaces the old one, the state (up or down, and since when) is kept, the
// rise/fall counts restart and the next run is spread over the new interval.
// A run of the old definition still in flight is discarded.
func (s *Scheduler) Add(c Check) {
	s.mu.Lock()
	s.upsertLocked(c, s.clock.Now())
	s.mu.Unlock()
	s.poke()
}

// Update makes checks the scheduler's whole set: checks whose key is not
// in it are removed, the others added or updated as by Add. The state of
// unchanged checks is kept. Removal and update emit no event.
func (s *Scheduler) Update(checks []Check) {
	keep := make(map[Key]bool, len(checks))
	for _, c := range checks {
		keep[c.Key] = true
	}
	s.mu.Lock()
	for k := range s.entries {
		if !keep[k] {
			s.removeLocked(k)
		}
	}
	now := s.clock.Now()
	for _, c := range checks {
		s.upsertLocked(c, now)
	}
	s.mu.Unlock()
	s.poke()
}

// Remove removes the check with key k and reports whether it existed. A run
// in flight finishes (within its timeout) but its result is discarded.
func (s *Scheduler) Remove(k Key) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeLocked(k)
}

// Status returns the status of the check with key k.
func (s *Scheduler) Status(k Key) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[k]
	if !ok {
		return Status{}, false
	}
	return e.status(), true
}

// Snapshot returns the status of every check, ordered by key.
func (s *Scheduler) Snapshot() []Status {
	s.mu.Lock()
	out := make([]Status, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, e.status())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return a.Key.compare(b.Key) })
	return out
}

// Len returns the number of checks.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// Run runs the checks until ctx is done, then cancels the runs in flight,
// waits for every goroutine it started (the workers and the notifier) to
// end, and returns nil. Events not yet delivered to OnChange when ctx ends
// are dropped. Run can be called only once.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("scheduler: run called twice")
	}
	s.started = true
	// Spread the first runs of the checks added before Run from now.
	now := s.clock.Now()
	for _, it := range s.queue {
		if e := it.e; e.runs == 0 {
			s.setNext(e, now.Add(spread(e.check.Params.Interval)))
		}
	}
	heap.Init(&s.queue)
	s.mu.Unlock()

	jobs := make(chan job)
	var wg sync.WaitGroup
	// Workers end when jobs is closed, after the loop returns.
	for range s.workers {
		wg.Go(func() { s.worker(ctx, jobs) })
	}
	// The notifier ends when ctx is done.
	wg.Go(func() { s.notifier(ctx) })
	s.loop(ctx, jobs)
	close(jobs)
	wg.Wait()
	return nil
}

// loop dispatches due checks to the workers until ctx is done.
func (s *Scheduler) loop(ctx context.Context, jobs chan<- job) {
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var (
			j    job
			due  bool
			wait = time.Hour
		)
		s.mu.Lock()
		if len(s.queue) > 0 {
			e := s.queue[0].e
			now := s.clock.Now()
			if !e.next.After(now) {
				heap.Pop(&s.queue)
				j, due = job{e: e, gen: e.gen, check: e.check, scheduled: e.next}, true
			} else {
				wait = max(e.next.Sub(now), dispatchSlack)
			}
		}
		s.mu.Unlock()
		if due {
			// Blocks while every worker is busy: that is the concurrency
			// bound, and checks due meanwhile start late.
			select {
			case jobs <- j:
				continue
			case <-ctx.Done():
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-timer.C():
		case <-s.wake:
		case <-ctx.Done():
			return
		}
	}
}

// worker runs jobs until jobs is closed.
func (s *Scheduler) worker(ctx context.Context, jobs <-chan job) {
	for j := range jobs {
		started := s.clock.Now()
		res := s.runCheck(ctx, j)
		if ctx.Err() != nil {
			continue // shutting down: the result proves nothing
		}
		if s.complete(j, started, res) && s.onRun != nil {
			s.onRun(Run{Key: j.check.Key, Service: j.check.Target.Service, Scheduled: j.scheduled, Started: started, Result: res})
		}
	}
}

// runCheck runs one check bounded by its timeout, turning a panic of the
// checker into a failed result.
func (s *Scheduler) runCheck(ctx context.Context, j job) (res Result) {
	ctx, cancel := context.WithTimeout(ctx, j.check.Params.Timeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("health checker panicked", "service", j.check.Target.Service,
				"real", j.check.Key.Real.String(), "panic", p)
			res = Result{Reason: ReasonError, Message: clip(fmt.Sprintf("checker panicked: %v", p))}
		}
	}()
	if j.check.Checker == nil {
		return Result{Reason: ReasonConfig, Message: "no checker"}
	}
	return j.check.Checker.Check(ctx, j.check.Target)
}

// complete records a run's result and schedules the check's next run. It
// reports false when the result was discarded because the check was
// removed or redefined meanwhile.
func (s *Scheduler) complete(j job, started time.Time, res Result) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := j.e
	if e.gen != j.gen {
		return false // removed (removal bumps gen too) or redefined
	}
	now := s.clock.Now()
	e.runs++
	e.last = res
	e.lastRun = started
	prev := e.rf.State()
	if e.rf.Observe(res.Up) {
		e.since = now
		s.pending = append(s.pending, Event{
			Key: e.check.Key, Service: e.check.Target.Service, State: e.rf.State(), Previous: prev,
			Reason: res.Reason, Message: res.Message, Since: now,
		})
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	s.setNext(e, nextRun(j.scheduled, e.check.Params.Interval, now))
	heap.Push(&s.queue, e)
	if e.index == 0 {
		s.poke()
	}
	return true
}

// notifier delivers pending events to OnChange, in order, until ctx is done.
func (s *Scheduler) notifier(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notify:
		}
		s.mu.Lock()
		events := s.pending
		s.pending = nil
		s.mu.Unlock()
		for _, ev := range events {
			if ctx.Err() != nil {
				return
			}
			s.log.Info("health state changed", "service", ev.Service, "real", ev.Key.Real.String(),
				"state", ev.State.String(), "previous", ev.Previous.String(),
				"reason", ev.Reason.String(), "message", ev.Message)
			if s.onChange != nil {
				s.onChange(ev)
			}
		}
	}
}

// upsertLocked adds or updates a check; s.mu is held.
func (s *Scheduler) upsertLocked(c Check, now time.Time) {
	c.Params = c.Params.withDefaults()
	e, ok := s.entries[c.Key]
	if ok && c.Fingerprint != "" && c.Fingerprint == e.check.Fingerprint {
		return
	}
	first := now.Add(spread(c.Params.Interval))
	if !ok {
		e = &entry{
			check: c,
			rf:    NewRiseFall(c.Params.Rise, c.Params.Fall, c.Params.Initial),
			since: now,
			index: -1,
		}
		s.setNext(e, first)
		s.entries[c.Key] = e
		heap.Push(&s.queue, e)
		return
	}
	e.check = c
	e.gen++
	e.rf = NewRiseFall(c.Params.Rise, c.Params.Fall, e.rf.State())
	s.setNext(e, first)
	if e.index >= 0 {
		heap.Fix(&s.queue, e.index)
	} else {
		heap.Push(&s.queue, e) // it was running: the old run is discarded
	}
}

// removeLocked removes a check; s.mu is held.
func (s *Scheduler) removeLocked(k Key) bool {
	e, ok := s.entries[k]
	if !ok {
		return false
	}
	delete(s.entries, k)
	if e.index >= 0 {
		heap.Remove(&s.queue, e.index)
	}
	e.gen++
	return true
}

// poke wakes the loop without blocking.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// status returns the entry's Status; s.mu is held.
func (e *entry) status() Status {
	succ, fail := e.rf.Counts()
	st := Status{
		Key: e.check.Key, Target: e.check.Target, Type: e.check.Type,
		State: e.rf.State(), Since: e.since,
		Successes: succ, Failures: fail,
		Last: e.last, LastRun: e.lastRun, Runs: e.runs,
	}
	if e.index >= 0 {
		st.Next = e.next
	}
	return st
}

// spread returns a uniformly random delay in [0, interval).
func spread(interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	return rand.N(interval)
}

// nextRun returns the first slot after now on the grid of scheduled +
// k×interval: the check keeps its phase, and slots missed while it was late
// or slow are skipped rather than run back to back.
func nextRun(scheduled time.Time, interval time.Duration, now time.Time) time.Time {
	next := scheduled.Add(interval)
	if next.After(now) {
		return next
	}
	missed := now.Sub(scheduled) / interval
	return scheduled.Add((missed + 1) * interval)
}

// entryHeap is a min-heap of entries by next run time. The due time is
// kept in the slice itself, so that sifting reads contiguous memory rather
// than chasing one pointer per comparison.
type entryHeap []heapItem

// heapItem is one entry of the heap with its due time (entry.at).
type heapItem struct {
	at int64
	e  *entry
}

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index = i
	h[j].e.index = j
}

// Push implements heap.Interface.
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, heapItem{at: e.at, e: e})
}

// Pop implements heap.Interface.
func (h *entryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = heapItem{}
	it.e.index = -1
	*h = old[:len(old)-1]
	return it.e
}
