package raft

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// TestGuardTimeoutNow: a TimeoutNow reaches the consumer only from the
// leader the receiver follows; any other is answered with
// ErrStaleTimeoutNow and never seen by raft. Other RPCs pass untouched.
func TestGuardTimeoutNow(t *testing.T) {
	aAddr, a := hraft.NewInmemTransport("192.0.2.1:7000")
	bAddr, bInner := hraft.NewInmemTransport("192.0.2.2:7000")
	a.Connect(bAddr, bInner)
	bInner.Connect(aAddr, a)
	var leader atomic.Value
	leader.Store(hraft.ServerID(""))
	b := guardTimeoutNow(bInner, func() hraft.ServerID { return leader.Load().(hraft.ServerID) }, testutil.Logger(t))
	t.Cleanup(func() { b.(*guardedTransport).Close() })
	if _, ok := b.(hraft.WithPreVote); !ok {
		t.Fatal("the guarded transport lost pre-vote support")
	}

	// The consumer answers what reaches it and tells the test.
	seen := make(chan string, 8)
	go func() {
		for rpc := range b.Consumer() {
			switch c := rpc.Command.(type) {
			case *hraft.TimeoutNowRequest:
				seen <- "timeout-now from " + string(c.ID)
				rpc.Respond(&hraft.TimeoutNowResponse{}, nil)
			case *hraft.AppendEntriesRequest:
				seen <- "append-entries from " + string(c.ID)
				rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
			}
		}
	}()
	timeoutNow := func(from string) error {
		req := &hraft.TimeoutNowRequest{RPCHeader: hraft.RPCHeader{ID: []byte(from), Addr: []byte(aAddr)}}
		return a.TimeoutNow(hraft.ServerID("b"), bAddr, req, &hraft.TimeoutNowResponse{})
	}
	expectSeen := func(want string) {
		t.Helper()
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("the consumer saw %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the consumer did not see %q", want)
		}
	}
	expectRefused := func(from string) {
		t.Helper()
		err := timeoutNow(from)
		if err == nil || !strings.Contains(err.Error(), ErrStaleTimeoutNow.Error()) {
			t.Fatalf("timeout-now from %q while following %q: err = %v, want %v", from, leader.Load(), err, ErrStaleTimeoutNow)
		}
	}

	// No leader known: refused.
	expectRefused("a")
	// Following a: a may, c may not.
	leader.Store(hraft.ServerID("a"))
	if err := timeoutNow("a"); err != nil {
		t.Fatalf("timeout-now from the leader: %v", err)
	}
	expectSeen("timeout-now from a")
	expectRefused("c")
	expectRefused("")
	// Other RPCs are not the guard's business.
	ae := &hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{ID: []byte("c")}}
	if err := a.AppendEntries(hraft.ServerID("b"), bAddr, ae, &hraft.AppendEntriesResponse{}); err != nil {
		t.Fatalf("append-entries through the guard: %v", err)
	}
	expectSeen("append-entries from c")
	select {
	case got := <-seen:
		t.Fatalf("the consumer saw a refused request: %q", got)
	default:
	}
}

// TestClusterRefusesStaleTimeoutNow: a TimeoutNow from a node that is not
// the leader, as a request delayed in a TCP buffer across an election
// arrives, makes neither the leader nor a follower start an election: the
// leader and the term stay. (hashicorp/raft alone obeys it in any state.)
func TestClusterRefusesStaleTimeoutNow(t *testing.T) {
	c := newTestCluster(t, 3)
	li := c.waitLeader()
	leader := c.nodes[li]
	term := leader.Stats().Term
	others := []int{(li + 1) % 3, (li + 2) % 3}
	from, to := others[0], others[1]

	send := func(src, dst int) error {
		req := &hraft.TimeoutNowRequest{RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax,
			ID: []byte(c.peers[src].ID), Addr: []byte(c.trans[src].LocalAddr()),
		}}
		return c.trans[src].TimeoutNow(hraft.ServerID(c.peers[dst].ID), c.trans[dst].LocalAddr(), req, &hraft.TimeoutNowResponse{})
	}
	for _, dst := range []int{li, to} {
		err := send(from, dst)
		if err == nil || !strings.Contains(err.Error(), ErrStaleTimeoutNow.Error()) {
			t.Fatalf("timeout-now from follower %s to %s: err = %v, want %v", c.peers[from].ID, c.peers[dst].ID, err, ErrStaleTimeoutNow)
		}
	}
	// The refusals came from the guard (raft answers an obeyed TimeoutNow
	// with success, never with ErrStaleTimeoutNow), so no request reached
	// raft and there is nothing to wait for. A write committed by every
	// node is the synchronisation point: the leader still leads and every
	// node has heard from it since.
	if _, err := leader.SubmitConfig(testutil.Context(t, testTimeout), testSpec(3), ""); err != nil {
		t.Fatalf("a write after the refused requests: %v", err)
	}
	for _, n := range c.nodes {
		waitGeneration(t, n, 1)
	}
	for i, n := range c.nodes {
		st := n.Stats()
		if st.Term != term {
			t.Errorf("%s: term %d, want %d: an election ran", c.peers[i].ID, st.Term, term)
		}
		if st.LeaderID != c.peers[li].ID {
			t.Errorf("%s follows %q, want %q", c.peers[i].ID, st.LeaderID, c.peers[li].ID)
		}
	}
	if !leader.IsLeader() {
		t.Error("the leader lost leadership")
	}
}
