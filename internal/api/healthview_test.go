package api_test

import (
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// viewBackend is a director's backend that records the health views it
// is handed.
type viewBackend struct {
	*apitest.Backend
	from []string
	got  []api.HealthViewRequest
}

func (b *viewBackend) HealthView(_ context.Context, from string, req api.HealthViewRequest) error {
	b.from, b.got = append(b.from, from), append(b.got, req)
	return nil
}

// TestPeerHealthView: POST /peer/v1/health-view reaches a backend that
// aggregates views, through PeerClient.HealthView; a witness answers not
// found; an invalid view (unknown state, too long a reason, a real
// without an address) never reaches the backend.
func TestPeerHealthView(t *testing.T) {
	b := &viewBackend{Backend: apitest.NewBackend(api.Status{Node: "d2", Role: "director"})}
	director := httptest.NewServer(api.NewPeerServer(nil, api.AllowAllPeers{}, b, testutil.Logger(t)).Handler())
	t.Cleanup(director.Close)
	witness := httptest.NewServer(api.NewPeerServer(nil, api.AllowAllPeers{}, apitest.NewBackend(api.Status{Node: "w1", Role: "witness"}), testutil.Logger(t)).Handler())
	t.Cleanup(witness.Close)
	c := api.PeerClient{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", address)
	}}
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	ctx := testutil.Context(t, testTimeout)
	ref := raft.RealRef{Service: ipvs.MustParseServiceKey("tcp/203.0.113.10:80"), Address: netip.MustParseAddr("198.51.100.21")}

	view := api.HealthViewRequest{Node: "d1", Generation: 4, Reals: []api.RealView{{Ref: ref, State: raft.HealthDown, Reason: "refused"}}}
	if err := c.HealthView(ctx, addr(director), view); err != nil {
		t.Fatalf("health view to a director: %v", err)
	}
	if len(b.got) != 1 || b.from[0] != "d1" || b.got[0].Generation != 4 || b.got[0].Reals[0] != view.Reals[0] {
		t.Errorf("the backend got %+v from %v", b.got, b.from)
	}
	if err := c.HealthView(ctx, addr(witness), view); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("health view to a witness: %v, want %v", err, api.ErrNotFound)
	}
	for name, bad := range map[string]api.RealView{
		"unknown state": {Ref: ref, State: "maybe"},
		"long reason":   {Ref: ref, State: raft.HealthUp, Reason: strings.Repeat("x", raft.MaxHealthReason+1)},
		"no address":    {Ref: raft.RealRef{Service: ref.Service}, State: raft.HealthUp},
	} {
		if err := c.HealthView(ctx, addr(director), api.HealthViewRequest{Reals: []api.RealView{bad}}); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%s: %v, want %v", name, err, api.ErrInvalid)
		}
	}
	if len(b.got) != 1 {
		t.Errorf("invalid views reached the backend: %d views", len(b.got))
	}
}
