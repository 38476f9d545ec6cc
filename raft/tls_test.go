package raft

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// tlsLayer listens on 127.0.0.1 with the given TLS.
func tlsLayer(t testing.TB, pt *PeerTLS) *StreamLayer {
	t.Helper()
	s, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), netip.AddrPort{}, pt, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// acceptOne accepts one peer protocol connection in the background: the
// connections that pass the layer's handshake, identity and admission.
func acceptOne(s *StreamLayer) <-chan net.Conn {
	ch := make(chan net.Conn, 1)
	ln := s.PeerListener()
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

// expectAcceptedFrom checks that the next accepted connection is client's.
func expectAcceptedFrom(t *testing.T, accepted <-chan net.Conn, client net.Conn) {
	t.Helper()
	c, ok := recv(t, accepted, "accepted connection")
	if !ok {
		t.Fatal("accept failed")
	}
	defer c.Close()
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Fatalf("accepted %s, want the valid peer %s", c.RemoteAddr(), client.LocalAddr())
	}
	// The connection works both ways.
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// expectRefused checks that the server ends conn without speaking raft.
func expectRefused(t *testing.T, conn net.Conn) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	_, _ = conn.Write([]byte("hello"))
	buf := make([]byte, 64)
	for {
		_, err := conn.Read(buf)
		if err == nil {
			continue // a TLS alert or record: keep reading until the end
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("connection not closed by the server")
		}
		return
	}
}

func TestLoadPeerTLS(t *testing.T) {
	ca := testutil.NewCA(t, "cluster-ca")
	other := testutil.NewCA(t, "other-ca")
	good := files(ca.Files(t, "d1"))
	if pt, err := LoadPeerTLS(good); err != nil || pt == nil {
		t.Fatalf("LoadPeerTLS = %v, %v", pt, err)
	}
	if pt, err := LoadPeerTLS(TLSFiles{}); err != nil || pt != nil {
		t.Errorf("LoadPeerTLS of no TLS = %v, %v", pt, err)
	}
	foreign := files(other.Files(t, "d9"))
	for name, c := range map[string]TLSFiles{
		"partial":              {Cert: good.Cert, Key: good.Key},
		"missing file":         {Cert: good.Cert, Key: good.Key, CA: good.CA + ".nope"},
		"cert of another ca":   {Cert: foreign.Cert, Key: foreign.Key, CA: good.CA},
		"key of another cert":  {Cert: good.Cert, Key: foreign.Key, CA: good.CA},
		"ca file without cert": {Cert: good.Cert, Key: good.Key, CA: good.Key},
	} {
		if _, err := LoadPeerTLS(c); err == nil {
			t.Errorf("%s: LoadPeerTLS succeeded", name)
		}
	}
}

func TestStreamLayerTLS(t *testing.T) {
	ca := testutil.NewCA(t, "cluster-ca")
	other := testutil.NewCA(t, "other-ca")
	serverTLS, err := LoadPeerTLS(files(ca.Files(t, "d1")))
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := LoadPeerTLS(files(ca.Files(t, "d2")))
	if err != nil {
		t.Fatal(err)
	}
	server := tlsLayer(t, serverTLS)
	client := tlsLayer(t, clientTLS)
	addr := hraft.ServerAddress(server.Addr().String())

	t.Run("valid peer", func(t *testing.T) {
		accepted := acceptOne(server)
		conn, err := client.DialPeer(t.Context(), string(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if cs := conn.(*tls.Conn).ConnectionState(); cs.Version != tls.VersionTLS13 {
			t.Errorf("tls version %x", cs.Version)
		}
		expectAcceptedFrom(t, accepted, conn)
	})

	foreignCert, _, _ := other.Issue(t, "intruder")
	refusals := map[string]func() (net.Conn, error){
		"certificate of another ca": func() (net.Conn, error) {
			return tls.Dial("tcp", string(addr), &tls.Config{
				Certificates: []tls.Certificate{foreignCert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
			})
		},
		"no certificate": func() (net.Conn, error) {
			return tls.Dial("tcp", string(addr), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		},
		"tls 1.2": func() (net.Conn, error) {
			cert, _, _ := ca.Issue(t, "old")
			c, err := net.Dial("tcp", string(addr))
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{cert},
				InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
			return tc, nil // the handshake runs on the first write
		},
		"plaintext": func() (net.Conn, error) {
			return net.Dial("tcp", string(addr))
		},
	}
	for name, dial := range refusals {
		t.Run(name, func(t *testing.T) {
			accepted := acceptOne(server)
			bad, err := dial()
			if err == nil {
				expectRefused(t, bad)
				bad.Close()
			}
			// The refused peer never reaches Accept: the next
			// connection accepted is the valid one.
			good, err := client.DialPeer(t.Context(), string(addr))
			if err != nil {
				t.Fatal(err)
			}
			defer good.Close()
			expectAcceptedFrom(t, accepted, good)
		})
	}

	t.Run("server of another ca", func(t *testing.T) {
		otherTLS, err := NewPeerTLS(foreignCert, other.Pool())
		if err != nil {
			t.Fatal(err)
		}
		impostor := tlsLayer(t, otherTLS)
		if c, err := client.Dial(hraft.ServerAddress(impostor.Addr().String()), time.Second); err == nil {
			c.Close()
			t.Fatal("dialed a server whose certificate is of another ca")
		}
	})

	t.Run("plain layer dialing tls", func(t *testing.T) {
		plain := tlsLayer(t, nil)
		accepted := acceptOne(server)
		c, err := plain.Dial(addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		expectRefused(t, c)
		c.Close()
		good, err := client.DialPeer(t.Context(), string(addr))
		if err != nil {
			t.Fatal(err)
		}
		defer good.Close()
		expectAcceptedFrom(t, accepted, good)
	})
}

// TestStreamLayerSilentPeers checks that peers that connect and say nothing
// neither block the accept loop nor hold a connection past the handshake
// timeout.
func TestStreamLayerSilentPeers(t *testing.T) {
	ca := testutil.NewCA(t, "cluster-ca")
	serverTLS, err := NewPeerTLS(must(ca.Issue(t, "d1")), ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	clientTLS, err := NewPeerTLS(must(ca.Issue(t, "d2")), ca.Pool())
	if err != nil {
		t.Fatal(err)
	}

	// A handshake timeout far longer than the test's wait: if the silent
	// peers blocked accepting, the valid peer would not get through.
	server := tlsLayer(t, serverTLS)
	server.SetHandshakeTimeout(time.Hour)
	client := tlsLayer(t, clientTLS)
	addr := server.Addr().String()
	var silent []net.Conn
	for range 5 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	accepted := acceptOne(server)
	good, err := client.DialPeer(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	expectAcceptedFrom(t, accepted, good)

	// Close ends the pending handshakes at once.
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range silent {
		expectClosedByServer(t, c)
	}
	if _, err := server.Accept(); err == nil {
		t.Error("Accept after Close succeeded")
	}

	// A short handshake timeout closes a silent peer by itself.
	quick := tlsLayer(t, serverTLS)
	quick.SetHandshakeTimeout(200 * time.Millisecond)
	c, err := net.Dial("tcp", quick.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expectClosedByServer(t, c)
}

func expectClosedByServer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(testTimeout))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("silent connection not closed by the server: %v", err)
	}
}

func must(c tls.Certificate, _, _ []byte) tls.Certificate { return c }

func TestStreamLayerAdvertise(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewStreamLayer(ln, netip.MustParseAddrPort("192.0.2.7:7000"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Addr().String(); got != "192.0.2.7:7000" {
		t.Errorf("Addr() = %s", got)
	}
	s.Close()

	ln, err = net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := NewStreamLayer(ln, netip.AddrPort{}, nil, nil); err == nil {
		t.Error("unspecified bind address accepted without advertise")
	}
}

// TestTLSCluster runs two nodes over mutual TLS on 127.0.0.1.
func TestTLSCluster(t *testing.T) {
	ca := testutil.NewCA(t, "cluster-ca")
	var (
		layers []*StreamLayer
		peers  []Voter
		tlss   []TLSFiles
	)
	for i, id := range []string{"d1", "d2"} {
		c := files(ca.Files(t, id))
		pt, err := LoadPeerTLS(c)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := NewStreamLayer(ln, netip.AddrPort{}, pt, testutil.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
		tlss = append(tlss, c)
		peers = append(peers, Voter{ID: id, Address: netip.MustParseAddrPort(l.Addr().String())})
		_ = i
	}
	var nodes []*Node
	var subs []<-chan bool
	for i, l := range layers {
		tr := NewTransport(l, testutil.Logger(t))
		t.Cleanup(func() { tr.Close() })
		cl := ClusterSettings{Bind: peers[i].Address, Peers: peers, TLS: tlss[i]}
		fastTimings(&cl)
		n, err := New(Config{ValidateSpec: testValidate, NodeID: peers[i].ID, DataDir: t.TempDir(), Cluster: cl, Transport: tr, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, n.Leadership(t.Context()))
		if err := n.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	// Wait for one of them to lead.
	leader := -1
	deadline := time.After(testTimeout)
	for leader < 0 {
		select {
		case v := <-subs[0]:
			if v {
				leader = 0
			}
		case v := <-subs[1]:
			if v {
				leader = 1
			}
		case <-deadline:
			t.Fatal("no leader over tls")
		}
	}
	ctx := testutil.Context(t, testTimeout)
	if _, err := nodes[leader].SubmitConfig(ctx, testSpec(1), ""); err != nil {
		t.Fatal(err)
	}
	cfg := waitGeneration(t, nodes[1-leader], 1)
	if len(cfg.Services) != 1 {
		t.Errorf("replicated over tls: %+v", cfg)
	}
}

// TestNodeOwnTransport starts a node that builds its own TCP transport from
// the cluster configuration (single node, TLS).
func TestNodeOwnTransport(t *testing.T) {
	ca := testutil.NewCA(t, "cluster-ca")
	// Find a free port; the small race with other processes is
	// acceptable in a test.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	cl := ClusterSettings{Bind: addr, Peers: []Voter{{ID: "d1", Address: addr}}, TLS: files(ca.Files(t, "d1"))}
	fastTimings(&cl)
	dir := t.TempDir()
	n, err := New(Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: dir, Cluster: cl, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	lead := n.Leadership(t.Context())
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	expectValue(t, lead, false)
	expectValue(t, lead, true)
	if _, err := os.Stat(filepath.Join(dir, "raft", "raft.db")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "raft", "snapshots")); err != nil {
		t.Error(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	// The port is free again: the node closed its transport.
	ln, err = net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatalf("port still in use after Close: %v", err)
	}
	ln.Close()
}
