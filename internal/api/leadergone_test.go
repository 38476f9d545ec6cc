package api_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/testutil"
)

// goneBackend is a backend that acts on leader-gone: it records the
// leader named and answers err.
type goneBackend struct {
	*apitest.Backend
	got []string
	err error
}

func (b *goneBackend) LeaderGone(_ context.Context, leader string) error {
	b.got = append(b.got, leader)
	return b.err
}

// TestPeerLeaderGone: POST /peer/v1/leader-gone reaches a backend that
// handles it, through PeerClient.LeaderGone; a backend that does not (a
// witness) answers not found; a request naming no leader is invalid; the
// backend's refusal comes back as an error.
func TestPeerLeaderGone(t *testing.T) {
	b := &goneBackend{Backend: apitest.NewBackend(api.Status{Node: "d2", Role: "director"})}
	withHandler := httptest.NewServer(api.NewPeerServer(nil, api.AllowAllPeers{}, b, testutil.Logger(t)).Handler())
	t.Cleanup(withHandler.Close)
	without := httptest.NewServer(api.NewPeerServer(nil, api.AllowAllPeers{}, apitest.NewBackend(api.Status{Node: "w1", Role: "witness"}), testutil.Logger(t)).Handler())
	t.Cleanup(without.Close)

	// The peer protocol's first byte is the dialer's business: plain TCP
	// to the test servers here.
	c := api.PeerClient{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", address)
	}}
	addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	ctx := testutil.Context(t, testTimeout)

	if err := c.LeaderGone(ctx, addr(withHandler), "d1"); err != nil {
		t.Fatalf("leader-gone to a director: %v", err)
	}
	if len(b.got) != 1 || b.got[0] != "d1" {
		t.Errorf("the backend was told %v, want [d1]", b.got)
	}
	if err := c.LeaderGone(ctx, addr(without), "d1"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("leader-gone to a witness: %v, want %v", err, api.ErrNotFound)
	}
	if err := c.LeaderGone(ctx, addr(withHandler), ""); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("leader-gone naming no leader: %v, want %v", err, api.ErrInvalid)
	}
	b.err = errors.New("the leader's raft port still accepts connections")
	err := c.LeaderGone(ctx, addr(withHandler), "d1")
	var ae *api.Error
	if !errors.As(err, &ae) || ae.StatusCode < http.StatusBadRequest || !strings.Contains(err.Error(), "still accepts") {
		t.Errorf("a refused leader-gone: %v, want the backend's refusal", err)
	}
}
