package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// PeerProtocolByte is the first byte a peer protocol connection sends on the
// Raft port, after the TLS handshake when TLS is on. hashicorp/raft's
// NetworkTransport starts every connection it dials with its RPC type,
// 0 to 4 in v1.7, so any other value tells the two apart; 0xD5 leaves room
// for many more raft RPC types.
const PeerProtocolByte byte = 0xD5

// muxConn states.
const (
	muxUnread int32 = iota // the first byte is not read yet
	muxRaft                // raft's: reads go through
	muxPeer                // handed to the peer listener: raft sees EOF
	muxDead                // closed before a first byte arrived
)

// muxConn is an inbound connection as Accept gives it to raft. Its first
// Read reads the first byte with the handshake deadline: a raft byte is
// returned to raft as read, the peer protocol byte hands the connection to
// the peer listener and ends raft's stream, and no byte in time closes the
// connection. hashicorp/raft reads and closes an inbound connection from
// one goroutine (its handleConn), so the state needs no lock; it is atomic
// so that a stray Close from elsewhere stays safe.
type muxConn struct {
	net.Conn
	s     *StreamLayer
	state atomic.Int32
}

// Read implements net.Conn.
func (c *muxConn) Read(p []byte) (int, error) {
	switch c.state.Load() {
	case muxRaft:
		return c.Conn.Read(p)
	case muxPeer, muxDead:
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	return c.sniff(p)
}

// sniff reads the first byte into p[0] and sorts the connection out.
func (c *muxConn) sniff(p []byte) (int, error) {
	s := c.s
	defer s.untrack(c.Conn)
	timeout := time.Duration(s.handshakeTimeout.Load())
	if err := c.Conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return c.die("set deadline", err)
	}
	n, err := c.Conn.Read(p[:1])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return c.die("no first byte", err)
	}
	if err := c.Conn.SetReadDeadline(time.Time{}); err != nil {
		return c.die("clear deadline", err)
	}
	if p[0] != PeerProtocolByte {
		c.state.Store(muxRaft)
		return 1, nil
	}
	c.state.Store(muxPeer)
	s.untrack(c.Conn)
	s.handoff(c.Conn)
	return 0, io.EOF
}

// die closes a connection that sent no first byte and ends raft's stream
// quietly (hashicorp/raft logs any error but EOF as a decode failure).
func (c *muxConn) die(what string, err error) (int, error) {
	c.state.Store(muxDead)
	c.Conn.Close()
	select {
	case <-c.s.closed:
	default:
		if !errors.Is(err, io.EOF) {
			c.s.log.Warn("raft connection closed: "+what,
				"remote", c.Conn.RemoteAddr().String(), "error", err)
		}
	}
	return 0, io.EOF
}

// Close implements net.Conn; a connection handed to the peer listener is
// the peer server's to close.
func (c *muxConn) Close() error {
	if c.state.Load() == muxPeer {
		return nil
	}
	c.s.untrack(c.Conn)
	return c.Conn.Close()
}

// handoff gives a peer protocol connection to the peer listener's Accept;
// it waits no longer than the handshake timeout for a peer server to take
// it, and closes it when none does.
func (s *StreamLayer) handoff(c net.Conn) {
	t := time.NewTimer(time.Duration(s.handshakeTimeout.Load()))
	defer t.Stop()
	select {
	case s.peerConns <- c:
	case <-s.closed:
		c.Close()
	case <-s.peerClosed:
		c.Close()
	case <-t.C:
		s.log.Warn("peer connection refused: no peer server is accepting",
			"remote", c.RemoteAddr().String())
		c.Close()
	}
}

// PeerListener returns the listener of the peer protocol: the connections
// to the Raft port that started with PeerProtocolByte, the byte consumed,
// past the same mutual TLS as raft's. There is one per layer: closing it
// refuses later peer connections and leaves raft alone; closing the layer
// closes it. Peer connections are sorted out by raft's own connection
// goroutines, so they arrive only while the layer serves a transport
// (NewTransport).
func (s *StreamLayer) PeerListener() net.Listener { return peerListener{s} }

// peerListener is the net.Listener of the peer protocol.
type peerListener struct{ s *StreamLayer }

// Accept implements net.Listener.
func (l peerListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.s.peerConns:
		return c, nil
	case <-l.s.peerClosed:
		return nil, net.ErrClosed
	case <-l.s.closed:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (l peerListener) Close() error {
	l.s.peerOnce.Do(func() { close(l.s.peerClosed) })
	return nil
}

// Addr implements net.Listener: the Raft port's address.
func (l peerListener) Addr() net.Addr { return l.s.ln.Addr() }

// DialPeer connects to the peer protocol of the node at address (host:port
// of its Raft port): TCP, the mutual TLS handshake when the layer has TLS,
// then PeerProtocolByte. ctx bounds the whole; the handshake also by the
// handshake timeout.
func (s *StreamLayer) DialPeer(ctx context.Context, address string) (net.Conn, error) {
	return dialPeer(ctx, address, s.tls, time.Duration(s.handshakeTimeout.Load()))
}

// DialPeer connects to the peer protocol of the node at address as
// StreamLayer.DialPeer does, for a program that runs no node (dsrd director
// release-vips): with peerTLS's client certificate when not nil (see
// LoadPeerTLS), the handshake bounded by ctx and DefaultHandshakeTimeout.
func DialPeer(ctx context.Context, address string, peerTLS *PeerTLS) (net.Conn, error) {
	return dialPeer(ctx, address, peerTLS, DefaultHandshakeTimeout)
}

// dialPeer is DialPeer with the handshake timeout given.
func dialPeer(ctx context.Context, address string, peerTLS *PeerTLS, handshakeTimeout time.Duration) (net.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("dial peer %s: %w", address, err)
	}
	conn := raw
	if peerTLS != nil {
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		tc := tls.Client(raw, peerTLS.client)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake with peer %s: %w", address, err)
		}
		conn = tc
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(handshakeTimeout)
	}
	if err := conn.SetWriteDeadline(dl); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial peer %s: %w", address, err)
	}
	if _, err := conn.Write([]byte{PeerProtocolByte}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial peer %s: %w", address, err)
	}
	if err := conn.SetWriteDeadline(time.Time{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("dial peer %s: %w", address, err)
	}
	return conn, nil
}

// ErrNoPeerTransport is returned by the peer protocol methods of a Node
// that is not started or runs on a transport other than this package's TCP
// transport (the in-memory transport of tests).
var ErrNoPeerTransport = errors.New("raft node has no tcp transport for the peer protocol")

// streamLayer returns the layer of the node's TCP transport, or nil.
func (n *Node) streamLayer() *StreamLayer {
	n.mu.Lock()
	own := n.ownTrans
	n.mu.Unlock()
	if t, ok := own.(*Transport); ok {
		return t.Layer()
	}
	if t, ok := n.cfg.Transport.(*Transport); ok {
		return t.Layer()
	}
	return nil
}

// PeerListener returns the listener of the peer protocol on the node's Raft
// port (see StreamLayer.PeerListener); call it after Start. It is nil when
// the node has no TCP transport (ErrNoPeerTransport). The transport closes
// it when the node closes.
func (n *Node) PeerListener() net.Listener {
	l := n.streamLayer()
	if l == nil {
		return nil
	}
	return l.PeerListener()
}

// DialPeer connects to the peer protocol of the member at address (its Raft
// address), with the node's mutual TLS when configured; see
// StreamLayer.DialPeer.
func (n *Node) DialPeer(ctx context.Context, address string) (net.Conn, error) {
	l := n.streamLayer()
	if l == nil {
		return nil, ErrNoPeerTransport
	}
	return l.DialPeer(ctx, address)
}
