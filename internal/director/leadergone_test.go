package director

import (
	"errors"
	"net"
	"testing"
)

// TestLeaderRefuses: a port someone listens on is alive; a closed port on
// a live host (connection refused) is a gone daemon.
func TestLeaderRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := leaderRefuses(t.Context(), addr); !errors.Is(err, errLeaderAlive) {
		t.Errorf("listening port: %v, want %v", err, errLeaderAlive)
	}
	ln.Close()
	if err := leaderRefuses(t.Context(), addr); err != nil {
		t.Errorf("closed port: %v, want nil (gone)", err)
	}
	if err := leaderRefuses(t.Context(), ""); err == nil {
		t.Error("no address: nil, want an error")
	}
}
