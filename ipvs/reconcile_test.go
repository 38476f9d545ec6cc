package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// stateMismatch reports how the kernel state got differs from want for
// want's services (empty when equal): attributes, destinations, weights,
// forwarding and thresholds, as the kernel holds them.
func stateMismatch(got, want State) string {
	keys := map[ServiceKey]bool{}
	for k := range want {
		keys[k] = true
	}
	ops := Diff(got, want, func(k ServiceKey) bool { return keys[k] })
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintln(&b, op)
	}
	return b.String()
}

// writesByTarget counts write calls by service and by service+destination.
func writesByTarget(calls []Call) (map[ServiceKey]int, map[[2]any]int) {
	bySvc, byDest := map[ServiceKey]int{}, map[[2]any]int{}
	for _, c := range calls {
		if !c.Write {
			continue
		}
		bySvc[c.Service]++
		if c.Dest != (DestKey{}) {
			byDest[[2]any{c.Service, c.Dest}]++
		}
	}
	return bySvc, byDest
}

func TestAdoptionMakesNoWrite(t *testing.T) {
	ctx := context.Background()
	desired := goldenSteps()[0].st
	f := NewFake()
	f.Seed(foreignService())
	for _, s := range desired { // as a previous dsrd left them
		f.Seed(s.normalized())
	}
	if err := f.SetConns(tcp("192.0.2.1:80"), DestKey{addr("198.51.100.1"), 80}, 3, 4); err != nil {
		t.Fatal(err)
	}
	r := NewReconciler(f, nil)
	reached, err := r.Apply(ctx, desired)
	if err != nil {
		t.Fatal(err)
	}
	if n := f.Writes(); n != 0 {
		t.Fatalf("adoption made %d writes: %v", n, f.Calls())
	}
	// One dump of services and one of each managed service's destinations:
	// the foreign service's destinations are not even read.
	if got, want := len(f.Calls()), 1+len(desired); got != want {
		t.Errorf("%d calls, want %d: %v", got, want, f.Calls())
	}
	if d := reached[tcp("192.0.2.1:80")].Dests[DestKey{addr("198.51.100.1"), 80}]; d.ActiveConns != 3 || d.InactiveConns != 4 {
		t.Errorf("reached state lost the counters: %+v", d)
	}
	if reached[foreignService().Key].Dests != nil {
		t.Error("foreign destinations were read")
	}
}

func TestRemovedServiceDeletedForeignKept(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	foreign := foreignService()
	f.Seed(foreign)
	a := svc(tcp("192.0.2.1:80"), "rr", "198.51.100.1:80")
	b := svc(tcp("192.0.2.2:80"), "rr", "198.51.100.1:80")
	r := NewReconciler(f, nil)
	if _, err := r.Apply(ctx, state(a, b)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, state(a)); err != nil {
		t.Fatal(err)
	}
	want := FormatRules(state(a.normalized(), foreign))
	if got := f.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := r.Owned(); len(got) != 1 || got[0] != a.Key {
		t.Errorf("owned %v, want [%s]", got, a.Key)
	}
}

func TestRestartLeavesUnknownServices(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	a := svc(tcp("192.0.2.1:80"), "rr", "198.51.100.1:80")
	b := svc(tcp("192.0.2.2:80"), "rr", "198.51.100.1:80")
	f.Seed(a)
	f.Seed(b) // left by a previous run that owned it, or by an operator

	r := NewReconciler(f, nil)
	if _, err := r.Apply(ctx, state(a)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.State()[b.Key]; !ok || f.Writes() != 0 {
		t.Fatalf("a service the new reconciler does not own was touched: %v", f.Calls())
	}

	// With the owned keys of the previous run, it is deleted.
	r = NewReconciler(f, nil, WithOwned([]ServiceKey{a.Key, b.Key}))
	if _, err := r.Apply(ctx, state(a)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.State()[b.Key]; ok {
		t.Error("a previously owned service was not deleted")
	}
}

// A service owned by a previous run and no longer desired drains, as it
// would have in the run that owned it, when its drain timeout is known.
func TestRestartDrainsPreviouslyOwnedServices(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	a := svc(tcp("192.0.2.1:80"), "rr", "198.51.100.1:80")
	b := svc(tcp("192.0.2.2:80"), "rr", "198.51.100.1:80=7")
	f.Seed(a)
	f.Seed(b)
	if err := f.SetConns(b.Key, DestKey{Addr: addr("198.51.100.1"), Port: 80}, 2, 0); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	gone := b
	gone.DrainTimeout = time.Minute
	r := NewReconciler(f, nil, WithClock(func() time.Time { return now }), WithOwnedServices([]Service{a, gone}))
	if _, err := r.Apply(ctx, state(a)); err != nil {
		t.Fatal(err)
	}
	if got := f.State()[b.Key].Dests[DestKey{Addr: addr("198.51.100.1"), Port: 80}]; got.Weight != 0 || r.Draining() != 1 {
		t.Fatalf("previously owned service with connections: weight %d, draining %d; want 0 and draining", got.Weight, r.Draining())
	}
	now = now.Add(time.Minute)
	if _, err := r.Apply(ctx, state(a)); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.State()[b.Key]; ok {
		t.Error("the service was not deleted after its drain timeout")
	}
}

// oneByOne hides the fake's WriteBatch: the reconciler then writes with
// the single calls.
type oneByOne struct{ Kernel }

// writeModes are the two ways the reconciler writes.
var writeModes = []struct {
	name string
	wrap func(*Fake) Kernel
}{
	{"batched", func(f *Fake) Kernel { return f }},
	{"one-by-one", func(f *Fake) Kernel { return oneByOne{f} }},
}

func TestApplyFailureReturnsReachedAndConverges(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) { testApplyFailure(t, m.wrap) })
	}
}

func testApplyFailure(t *testing.T, wrap func(*Fake) Kernel) {
	ctx := context.Background()
	steps := goldenSteps()
	for n := 1; n <= 40; n++ {
		f := NewFake()
		f.Seed(foreignService())
		r := NewReconciler(wrap(f), nil)
		if _, err := r.Apply(ctx, steps[0].st); err != nil {
			t.Fatal(err)
		}
		boom := fmt.Errorf("injected failure %d", n)
		f.FailWrite(n, boom)
		reached, err := r.Apply(ctx, steps[1].st)
		if err == nil {
			// Fewer than n writes were needed: nothing failed.
			if m := stateMismatch(f.State(), steps[1].st); m != "" {
				t.Fatalf("n=%d: not converged:\n%s", n, m)
			}
			continue
		}
		if !errors.Is(err, boom) {
			t.Fatalf("n=%d: error %v does not wrap the injected one", n, err)
		}
		kernel := f.State()
		delete(kernel, foreignService().Key)
		delete(reached, foreignService().Key) // its destinations are not read
		if got, want := FormatRules(reached), FormatRules(kernel); got != want {
			t.Fatalf("n=%d: reached state\n%s\nkernel\n%s", n, got, want)
		}
		if m := stateMismatch(f.State(), reached); m != "" {
			t.Fatalf("n=%d: reached differs from the kernel:\n%s", n, m)
		}
		if _, err := r.Apply(ctx, steps[1].st); err != nil {
			t.Fatalf("n=%d: second apply: %v", n, err)
		}
		if m := stateMismatch(f.State(), steps[1].st); m != "" {
			t.Fatalf("n=%d: not converged after the failure:\n%s", n, m)
		}
		if _, ok := f.State()[foreignService().Key]; !ok {
			t.Fatalf("n=%d: foreign service lost", n)
		}
	}
}

func TestBatchesByKind(t *testing.T) {
	f := NewFake()
	f.Seed(foreignService())
	r := NewReconciler(f, nil)
	steps := goldenSteps()
	if _, err := r.Apply(context.Background(), steps[0].st); err != nil {
		t.Fatal(err)
	}
	if n := f.Batches(); n != 2 { // services, then destinations
		t.Errorf("%d batches for a full sync, want 2", n)
	}
	if _, err := r.Apply(context.Background(), steps[1].st); err != nil {
		t.Fatal(err)
	}
	// update services, add, update and delete destinations, delete a service
	if n := f.Batches(); n != 2+5 {
		t.Errorf("%d batches after the change, want 7", n)
	}
}

func TestMissingSchedulerDoesNotBlockOthers(t *testing.T) {
	ctx := context.Background()
	f := NewFake(WithSchedulers("rr", "wlc"))
	web := svc(tcp("192.0.2.1:80"), "rr", "198.51.100.1:80=5")
	maglev := svc(tcp("192.0.2.2:80"), "mh", "198.51.100.1:80")
	r := NewReconciler(f, nil)
	if _, err := r.Apply(ctx, state(web)); err != nil {
		t.Fatal(err)
	}
	// web's scheduler changes to mh (missing) and its real goes down: the
	// weight still reaches the kernel.
	web2 := svc(web.Key, "mh", "198.51.100.1:80=0")
	reached, err := r.Apply(ctx, state(web2, maglev))
	var se *SchedulerError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "scheduler mh is not available: load the ip_vs_mh module") {
		t.Fatalf("error %v does not name the missing module", err)
	}
	if w := reached[web.Key].Dests[DestKey{addr("198.51.100.1"), 80}].Weight; w != 0 {
		t.Errorf("weight %d did not reach the kernel", w)
	}
	if _, ok := f.State()[maglev.Key]; ok {
		t.Error("a service whose creation failed exists")
	}
	if n := f.WritesTo(maglev.Key); n != 1 {
		t.Errorf("%d writes for the failed service, want 1 (no destination after a failed create)", n)
	}
}

func TestInvalidServiceLeftAlone(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	a := svc(tcp("192.0.2.1:80"), "rr", "198.51.100.1:80")
	r := NewReconciler(f, nil)
	if _, err := r.Apply(ctx, state(a)); err != nil {
		t.Fatal(err)
	}
	bad := svc(a.Key, "rr", "198.51.100.1:8080") // DR cannot change the port
	f.ResetCalls()
	_, err := r.Apply(ctx, state(bad))
	if err == nil || !strings.Contains(err.Error(), "direct routing cannot change the port") {
		t.Fatalf("error %v", err)
	}
	if f.Writes() != 0 {
		t.Errorf("an invalid desired service changed the kernel: %v", f.Calls())
	}
	if got := r.Owned(); len(got) != 1 {
		t.Errorf("the service is no longer owned: %v", got)
	}
}

// randomUniverse is the set of services and reals random states draw from.
var randomUniverse = []ServiceKey{
	NewServiceKey(TCP, netip.MustParseAddrPort("192.0.2.1:80")),
	NewServiceKey(TCP, netip.MustParseAddrPort("192.0.2.1:443")),
	NewServiceKey(UDP, netip.MustParseAddrPort("192.0.2.2:53")),
	NewServiceKey(SCTP, netip.MustParseAddrPort("192.0.2.3:9")),
	NewServiceKey(TCP, netip.MustParseAddrPort("[2001:db8::1]:80")),
	NewServiceKey(UDP, netip.MustParseAddrPort("[2001:db8::1]:53")),
	FWMarkKey(IPv4, 1),
	FWMarkKey(IPv6, 2),
}

// randomService returns a random valid service for k.
func randomService(rng *rand.Rand, k ServiceKey) Service {
	scheds := []string{"rr", "wrr", "lc", "wlc", "sh", "mh"}
	s := NewService(k, scheds[rng.IntN(len(scheds))])
	if s.Scheduler == "sh" || s.Scheduler == "mh" {
		s.Flags |= Flags(rng.IntN(4)) * FlagSched1
	}
	if k.Protocol == UDP && rng.IntN(2) == 0 {
		s.Flags |= FlagOnePacket
	}
	if rng.IntN(3) == 0 {
		mask := 0
		if rng.IntN(2) == 0 {
			mask = 8 + rng.IntN(k.Family.bits()-8)
		}
		s.SetPersistence(time.Duration(1+rng.IntN(1000))*time.Second, mask)
	}
	for i := range 5 {
		if rng.IntN(2) == 0 {
			continue
		}
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i)})
		if k.Family == IPv6 {
			a = netip.MustParseAddr(fmt.Sprintf("2001:db8::a:%d", i+1))
		}
		d := NewDestination(a, k.Port, rng.IntN(11))
		if rng.IntN(4) == 0 {
			d.LowerThreshold = uint32(rng.IntN(50))
			d.UpperThreshold = d.LowerThreshold + uint32(rng.IntN(50))
		}
		s.Put(d)
	}
	return s.normalized()
}

// randomState returns a random subset of the universe, each service either
// taken from prev (unchanged), changed a little, or new.
func randomState(rng *rand.Rand, prev State) State {
	st := State{}
	for _, k := range randomUniverse {
		if rng.IntN(4) == 0 {
			continue
		}
		p, had := prev[k]
		switch {
		case had && rng.IntN(2) == 0:
			st[k] = p.Clone()
		case had && rng.IntN(2) == 0:
			s := p.Clone()
			for dk, d := range s.Dests {
				if rng.IntN(3) == 0 {
					d.Weight = rng.IntN(11)
					s.Dests[dk] = d
				}
			}
			st[k] = s
		default:
			st[k] = randomService(rng, k)
		}
	}
	return st
}

// TestRandomStates drives a Reconciler through random desired states in
// random order, with occasional injected failures, and checks after each
// step that the fake kernel holds exactly the desired state, that the
// foreign service is intact, and that services and reals whose desired
// state did not change got no write at all.
func TestRandomStates(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) { testRandomStates(t, m.wrap) })
	}
}

func testRandomStates(t *testing.T, wrap func(*Fake) Kernel) {
	const seed, poolSize, steps = 20261122, 40, 400
	rng := rand.New(rand.NewPCG(seed, seed))
	pool := []State{{}}
	for len(pool) < poolSize {
		pool = append(pool, randomState(rng, pool[rng.IntN(len(pool))]))
	}

	ctx := context.Background()
	f := NewFake()
	foreign := foreignService()
	f.Seed(foreign)
	foreignPrint := FormatRules(state(foreign))
	r := NewReconciler(wrap(f), nil)
	prev := State{}
	var writes, untouched, failures int
	for step := range steps {
		desired := pool[rng.IntN(len(pool))]
		failed := false
		if rng.IntN(10) == 0 {
			f.FailWrite(1+rng.IntN(3), errors.New("injected"))
			failed = true
			failures++
		}
		f.ResetCalls()
		_, err := r.Apply(ctx, desired)
		if err != nil && !failed {
			t.Fatalf("step %d: %v", step, err)
		}
		// A failure still pending (the step needed fewer writes) may hit
		// the first retry: three are enough.
		for retry := 0; err != nil && retry < 3; retry++ {
			_, err = r.Apply(ctx, desired)
		}
		if err != nil {
			t.Fatalf("step %d: retries after an injected failure: %v", step, err)
		}
		f.ClearFailures()
		got := f.State()
		if m := stateMismatch(got, desired); m != "" {
			t.Fatalf("step %d: kernel differs from desired:\n%s", step, m)
		}
		if len(got) != len(desired)+1 || FormatRules(state(got[foreign.Key])) != foreignPrint {
			t.Fatalf("step %d: kernel has other services or the foreign one changed:\n%s", step, FormatRules(got))
		}
		if !failed { // a retried step may have re-done anything
			bySvc, byDest := writesByTarget(f.Calls())
			for k, d := range desired {
				p, ok := prev[k]
				if !ok {
					continue
				}
				if p.sameConfig(d) && stateMismatch(state(p), state(d)) == "" {
					untouched++
					if bySvc[k] != 0 {
						t.Fatalf("step %d: unchanged service %s got %d writes", step, k, bySvc[k])
					}
				}
				if !p.sameConfig(d) && bySvc[k] == 0 {
					t.Fatalf("step %d: changed service %s got no write", step, k)
				}
				for dk, dd := range d.Dests {
					if pd, ok := p.Dests[dk]; ok && pd.sameConfig(dd) && byDest[[2]any{k, dk}] != 0 && !mayReorder(p, d, dk) {
						t.Fatalf("step %d: unchanged real %s of %s got writes", step, dk, k)
					}
				}
			}
			if bySvc[foreign.Key] != 0 {
				t.Fatalf("step %d: foreign service written", step)
			}
		}
		writes += f.Writes()
		prev = desired
	}
	t.Logf("%d steps, %d writes, %d unchanged services checked untouched, %d injected failures", steps, writes, untouched, failures)
}

// mayReorder reports whether the real dk, unchanged from p to d, may be
// deleted and re-added to put d's reals in canonical order: d's scheduler
// is order-sensitive and p's was not (the kernel's order is any), or a new
// real sorts before dk.
func mayReorder(p, d Service, dk DestKey) bool {
	if !OrderSensitive(d.Scheduler) {
		return false
	}
	if !OrderSensitive(p.Scheduler) {
		return true
	}
	for nk := range d.Dests {
		if _, old := p.Dests[nk]; !old && compareDestKeys(nk, dk) < 0 {
			return true
		}
	}
	return false
}

// recordHandler is a slog.Handler that keeps the records.
type recordHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

// attrs returns the attributes of the records with the message msg.
func (h *recordHandler) attrs(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.recs {
		if r.Message != msg {
			continue
		}
		m := map[string]string{}
		r.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

func TestChangesAreLogged(t *testing.T) {
	h := &recordHandler{}
	f := NewFake()
	r := NewReconciler(f, slog.New(h))
	k := tcp("192.0.2.1:80")
	if _, err := r.Apply(context.Background(), state(svc(k, "rr", "198.51.100.1:80=4"))); err != nil {
		t.Fatal(err)
	}
	got := h.attrs("ipvs change")
	want := []map[string]string{
		{"op": "add-service", "service": "tcp/192.0.2.1:80", "cmd": "-A -t 192.0.2.1:80 -s rr"},
		{"op": "add-dest", "service": "tcp/192.0.2.1:80", "real": "198.51.100.1:80", "weight": "4",
			"cmd": "-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 4"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("logged\n%v\nwant\n%v", got, want)
	}
}

func TestRunAppliesTriggersResyncsAndEnds(t *testing.T) {
	f := NewFake()
	k := tcp("192.0.2.1:80")
	r := NewReconciler(f, nil, WithResyncInterval(20*time.Millisecond), WithBackoff(time.Millisecond, 5*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for !cond() {
			select {
			case <-deadline:
				t.Fatalf("timed out waiting for %s; kernel:\n%s", what, f.String())
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	f.FailWrite(1, errors.New("transient"))
	r.SetDesired(state(svc(k, "rr", "198.51.100.1:80=4")))
	waitFor("the desired state after a failure", func() bool {
		return f.State()[k].Dests[DestKey{addr("198.51.100.1"), 80}].Weight == 4
	})

	// Drift made behind dsrd's back is repaired by the periodic resync.
	if err := f.UpdateDestination(context.Background(), k, NewDestination(addr("198.51.100.1"), 80, 9)); err != nil {
		t.Fatal(err)
	}
	waitFor("the drift repaired", func() bool {
		return f.State()[k].Dests[DestKey{addr("198.51.100.1"), 80}].Weight == 4
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end with its context")
	}
}

func TestBackoff(t *testing.T) {
	r := NewReconciler(NewFake(), nil, WithBackoff(100*time.Millisecond, time.Second))
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := r.backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if got := r.backoff(1000); got != time.Second {
		t.Errorf("backoff(1000) = %v", got)
	}
}

func TestApplyReadErrorAndContext(t *testing.T) {
	f := NewFake()
	f.Close()
	r := NewReconciler(f, nil)
	if _, err := r.Apply(context.Background(), state(svc(tcp("192.0.2.1:80"), "rr"))); err == nil {
		t.Error("Apply on a closed kernel succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = NewReconciler(NewFake(), nil)
	if _, err := r.Apply(ctx, state(svc(tcp("192.0.2.1:80"), "rr"))); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v", err)
	}
}

func TestOnWriteReportsEveryOperation(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	var mu sync.Mutex
	got := map[string]int{}
	r := NewReconciler(f, nil, WithOnWrite(func(k OpKind, err error) {
		mu.Lock()
		defer mu.Unlock()
		res := "ok"
		if err != nil {
			res = "error"
		}
		got[k.String()+" "+res]++
	}))
	// One service with two reals: three writes, the second of which fails.
	f.FailWrite(2, errors.New("injected"))
	desired := state(svc(tcp("192.0.2.1:80"), "wlc", "198.51.100.1:80=5", "198.51.100.2:80=1"))
	if _, err := r.Apply(ctx, desired); err == nil {
		t.Fatal("apply with a failing write: no error")
	}
	want := map[string]int{"add-service ok": 1, "add-dest error": 1, "add-dest ok": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("writes reported %v, want %v", got, want)
	}
	// The failed destination is added on the next apply; nothing else is
	// written, nothing reported for an unchanged state.
	clear(got)
	if _, err := r.Apply(ctx, desired); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Apply(ctx, desired); err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"add-dest ok": 1}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("writes reported %v, want %v", got, want)
	}
}
