package main

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// DefaultPhases is what a run measures unless DSRD_BENCH_PHASES says
// otherwise: a director lost (its link cut) with BFD at the lab's timers,
// at dsrd's default timers and without BFD, against the L2 failover of an
// arp VIP; a daemon killed without cleanup, bgp and arp; the flows'
// survival of a director added, drained and lost; the route's reaction to
// the reals' health.
const DefaultPhases = "cut-bfd200x5 cut-bfd300x3 cut-hold cut-arp kill-bfd200x5 kill-arp flows fib"

// DefaultBFD is the lab's BFD (tests/vm/cluster's default): the phases
// that do not choose one run with it.
const DefaultBFD = "200ms,5"

// Phase is one measurement of the benchmark.
type Phase struct {
	// Name as given (cut-bfd200x5, kill-arp, flows, fib).
	Name string
	// Kind: "cut" (the director's link cut: its host lost), "kill" (its
	// daemon SIGKILLed, no ExecStopPost), "flows" or "fib".
	Kind string
	// Mode of the VIP a cut or kill is measured on: "bgp" or "arp".
	Mode string
	// BFD is the directors' and the router's BFD in the phase's cluster:
	// "INTERVAL,MULT" (tests/vm/cluster's DSRD_LAB_BGP_BFD) or "off".
	BFD string
}

var bfdName = regexp.MustCompile(`^bfd([0-9]+)x([0-9]+)$`)

// ParsePhase reads one phase name: cut-X or kill-X with X one of arp,
// hold (no BFD: the BGP hold time) or bfdMSxMULT (BFD every MS
// milliseconds, MULT missed packets), or flows, or fib.
func ParsePhase(name string) (Phase, error) {
	p := Phase{Name: name, BFD: DefaultBFD}
	switch name {
	case "flows", "fib":
		p.Kind, p.Mode = name, "bgp"
		return p, nil
	}
	kind, what, ok := strings.Cut(name, "-")
	if !ok || (kind != "cut" && kind != "kill") {
		return Phase{}, fmt.Errorf("phase %q: want cut-X, kill-X, flows or fib", name)
	}
	p.Kind, p.Mode = kind, "bgp"
	switch {
	case what == "arp":
		p.Mode = "arp"
	case what == "hold":
		p.BFD = "off"
	case bfdName.MatchString(what):
		m := bfdName.FindStringSubmatch(what)
		ms, _ := strconv.Atoi(m[1])
		mult, _ := strconv.Atoi(m[2])
		// dsrd's bounds (docs/config.md): 50ms to 10s, 1 to 255.
		if ms < 50 || ms > 10000 || mult < 1 || mult > 255 {
			return Phase{}, fmt.Errorf("phase %q: BFD interval 50 to 10000 ms, multiplier 1 to 255", name)
		}
		p.BFD = fmt.Sprintf("%dms,%d", ms, mult)
	default:
		return Phase{}, fmt.Errorf("phase %q: want arp, hold or bfdMSxMULT after %s-", name, kind)
	}
	return p, nil
}

// ParsePhases reads a space-separated list of phase names; a name twice
// is an error.
func ParsePhases(s string) ([]Phase, error) {
	var out []Phase
	seen := map[string]bool{}
	for _, f := range strings.Fields(s) {
		p, err := ParsePhase(f)
		if err != nil {
			return nil, err
		}
		if seen[f] {
			return nil, fmt.Errorf("phase %q given twice", f)
		}
		seen[f] = true
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no phase in %q", s)
	}
	return out, nil
}

// Cluster is one lab cluster of the run: its BFD setting and the phases
// measured on it, in order.
type Cluster struct {
	BFD    string
	Phases []Phase
}

// Schedule groups the phases by the cluster they need (their BFD), so that
// each cluster starts once: the clusters in the order their first phase
// was given, the phases in the order given.
func Schedule(phases []Phase) []Cluster {
	var out []Cluster
	index := map[string]int{}
	for _, p := range phases {
		i, ok := index[p.BFD]
		if !ok {
			i = len(out)
			index[p.BFD] = i
			out = append(out, Cluster{BFD: p.BFD})
		}
		out[i].Phases = append(out[i].Phases, p)
	}
	return out
}

// Label is the phase's row label in the report.
func (p Phase) Label() string {
	how := map[string]string{"cut": "link cut", "kill": "SIGKILL, no ExecStopPost"}[p.Kind]
	switch {
	case p.Kind == "flows":
		return "flows through a director added, drained, lost"
	case p.Kind == "fib":
		return "reals' health to the router's FIB"
	case p.Mode == "arp":
		return "arp VIP, L2 failover (Raft, GARP), " + how
	case p.BFD == "off":
		return "bgp VIP, no BFD (hold 9 s, keepalive 3 s), " + how
	default:
		iv, mult, _ := strings.Cut(p.BFD, ",")
		return fmt.Sprintf("bgp VIP, BFD %s x %s, %s", iv, mult, how)
	}
}
