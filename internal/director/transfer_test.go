package director

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/raft"
)

// fakeMembers answers planTransfer's questions: each address's answer,
// or, for an address in block, nothing until the question's context ends.
type fakeMembers struct {
	answers map[string]api.Status
	errs    map[string]error
	block   map[string]bool
	ended   chan string // addresses whose blocked question ended
}

func (f *fakeMembers) ask(ctx context.Context, address string) (api.Status, error) {
	if f.block[address] {
		<-ctx.Done()
		f.ended <- address
		return api.Status{}, ctx.Err()
	}
	if err := f.errs[address]; err != nil {
		return api.Status{}, err
	}
	return f.answers[address], nil
}

func member(id string, suffrage raft.Suffrage) raft.Member {
	return raft.Member{ID: id, Address: id + ":7946", Suffrage: suffrage}
}

// TestPlanTransferSorts: directors in FAULT last, witnesses, non-voters and
// the leader never, members that fail to answer (or answer as another
// node) as unknown, in the members' order.
func TestPlanTransferSorts(t *testing.T) {
	members := []raft.Member{
		member("d1", raft.SuffrageVoter), // the leader
		member("d2", raft.SuffrageVoter),
		member("wit", raft.SuffrageVoter),
		member("d3", raft.SuffrageVoter),
		member("d4", raft.SuffrageVoter),
		member("d5", raft.SuffrageNonvoter),
		member("d6", raft.SuffrageVoter),
	}
	f := &fakeMembers{
		answers: map[string]api.Status{
			"d1:7946":  {Node: "d1", Role: "director", VRRPState: "MASTER"},
			"d2:7946":  {Node: "d2", Role: "director", VRRPState: "FAULT"},
			"wit:7946": {Node: "wit", Role: "witness"},
			"d4:7946":  {Node: "other", Role: "director", VRRPState: "BACKUP"}, // not who we asked
			"d5:7946":  {Node: "d5", Role: "director", VRRPState: "BACKUP"},
			"d6:7946":  {Node: "d6", Role: "director"}, // starting: no state yet
		},
		errs: map[string]error{"d3:7946": errors.New("connection refused")},
	}
	p := planTransfer(t.Context(), members, "d1", f.ask)
	if len(p.Healthy) != 0 || !slices.Equal(p.Unknown, []string{"d3", "d4", "d6"}) || !slices.Equal(p.Fault, []string{"d2"}) {
		t.Errorf("plan = %+v, want healthy none, unknown [d3 d4 d6], fault [d2]", p)
	}
}

// TestPlanTransferHealthyFirst: the first healthy director ends the wait;
// a member still silent then counts as unknown, and its question is
// cancelled.
func TestPlanTransferHealthyFirst(t *testing.T) {
	members := []raft.Member{
		member("d1", raft.SuffrageVoter),
		member("d2", raft.SuffrageVoter), // host down: never answers
		member("d3", raft.SuffrageVoter),
	}
	f := &fakeMembers{
		answers: map[string]api.Status{
			"d3:7946": {Node: "d3", Role: "director", VRRPState: "BACKUP"},
		},
		block: map[string]bool{"d2:7946": true},
		ended: make(chan string, 1),
	}
	p := planTransfer(t.Context(), members, "d1", f.ask)
	if !slices.Equal(p.Healthy, []string{"d3"}) || !slices.Equal(p.Unknown, []string{"d2"}) || len(p.Fault) != 0 {
		t.Errorf("plan = %+v, want healthy [d3], unknown [d2]", p)
	}
	if got := <-f.ended; got != "d2:7946" {
		t.Errorf("cancelled question to %s, want d2:7946", got)
	}
}

// TestPlanTransferNobodyAnswers: silent members are unknown once the
// wait is over.
func TestPlanTransferNobodyAnswers(t *testing.T) {
	members := []raft.Member{member("d1", raft.SuffrageVoter), member("d2", raft.SuffrageVoter), member("wit", raft.SuffrageVoter)}
	f := &fakeMembers{
		block: map[string]bool{"d2:7946": true, "wit:7946": true},
		ended: make(chan string, 2),
	}
	p := planTransfer(t.Context(), members, "d1", f.ask)
	if len(p.Healthy) != 0 || !slices.Equal(p.Unknown, []string{"d2", "wit"}) || len(p.Fault) != 0 {
		t.Errorf("plan = %+v, want unknown [d2 wit]", p)
	}
}
