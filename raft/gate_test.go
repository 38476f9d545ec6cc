package raft

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft/pki"
)

// gateCluster is a cluster of real nodes on dsrd's TCP transport with
// mutual TLS on 127.0.0.1: directors d1 and d2 and witness w1, with a spec
// replicated, for attacks on the Raft port to be tried against.
type gateCluster struct {
	ca     *testutil.CA
	nodes  map[string]*Node
	addrs  map[string]string
	leader string
}

func newGateCluster(t *testing.T) *gateCluster {
	t.Helper()
	g := &gateCluster{ca: testutil.NewCA(t, "cluster-ca"), nodes: map[string]*Node{}, addrs: map[string]string{}}
	roles := map[string]pki.Role{"d1": pki.RoleDirector, "d2": pki.RoleDirector, "w1": pki.RoleWitness}
	ids := []string{"d1", "d2", "w1"}
	var peers []Voter
	layers := map[string]*StreamLayer{}
	tlss := map[string]TLSFiles{}
	for _, id := range ids {
		c := files(g.ca.FilesAs(t, id, roles[id], netip.MustParseAddr("127.0.0.1")))
		pt, err := LoadPeerTLS(c)
		if err != nil {
			t.Fatal(err)
		}
		l := tlsLayer(t, pt)
		layers[id], tlss[id] = l, c
		g.addrs[id] = l.Addr().String()
		peers = append(peers, Voter{ID: id, Address: netip.MustParseAddrPort(l.Addr().String())})
	}
	subs := map[string]<-chan bool{}
	for _, id := range ids {
		tr := NewTransport(layers[id], testutil.Logger(t))
		t.Cleanup(func() { tr.Close() })
		cl := ClusterSettings{Bind: netip.MustParseAddrPort(g.addrs[id]), Peers: peers, TLS: tlss[id]}
		fastTimings(&cl)
		n, err := New(Config{ValidateSpec: testValidate, NodeID: id, Role: roles[id], DataDir: t.TempDir(), Cluster: cl, Transport: tr, Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		subs[id] = n.Leadership(t.Context())
		if err := n.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		g.nodes[id] = n
	}
	testutil.WaitFor(t, testTimeout, "a leader over tls", func() (bool, string) {
		for id, n := range g.nodes {
			if n.IsLeader() {
				g.leader = id
				return true, ""
			}
		}
		return false, "not yet"
	})
	// A witness that leads hands over to a director (the director
	// package does that; here the test does); wait for a director.
	if g.leader == "w1" {
		if err := g.nodes["w1"].TransferLeadership(testutil.Context(t, testTimeout), "d1", "d2"); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, testTimeout, "a director to lead", func() (bool, string) {
		for _, id := range []string{"d1", "d2"} {
			if g.nodes[id].IsLeader() {
				g.leader = id
				return true, ""
			}
		}
		return false, "not yet"
	})
	if _, err := g.nodes[g.leader].SubmitConfig(testutil.Context(t, testTimeout), testSpec(1), ""); err != nil {
		t.Fatal(err)
	}
	for _, n := range g.nodes {
		waitGeneration(t, n, 1)
	}
	return g
}

// follower returns a director that does not lead.
func (g *gateCluster) follower() string {
	if g.leader == "d1" {
		return "d2"
	}
	return "d1"
}

// as returns a transport that dials with a certificate of id and role
// issued by ca, and writes RPC headers itself: an attacker holding that
// certificate.
func as(t *testing.T, ca *testutil.CA, id string, role pki.Role) *Transport {
	t.Helper()
	cert, _, _ := ca.IssueAs(t, id, role, netip.MustParseAddr("127.0.0.1"))
	pt, err := NewPeerTLS(cert, ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport(tlsLayer(t, pt), testutil.Logger(t))
	t.Cleanup(func() { tr.Close() })
	return tr
}

func header(id, addr string) hraft.RPCHeader {
	return hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte(id), Addr: []byte(addr)}
}

// expectRefusedRPC checks that err is the Raft port's refusal (answered
// or the connection closed) and that the target counted reason.
func expectRefusedRPC(t *testing.T, n *Node, err error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: the rpc was accepted", reason)
	}
	testutil.WaitFor(t, testTimeout, "refusal "+reason+" counted", func() (bool, string) {
		return n.TransportStats().Refused[reason] > 0, "not yet"
	})
}

// TestRaftPortRefusesStrangers: each attack of issue 12 on the Raft port,
// against a running cluster with mutual TLS, fails to do harm: the state,
// the term and the leader stay as they were, and the refusal is counted
// by its reason.
func TestRaftPortRefusesStrangers(t *testing.T) {
	g := newGateCluster(t)
	fol := g.follower()
	target := g.nodes[fol]
	before := target.Stats()
	addr := hraft.ServerAddress(g.addrs[fol])

	t.Run("a member's certificate cannot speak as another member", func(t *testing.T) {
		tr := as(t, g.ca, "w1", pki.RoleWitness)
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{
			RPCHeader: header(g.leader, g.addrs[g.leader]), Term: before.Term + 50,
		}, &resp)
		expectRefusedRPC(t, target, err, RefusedImpersonation)
	})

	t.Run("a member's header must carry its own address", func(t *testing.T) {
		tr := as(t, g.ca, g.leader, pki.RoleDirector)
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{
			RPCHeader: header(g.leader, "127.0.0.1:1"), Term: before.Term + 50,
		}, &resp)
		expectRefusedRPC(t, target, err, RefusedImpersonation)
	})

	t.Run("a certificate of the CA that is no member", func(t *testing.T) {
		tr := as(t, g.ca, "evil", pki.RoleDirector)
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{
			RPCHeader: header("evil", "127.0.0.1:1"), Term: before.Term + 50,
			Entries:      []*hraft.Log{{Index: before.LastLogIndex + 1, Term: before.Term + 50, Type: hraft.LogCommand, Data: []byte{3}}},
			PrevLogEntry: before.LastLogIndex, PrevLogTerm: before.Term,
		}, &resp)
		expectRefusedRPC(t, target, err, RefusedNotMember)
	})

	t.Run("a certificate of another CA", func(t *testing.T) {
		tr := as(t, testutil.NewCA(t, "other-ca"), g.leader, pki.RoleDirector)
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{RPCHeader: header(g.leader, g.addrs[g.leader]), Term: 99}, &resp)
		expectRefusedRPC(t, target, err, RefusedHandshake)
	})

	t.Run("a plain client", func(t *testing.T) {
		tr := NewTransport(tlsLayer(t, nil), testutil.Logger(t))
		defer tr.Close()
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{RPCHeader: header(g.leader, g.addrs[g.leader]), Term: 99}, &resp)
		expectRefusedRPC(t, target, err, RefusedHandshake)
	})

	t.Run("an entry that leaves a gap in the log", func(t *testing.T) {
		tr := as(t, g.ca, g.leader, pki.RoleDirector)
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{
			RPCHeader: header(g.leader, g.addrs[g.leader]), Term: before.Term,
			PrevLogEntry: before.LastLogIndex, PrevLogTerm: before.Term,
			Entries: []*hraft.Log{{Index: before.LastLogIndex + 5, Term: before.Term, Type: hraft.LogCommand, Data: []byte{3}}},
		}, &resp)
		expectRefusedRPC(t, target, err, RefusedMalformed)
	})

	t.Run("a configuration entry that does not decode", func(t *testing.T) {
		tr := as(t, g.ca, g.leader, pki.RoleDirector)
		var resp hraft.AppendEntriesResponse
		err := tr.AppendEntries(hraft.ServerID(fol), addr, &hraft.AppendEntriesRequest{
			RPCHeader: header(g.leader, g.addrs[g.leader]), Term: before.Term,
			PrevLogEntry: before.LastLogIndex, PrevLogTerm: before.Term,
			Entries: []*hraft.Log{{Index: before.LastLogIndex + 1, Term: before.Term, Type: hraft.LogConfiguration, Data: []byte("\xde\xad\xbe\xef")}},
		}, &resp)
		if err == nil || !strings.Contains(err.Error(), "configuration") {
			t.Fatalf("garbage configuration entry: %v", err)
		}
		expectRefusedRPC(t, target, err, RefusedMalformed)
	})

	t.Run("a leadership transfer request not from the leader", func(t *testing.T) {
		// The witness, a member, asks as itself: not the leader.
		tr := as(t, g.ca, "w1", pki.RoleWitness)
		err := tr.TimeoutNow(hraft.ServerID(fol), addr, &hraft.TimeoutNowRequest{RPCHeader: header("w1", g.addrs["w1"])}, &hraft.TimeoutNowResponse{})
		if err == nil || !strings.Contains(err.Error(), ErrStaleTimeoutNow.Error()) {
			t.Fatalf("timeout-now from a follower: %v", err)
		}
		expectRefusedRPC(t, target, err, RefusedStaleTransfer)
		// ... and naming the leader in its header: its certificate says otherwise.
		err = tr.TimeoutNow(hraft.ServerID(fol), addr, &hraft.TimeoutNowRequest{RPCHeader: header(g.leader, g.addrs[g.leader])}, &hraft.TimeoutNowResponse{})
		expectRefusedRPC(t, target, err, RefusedImpersonation)
	})

	// Nothing changed: the leader leads, the follower follows it in the
	// same term, with the same log and state, and runs.
	after := target.Stats()
	if after.Term != before.Term || after.LeaderID != g.leader || after.State != "Follower" {
		t.Errorf("after the attacks: term %d leader %q state %s; before: term %d leader %q", after.Term, after.LeaderID, after.State, before.Term, g.leader)
	}
	if after.Generation != 1 || target.FSM().Err() != nil {
		t.Errorf("after the attacks: generation %d, fsm error %v", after.Generation, target.FSM().Err())
	}
	if !g.nodes[g.leader].IsLeader() {
		t.Error("the leader lost its leadership")
	}
	// The cluster still works: a new spec replicates to the follower.
	if _, err := g.nodes[g.leader].SubmitConfig(testutil.Context(t, testTimeout), testSpec(2), ""); err != nil {
		t.Fatal(err)
	}
	waitGeneration(t, target, 2)
}

// TestPeerAuthorization: peer protocol requests are authorised by the
// proven identity: members read, only directors write, strangers nothing.
func TestPeerAuthorization(t *testing.T) {
	g := newGateCluster(t)
	n := g.nodes[g.leader]
	for _, tc := range []struct {
		name    string
		peer    Peer
		write   bool
		wantErr bool
	}{
		{"director writes", Peer{Authenticated: true, Identity: pki.Identity{NodeID: "d1", Role: pki.RoleDirector}}, true, false},
		{"witness reads", Peer{Authenticated: true, Identity: pki.Identity{NodeID: "w1", Role: pki.RoleWitness}}, false, false},
		{"witness writes", Peer{Authenticated: true, Identity: pki.Identity{NodeID: "w1", Role: pki.RoleWitness}}, true, true},
		{"stranger director reads", Peer{Authenticated: true, Identity: pki.Identity{NodeID: "evil", Role: pki.RoleDirector}}, false, true},
		{"unauthenticated reads", Peer{}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := n.AuthorizePeer(tc.peer, tc.write)
			if (err != nil) != tc.wantErr {
				t.Fatalf("AuthorizePeer = %v, want error %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Errorf("error %v is not ErrRefused", err)
			}
		})
	}
}

// TestRaftPortLimits: connections beyond the per-source limit are closed
// at once, silent ones when their first-byte deadline passes, and an
// established raft connection idle past its deadline is closed; the port
// still serves afterwards.
func TestRaftPortLimits(t *testing.T) {
	lim := defaultLimits
	lim.perSource, lim.idle = 4, 300*time.Millisecond
	server := limitedLayer(t, lim)
	server.SetHandshakeTimeout(500 * time.Millisecond)
	str := NewTransport(server, testutil.Logger(t))
	defer str.Close()
	go func() {
		for rpc := range str.Consumer() {
			rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
		}
	}()
	addr := server.Addr().String()
	var conns []net.Conn
	for range 6 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	testutil.WaitFor(t, testTimeout, "two connections over the source limit refused", func() (bool, string) {
		return server.Stats().Refused[RefusedSourceLimit] >= 2, "not yet"
	})
	for _, c := range conns {
		expectClosedByServer(t, c)
	}
	testutil.WaitFor(t, testTimeout, "the silent connections' slots freed", func() (bool, string) { return server.Stats().Conns == 0, "not yet" })

	// An RPC, then silence: closed after the idle deadline. The client
	// redials a connection idle for 100ms (the server closes at 300ms).
	clim := defaultLimits
	clim.redialIdle = 100 * time.Millisecond
	client := limitedLayer(t, clim)
	c, err := client.dial(addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctr := NewTransport(client, testutil.Logger(t))
	defer ctr.Close()
	var resp hraft.AppendEntriesResponse
	if err := ctr.AppendEntries("s", hraft.ServerAddress(addr), &hraft.AppendEntriesRequest{RPCHeader: header("c", client.Addr().String()), Term: 1}, &resp); err != nil {
		t.Fatalf("an rpc within the limits: %v", err)
	}
	testutil.WaitFor(t, testTimeout, "the idle connection closed", func() (bool, string) {
		return server.Stats().Conns == 0, "not yet"
	})
	// The pooled connection was closed by the server: the client redials
	// one idle past its redial time and the next RPC works.
	if err := ctr.AppendEntries("s", hraft.ServerAddress(addr), &hraft.AppendEntriesRequest{RPCHeader: header("c", client.Addr().String()), Term: 1}, &resp); err != nil {
		t.Fatalf("an rpc after the idle close: %v", err)
	}
}

// TestRaftPortRPCSize: an RPC above the size limit is refused and its
// connection closed.
func TestRaftPortRPCSize(t *testing.T) {
	lim := defaultLimits
	lim.maxRPC = 64 << 10
	server := limitedLayer(t, lim)
	str := NewTransport(server, testutil.Logger(t))
	defer str.Close()
	go func() {
		for rpc := range str.Consumer() {
			rpc.Respond(&hraft.AppendEntriesResponse{Success: true}, nil)
		}
	}()
	ctr := NewTransport(tlsLayer(t, nil), testutil.Logger(t))
	defer ctr.Close()
	big := &hraft.AppendEntriesRequest{RPCHeader: header("c", "127.0.0.1:1"), Term: 1, PrevLogEntry: 0,
		Entries: []*hraft.Log{{Index: 1, Term: 1, Type: hraft.LogCommand, Data: make([]byte, 256<<10)}}}
	var resp hraft.AppendEntriesResponse
	err := ctr.AppendEntries("s", hraft.ServerAddress(server.Addr().String()), big, &resp)
	if err == nil {
		t.Fatal("an rpc over the size limit was accepted")
	}
	testutil.WaitFor(t, testTimeout, "the oversized rpc counted", func() (bool, string) {
		return server.Stats().Refused[RefusedTooLarge] >= 1, "not yet"
	})
}

// TestCommandVersionGate: a leader appends a command newer than version 1
// only when every other member advertises that it can apply it; a member
// that does not answer counts as too old.
func TestCommandVersionGate(t *testing.T) {
	c := newTestCluster(t, 3)
	leader := c.waitLeader()
	n := c.nodes[leader]
	ctx := testutil.Context(t, testTimeout)
	if err := n.CheckMemberVersions(ctx, 1); err != nil {
		t.Fatalf("version 1 refused: %v", err)
	}
	if err := n.CheckMemberVersions(ctx, CommandVersion+1); !errors.Is(err, ErrMemberTooOld) {
		t.Fatalf("a version newer than the binary's: %v", err)
	}
	// The member rule for a version 2 this binary would know: every
	// other member must advertise it.
	versions := map[string]int{}
	n.cfg.MemberVersions = func(context.Context, []Member) (map[string]int, error) { return versions, nil }
	for _, m := range c.peers {
		versions[m.ID] = 2
	}
	if err := n.membersAt(ctx, 2); err != nil {
		t.Fatalf("every member at version 2: %v", err)
	}
	var other string
	for _, m := range c.peers {
		if m.ID != n.ID() {
			other = m.ID
			break
		}
	}
	versions[other] = 1
	if err := n.membersAt(ctx, 2); !errors.Is(err, ErrMemberTooOld) || !strings.Contains(err.Error(), other) {
		t.Fatalf("a member at version 1: %v", err)
	}
	delete(versions, other) // it does not answer
	if err := n.membersAt(ctx, 2); !errors.Is(err, ErrMemberTooOld) {
		t.Fatalf("a silent member: %v", err)
	}
	if CommandSetConfig.Version() != 1 || CommandSetAdmin.Version() != 1 || CommandSetConfigV2.Version() != 2 || CommandSetHealth.Version() != 2 ||
		CommandSetDrain.Version() != 3 || CommandSetConfigV3.Version() != 4 || CommandType(0x7f).Version() != 0 {
		t.Error("command versions changed: they are part of the log format")
	}
}

// limitedLayer is a plain layer on 127.0.0.1 with limits lim.
func limitedLayer(t *testing.T, lim limits) *StreamLayer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := newStreamLayer(ln, netip.AddrPort{}, nil, testutil.Logger(t), lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestRaftPortFlood: 3,000 connections from 30 source addresses that each
// send one byte and hold (issue 12 ran the port out of descriptors this
// way) neither stop a member's RPCs nor outlive the handshake deadline.
func TestRaftPortFlood(t *testing.T) {
	ca := testutil.NewCA(t, "cluster-ca")
	spt, err := NewPeerTLS(must(ca.Issue(t, "s")), ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	cpt, err := NewPeerTLS(must(ca.IssueAs(t, "c", pki.RoleDirector, netip.MustParseAddr("127.0.0.1"))), ca.Pool())
	if err != nil {
		t.Fatal(err)
	}
	server := tlsLayer(t, spt)
	server.SetHandshakeTimeout(2 * time.Second)
	server.SetAuthority(benchGate{})
	srv := NewTransport(server, testutil.Logger(t))
	defer srv.Close()
	go func() {
		for rpc := range srv.Consumer() {
			rpc.Respond(&hraft.AppendEntriesResponse{Term: 1, Success: true}, nil)
		}
	}()
	client := NewTransport(tlsLayer(t, cpt), testutil.Logger(t))
	defer client.Close()
	addr := hraft.ServerAddress(server.Addr().String())
	rpc := func() error {
		var resp hraft.AppendEntriesResponse
		return client.AppendEntries("s", addr, &hraft.AppendEntriesRequest{RPCHeader: header("c", "127.0.0.1:1"), Term: 1}, &resp)
	}
	if err := rpc(); err != nil {
		t.Fatal(err)
	}

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 3000 {
		src := netip.AddrFrom4([4]byte{127, 0, 1, byte(2 + i%30)})
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), Timeout: time.Second}
		c, err := d.Dial("tcp", string(addr))
		if err != nil {
			continue // refused at once, or the backlog is full: either is fine
		}
		_, _ = c.Write([]byte{0})
		held = append(held, c)
		if i%500 == 0 {
			if err := rpc(); err != nil {
				t.Fatalf("member rpc during the flood (%d connections opened): %v", i, err)
			}
		}
	}
	if err := rpc(); err != nil {
		t.Fatalf("member rpc after the flood: %v", err)
	}
	st := server.Stats()
	if st.Conns > defaultLimits.conns {
		t.Errorf("%d connections open, limit %d", st.Conns, defaultLimits.conns)
	}
	t.Logf("flood: %d connections held by the client side, %d open on the server, refused %v", len(held), st.Conns, st.Refused)
	var refused uint64
	for _, n := range st.Refused {
		refused += n
	}
	if refused < 1000 {
		t.Errorf("the flood was not a flood: %d connections opened, %d refused", len(held), refused)
	}
	testutil.WaitFor(t, testTimeout, "the flood's connections closed by the handshake deadline", func() (bool, string) {
		return server.Stats().Conns <= 1, "not yet"
	})
}

// TestCheckMember: a join names a valid node id and a dialable ip:port;
// the leader then dials only that (issue 12: joins skipped the name check
// and the leader dialed whatever a member named).
func TestCheckMember(t *testing.T) {
	for _, tc := range []struct {
		id, addr string
		ok       bool
	}{
		{"d3", "192.0.2.13:7946", true},
		{"d3", "[2001:db8::13]:7946", true},
		{"", "192.0.2.13:7946", false},
		{"../etc", "192.0.2.13:7946", false},
		{"evil@x", "192.0.2.13:7946", false},
		{"d3", "192.0.2.13", false},
		{"d3", "0.0.0.0:7946", false},
		{"d3", "224.0.0.1:7946", false},
		{"d3", "192.0.2.13:0", false},
		{"d3", "[fe80::1%eth0]:7946", false},
		{"d3", "example.com:7946", false},
	} {
		if err := CheckMember(tc.id, tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckMember(%q, %q) = %v, want ok %v", tc.id, tc.addr, err, tc.ok)
		}
	}
}
