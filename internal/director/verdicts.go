package director

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/raft"
)

// verdictCluster is what the verdict keeper needs of the Raft node.
type verdictCluster interface {
	ID() string
	IsLeader() bool
	LeaderAddress() string
	State() raft.State
	SetHealth(ctx context.Context, verdicts []raft.HealthVerdict) (raft.SetHealthResult, error)
}

// verdictApplyTimeout bounds one replication of verdict changes.
const verdictApplyTimeout = 5 * time.Second

// verdicts is a director's part in the cluster's health verdicts (see
// verdict.go for the rule): it sends this director's own view to the
// leader, and on the leader it keeps every director's latest view and
// replicates the verdicts that change. Its lock guards own and views;
// run is its only goroutine.
type verdicts struct {
	c    verdictCluster
	send func(ctx context.Context, leaderAddress string, req api.HealthViewRequest) error
	log  *slog.Logger
	now  func() time.Time

	wake chan struct{} // capacity 1: a pending "look again"

	mu      sync.Mutex
	own     api.HealthViewRequest // this director's view, as last set
	ownSent bool                  // own was sent (or aggregated) since it changed
	views   map[string]nodeView   // the latest view of each director (leader)
	applied uint64                // raft state index of the last verdicts applied
}

func newVerdicts(c verdictCluster, send func(context.Context, string, api.HealthViewRequest) error, log *slog.Logger) *verdicts {
	return &verdicts{c: c, send: send, log: log, now: time.Now, wake: make(chan struct{}, 1), views: map[string]nodeView{}}
}

func (v *verdicts) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// setOwn records this director's own view (reals sorted by ref, as
// ownView builds them); a change is sent at once.
func (v *verdicts) setOwn(generation uint64, reals []api.RealView) {
	v.mu.Lock()
	changed := v.own.Generation != generation || !slices.Equal(v.own.Reals, reals)
	if changed {
		v.own = api.HealthViewRequest{Node: v.c.ID(), Generation: generation, Reals: reals}
		v.ownSent = false
	}
	v.mu.Unlock()
	if changed {
		v.poke()
	}
}

// received takes another director's view; only the leader aggregates.
func (v *verdicts) received(from string, req api.HealthViewRequest) error {
	if !v.c.IsLeader() {
		return &raft.NotLeaderError{LeaderAddress: v.c.LeaderAddress()}
	}
	reals := make(map[raft.RealRef]api.RealView, len(req.Reals))
	for _, r := range req.Reals {
		reals[r.Ref] = r
	}
	v.mu.Lock()
	prev, had := v.views[from]
	v.views[from] = nodeView{At: v.now(), Reals: reals}
	v.mu.Unlock()
	if !had || !maps.Equal(prev.Reals, reals) {
		v.poke()
	}
	return nil
}

// run sends or aggregates whenever the own view changes, a view arrives,
// and every viewInterval, until ctx ends.
func (v *verdicts) run(ctx context.Context) {
	t := time.NewTicker(viewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.wake:
			v.step(ctx, false)
		case <-t.C:
			v.step(ctx, true)
		}
	}
}

// step aggregates on the leader, or sends the own view to the leader when
// it changed (or always, on the periodic tick, to keep it fresh).
func (v *verdicts) step(ctx context.Context, tick bool) {
	if v.c.IsLeader() {
		v.aggregate(ctx)
		return
	}
	v.mu.Lock()
	req, sent := v.own, v.ownSent
	v.views = map[string]nodeView{} // a follower keeps no views: a new leader starts afresh
	v.mu.Unlock()
	if (sent && !tick) || req.Node == "" {
		return
	}
	leader := v.c.LeaderAddress()
	if leader == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, viewInterval)
	defer cancel()
	if err := v.send(sctx, leader, req); err != nil {
		if ctx.Err() == nil && !errors.Is(err, raft.ErrNotLeader) {
			v.log.Debug("health view not delivered to the leader", "leader", leader, "error", err)
		}
		return
	}
	v.mu.Lock()
	if v.own.Generation == req.Generation && slices.Equal(v.own.Reals, req.Reals) {
		v.ownSent = true
	}
	v.mu.Unlock()
}

// aggregate replicates the verdicts that the current views change.
func (v *verdicts) aggregate(ctx context.Context) {
	st := v.c.State()
	v.mu.Lock()
	own := v.own
	views := make(map[string]nodeView, len(v.views)+1)
	for id, nv := range v.views {
		if id != own.Node {
			views[id] = nv
		}
	}
	ownReals := make(map[raft.RealRef]api.RealView, len(own.Reals))
	for _, r := range own.Reals {
		ownReals[r.Ref] = r
	}
	views[v.c.ID()] = nodeView{At: v.now(), Reals: ownReals}
	v.ownSent = true
	v.mu.Unlock()

	changes := aggregateVerdicts(configRefs(st.Config), views, v.c.ID(), v.now(), st.Health)
	if len(changes) == 0 {
		return
	}
	actx, cancel := context.WithTimeout(ctx, verdictApplyTimeout)
	defer cancel()
	_, err := v.c.SetHealth(actx, changes)
	switch {
	case errors.Is(err, raft.ErrMemberTooOld):
		// A member runs a dsrd without verdicts: every director keeps
		// following its own checks until the upgrade is complete.
		v.log.Debug("health verdicts not replicated: a member is too old", "error", err)
	case err != nil:
		if ctx.Err() == nil {
			v.log.Warn("health verdicts not replicated", "changes", len(changes), "error", err)
		}
	default:
		for _, c := range changes {
			v.log.Info("cluster health verdict", "real", c.Ref.String(), "state", c.State, "reason", c.Reason)
		}
	}
}

// configRefs lists the reals of a configuration.
func configRefs(cc raft.ClusterConfig) []raft.RealRef {
	var refs []raft.RealRef
	for i := range cc.Services {
		s := &cc.Services[i]
		key := s.Key()
		if i < len(cc.Keys) {
			key = cc.Keys[i]
		}
		for j := range s.Reals {
			refs = append(refs, raft.RealRef{Service: key, Address: s.Reals[j].Address})
		}
	}
	return refs
}

// HealthView takes another director's health view for the leader's
// aggregation (api.HealthViewHandler); a follower answers that it is not
// the leader.
func (d *Director) HealthView(_ context.Context, from string, req api.HealthViewRequest) error {
	if d.verdicts == nil {
		return errors.New("director starting")
	}
	return d.verdicts.received(from, req)
}
