package chaos

import (
	"fmt"
	"strings"
	"time"
)

// ResourceSample is every daemon's footprint at one moment of a run; a
// daemon that was not running (or did not answer) is absent.
type ResourceSample struct {
	At      time.Duration
	Daemons map[string]Resources
}

// ResourceTables renders samples as Markdown tables, one per measure
// (goroutines, file descriptors, RSS), a row per daemon and a column per
// sample, at most cols columns picked evenly (the first and the last
// always). A cell marked * is a process other than the one of the
// previous column (the daemon was restarted in between); - is a daemon
// that was not read.
func ResourceTables(samples []ResourceSample, cols int) string {
	if len(samples) == 0 || cols < 2 {
		return ""
	}
	picked := pickEvenly(len(samples), cols)
	names := map[string]bool{}
	for _, s := range samples {
		for d := range s.Daemons {
			names[d] = true
		}
	}
	daemons := sortedKeys(names)
	var b strings.Builder
	for _, m := range []struct {
		title string
		cell  func(Resources) string
	}{
		{"goroutines (OS threads where a daemon exports no goroutine count)", func(r Resources) string {
			if r.Goroutines < 0 {
				return fmt.Sprintf("%d thr", r.Threads)
			}
			return fmt.Sprint(r.Goroutines)
		}},
		{"open file descriptors", func(r Resources) string { return fmt.Sprint(r.FDs) }},
		{"RSS (MiB)", func(r Resources) string { return fmt.Sprintf("%.1f", float64(r.RSS)/(1<<20)) }},
	} {
		fmt.Fprintf(&b, "%s:\n\n| daemon |", m.title)
		for _, i := range picked {
			fmt.Fprintf(&b, " +%s |", samples[i].At.Round(time.Minute/6))
		}
		b.WriteString("\n| --- |" + strings.Repeat(" --: |", len(picked)) + "\n")
		for _, d := range daemons {
			fmt.Fprintf(&b, "| %s |", d)
			prev := 0
			for _, i := range picked {
				r, ok := samples[i].Daemons[d]
				if !ok {
					b.WriteString(" - |")
					continue
				}
				mark := ""
				if prev != 0 && r.PID != prev {
					mark = "*"
				}
				prev = r.PID
				fmt.Fprintf(&b, " %s%s |", m.cell(r), mark)
			}
			b.WriteString("\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// pickEvenly picks at most k of n indices, evenly spaced, the first and
// the last included.
func pickEvenly(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	out := make([]int, 0, k)
	for j := range k {
		out = append(out, j*(n-1)/(k-1))
	}
	return out
}

// Report markers: a soak run replaces what lies between them in
// docs/reliability.md.
const (
	ReportBegin = "<!-- soak report: begin (written by make soak) -->"
	ReportEnd   = "<!-- soak report: end -->"
)

// SpliceReport returns doc with the text between ReportBegin and
// ReportEnd replaced by report.
func SpliceReport(doc, report string) (string, error) {
	i := strings.Index(doc, ReportBegin)
	j := strings.Index(doc, ReportEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("chaos: the document has no %q ... %q section", ReportBegin, ReportEnd)
	}
	return doc[:i+len(ReportBegin)] + "\n" + strings.TrimSpace(report) + "\n" + doc[j:], nil
}
