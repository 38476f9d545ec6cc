package director

import (
	"errors"
	"log/slog"
	"time"

	"github.com/dsrd/dsrd/raft"
)

// catchUpPoll is how often a director holding its IPVS at start (catchUp)
// looks again besides the Raft state's own changes: only to notice that
// the hold has lasted catchUpMax.
const catchUpPoll = 250 * time.Millisecond

// catchUpMax bounds the hold of catchUp while a leader is known. A follower
// replays its log within a few heartbeats of hearing from the leader; a
// state still older than the one recorded after that long means the
// cluster's state went back (a cluster rebuilt from scratch over a kept
// data dir), and the director follows it rather than wait forever.
const catchUpMax = 10 * time.Second

// errCatchingUp is sync's answer while the Raft state is older than the
// one the kernel already holds: not a failure, nothing was touched.
var errCatchingUp = errors.New("raft state older than the one ipvs last followed: catching up")

// catchUp holds the kernel at start while the Raft state is older than
// the one IPVS last followed in full (the owned file's index): Raft
// replays its log through every older state, and programming one would
// undo for a moment what the kernel already holds (delete a real added
// since and add it back at weight 0, drain a service created since),
// which is the blip a restart must not cause. Once the state has caught
// up the hold is over for good; while a leader is known it lasts at most
// catchUpMax. The reconcile loop owns it: no lock.
type catchUp struct {
	log     *slog.Logger
	started time.Time // when the director started
	below   uint64    // hold while the Raft state index is below; 0: no hold
}

// check returns errCatchingUp while the kernel is held for state st
// (leaderKnown: this node knows a leader; now: the time).
func (c *catchUp) check(st raft.State, leaderKnown bool, now time.Time) error {
	if c.below == 0 {
		return nil
	}
	if st.Index >= c.below {
		c.below = 0
		return nil
	}
	if leaderKnown && now.Sub(c.started) >= catchUpMax {
		c.log.Warn("the cluster's state is older than the one ipvs last followed (was the cluster rebuilt?): following it",
			"index", st.Index, "ipvs_index", c.below)
		c.below = 0
		return nil
	}
	return errCatchingUp
}
