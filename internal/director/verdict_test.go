package director

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

func TestAggregateVerdicts(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	ref := raft.RealRef{Service: ipvs.MustParseServiceKey("tcp/203.0.113.10:80"), Address: netip.MustParseAddr("198.51.100.21")}
	refs := []raft.RealRef{ref}
	view := func(state raft.Health, reason string, age time.Duration) nodeView {
		return nodeView{At: now.Add(-age), Reals: map[raft.RealRef]api.RealView{ref: {Ref: ref, State: state, Reason: reason}}}
	}
	up, down := raft.HealthUp, raft.HealthDown
	for _, tc := range []struct {
		name    string
		views   map[string]nodeView
		current map[raft.RealRef]raft.HealthVerdict
		want    []raft.HealthVerdict // nil: no change
	}{
		{"every director sees it down", map[string]nodeView{
			"d1": view(down, "refused", 0), "d2": view(down, "timeout", 0), "d3": view(down, "timeout", 0)},
			nil, []raft.HealthVerdict{{Ref: ref, State: down, Reason: "refused"}}},
		{"one broken path of three is outvoted", map[string]nodeView{
			"d1": view(up, "ok", 0), "d2": view(down, "unreachable", 0), "d3": view(up, "ok", 0)},
			nil, []raft.HealthVerdict{{Ref: ref, State: up, Reason: "ok"}}},
		{"a pair that disagrees: the leader's own view", map[string]nodeView{
			"d1": view(down, "timeout", 0), "d2": view(up, "ok", 0)},
			nil, []raft.HealthVerdict{{Ref: ref, State: down, Reason: "timeout"}}},
		{"a pair that disagrees, the leader up", map[string]nodeView{
			"d1": view(up, "ok", 0), "d2": view(down, "unreachable", 0)},
			nil, []raft.HealthVerdict{{Ref: ref, State: up, Reason: "ok"}}},
		{"a tie without the leader's view keeps the verdict", map[string]nodeView{
			"d1": {At: now}, "d2": view(up, "ok", 0), "d3": view(down, "refused", 0)},
			map[raft.RealRef]raft.HealthVerdict{ref: {Ref: ref, State: up}}, nil},
		{"stale views do not vote", map[string]nodeView{
			"d1": view(up, "ok", 0), "d2": view(down, "refused", viewFresh), "d3": view(down, "refused", viewFresh+time.Second)},
			nil, []raft.HealthVerdict{{Ref: ref, State: up, Reason: "ok"}}},
		{"the leader's own view is never stale", map[string]nodeView{
			"d1": view(down, "refused", time.Hour)},
			nil, []raft.HealthVerdict{{Ref: ref, State: down, Reason: "refused"}}},
		{"an unchanged verdict is no change", map[string]nodeView{
			"d1": view(down, "refused", 0), "d2": view(down, "refused", 0)},
			map[raft.RealRef]raft.HealthVerdict{ref: {Ref: ref, State: down, Reason: "refused"}}, nil},
		{"a new reason is a change (an agent's drain)", map[string]nodeView{
			"d1": view(up, "draining", 0), "d2": view(up, "draining", 0)},
			map[raft.RealRef]raft.HealthVerdict{ref: {Ref: ref, State: up, Reason: "ok"}},
			[]raft.HealthVerdict{{Ref: ref, State: up, Reason: "draining"}}},
		{"no votes: nothing", map[string]nodeView{"d1": {At: now}}, nil, nil},
		{"the leader's reason when it agrees", map[string]nodeView{
			"a0": view(down, "timeout", 0), "d1": view(down, "refused", 0), "d2": view(up, "ok", 0)},
			nil, []raft.HealthVerdict{{Ref: ref, State: down, Reason: "refused"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := aggregateVerdicts(refs, tc.views, "d1", now, tc.current)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
