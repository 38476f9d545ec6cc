package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// summarize returns the median, the nearest-rank 95th percentile and the
// maximum of xs (sorted in place).
func summarize(xs []float64) (median, p95, maxv float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		median = xs[n/2]
	} else {
		median = (xs[n/2-1] + xs[n/2]) / 2
	}
	rank := int(math.Ceil(0.95*float64(n))) - 1
	return median, xs[max(rank, 0)], xs[n-1]
}

func statsCmd(_ []string) error {
	var xs []float64
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			x, err := strconv.ParseFloat(f, 64)
			if err != nil {
				return fmt.Errorf("not a number: %q", f)
			}
			xs = append(xs, x)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	m, p, x := summarize(xs)
	fmt.Printf("n=%d median=%.0f p95=%.0f max=%.0f\n", len(xs), m, p, x)
	return nil
}

// keyValues parses "k=v k=v ...".
func keyValues(s string) map[string]string {
	kv := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// phase is what one phase file of the benchmark says. Its lines:
//
//	setup TEXT          the row's label
//	metric outage|gap   outage: kill to first success; gap: the longest
//	                    time without a successful probe (crash variant)
//	event k=v...        one kill, as failover event printed it
//	monitor k=v...      the monitor's summary
//	elections N         leader elections seen in the daemons' logs
//	expected N          elections the kills explain (one each, plus the first)
//	note TEXT           a footnote
type phase struct {
	setup, metric         string
	values, takeovers     []float64
	releases, fails       []float64
	monitor               map[string]string
	elections, expected   int
	haveElections, killed int
	notes                 []string
}

func readPhase(path string) (*phase, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p := &phase{metric: "outage", monitor: map[string]string{}, elections: -1}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, _ := strings.Cut(sc.Text(), " ")
		switch key {
		case "setup":
			p.setup = rest
		case "metric":
			p.metric = rest
		case "event":
			kv := keyValues(rest)
			p.killed++
			if v, err := strconv.ParseFloat(kv[p.metric+"_ms"], 64); err == nil {
				p.values = append(p.values, v)
			}
			if v, err := strconv.ParseFloat(kv["new_owner_ms"], 64); err == nil {
				p.takeovers = append(p.takeovers, v)
			}
			if v, err := strconv.ParseFloat(kv["release_ms"], 64); err == nil {
				p.releases = append(p.releases, v)
			}
			if v, err := strconv.ParseFloat(kv["failed"], 64); err == nil {
				p.fails = append(p.fails, v)
			}
		case "monitor":
			p.monitor = keyValues(rest)
		case "elections":
			p.elections, _ = strconv.Atoi(rest)
		case "expected":
			p.expected, _ = strconv.Atoi(rest)
		case "note":
			p.notes = append(p.notes, rest)
		}
	}
	return p, sc.Err()
}

func sec(ms float64) string {
	if math.IsNaN(ms) {
		return "-"
	}
	return strconv.FormatFloat(ms/1000, 'f', 2, 64) + " s"
}

func reportCmd(args []string) error {
	fmt.Println("| setup | N | median | p95 | max | VIP on the new director (median) | split-brain events | unexpected VIP moves | elections (expected) |")
	fmt.Println("| --- | --: | --: | --: | --: | --: | --: | --: | --: |")
	var (
		notes  []string
		phases []*phase
	)
	for _, path := range args {
		p, err := readPhase(path)
		if err != nil {
			return err
		}
		phases = append(phases, p)
		m, p95, mx := summarize(p.values)
		tm, _, _ := summarize(p.takeovers)
		sb := p.monitor["split_brain"]
		if sb == "" {
			sb = "?"
		}
		moves := "?"
		if c, err := strconv.Atoi(p.monitor["vip_changes"]); err == nil {
			// The first acquisition, then two changes per kill: the VIP
			// leaves (or is joined by) and is taken over (or left alone).
			moves = strconv.Itoa((c - 1 - 2*p.killed) / 2)
		}
		el := "-"
		if p.elections >= 0 {
			el = fmt.Sprintf("%d (%d)", p.elections, p.expected)
		}
		label := p.setup
		for _, n := range p.notes {
			notes = append(notes, n)
			label += fmt.Sprintf(" [%d]", len(notes))
		}
		if len(p.values) < p.killed {
			label += fmt.Sprintf(" (%d of %d kills measured)", len(p.values), p.killed)
		}
		fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s |\n",
			label, len(p.values), sec(m), sec(p95), sec(mx), sec(tm), sb, moves, el)
	}
	if len(notes) > 0 {
		fmt.Println()
		for i, n := range notes {
			fmt.Printf("[%d] %s\n", i+1, n)
		}
	}
	fmt.Println()
	fmt.Println("| setup | each kill, sorted | release command (median) | failed probes per kill (median) |")
	fmt.Println("| --- | --- | --: | --: |")
	for _, p := range phases {
		sort.Float64s(p.values)
		each := make([]string, len(p.values))
		for i, v := range p.values {
			each[i] = strconv.FormatFloat(v/1000, 'f', 2, 64)
		}
		rm, _, _ := summarize(p.releases)
		fm, _, _ := summarize(p.fails)
		failed := "-"
		if !math.IsNaN(fm) {
			failed = strconv.FormatFloat(fm, 'f', 0, 64)
		}
		release := "-"
		if !math.IsNaN(rm) {
			release = strconv.FormatFloat(rm, 'f', 0, 64) + " ms"
		}
		fmt.Printf("| %s | %s | %s | %s |\n", p.setup, strings.Join(each, " "), release, failed)
	}
	return nil
}
