package raft

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// The cluster's health verdicts. Every director checks every real; the
// leader aggregates their views into one verdict per real and replicates
// it, so every director programs the same weights (and, for mh, the same
// table) whatever its own path to a real looks like. The aggregation rule
// lives with the directors (internal/director); the FSM only stores the
// verdicts, for reals of the current configuration.

// Health is the cluster's verdict on one real.
type Health string

// The verdicts.
const (
	HealthUp   Health = "up"
	HealthDown Health = "down"
)

// HealthVerdict is the cluster's verdict on one real, with the reason of
// the views that made it (a realserver agent's "draining", a check's
// failure) for dsrd status.
type HealthVerdict struct {
	Ref    RealRef `json:"ref"`
	State  Health  `json:"state"`
	Reason string  `json:"reason,omitempty"`
}

// MaxHealthReason bounds a verdict's reason, which is only shown.
const MaxHealthReason = 256

// SetHealthCommand changes verdicts (CommandSetHealth). A verdict with an
// empty State forgets the real's verdict (directors then use their own
// view). Verdicts for reals the configuration does not have are skipped:
// the configuration may have changed between the leader's decision and
// the entry's commit.
type SetHealthCommand struct {
	Verdicts []HealthVerdict `json:"verdicts"`
}

// SetHealthResult is what applying a SetHealthCommand returns.
type SetHealthResult struct {
	// Changed counts the verdicts that changed the state.
	Changed int
}

// checkVerdict checks one verdict as Apply needs it.
func checkVerdict(v HealthVerdict) error {
	switch v.State {
	case HealthUp, HealthDown, "":
	default:
		return fmt.Errorf("verdict of %s: unknown state %q (want up, down or empty)", v.Ref, v.State)
	}
	if len(v.Reason) > MaxHealthReason || !utf8.ValidString(v.Reason) {
		return fmt.Errorf("verdict of %s: reason of %d bytes is not valid UTF-8 of at most %d", v.Ref, len(v.Reason), MaxHealthReason)
	}
	return nil
}

func (f *FSM) applySetHealth(index uint64, body []byte) any {
	var cmd SetHealthCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		return f.reject(index, fmt.Errorf("decode %s command at log index %d: %w", CommandSetHealth, index, err))
	}
	for _, v := range cmd.Verdicts {
		if err := checkVerdict(v); err != nil {
			return f.reject(index, fmt.Errorf("%s command at log index %d: %w", CommandSetHealth, index, err))
		}
	}
	changed := 0
	for _, v := range cmd.Verdicts {
		if !hasReal(&f.cfg, v.Ref) {
			continue
		}
		old, had := f.health[v.Ref]
		switch {
		case v.State == "" && had:
			delete(f.health, v.Ref)
		case v.State == "" || (had && old == v):
			continue
		default:
			f.health[v.Ref] = v
		}
		changed++
	}
	if changed > 0 {
		f.index = index
		f.notifyLocked()
	}
	return SetHealthResult{Changed: changed}
}

// Health returns a copy of the cluster's verdicts.
func (f *FSM) Health() map[RealRef]HealthVerdict {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return cloneHealth(f.health)
}

func cloneHealth(m map[RealRef]HealthVerdict) map[RealRef]HealthVerdict {
	out := make(map[RealRef]HealthVerdict, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// pruneHealthLocked forgets the verdicts of reals cfg does not have.
func (f *FSM) pruneHealthLocked(cfg *ClusterConfig) {
	for ref := range f.health {
		if !hasReal(cfg, ref) {
			delete(f.health, ref)
		}
	}
}

// sortedVerdicts returns the verdicts in a stable order, for snapshots.
func sortedVerdicts(m map[RealRef]HealthVerdict) []HealthVerdict {
	out := make([]HealthVerdict, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b HealthVerdict) int {
		if c := strings.Compare(a.Ref.Service.String(), b.Ref.Service.String()); c != 0 {
			return c
		}
		return a.Ref.Address.Compare(b.Ref.Address)
	})
	return out
}

// restoreHealth checks a snapshot's verdicts against its configuration.
func restoreHealth(entries []HealthVerdict, cfg *ClusterConfig) (map[RealRef]HealthVerdict, error) {
	out := make(map[RealRef]HealthVerdict, len(entries))
	for _, v := range entries {
		if err := checkVerdict(v); err != nil || v.State == "" {
			return nil, fmt.Errorf("snapshot health verdict of %s: %w", v.Ref, errOr(err, "empty state"))
		}
		if !hasReal(cfg, v.Ref) {
			return nil, fmt.Errorf("snapshot health verdict of %s: no such real in the snapshot's configuration", v.Ref)
		}
		out[v.Ref] = v
	}
	return out, nil
}

func errOr(err error, msg string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s", msg)
}
