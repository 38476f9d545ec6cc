package raft

import (
	"context"
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

	"github.com/dsrd/dsrd/raft/pki"
)

// Limits of the Raft port. A peer that breaks one is disconnected and the
// refusal counted (TransportStats).
const (
	// DefaultHandshakeTimeout bounds a TLS handshake, inbound or outbound,
	// and the wait for an inbound connection's first byte: a peer that
	// connects and stays silent holds a connection no longer than this.
	DefaultHandshakeTimeout = 10 * time.Second
	// maxPendingHandshakes bounds the inbound connections being
	// handshaken at once; more are closed at once rather than queued, so
	// that the accept loop never waits on a peer.
	maxPendingHandshakes = 64
	// maxConns bounds the inbound connections of the Raft port, raft's
	// and the peer protocol's, handshaking or established. A member holds
	// a handful (hashicorp/raft pools transportMaxPool per peer, plus
	// heartbeats and a peer request now and then): 256 is room for
	// dozens of members.
	maxConns = 256
	// maxConnsPerSource bounds the inbound connections from one IP
	// address, so that one host cannot take the port's whole quota.
	maxConnsPerSource = 32
	// rpcIdleTimeout is how long an inbound raft connection may stay
	// silent between two RPCs. A leader sends on its replication
	// connection every commit_timeout and heartbeats every
	// heartbeat_timeout/10; a pooled connection raft does not use for this
	// long is closed, and the dialing side redials one it has left idle
	// for clientRedialIdle (less) before using it again, so no RPC fails
	// on a connection the server closed.
	rpcIdleTimeout = 30 * time.Second
	// clientRedialIdle: an outbound connection idle for longer is
	// replaced by a new one before its next RPC (see rpcIdleTimeout).
	clientRedialIdle = 10 * time.Second
	// transportTimeout is hashicorp/raft's I/O deadline for one RPC (and
	// its dial timeout); consul uses the same 10 s. An inbound RPC must
	// arrive whole within it once its first byte has.
	transportTimeout = 10 * time.Second
	// transportMaxPool is the number of pooled connections per peer.
	transportMaxPool = 3
)

// limits are the StreamLayer's bounds; tests shrink them.
type limits struct {
	conns, perSource, handshakes int
	idle, rpc                    time.Duration
	redialIdle                   time.Duration
	maxRPC                       int64
}

var defaultLimits = limits{
	conns: maxConns, perSource: maxConnsPerSource, handshakes: maxPendingHandshakes,
	idle: rpcIdleTimeout, rpc: transportTimeout, redialIdle: clientRedialIdle, maxRPC: MaxRPCSize,
}

// TransportStats counts what the Raft port refused, by reason (the
// Refused* constants), since the layer started.
type TransportStats struct {
	// Conns is the number of inbound connections open now.
	Conns int
	// Refused counts refused connections and RPCs by reason.
	Refused map[string]uint64
}

// StreamLayer is the hraft.StreamLayer of dsrd's TCP transport, plain or
// mutual TLS, and the front door of the Raft port: every inbound
// connection, raft's or the peer protocol's, passes it.
//
// An inbound connection is accepted only within the port's connection
// limits (total and per source address), then handshaken with a deadline
// (TLS: a certificate of the cluster CA is required), then identified (the
// certificate's dsrd identity becomes the connection's Peer) and admitted
// by the node's Authority (is the node a member?), then its first byte is
// read with the handshake deadline: PeerProtocolByte hands it to
// PeerListener with its Peer; any other byte starts a raft RPC, and the
// connection is served by the Transport registered on the layer, which
// checks every RPC against the Peer (see Transport). All of this runs in
// one goroutine per connection started by the accept loop: the accept loop
// never waits on a peer.
//
// Goroutines: the accept loop ends when the layer is closed; a
// connection's goroutine ends when its connection is closed or handed to
// the peer listener, at the latest after the handshake timeout, the idle
// timeout or the RPC timeout, or at once when the layer is closed (which
// closes every inbound connection it tracks).
type StreamLayer struct {
	ln               net.Listener
	advertise        net.Addr
	tls              *PeerTLS
	log              *slog.Logger
	lim              limits
	handshakeTimeout atomic.Int64 // a time.Duration
	authority        atomic.Pointer[authorityBox]
	rpcServer        atomic.Pointer[Transport]

	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	sem    chan struct{}

	mu        sync.Mutex
	conns     map[*trackedConn]struct{}
	perSource map[netip.Addr]int
	refused   map[string]uint64

	// peerConns hands peer protocol connections to PeerListener's
	// Accept; peerClosed is closed when that listener is closed.
	peerConns  chan net.Conn
	peerClosed chan struct{}
	peerOnce   sync.Once
}

// authorityBox lets an interface sit in an atomic.Pointer.
type authorityBox struct{ a Authority }

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
	return newStreamLayer(ln, advertise, peerTLS, logger, defaultLimits)
}

// newStreamLayer is NewStreamLayer with the limits given (tests shrink
// them).
func newStreamLayer(ln net.Listener, advertise netip.AddrPort, peerTLS *PeerTLS, logger *slog.Logger, lim limits) (*StreamLayer, error) {
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
		lim:       lim,
		closed:    make(chan struct{}),
		sem:       make(chan struct{}, lim.handshakes),
		conns:     map[*trackedConn]struct{}{},
		perSource: map[netip.Addr]int{},
		refused:   map[string]uint64{},

		peerConns:  make(chan net.Conn),
		peerClosed: make(chan struct{}),
	}
	s.handshakeTimeout.Store(int64(DefaultHandshakeTimeout))
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// SetHandshakeTimeout changes the TLS handshake deadline of the
// handshakes that start afterwards, and the deadline for the first byte of
// the connections accepted afterwards (DefaultHandshakeTimeout by default).
func (s *StreamLayer) SetHandshakeTimeout(d time.Duration) { s.handshakeTimeout.Store(int64(d)) }

// SetAuthority installs the gate that admits connections and checks RPCs
// (a Node installs itself when it starts). Without one, every connection
// that passes the handshake is admitted and raft RPCs are checked only
// for the rules of the log.
func (s *StreamLayer) SetAuthority(a Authority) { s.authority.Store(&authorityBox{a}) }

func (s *StreamLayer) gate() Authority {
	if b := s.authority.Load(); b != nil {
		return b.a
	}
	return nil
}

// Stats returns the layer's connection count and refusal counters.
func (s *StreamLayer) Stats() TransportStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := TransportStats{Conns: len(s.conns), Refused: make(map[string]uint64, len(s.refused))}
	for k, v := range s.refused {
		st.Refused[k] = v
	}
	return st
}

// count records a refusal and logs it (at most the reason's first few
// hundred times at warn level, then at debug: a flood must not flood the
// log too).
func (s *StreamLayer) count(reason string, remote net.Addr, err error) {
	s.mu.Lock()
	s.refused[reason]++
	n := s.refused[reason]
	s.mu.Unlock()
	select {
	case <-s.closed:
		return
	default:
	}
	level := slog.LevelWarn
	if n > 100 && n&(n-1) != 0 {
		level = slog.LevelDebug
	}
	s.log.Log(context.Background(), level, "raft port refused a peer", "reason", reason, "remote", addrString(remote), "error", err, "count", n)
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Accept implements hraft.StreamLayer for hashicorp/raft's
// NetworkTransport, which dsrd uses to dial only: inbound raft
// connections are served by the Transport registered on the layer, so
// Accept hands out nothing and returns when the layer is closed.
func (s *StreamLayer) Accept() (net.Conn, error) {
	<-s.closed
	return nil, net.ErrClosed
}

// Close stops accepting, closes the peer listener and every inbound
// connection, and waits for the accept loop. Outbound connections are the
// transport's.
func (s *StreamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		err = s.ln.Close()
		s.mu.Lock()
		conns := make([]*trackedConn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
		s.wg.Wait()
	})
	return err
}

// Addr returns the advertised address: hashicorp/raft tells peers this one.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// acceptLoop accepts TCP connections and starts a goroutine for each that
// the limits admit. It ends when the listener is closed.
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
		c, reason := s.track(raw)
		if c == nil {
			s.count(reason, raw.RemoteAddr(), errors.New("connection limit"))
			raw.Close()
			if reason == "" {
				return
			}
			continue
		}
		if s.tls != nil {
			select {
			case s.sem <- struct{}{}:
			default:
				s.count(RefusedHandshakeLimit, raw.RemoteAddr(), fmt.Errorf("more than %d tls handshakes in progress", s.lim.handshakes))
				c.Close()
				continue
			}
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// track records an inbound connection within the limits; nil and the
// reason when a limit is reached ("" when the layer is closed).
func (s *StreamLayer) track(raw net.Conn) (*trackedConn, string) {
	src := remoteAddr(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.closed:
		return nil, ""
	default:
	}
	if len(s.conns) >= s.lim.conns {
		return nil, RefusedConnLimit
	}
	if s.perSource[src.Addr()] >= s.lim.perSource {
		return nil, RefusedSourceLimit
	}
	c := &trackedConn{Conn: raw, s: s, src: src.Addr()}
	s.conns[c] = struct{}{}
	s.perSource[src.Addr()]++
	return c, ""
}

// remoteAddr returns a connection's remote address, unmapped.
func remoteAddr(c net.Conn) netip.AddrPort {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(addrString(c.RemoteAddr()))
	return ap
}

// trackedConn is an inbound connection counted against the limits until
// it is closed.
type trackedConn struct {
	net.Conn
	s    *StreamLayer
	src  netip.Addr
	once sync.Once
}

// Close implements net.Conn and releases the connection's slot.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		if c.s.perSource[c.src]--; c.s.perSource[c.src] <= 0 {
			delete(c.s.perSource, c.src)
		}
		c.s.mu.Unlock()
	})
	return err
}

// serveConn handshakes, identifies and admits one inbound connection, then
// sorts it out by its first byte.
func (s *StreamLayer) serveConn(c *trackedConn) {
	defer s.wg.Done()
	timeout := time.Duration(s.handshakeTimeout.Load())
	peer := Peer{Remote: remoteAddr(c.Conn)}
	var conn net.Conn = c
	if s.tls != nil {
		tc := tls.Server(c, s.tls.server)
		err := handshake(tc, timeout)
		<-s.sem
		if err != nil {
			s.count(RefusedHandshake, c.RemoteAddr(), err)
			c.Close()
			return
		}
		leaf := tc.ConnectionState().PeerCertificates[0]
		id, err := pki.IdentityOf(leaf)
		if err != nil {
			s.count(RefusedIdentity, c.RemoteAddr(), err)
			c.Close()
			return
		}
		peer.Authenticated, peer.Identity, peer.IPs = true, id, certIPs(leaf.IPAddresses)
		conn = tc
	}
	if g := s.gate(); g != nil {
		if err := g.Admit(peer); err != nil {
			s.count(reasonOf(err, RefusedNotMember), c.RemoteAddr(), err)
			c.Close()
			return
		}
	}

	var first [1]byte
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		c.Close()
		return
	}
	if _, err := conn.Read(first[:]); err != nil {
		select {
		case <-s.closed:
		default:
			s.count(RefusedIdle, c.RemoteAddr(), fmt.Errorf("no first byte: %w", err))
		}
		c.Close()
		return
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		c.Close()
		return
	}
	if first[0] == PeerProtocolByte {
		s.handoff(&peerConn{Conn: conn, peer: peer})
		return
	}
	t := s.rpcServer.Load()
	if t == nil {
		s.log.Warn("raft connection closed: no transport serves raft on this port", "remote", peer.String())
		c.Close()
		return
	}
	t.serveConn(conn, peer, first[0])
}

// certIPs returns a certificate's IP addresses, unmapped.
func certIPs(ips []net.IP) []netip.Addr {
	out := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// Dial connects to a peer for hashicorp/raft; with TLS, the handshake is
// done within timeout (the handshake timeout when timeout is zero), and
// the peer's certificate must chain to the cluster CA and be the member
// the address belongs to (see PeerTLS). The connection is replaced by a
// new one before an RPC when it has been idle long enough for the server
// to have closed it (see rpcIdleTimeout).
func (s *StreamLayer) Dial(address hraft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := s.dial(string(address), timeout)
	if err != nil {
		return nil, err
	}
	return &clientConn{s: s, address: string(address), timeout: timeout, cur: c, lastUse: time.Now()}, nil
}

// dial connects to address and handshakes.
func (s *StreamLayer) dial(address string, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	raw, err := d.Dial("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", address, err)
	}
	if s.tls == nil {
		return raw, nil
	}
	if timeout <= 0 {
		timeout = time.Duration(s.handshakeTimeout.Load())
	}
	expect := ""
	if g := s.gate(); g != nil {
		expect = g.ExpectedID(address)
	}
	tc := tls.Client(raw, s.tls.clientFor(address, expect))
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

// clientConn is an outbound raft connection that redials before an RPC
// when it has been idle for the layer's redial time: the server closes
// connections idle for rpcIdleTimeout, and hashicorp/raft would otherwise
// fail the RPC that finds its pooled connection closed. Redialing is safe
// between RPCs because raft's protocol keeps no state on a connection: a
// request is written whole, then its answer read whole. hashicorp/raft
// uses one connection from one goroutine at a time; the lock is for Close
// from elsewhere.
type clientConn struct {
	s       *StreamLayer
	address string
	timeout time.Duration

	mu       sync.Mutex
	cur      net.Conn
	lastUse  time.Time
	deadline time.Time // the last SetDeadline, applied again after a redial
	closed   bool
}

// Write implements net.Conn: the first write after an idle spell starts a
// new RPC on a new connection.
func (c *clientConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if time.Since(c.lastUse) > c.s.lim.redialIdle {
		fresh, err := c.s.dial(c.address, c.timeout)
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if !c.deadline.IsZero() {
			_ = fresh.SetDeadline(c.deadline)
		}
		c.cur.Close()
		c.cur = fresh
	}
	c.lastUse = time.Now()
	cur := c.cur
	c.mu.Unlock()
	return cur.Write(p)
}

// Read implements net.Conn.
func (c *clientConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	n, err := cur.Read(p)
	c.mu.Lock()
	c.lastUse = time.Now()
	c.mu.Unlock()
	return n, err
}

// Close implements net.Conn.
func (c *clientConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return c.cur.Close()
}

// LocalAddr implements net.Conn.
func (c *clientConn) LocalAddr() net.Addr { return c.conn().LocalAddr() }

// RemoteAddr implements net.Conn.
func (c *clientConn) RemoteAddr() net.Addr { return c.conn().RemoteAddr() }

// SetDeadline implements net.Conn.
func (c *clientConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	return c.cur.SetDeadline(t)
}

// SetReadDeadline implements net.Conn.
func (c *clientConn) SetReadDeadline(t time.Time) error { return c.conn().SetReadDeadline(t) }

// SetWriteDeadline implements net.Conn.
func (c *clientConn) SetWriteDeadline(t time.Time) error { return c.conn().SetWriteDeadline(t) }

func (c *clientConn) conn() net.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

var _ hraft.StreamLayer = (*StreamLayer)(nil)
