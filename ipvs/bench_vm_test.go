//go:build vmtest

package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// benchShapes returns 1,000 services x 10 reals and 10,000 services x 1
// real, on documentation addresses.
func benchShapes() []struct {
	name  string
	state State
} {
	wide := State{}
	for i := range 1000 {
		vip := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/5)})
		port := uint16(80 + i%5)
		s := NewService(NewServiceKey(TCP, netip.AddrPortFrom(vip, port)), "wlc")
		for j := range 10 {
			s.Put(NewDestination(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + j)}), port, 1+j))
		}
		wide.Put(s)
	}
	return []struct {
		name  string
		state State
	}{{"1000 svc x 10 reals", wide}, {"10000 svc x 1 real", benchState(10000)}}
}

// timeIt returns how long f took.
func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// benchRow is one measured phase over all repetitions.
type benchRow struct {
	phase                string
	floor                string // the phase it is compared with
	times                []time.Duration
	reads, writes, trips int64 // trips: round trips of the writes
}

// The phases of the benchmark.
const (
	phRestore  = "ipvsadm -R (floor)"
	phSave     = "ipvsadm -Sn (read floor)"
	phFull     = "full sync from empty"
	phNoop     = "no-op resync"
	phWeight   = "one weight change"
	phAdopt    = "restart: adopt"
	phUnbatchd = "full sync, unbatched (moby/ipvs)"
)

// TestVMBenchmark measures the kernel backend against `ipvsadm -R` (the
// floor: the same rules restored by ipvsadm into a fresh namespace) and
// `ipvsadm -Sn` (the floor of reading the table back), repeating every
// phase (DSRD_IPVS_BENCH_REPS, default 2) in fresh namespaces, interleaved,
// and prints the fastest of each with its ratio to its floor. It runs only
// with DSRD_IPVS_BENCH=1:
//
//	go test -c -tags vmtest -o .cache/ipvs.test ./ipvs
//	DSRD_IPVS_BENCH=1 tests/vm/run .cache/ipvs.test -test.run TestVMBenchmark -test.v
func TestVMBenchmark(t *testing.T) {
	if os.Getenv("DSRD_IPVS_BENCH") != "1" {
		t.Skip("a benchmark: set DSRD_IPVS_BENCH=1 to run it")
	}
	reps := 2
	if v, err := strconv.Atoi(os.Getenv("DSRD_IPVS_BENCH_REPS")); err == nil && v > 0 {
		reps = v
	}
	ctx := context.Background()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "shape\tphase\tfastest of %d\tslowest\tvs floor\tround trips\twrites\t\n", reps)
	for _, sh := range benchShapes() {
		rules := FormatRules(sh.state)
		lines := int64(strings.Count(rules, "\n"))
		n := int64(len(sh.state))
		rows := []*benchRow{
			{phase: phRestore, floor: phRestore, writes: lines, trips: lines},
			{phase: phSave, floor: phSave, reads: n + 1},
			{phase: phFull, floor: phRestore},
			{phase: phNoop, floor: phSave},
			{phase: phWeight, floor: phSave},
			{phase: phAdopt, floor: phSave},
			{phase: phUnbatchd, floor: phRestore},
		}
		byPhase := map[string]*benchRow{}
		for _, r := range rows {
			byPhase[r.phase] = r
		}
		add := func(phase string, d time.Duration) { byPhase[phase].times = append(byPhase[phase].times, d) }
		measure := func(k *countingKernel, r *Reconciler, phase string, st State) *benchRow {
			k.reset()
			add(phase, timeIt(func() {
				if _, err := r.Apply(ctx, st); err != nil {
					t.Fatalf("%s %s: %v", sh.name, phase, err)
				}
			}))
			row := byPhase[phase]
			row.reads, row.writes, row.trips = k.reads.Load(), k.writes.Load(), k.trips.Load()
			return row
		}

		for range reps {
			// The floor: ipvsadm -R of the same rules, and ipvsadm -Sn to
			// read them back, in a fresh namespace.
			a := newVMNetns(t)
			var saved string
			a.in(func() error {
				cmd := exec.Command("ipvsadm", "-R")
				cmd.Stdin = strings.NewReader(rules)
				var err error
				add(phRestore, timeIt(func() {
					var out []byte
					if out, err = cmd.CombinedOutput(); err != nil {
						err = fmt.Errorf("ipvsadm -R: %w\n%s", err, out)
					}
				}))
				if err != nil {
					return err
				}
				add(phSave, timeIt(func() {
					var out []byte
					out, err = exec.Command("ipvsadm", "-Sn").Output()
					saved = string(out)
				}))
				return err
			})
			if saved != rules {
				t.Fatalf("%s: ipvsadm -R did not restore the rules", sh.name)
			}

			// The reconciler in another fresh namespace.
			b := newVMNetns(t)
			k := &countingKernel{Kernel: b.open()}
			r := NewReconciler(k, nil)
			if row := measure(k, r, phFull, sh.state); row.writes != lines {
				t.Errorf("%s: full sync made %d writes, want %d", sh.name, row.writes, lines)
			}
			if got := b.ipvsadm(); got != rules {
				t.Fatalf("%s: the kernel differs from the rules after the full sync", sh.name)
			}
			if row := measure(k, r, phNoop, sh.state); row.writes != 0 || row.reads != n+1 {
				t.Errorf("%s: no-op resync made %d writes and %d reads, want 0 and %d", sh.name, row.writes, row.reads, n+1)
			}
			changed := sh.state.Clone()
			s := changed[SortedKeys(changed)[0]]
			for dk, d := range s.Dests {
				d.Weight += 100
				s.Dests[dk] = d
				break
			}
			if row := measure(k, r, phWeight, changed); row.writes != 1 {
				t.Errorf("%s: one weight change made %d writes, want 1", sh.name, row.writes)
			}
			if row := measure(k, NewReconciler(k, nil), phAdopt, changed); row.writes != 0 {
				t.Errorf("%s: adoption made %d writes, want 0", sh.name, row.writes)
			}

			// The same full sync with one write per round trip, through
			// moby/ipvs.
			c := newVMNetns(t)
			ck := &countingKernel{Kernel: c.open(WithBatchSize(1))}
			measure(ck, NewReconciler(oneByOne{ck}, nil), phUnbatchd, sh.state)
		}
		for _, r := range rows {
			fastest, slowest := slices.Min(r.times), slices.Max(r.times)
			floor := slices.Min(byPhase[r.floor].times)
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%.2fx\t%d\t%d\t\n", sh.name, r.phase,
				fastest.Round(time.Millisecond), slowest.Round(time.Millisecond),
				float64(fastest)/float64(floor), r.reads+r.trips, r.writes)
		}
	}
	tw.Flush()
}
