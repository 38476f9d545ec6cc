package director

import (
	"slices"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/raft"
)

// The cluster's health verdicts: every director checks every real and
// sends its own view to the leader (POST /peer/v1/health-view); the
// leader aggregates the views into one verdict per real and replicates it
// (raft.SetHealthCommand); every director then programs IPVS from the
// verdicts, so all of them hold the same weights and, for mh, the same
// table. The rule (aggregateVerdicts):
//
//   - only fresh views vote (received within viewFresh; the leader's own
//     view is always fresh), and only for reals whose check has reached a
//     verdict on that director;
//   - a strict majority of the votes decides: down when more than half
//     see the real down, up when more than half see it up;
//   - a tie is broken by the leader's own view (in ARP mode the leader is
//     the director that forwards: its own path is the one that matters),
//     and with no own view the verdict stays as it is.
//
// So one director's broken path to a backend does not take the backend
// out everywhere (it is outvoted, or, in a pair, outvoted only if it
// leads); a backend every director sees down is down everywhere within
// one check interval plus a Raft commit. A director whose own view says
// down where the cluster says up withdraws its bgp announcements for the
// VIPs it concerns (anycast.go): it would send flows to a real it cannot
// reach.

// Timing of health views.
const (
	// viewInterval is how often a director sends its whole view to the
	// leader even when nothing changed: what keeps it fresh.
	viewInterval = 2 * time.Second
	// viewFresh is how long a view counts: three intervals, so one lost
	// or late report does not make a director's vote disappear.
	viewFresh = 3 * viewInterval
)

// nodeView is the latest view the leader has from one director.
type nodeView struct {
	At    time.Time
	Reals map[raft.RealRef]api.RealView
}

// aggregateVerdicts returns the verdicts that change: for each real of
// refs, the verdict the views give by the rule above, where it differs
// from current. self is the leader's node id; views are keyed by node id.
func aggregateVerdicts(refs []raft.RealRef, views map[string]nodeView, self string, now time.Time, current map[raft.RealRef]raft.HealthVerdict) []raft.HealthVerdict {
	nodes := make([]string, 0, len(views))
	for id, v := range views {
		if id == self || now.Sub(v.At) < viewFresh {
			nodes = append(nodes, id)
		}
	}
	slices.Sort(nodes) // the reason of a verdict is the first voter's: stable
	var changes []raft.HealthVerdict
	for _, ref := range refs {
		up, down := 0, 0
		var upReason, downReason string
		var upSeen, downSeen bool
		for _, id := range nodes {
			rv, ok := views[id].Reals[ref]
			if !ok {
				continue
			}
			switch rv.State {
			case raft.HealthUp:
				up++
				if !upSeen || id == self {
					upReason, upSeen = rv.Reason, true
				}
			case raft.HealthDown:
				down++
				if !downSeen || id == self {
					downReason, downSeen = rv.Reason, true
				}
			}
		}
		if up+down == 0 {
			continue
		}
		var state raft.Health
		switch {
		case 2*down > up+down:
			state = raft.HealthDown
		case 2*up > up+down:
			state = raft.HealthUp
		default:
			own, ok := views[self].Reals[ref]
			if !ok {
				continue
			}
			state = own.State
		}
		v := raft.HealthVerdict{Ref: ref, State: state, Reason: upReason}
		if state == raft.HealthDown {
			v.Reason = downReason
		}
		if cur, ok := current[ref]; ok && cur == v {
			continue
		}
		changes = append(changes, v)
	}
	return changes
}
