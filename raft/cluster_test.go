package raft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// Fast raft timings for tests. The heartbeat timeout is the floor of the
// randomised election timer; 200 ms keeps elections prompt while leaving
// room for the race detector on a loaded 2-core machine (100 ms made
// leaders miss their lease under GOMAXPROCS=1). The tests follow
// leadership changes anyway (onLeader).
func fastTimings(c *ClusterSettings) {
	c.HeartbeatTimeout = 200 * time.Millisecond
	c.ElectionTimeout = 200 * time.Millisecond
	c.LeaderLeaseTimeout = 200 * time.Millisecond
	c.CommitTimeout = 5 * time.Millisecond
}

// leaderEvent is one value a node's Leadership subscription delivered, with
// what the node had applied at that moment.
type leaderEvent struct {
	node    int
	leader  bool
	closed  bool
	applied uint64
	last    uint64
	gen     uint64
}

// testCluster is a cluster on hraft's in-memory transport with real bolt
// stores in temp dirs.
type testCluster struct {
	t      *testing.T
	peers  []Voter
	dirs   []string
	nodes  []*Node
	subs   []chan struct{} // closed when a node's event goroutine ends
	trans  []*hraft.InmemTransport
	events chan leaderEvent
	state  map[int]bool
}

func newTestCluster(t *testing.T, n int) *testCluster {
	c := &testCluster{t: t, events: make(chan leaderEvent, 256), state: map[int]bool{}}
	for i := range n {
		c.peers = append(c.peers, Voter{
			ID:      fmt.Sprintf("d%d", i+1),
			Address: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 7000),
		})
		c.dirs = append(c.dirs, t.TempDir())
	}
	c.nodes = make([]*Node, n)
	c.subs = make([]chan struct{}, n)
	c.trans = make([]*hraft.InmemTransport, n)
	for i := range n {
		c.start(i, Config{})
	}
	return c
}

// start (re)starts node i on its data dir with a fresh transport connected
// to the others'; extra carries the Join flag.
func (c *testCluster) start(i int, extra Config) *Node {
	t := c.t
	t.Helper()
	if c.subs[i] != nil {
		// The previous instance's events come first.
		waitClosed(t, c.subs[i], "previous instance's events")
	}
	_, tr := hraft.NewInmemTransport(hraft.ServerAddress(c.peers[i].Address.String()))
	c.trans[i] = tr
	for j, o := range c.trans {
		if j != i && o != nil {
			tr.Connect(o.LocalAddr(), o)
			o.Connect(tr.LocalAddr(), tr)
		}
	}
	cl := ClusterSettings{Bind: c.peers[i].Address, Peers: c.peers}
	fastTimings(&cl)
	n, err := New(Config{ValidateSpec: testValidate,
		NodeID: c.peers[i].ID, DataDir: c.dirs[i], Cluster: cl, Logger: testutil.Logger(t),
		Transport: tr, Join: extra.Join,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	c.nodes[i] = n
	subDone := make(chan struct{})
	c.subs[i] = subDone
	go func() {
		defer close(subDone)
		for v := range n.Leadership(context.Background()) {
			ev := leaderEvent{node: i, leader: v}
			if v {
				// Read at once what the node had applied when it
				// announced leadership.
				st := n.Stats()
				ev.applied, ev.last, ev.gen = st.AppliedIndex, st.LastLogIndex, st.Generation
			}
			c.events <- ev
		}
		c.events <- leaderEvent{node: i, closed: true}
	}()
	return n
}

// waitFor consumes leadership events until cond holds for the latest state
// of every node; it returns the events consumed.
func (c *testCluster) waitFor(what string, cond func(state map[int]bool) bool) []leaderEvent {
	c.t.Helper()
	var seen []leaderEvent
	apply := func(ev leaderEvent) {
		seen = append(seen, ev)
		if ev.closed {
			delete(c.state, ev.node)
		} else {
			c.state[ev.node] = ev.leader
		}
	}
	// Take the events already sent first: the state must not be judged
	// on events of node instances that have since been closed.
	for drained := false; !drained; {
		select {
		case ev := <-c.events:
			apply(ev)
		default:
			drained = true
		}
	}
	deadline := time.After(testTimeout)
	for !cond(c.state) {
		select {
		case ev := <-c.events:
			apply(ev)
		case <-deadline:
			c.t.Fatalf("timed out waiting for %s (state %v)", what, c.state)
		}
	}
	return seen
}

// waitLeader waits for exactly one established leader among the nodes
// that are not in except, and returns its index.
func (c *testCluster) waitLeader(except ...int) int {
	c.t.Helper()
	leader := -1
	c.waitFor("a leader", func(st map[int]bool) bool {
		leader = -1
		for i, v := range st {
			if v && !slices.Contains(except, i) {
				if leader >= 0 {
					return false
				}
				leader = i
			}
		}
		return leader >= 0
	})
	return leader
}

// waitGeneration waits until node n has applied generation gen.
func waitGeneration(t *testing.T, n *Node, gen uint64) (cfg ClusterConfig) {
	t.Helper()
	testutil.WaitChange(t, testTimeout, fmt.Sprintf("%s to apply generation %d", n.ID(), gen), n.Watch, func() (bool, string) {
		cfg = n.Config()
		return cfg.Generation >= gen, fmt.Sprintf("generation %d", cfg.Generation)
	})
	return cfg
}

// leadershipMoved reports whether err only means that leadership changed
// hands during an operation, which a caller retries on the new leader.
func leadershipMoved(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) ||
		errors.Is(err, hraft.ErrLeadershipTransferInProgress) ||
		strings.Contains(err.Error(), "leadership transfer timeout")
}

// onLeader runs op on the established leader among nodes, and again on the
// next one when leadership moved during op (a loaded test machine can make a
// leader miss its lease). It returns the node op succeeded on.
func onLeader(t *testing.T, nodes []*Node, op func(n *Node) error) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	cases := make([]reflect.SelectCase, 0, len(nodes)+1)
	for _, n := range nodes {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(n.Leadership(ctx))})
	}
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())})
	for {
		i, v, ok := reflect.Select(cases)
		if i == len(nodes) {
			t.Fatal("timed out waiting for a leader to run the operation on")
		}
		if !ok {
			cases[i].Chan = reflect.ValueOf((<-chan bool)(nil)) // a closed node
			continue
		}
		for v.Bool() {
			err := op(nodes[i])
			if err == nil {
				return nodes[i]
			}
			if !leadershipMoved(err) {
				t.Fatalf("on leader %s: %v", nodes[i].ID(), err)
			}
			t.Logf("leadership moved during the operation, retrying: %v", err)
			if !nodes[i].IsLeader() {
				break // its loss and the next leader come as events
			}
			if ctx.Err() != nil {
				t.Fatal("timed out retrying the operation")
			}
		}
	}
}

// submit replicates spec through whichever node leads and returns the
// generation it got (a retry after a lost leadership may find the spec
// already committed: a no-op with the same generation).
func submit(t *testing.T, nodes []*Node, spec Spec) uint64 {
	t.Helper()
	var res SetConfigResult
	onLeader(t, nodes, func(n *Node) (err error) {
		res, err = n.SubmitConfig(testutil.Context(t, testTimeout), spec, "")
		return err
	})
	return res.Generation
}

// aFollower returns a node that is not the leader, waiting if need be.
func aFollower(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		for _, n := range nodes {
			if r := n.raft.Load(); r != nil && r.State() == hraft.Follower && n.LeaderAddress() != "" {
				return n
			}
		}
		select {
		case <-nodes[0].Watch():
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatal("no follower with a known leader")
		}
	}
}

func TestClusterReplicatesConfig(t *testing.T) {
	c := newTestCluster(t, 3)
	for i, n := range c.nodes {
		if !n.bootstrapped {
			t.Errorf("node %d did not bootstrap on first start", i)
		}
	}
	ctx := testutil.Context(t, testTimeout)

	var res SetConfigResult
	leader := onLeader(t, c.nodes, func(n *Node) (err error) {
		res, err = n.SubmitConfig(ctx, testSpec(1), "")
		return err
	})
	if res.Generation != 1 {
		t.Fatalf("submit = %#v", res)
	}
	for _, n := range c.nodes {
		cfg := waitGeneration(t, n, 1)
		if !reflect.DeepEqual(cfg.Spec, testSpec(1)) || cfg.SubmittedBy == "" {
			t.Errorf("%s: replicated config %+v", n.ID(), cfg)
		}
	}
	if leader.Config().SubmittedBy != leader.ID() && res.Changed {
		t.Errorf("SubmittedBy %q, want %q", leader.Config().SubmittedBy, leader.ID())
	}

	// The same file again: no new generation.
	onLeader(t, c.nodes, func(n *Node) (err error) {
		res, err = n.SubmitConfig(ctx, testSpec(1), "d9")
		return err
	})
	if res != (SetConfigResult{Generation: 1, Changed: false}) {
		t.Fatalf("resubmit = %#v", res)
	}

	// A follower refuses and names the leader.
	follower := aFollower(t, c.nodes)
	_, err := follower.SubmitConfig(ctx, testSpec(2), "")
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("follower submit error %v, want ErrNotLeader", err)
	}
	var nle *NotLeaderError
	if !errors.As(err, &nle) {
		t.Fatalf("follower submit error %#v, want a *NotLeaderError", err)
	}
	found := false
	for _, p := range c.peers {
		found = found || (nle.LeaderAddress == p.Address.String() && nle.LeaderID == p.ID && p.ID != follower.ID())
	}
	if !found {
		t.Errorf("follower names leader %s@%s", nle.LeaderID, nle.LeaderAddress)
	}
	if _, err := follower.SetAdmin(ctx, webRef("198.51.100.10"), AdminDrained); !errors.Is(err, ErrNotLeader) {
		t.Errorf("follower SetAdmin error %v", err)
	}

	// Admin state replicates.
	onLeader(t, c.nodes, func(n *Node) error {
		ar, err := n.SetAdmin(ctx, webRef("198.51.100.10"), AdminDrained)
		if err == nil && ar.Previous != AdminEnabled && ar.Changed {
			t.Errorf("SetAdmin = %#v", ar)
		}
		return err
	})
	onLeader(t, c.nodes, func(n *Node) error {
		_, err := n.SetAdmin(ctx, webRef("198.51.100.99"), AdminDrained)
		if leadershipMoved(err) {
			return err
		}
		if !errors.Is(err, ErrUnknownReal) {
			t.Errorf("SetAdmin of an unknown real: %v", err)
		}
		if _, err := n.SetAdmin(ctx, webRef("198.51.100.10"), "off"); err == nil {
			t.Error("SetAdmin with a bad state succeeded")
		}
		return nil
	})
	for _, n := range c.nodes {
		for {
			w := n.Watch()
			if n.Admin()[webRef("198.51.100.10")] == AdminDrained {
				break
			}
			select {
			case <-w:
			case <-ctx.Done():
				t.Fatalf("%s: admin state not replicated", n.ID())
			}
		}
	}

	members, err := follower.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Fatalf("members = %+v", members)
	}
	leaders := 0
	for i, m := range members {
		if m.Leader {
			leaders++
		}
		m.Leader = false
		want := Member{ID: c.peers[i].ID, Address: c.peers[i].Address.String(), Suffrage: SuffrageVoter}
		if m != want {
			t.Errorf("member %d = %+v, want %+v", i, m, want)
		}
	}
	if leaders > 1 {
		t.Errorf("%d members flagged leader", leaders)
	}

	onLeader(t, c.nodes, func(n *Node) error {
		st := n.Stats()
		if st.State != "Leader" {
			return ErrNotLeader
		}
		if !st.Leader || st.Term == 0 || st.Generation != 1 || st.LeaderID != n.ID() ||
			st.CommitIndex == 0 || st.AppliedIndex == 0 || st.LastLogIndex < st.CommitIndex {
			t.Errorf("leader stats %+v", st)
		}
		return nil
	})
	if fs := aFollower(t, c.nodes).Stats(); fs.State != "Follower" || fs.Leader || fs.LastContact.IsZero() || fs.LeaderID == "" {
		t.Errorf("follower stats %+v", fs)
	}

	// A deadline already passed is reported, not waited for.
	expired, cancel := context.WithTimeout(t.Context(), -time.Second)
	defer cancel()
	onLeader(t, c.nodes, func(n *Node) error {
		if _, err := n.SubmitConfig(expired, testSpec(3), ""); err == nil {
			t.Error("submit with an expired context succeeded")
		}
		return nil
	})
}

func TestClusterFailover(t *testing.T) {
	c := newTestCluster(t, 3)
	if g := submit(t, c.nodes, testSpec(1)); g != 1 {
		t.Fatalf("generation %d", g)
	}
	old := c.waitLeader()
	if err := c.nodes[old].Close(); err != nil {
		t.Fatal(err)
	}
	newLeader := -1
	events := c.waitFor("failover", func(st map[int]bool) bool {
		_, oldPresent := st[old]
		newLeader = -1
		for i, v := range st {
			if v && i != old {
				newLeader = i
			}
		}
		return !oldPresent && newLeader >= 0
	})
	// The old leader reported the loss before its subscription closed,
	// and every leader after it announced itself only once its FSM held
	// the configuration committed under the old leader (after Barrier).
	var lastOld *leaderEvent
	closedAt := -1
	for i, ev := range events {
		if ev.node != old {
			continue
		}
		if ev.closed {
			closedAt = i
		} else {
			lastOld = &events[i]
		}
	}
	if lastOld == nil || lastOld.leader || closedAt < 0 {
		t.Errorf("old leader did not report the loss of leadership: %+v", events)
	}
	for _, ev := range events[closedAt+1:] {
		if ev.leader && (ev.gen != 1 || ev.applied == 0) {
			t.Errorf("node %d announced leadership with generation %d, applied %d of %d",
				ev.node, ev.gen, ev.applied, ev.last)
		}
	}
	if g := submit(t, c.nodes, testSpec(2)); g != 2 {
		t.Fatalf("submit on the new leader: generation %d", g)
	}
	select {
	case <-c.nodes[old].Done():
	default:
		t.Error("Done not closed after Close")
	}
	if err := c.nodes[old].Start(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}

func TestClusterTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := testutil.Context(t, testTimeout)
	li := c.waitLeader()
	target := c.nodes[(li+2)%3]

	if err := aFollower(t, c.nodes).TransferLeadership(ctx); !errors.Is(err, ErrNotLeader) {
		t.Errorf("transfer from a follower: %v", err)
	}
	onLeader(t, c.nodes, func(n *Node) error {
		if err := n.TransferLeadership(ctx, "nosuch"); err == nil || leadershipMoved(err) {
			return ErrNotLeader
		}
		return nil
	})
	onLeader(t, c.nodes, func(n *Node) error {
		if n == target {
			return nil
		}
		return n.TransferLeadership(ctx, target.ID())
	})
	ti := slices.Index(c.nodes, target)
	c.waitFor("leadership on the target", func(st map[int]bool) bool { return st[ti] })

	// Without a target raft picks one.
	from := onLeader(t, c.nodes, func(n *Node) error { return n.TransferLeadership(ctx) })
	fi := slices.Index(c.nodes, from)
	c.waitFor("leadership elsewhere", func(st map[int]bool) bool {
		return !st[fi] && (st[(fi+1)%3] || st[(fi+2)%3])
	})

	// Shutdown of the leader hands leadership over before closing.
	nl := c.waitLeader()
	if err := c.nodes[nl].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitLeader(nl)
}

func TestClusterRestartKeepsState(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := testutil.Context(t, testTimeout)
	submit(t, c.nodes, testSpec(1))
	onLeader(t, c.nodes, func(n *Node) error {
		_, err := n.SetAdmin(ctx, webRef("198.51.100.11"), AdminDisabled)
		return err
	})
	f := aFollower(t, c.nodes)
	fi := slices.Index(c.nodes, f)
	waitGeneration(t, f, 1)
	for {
		w := f.Watch()
		if len(f.Admin()) != 0 {
			break
		}
		select {
		case <-w:
		case <-ctx.Done():
			t.Fatal("admin state not replicated")
		}
	}
	// A snapshot, so that the restarted node has state before it hears
	// from the leader.
	if err := f.raft.Load().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	f = c.start(fi, Config{})
	if f.bootstrapped {
		t.Error("restarted node bootstrapped again")
	}
	st := f.State()
	if st.Config.Generation != 1 || st.Admin[webRef("198.51.100.11")] != AdminDisabled {
		t.Errorf("state after restart %+v", st)
	}
	// It rejoins: later changes reach it.
	submit(t, c.nodes, testSpec(2))
	waitGeneration(t, f, 2)

	// All nodes restarted: no bootstrap, same state, a leader again.
	for i := range c.nodes {
		if err := c.nodes[i].Close(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range c.nodes {
		n := c.start(i, Config{})
		if n.bootstrapped {
			t.Errorf("node %d bootstrapped on restart", i)
		}
	}
	for _, n := range c.nodes {
		waitGeneration(t, n, 2)
	}
	var res SetConfigResult
	onLeader(t, c.nodes, func(n *Node) (err error) {
		res, err = n.SubmitConfig(ctx, testSpec(2), "")
		return err
	})
	if res != (SetConfigResult{Generation: 2, Changed: false}) {
		t.Errorf("resubmit after restart = %#v", res)
	}
}

func TestJoinAndRemove(t *testing.T) {
	dir1, dir2 := t.TempDir(), t.TempDir()
	a1 := netip.MustParseAddrPort("192.0.2.11:7000")
	a2 := netip.MustParseAddrPort("192.0.2.12:7000")
	_, t1 := hraft.NewInmemTransport(hraft.ServerAddress(a1.String()))
	_, t2 := hraft.NewInmemTransport(hraft.ServerAddress(a2.String()))
	t1.Connect(t2.LocalAddr(), t2)
	t2.Connect(t1.LocalAddr(), t1)

	// A single node bootstraps alone when no peers are configured.
	cl := ClusterSettings{Bind: a1}
	fastTimings(&cl)
	n1, err := New(Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: dir1, Cluster: cl, Logger: testutil.Logger(t), Transport: t1})
	if err != nil {
		t.Fatal(err)
	}
	if err := n1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	lead := n1.Leadership(t.Context())
	expectValue(t, lead, false)
	expectValue(t, lead, true)
	ctx := testutil.Context(t, testTimeout)
	if _, err := n1.SubmitConfig(ctx, testSpec(1), ""); err != nil {
		t.Fatal(err)
	}

	// A joining node does not bootstrap and gets the state once added.
	cl2 := ClusterSettings{Bind: a2, Peers: []Voter{{ID: "d1", Address: a1}}}
	fastTimings(&cl2)
	n2, err := New(Config{ValidateSpec: testValidate, NodeID: "d2", DataDir: dir2, Cluster: cl2, Logger: testutil.Logger(t), Transport: t2, Join: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if n2.bootstrapped {
		t.Fatal("joining node bootstrapped")
	}
	if err := n1.AddVoter(ctx, "d2", "not-an-address"); err == nil {
		t.Error("AddVoter with a bad address succeeded")
	}
	if err := n2.AddVoter(ctx, "d3", "192.0.2.13:7000"); !errors.Is(err, ErrNotLeader) {
		t.Errorf("AddVoter on a non-leader: %v", err)
	}
	if err := n1.AddVoter(ctx, "d2", a2.String()); err != nil {
		t.Fatal(err)
	}
	waitGeneration(t, n2, 1)
	both := []*Node{n1, n2}
	var members []Member
	onLeader(t, both, func(n *Node) (err error) {
		members, err = n.Members(ctx)
		return err
	})
	if len(members) != 2 || members[1].ID != "d2" || members[1].Address != a2.String() || members[1].Suffrage != SuffrageVoter {
		t.Errorf("members after join %+v", members)
	}
	// Remove d2 (from whichever leads: d1 unless the pair re-elected).
	leader := onLeader(t, both, func(n *Node) error {
		if n == n2 {
			if err := n.TransferLeadership(ctx, "d1"); err != nil && !leadershipMoved(err) {
				return err
			}
			return ErrNotLeader // wait for d1 to lead
		}
		return n.RemoveServer(ctx, "d2")
	})
	if leader != n1 {
		t.Fatal("unexpected leader")
	}
	if err := n1.AddNonvoter(ctx, "d2", a2.String()); err != nil {
		t.Fatal(err)
	}
	if members, err = n1.Members(ctx); err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[1].Suffrage != SuffrageNonvoter {
		t.Errorf("members after re-adding as nonvoter %+v", members)
	}
	if err := n1.TransferLeadership(ctx, "d2"); err == nil {
		t.Error("transfer to a nonvoter succeeded")
	}
}

func TestBootstrapConfigErrors(t *testing.T) {
	addr := netip.MustParseAddrPort("192.0.2.21:7000")
	other := netip.MustParseAddrPort("192.0.2.22:7000")
	tests := []struct {
		name  string
		peers []Voter
	}{
		{"self not in peers", []Voter{{ID: "d2", Address: other}}},
		{"self at another address", []Voter{{ID: "d1", Address: other}}},
		{"duplicate peer", []Voter{{ID: "d1", Address: addr}, {ID: "d1", Address: other}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, tr := hraft.NewInmemTransport(hraft.ServerAddress(addr.String()))
			cl := ClusterSettings{Bind: addr, Peers: tt.peers}
			fastTimings(&cl)
			n, err := New(Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: t.TempDir(), Cluster: cl, Transport: tr, Logger: testutil.Logger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if err := n.Start(t.Context()); err == nil {
				n.Close()
				t.Fatal("Start succeeded")
			}
			waitClosed(t, n.Done(), "node closed after a failed start")
		})
	}

	// Invalid timings are refused by New.
	cl := ClusterSettings{HeartbeatTimeout: time.Second, LeaderLeaseTimeout: 2 * time.Second}
	if _, err := New(Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: t.TempDir(), Cluster: cl}); err == nil {
		t.Error("lease longer than heartbeat accepted")
	}
	if _, err := New(Config{ValidateSpec: testValidate, DataDir: t.TempDir()}); err == nil {
		t.Error("empty node id accepted")
	}
}

// TestUnknownCommandStopsNodes commits a command this binary does not know:
// the nodes that apply it stop instead of diverging.
func TestUnknownCommandStopsNodes(t *testing.T) {
	c := newTestCluster(t, 3)
	submit(t, c.nodes, testSpec(1))
	leader := onLeader(t, c.nodes, func(n *Node) error {
		err := n.raft.Load().Apply([]byte{0x42, '{', '}'}, time.Second).Error()
		if errors.Is(err, hraft.ErrNotLeader) {
			return err
		}
		return nil // applied, or the leader stopped before answering
	})
	// The entry is committed on a majority, which stops; a node that had
	// not received it yet may be left without a leader, still running.
	waitClosed(t, leader.Done(), "leader stopping")
	deadline := time.After(testTimeout)
	for {
		var stopped int
		var running []*Node
		for _, n := range c.nodes {
			select {
			case <-n.Done():
				stopped++
			default:
				running = append(running, n)
			}
		}
		if stopped >= 2 {
			break
		}
		select {
		case <-running[0].Done():
		case <-running[len(running)-1].Done():
		case <-deadline:
			t.Fatal("timed out waiting for a majority to stop")
		}
	}
	for _, n := range c.nodes {
		select {
		case <-n.Done():
		default:
			continue
		}
		if !errors.Is(n.Err(), ErrUnknownCommand) {
			t.Errorf("%s: Err() = %v", n.ID(), n.Err())
		}
		if g, _ := n.FSM().Generation(); g != 1 {
			t.Errorf("%s: generation %d after stopping", n.ID(), g)
		}
	}
}

// TestDataDirLocked checks that a second node on the same data dir fails
// instead of waiting for the lock forever.
func TestDataDirLocked(t *testing.T) {
	c := newTestCluster(t, 1)
	c.waitLeader()
	_, tr := hraft.NewInmemTransport("")
	n, err := New(Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: c.dirs[0], Transport: tr, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(t.Context()); err == nil {
		n.Close()
		t.Fatal("second node on the same data dir started")
	}
}

// TestTransferReleasesFirst: a leader reports leadership lost as soon as a
// transfer starts (so a director releases its VIPs before the next one
// takes them), and takes it up again when the transfer fails while raft
// still leads; a transfer to no valid target gives nothing up.
func TestTransferReleasesFirst(t *testing.T) {
	c := newTestCluster(t, 3)
	li := c.waitLeader()
	leader := c.nodes[li]
	di := (li + 1) % 3
	c.nodes[di].Close() // the target is down: the transfer to it fails
	c.waitFor("the stopped node's events", func(st map[int]bool) bool { return !st[di] })

	sub := leader.Leadership(t.Context())
	if v := <-sub; !v {
		t.Fatal("the leader's subscription starts with false")
	}
	if err := leader.TransferLeadership(t.Context(), "nosuch"); err == nil {
		t.Fatal("a transfer to a non-member succeeded")
	}
	if err := leader.TransferLeadership(t.Context(), c.peers[di].ID); err == nil {
		t.Fatal("a transfer to a stopped node succeeded")
	}
	// false at the start of the real attempt (not for "nosuch"), true
	// again after it failed.
	for i, want := range []bool{false, true} {
		select {
		case v := <-sub:
			if v != want {
				t.Fatalf("leadership event %d = %v, want %v", i+1, v, want)
			}
		case <-time.After(testTimeout):
			t.Fatalf("no leadership event %d", i+1)
		}
	}
	if !leader.IsLeader() {
		t.Error("the leader did not take leadership up again")
	}
}

// VerifyLeader confirms leadership with a quorum: the leader passes, a
// follower does not, and a leader whose followers are gone fails (it
// steps down within its lease) instead of trusting its stale state.
func TestVerifyLeader(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.waitLeader()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.nodes[l].VerifyLeader(ctx); err != nil {
		t.Fatalf("the leader: %v", err)
	}
	if err := aFollower(t, c.nodes).VerifyLeader(ctx); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("a follower: %v, want ErrNotLeader", err)
	}
	for i, n := range c.nodes {
		if i != l {
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := c.nodes[l].VerifyLeader(ctx); err == nil {
		t.Fatal("a leader without a quorum verified its leadership")
	} else if ctx.Err() != nil {
		t.Fatalf("not resolved within the lease: %v", err)
	}
}
