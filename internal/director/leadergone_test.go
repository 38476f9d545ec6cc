package director

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
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

// goneBackend is a peer that acts on leader-gone (a director): it
// records the leaders it was told of and answers err.
type goneBackend struct {
	*apitest.Backend
	mu  sync.Mutex
	got []string
	err error
}

func (b *goneBackend) LeaderGone(_ context.Context, leader string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got = append(b.got, leader)
	return b.err
}

func (b *goneBackend) told() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// servePeer serves b's peer protocol on a Raft port of its own on
// 127.0.0.1, with the mutual TLS of tlsFiles, as a member of the cluster
// does (hashicorp/raft's transport accepts, the peer listener gets the
// peer protocol's connections); it returns the port's address.
func servePeer(t *testing.T, b api.Backend, tlsFiles config.TLS) netip.AddrPort {
	t.Helper()
	peerTLS, err := raft.LoadPeerTLS(clusterspec.TLS(tlsFiles))
	if err != nil {
		t.Fatal(err)
	}
	layer, err := raft.Listen(netip.MustParseAddrPort("127.0.0.1:0"), netip.AddrPort{}, peerTLS, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewTransport(layer, testutil.Logger(t))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		api.NewPeerServer(nil, api.AllowAllPeers{}, b, testutil.Logger(t)).Serve(ctx, layer.PeerListener())
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		trans.Close()
	})
	return netip.MustParseAddrPort(layer.Addr().String())
}

// TestHintLeaderGone: release-vips's word goes over the peer protocol with
// the cluster's mutual TLS to the other members in the peers' order,
// skipping this director, until one takes it: not the witness (it has no
// such handler), not a director that refuses; the first that takes it is
// named. A member of another CA is never reached.
func TestHintLeaderGone(t *testing.T) {
	ca := testutil.NewCA(t, "cluster")
	wit := apitest.NewBackend(api.Status{Node: "wit", Role: "witness"})
	refusing := &goneBackend{Backend: apitest.NewBackend(api.Status{Node: "d2"}), err: errLeaderAlive}
	taking := &goneBackend{Backend: apitest.NewBackend(api.Status{Node: "d3"})}
	cfg := &config.Director{
		Node: config.Node{ID: "d1"},
		Cluster: config.Cluster{
			TLS: config.TLS(ca.Files(t, "d1")),
			Peers: []config.Peer{
				{ID: "d1", Address: netip.MustParseAddrPort("127.0.0.1:1")}, // this director: never asked
				{ID: "wit", Address: servePeer(t, wit, config.TLS(ca.Files(t, "wit")))},
				{ID: "d2", Address: servePeer(t, refusing, config.TLS(ca.Files(t, "d2")))},
				{ID: "d3", Address: servePeer(t, taking, config.TLS(ca.Files(t, "d3")))},
			},
		},
	}
	to, err := HintLeaderGone(t.Context(), cfg, testutil.Logger(t))
	if err != nil || to != "d3" {
		t.Fatalf("HintLeaderGone = %q, %v; want d3", to, err)
	}
	if got := refusing.told(); !slices.Equal(got, []string{"d1"}) {
		t.Errorf("the refusing director was told %v, want [d1]", got)
	}
	if got := taking.told(); !slices.Equal(got, []string{"d1"}) {
		t.Errorf("the taking director was told %v, want [d1]", got)
	}

	// Nobody takes it: every member's answer comes back.
	cfg.Cluster.Peers = cfg.Cluster.Peers[:3]
	if to, err := HintLeaderGone(t.Context(), cfg, testutil.Logger(t)); to != "" || err == nil ||
		!strings.Contains(err.Error(), "wit:") || !strings.Contains(err.Error(), "d2:") {
		t.Errorf("HintLeaderGone with no taker = %q, %v; want no one, and why for wit and d2", to, err)
	}

	// A certificate of another CA reaches no one.
	cfg.Cluster.Peers = append(cfg.Cluster.Peers, config.Peer{ID: "d3", Address: cfg.Cluster.Peers[0].Address})
	cfg.Cluster.Peers[3].Address = servePeer(t, taking, config.TLS(ca.Files(t, "d3")))
	cfg.Cluster.TLS = config.TLS(testutil.NewCA(t, "other").Files(t, "d1"))
	if to, err := HintLeaderGone(t.Context(), cfg, testutil.Logger(t)); to != "" || err == nil {
		t.Errorf("HintLeaderGone with a foreign certificate = %q, %v; want an error", to, err)
	}
	if got := taking.told(); len(got) != 1 {
		t.Errorf("a foreign certificate reached the director: it was told %v", got)
	}
}
