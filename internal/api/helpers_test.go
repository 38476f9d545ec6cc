package api_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 20 * time.Second

// recv waits for one value of ch within testTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// serve runs serve(ctx, ln) until the test ends and checks that it ends
// cleanly.
func serve(t *testing.T, ln net.Listener, serve func(context.Context, net.Listener) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(testTimeout):
			t.Error("serve did not end")
		}
	})
}

// servePeer serves a peer server on a TCP listener on 127.0.0.1 and
// returns its address.
func servePeer(t *testing.T, s *api.PeerServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, s.Serve)
	return ln.Addr().String()
}

// tcpPeers is a PeerClient over plain TCP (no protocol byte: the peer
// servers of these tests listen on their own port).
func tcpPeers() api.PeerClient {
	return api.PeerClient{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
}
