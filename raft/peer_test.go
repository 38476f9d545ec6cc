package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// muxPair is two stream layers, each serving a hashicorp/raft transport,
// as two nodes have them.
type muxPair struct {
	server, client       *StreamLayer
	serverTr, clientTr   *Transport
	serverAddr           string
	serverTLS, clientTLS *PeerTLS
}

func newMuxPair(t *testing.T, withTLS bool) *muxPair {
	t.Helper()
	p := &muxPair{}
	if withTLS {
		ca := testutil.NewCA(t, "cluster-ca")
		var err error
		if p.serverTLS, err = NewPeerTLS(must(ca.Issue(t, "d1")), ca.Pool()); err != nil {
			t.Fatal(err)
		}
		if p.clientTLS, err = NewPeerTLS(must(ca.Issue(t, "d2")), ca.Pool()); err != nil {
			t.Fatal(err)
		}
	}
	p.server = tlsLayer(t, p.serverTLS)
	p.client = tlsLayer(t, p.clientTLS)
	p.serverTr = NewTransport(p.server, testutil.Logger(t))
	p.clientTr = NewTransport(p.client, testutil.Logger(t))
	t.Cleanup(func() {
		p.serverTr.Close()
		p.clientTr.Close()
	})
	p.serverAddr = p.server.Addr().String()
	return p
}

// acceptPeer runs the peer listener's Accept in the background.
func acceptPeer(ln net.Listener) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	return ch
}

// expectPeerExchange dials the server's peer protocol from the client and
// checks that the connection reaches the peer listener and works both
// ways, the protocol byte consumed.
func (p *muxPair) expectPeerExchange(t *testing.T) {
	t.Helper()
	accepted := acceptPeer(p.server.PeerListener())
	c, err := p.client.DialPeer(testutil.Context(t, testTimeout), p.serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	sc, ok := recv(t, accepted, "peer connection")
	if !ok {
		t.Fatal("peer listener closed")
	}
	defer sc.Close()
	_ = sc.SetDeadline(time.Now().Add(testTimeout))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(sc, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer server read %q, %v", buf, err)
	}
	if _, err := sc.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("peer client read %q, %v", buf, err)
	}
}

// expectRaftRPC sends a raft RPC from the client's transport to the
// server's and checks its answer.
func (p *muxPair) expectRaftRPC(t *testing.T, term uint64) {
	t.Helper()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case rpc := <-p.serverTr.Consumer():
			req, ok := rpc.Command.(*hraft.AppendEntriesRequest)
			if !ok {
				rpc.Respond(nil, errors.New("unexpected rpc"))
				return
			}
			rpc.Respond(&hraft.AppendEntriesResponse{Term: req.Term, Success: true}, nil)
		case <-done:
		}
	}()
	var resp hraft.AppendEntriesResponse
	err := p.clientTr.AppendEntries("d1", hraft.ServerAddress(p.serverAddr),
		&hraft.AppendEntriesRequest{RPCHeader: hraft.RPCHeader{ID: []byte("d2"), Addr: []byte(p.client.Addr().String())}, Term: term}, &resp)
	if err != nil {
		t.Fatalf("raft rpc: %v", err)
	}
	if !resp.Success || resp.Term != term {
		t.Fatalf("raft rpc answer %+v", resp)
	}
}

// TestPeerMux checks that the Raft port carries both raft and the peer
// protocol, plain and over mutual TLS, and that silent connections hold
// nothing up.
func TestPeerMux(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		name := "plain"
		if withTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) {
			p := newMuxPair(t, withTLS)
			p.expectRaftRPC(t, 1)
			p.expectPeerExchange(t)

			// Silent connections, raw and (with TLS) past the
			// handshake, neither block raft nor the peer protocol.
			var silent []net.Conn
			for range 3 {
				c, err := net.Dial("tcp", p.serverAddr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				silent = append(silent, c)
			}
			if withTLS {
				c, err := tls.Dial("tcp", p.serverAddr, p.clientTLS.clientFor(p.serverAddr, ""))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				silent = append(silent, c)
			}
			p.expectRaftRPC(t, 2)
			p.expectPeerExchange(t)
			p.expectRaftRPC(t, 3)

			// Closing the layer closes its pending connections and the
			// peer listener.
			ln := p.server.PeerListener()
			accepted := acceptPeer(ln)
			p.serverTr.Close()
			for _, c := range silent {
				expectClosedByServer(t, c)
			}
			if c, ok := recv(t, accepted, "peer listener to close"); ok {
				c.Close()
				t.Fatal("peer listener accepted after close")
			}
			if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Accept after close: %v", err)
			}
		})
	}
}

// TestPeerMuxSilentDeadline checks that a connection that sends nothing is
// closed once the deadline for its first byte passes.
func TestPeerMuxSilentDeadline(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		p := newMuxPair(t, withTLS)
		p.server.SetHandshakeTimeout(300 * time.Millisecond)
		var c net.Conn
		var err error
		if withTLS {
			c, err = tls.Dial("tcp", p.serverAddr, p.clientTLS.clientFor(p.serverAddr, ""))
		} else {
			c, err = net.Dial("tcp", p.serverAddr)
		}
		if err != nil {
			t.Fatal(err)
		}
		expectClosedByServer(t, c)
		c.Close()
		p.server.SetHandshakeTimeout(DefaultHandshakeTimeout)
		p.expectRaftRPC(t, 1)
	}
}

// TestPeerMuxOtherCA checks that a node of another CA reaches neither raft
// nor the peer protocol, in either direction.
func TestPeerMuxOtherCA(t *testing.T) {
	p := newMuxPair(t, true)
	other := testutil.NewCA(t, "other-ca")
	otherTLS, err := NewPeerTLS(must(other.Issue(t, "intruder")), other.Pool())
	if err != nil {
		t.Fatal(err)
	}
	impostor := tlsLayer(t, otherTLS)
	impostorTr := NewTransport(impostor, testutil.Logger(t))
	t.Cleanup(func() { impostorTr.Close() })

	accepted := acceptPeer(p.server.PeerListener())
	if c, err := impostor.DialPeer(testutil.Context(t, testTimeout), p.serverAddr); err == nil {
		// TLS 1.3: the server's refusal of the client certificate
		// arrives after the client's handshake.
		expectRefused(t, c)
		c.Close()
	}
	if c, err := impostor.Dial(hraft.ServerAddress(p.serverAddr), time.Second); err == nil {
		expectRefused(t, c)
		c.Close()
	}
	if c, err := p.client.DialPeer(testutil.Context(t, testTimeout), impostor.Addr().String()); err == nil {
		c.Close()
		t.Error("dialed the peer protocol of a server of another ca")
	}
	if c, err := p.client.Dial(hraft.ServerAddress(impostor.Addr().String()), time.Second); err == nil {
		c.Close()
		t.Error("dialed raft on a server of another ca")
	}
	// The refused peer never reached the peer listener: the next
	// connection it accepts is the valid one.
	c, err := p.client.DialPeer(testutil.Context(t, testTimeout), p.serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, ok := recv(t, accepted, "valid peer connection")
	if !ok {
		t.Fatal("peer listener closed")
	}
	defer sc.Close()
	if sc.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("peer listener accepted %s, want the valid peer %s", sc.RemoteAddr(), c.LocalAddr())
	}
	p.expectRaftRPC(t, 1)
}

// TestPeerListenerClosed checks that closing the peer listener refuses
// peer connections and leaves raft alone.
func TestPeerListenerClosed(t *testing.T) {
	p := newMuxPair(t, false)
	ln := p.server.PeerListener()
	ln.Close()
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	c, err := p.client.DialPeer(testutil.Context(t, testTimeout), p.serverAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosedByServer(t, c)
	p.expectRaftRPC(t, 1)
}

// TestNodePeerListener checks the node's access to the peer protocol.
func TestNodePeerListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	cl := ClusterSettings{Bind: addr}
	fastTimings(&cl)
	n, err := New(Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: t.TempDir(), Cluster: cl, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if n.PeerListener() != nil {
		t.Error("peer listener before Start")
	}
	if _, err := n.DialPeer(testutil.Context(t, testTimeout), addr.String()); !errors.Is(err, ErrNoPeerTransport) {
		t.Errorf("DialPeer before Start: %v", err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	pl := n.PeerListener()
	if pl == nil {
		t.Fatal("no peer listener after Start")
	}
	accepted := acceptPeer(pl)
	c, err := n.DialPeer(testutil.Context(t, testTimeout), addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if sc, ok := recv(t, accepted, "peer connection to self"); !ok {
		t.Fatal("peer listener closed")
	} else {
		sc.Close()
	}
	n.Close()
	if _, err := pl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("peer listener Accept after node Close: %v", err)
	}

	// A node on the in-memory transport has no peer protocol.
	_, tr := hraft.NewInmemTransport("192.0.2.1:7000")
	m, err := New(Config{ValidateSpec: testValidate, NodeID: "d2", DataDir: t.TempDir(), Cluster: cl, Transport: tr, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if m.PeerListener() != nil {
		t.Error("peer listener on the in-memory transport")
	}
	if _, err := m.DialPeer(context.Background(), "192.0.2.1:7000"); !errors.Is(err, ErrNoPeerTransport) {
		t.Errorf("DialPeer on the in-memory transport: %v", err)
	}
}
