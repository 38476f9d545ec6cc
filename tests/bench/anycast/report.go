package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// The results file: one line per measurement, written as the run goes so
// that a run cut short still reports what it measured.
//
//	r PHASE METRIC VALUE   VALUE in milliseconds, or ALIVE/TOTAL
//	note TEXT              a footnote
//
// Metrics of the cut-* and kill-* phases (one line each per repetition):
// served_ms (new connections all served again), fib_ms (bgp: the lost
// director's next hop gone from the router's kernel; arp: the router's
// ARP entry for the VIP on the new owner's MAC), answered_ms (the
// last established flow answering again), alive (established flows that
// survived); of flows: EVENT_mh, EVENT_rr (flows alive) and EVENT_moved
// (flows the router sent to another director) for EVENT added, drained,
// lost; of fib: down_ms, up_ms.

// ResultLine formats one result line.
func ResultLine(phase, metric, value string) string {
	return fmt.Sprintf("r %s %s %s", phase, metric, value)
}

// Ms formats a duration in milliseconds for a result line.
func Ms(ms float64) string { return strconv.FormatFloat(ms, 'f', 1, 64) }

// Results is a parsed results file.
type Results struct {
	// Order is the phases in the order they first appear.
	Order []string
	// Values and Fractions by phase, then metric, in order.
	Values    map[string]map[string][]float64
	Fractions map[string]map[string][]Fraction
	Notes     []string
}

// ParseResults reads a results file; lines it does not know are skipped,
// a malformed r line is an error.
func ParseResults(r io.Reader) (*Results, error) {
	res := &Results{Values: map[string]map[string][]float64{}, Fractions: map[string]map[string][]Fraction{}}
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		key, rest, _ := strings.Cut(line, " ")
		switch key {
		case "note":
			res.Notes = append(res.Notes, rest)
		case "r":
			f := strings.Fields(rest)
			if len(f) != 3 {
				return nil, fmt.Errorf("line %d: %q: want r PHASE METRIC VALUE", n, line)
			}
			phase, metric, value := f[0], f[1], f[2]
			if !seen[phase] {
				seen[phase] = true
				res.Order = append(res.Order, phase)
			}
			if a, t, ok := strings.Cut(value, "/"); ok {
				alive, err1 := strconv.Atoi(a)
				total, err2 := strconv.Atoi(t)
				if err1 != nil || err2 != nil || alive < 0 || alive > total {
					return nil, fmt.Errorf("line %d: %q: bad fraction", n, line)
				}
				if res.Fractions[phase] == nil {
					res.Fractions[phase] = map[string][]Fraction{}
				}
				res.Fractions[phase][metric] = append(res.Fractions[phase][metric], Fraction{alive, total})
				continue
			}
			v, err := strconv.ParseFloat(value, 64)
			if err != nil || math.IsNaN(v) || v < 0 {
				return nil, fmt.Errorf("line %d: %q: bad value", n, line)
			}
			if res.Values[phase] == nil {
				res.Values[phase] = map[string][]float64{}
			}
			res.Values[phase][metric] = append(res.Values[phase][metric], v)
		}
	}
	return res, sc.Err()
}

// secs formats milliseconds as seconds, "-" for NaN.
func secs(ms float64) string {
	if math.IsNaN(ms) {
		return "-"
	}
	return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
}

// span is "min / median / max" in seconds.
func span(s Summary) string {
	if s.N == 0 {
		return "-"
	}
	return secs(s.Min) + " / " + secs(s.Median) + " / " + secs(s.Max)
}

// fractions sums fs and gives the per-repetition range in percent:
// "23/24 (90-100 %)".
func fractions(fs []Fraction) string {
	if len(fs) == 0 {
		return "-"
	}
	var sum Fraction
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, f := range fs {
		sum.Alive += f.Alive
		sum.Total += f.Total
		if r := f.Ratio(); !math.IsNaN(r) {
			lo, hi = math.Min(lo, r), math.Max(hi, r)
		}
	}
	if math.IsInf(lo, 0) {
		return fmt.Sprintf("%d/%d", sum.Alive, sum.Total)
	}
	if lo == hi {
		return fmt.Sprintf("%d/%d (%.0f %% each time)", sum.Alive, sum.Total, 100*lo)
	}
	return fmt.Sprintf("%d/%d (%.0f-%.0f %% per repetition)", sum.Alive, sum.Total, 100*lo, 100*hi)
}

// ratio is a/b as "0.42x", "-" when either is missing or b is 0.
func ratio(a, b float64) string {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 {
		return "-"
	}
	return strconv.FormatFloat(a/b, 'f', 2, 64) + "x"
}

// Render writes the report's tables in Markdown.
func Render(w io.Writer, res *Results) error {
	var loss, flows, fib []string
	for _, name := range res.Order {
		p, err := ParsePhase(name)
		if err != nil {
			return err
		}
		switch p.Kind {
		case "cut", "kill":
			loss = append(loss, name)
		case "flows":
			flows = append(flows, name)
		case "fib":
			fib = append(fib, name)
		}
	}
	b := bufio.NewWriter(w)
	if len(loss) > 0 {
		fmt.Fprintln(b, "A director lost: min / median / max over N repetitions")
		fmt.Fprintln(b)
		fmt.Fprintln(b, "| setup | N | new connections all served again | median vs arp (same loss) | the router's way moved (bgp: next hop gone from its FIB; arp: its ARP entry on the new owner) | established flows all answering again | established flows alive |")
		fmt.Fprintln(b, "| --- | --: | --: | --: | --: | --: | --: |")
		for _, name := range loss {
			p, _ := ParsePhase(name)
			v := res.Values[name]
			served := Summarize(v["served_ms"])
			base := Summarize(res.Values[p.Kind+"-arp"]["served_ms"])
			vs := "(baseline)"
			if p.Mode != "arp" {
				vs = ratio(served.Median, base.Median)
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s | %s | %s |\n", p.Label(), served.N, span(served), vs,
				span(Summarize(v["fib_ms"])), span(Summarize(v["answered_ms"])), fractions(res.Fractions[name]["alive"]))
		}
		fmt.Fprintln(b)
	}
	for _, name := range flows {
		fs := res.Fractions[name]
		fmt.Fprintln(b, "Long-lived TCP flows alive after the event (sum over the repetitions)")
		fmt.Fprintln(b)
		fmt.Fprintln(b, "| event | N | flows the router moved to another director | mh + sloppy_tcp | rr (baseline) |")
		fmt.Fprintln(b, "| --- | --: | --: | --: | --: |")
		for _, ev := range []struct{ key, label string }{
			{"added", "a director added (started while the flows are open)"},
			{"drained", "a director drained (dsrd bgp drain)"},
			{"lost", "a director lost (link cut)"},
		} {
			mh := fs[ev.key+"_mh"]
			if len(mh) == 0 && len(fs[ev.key+"_rr"]) == 0 {
				continue
			}
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", ev.label, len(mh), fractions(fs[ev.key+"_moved"]),
				fractions(mh), fractions(fs[ev.key+"_rr"]))
		}
		fmt.Fprintln(b)
	}
	for _, name := range fib {
		v := res.Values[name]
		fmt.Fprintln(b, "Health to the router's FIB")
		fmt.Fprintln(b)
		fmt.Fprintln(b, "| change | N | min | median | max |")
		fmt.Fprintln(b, "| --- | --: | --: | --: | --: |")
		for _, ch := range []struct{ key, label string }{
			{"down_ms", "every real down (backends stopped) -> route withdrawn from the router's kernel"},
			{"up_ms", "one real back (listening) -> route back"},
		} {
			s := Summarize(v[ch.key])
			fmt.Fprintf(b, "| %s | %d | %s | %s | %s |\n", ch.label, s.N, secs(s.Min), secs(s.Median), secs(s.Max))
		}
		fmt.Fprintln(b)
	}
	for i, n := range res.Notes {
		fmt.Fprintf(b, "[%d] %s\n", i+1, n)
	}
	return b.Flush()
}
