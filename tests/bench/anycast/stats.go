package main

import (
	"math"
	"slices"
	"time"
)

// Summary is the minimum, median and maximum of N values.
type Summary struct {
	N                int
	Min, Median, Max float64
}

// Summarize returns xs' summary (NaN for none); xs is not modified.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{Min: math.NaN(), Median: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{N: n, Min: s[0], Median: med, Max: s[n-1]}
}

// Probe is one new connection the client tried: a TCP handshake started
// at Start, done (or given up) at End.
type Probe struct {
	Start, End time.Time
	OK         bool
}

// ServedAgain is how long after event the client's new connections were
// all served again: the end of the first successful probe started after
// the last probe that failed (among those that ended after event), less
// event. With no failure it is 0. ok is false when no probe succeeded
// after the last failure (the client was not served again in the
// record). failed counts the failed probes that ended after event.
func ServedAgain(probes []Probe, event time.Time) (d time.Duration, failed int, ok bool) {
	var lastFail time.Time
	for _, p := range probes {
		if !p.OK && p.End.After(event) {
			failed++
			if p.Start.After(lastFail) {
				lastFail = p.Start
			}
		}
	}
	if failed == 0 {
		return 0, 0, true
	}
	var first time.Time
	for _, p := range probes {
		if p.OK && p.Start.After(lastFail) && (first.IsZero() || p.End.Before(first)) {
			first = p.End
		}
	}
	if first.IsZero() {
		return 0, failed, false
	}
	return first.Sub(event), failed, true
}

// Echo is one request of an established flow: sent, and answered at Got.
type Echo struct{ Sent, Got time.Time }

// AnsweredAgain is how long after event an established flow was answered
// again: the answer to its first request sent at or after event (echoes
// in time order), less event. A request in flight at event may have
// passed before the loss, so only a request sent after it proves the
// flow's path works again; a flow sends its next request at once when
// the last one was answered late, so a flow stuck across the loss is
// timed to within a round trip of its recovery. A flow with no such
// answer was not answered again until end, and recovered is false.
func AnsweredAgain(echoes []Echo, event, end time.Time) (d time.Duration, recovered bool) {
	for _, e := range echoes {
		if !e.Sent.Before(event) {
			return e.Got.Sub(event), true
		}
	}
	return end.Sub(event), false
}

// Fraction is Alive of Total flows.
type Fraction struct{ Alive, Total int }

// Ratio is Alive/Total, NaN for no flow.
func (f Fraction) Ratio() float64 {
	if f.Total == 0 {
		return math.NaN()
	}
	return float64(f.Alive) / float64(f.Total)
}
