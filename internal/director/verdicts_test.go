package director

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
)

// fakeVerdictCluster is one node of a cluster whose state is shared: the
// leader's SetHealth changes what every node reads.
type fakeVerdictCluster struct {
	id     string
	leader *string
	shared *sharedState
}

type sharedState struct {
	mu    sync.Mutex
	st    raft.State
	calls int
}

func (f fakeVerdictCluster) ID() string            { return f.id }
func (f fakeVerdictCluster) IsLeader() bool        { return *f.leader == f.id }
func (f fakeVerdictCluster) LeaderAddress() string { return *f.leader }
func (f fakeVerdictCluster) State() raft.State {
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	st := f.shared.st
	st.Health = cloneVerdicts(st.Health)
	return st
}

func (f fakeVerdictCluster) SetHealth(_ context.Context, vs []raft.HealthVerdict) (raft.SetHealthResult, error) {
	if !f.IsLeader() {
		return raft.SetHealthResult{}, &raft.NotLeaderError{}
	}
	f.shared.mu.Lock()
	defer f.shared.mu.Unlock()
	f.shared.calls++
	for _, v := range vs {
		f.shared.st.Health[v.Ref] = v
	}
	return raft.SetHealthResult{Changed: len(vs)}, nil
}

func cloneVerdicts(m map[raft.RealRef]raft.HealthVerdict) map[raft.RealRef]raft.HealthVerdict {
	out := make(map[raft.RealRef]raft.HealthVerdict, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestVerdictsReplicateTheMajority: three directors' keepers, the leader
// aggregating what the followers send over a stand-in for the peer
// protocol. One director alone seeing a real down changes nothing; two of
// three do; the verdict is replicated once, not on every tick.
func TestVerdictsReplicateTheMajority(t *testing.T) {
	spec := raft.Spec{Services: []raft.Service{{Name: "web", VIP: netip.MustParseAddr("203.0.113.10"), Port: 80, Protocol: "tcp",
		Reals: []raft.Real{{Address: netip.MustParseAddr("198.51.100.21"), Port: 80}}}}}
	shared := &sharedState{st: raft.State{Config: raft.ClusterConfig{Spec: spec, Generation: 1, Keys: spec.Keys()}, Health: map[raft.RealRef]raft.HealthVerdict{}}}
	ref := raft.RealRef{Service: spec.Keys()[0], Address: netip.MustParseAddr("198.51.100.21")}
	leader := "d1"
	keepers := map[string]*verdicts{}
	for _, id := range []string{"d1", "d2", "d3"} {
		id := id
		keepers[id] = newVerdicts(fakeVerdictCluster{id: id, leader: &leader, shared: shared},
			func(_ context.Context, to string, req api.HealthViewRequest) error {
				return keepers[to].received(id, req)
			}, testutil.Logger(t))
	}
	view := func(state raft.Health, reason string) []api.RealView {
		return []api.RealView{{Ref: ref, State: state, Reason: reason}}
	}
	verdict := func() raft.HealthVerdict {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return shared.st.Health[ref]
	}
	ctx := testutil.Context(t, testTimeout)
	step := func() {
		// Followers first, then the leader: one round of the protocol.
		keepers["d2"].step(ctx, false)
		keepers["d3"].step(ctx, false)
		keepers["d1"].step(ctx, false)
	}

	for _, id := range []string{"d1", "d2", "d3"} {
		keepers[id].setOwn(1, view(raft.HealthUp, "ok"))
	}
	step()
	if got := verdict(); got.State != raft.HealthUp {
		t.Fatalf("all up: verdict %+v", got)
	}
	keepers["d3"].setOwn(1, view(raft.HealthDown, "unreachable"))
	step()
	if got := verdict(); got.State != raft.HealthUp {
		t.Errorf("one director's broken path took the real out: %+v", got)
	}
	keepers["d2"].setOwn(1, view(raft.HealthDown, "refused"))
	step()
	if got := verdict(); got.State != raft.HealthDown || got.Reason != "refused" {
		t.Errorf("two of three down: verdict %+v", got)
	}
	shared.mu.Lock()
	calls := shared.calls
	shared.mu.Unlock()
	step()
	keepers["d1"].step(ctx, true)
	shared.mu.Lock()
	again := shared.calls
	shared.mu.Unlock()
	if again != calls {
		t.Errorf("an unchanged verdict replicated again: %d calls, then %d", calls, again)
	}
	// A follower is not the place to send views.
	if err := keepers["d2"].received("d3", api.HealthViewRequest{}); err == nil {
		t.Error("a follower took a health view")
	}
}
