package raft

import (
	"context"
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"
)

// ErrNotFollowing is returned by ElectNow when this node is not a follower
// of the leader named.
var ErrNotFollowing = errors.New("this node does not follow that leader")

// injector hands an RPC to raft as if it came from the network.
type injector interface {
	inject(ctx context.Context, rpc hraft.RPC) error
}

// ElectNow makes this node stand for election at once, as the target of a
// leadership transfer does, when it is a follower of leader: for a leader
// known to be gone (its process dead, its port refusing connections), so
// that the cluster does not wait a heartbeat timeout to notice. The vote
// requests carry the transfer flag, so the other voters grant them though
// they still know the old leader. Raft's safety does not depend on who
// starts an election; a wrong call costs an election, which is why the
// caller must know the leader is gone. ElectNow returns once raft has taken
// the request, not when the election is over.
func (n *Node) ElectNow(ctx context.Context, leader string) error {
	r := n.raft.Load()
	if r == nil {
		return fmt.Errorf("elect now: %w", ErrNotStarted)
	}
	addr, id := r.LeaderWithID()
	if r.State() != hraft.Follower || string(id) != leader || leader == "" {
		return fmt.Errorf("elect now: %w %q (state %s, leader %q)", ErrNotFollowing, leader, r.State(), id)
	}
	n.mu.Lock()
	g := n.inject
	n.mu.Unlock()
	if g == nil {
		return fmt.Errorf("elect now: %w", ErrNoPeerTransport)
	}
	resp := make(chan hraft.RPCResponse, 1)
	rpc := hraft.RPC{
		Command: &hraft.TimeoutNowRequest{RPCHeader: hraft.RPCHeader{
			ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(addr),
		}},
		RespChan: resp,
	}
	if err := g.inject(ctx, rpc); err != nil {
		return fmt.Errorf("elect now: %w", err)
	}
	select {
	case res := <-resp:
		if res.Error != nil {
			return fmt.Errorf("elect now: %w", res.Error)
		}
		n.log.Info("standing for election at once: the leader is gone", "leader", leader)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("elect now: %w", ctx.Err())
	}
}
