package raft

import (
	"context"
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
)

// Suffrage is a cluster member's role in Raft's votes.
type Suffrage string

// The suffrages.
const (
	// SuffrageVoter votes and counts for the quorum.
	SuffrageVoter Suffrage = "voter"
	// SuffrageNonvoter replicates the log without voting.
	SuffrageNonvoter Suffrage = "nonvoter"
	// SuffrageStaging is a server being promoted to voter.
	SuffrageStaging Suffrage = "staging"
)

func suffrage(s hraft.ServerSuffrage) Suffrage {
	switch s {
	case hraft.Voter:
		return SuffrageVoter
	case hraft.Nonvoter:
		return SuffrageNonvoter
	default:
		return SuffrageStaging
	}
}

// Member is one server of the cluster's Raft configuration.
type Member struct {
	ID       string
	Address  string
	Suffrage Suffrage
	// Leader is true for the server this node believes is the leader.
	Leader bool
}

// Members returns the cluster's latest Raft configuration as this node
// knows it; followers answer too.
func (n *Node) Members(ctx context.Context) ([]Member, error) {
	r := n.raft.Load()
	if r == nil {
		return nil, ErrNotStarted
	}
	servers, err := n.servers(ctx, r)
	if err != nil {
		return nil, err
	}
	_, leaderID := r.LeaderWithID()
	out := make([]Member, 0, len(servers))
	for _, s := range servers {
		out = append(out, Member{
			ID:       string(s.ID),
			Address:  string(s.Address),
			Suffrage: suffrage(s.Suffrage),
			Leader:   leaderID != "" && s.ID == leaderID,
		})
	}
	return out, nil
}

func (n *Node) servers(ctx context.Context, r *hraft.Raft) ([]hraft.Server, error) {
	f := r.GetConfiguration()
	if err := waitFuture(ctx, f); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// AddVoter adds a voting server with address host:port, or updates the
// address of an existing one; leader only (else a *NotLeaderError).
func (n *Node) AddVoter(ctx context.Context, id, address string) error {
	return n.addServer(ctx, id, address, true)
}

// AddNonvoter adds a server that replicates the log without voting (a
// director being prepared, a read replica); leader only.
func (n *Node) AddNonvoter(ctx context.Context, id, address string) error {
	return n.addServer(ctx, id, address, false)
}

func (n *Node) addServer(ctx context.Context, id, address string, voter bool) error {
	if err := CheckMember(id, address); err != nil {
		return fmt.Errorf("add server: %w", err)
	}
	r, err := n.leaderRaft()
	if err != nil {
		return fmt.Errorf("add server %s: %w", id, err)
	}
	var f hraft.IndexFuture
	if voter {
		f = r.AddVoter(hraft.ServerID(id), hraft.ServerAddress(address), 0, enqueueTimeout(ctx))
	} else {
		f = r.AddNonvoter(hraft.ServerID(id), hraft.ServerAddress(address), 0, enqueueTimeout(ctx))
	}
	if err := waitFuture(ctx, f); err != nil {
		return fmt.Errorf("add server %s: %w", id, n.raftError(err))
	}
	n.log.Info("raft server added", "id", id, "address", address, "voter", voter)
	return nil
}

// RemoveServer removes a server from the cluster; leader only. Removing the
// leader itself makes it step down once the change is committed.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	r, err := n.leaderRaft()
	if err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	if err := waitFuture(ctx, r.RemoveServer(hraft.ServerID(id), 0, enqueueTimeout(ctx))); err != nil {
		return fmt.Errorf("remove server %s: %w", id, n.raftError(err))
	}
	n.log.Info("raft server removed", "id", id)
	return nil
}

// TransferLeadership hands leadership over to another voter; leader only.
// With no target, Raft picks the most up-to-date voter; with targets (server
// IDs), they are tried in order until one takes over. It returns once this
// node has stepped down (the new leader announces itself through its own
// Leadership subscription), or an error if no transfer succeeded within
// Raft's election timeout per attempt or ctx.
//
// This node's Leadership subscribers hear false as the transfer starts,
// before the new leader can establish itself: a director releases its VIPs
// before the next one takes them. If every attempt fails and raft still
// leads, leadership is established again (a Barrier, then true).
func (n *Node) TransferLeadership(ctx context.Context, to ...string) error {
	r, err := n.leaderRaft()
	if err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	if len(to) == 0 {
		n.lead.handOver()
		if err := waitFuture(ctx, r.LeadershipTransfer()); err != nil {
			n.resumeLeadership(r)
			return fmt.Errorf("transfer leadership: %w", n.raftError(err))
		}
		return nil
	}
	servers, err := n.servers(ctx, r)
	if err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	// The targets first: a transfer to nobody valid gives nothing up.
	var errs []error
	var targets []hraft.Server
	for _, id := range to {
		srv, ok := findServer(servers, id)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: not a cluster member", id))
		case srv.Suffrage != hraft.Voter:
			errs = append(errs, fmt.Errorf("%s: not a voter", id))
		case id == n.cfg.NodeID:
			errs = append(errs, fmt.Errorf("%s: this node is the leader", id))
		default:
			targets = append(targets, srv)
		}
	}
	if len(targets) == 0 {
		return fmt.Errorf("transfer leadership: %w", errors.Join(errs...))
	}
	n.lead.handOver()
	for _, srv := range targets {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		err := waitFuture(ctx, r.LeadershipTransferToServer(srv.ID, srv.Address))
		if err == nil {
			n.log.Info("leadership transferred", "to", string(srv.ID))
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", srv.ID, n.raftError(err)))
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrRaftShutdown) {
			break
		}
	}
	n.resumeLeadership(r)
	return fmt.Errorf("transfer leadership: %w", errors.Join(errs...))
}

// resumeLeadership takes leadership up again after a transfer that failed,
// when raft still leads (TransferLeadership reported it lost ahead of
// raft: see leadership.handOver).
func (n *Node) resumeLeadership(r *hraft.Raft) {
	if r.State() == hraft.Leader {
		n.lead.resume()
	}
}

func findServer(servers []hraft.Server, id string) (hraft.Server, bool) {
	for _, s := range servers {
		if string(s.ID) == id {
			return s, true
		}
	}
	return hraft.Server{}, false
}
