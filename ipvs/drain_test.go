package ipvs

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a settable clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

// drainFixture is a service with two reals on a fake kernel, applied.
type drainFixture struct {
	t       *testing.T
	f       *Fake
	r       *Reconciler
	clock   *fakeClock
	full    Service // both reals
	one     Service // the first real only
	gone    DestKey // the second real
	timeout time.Duration
}

func newDrainFixture(t *testing.T) *drainFixture {
	fx := &drainFixture{t: t, f: NewFake(), clock: &fakeClock{t: time.Unix(1_800_000_000, 0)}, timeout: time.Minute}
	fx.r = NewReconciler(fx.f, nil, WithClock(fx.clock.now))
	fx.full = svc(tcp("192.0.2.1:80"), "wlc", "198.51.100.1:80=5", "198.51.100.2:80=5")
	fx.full.DrainTimeout = fx.timeout
	fx.one = svc(fx.full.Key, "wlc", "198.51.100.1:80=5")
	fx.one.DrainTimeout = fx.timeout
	fx.gone = DestKey{addr("198.51.100.2"), 80}
	fx.apply(state(fx.full))
	return fx
}

func (fx *drainFixture) apply(st State) {
	fx.t.Helper()
	if _, err := fx.r.Apply(context.Background(), st); err != nil {
		fx.t.Fatal(err)
	}
}

func (fx *drainFixture) conns(k ServiceKey, d DestKey, active, inactive uint32) {
	fx.t.Helper()
	if err := fx.f.SetConns(k, d, active, inactive); err != nil {
		fx.t.Fatal(err)
	}
}

// dest returns the kernel's destination and whether it exists.
func (fx *drainFixture) dest(k ServiceKey, d DestKey) (Destination, bool) {
	got, ok := fx.f.State()[k].Dests[d]
	return got, ok
}

func TestDrainUntilIdle(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	fx.conns(k, fx.gone, 2, 3)
	fx.apply(state(fx.one))
	if d, ok := fx.dest(k, fx.gone); !ok || d.Weight != 0 {
		t.Fatalf("removed real with connections: %+v, present %v; want weight 0", d, ok)
	}
	if fx.r.Draining() != 1 {
		t.Errorf("draining %d, want 1", fx.r.Draining())
	}

	// While it drains, a resync changes nothing.
	fx.f.ResetCalls()
	fx.clock.advance(10 * time.Second)
	fx.apply(state(fx.one))
	if n := fx.f.Writes(); n != 0 {
		t.Errorf("a resync while draining made %d writes: %v", n, fx.f.Calls())
	}

	fx.conns(k, fx.gone, 0, 1)
	fx.apply(state(fx.one))
	if _, ok := fx.dest(k, fx.gone); !ok {
		t.Fatal("deleted while it still had an inactive connection")
	}
	fx.conns(k, fx.gone, 0, 0)
	fx.apply(state(fx.one))
	if _, ok := fx.dest(k, fx.gone); ok {
		t.Fatal("not deleted once idle")
	}
	if fx.r.Draining() != 0 {
		t.Errorf("draining %d, want 0", fx.r.Draining())
	}
}

func TestDrainTimeout(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	fx.conns(k, fx.gone, 7, 0)
	fx.apply(state(fx.one))
	fx.clock.advance(fx.timeout - time.Second)
	fx.apply(state(fx.one))
	if _, ok := fx.dest(k, fx.gone); !ok {
		t.Fatal("deleted before the drain timeout")
	}
	fx.clock.advance(time.Second)
	fx.apply(state(fx.one))
	if _, ok := fx.dest(k, fx.gone); ok {
		t.Fatal("not deleted at the drain timeout")
	}
}

func TestDrainIdleRealDeletedAtOnce(t *testing.T) {
	fx := newDrainFixture(t)
	fx.f.ResetCalls()
	fx.apply(state(fx.one))
	if _, ok := fx.dest(fx.full.Key, fx.gone); ok {
		t.Fatal("an idle removed real was kept")
	}
	if n := fx.f.Writes(); n != 1 {
		t.Errorf("%d writes, want 1 (the delete): %v", n, fx.f.Calls())
	}
}

func TestDrainCancelledWhenRealReturns(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	fx.conns(k, fx.gone, 1, 0)
	fx.apply(state(fx.one))
	fx.clock.advance(fx.timeout / 2)
	fx.apply(state(fx.full))
	if d, _ := fx.dest(k, fx.gone); d.Weight != 5 {
		t.Fatalf("returned real has weight %d, want 5", d.Weight)
	}
	// Removed again: a new drain with a whole timeout.
	fx.apply(state(fx.one))
	fx.clock.advance(fx.timeout - time.Second)
	fx.apply(state(fx.one))
	if _, ok := fx.dest(k, fx.gone); !ok {
		t.Fatal("the second drain used the first one's start")
	}
}

func TestWeightZeroIsNotADrain(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	down := svc(k, "wlc", "198.51.100.1:80=5", "198.51.100.2:80=0")
	down.DrainTimeout = fx.timeout
	fx.apply(state(down))
	fx.clock.advance(10 * fx.timeout)
	fx.apply(state(down))
	if d, ok := fx.dest(k, fx.gone); !ok || d.Weight != 0 {
		t.Fatalf("a real down by health: %+v, present %v; want kept at weight 0", d, ok)
	}
	if fx.r.Draining() != 0 {
		t.Errorf("draining %d, want 0", fx.r.Draining())
	}
}

func TestDrainRemovedService(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	fx.conns(k, fx.gone, 1, 0)
	fx.apply(State{})
	s, ok := fx.f.State()[k]
	if !ok {
		t.Fatal("a removed service with connections was deleted at once")
	}
	for _, d := range s.Dests {
		if d.Weight != 0 {
			t.Errorf("real %s of a removed service has weight %d", d.Key, d.Weight)
		}
	}
	fx.f.ResetCalls()
	fx.clock.advance(time.Second)
	fx.apply(State{})
	if n := fx.f.Writes(); n != 0 {
		t.Errorf("a resync while the service drains made %d writes", n)
	}
	fx.clock.advance(fx.timeout)
	fx.apply(State{})
	if _, ok := fx.f.State()[k]; ok {
		t.Fatal("a removed service was not deleted at its drain timeout")
	}
	if len(fx.r.Owned()) != 0 {
		t.Errorf("still owned: %v", fx.r.Owned())
	}
}

func TestDrainRemovedServiceIdle(t *testing.T) {
	fx := newDrainFixture(t)
	fx.apply(State{})
	if _, ok := fx.f.State()[fx.full.Key]; ok {
		t.Fatal("an idle removed service was kept")
	}
}

// Why a real leaves the desired state decides how it leaves the kernel:
// removed from the service (not in Dests nor Absent) it drains; down with
// on_down remove or disabled (Absent) it is deleted at once, connections
// or not, so that expire_nodest_conn fails them fast.
func TestDrainOnlyRemovedReals(t *testing.T) {
	tests := []struct {
		name    string
		absent  Absence // 0: removed from the service
		kept    bool
		drained int
	}{
		{"removed from the service drains", 0, true, 1},
		{"down with on_down remove is deleted at once", AbsentDown, false, 0},
		{"disabled is deleted at once", AbsentDisabled, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newDrainFixture(t)
			k := fx.full.Key
			fx.conns(k, fx.gone, 5, 2)
			want := fx.one.Clone()
			if tt.absent != 0 {
				want.SetAbsent(fx.gone, tt.absent)
			}
			fx.apply(state(want))
			d, ok := fx.dest(k, fx.gone)
			if ok != tt.kept || (ok && d.Weight != 0) {
				t.Errorf("real with 7 connections: present %v weight %d, want present %v (at weight 0)", ok, d.Weight, tt.kept)
			}
			if fx.r.Draining() != tt.drained {
				t.Errorf("draining %d, want %d", fx.r.Draining(), tt.drained)
			}
			if d, ok := fx.dest(k, DestKey{addr("198.51.100.1"), 80}); !ok || d.Weight != 5 {
				t.Errorf("the other real: %+v present %v, want weight 5", d, ok)
			}
		})
	}
}

// A real that drains because it left the service and then comes back as an
// absent one (re-added while disabled) is deleted at once, not left to
// finish the drain.
func TestAbsentEndsADrain(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	fx.conns(k, fx.gone, 3, 0)
	fx.apply(state(fx.one))
	if _, ok := fx.dest(k, fx.gone); !ok || fx.r.Draining() != 1 {
		t.Fatalf("removed real with connections not draining (draining %d)", fx.r.Draining())
	}
	fx.clock.advance(time.Second)
	disabled := fx.one.Clone()
	disabled.SetAbsent(fx.gone, AbsentDisabled)
	fx.apply(state(disabled))
	if _, ok := fx.dest(k, fx.gone); ok {
		t.Fatal("a draining real that is now disabled was kept")
	}
	if fx.r.Draining() != 0 {
		t.Errorf("draining %d, want 0", fx.r.Draining())
	}
	// Enabled again and removed again: a drain of its own, from scratch.
	fx.apply(state(fx.full))
	fx.conns(k, fx.gone, 1, 0)
	fx.apply(state(fx.one))
	if d, ok := fx.dest(k, fx.gone); !ok || d.Weight != 0 {
		t.Errorf("removed again: %+v present %v, want drained at weight 0", d, ok)
	}
}

// An absent real that is not in the kernel costs nothing, and one that is
// both present and absent is refused rather than guessed at.
func TestAbsentValidation(t *testing.T) {
	fx := newDrainFixture(t)
	k := fx.full.Key
	fx.apply(state(fx.one)) // idle: deleted
	fx.f.ResetCalls()
	again := fx.one.Clone()
	again.SetAbsent(fx.gone, AbsentDown)
	fx.apply(state(again))
	if n := fx.f.Writes(); n != 0 {
		t.Errorf("an absent real the kernel lacks cost %d writes: %v", n, fx.f.Calls())
	}
	both := fx.full.Clone()
	both.SetAbsent(fx.gone, AbsentDisabled)
	if err := both.Validate(); err == nil {
		t.Errorf("a real both present and absent passed validation")
	}
	if _, err := fx.r.Apply(context.Background(), state(both)); err == nil {
		t.Errorf("Apply took a real both present and absent")
	}
	if _, ok := fx.f.State()[k]; !ok {
		t.Errorf("the invalid service was deleted")
	}
}
