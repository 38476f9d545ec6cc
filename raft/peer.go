package raft

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// PeerProtocolByte is the first byte a peer protocol connection sends on the
// Raft port, after the TLS handshake when TLS is on. hashicorp/raft's
// NetworkTransport starts every connection it dials with its RPC type,
// 0 to 4 in v1.7, so any other value tells the two apart; 0xD5 leaves room
// for many more raft RPC types.
const PeerProtocolByte byte = 0xD5

// handoff gives a peer protocol connection to the peer listener's Accept;
// it waits no longer than the handshake timeout for a peer server to take
// it, and closes it when none does.
func (s *StreamLayer) handoff(c *peerConn) {
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
// past the same mutual TLS and admission as raft's. Each carries the Peer
// it was proven to be: serve them with an http.Server whose ConnContext is
// PeerConnContext, and read it with PeerFrom. There is one per layer:
// closing it refuses later peer connections and leaves raft alone; closing
// the layer closes it.
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
	expect := ""
	if g := s.gate(); g != nil {
		expect = g.ExpectedID(address)
	}
	return dialPeer(ctx, address, s.tls, expect, time.Duration(s.handshakeTimeout.Load()))
}

// DialPeer connects to the peer protocol of the node at address as
// StreamLayer.DialPeer does, for a program that runs no node (dsrd director
// release-vips): with peerTLS's client certificate when not nil (see
// LoadPeerTLS), the handshake bounded by ctx and DefaultHandshakeTimeout.
// The server's certificate must name the node id expectID when it is not
// empty, and carry the address's IP otherwise.
func DialPeer(ctx context.Context, address, expectID string, peerTLS *PeerTLS) (net.Conn, error) {
	return dialPeer(ctx, address, peerTLS, expectID, DefaultHandshakeTimeout)
}

// dialPeer is DialPeer with the handshake timeout given.
func dialPeer(ctx context.Context, address string, peerTLS *PeerTLS, expectID string, handshakeTimeout time.Duration) (net.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, fmt.Errorf("dial peer %s: %w", address, err)
	}
	conn := raw
	if peerTLS != nil {
		hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		tc := tls.Client(raw, peerTLS.clientFor(address, expectID))
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
