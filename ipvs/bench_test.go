package ipvs

import (
	"context"
	"net/netip"
	"testing"
)

// benchState returns n services with one real each, on documentation
// addresses.
func benchState(n int) State {
	st := State{}
	for i := range n {
		vip := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/40)})
		port := uint16(1000 + i%40)
		s := NewService(NewServiceKey(TCP, netip.AddrPortFrom(vip, port)), "rr")
		s.Put(NewDestination(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%250)}), port, 1))
		st.Put(s)
	}
	return st
}

// BenchmarkDiff measures the pure diff of 10,000 services, from empty and
// unchanged.
func BenchmarkDiff(b *testing.B) {
	desired := benchState(10000)
	actual := State{}
	for k, s := range desired {
		s = s.normalized()
		s.Flags |= FlagHashed
		actual[k] = s
	}
	b.Run("from-empty", func(b *testing.B) {
		for b.Loop() {
			Diff(State{}, desired, nil)
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			if ops := Diff(actual, desired, nil); len(ops) != 0 {
				b.Fatal(ops)
			}
		}
	})
	// The same with mh and the kernel's order read: checking the order of
	// a service in order allocates nothing.
	mhDesired, mhActual := State{}, State{}
	for k, s := range desired {
		s = s.Clone()
		s.Scheduler = "mh"
		mhDesired[k] = s
		a := s.normalized().Clone()
		a.Flags |= FlagHashed
		for dk, d := range a.Dests {
			d.Position = 1
			a.Dests[dk] = d
		}
		mhActual[k] = a
	}
	b.Run("unchanged-mh", func(b *testing.B) {
		for b.Loop() {
			if ops := Diff(mhActual, mhDesired, nil); len(ops) != 0 {
				b.Fatal(ops)
			}
		}
	})
}

// BenchmarkApplyNoop measures a no-op resync of 10,000 services on the fake
// kernel: the reconciler's own CPU cost, netlink excluded.
func BenchmarkApplyNoop(b *testing.B) {
	desired := benchState(10000)
	f := NewFake()
	r := NewReconciler(f, nil)
	ctx := context.Background()
	if _, err := r.Apply(ctx, desired); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := r.Apply(ctx, desired); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyFull measures a full sync of 10,000 services from empty on
// the fake kernel: the reconciler's own CPU cost, netlink excluded.
func BenchmarkApplyFull(b *testing.B) {
	desired := benchState(10000)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		r := NewReconciler(NewFake(), nil)
		b.StartTimer()
		if _, err := r.Apply(ctx, desired); err != nil {
			b.Fatal(err)
		}
	}
}
