//go:build vmtest && vmcluster

package e2e

// The cluster's Raft port over mutual TLS (issue 12, "the cluster refuses
// strangers"), seen from a host on the lab segment that is not a member:
// tests/vm/cluster made the cluster CA and the members' certificates with
// dsrd tls, and the test borrows some of them as an attacker who stole a
// member's files would.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// clusterRaftPort is the Raft port of every member (tests/vm/cluster).
const clusterRaftPort = 7946

// clusterPeerTimeout bounds one peer protocol request of these tests
// (a TLS handshake and one HTTP exchange; seconds under TCG at worst).
const clusterPeerTimeout = 15 * time.Second

// clusterRaftAddr is n's Raft address.
func clusterRaftAddr(n lab.Host) string {
	return netip.AddrPortFrom(n.IPv4(), clusterRaftPort).String()
}

// clusterPeerClient returns a peer protocol client whose connections start
// in from's namespace: the peer protocol's (raft.DialPeer: TLS with
// peerTLS's certificate when not nil, checking that the server is the
// member to, then the byte 0xD5) when peerProto is set, plain TCP
// otherwise.
func clusterPeerClient(from, to lab.Host, peerTLS *raft.PeerTLS, peerProto bool) api.PeerClient {
	return api.PeerClient{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		if !peerProto {
			return lab.Dial(ctx, from, "tcp", address)
		}
		var conn net.Conn
		err := lab.Do(from, func() error {
			var err error
			conn, err = raft.DialPeer(ctx, address, string(to), peerTLS)
			return err
		})
		return conn, err
	}}
}

// clusterNoAnswer fails unless err says the request got no HTTP answer
// at all: the connection was refused before the peer server saw it.
func clusterNoAnswer(t *testing.T, what string, err error) {
	t.Helper()
	var ae *api.Error
	switch {
	case err == nil:
		t.Errorf("%s: answered 2xx, want the connection refused", what)
	case errors.As(err, &ae):
		t.Errorf("%s: answered %d (%v), want the connection refused before any answer", what, ae.StatusCode, err)
	default:
		t.Logf("%s: refused: %v", what, err)
	}
}

// clusterForbidden fails unless err is the peer server's 403 answer.
func clusterForbidden(t *testing.T, what string, err error) {
	t.Helper()
	var ae *api.Error
	switch {
	case err == nil:
		t.Errorf("%s: answered 2xx, want 403", what)
	case !errors.As(err, &ae):
		t.Errorf("%s: %v, want a 403 answer", what, err)
	case ae.StatusCode != http.StatusForbidden:
		t.Errorf("%s: answered %d (%v), want 403", what, ae.StatusCode, err)
	default:
		t.Logf("%s: 403: %v", what, err)
	}
}

// clusterStrangerClient returns a peer protocol client for a stranger in
// from's namespace: its certificate comes from a CA of its own and claims
// to be id, a director, at from's address. It trusts the cluster's CA
// (caFile) and checks the server's IP SAN, so its own side of the
// handshake accepts the member it dials; then it sends the peer protocol's
// first byte, as raft.DialPeer does (which takes only certificates of the
// cluster's CA).
func clusterStrangerClient(t *testing.T, from lab.Host, caFile, id string) api.PeerClient {
	t.Helper()
	caPEM, caKey, err := pki.NewCA(pki.CAOptions{Name: "a stranger's CA", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := pki.IssueNode(caPEM, caKey, pki.NodeRequest{
		NodeID: id, Role: pki.RoleDirector, IPs: []netip.Addr{from.IPv4()}, Validity: 30 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	clusterCA, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(clusterCA) {
		t.Fatalf("%s: no certificate", caFile)
	}
	return api.PeerClient{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		raw, err := lab.Dial(ctx, from, "tcp", address)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(raw, &tls.Config{
			// Always present the certificate: with Certificates alone,
			// crypto/tls sends none when the server's list of acceptable
			// CAs does not name its issuer, and the test would show only
			// that a client without a certificate is refused.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
			RootCAs:              pool,
			ServerName:           host,
			MinVersion:           tls.VersionTLS13,
		})
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		if _, err := tc.Write([]byte{raft.PeerProtocolByte}); err != nil {
			tc.Close()
			return nil, err
		}
		return tc, nil
	}}
}

// TestClusterRefusesStrangers sends cluster writes to the directors' Raft
// port from rs1 (192.0.2.21, on the lab segment, not a member): plain HTTP,
// with or without the peer protocol's first byte, gets no answer; a
// certificate from another CA (claiming to be dir2) is refused in the
// handshake; the witness's own certificate over mutual TLS may read the
// leader's status but its configuration write is answered 403; dir2's
// certificate may not say that dir1 is gone (403). Nothing changes: the
// configuration's generation stays on both directors, and no director
// stands for election because of leader-gone. 11 requests in all.
func TestClusterRefusesStrangers(t *testing.T) {
	c, leader := clusterStart(t)
	from := lab.RS1
	logOff := map[lab.Host]int64{}
	for _, d := range lab.ClusterDirectors() {
		logOff[d] = c.LogSize(d)
	}
	leaderAddr := clusterRaftAddr(leader)

	witTLS, err := c.TLS(lab.Dir3)
	if err != nil {
		t.Fatal(err)
	}
	witness, err := raft.LoadPeerTLS(clusterspec.TLS(witTLS))
	if err != nil {
		t.Fatal(err)
	}
	dir2TLS, err := c.TLS(lab.Dir2)
	if err != nil {
		t.Fatal(err)
	}
	dir2, err := raft.LoadPeerTLS(clusterspec.TLS(dir2TLS))
	if err != nil {
		t.Fatal(err)
	}
	if id := witness.Identity(); id.NodeID != "dir3" || id.Role != pki.RoleWitness {
		t.Fatalf("the witness's certificate carries %+v, want dir3, a witness", id)
	}

	// The leader's status over the peer protocol, with the witness's
	// certificate (members may read it): the generation before and after,
	// and the proof that this test's mutual TLS works from rs1.
	peerStatus := func(t *testing.T) api.Status {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), clusterPeerTimeout)
		defer cancel()
		st, err := clusterPeerClient(from, leader, witness, true).Status(ctx, leaderAddr)
		if err != nil {
			t.Fatalf("the leader's status over the peer protocol with the witness's certificate: %v", err)
		}
		return st
	}
	st0 := peerStatus(t)
	if st0.Generation == 0 || !st0.Raft.Leader {
		t.Fatalf("%s's peer status: generation %d, leader %v; want the leader on a generation", leader, st0.Generation, st0.Raft.Leader)
	}
	t.Logf("leader %s, term %d, generation %d (its peer status, read from %s with dir3's certificate)",
		leader, st0.Raft.Term, st0.Generation, from)

	// A valid configuration that differs from the cluster's: without the
	// echo service. The body says it comes from dir1.
	d, err := config.LoadDirector(c.ConfPath(leader))
	if err != nil {
		t.Fatal(err)
	}
	spec := clusterspec.FromDirector(d)
	spec.Services = slices.DeleteFunc(spec.Services, func(s raft.Service) bool { return s.Name == "echo" })
	if len(spec.Services) != len(d.Services)-1 {
		t.Fatalf("no echo service in %s", c.ConfPath(leader))
	}
	if err := clusterspec.Validate(spec); err != nil {
		t.Fatalf("the changed configuration is not valid: %v", err)
	}
	submit := func(cl api.PeerClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), clusterPeerTimeout)
		defer cancel()
		_, err := cl.SubmitConfig(ctx, leaderAddr, spec, "dir1")
		return err
	}

	t.Run("plain", func(t *testing.T) {
		clusterNoAnswer(t, "plain HTTP POST /peer/v1/config", submit(clusterPeerClient(from, leader, nil, false)))
		clusterNoAnswer(t, "0xD5 then plain HTTP POST /peer/v1/config", submit(clusterPeerClient(from, leader, nil, true)))
	})
	t.Run("other CA", func(t *testing.T) {
		clusterNoAnswer(t, "POST /peer/v1/config with a certificate for dir2 from another CA",
			submit(clusterStrangerClient(t, from, witTLS.CA, "dir2")))
	})
	t.Run("witness writes", func(t *testing.T) {
		clusterForbidden(t, "POST /peer/v1/config with the witness's certificate",
			submit(clusterPeerClient(from, leader, witness, true)))
	})
	t.Run("leader-gone", func(t *testing.T) {
		for _, to := range lab.ClusterDirectors() {
			ctx, cancel := context.WithTimeout(context.Background(), clusterPeerTimeout)
			err := clusterPeerClient(from, to, dir2, true).LeaderGone(ctx, clusterRaftAddr(to), "dir1")
			cancel()
			clusterForbidden(t, fmt.Sprintf("POST /peer/v1/leader-gone naming dir1 to %s with dir2's certificate", to), err)
		}
	})

	// Nothing changed: the configuration's generation, on the leader (its
	// peer status) and on both directors once the cluster is ready. The
	// leadership may move without the strangers: under TCG on a loaded
	// host a leader can miss its lease (1.5 s here) and step down, so a new
	// leader or term is only noted; but neither director may have stood
	// for election on leader-gone's word.
	st1 := peerStatus(t)
	if st1.Generation != st0.Generation {
		t.Errorf("%s after the strangers: generation %d, want %d", leader, st1.Generation, st0.Generation)
	}
	if st1.Raft.Term != st0.Raft.Term || !st1.Raft.Leader {
		t.Logf("note: %s after the strangers: term %d (was %d), leader %v: its log says why", leader, st1.Raft.Term, st0.Raft.Term, st1.Raft.Leader)
	}
	now := clusterReady(t, c)
	for _, n := range lab.ClusterDirectors() {
		st := clusterStatus(t, c, n)
		if st.Generation != st0.Generation || st.RunningGeneration != st0.Generation {
			t.Errorf("%s after the strangers: generation %d running %d, want %d", n, st.Generation, st.RunningGeneration, st0.Generation)
		}
		log, err := c.LogSince(n, logOff[n])
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(log, "standing for election at once") {
			t.Errorf("%s stood for election on a leader-gone from a stranger:\n%s", n, log)
		}
	}
	if now != leader {
		t.Logf("note: the VIP moved from %s to %s during the test", leader, now)
	}
}
