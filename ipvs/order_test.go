package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// dk returns the key of a destination "addr:port".
func dk(s string) DestKey { p := ap(s); return DestKey{p.Addr(), p.Port()} }

// keys returns destination keys "addr:port".
func keys(ss ...string) []DestKey {
	out := make([]DestKey, len(ss))
	for i, s := range ss {
		out[i] = dk(s)
	}
	return out
}

// withOrder returns s as the kernel holds it with its destinations added
// in order (oldest first).
func withOrder(s Service, order ...string) Service {
	s = s.Clone()
	s.Flags |= FlagHashed
	if s.Netmask == 0 {
		s.Netmask = s.Key.Family.bits()
	}
	for i, k := range keys(order...) {
		d := s.Dests[k]
		d.Position = uint32(i + 1)
		s.Dests[k] = d
	}
	return s
}

// opLines prints operations in ipvsadm syntax, reorder ones prefixed.
func opLines(ops []Op) []string {
	var out []string
	for _, o := range ops {
		l := o.String()
		if o.Reorder {
			l = "reorder " + l
		}
		out = append(out, l)
	}
	return out
}

func TestOrderSensitive(t *testing.T) {
	for _, s := range []string{"mh", "sh", "dh", "MH", " sh "} {
		if !OrderSensitive(s) {
			t.Errorf("%q is order-sensitive", s)
		}
	}
	for _, s := range []string{"", "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "sed", "nq", "fo", "ovf", "twos"} {
		if OrderSensitive(s) {
			t.Errorf("%q is not order-sensitive", s)
		}
	}
}

func TestDiffOrder(t *testing.T) {
	web := tcp("192.0.2.1:80")
	const a, b, c, d = "198.51.100.1:80", "198.51.100.2:80", "198.51.100.3:80", "198.51.100.4:80"
	all := func(sched string, ds ...string) Service { return svc(web, sched, ds...) }
	tests := []struct {
		name    string
		actual  Service
		desired Service
		want    []string
	}{
		{
			name:    "in order",
			actual:  withOrder(all("mh", a, b, c), a, b, c),
			desired: all("mh", a, b, c),
		},
		{
			name:    "rr does not care",
			actual:  withOrder(all("rr", a, b, c), c, a, b),
			desired: all("rr", a, b, c),
		},
		{
			name:    "unknown order is taken as right",
			actual:  withOrder(all("mh", a, b, c)),
			desired: all("mh", a, b, c),
		},
		{
			name:    "new highest real: one add",
			actual:  withOrder(all("mh", a, b), a, b),
			desired: all("mh", a, b, c),
			want:    []string{"-a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1"},
		},
		{
			name:    "new lowest real: re-add every other",
			actual:  withOrder(all("mh", b, c), b, c),
			desired: all("mh", a, b, c),
			want: []string{
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.2:80",
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.3:80",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 1",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1",
			},
		},
		{
			name:    "new middle real: re-add those after it",
			actual:  withOrder(all("mh", a, c, d), a, c, d),
			desired: all("mh", a, b, c, d),
			want: []string{
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.3:80",
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.4:80",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 1",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.4:80 -g -w 1",
			},
		},
		{
			name:    "a flapped real came back last: re-add those after it",
			actual:  withOrder(all("mh", a, b, c, d), a, c, d, b),
			desired: all("mh", a, b, c, d),
			want: []string{
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.3:80",
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.4:80",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.4:80 -g -w 1",
			},
		},
		{
			name:    "reversed: keep the first, re-add the rest",
			actual:  withOrder(all("sh", a, b, c), c, b, a),
			desired: all("sh", a, b, c),
			want: []string{
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.2:80",
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.3:80",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 1",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1",
			},
		},
		{
			name:    "removed reals in between do not count",
			actual:  withOrder(all("dh", a, d, b), a, d, b),
			desired: all("dh", a, b),
			want:    []string{"-d -t 192.0.2.1:80 -r 198.51.100.4:80"},
		},
		{
			name:    "a re-added real gets its new weight, a kept one an update",
			actual:  withOrder(all("mh", a+"=1", b+"=1", c+"=1"), a, c, b),
			desired: all("mh", a+"=2", b+"=3", c+"=4"),
			want: []string{
				"-e -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 2",
				"-e -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 3",
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.3:80",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 4",
			},
		},
		{
			name:    "the scheduler becomes mh: update, then reorder",
			actual:  withOrder(all("rr", a, b), b, a),
			desired: all("mh", a, b),
			want: []string{
				"-E -t 192.0.2.1:80 -s mh",
				"reorder -d -t 192.0.2.1:80 -r 198.51.100.2:80",
				"reorder -a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := opLines(Diff(state(tt.actual), state(tt.desired), nil))
			if !slices.Equal(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			// Applied to a fake holding actual, the ops reach the
			// canonical order.
			f := NewFake()
			f.Seed(tt.actual)
			if _, err := NewReconciler(f, nil).Apply(context.Background(), state(tt.desired)); err != nil {
				t.Fatal(err)
			}
			if got := f.State()[web].KernelOrder(); OrderSensitive(tt.desired.Scheduler) && !slices.Equal(got, CanonicalOrder(tt.desired)) {
				t.Errorf("order after apply %v, want %v", got, CanonicalOrder(tt.desired))
			}
		})
	}
}

// TestReorderCost checks the documented cost of a new real: one add when
// its key is the highest, one add plus k deletes and k adds when k reals
// sort after it, and nothing else touched.
func TestReorderCost(t *testing.T) {
	const n = 8
	web := tcp("192.0.2.1:80")
	for pos := range n + 1 {
		var old []string
		var all []string
		for i := range n + 1 {
			a := fmt.Sprintf("198.51.100.%d:80", 10+i)
			all = append(all, a)
			if i != pos {
				old = append(old, a)
			}
		}
		f := NewFake()
		f.Seed(svc(web, "mh", old...))
		f.ResetCalls()
		if _, err := NewReconciler(f, nil).Apply(context.Background(), state(svc(web, "mh", all...))); err != nil {
			t.Fatal(err)
		}
		after := n - pos
		if w, want := f.Writes(), 1+2*after; w != want {
			t.Errorf("new real at position %d of %d: %d writes, want %d", pos, n+1, w, want)
		}
		if got := f.State()[web].KernelOrder(); !slices.Equal(got, keys(all...)) {
			t.Errorf("position %d: order %v", pos, got)
		}
	}
}

func TestDiffMHWeightZeroAddedAtLastWeight(t *testing.T) {
	web := tcp("192.0.2.1:80")
	down := NewDestination(addr("198.51.100.2"), 80, 0)
	down.LastWeight = 5
	for _, tt := range []struct {
		sched string
		want  []string
	}{
		{"mh", []string{
			"-A -t 192.0.2.1:80 -s mh",
			"-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1",
			"-a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 5",
			"-e -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 0",
		}},
		// sh and dh deal buckets by the current weight: an add at 0 is
		// an update to 0. Other schedulers keep no table.
		{"sh", []string{
			"-A -t 192.0.2.1:80 -s sh",
			"-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1",
			"-a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 0",
		}},
	} {
		s := svc(web, tt.sched, "198.51.100.1:80")
		s.Put(down)
		if got := opLines(Diff(State{}, state(s), nil)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.sched, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
		// Once there at 0, it stays: LastWeight is not compared.
		f := NewFake()
		if _, err := NewReconciler(f, nil).Apply(context.Background(), state(s)); err != nil {
			t.Fatal(err)
		}
		if d := f.State()[web].Dests[down.Key]; d.Weight != 0 {
			t.Errorf("%s: the down real is at %d", tt.sched, d.Weight)
		}
		f.ResetCalls()
		if _, err := NewReconciler(f, nil).Apply(context.Background(), state(s)); err != nil || f.Writes() != 0 {
			t.Errorf("%s: adoption made %d writes (%v)", tt.sched, f.Writes(), err)
		}
	}
	// In a reorder too: re-added at LastWeight, then 0, after the adds.
	s := svc(web, "mh", "198.51.100.1:80", "198.51.100.3:80")
	s.Put(down)
	actual := withOrder(s, "198.51.100.2:80", "198.51.100.1:80", "198.51.100.3:80")
	want := []string{
		"reorder -d -t 192.0.2.1:80 -r 198.51.100.2:80",
		"reorder -d -t 192.0.2.1:80 -r 198.51.100.3:80",
		"reorder -a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 5",
		"reorder -a -t 192.0.2.1:80 -r 198.51.100.3:80 -g -w 1",
		"reorder -e -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 0",
	}
	if got := opLines(Diff(state(actual), state(s), nil)); !slices.Equal(got, want) {
		t.Errorf("reorder: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTwoDirectorsConverge: two directors that saw the same reals come and
// go in different orders end with the same kernel order, and foreign mh
// services keep theirs.
func TestTwoDirectorsConverge(t *testing.T) {
	ctx := context.Background()
	web := tcp("192.0.2.1:80")
	foreign := withOrder(svc(tcp("203.0.113.99:80"), "mh", "203.0.113.101:80", "203.0.113.100:80"),
		"203.0.113.101:80", "203.0.113.100:80")
	foreignOrder := foreign.KernelOrder()
	var reals []string
	for i := range 6 {
		reals = append(reals, fmt.Sprintf("198.51.100.%d:80", 1+i))
	}
	desired := state(svc(web, "mh", reals...))
	orders := [][]string{
		{reals[5], reals[0], reals[3], reals[1], reals[4], reals[2]},
		{reals[2], reals[1], reals[0], reals[5], reals[4], reals[3]},
	}
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			var got [][]DestKey
			for _, order := range orders {
				f := NewFake()
				f.Seed(foreign)
				f.Seed(withOrder(svc(web, "mh", reals...), order...))
				if _, err := NewReconciler(m.wrap(f), nil).Apply(ctx, desired); err != nil {
					t.Fatal(err)
				}
				st := f.State()
				got = append(got, st[web].KernelOrder())
				if !slices.Equal(st[foreign.Key].KernelOrder(), foreignOrder) || f.WritesTo(foreign.Key) != 0 {
					t.Errorf("foreign service touched: %v", st[foreign.Key].KernelOrder())
				}
				// Converged: a second apply and a restarted dsrd write nothing.
				f.ResetCalls()
				if _, err := NewReconciler(m.wrap(f), nil).Apply(ctx, desired); err != nil || f.Writes() != 0 {
					t.Errorf("after the reorder a new reconciler made %d writes (%v)", f.Writes(), err)
				}
			}
			if !slices.Equal(got[0], got[1]) || !slices.Equal(got[0], keys(reals...)) {
				t.Errorf("orders differ: %v and %v", got[0], got[1])
			}
		})
	}
}

// guardKernel records the guarded sysctl's value at every write.
type guardKernel struct {
	*Fake
	sys *mapSysctl
	at  []string // "op=value"
}

func (g *guardKernel) WriteBatch(ctx context.Context, ops []Op) []error {
	for _, o := range ops {
		l := o.Kind.String()
		if o.Reorder {
			l = "reorder-" + l
		}
		g.at = append(g.at, l+"="+g.sys.vals[ExpireNodestConn])
	}
	return g.Fake.WriteBatch(ctx, ops)
}

func TestRebuildGuard(t *testing.T) {
	ctx := context.Background()
	web := tcp("192.0.2.1:80")
	removed := tcp("192.0.2.2:80")
	desired := state(svc(web, "mh", "198.51.100.1:80", "198.51.100.2:80"))
	seed := func(f *Fake) {
		f.Seed(withOrder(svc(web, "mh", "198.51.100.1:80", "198.51.100.2:80", "198.51.100.3:80"),
			"198.51.100.2:80", "198.51.100.3:80", "198.51.100.1:80"))
		f.Seed(svc(removed, "rr", "198.51.100.9:80"))
	}

	sys := &mapSysctl{vals: map[string]string{ExpireNodestConn: "1"}}
	g := &guardKernel{Fake: NewFake(), sys: sys}
	seed(g.Fake)
	r := NewReconciler(g, nil, WithRebuildGuard(sys), WithOwned([]ServiceKey{removed}))
	if _, err := r.Apply(ctx, desired); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"reorder-del-dest=0", "reorder-add-dest=0",
		"del-dest=1", "del-service=1",
	}
	if !slices.Equal(g.at, want) {
		t.Errorf("expire_nodest_conn at each write: %v, want %v", g.at, want)
	}
	if !slices.Equal(sys.writes, []string{ExpireNodestConn + "=0", ExpireNodestConn + "=1"}) || sys.vals[ExpireNodestConn] != "1" {
		t.Errorf("sysctl writes %v, value %s", sys.writes, sys.vals[ExpireNodestConn])
	}

	// No reorder: not a read nor a write. Already 0: not written.
	sys.writes = nil
	if _, err := r.Apply(ctx, desired); err != nil || len(sys.writes) != 0 {
		t.Errorf("no reorder: writes %v (%v)", sys.writes, err)
	}
	sys0 := &mapSysctl{vals: map[string]string{ExpireNodestConn: "0"}}
	f := NewFake()
	seed(f)
	if _, err := NewReconciler(f, nil, WithRebuildGuard(sys0)).Apply(ctx, desired); err != nil || len(sys0.writes) != 0 {
		t.Errorf("already 0: writes %v (%v)", sys0.writes, err)
	}

	// A failed reorder write still restores it; an unreadable sysctl is
	// reported and the reorder made anyway.
	sys = &mapSysctl{vals: map[string]string{ExpireNodestConn: "1"}}
	f = NewFake()
	seed(f)
	f.FailWrite(1, errors.New("injected"))
	if _, err := NewReconciler(f, nil, WithRebuildGuard(sys)).Apply(ctx, desired); err == nil {
		t.Error("the injected failure was not reported")
	}
	if sys.vals[ExpireNodestConn] != "1" {
		t.Errorf("not restored after a failure: %s", sys.vals[ExpireNodestConn])
	}
	bad := &mapSysctl{vals: map[string]string{}}
	f = NewFake()
	seed(f)
	if _, err := NewReconciler(f, nil, WithRebuildGuard(bad)).Apply(ctx, desired); err == nil || !strings.Contains(err.Error(), "reorder guard") {
		t.Errorf("unreadable sysctl: %v", err)
	}
	if got := f.State()[web].KernelOrder(); !slices.Equal(got, keys("198.51.100.1:80", "198.51.100.2:80")) {
		t.Errorf("reorder not made without the guard: %v", got)
	}
}

func TestFakeKernelOrderContract(t *testing.T) {
	testKernelOrderContract(t, NewFake())
}

// testKernelOrderContract checks how a Kernel orders destinations: the
// fake in unit tests, the real kernel in the VM. k must be empty.
func testKernelOrderContract(t *testing.T, k Kernel) {
	ctx := context.Background()
	ok := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	key := tcp("192.0.2.1:80")
	d := func(i int) Destination {
		return NewDestination(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 80, i)
	}
	order := func(what string, want ...int) {
		t.Helper()
		ds, err := k.GetDestinations(ctx, key)
		ok("get dests", err)
		var got []int
		for _, x := range ds {
			got = append(got, int(x.Key.Addr.As4()[3]))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: destinations listed %v, want %v", what, got, want)
		}
	}
	ok("new service", k.NewService(ctx, NewService(key, "mh")))
	for _, i := range []int{3, 1, 2} {
		ok("new dest", k.NewDestination(ctx, key, d(i)))
	}
	order("added 3, 1, 2", 2, 1, 3) // the last added first
	st, err := ReadState(ctx, k, nil)
	ok("read state", err)
	if got, want := st[key].KernelOrder(), []DestKey{d(3).Key, d(1).Key, d(2).Key}; !slices.Equal(got, want) {
		t.Errorf("KernelOrder %v, want %v", got, want)
	}
	w := d(1)
	w.Weight = 0
	ok("update dest", k.UpdateDestination(ctx, key, w))
	ok("update service", k.UpdateService(ctx, NewService(key, "sh")))
	order("after updates", 2, 1, 3)
	ok("del dest", k.DelDestination(ctx, key, d(1).Key))
	ok("re-add dest", k.NewDestination(ctx, key, d(1)))
	order("1 deleted and added again", 1, 2, 3)

	// The reconciler puts them in canonical order, and then leaves them.
	desired := state(svc(key, "sh", "198.51.100.1:80=1", "198.51.100.2:80=2", "198.51.100.3:80=3"))
	_, err = NewReconciler(k, nil).Apply(ctx, desired)
	ok("apply", err)
	order("reconciled", 3, 2, 1)
	st, err = ReadState(ctx, k, nil)
	ok("read state", err)
	if m := stateMismatch(st, desired); m != "" {
		t.Errorf("after the reorder:\n%s", m)
	}
	ok("delete service", k.DelService(ctx, key))
}
