package raft

import (
	"errors"
	"testing"

	"github.com/dsrd/dsrd/internal/testutil"
)

// TestClusterElectNow: a follower told that its leader is gone stands for
// election at once and wins, though the leader is healthy and the other
// voter still follows it (the transfer flag overrides their stickiness):
// nothing else would have moved leadership. Naming another leader, or
// asking the leader itself, changes nothing.
func TestClusterElectNow(t *testing.T) {
	c := newTestCluster(t, 3)
	li := c.waitLeader()
	leaderID := c.peers[li].ID
	fi := (li + 1) % 3
	f := c.nodes[fi]
	// The follower learns the leader from its first AppendEntries, which
	// may come after the leader has established itself.
	testutil.WaitFor(t, testTimeout, "the follower to know the leader", func() (bool, string) {
		return f.LeaderID() == leaderID, f.LeaderID()
	})
	term := f.Stats().Term

	if err := f.ElectNow(t.Context(), "nosuch"); !errors.Is(err, ErrNotFollowing) {
		t.Fatalf("ElectNow naming another leader: %v, want %v", err, ErrNotFollowing)
	}
	if err := c.nodes[li].ElectNow(t.Context(), leaderID); !errors.Is(err, ErrNotFollowing) {
		t.Fatalf("ElectNow on the leader: %v, want %v", err, ErrNotFollowing)
	}
	if got := f.Stats().Term; got != term {
		t.Fatalf("term moved from %d to %d after refused calls", term, got)
	}

	if err := f.ElectNow(t.Context(), leaderID); err != nil {
		t.Fatal(err)
	}
	c.waitFor("leadership on the follower that stood", func(st map[int]bool) bool { return st[fi] && !st[li] })
}
