package healthcheck

// State is the health of a real server as decided by rise and fall.
type State uint8

// The states. The zero value is unknown: no check has decided yet and the
// check's initial state was not given.
const (
	StateUnknown State = iota
	StateDown
	StateUp
)

// String returns "unknown", "down" or "up".
func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateUp:
		return "up"
	}
	return "unknown"
}

// MarshalText encodes the state as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// RiseFall turns a sequence of check results into a state with hysteresis:
// from down, Rise consecutive successes make it up; from up, Fall
// consecutive failures make it down. A result of the other kind resets the
// count. The zero value is not usable: use NewRiseFall.
type RiseFall struct {
	rise, fall int
	state      State
	// successes and failures count consecutive results; at most one of
	// them is non-zero.
	successes, failures int
}

// NewRiseFall returns a machine in state initial (StateDown unless
// StateUp). Rise and fall below 1 count as 1.
func NewRiseFall(rise, fall int, initial State) RiseFall {
	if initial != StateUp {
		initial = StateDown
	}
	return RiseFall{rise: max(rise, 1), fall: max(fall, 1), state: initial}
}

// Observe records one result and reports whether the state changed.
func (r *RiseFall) Observe(up bool) (changed bool) {
	if up {
		r.failures = 0
		r.successes++
		if r.state != StateUp && r.successes >= r.rise {
			r.state = StateUp
			return true
		}
		return false
	}
	r.successes = 0
	r.failures++
	if r.state != StateDown && r.failures >= r.fall {
		r.state = StateDown
		return true
	}
	return false
}

// State returns the current state.
func (r *RiseFall) State() State { return r.state }

// Counts returns the consecutive successes and failures so far.
func (r *RiseFall) Counts() (successes, failures int) { return r.successes, r.failures }
