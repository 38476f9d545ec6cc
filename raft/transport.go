package raft

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Transport timings and limits.
const (
	// DefaultHandshakeTimeout bounds a TLS handshake, inbound or outbound,
	// and the wait for an inbound connection's first byte: a peer that
	// connects and stays silent holds a handshake slot, or a connection,
	// no longer than this.
	DefaultHandshakeTimeout = 10 * time.Second
	// maxPendingHandshakes bounds the inbound connections being
	// handshaken at once; more are closed at once rather than queued, so
	// that the accept loop never waits on a peer.
	maxPendingHandshakes = 64
	// transportTimeout is hashicorp/raft's I/O deadline for one RPC (and
	// its dial timeout); consul uses the same 10 s.
	transportTimeout = 10 * time.Second
	// transportMaxPool is the number of pooled connections per peer.
	transportMaxPool = 3
)

// StreamLayer is the hraft.StreamLayer of the TCP transport: plain TCP, or
// mutual TLS when built with a PeerTLS. It also carries dsrd's peer protocol
// (see PeerListener): one port, one TLS setup for both.
//
// With TLS, hashicorp/raft's accept loop must never wait on a peer (it
// serves one Accept at a time and backs off up to 1 s after every Accept
// error), so handshakes do not run in Accept: a goroutine accepts TCP
// connections and handshakes each in its own goroutine with a deadline;
// Accept returns only connections whose handshake succeeded. A peer without
// a certificate from the cluster CA, a plaintext peer and a silent peer
// are closed (the last when its deadline passes) and never reach raft.
//
// Nor does Accept read: a connection's first byte, which says whether it is
// raft's or the peer protocol's, is read by the connection's own goroutine
// (hashicorp/raft's, on its first Read) within the handshake timeout. A
// connection that starts with PeerProtocolByte leaves raft (which sees an
// end of stream) for PeerListener; any other goes on to raft with its first
// byte intact; a silent one is closed when the deadline passes.
//
// Goroutines (TLS only): the accept loop ends when the StreamLayer is
// closed; a handshake goroutine ends when its handshake completes or fails
// (at the latest after the handshake timeout, or at once on Close) and its
// connection is handed to Accept or closed. Sorting connections out starts
// none: it runs in raft's connection goroutines, each of which waits at most
// the handshake timeout for its first byte (less on Close) and, for a peer
// connection, as long again for a peer server to accept it.
type StreamLayer struct {
	ln               net.Listener
	advertise        net.Addr
	tls              *PeerTLS
	log              *slog.Logger
	handshakeTimeout atomic.Int64 // a time.Duration

	conns   chan net.Conn
	closed  chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	sem     chan struct{}
	mu      sync.Mutex
	pending map[net.Conn]struct{}

	// peerConns hands peer protocol connections to PeerListener's
	// Accept; peerClosed is closed when that listener is closed.
	peerConns  chan net.Conn
	peerClosed chan struct{}
	peerOnce   sync.Once
}

// Listen listens on bind and returns a StreamLayer over it. advertise is the
// address peers reach this node on (bind when invalid); peerTLS nil means
// plain TCP.
func Listen(bind, advertise netip.AddrPort, peerTLS *PeerTLS, logger *slog.Logger) (*StreamLayer, error) {
	ln, err := net.Listen("tcp", bind.String())
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	s, err := NewStreamLayer(ln, advertise, peerTLS, logger)
	if err != nil {
		ln.Close()
		return nil, err
	}
	return s, nil
}

// NewStreamLayer returns a StreamLayer that accepts on ln. advertise is the
// address peers reach this node on; when invalid, ln's address is used,
// which must then not be unspecified (0.0.0.0, ::). peerTLS nil means plain
// TCP. The StreamLayer owns ln.
func NewStreamLayer(ln net.Listener, advertise netip.AddrPort, peerTLS *PeerTLS, logger *slog.Logger) (*StreamLayer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if !advertise.IsValid() {
		ap, err := netip.ParseAddrPort(ln.Addr().String())
		if err != nil {
			return nil, fmt.Errorf("raft listener address %s: %w", ln.Addr(), err)
		}
		advertise = ap
	}
	if advertise.Addr().IsUnspecified() || advertise.Port() == 0 {
		return nil, fmt.Errorf("raft advertise address %s cannot be reached by peers: set cluster.advertise", advertise)
	}
	s := &StreamLayer{
		ln:        ln,
		advertise: net.TCPAddrFromAddrPort(netip.AddrPortFrom(advertise.Addr().Unmap(), advertise.Port())),
		tls:       peerTLS,
		log:       logger,
		conns:     make(chan net.Conn),
		closed:    make(chan struct{}),
		sem:       make(chan struct{}, maxPendingHandshakes),
		pending:   map[net.Conn]struct{}{},

		peerConns:  make(chan net.Conn),
		peerClosed: make(chan struct{}),
	}
	s.handshakeTimeout.Store(int64(DefaultHandshakeTimeout))
	if peerTLS != nil {
		s.wg.Add(1)
		go s.acceptLoop()
	}
	return s, nil
}

// SetHandshakeTimeout changes the TLS handshake deadline of the
// handshakes that start afterwards, and the deadline for the first byte of
// the connections accepted afterwards (DefaultHandshakeTimeout by default).
func (s *StreamLayer) SetHandshakeTimeout(d time.Duration) { s.handshakeTimeout.Store(int64(d)) }

// Accept returns the next inbound connection; with TLS, one whose handshake
// succeeded and whose peer presented a certificate of the cluster CA. The
// connection's first Read sorts it out: see StreamLayer.
func (s *StreamLayer) Accept() (net.Conn, error) {
	var c net.Conn
	if s.tls == nil {
		raw, err := s.ln.Accept()
		if err != nil {
			return nil, err
		}
		c = raw
	} else {
		select {
		case c = <-s.conns:
		case <-s.closed:
			return nil, net.ErrClosed
		}
	}
	if !s.track(c) {
		c.Close()
		return nil, net.ErrClosed
	}
	return &muxConn{Conn: c, s: s}, nil
}

// Close stops accepting, closes the peer listener and the connections still
// handshaking or waiting for their first byte, and waits for the layer's
// goroutines. Established connections are the transport's and the peer
// server's.
func (s *StreamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.ln.Close()
		s.mu.Lock()
		for c := range s.pending {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

// Addr returns the advertised address: hashicorp/raft tells peers this one.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to a peer; with TLS, the handshake is done within timeout
// (the handshake timeout when timeout is zero) and the peer's certificate
// must chain to the cluster CA.
func (s *StreamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	if s.tls == nil {
		return raw, nil
	}
	if timeout <= 0 {
		timeout = time.Duration(s.handshakeTimeout.Load())
	}
	tc := tls.Client(raw, s.tls.client)
	if err := handshake(tc, timeout); err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with raft peer %s: %w", address, err)
	}
	return tc, nil
}

// handshake runs the TLS handshake within timeout, then clears the deadline.
func handshake(tc *tls.Conn, timeout time.Duration) error {
	if err := tc.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if err := tc.Handshake(); err != nil {
		return err
	}
	return tc.SetDeadline(time.Time{})
}

// acceptLoop accepts TCP connections and hands each to a handshake
// goroutine. It ends when the listener is closed.
func (s *StreamLayer) acceptLoop() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		raw, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Like net/http: back off on errors such as EMFILE.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("raft accept failed", "error", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-s.closed:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		delay = 0
		select {
		case s.sem <- struct{}{}:
		default:
			s.log.Warn("raft connection refused: too many pending tls handshakes",
				"remote", raw.RemoteAddr().String(), "limit", maxPendingHandshakes)
			raw.Close()
			continue
		}
		if !s.track(raw) {
			<-s.sem
			raw.Close()
			return
		}
		s.wg.Add(1)
		go s.serverHandshake(raw)
	}
}

// track records a connection being handshaken; false when already closed.
func (s *StreamLayer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return false
	default:
	}
	s.pending[c] = struct{}{}
	return true
}

func (s *StreamLayer) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.pending, c)
	s.mu.Unlock()
}

// serverHandshake handshakes one inbound connection and hands it to Accept.
func (s *StreamLayer) serverHandshake(raw net.Conn) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	tc := tls.Server(raw, s.tls.server)
	err := handshake(tc, time.Duration(s.handshakeTimeout.Load()))
	s.untrack(raw)
	if err != nil {
		select {
		case <-s.closed:
		default:
			s.log.Warn("raft connection refused: tls handshake failed",
				"remote", raw.RemoteAddr().String(), "error", err)
		}
		raw.Close()
		return
	}
	select {
	case s.conns <- tc:
	case <-s.closed:
		tc.Close()
	}
}

// Transport is hashicorp/raft's network transport over a StreamLayer; it
// keeps the layer so that the node can reach its peer protocol.
type Transport struct {
	*hraft.NetworkTransport
	layer *StreamLayer
}

// Layer returns the transport's stream layer.
func (t *Transport) Layer() *StreamLayer { return t.layer }

// NewTransport returns hashicorp/raft's network transport over layer. The
// transport owns layer: closing it closes the layer.
func NewTransport(layer *StreamLayer, logger *slog.Logger) *Transport {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	nt := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		// 1 turns pipelined replication off. hashicorp/raft v1.7.3's
		// pipeline can deadlock after a follower answers Success=false
		// (routine after a leader change): the sender parks on the
		// pipeline's in-progress channel while its decoder parks on the
		// done channel nobody reads, so the follower gets heartbeats but
		// never another entry, and Raft's Shutdown waits for the stuck
		// replication goroutine forever (seen in internal/director's
		// cluster test: a director whose Run never returned; also
		// grafana/pyroscope#5518, hashicorp/raft#612). dsrd replicates a
		// few small entries: synchronous AppendEntries cost nothing here.
		MaxRPCsInFlight: 1,
		Logger:          newHCLogger(logger, "raft-net"),
	})
	return &Transport{NetworkTransport: nt, layer: layer}
}

var (
	_ hraft.StreamLayer = (*StreamLayer)(nil)
	_ hraft.Transport   = (*Transport)(nil)
	_ hraft.WithClose   = (*Transport)(nil)
	_ hraft.WithPreVote = (*Transport)(nil)
)
