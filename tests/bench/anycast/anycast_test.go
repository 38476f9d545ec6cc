package main

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParsePhases(t *testing.T) {
	ps, err := ParsePhases(DefaultPhases)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Phase{}
	for _, p := range ps {
		got[p.Name] = p
	}
	for name, want := range map[string]Phase{
		"cut-bfd200x5":  {Kind: "cut", Mode: "bgp", BFD: "200ms,5"},
		"cut-bfd300x3":  {Kind: "cut", Mode: "bgp", BFD: "300ms,3"},
		"cut-hold":      {Kind: "cut", Mode: "bgp", BFD: "off"},
		"cut-arp":       {Kind: "cut", Mode: "arp", BFD: DefaultBFD},
		"kill-bfd200x5": {Kind: "kill", Mode: "bgp", BFD: "200ms,5"},
		"kill-arp":      {Kind: "kill", Mode: "arp", BFD: DefaultBFD},
		"flows":         {Kind: "flows", Mode: "bgp", BFD: DefaultBFD},
		"fib":           {Kind: "fib", Mode: "bgp", BFD: DefaultBFD},
	} {
		want.Name = name
		if got[name] != want {
			t.Errorf("%s: %+v, want %+v", name, got[name], want)
		}
	}
	for _, bad := range []string{"", "cut", "cut-", "cut-bfd", "cut-bfd10x3", "cut-bfd300x0", "cut-bfd300x256",
		"drop-arp", "cut-arp cut-arp", "flows2", "cut-bfd300x3x1"} {
		if _, err := ParsePhases(bad); err == nil {
			t.Errorf("ParsePhases(%q): no error", bad)
		}
	}
}

func TestSchedule(t *testing.T) {
	ps, err := ParsePhases("cut-bfd300x3 cut-arp cut-hold flows kill-bfd300x3 fib cut-bfd200x5")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range Schedule(ps) {
		var names []string
		for _, p := range c.Phases {
			names = append(names, p.Name)
		}
		got = append(got, c.BFD+": "+strings.Join(names, " "))
	}
	want := []string{
		"300ms,3: cut-bfd300x3 kill-bfd300x3",
		"200ms,5: cut-arp flows fib cut-bfd200x5",
		"off: cut-hold",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Schedule:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The default run boots three clusters, the lab's own BFD first.
	ps, _ = ParsePhases(DefaultPhases)
	if s := Schedule(ps); len(s) != 3 || s[0].BFD != DefaultBFD || len(s[0].Phases) != 6 {
		t.Errorf("default schedule: %+v", s)
	}
}

func TestSummarize(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10}
	if s := Summarize(xs); s != (Summary{N: 6, Min: 1, Median: 3.5, Max: 10}) {
		t.Errorf("Summarize = %+v", s)
	}
	if xs[0] != 5 {
		t.Error("Summarize sorted its input")
	}
	if s := Summarize([]float64{7, 1, 3}); s.Median != 3 {
		t.Errorf("median of 3 = %v", s.Median)
	}
	if s := Summarize(nil); s.N != 0 || !math.IsNaN(s.Median) {
		t.Errorf("Summarize(nil) = %+v", s)
	}
}

func TestServedAgain(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	probe := func(start, end int, ok bool) Probe { return Probe{Start: at(start), End: at(end), OK: ok} }
	for _, tc := range []struct {
		name   string
		probes []Probe
		d      time.Duration
		failed int
		ok     bool
	}{
		{"no failure", []Probe{probe(-20, -18, true), probe(0, 2, true), probe(20, 22, true)}, 0, 0, true},
		{"a failure before the event is not counted", []Probe{probe(-300, -50, false), probe(20, 22, true)}, 0, 0, true},
		{"half fail until the route moves", []Probe{
			probe(0, 250, false), probe(20, 23, true), probe(40, 290, false), probe(60, 62, true),
			probe(900, 1150, false), probe(920, 923, true), probe(1160, 1163, true),
		}, 923 * time.Millisecond, 3, true},
		{"a probe started before the last failure does not count", []Probe{
			probe(10, 260, false), probe(5, 600, true), probe(300, 302, true),
		}, 302 * time.Millisecond, 1, true},
		{"never served again", []Probe{probe(0, 2, true), probe(100, 350, false)}, 0, 1, false},
	} {
		d, failed, ok := ServedAgain(tc.probes, t0)
		if d != tc.d || failed != tc.failed || ok != tc.ok {
			t.Errorf("%s: %v %d %v, want %v %d %v", tc.name, d, failed, ok, tc.d, tc.failed, tc.ok)
		}
	}
}

func TestAnsweredAgain(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	echo := func(sent, got int) Echo { return Echo{Sent: at(sent), Got: at(got)} }
	// A request in flight at the loss came back; the next one, sent
	// after it, waited for the route to move and a retransmission.
	echoes := []Echo{echo(-250, -248), echo(-48, 3), echo(200, 1400), echo(1400, 1402)}
	if d, ok := AnsweredAgain(echoes, t0, at(5000)); d != 1400*time.Millisecond || !ok {
		t.Errorf("AnsweredAgain = %v %v; want 1.4s true", d, ok)
	}
	// A request sent just before the loss and stuck: the answer to the
	// next one, sent at once when it came back.
	echoes = []Echo{echo(-250, -248), echo(-10, 1300), echo(1300, 1302)}
	if d, ok := AnsweredAgain(echoes, t0, at(5000)); d != 1302*time.Millisecond || !ok {
		t.Errorf("stuck request: %v %v; want 1.302s true", d, ok)
	}
	if d, ok := AnsweredAgain(echoes[:2], t0, at(5000)); d != 5*time.Second || ok {
		t.Errorf("unanswered: %v %v; want 5s false", d, ok)
	}
	if d, ok := AnsweredAgain(nil, t0, at(300)); d != 300*time.Millisecond || ok {
		t.Errorf("no echo at all: %v %v", d, ok)
	}
}

func TestRouterConf(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("..", "..", "vm", "bgp", "bird-router.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := RouterConf(string(base), "300ms,3")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\t\tmin rx interval 300 ms;\n", "\t\tmin tx interval 300 ms;\n", "\t\tmultiplier 3;\n", "\tbfd on;\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("300ms,3: no %q in\n%s", want, got)
		}
	}
	got, err = RouterConf(string(base), "off")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(got, "\tbfd off;\n") || strings.Contains(got, "bfd on;") {
		t.Errorf("off: BFD still on:\n%s", got)
	}
	if same, err := RouterConf(string(base), DefaultBFD); err != nil || same != string(base) {
		t.Errorf("the lab's own timers changed the file (%v)", err)
	}
	for _, bad := range []string{"300ms", "x,3", "300ms,0", "1500us,3"} {
		if _, err := RouterConf(string(base), bad); err == nil {
			t.Errorf("RouterConf(%q): no error", bad)
		}
	}
	if _, err := RouterConf("protocol device {}\n", "300ms,3"); err == nil {
		t.Error("a configuration without a BFD block: no error")
	}
}

func TestReport(t *testing.T) {
	in := strings.Join([]string{
		ResultLine("cut-bfd200x5", "served_ms", Ms(900)),
		ResultLine("cut-bfd200x5", "served_ms", Ms(1100)),
		ResultLine("cut-bfd200x5", "fib_ms", Ms(1000)),
		ResultLine("cut-bfd200x5", "alive", "12/12"),
		ResultLine("cut-arp", "served_ms", Ms(2000)),
		ResultLine("flows", "added_mh", "16/16"),
		ResultLine("flows", "added_rr", "10/16"),
		ResultLine("flows", "added_rr", "12/16"),
		ResultLine("flows", "added_moved", "7/16"),
		ResultLine("fib", "down_ms", Ms(3500)),
		"note a footnote",
		"some other line",
	}, "\n")
	res, err := ParseResults(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := Render(&b, res); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| bgp VIP, BFD 200ms x 5, link cut | 2 | 0.90 s / 1.00 s / 1.10 s | 0.50x | 1.00 s / 1.00 s / 1.00 s | - | 12/12 (100 % each time) |",
		"| arp VIP, L2 failover (Raft, GARP), link cut | 1 | 2.00 s / 2.00 s / 2.00 s | (baseline) |",
		"| a director added (started while the flows are open) | 1 | 7/16 (44 % each time) | 16/16 (100 % each time) | 22/32 (62-75 % per repetition) |",
		"| every real down (backends stopped) -> route withdrawn from the router's kernel | 1 | 3.50 s | 3.50 s | 3.50 s |",
		"[1] a footnote",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	for _, bad := range []string{"r a b", "r cut-arp served_ms x", "r flows added_mh 3/2", "r cut-arp served_ms -1"} {
		if _, err := ParseResults(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseResults(%q): no error", bad)
		}
	}
	if err := Render(&b, &Results{Order: []string{"bogus"}}); err == nil {
		t.Error("Render of an unknown phase: no error")
	}
}
