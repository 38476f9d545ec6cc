package raft

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dsrd/dsrd/raft/pki"
)

// Drains of directors' BGP announcements. A drained director announces
// its bgp VIPs as leaving for its drain_delay, then withdraws them, until
// it is undrained. The cluster sequences drains: the FSM refuses to drain
// a second director while one is drained, unless the command says Force.
// The rule is applied by every node alike (it depends on the entry and the
// state only), so two drains asked at once through different directors
// cannot both pass: the log orders them and the second is refused.

// Drain is the cluster's record of a drained director.
type Drain struct {
	// Node is the drained member's ID.
	Node string `json:"node"`
	// Since is the leader's clock when the drain was committed (shown
	// only: nothing is decided on it).
	Since time.Time `json:"since"`
	// By names the member that asked for it.
	By string `json:"by,omitempty"`
	// Forced: the drain was asked with force (another director was
	// drained already, or a VIP was left with no other announcer).
	Forced bool `json:"forced,omitempty"`
}

// SetDrainCommand drains or undrains one director (CommandSetDrain).
type SetDrainCommand struct {
	Node  string    `json:"node"`
	Drain bool      `json:"drain"`
	Force bool      `json:"force,omitempty"`
	By    string    `json:"by,omitempty"`
	At    time.Time `json:"at"`
}

// SetDrainResult is what applying a SetDrainCommand returns.
type SetDrainResult struct {
	// Changed is false when the director was already in the requested
	// state.
	Changed bool
}

// DrainBusyError refuses a drain while another director is drained: the
// cluster drains one director at a time.
type DrainBusyError struct {
	// Drained is the director drained already.
	Drained Drain
}

func (e *DrainBusyError) Error() string {
	return fmt.Sprintf("%s is drained (since %s): the cluster drains one director at a time; undrain %s first, or force",
		e.Drained.Node, e.Drained.Since.UTC().Format(time.RFC3339), e.Drained.Node)
}

// ErrDrainBusy is matched (errors.Is) by a *DrainBusyError.
var ErrDrainBusy = errors.New("another director is drained")

// Is makes errors.Is(err, ErrDrainBusy) true.
func (e *DrainBusyError) Is(target error) bool { return target == ErrDrainBusy }

// MaxDrains bounds the drain records a state may hold: one per member,
// and a cluster has far fewer members.
const MaxDrains = 64

// checkDrainCommand checks a SetDrainCommand as Apply needs it.
func checkDrainCommand(cmd *SetDrainCommand) error {
	if err := pki.CheckNodeID(cmd.Node); err != nil {
		return fmt.Errorf("node %q %w", cmd.Node, err)
	}
	if cmd.By != "" {
		if err := pki.CheckNodeID(cmd.By); err != nil {
			return fmt.Errorf("by %q %w", cmd.By, err)
		}
	}
	return nil
}

func (f *FSM) applySetDrain(index uint64, body []byte) any {
	var cmd SetDrainCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		return f.reject(index, fmt.Errorf("decode %s command at log index %d: %w", CommandSetDrain, index, err))
	}
	if err := checkDrainCommand(&cmd); err != nil {
		return f.reject(index, fmt.Errorf("%s command at log index %d: %w", CommandSetDrain, index, err))
	}
	_, had := f.drains[cmd.Node]
	if !cmd.Drain {
		if !had {
			return SetDrainResult{}
		}
		delete(f.drains, cmd.Node)
		f.index = index
		f.notifyLocked()
		f.log.Info("director undrained", "node", cmd.Node, "by", cmd.By, "index", index)
		return SetDrainResult{Changed: true}
	}
	if had {
		return SetDrainResult{}
	}
	if !cmd.Force {
		if other, ok := f.firstDrainLocked(); ok {
			return &DrainBusyError{Drained: other}
		}
	}
	if len(f.drains) >= MaxDrains {
		return fmt.Errorf("%d directors are drained already, the most a cluster records", len(f.drains))
	}
	f.drains[cmd.Node] = Drain{Node: cmd.Node, Since: cmd.At, By: cmd.By, Forced: cmd.Force}
	f.index = index
	f.notifyLocked()
	f.log.Info("director drained", "node", cmd.Node, "by", cmd.By, "forced", cmd.Force, "index", index)
	return SetDrainResult{Changed: true}
}

// firstDrainLocked returns the drained director with the smallest ID.
func (f *FSM) firstDrainLocked() (Drain, bool) {
	if len(f.drains) == 0 {
		return Drain{}, false
	}
	return sortedDrains(f.drains)[0], true
}

// Drains returns a copy of the cluster's drain records, by node ID.
func (f *FSM) Drains() map[string]Drain {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return cloneDrains(f.drains)
}

func cloneDrains(m map[string]Drain) map[string]Drain {
	out := make(map[string]Drain, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sortedDrains returns the records ordered by node ID, for snapshots.
func sortedDrains(m map[string]Drain) []Drain {
	out := make([]Drain, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Drain) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// restoreDrains checks a snapshot's drain records.
func restoreDrains(entries []Drain) (map[string]Drain, error) {
	if len(entries) > MaxDrains {
		return nil, fmt.Errorf("snapshot holds %d drain records, more than %d", len(entries), MaxDrains)
	}
	out := make(map[string]Drain, len(entries))
	for _, d := range entries {
		if err := checkDrainCommand(&SetDrainCommand{Node: d.Node, By: d.By}); err != nil {
			return nil, fmt.Errorf("snapshot drain record: %w", err)
		}
		if _, dup := out[d.Node]; dup {
			return nil, fmt.Errorf("snapshot drain record of %s listed twice", d.Node)
		}
		out[d.Node] = d
	}
	return out, nil
}

// SetDrain drains or undrains director node through Raft; only the
// leader accepts it, and only once every member can apply it (command
// version 3). A drain while another director is drained fails with a
// *DrainBusyError unless cmd.Force. At is set to the leader's clock.
func (n *Node) SetDrain(ctx context.Context, cmd SetDrainCommand) (SetDrainResult, error) {
	if err := checkDrainCommand(&cmd); err != nil {
		return SetDrainResult{}, fmt.Errorf("set drain: %w", err)
	}
	cmd.At = time.Now().UTC().Truncate(time.Millisecond)
	resp, err := n.apply(ctx, CommandSetDrain, cmd)
	if err != nil {
		return SetDrainResult{}, fmt.Errorf("set drain of %s: %w", cmd.Node, err)
	}
	res, ok := resp.(SetDrainResult)
	if !ok {
		return SetDrainResult{}, fmt.Errorf("set drain of %s: unexpected fsm response %T", cmd.Node, resp)
	}
	return res, nil
}
