package director

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
)

// SetAdmin sets a real's admin state through the leader. The service is
// found by name or key in the cluster configuration, the real by address.
func (d *Director) SetAdmin(ctx context.Context, req api.AdminRequest) (api.AdminResult, error) {
	state := raft.Admin(req.State)
	switch state {
	case raft.AdminEnabled, raft.AdminDrained, raft.AdminDisabled:
	default:
		return api.AdminResult{}, fmt.Errorf("%w: state %q: want enabled, drained or disabled", api.ErrInvalid, req.State)
	}
	cc, err := appliedConfig(ctx, d.node)
	if err != nil {
		return api.AdminResult{}, err
	}
	for i := range cc.Services {
		svc := &cc.Services[i]
		if svc.Name != req.Service && svc.Key().String() != req.Service {
			continue
		}
		for j := range svc.Reals {
			if svc.Reals[j].Address != req.Real {
				continue
			}
			res, err := d.fw.SetAdmin(ctx, raft.RefOf(svc, &svc.Reals[j]), state)
			if err != nil {
				return api.AdminResult{}, err
			}
			return api.AdminResult{Service: svc.Key().String(), Previous: string(res.Previous), Changed: res.Changed}, nil
		}
		return api.AdminResult{}, fmt.Errorf("%w: service %s has no real %s", api.ErrNotFound, svc.Name, req.Real)
	}
	return api.AdminResult{}, fmt.Errorf("%w: no service %q in cluster generation %d", api.ErrNotFound, req.Service, cc.Generation)
}

// adminCatchUp bounds how long an admin command through a director that
// has applied no cluster configuration yet (started a moment ago, its log
// still replaying) waits for one.
const adminCatchUp = 10 * time.Second

// configSource is what appliedConfig reads: the node's replicated state.
type configSource interface {
	Config() raft.ClusterConfig
	Watch() <-chan struct{}
}

// appliedConfig returns src's cluster configuration once it holds one
// (generation above 0), waiting for it up to adminCatchUp or ctx. A
// director that just started answers "no service web" otherwise, which
// is wrong: the chaos soak drained through a restarted director and was
// told web did not exist. What it cannot know yet is a conflict
// (try again), never "not found".
func appliedConfig(ctx context.Context, src configSource) (raft.ClusterConfig, error) {
	ctx, cancel := context.WithTimeout(ctx, adminCatchUp)
	defer cancel()
	for {
		changed := src.Watch() // before reading: no change is missed
		cc := src.Config()
		if cc.Generation > 0 {
			return cc, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return cc, fmt.Errorf("%w: this director has applied no cluster configuration yet (it has just started, or cannot reach the leader): try again, or through another director", api.ErrConflict)
		}
	}
}

// Failover transfers leadership (planned): the new leader takes the VIPs
// once it has caught up, this one releases them as soon as it steps down.
func (d *Director) Failover(ctx context.Context, to string) (api.FailoverResult, error) {
	return failover(ctx, d.node, d.fw, to)
}

// errStarting answers a reload that could not wait for the director to
// finish starting.
var errStarting = errors.New("the director is still starting: try the reload again")

// Reload re-reads the configuration file. An invalid file is rejected with
// all its errors and the running configuration stays; a valid one is
// submitted to the cluster when its services differ. A reload asked for
// while the director starts (a SIGHUP before Run has joined Raft) waits
// until it is ready, or until ctx ends: it then fails with errStarting.
func (d *Director) Reload(ctx context.Context) (api.ReloadResult, error) {
	if err := d.waitReady(ctx); err != nil {
		return api.ReloadResult{}, err
	}
	res := d.sub.reload(ctx, raftSubmit{d.node, d.fw}, func() (*config.Director, error) {
		return Load(d.opts.ConfigPath, d.opts.Override)
	})
	if res.OK {
		d.reconfigureSpeaker(ctx, d.sub.current())
	}
	return res, nil
}

// waitReady waits until Run has started Raft (d.node is set), logging
// that a reload waits; it fails with errStarting when ctx ends first.
func (d *Director) waitReady(ctx context.Context) error {
	select {
	case <-d.ready:
		return nil
	default:
	}
	d.log.Info("reload requested while the director starts: it runs once the director is ready")
	select {
	case <-d.ready:
		return nil
	case <-ctx.Done():
		d.log.Warn("reload requested while the director starts: not done, the director did not get ready in time", "error", ctx.Err())
		return fmt.Errorf("%w: %w", errStarting, ctx.Err())
	}
}

// errorLines splits a configuration error into its file:line:col lines.
func errorLines(err error) []string {
	var ce *config.Errors
	if errors.As(err, &ce) {
		out := make([]string, 0, len(ce.List))
		for _, e := range ce.List {
			out = append(out, e.Error())
		}
		return out
	}
	return []string{err.Error()}
}

// Members lists the Raft configuration.
func (d *Director) Members(ctx context.Context) ([]api.Member, error) {
	ms, err := d.node.Members(ctx)
	if err != nil {
		return nil, err
	}
	return membersOf(ms), nil
}

// Join adds a member through the leader.
func (d *Director) Join(ctx context.Context, req api.JoinRequest) error {
	return join(ctx, d.fw, req)
}

// Remove removes a member through the leader.
func (d *Director) Remove(ctx context.Context, id string) error {
	return remove(ctx, d.node, d.fw, id)
}

// failover transfers leadership through the leader, to a named node when
// to is set, otherwise to another director ready to take the VIPs (see
// transferTargets; errNoDirector when there is none), and reports who
// leads afterwards.
func failover(ctx context.Context, n *raft.Node, fw api.Forwarder, to string) (api.FailoverResult, error) {
	from := n.LeaderID()
	var targets []string
	if to != "" {
		targets = []string{to}
	} else {
		targets = transferTargets(ctx, n, from, peerStatus(&fw.Peers))
		if len(targets) == 0 {
			return api.FailoverResult{From: from}, errNoDirector
		}
	}
	if err := fw.TransferLeadership(ctx, targets...); err != nil {
		return api.FailoverResult{From: from}, err
	}
	return api.FailoverResult{From: from, To: waitLeaderOtherThan(ctx, n, from)}, nil
}

// waitLeaderOtherThan waits (bounded by ctx and two seconds) until this
// node knows a leader other than old, and returns its id ("" if none yet).
func waitLeaderOtherThan(ctx context.Context, n *raft.Node, old string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if id := n.LeaderID(); id != "" && id != old {
			return id
		}
		select {
		case <-ctx.Done():
			return ""
		case <-t.C:
		}
	}
}

// join adds a voter or non-voter through the leader.
func join(ctx context.Context, fw api.Forwarder, req api.JoinRequest) error {
	if req.ID == "" || req.Address == "" {
		return fmt.Errorf("%w: join needs an id and an address", api.ErrInvalid)
	}
	if req.Voter {
		return fw.AddVoter(ctx, req.ID, req.Address)
	}
	return fw.AddNonvoter(ctx, req.ID, req.Address)
}

// remove removes a member through the leader after checking it exists.
func remove(ctx context.Context, n *raft.Node, fw api.Forwarder, id string) error {
	ms, err := n.Members(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.ID == id {
			return fw.RemoveServer(ctx, id)
		}
	}
	return fmt.Errorf("%w: no member %q", api.ErrNotFound, id)
}
