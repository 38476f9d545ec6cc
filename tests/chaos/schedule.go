// Package chaos is the seeded fault schedule and the invariant checks of
// dsrd's chaos and soak runs (issue 18): a schedule is a pure function of
// its seed and its bounds, so a run that found a bug replays exactly; the
// checks are pure functions of what the runner observed, so each is
// tested here without a lab.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults a schedule draws from.
const (
	// KillDaemon SIGKILLs a daemon (director, witness or realserver
	// agent); it is started again after Duration.
	KillDaemon Kind = "kill"
	// StallDaemon SIGSTOPs a daemon for Duration, then SIGCONTs it.
	StallDaemon Kind = "stall"
	// LinkDown takes a director's link down for Duration.
	LinkDown Kind = "link-down"
	// Partition drops the cluster port between Target and Peers (both
	// directions, or only Target's outbound when OneWay) for Duration.
	Partition Kind = "partition"
	// Netem adds packet loss (LossPct) and delay (Delay) on a link for
	// Duration.
	Netem Kind = "netem"
	// ValidReload reloads a director with a changed but valid file.
	ValidReload Kind = "reload"
	// InvalidReload reloads a director with an invalid file: nothing may
	// change.
	InvalidReload Kind = "bad-reload"
	// AdminDrain drains a real through the cluster; AdminUndrain enables
	// it again.
	AdminDrain   Kind = "drain"
	AdminUndrain Kind = "undrain"
	// Transfer asks for a planned leadership transfer.
	Transfer Kind = "transfer"
	// KillBackend kills a backend's server for Duration.
	KillBackend Kind = "backend-kill"
	// ClockStep steps one node's clock by Step (positive or negative).
	ClockStep Kind = "clock-step"
)

// Kinds lists every kind, in a fixed order.
var Kinds = []Kind{KillDaemon, StallDaemon, LinkDown, Partition, Netem, ValidReload, InvalidReload,
	AdminDrain, AdminUndrain, Transfer, KillBackend, ClockStep}

// Fault is one scheduled fault.
type Fault struct {
	// At is the fault's start from the beginning of the run.
	At   time.Duration
	Kind Kind
	// Target is the node (or backend) the fault acts on.
	Target string
	// Peers are the other side of a partition.
	Peers []string
	// OneWay: the partition drops Target's outbound packets only.
	OneWay bool
	// Duration is how long the fault lasts; 0 for instant ones (reloads,
	// drains, transfers, clock steps).
	Duration time.Duration
	// LossPct, Delay (netem) and Step (clock) parameterise some kinds.
	LossPct int
	Delay   time.Duration
	Step    time.Duration
}

// End is when the fault stops acting.
func (f Fault) End() time.Duration { return f.At + f.Duration }

// String formats the fault on one line, for the run's log.
func (f Fault) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "+%s %s %s", f.At.Round(time.Millisecond), f.Kind, f.Target)
	if len(f.Peers) > 0 {
		dir := "<->"
		if f.OneWay {
			dir = "->"
		}
		fmt.Fprintf(&b, " %s %s", dir, strings.Join(f.Peers, ","))
	}
	if f.Duration > 0 {
		fmt.Fprintf(&b, " for %s", f.Duration.Round(time.Millisecond))
	}
	if f.Kind == Netem {
		fmt.Fprintf(&b, " loss %d%% delay %s", f.LossPct, f.Delay)
	}
	if f.Kind == ClockStep {
		fmt.Fprintf(&b, " step %s", f.Step)
	}
	return b.String()
}

// Topology names what a schedule may act on.
type Topology struct {
	Directors []string // dir1, dir2
	Witnesses []string // dir3
	Backends  []string // rs1..rs3
	// Agents are the realserver agents kills and stalls may hit (by
	// host); empty in a lab that runs none.
	Agents []string
	Reals  []string // the reals drains act on, "service/address"
}

// Bounds shape a schedule.
type Bounds struct {
	// Length is the run's length; faults start in [Warmup, Length-Quiet).
	Length, Warmup, Quiet time.Duration
	// MeanGap is the mean time between two fault starts.
	MeanGap time.Duration
	// MaxConcurrent bounds the faults acting at once.
	MaxConcurrent int
	// Kinds limits the kinds drawn; empty is every kind.
	Kinds []Kind
}

// DefaultBounds is a short run: 4 minutes, faults every 8 s on average, at
// most two at once, the last 45 s quiet so the cluster converges before
// the final checks.
var DefaultBounds = Bounds{Length: 4 * time.Minute, Warmup: 20 * time.Second, Quiet: 45 * time.Second,
	MeanGap: 8 * time.Second, MaxConcurrent: 2}

// Generate returns the schedule of seed within b over top, sorted by
// start. The same seed, bounds and topology give the same schedule.
// Faults never overlap on one target, never exceed MaxConcurrent at once,
// and every fault ends before the quiet period. A schedule never drains a
// service's last enabled real: an operator who drains every real of a
// service asks for its outage, and the clients' invariant could not tell
// that outage from a bug (the soak of seed 2026 drained all three reals of
// web twice, for 75 s and 66 s, and counted every failed request as a
// violation). The runner must retry an admin command until it is
// acknowledged for the schedule's view of the admin states to hold.
func Generate(seed uint64, b Bounds, top Topology) ([]Fault, error) {
	if b.Length <= b.Warmup+b.Quiet || b.MeanGap <= 0 || b.MaxConcurrent < 1 {
		return nil, fmt.Errorf("chaos: bounds %+v leave no time for faults", b)
	}
	if len(top.Directors) < 2 {
		return nil, fmt.Errorf("chaos: %d directors; a schedule needs at least 2", len(top.Directors))
	}
	kinds := b.Kinds
	if len(kinds) == 0 {
		kinds = Kinds
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	dur := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)+1)).Round(10*time.Millisecond)
	}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	nodes := slices.Concat(top.Directors, top.Witnesses)
	daemons := slices.Concat(nodes, prefixed("agent@", top.Agents))
	end := b.Length - b.Quiet

	var out []Fault
	busy := map[string]time.Duration{} // target -> when its last fault ends
	drained := map[string]bool{}       // "service/address" -> drained by the schedule
	for at := b.Warmup; ; {
		at += time.Duration(rng.ExpFloat64() * float64(b.MeanGap)).Round(10 * time.Millisecond)
		if at >= end {
			break
		}
		k := kinds[rng.IntN(len(kinds))]
		f := Fault{At: at, Kind: k}
		switch k {
		case KillDaemon:
			f.Target, f.Duration = pick(daemons), dur(500*time.Millisecond, 8*time.Second)
		case StallDaemon:
			f.Target, f.Duration = pick(daemons), dur(100*time.Millisecond, 5*time.Second)
		case LinkDown:
			f.Target, f.Duration = pick(top.Directors), dur(500*time.Millisecond, 6*time.Second)
		case Partition:
			f.Target, f.Duration = pick(nodes), dur(time.Second, 15*time.Second)
			for _, n := range nodes {
				if n != f.Target && rng.IntN(2) == 0 {
					f.Peers = append(f.Peers, n)
				}
			}
			if len(f.Peers) == 0 {
				f.Peers = []string{pick(without(nodes, f.Target))}
			}
			f.OneWay = rng.IntN(3) == 0
		case Netem:
			f.Target, f.Duration = pick(nodes), dur(2*time.Second, 15*time.Second)
			f.LossPct, f.Delay = 1+rng.IntN(30), time.Duration(rng.IntN(200))*time.Millisecond
		case ValidReload, InvalidReload, Transfer:
			f.Target = pick(top.Directors)
		case AdminDrain, AdminUndrain:
			if len(top.Reals) == 0 {
				continue
			}
			f.Target = pick(top.Reals)
		case KillBackend:
			if len(top.Backends) == 0 {
				continue
			}
			f.Target, f.Duration = pick(top.Backends), dur(time.Second, 10*time.Second)
		case ClockStep:
			f.Target = pick(nodes)
			f.Step = time.Duration(rng.IntN(120)-60) * time.Second
			if f.Step == 0 {
				f.Step = time.Second
			}
		}
		if f.End() >= end {
			f.Duration = max(0, end-f.At-time.Second)
			if f.Duration == 0 && (k == KillDaemon || k == StallDaemon || k == LinkDown || k == Partition || k == Netem || k == KillBackend) {
				continue
			}
		}
		if busy[f.Target] > f.At || concurrent(out, f.At) >= b.MaxConcurrent {
			continue // drawn and dropped: the draw still advances the seed's stream
		}
		if k == AdminDrain && lastEnabled(top.Reals, drained, f.Target) {
			continue
		}
		switch k {
		case AdminDrain:
			drained[f.Target] = true
		case AdminUndrain:
			delete(drained, f.Target)
		}
		busy[f.Target] = f.End()
		out = append(out, f)
	}
	return out, nil
}

// lastEnabled reports whether real ("service/address") is the only real of
// its service in reals that drained does not hold.
func lastEnabled(reals []string, drained map[string]bool, real string) bool {
	svc, _, _ := strings.Cut(real, "/")
	for _, r := range reals {
		if s, _, _ := strings.Cut(r, "/"); s == svc && r != real && !drained[r] {
			return false
		}
	}
	return !drained[real]
}

// concurrent counts the faults of fs still acting at t.
func concurrent(fs []Fault, t time.Duration) int {
	n := 0
	for _, f := range fs {
		if f.Duration > 0 && f.At <= t && t < f.End() {
			n++
		}
	}
	return n
}

func prefixed(p string, xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = p + x
	}
	return out
}

func without(xs []string, x string) []string {
	return slices.DeleteFunc(slices.Clone(xs), func(y string) bool { return y == x })
}

// Counts returns the number of faults of each kind.
func Counts(fs []Fault) map[Kind]int {
	out := map[Kind]int{}
	for _, f := range fs {
		out[f.Kind]++
	}
	return out
}
