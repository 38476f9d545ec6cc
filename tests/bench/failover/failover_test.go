package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParseEpoch(t *testing.T) {
	for in, want := range map[string]int64{
		"1795367884.624067":   1795367884624067000,
		"1795367884.5":        1795367884500000000,
		"1795367884624067123": 1795367884624067123,
		" 12.000001\n":        12000001000,
	} {
		got, err := parseEpoch(in)
		if err != nil || got != want {
			t.Errorf("parseEpoch(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x.1", "1.x"} {
		if _, err := parseEpoch(in); err == nil {
			t.Errorf("parseEpoch(%q): no error", in)
		}
	}
}

func TestSummarize(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 6, 7, 9, 8}
	m, p, x := summarize(xs)
	// Nearest rank: the 95th percentile of 10 values is the 10th.
	if m != 5.5 || p != 10 || x != 10 {
		t.Errorf("summarize = %v %v %v; want 5.5 10 10", m, p, x)
	}
	xs = make([]float64, 20)
	for i := range xs {
		xs[i] = float64(20 - i)
	}
	if _, p, _ := summarize(xs); p != 19 {
		t.Errorf("p95 of 1..20 = %v; want 19", p)
	}
}

func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	tl := &tail{path: path}
	if l, err := tl.lines(); err != nil || len(l) != 0 {
		t.Fatalf("missing file: %v %v", l, err)
	}
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	write("a\nb")
	if l, _ := tl.lines(); len(l) != 1 || l[0] != "a" {
		t.Fatalf("got %q; want [a]", l)
	}
	write("c\nd\n")
	if l, _ := tl.lines(); len(l) != 2 || l[0] != "bc" || l[1] != "d" {
		t.Fatalf("got %q; want [bc d]", l)
	}
}

func TestKeyValues(t *testing.T) {
	kv := keyValues("outage_ms=12.5 new_owner=dir2 junk")
	if kv["outage_ms"] != "12.5" || kv["new_owner"] != "dir2" || len(kv) != 2 {
		t.Errorf("keyValues = %v", kv)
	}
}
