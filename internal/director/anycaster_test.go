package director

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeSpeaker records what the anycaster told it.
type fakeSpeaker struct {
	mu        sync.Mutex
	announced []netip.Prefix
	graceful  bool
	calls     []string
	fail      error
}

func (f *fakeSpeaker) Announce(_ context.Context, p []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "announce")
	if f.fail != nil {
		return f.fail
	}
	f.announced = slices.Clone(p)
	return nil
}

func (f *fakeSpeaker) SetGraceful(_ context.Context, on bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if on {
		f.calls = append(f.calls, "graceful")
	} else {
		f.calls = append(f.calls, "normal")
	}
	if f.fail != nil {
		return f.fail
	}
	f.graceful = on
	return nil
}

func (f *fakeSpeaker) state() ([]netip.Prefix, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.announced), f.graceful
}

type anycastRig struct {
	a         *anycaster
	sp        *fakeSpeaker
	now       time.Time
	connected bool
	withdrawn map[string]int
}

func newAnycastRig() *anycastRig {
	r := &anycastRig{sp: &fakeSpeaker{}, now: time.Unix(1_000_000, 0), connected: true, withdrawn: map[string]int{}}
	r.a = newAnycaster(r.sp, func() bool { return r.connected }, func(c string) { r.withdrawn[c]++ },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.a.now = func() time.Time { return r.now }
	return r
}

var (
	vipA = netip.MustParseAddr("203.0.113.10")
	vipB = netip.MustParseAddr("203.0.113.11")
)

func hostRoutes(addrs ...netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

func (r *anycastRig) expect(t *testing.T, what string, want []netip.Prefix, graceful bool) {
	t.Helper()
	got, g := r.sp.state()
	if !slices.Equal(got, want) || g != graceful {
		t.Errorf("%s: speaker announces %v (graceful %v), want %v (graceful %v)", what, got, g, want, graceful)
	}
}

func TestAnycasterAnnouncesWhatTheRulesAllow(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.step(ctx)
	if len(r.sp.calls) != 0 {
		t.Fatalf("before the loop's first report the speaker was called: %v", r.sp.calls)
	}
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}, {Address: vipB, Serving: false}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "converged", hostRoutes(vipA), false)

	// Nothing changes: the speaker is not called again.
	n := len(r.sp.calls)
	r.now = r.now.Add(time.Second)
	r.a.step(ctx)
	if len(r.sp.calls) != n {
		t.Errorf("an unchanged decision called the speaker again: %v", r.sp.calls[n:])
	}

	// The service of B comes up; A's goes down.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: false}, {Address: vipB, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "after health changes", hostRoutes(vipB), false)
	if r.withdrawn[withdrawNoQuorum] != 1 {
		t.Errorf("withdrawals = %v, want one %s", r.withdrawn, withdrawNoQuorum)
	}
}

func TestAnycasterWithdrawsAfterPartitionHold(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "connected", hostRoutes(vipA), false)

	r.connected = false
	r.a.step(ctx)
	r.now = r.now.Add(14 * time.Second)
	r.a.step(ctx)
	r.expect(t, "cut off for 14s of a 15s hold", hostRoutes(vipA), false)
	r.now = r.now.Add(time.Second)
	r.a.step(ctx)
	r.expect(t, "cut off for 15s", nil, false)
	if st := r.a.status(); st.Decision.Withdrawn[vipA] != withdrawPartitioned {
		t.Errorf("status = %+v, want %s", st.Decision, withdrawPartitioned)
	}

	// Back in the cluster: announced again at once.
	r.connected = true
	r.a.step(ctx)
	r.expect(t, "reconnected", hostRoutes(vipA), false)
}

func TestAnycasterWithdrawsWhenIPVSDoesNotConverge(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	// Generation 4 arrives and cannot be applied.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 4, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "new generation, not yet applied", hostRoutes(vipA), false)
	r.now = r.now.Add(convergeGrace)
	r.a.step(ctx)
	r.expect(t, "not applied for convergeGrace", nil, false)
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 4, 4, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "applied", hostRoutes(vipA), false)
}

func TestAnycasterStopDrainsThenWithdraws(t *testing.T) {
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(context.Background())
	r.sp.calls = nil
	// A cancelled context ends the drain delay at once: the order of the
	// calls is what is tested here, the delay's length is the timer's.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r.a.stop(ctx, 10*time.Second)
	// stop's calls ran with a cancelled context; the fake does not care.
	want := []string{"graceful", "announce", "announce", "normal"}
	if !slices.Equal(r.sp.calls, want) {
		t.Errorf("calls = %v, want %v (graceful first, then withdraw all)", r.sp.calls, want)
	}
	r.expect(t, "stopped", nil, false)
	if r.withdrawn[withdrawDrained] != 1 {
		t.Errorf("withdrawals = %v, want one %s", r.withdrawn, withdrawDrained)
	}
}

func TestAnycasterRetriesAFailedCall(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.sp.fail = errors.New("speaker down")
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	if st := r.a.status(); st.Err == nil {
		t.Error("a failed announcement is not in the status")
	}
	r.sp.fail = nil
	r.a.step(ctx)
	r.expect(t, "after the retry", hostRoutes(vipA), false)
	if st := r.a.status(); st.Err != nil {
		t.Errorf("status error = %v after a successful retry", st.Err)
	}
}

func TestAnycasterWithdrawsAfterALastingDisagreement(t *testing.T) {
	ctx := context.Background()
	r := newAnycastRig()
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true, Disagrees: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "disagreeing for 0s", hostRoutes(vipA), false)
	r.now = r.now.Add(disagreeGrace / 2)
	// A new pass keeps the disagreement's start.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true, Disagrees: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "disagreeing for half the grace", hostRoutes(vipA), false)
	r.now = r.now.Add(disagreeGrace / 2)
	r.a.step(ctx)
	r.expect(t, "disagreeing for the grace", nil, false)
	// Agreement again: announced again, and a new disagreement starts
	// its grace afresh.
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "agreeing", hostRoutes(vipA), false)
	r.a.observe([]anycastVIP{{Address: vipA, Serving: true, Disagrees: true}}, 3, 3, 15*time.Second)
	r.a.step(ctx)
	r.expect(t, "disagreeing anew", hostRoutes(vipA), false)
}
