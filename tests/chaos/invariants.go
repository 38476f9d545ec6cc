package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Violation is one broken invariant, for the run's report.
type Violation struct {
	At        time.Duration
	Invariant string
	Detail    string
}

func (v Violation) String() string {
	return fmt.Sprintf("+%s %s: %s", v.At.Round(time.Millisecond), v.Invariant, v.Detail)
}

// quietSince returns how long before t no fault of fs has been acting (t
// itself when none ever did), and whether one acts at t.
func quietSince(fs []Fault, t time.Duration) (time.Duration, bool) {
	last := time.Duration(0)
	for _, f := range fs {
		if f.At > t {
			continue
		}
		end := f.End()
		if f.Duration == 0 {
			end = f.At // an instant fault: a reload, a drain, a transfer
		}
		if end > t {
			return 0, true
		}
		last = max(last, end)
	}
	return t - last, false
}

// VIPSample is who held each arp VIP at one moment (netlink notifications
// and a poll of every director).
type VIPSample struct {
	At      time.Duration
	Holders map[string][]string // VIP -> directors holding it
}

// CheckVIPOwners checks invariant (a) of the issue: an arp VIP is on at
// most one director at every sample, and on exactly one whenever no fault
// has acted for settle (the documented bound).
func CheckVIPOwners(samples []VIPSample, vips []string, fs []Fault, settle time.Duration) []Violation {
	var out []Violation
	for _, s := range samples {
		quiet, acting := quietSince(fs, s.At)
		for _, vip := range vips {
			h := s.Holders[vip]
			switch {
			case len(h) > 1:
				out = append(out, Violation{s.At, "vip-single-owner", fmt.Sprintf("%s held by %s", vip, strings.Join(h, " and "))})
			case len(h) == 0 && !acting && quiet >= settle:
				out = append(out, Violation{s.At, "vip-owned-when-healthy", fmt.Sprintf("%s held by no director %s after the last fault", vip, quiet.Round(time.Millisecond))})
			}
		}
	}
	return out
}

// Final is what the runner read once faults stopped and the bound passed.
type Final struct {
	At time.Duration
	// IPVS is each director's IPVS table as ipvsadm -Sn prints it (sorted).
	IPVS map[string]string
	// Desired is the table every director must hold alike (the first
	// director's); Expected, per director, the table the cluster's spec,
	// admin states and that director's health verdicts call for.
	Desired  string
	Expected map[string]string
	// Repaired says, per realserver agent, that its host checks ok.
	Repaired map[string]bool
	// Leaders are the members that say they lead.
	Leaders []string
}

// CheckConverged checks invariant (b): every director's IPVS equals the
// desired table, every realserver is repaired, and there is one leader.
func CheckConverged(f Final) []Violation {
	var out []Violation
	for _, d := range sortedKeys(f.IPVS) {
		if f.IPVS[d] != f.Desired {
			out = append(out, Violation{f.At, "ipvs-converged", fmt.Sprintf("%s's IPVS differs from the other director's:\n%s", d, lineDiff(f.Desired, f.IPVS[d]))})
		}
		if want, ok := f.Expected[d]; ok && f.IPVS[d] != want {
			out = append(out, Violation{f.At, "ipvs-desired", fmt.Sprintf("%s's IPVS differs from what the spec and health call for:\n%s", d, lineDiff(want, f.IPVS[d]))})
		}
	}
	for _, a := range sortedKeys(f.Repaired) {
		if !f.Repaired[a] {
			out = append(out, Violation{f.At, "realserver-repaired", a + "'s host does not check ok"})
		}
	}
	if len(f.Leaders) != 1 {
		out = append(out, Violation{f.At, "one-leader", fmt.Sprintf("%d leaders: %v", len(f.Leaders), f.Leaders)})
	}
	return out
}

// Op is one change asked of the cluster (a reload, an admin state) and
// whether the API acknowledged it.
type Op struct {
	At    time.Duration
	Key   string // what it sets: "admin/web/198.51.100.21", "config"
	Value string // the value it sets: "drained", a config hash
	Acked bool
}

// CheckLedger checks invariant (c): for every key, the value at the end
// is the last acknowledged one, or the value of an unacknowledged op
// asked after it (its outcome is unknown: it may have landed). An
// acknowledged change that is missing at the end was lost.
func CheckLedger(ops []Op, final map[string]string, at time.Duration) []Violation {
	byKey := map[string][]Op{}
	for _, o := range ops {
		byKey[o.Key] = append(byKey[o.Key], o)
	}
	var out []Violation
	for _, k := range sortedKeys(byKey) {
		list := byKey[k]
		slices.SortStableFunc(list, func(a, b Op) int { return int(a.At - b.At) })
		last := -1
		for i, o := range list {
			if o.Acked {
				last = i
			}
		}
		if last < 0 {
			continue
		}
		allowed := []string{list[last].Value}
		for _, o := range list[last+1:] {
			allowed = append(allowed, o.Value)
		}
		if got := final[k]; !slices.Contains(allowed, got) {
			out = append(out, Violation{at, "acknowledged-kept", fmt.Sprintf("%s is %q at the end; the last acknowledged change set %q (at +%s)", k, got, list[last].Value, list[last].At.Round(time.Millisecond))})
		}
	}
	return out
}

// Resources is one daemon's footprint at one moment.
type Resources struct {
	// PID is the process read (a restarted daemon is a new process).
	PID int
	// Goroutines is -1 where the daemon does not export it (the
	// realserver agent serves no metrics); Threads are the OS threads.
	Goroutines, Threads, FDs int
	RSS                      int64 // bytes
}

// CheckLeaks checks invariant (d): at the end a daemon holds at most
// twice its goroutines and file descriptors after warm-up plus a small
// slack, and at most 1.5 times its RSS plus 16 MiB. A daemon missing at
// either end (it was not running when read) is not judged.
func CheckLeaks(warm, end map[string]Resources, at time.Duration) []Violation {
	var out []Violation
	for _, d := range sortedKeys(warm) {
		w, e := warm[d], end[d]
		if _, ok := end[d]; !ok {
			continue
		}
		if w.Goroutines >= 0 && e.Goroutines > 2*w.Goroutines+20 {
			out = append(out, Violation{at, "no-leak", fmt.Sprintf("%s: %d goroutines, %d after warm-up", d, e.Goroutines, w.Goroutines)})
		}
		if e.FDs > 2*w.FDs+10 {
			out = append(out, Violation{at, "no-leak", fmt.Sprintf("%s: %d file descriptors, %d after warm-up", d, e.FDs, w.FDs)})
		}
		if e.RSS > w.RSS*3/2+16<<20 {
			out = append(out, Violation{at, "no-leak", fmt.Sprintf("%s: RSS %d MiB, %d MiB after warm-up", d, e.RSS>>20, w.RSS>>20)})
		}
	}
	return out
}

// Probe is one client request's outcome.
type Probe struct {
	At time.Duration
	OK bool
	// Err says why a probe failed.
	Err string
}

// Outages measures invariant (e): the success rate of the probes outside
// every fault's window (a fault's span plus grace) must be 100 %; and for
// each fault kind, the longest run of failed probes that began within a
// fault of that kind's window.
func Outages(probes []Probe, fs []Fault, grace time.Duration) (outside float64, worst map[Kind][]time.Duration, violations []Violation) {
	in := func(t time.Duration) (Kind, bool) {
		for _, f := range fs {
			if t >= f.At && t < f.End()+grace {
				return f.Kind, true
			}
		}
		return "", false
	}
	ok, n := 0, 0
	worst = map[Kind][]time.Duration{}
	var start time.Duration
	var kind Kind
	failing := false
	for _, p := range probes {
		k, faulted := in(p.At)
		if !faulted {
			n++
			if p.OK {
				ok++
			} else {
				violations = append(violations, Violation{p.At, "clients-served", "a probe failed outside every fault's window: " + p.Err})
			}
		}
		switch {
		case !p.OK && !failing:
			failing, start, kind = true, p.At, k
		case p.OK && failing:
			failing = false
			if kind != "" {
				worst[kind] = append(worst[kind], p.At-start)
			}
		}
	}
	outside = 100
	if n > 0 {
		outside = 100 * float64(ok) / float64(n)
	}
	return outside, worst, violations
}

// Spread summarises durations as min/median/max.
func Spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	return r(s[0]) + " / " + r(s[len(s)/2]) + " / " + r(s[len(s)-1])
}

// lineDiff lists the lines only one of a and b has.
func lineDiff(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
