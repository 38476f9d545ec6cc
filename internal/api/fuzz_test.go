package api_test

// Fuzz targets for the request bodies of the peer protocol (from other
// members over the Raft port) and of the local API (from the root-only
// socket). Every answer must be a 2xx, or a 4xx or 5xx with a JSON
// ErrorResponse; a request that should have been refused must never reach
// the cluster or the backend.
//
// Seed corpora are under testdata/fuzz/<Target>; TestFuzzSeeds rewrites
// them with -update-fuzz-seeds.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
)

var updateSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the seed corpora under testdata/fuzz")

// checkedCluster is a Cluster that leads and accepts every valid write; a
// write the peer server should have refused fails the test.
type checkedCluster struct{ t *testing.T }

func (c checkedCluster) SubmitConfig(_ context.Context, spec raft.Spec, by string) (raft.SetConfigResult, error) {
	// The node validates what it submits (raft.Node.SubmitConfig); the
	// peer server maps its refusal to 400.
	if err := clusterspec.Validate(spec); err != nil {
		return raft.SetConfigResult{}, fmt.Errorf("%w: %w", raft.ErrInvalidSpec, err)
	}
	return raft.SetConfigResult{Generation: 2, Changed: true}, nil
}

func (c checkedCluster) SetAdmin(_ context.Context, ref raft.RealRef, state raft.Admin) (raft.SetAdminResult, error) {
	if _, err := raft.ParseAdmin(string(state)); err != nil || ref.Service == (ipvs.ServiceKey{}) || !ref.Address.IsValid() {
		c.t.Errorf("peer server set the admin state %q of %+v", state, ref)
	}
	if ref != webRef {
		return raft.SetAdminResult{}, fmt.Errorf("%w: %s", raft.ErrUnknownReal, ref)
	}
	return raft.SetAdminResult{Previous: raft.AdminEnabled, Changed: state != raft.AdminEnabled}, nil
}

func (c checkedCluster) SetDrain(_ context.Context, cmd raft.SetDrainCommand) (raft.SetDrainResult, error) {
	if err := pki.CheckNodeID(cmd.Node); err != nil {
		c.t.Errorf("peer server drained an invalid node %q", cmd.Node)
	}
	return raft.SetDrainResult{Changed: true}, nil
}

func (c checkedCluster) AddVoter(_ context.Context, id, address string) error {
	return c.member(id, address)
}

func (c checkedCluster) AddNonvoter(_ context.Context, id, address string) error {
	return c.member(id, address)
}

func (c checkedCluster) member(id, address string) error {
	if err := raft.CheckMember(id, address); err != nil {
		c.t.Errorf("peer server added an invalid member: %v", err)
		return err
	}
	return nil
}

func (c checkedCluster) RemoveServer(context.Context, string) error { return nil }

func (c checkedCluster) TransferLeadership(_ context.Context, to ...string) error {
	if len(to) > 0 && to[0] != "d2" {
		return fmt.Errorf("%s: %w", to[0], api.ErrNotFound)
	}
	return nil
}

// fuzzGoneBackend is a director's backend: it takes leader-gone for d1,
// and fails the test when one naming no leader reaches it.
type fuzzGoneBackend struct {
	*apitest.Backend
	t *testing.T
}

func (b fuzzGoneBackend) LeaderGone(_ context.Context, leader string) error {
	if leader == "" {
		b.t.Error("leader-gone without a leader reached the backend")
	}
	if leader != "d1" {
		return fmt.Errorf("%s does not lead: %w", leader, api.ErrInvalid)
	}
	return nil
}

// HealthView takes a view, and fails the test when one the server should
// have refused reaches it.
func (b fuzzGoneBackend) HealthView(_ context.Context, from string, req api.HealthViewRequest) error {
	if err := api.ValidHealthView(req); err != nil {
		b.t.Errorf("peer api passed an invalid health view from %q: %v", from, err)
	}
	return nil
}

// checkedBackend is a local API backend that fails the test when the
// server hands it a request it should have refused.
type checkedBackend struct {
	*apitest.Backend
	t *testing.T
}

func (b checkedBackend) SetAdmin(ctx context.Context, req api.AdminRequest) (api.AdminResult, error) {
	if err := api.ValidAdmin(req); err != nil {
		b.t.Errorf("local api passed an invalid admin request: %v", err)
	}
	return b.Backend.SetAdmin(ctx, req)
}

func (b checkedBackend) Join(ctx context.Context, req api.JoinRequest) error {
	if err := api.ValidJoin(req); err != nil {
		b.t.Errorf("local api passed an invalid join request: %v", err)
	}
	return b.Backend.Join(ctx, req)
}

// postAll posts body to every route of h and checks each answer.
func postAll(t *testing.T, h http.Handler, routes []string, body []byte) {
	t.Helper()
	for _, route := range routes {
		req := httptest.NewRequest(http.MethodPost, route, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, route, rec, body)
	}
}

// checkAnswer checks an answer: 200 with JSON, 204 without a body, or an
// error status with a JSON ErrorResponse that says what and why.
func checkAnswer(t *testing.T, route string, rec *httptest.ResponseRecorder, body []byte) {
	t.Helper()
	out := rec.Body.Bytes()
	switch code := rec.Code; {
	case code == http.StatusOK:
		if !json.Valid(out) {
			t.Fatalf("POST %s %q: 200 with a body that is not JSON: %q", route, body, out)
		}
	case code == http.StatusNoContent:
		if len(out) != 0 {
			t.Fatalf("POST %s %q: 204 with a body: %q", route, body, out)
		}
	case code/100 == 4 || code/100 == 5:
		var e api.ErrorResponse
		if err := json.Unmarshal(out, &e); err != nil || e.Error == "" || e.Code == "" {
			t.Fatalf("POST %s %q: %d with a body that is not an ErrorResponse (%v): %q", route, body, code, err, out)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Fatalf("POST %s %q: %d with Content-Type %q", route, body, code, ct)
		}
		if code == http.StatusMisdirectedRequest && (e.Code != api.CodeNotLeader || e.LeaderAddress == "") {
			t.Fatalf("POST %s %q: 421 that names no leader: %+v", route, body, e)
		}
	default:
		t.Fatalf("POST %s %q: status %d", route, body, code)
	}
}

var peerRoutes = []string{"/peer/v1/config", "/peer/v1/admin", "/peer/v1/members", "/peer/v1/failover", "/peer/v1/leader-gone", "/peer/v1/health-view", "/peer/v1/drain"}

// FuzzPeerRequests posts arbitrary bodies to every POST route of the peer
// protocol, on a leader (whose backend takes leader-gone) and on a
// follower.
func FuzzPeerRequests(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		st := api.Status{Node: "d2", Role: "director"}
		leader := api.NewPeerServer(checkedCluster{t}, api.AllowAllPeers{}, fuzzGoneBackend{apitest.NewBackend(st), t}, nil)
		postAll(t, leader.Handler(), peerRoutes, body)
		follower := api.NewPeerServer(notLeader{"192.0.2.11:7946"}, api.AllowAllPeers{}, apitest.NewBackend(st), nil)
		postAll(t, follower.Handler(), peerRoutes, body)
	})
}

var localRoutes = []string{"/v1/admin", "/v1/failover", "/v1/reload", "/v1/members"}

// FuzzLocalAPIRequests posts arbitrary bodies to every POST route of the
// local API.
func FuzzLocalAPIRequests(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		b := checkedBackend{apitest.NewBackend(apitest.SampleStatus()), t}
		postAll(t, api.NewServer(b, nil, api.ServerOptions{}).Handler(), localRoutes, body)
	})
}

// TestFuzzSeeds rewrites the seed corpora with -update-fuzz-seeds;
// otherwise it checks that each target has one.
func TestFuzzSeeds(t *testing.T) {
	seeds := map[string]map[string]any{
		"FuzzPeerRequests": {
			"config":           api.PeerConfigRequest{Spec: testSpec(2), SubmittedBy: "d1"},
			"config-invalid":   api.PeerConfigRequest{Spec: raft.Spec{Services: testSpec(2).Services[:1:1]}},
			"admin":            api.PeerAdminRequest{Ref: webRef, State: raft.AdminDrained},
			"admin-bad-state":  api.PeerAdminRequest{Ref: webRef, State: "gone"},
			"join":             api.JoinRequest{ID: "d3", Address: "192.0.2.13:7946", Voter: true},
			"join-bad-address": api.JoinRequest{ID: "d3", Address: "0.0.0.0:7946"},
			"failover":         api.FailoverRequest{To: "d2"},
			"leader-gone":      api.LeaderGoneRequest{Leader: "d1"},
			"health-view": api.HealthViewRequest{Node: "d1", Generation: 3, Reals: []api.RealView{
				{Ref: webRef, State: raft.HealthDown, Reason: "refused"}}},
			"health-view-bad-state": api.HealthViewRequest{Reals: []api.RealView{{Ref: webRef, State: "maybe"}}},
			"drain":                 api.PeerDrainRequest{Node: "d2", Drain: true, By: "d1"},
			"drain-bad-node":        api.PeerDrainRequest{Node: "../d2", Drain: true, Force: true},
			"trailing":              json.RawMessage(`{"to":"d2"} {}`),
			"null":                  json.RawMessage(`null`),
			"array":                 json.RawMessage(`[1,2]`),
		},
		"FuzzLocalAPIRequests": {
			"admin":            api.AdminRequest{Service: "web", Real: webRef.Address, State: "drained"},
			"admin-by-key":     api.AdminRequest{Service: "tcp/203.0.113.10:80", Real: webRef.Address, State: "enabled"},
			"admin-bad-state":  api.AdminRequest{Service: "web", Real: webRef.Address, State: "off"},
			"failover":         api.FailoverRequest{To: "d2"},
			"failover-any":     api.FailoverRequest{},
			"join":             api.JoinRequest{ID: "d3", Address: "192.0.2.13:7946", Voter: true},
			"join-bad-address": api.JoinRequest{ID: "d3", Address: "[ff02::1]:7946"},
			"empty":            json.RawMessage(``),
			"bad-addr":         json.RawMessage(`{"service":"web","real":"198.51.100.300","state":"drained"}`),
		},
	}
	for target, entries := range seeds {
		dir := filepath.Join("testdata", "fuzz", target)
		if !*updateSeeds {
			if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) == 0 {
				t.Errorf("%s has no seed corpus: run go test -run TestFuzzSeeds -update-fuzz-seeds", target)
			}
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, v := range entries {
			b, ok := v.(json.RawMessage)
			if !ok {
				var err error
				if b, err = json.Marshal(v); err != nil {
					t.Fatal(err)
				}
			}
			entry := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(entry), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
