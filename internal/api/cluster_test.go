package api_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
)

// peerNode is a raft node on the TCP transport (127.0.0.1) with its peer
// server on the Raft port.
type peerNode struct {
	id      string
	addr    string
	node    *raft.Node
	backend *apitest.Backend
	fw      api.Forwarder
}

// peerCluster is a cluster of peerNodes, plain or over mutual TLS.
type peerCluster struct {
	t     *testing.T
	ca    *testutil.CA
	nodes []*peerNode
	peers []config.Peer
}

// fastTimings as in package raft's tests: prompt elections that leave room
// for the race detector on a loaded 2-core machine.
func fastTimings(c *config.Cluster) {
	c.HeartbeatTimeout = config.Duration(200 * time.Millisecond)
	c.ElectionTimeout = config.Duration(200 * time.Millisecond)
	c.LeaderLeaseTimeout = config.Duration(200 * time.Millisecond)
	c.CommitTimeout = config.Duration(5 * time.Millisecond)
}

func newPeerCluster(t *testing.T, n int, withTLS bool) *peerCluster {
	c := &peerCluster{t: t}
	if withTLS {
		c.ca = testutil.NewCA(t, "cluster-ca")
	}
	layers := make([]*raft.StreamLayer, n)
	for i := range n {
		layers[i] = c.listen(fmt.Sprintf("d%d", i+1))
		c.peers = append(c.peers, config.Peer{ID: fmt.Sprintf("d%d", i+1), Address: netip.MustParseAddrPort(layers[i].Addr().String())})
	}
	for i := range n {
		c.nodes = append(c.nodes, c.start(c.peers[i].ID, layers[i], false))
	}
	return c
}

// listen returns a stream layer on 127.0.0.1 with the cluster's TLS and
// the director id's certificate.
func (c *peerCluster) listen(id string) *raft.StreamLayer {
	return c.listenAs(id, pki.RoleDirector)
}

// listenAs is listen with a certificate of role.
func (c *peerCluster) listenAs(id string, role pki.Role) *raft.StreamLayer {
	t := c.t
	var pt *raft.PeerTLS
	if c.ca != nil {
		cert, _, _ := c.ca.IssueAs(t, id, role, netip.MustParseAddr("127.0.0.1"))
		var err error
		if pt, err = raft.NewPeerTLS(cert, c.ca.Pool()); err != nil {
			t.Fatal(err)
		}
	}
	l, err := raft.Listen(netip.MustParseAddrPort("127.0.0.1:0"), netip.AddrPort{}, pt, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// start starts a node on layer with its peer server; the node and the
// server stop when the test ends.
func (c *peerCluster) start(id string, layer *raft.StreamLayer, join bool) *peerNode {
	t := c.t
	t.Helper()
	tr := raft.NewTransport(layer, testutil.Logger(t))
	t.Cleanup(func() { tr.Close() })
	addr := layer.Addr().String()
	cl := config.Cluster{Bind: netip.MustParseAddrPort(addr), Peers: c.peers}
	fastTimings(&cl)
	node, err := raft.New(raft.Config{ValidateSpec: clusterspec.Validate, NodeID: id, DataDir: t.TempDir(), Cluster: clusterspec.Settings(cl), Transport: tr, Join: join, Logger: testutil.Logger(t),
		MemberVersions: func(_ context.Context, ms []raft.Member) (map[string]int, error) {
			v := map[string]int{}
			for _, m := range ms {
				v[m.ID] = raft.CommandVersion
			}
			return v, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := node.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	b := apitest.NewBackend(api.Status{Node: id, Role: "director", RunningGeneration: 40 + uint64(len(id))})
	ln := node.PeerListener()
	if ln == nil {
		t.Fatal("no peer listener")
	}
	serve(t, ln, api.NewPeerServer(node, node, b, testutil.Logger(t)).Serve)
	return &peerNode{
		id: id, addr: addr, node: node, backend: b,
		fw: api.Forwarder{Local: node, Peers: api.PeerClient{Dial: node.DialPeer}},
	}
}

// waitLeader waits for an established leader among the nodes not in
// except and returns it.
func (c *peerCluster) waitLeader(except ...*peerNode) *peerNode {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.t.Context(), testTimeout)
	defer cancel()
	type event struct {
		n      *peerNode
		leader bool
	}
	events := make(chan event)
	for _, n := range c.nodes {
		// Ends when ctx ends (on return).
		go func() {
			for v := range n.node.Leadership(ctx) {
				select {
				case events <- event{n, v}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		select {
		case ev := <-events:
			skip := false
			for _, e := range except {
				skip = skip || e == ev.n
			}
			if ev.leader && !skip {
				return ev.n
			}
		case <-ctx.Done():
			c.t.Fatal("timed out waiting for a leader")
		}
	}
}

// follower returns a node other than leader.
func (c *peerCluster) follower(leader *peerNode) *peerNode {
	for _, n := range c.nodes {
		if n != leader {
			return n
		}
	}
	c.t.Fatal("no follower")
	return nil
}

// leadershipMoved reports whether err only means that leadership changed
// hands during the operation (a loaded machine can make a leader miss its
// lease): the test tries again.
func leadershipMoved(err error) bool {
	return errors.Is(err, raft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) ||
		errors.Is(err, hraft.ErrLeadershipTransferInProgress) ||
		// A transfer that timed out (its target was behind, or an
		// election ran) crosses the peer protocol as text only.
		strings.Contains(err.Error(), hraft.ErrLeadershipTransferInProgress.Error()) ||
		strings.Contains(err.Error(), "leadership transfer timeout")
}

// retry runs op until it succeeds or fails for another reason than a
// leadership change, within testTimeout; between tries it waits for a
// leader, and for a heartbeat to tell the followers.
func (c *peerCluster) retry(what string, op func() error) {
	c.t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		err := op()
		if err == nil {
			return
		}
		if !leadershipMoved(err) || time.Now().After(deadline) {
			c.t.Fatalf("%s: %v", what, err)
		}
		c.t.Logf("%s: leadership moved, trying again: %v", what, err)
		c.waitLeader()
		// The followers learn of the leader at its next heartbeat.
		<-time.After(20 * time.Millisecond)
	}
}

// waitGeneration waits until n has applied generation gen.
func waitGeneration(t *testing.T, n *raft.Node, gen uint64) (cfg raft.ClusterConfig) {
	t.Helper()
	testutil.WaitChange(t, testTimeout, fmt.Sprintf("%s to apply generation %d", n.ID(), gen), n.Watch, func() (bool, string) {
		cfg = n.Config()
		return cfg.Generation >= gen, fmt.Sprintf("generation %d", cfg.Generation)
	})
	return cfg
}

// waitAdmin waits until n has applied admin state a for ref.
func waitAdmin(t *testing.T, n *raft.Node, ref raft.RealRef, a raft.Admin) {
	t.Helper()
	testutil.WaitChange(t, testTimeout, fmt.Sprintf("%s to set %s %s", n.ID(), ref, a), n.Watch, func() (bool, string) {
		got := n.Admin()[ref]
		return got == a, fmt.Sprintf("%q", got)
	})
}

func testSpec(weight int) raft.Spec {
	return clusterspec.FromDirector(webDirector(&testing.T{}, "203.0.113.10", weight))
}

var webRef = raft.RealRef{Service: ipvs.MustParseServiceKey("tcp/203.0.113.10:80"), Address: netip.MustParseAddr("198.51.100.10")}

// notLeader is a Cluster that is never the leader and names a fixed one.
type notLeader struct{ leaderAddr string }

func (n notLeader) err() error {
	return fmt.Errorf("stub: %w", &raft.NotLeaderError{LeaderID: "x", LeaderAddress: n.leaderAddr})
}
func (n notLeader) SubmitConfig(context.Context, raft.Spec, string) (raft.SetConfigResult, error) {
	return raft.SetConfigResult{}, n.err()
}
func (n notLeader) SetAdmin(context.Context, raft.RealRef, raft.Admin) (raft.SetAdminResult, error) {
	return raft.SetAdminResult{}, n.err()
}
func (n notLeader) SetDrain(context.Context, raft.SetDrainCommand) (raft.SetDrainResult, error) {
	return raft.SetDrainResult{}, n.err()
}
func (n notLeader) AddVoter(context.Context, string, string) error    { return n.err() }
func (n notLeader) AddNonvoter(context.Context, string, string) error { return n.err() }
func (n notLeader) RemoveServer(context.Context, string) error        { return n.err() }
func (n notLeader) TransferLeadership(context.Context, ...string) error {
	return n.err()
}

// TestPeerProtocolCluster runs three nodes on the TCP transport, plain and
// over mutual TLS, and writes to the cluster from a follower through the
// peer protocol on the Raft port.
func TestPeerProtocolCluster(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		name := "plain"
		if withTLS {
			name = "tls"
		}
		t.Run(name, func(t *testing.T) { testPeerProtocolCluster(t, withTLS) })
	}
}

func testPeerProtocolCluster(t *testing.T, withTLS bool) {
	c := newPeerCluster(t, 3, withTLS)
	ctx := testutil.Context(t, testTimeout)

	// A follower's writes reach the leader and replicate.
	var gen uint64
	c.retry("forwarded submit", func() error {
		f := c.follower(c.waitLeader())
		res, err := f.fw.SubmitConfig(ctx, testSpec(1), f.id)
		gen = res.Generation
		return err
	})
	if gen != 1 {
		t.Fatalf("forwarded submit: generation %d", gen)
	}
	for _, n := range c.nodes {
		cfg := waitGeneration(t, n.node, 1)
		if !reflect.DeepEqual(cfg.Spec, testSpec(1)) {
			t.Errorf("%s: replicated spec %+v", n.id, cfg.Spec)
		}
		if cfg.SubmittedBy == "" || cfg.SubmittedBy == c.waitLeader().id {
			t.Errorf("%s: submitted by %q, want the follower", n.id, cfg.SubmittedBy)
		}
	}
	c.retry("forwarded set admin", func() error {
		f := c.follower(c.waitLeader())
		res, err := f.fw.SetAdmin(ctx, webRef, raft.AdminDrained)
		if err == nil && (res.Previous != raft.AdminEnabled && res.Changed) {
			t.Errorf("forwarded set admin = %+v", res)
		}
		return err
	})
	for _, n := range c.nodes {
		waitAdmin(t, n.node, webRef, raft.AdminDrained)
	}
	unknown := raft.RealRef{Service: webRef.Service, Address: netip.MustParseAddr("198.51.100.99")}
	c.retry("forwarded set admin of an unknown real", func() error {
		f := c.follower(c.waitLeader())
		_, err := f.fw.SetAdmin(ctx, unknown, raft.AdminDrained)
		if leadershipMoved(err) {
			return err
		}
		if !errors.Is(err, raft.ErrUnknownReal) || !errors.Is(err, api.ErrNotFound) {
			t.Errorf("set admin of an unknown real: %v", err)
		}
		return nil
	})

	// Drains go through the leader, one director at a time: a second
	// director's drain is refused over the wire (409, raft.ErrDrainBusy)
	// unless forced. Under TLS the record names who asked by its proven
	// identity.
	var drained *peerNode
	c.retry("forwarded drain", func() error {
		drained = c.follower(c.waitLeader())
		_, err := drained.fw.SetDrain(ctx, raft.SetDrainCommand{Node: drained.id, Drain: true, By: "claimed"})
		return err
	})
	for _, n := range c.nodes {
		testutil.WaitFor(t, testTimeout, n.id+" sees the drain", func() (bool, string) {
			d := n.node.State().Drains
			_, ok := d[drained.id]
			return ok, fmt.Sprint(d)
		})
	}
	if by, want := c.nodes[0].node.State().Drains[drained.id].By, drained.id; withTLS && by != want {
		t.Errorf("drain recorded as asked by %q, want the proven %q", by, want)
	}
	var other *peerNode
	for _, n := range c.nodes {
		if n != drained {
			other = n
		}
	}
	c.retry("a second drain", func() error {
		_, err := other.fw.SetDrain(ctx, raft.SetDrainCommand{Node: other.id, Drain: true})
		if leadershipMoved(err) {
			return err
		}
		var ae *api.Error
		if !errors.Is(err, raft.ErrDrainBusy) || (errors.As(err, &ae) && ae.StatusCode != http.StatusConflict) {
			t.Errorf("a second drain: %v, want raft.ErrDrainBusy (409 when forwarded)", err)
		}
		return nil
	})
	c.retry("undrain", func() error {
		_, err := other.fw.SetDrain(ctx, raft.SetDrainCommand{Node: drained.id})
		return err
	})
	for _, n := range c.nodes {
		testutil.WaitFor(t, testTimeout, n.id+" sees the undrain", func() (bool, string) {
			d := n.node.State().Drains
			return len(d) == 0, fmt.Sprint(d)
		})
	}

	// A write sent to a follower's peer server answers 421 and names the
	// leader.
	c.retry("write at a follower", func() error {
		leader := c.waitLeader()
		f := c.follower(leader)
		_, err := f.fw.Peers.SubmitConfig(ctx, f.addr, testSpec(2), "test")
		if err == nil {
			return fmt.Errorf("%s led when asked: %w", f.id, raft.ErrNotLeader)
		}
		var ae *api.Error
		var nle *raft.NotLeaderError
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusMisdirectedRequest {
			t.Fatalf("write at a follower: %v, want a 421", err)
		}
		if !errors.Is(err, raft.ErrNotLeader) || !errors.As(err, &nle) {
			t.Fatalf("write at a follower: %#v is not a raft.NotLeaderError", err)
		}
		if nle.LeaderAddress != leader.addr {
			return fmt.Errorf("names %s, the leader is %s: %w", nle.LeaderAddress, leader.addr, raft.ErrNotLeader)
		}
		return nil
	})

	// The forwarder sent to a follower by a stale view retries once at
	// the leader the follower names.
	c.retry("forwarded to a follower", func() error {
		f := c.follower(c.waitLeader())
		stale := api.Forwarder{Local: notLeader{f.addr}, Peers: f.fw.Peers}
		res, err := stale.SubmitConfig(ctx, testSpec(2), "stale")
		gen = res.Generation
		return err
	})
	if gen != 2 {
		t.Fatalf("generation %d after the retried submit", gen)
	}
	for _, n := range c.nodes {
		waitGeneration(t, n.node, 2)
	}

	// Every member answers for its own status.
	for _, n := range c.nodes {
		st, err := c.nodes[0].fw.Peers.Status(ctx, n.addr)
		if err != nil {
			t.Fatalf("status of %s: %v", n.id, err)
		}
		if st.Node != n.id || st.RunningGeneration != 42 {
			t.Errorf("status of %s: %+v", n.id, st)
		}
	}

	// Membership changes and leadership transfers go through the leader.
	d4 := c.start("d4", c.listen("d4"), true)
	c.retry("forwarded join", func() error {
		return c.follower(c.waitLeader()).fw.AddNonvoter(ctx, d4.id, d4.addr)
	})
	expectMembers(t, c.nodes[0].node, 4)
	c.retry("forwarded remove", func() error {
		return c.follower(c.waitLeader()).fw.RemoveServer(ctx, d4.id)
	})
	expectMembers(t, c.nodes[0].node, 3)
	var old *peerNode
	c.retry("forwarded failover", func() error {
		old = c.waitLeader()
		return c.follower(old).fw.TransferLeadership(ctx)
	})
	if next := c.waitLeader(old); next == old {
		t.Error("leadership did not move")
	}
}

// expectMembers waits until n's Raft configuration has want members.
func expectMembers(t *testing.T, n *raft.Node, want int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		ms, err := n.Members(testutil.Context(t, testTimeout))
		if err == nil && len(ms) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: members %+v (%v), want %d", n.ID(), ms, err, want)
		}
		select {
		case <-n.Watch():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestPeerClientUnreachable checks that a call to a member that does not
// answer ends with ctx.
func TestPeerClientUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Accepts and says nothing: the goroutine ends when ln is closed.
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := tcpPeers().Status(ctx, ln.Addr().String())
		done <- err
	}()
	if err := recv(t, done, "the call to end"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("status of a silent member: %v", err)
	}
}

// TestPeerRoutesByIdentity: over the cluster's mutual TLS, a peer request
// is authorised by its certificate's identity: a witness's certificate
// reads the status but cannot submit a spec, a certificate of a node that
// is no member reads nothing, one of another CA does not connect, and a
// member cannot say another member is gone.
func TestPeerRoutesByIdentity(t *testing.T) {
	c := newPeerCluster(t, 3, true)
	leader := c.waitLeader()
	ctx := testutil.Context(t, testTimeout)
	client := func(ca *testutil.CA, id string, role pki.Role) api.PeerClient {
		cert, _, _ := ca.IssueAs(t, id, role, netip.MustParseAddr("127.0.0.1"))
		pt, err := raft.NewPeerTLS(cert, ca.Pool())
		if err != nil {
			t.Fatal(err)
		}
		return api.PeerClient{Dial: func(ctx context.Context, address string) (net.Conn, error) {
			return raft.DialPeer(ctx, address, "", pt)
		}}
	}
	// A witness member: add w9 as a non-voter first, so that it is a member.
	w := c.start("w9", c.listenAs("w9", pki.RoleWitness), true)
	if err := leader.node.AddNonvoter(ctx, "w9", w.addr); err != nil {
		t.Fatal(err)
	}
	witness := client(c.ca, "w9", pki.RoleWitness)
	if _, err := witness.Status(ctx, leader.addr); err != nil {
		t.Fatalf("a member witness reading the status: %v", err)
	}
	gen := leader.node.Config().Generation
	_, err := witness.SubmitConfig(ctx, leader.addr, testSpec(7), "w9")
	if !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("a witness submitting a spec: %v, want forbidden", err)
	}
	// Every write route refuses the witness (403) and a stranger with a
	// director certificate of the CA (not admitted at all).
	ref := raft.RealRef{Service: testSpec(1).Services[0].Key(), Address: netip.MustParseAddr("198.51.100.10")}
	evil := client(c.ca, "evil", pki.RoleDirector)
	writes := map[string]func(api.PeerClient) error{
		"admin": func(p api.PeerClient) error {
			_, err := p.SetAdmin(ctx, leader.addr, ref, raft.AdminDisabled)
			return err
		},
		"join": func(p api.PeerClient) error {
			return p.Join(ctx, leader.addr, api.JoinRequest{ID: "evil", Address: "127.0.0.1:1", Voter: true})
		},
		"remove": func(p api.PeerClient) error { return p.Remove(ctx, leader.addr, "d2") },
		"drain": func(p api.PeerClient) error {
			_, err := p.SetDrain(ctx, leader.addr, raft.SetDrainCommand{Node: "d2", Drain: true, Force: true})
			return err
		},
	}
	for name, write := range writes {
		if err := write(witness); !errors.Is(err, api.ErrForbidden) {
			t.Errorf("%s from the witness: %v, want forbidden", name, err)
		}
		if err := write(evil); err == nil {
			t.Errorf("%s from a non-member: accepted", name)
		}
	}
	if err := evil.Failover(ctx, leader.addr, ""); err == nil {
		t.Error("failover from a non-member: accepted")
	}
	if _, err := evil.Status(ctx, leader.addr); err == nil {
		t.Fatal("a non-member's certificate read the status")
	}
	if got := len(leader.node.Admin()); got != 0 {
		t.Errorf("admin states after the refused writes: %d", got)
	}
	if got := leader.node.State().Drains; len(got) != 0 {
		t.Errorf("drains after the refused writes: %v", got)
	}
	expectMembers(t, leader.node, 4)
	if _, err := client(testutil.NewCA(t, "other-ca"), leader.id, pki.RoleDirector).Status(ctx, leader.addr); err == nil {
		t.Fatal("a certificate of another CA read the status")
	}
	var other *peerNode
	for _, n := range c.nodes {
		if n != leader {
			other = n
			break
		}
	}
	err = client(c.ca, other.id, pki.RoleDirector).LeaderGone(ctx, other.addr, leader.id)
	if !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("%s saying %s is gone: %v, want forbidden", other.id, leader.id, err)
	}
	if got := leader.node.Config().Generation; got != gen {
		t.Errorf("generation %d after the refused requests, want %d", got, gen)
	}
	// A director member may write.
	if _, err := client(c.ca, other.id, pki.RoleDirector).SubmitConfig(ctx, leader.addr, testSpec(7), "x"); err != nil {
		t.Fatalf("a director submitting: %v", err)
	}
	if got := leader.node.Config().SubmittedBy; got != other.id {
		t.Errorf("submitted_by %q, want the certificate's %q, not the body's", got, other.id)
	}
}

// webDirector returns a director configuration as the file parser gives it
// (defaults filled in, validated): one TCP service "web" on port 80 of vip,
// scheduled by mh, with an HTTP check and two reals, 198.51.100.10 and
// .11, of the given weight. Tests that replicate a spec take its shared
// part (clusterspec.FromDirector).
func webDirector(t testing.TB, vip string, weight int) *config.Director {
	t.Helper()
	doc := fmt.Sprintf(`node: {id: d1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: [d1@127.0.0.1:7946]}
ipvs: {tcp_timeout: 900s, sloppy_tcp: true}
vips: [{address: %[1]s, announce: {count: 3, interval: 1100ms}}]
services:
  - name: web
    vip: %[1]s
    port: 80
    protocol: tcp
    scheduler: mh
    health_check: {type: http, path: /healthz, interval: 1s, timeout: 500ms}
    reals: [{address: 198.51.100.10, weight: %[2]d}, {address: 198.51.100.11, weight: %[2]d}]
`, vip, weight)
	d, err := config.ParseDirector("test.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
