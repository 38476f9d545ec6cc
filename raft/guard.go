package raft

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	hraft "github.com/hashicorp/raft"
)

// ErrStaleTimeoutNow is the answer to a TimeoutNow request from a node
// that is not the leader the receiver follows.
var ErrStaleTimeoutNow = errors.New("timeout-now refused: the sender is not the leader this node follows")

// guardedTransport is a hashicorp/raft transport whose consumer drops
// TimeoutNow requests that do not come from the leader the node currently
// follows.
//
// TimeoutNow is the last step of a leadership transfer: the leader tells
// the chosen follower to start an election at once. hashicorp/raft v1.7.3
// obeys it in any state and the request carries no term, so a TimeoutNow
// delivered late is obeyed too. It happens: a leader whose link fails
// starts a transfer over that link, the request waits in the TCP send
// buffer while the others elect a new leader, and when the link returns it
// is delivered, so the new leader (or a follower of it) starts an election
// nobody asked for: a second failover, the VIPs moved again. Only the
// current leader may ask for a transfer; a node that follows no leader, or
// another one, refuses.
type guardedTransport struct {
	hraft.Transport
	rpcs   chan hraft.RPC
	leader func() hraft.ServerID
	log    *slog.Logger

	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// guardTimeoutNow wraps trans so that its consumer refuses TimeoutNow
// requests whose sender is not leader() (see guardedTransport). trans must
// support pre-vote (both hashicorp/raft transports do); one that does not
// is returned as it is. The wrapper's Close stops its goroutine and closes
// trans when trans has a Close.
func guardTimeoutNow(trans hraft.Transport, leader func() hraft.ServerID, logger *slog.Logger) hraft.Transport {
	if _, ok := trans.(hraft.WithPreVote); !ok {
		return trans
	}
	g := &guardedTransport{
		Transport: trans,
		rpcs:      make(chan hraft.RPC),
		leader:    leader,
		log:       logger,
		done:      make(chan struct{}),
	}
	g.wg.Add(1)
	go g.pump(trans.Consumer())
	return g
}

// Consumer implements hraft.Transport: the inner consumer's RPCs, less the
// refused TimeoutNow requests.
func (g *guardedTransport) Consumer() <-chan hraft.RPC { return g.rpcs }

// RequestPreVote implements hraft.WithPreVote with the inner transport's
// (guardTimeoutNow wraps only transports that have it).
func (g *guardedTransport) RequestPreVote(id hraft.ServerID, target hraft.ServerAddress, args *hraft.RequestPreVoteRequest, resp *hraft.RequestPreVoteResponse) error {
	return g.Transport.(hraft.WithPreVote).RequestPreVote(id, target, args, resp)
}

// Close implements hraft.WithClose: it stops the guard and closes the
// inner transport if it can be closed. Safe to call more than once.
func (g *guardedTransport) Close() error {
	g.stop()
	if c, ok := g.Transport.(hraft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// stop ends the pump goroutine and waits for it.
func (g *guardedTransport) stop() {
	g.stopOnce.Do(func() { close(g.done) })
	g.wg.Wait()
}

// pump hands the inner consumer's RPCs on, answering refused ones itself.
// An RPC it holds when stopped is answered with hraft.ErrTransportShutdown,
// so that its sender does not wait for its deadline.
func (g *guardedTransport) pump(in <-chan hraft.RPC) {
	defer g.wg.Done()
	for {
		var rpc hraft.RPC
		select {
		case rpc = <-in:
		case <-g.done:
			return
		}
		if req, ok := rpc.Command.(*hraft.TimeoutNowRequest); ok {
			if err := g.check(req); err != nil {
				rpc.Respond(&hraft.TimeoutNowResponse{}, err)
				continue
			}
		}
		select {
		case g.rpcs <- rpc:
		case <-g.done:
			rpc.Respond(emptyResponse(rpc.Command), hraft.ErrTransportShutdown)
			return
		}
	}
}

// inject hands rpc to raft as if it had arrived from the network, without
// the guard's check: for requests this node makes of itself (ElectNow).
func (g *guardedTransport) inject(ctx context.Context, rpc hraft.RPC) error {
	select {
	case g.rpcs <- rpc:
		return nil
	case <-g.done:
		return hraft.ErrTransportShutdown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// check says whether a TimeoutNow request may reach raft: only from the
// leader this node follows.
func (g *guardedTransport) check(req *hraft.TimeoutNowRequest) error {
	from := hraft.ServerID(req.ID)
	leader := g.leader()
	if leader != "" && from == leader {
		return nil
	}
	g.log.Warn("refused a leadership transfer request that does not come from the current leader",
		"from", string(from), "from_address", string(req.Addr), "leader", string(leader))
	return ErrStaleTimeoutNow
}

var (
	_ hraft.WithClose   = (*guardedTransport)(nil)
	_ hraft.WithPreVote = (*guardedTransport)(nil)
)
