// Package raft is the director cluster: a hashicorp/raft node whose
// replicated state machine holds the cluster configuration (VIPs, services,
// IPVS settings) with a generation number and the admin state of reals; a
// TCP transport with optional mutual TLS; bootstrap from the configured
// peers; membership changes; and the leadership signal the director uses to
// own the VIPs.
package raft

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/dsrd/dsrd/raft/pki"
)

// Storage layout and limits.
const (
	// raftDirName is the directory under the data dir that holds raft.db
	// (log and stable store) and snapshots/.
	raftDirName = "raft"
	// retainSnapshots is how many snapshots are kept on disk.
	retainSnapshots = 3
	// logCacheSize is the number of recent log entries kept in memory.
	logCacheSize = 512
	// boltOpenTimeout bounds the wait for raft.db's file lock, so that a
	// second dsrd on the same data dir fails instead of hanging.
	boltOpenTimeout = 2 * time.Second
	// notifyBuffer is the capacity of raft's NotifyCh; the channel is
	// always drained, the buffer only decouples raft from the loop.
	notifyBuffer = 16
)

// ErrNotLeader is hashicorp/raft's not-leader error; errors of this package
// that mean "ask the leader" match it with errors.Is, and are a
// *NotLeaderError that names the leader.
var ErrNotLeader = hraft.ErrNotLeader

// ErrNotStarted is returned by operations on a Node that is not started.
var ErrNotStarted = errors.New("raft node not started")

// ErrClosed is returned by Start on a closed Node.
var ErrClosed = errors.New("raft node closed")

// NotLeaderError is returned by operations that only the leader performs,
// when this node is not the leader. The API layer forwards the operation to
// LeaderAddress.
type NotLeaderError struct {
	// LeaderID and LeaderAddress name the current leader; both are empty
	// when no leader is known (an election is running).
	LeaderID      string
	LeaderAddress string
}

// Error implements error.
func (e *NotLeaderError) Error() string {
	if e.LeaderAddress == "" {
		return "not the raft leader; no leader known"
	}
	return fmt.Sprintf("not the raft leader; the leader is %s at %s", e.LeaderID, e.LeaderAddress)
}

// Unwrap makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Unwrap() error { return hraft.ErrNotLeader }

// Config configures a Node.
type Config struct {
	// NodeID is the node's Raft server ID (node.id in the file).
	NodeID string
	// DataDir is the node's data directory; Raft keeps data_dir/raft/raft.db
	// and data_dir/raft/snapshots.
	DataDir string
	// Cluster holds the address, peers, TLS files and timings.
	Cluster ClusterSettings
	// Logger receives the node's logs and hashicorp/raft's (under the key
	// logger=raft...). Nil discards them.
	Logger *slog.Logger
	// Role is the role this node runs as; with TLS, its certificate must
	// carry it (and its node id). Empty skips the role check.
	Role pki.Role
	// Join marks a node that joins an existing cluster: it never
	// bootstraps and waits until the leader adds it (AddVoter). Otherwise a
	// node without Raft state bootstraps with Cluster.Peers as voters (or
	// alone when Peers is empty); it must be one of them.
	Join bool
	// Transport replaces the TCP/TLS transport built from Cluster (tests use
	// hraft.NewInmemTransport). The caller keeps ownership of it.
	Transport hraft.Transport
	// ValidateSpec checks every spec this node submits or applies by the
	// rules of the configuration file (internal/clusterspec.Validate);
	// without it the node refuses every configuration.
	ValidateSpec SpecValidator
	// MemberVersions returns the CommandVersion each other member
	// advertises (the director asks their peer status); a leader consults
	// it before appending a command newer than version 1. Nil: no member
	// is known to understand more than version 1.
	MemberVersions func(ctx context.Context, members []Member) (map[string]int, error)
	// SnapshotInterval, SnapshotThreshold and TrailingLogs tune
	// hashicorp/raft's snapshots; zero keeps its defaults.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
}

// Node is one member of the director cluster.
//
// Lifecycle: New, then Start, then Close (or Shutdown). Goroutines started
// by Start: the leadership loop (drains raft's NotifyCh; ends in Close after
// raft has shut down), its barrier goroutines (end with their term or when
// raft shuts down), the FSM monitor (ends in Close, or closes the node when
// the FSM stops), the TLS accept and handshake goroutines of the transport
// (end when Close closes the transport), and one forwarder per Leadership
// subscription (ends when its ctx is done or after the node is closed and
// its last state delivered). Operations that wait for Raft with a ctx leave
// a goroutine waiting on the Raft future until Raft answers it, which it
// does at the latest when it shuts down.
type Node struct {
	cfg  Config
	log  *slog.Logger
	hlog *hclogAdapter
	fsm  *FSM
	lead *leadership
	// members is the view of the Raft configuration the Raft port's gate
	// checks peers against.
	members memberView

	notifyCh chan bool
	raft     atomic.Pointer[hraft.Raft]

	mu           sync.Mutex
	started      bool
	closed       bool
	store        *raftboltdb.BoltStore
	ownTrans     io.Closer
	inject       injector // raft's transport; ElectNow injects through it
	bootstrapped bool     // this start bootstrapped the cluster
	err          error

	closeOnce sync.Once
	stopping  chan struct{} // closed when Close begins
	done      chan struct{} // closed when Close has finished
}

// New validates cfg and returns a Node that is not started.
func New(cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("raft node id is empty")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("raft data dir is empty")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", cfg.NodeID)
	n := &Node{
		cfg:      cfg,
		log:      logger,
		fsm:      NewFSM(logger.With("component", "fsm"), cfg.ValidateSpec),
		notifyCh: make(chan bool, notifyBuffer),
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	n.members.read = n.readMembers
	n.hlog = newHCLogger(logger, "raft")
	n.lead = newLeadership(logger.With("component", "leadership"), n.notifyCh, n.barrier)
	if _, err := n.raftConfig(); err != nil {
		return nil, err
	}
	return n, nil
}

// raftConfig builds hashicorp/raft's configuration; timings that are zero in
// the cluster configuration keep hashicorp/raft's defaults.
func (n *Node) raftConfig() (*hraft.Config, error) {
	c := hraft.DefaultConfig()
	c.LocalID = hraft.ServerID(n.cfg.NodeID)
	cl := n.cfg.Cluster
	if d := cl.HeartbeatTimeout; d > 0 {
		c.HeartbeatTimeout = d
	}
	if d := cl.ElectionTimeout; d > 0 {
		c.ElectionTimeout = d
	}
	if d := cl.LeaderLeaseTimeout; d > 0 {
		c.LeaderLeaseTimeout = d
	}
	if d := cl.CommitTimeout; d > 0 {
		c.CommitTimeout = d
	}
	if n.cfg.SnapshotInterval > 0 {
		c.SnapshotInterval = n.cfg.SnapshotInterval
	}
	if n.cfg.SnapshotThreshold > 0 {
		c.SnapshotThreshold = n.cfg.SnapshotThreshold
	}
	if n.cfg.TrailingLogs > 0 {
		c.TrailingLogs = n.cfg.TrailingLogs
	}
	c.MaxAppendEntries = maxAppendEntries
	c.NotifyCh = n.notifyCh
	c.Logger = n.hlog
	if err := hraft.ValidateConfig(c); err != nil {
		return nil, fmt.Errorf("raft configuration: %w", err)
	}
	return c, nil
}

// Start opens the stores, starts the transport and Raft, and bootstraps the
// cluster if this node has no Raft state yet (never twice: a restart finds
// its state and skips it). ctx bounds the start only; the node runs until
// Close. A failed Start leaves the node closed. Storage Raft cannot start
// from (a damaged raft.db, state that was lost, a log with a gap, a
// snapshot that does not load) is a *StorageError that says how to recover
// the member; the node then neither bootstraps nor starts Raft.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	if n.started {
		n.mu.Unlock()
		return errors.New("raft node already started")
	}
	n.started = true
	n.mu.Unlock()
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}

	conf, err := n.raftConfig()
	if err != nil {
		return err
	}
	st, err := openStorage(storageConfig{dataDir: n.cfg.DataDir, nodeID: n.cfg.NodeID,
		address: advertised(n.cfg.Cluster), log: n.log, hlog: n.hlog, validate: n.cfg.ValidateSpec})
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.store = st.store
	n.mu.Unlock()
	dir, store, logs, snaps := st.dir, st.store, st.logs, st.snaps

	trans := n.cfg.Transport
	if trans == nil {
		peerTLS, err := n.loadTLS()
		if err != nil {
			return err
		}
		layer, err := Listen(n.cfg.Cluster.Bind, n.cfg.Cluster.Advertise, peerTLS, n.log.With("component", "transport"))
		if err != nil {
			return err
		}
		nt := NewTransport(layer, n.log)
		n.mu.Lock()
		n.ownTrans = nt
		n.mu.Unlock()
		trans = nt
	}

	existing, err := hraft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	switch {
	case existing:
		n.log.Info("raft state found, not bootstrapping", "dir", dir)
	case n.cfg.Join:
		n.log.Info("no raft state; waiting to be added to the cluster by its leader",
			"address", string(trans.LocalAddr()))
	default:
		servers, err := n.bootstrapServers(trans.LocalAddr())
		if err != nil {
			return err
		}
		if err := hraft.BootstrapCluster(conf, logs, store, snaps, trans, hraft.Configuration{Servers: servers}); err != nil {
			return fmt.Errorf("bootstrap raft cluster: %w", err)
		}
		n.mu.Lock()
		n.bootstrapped = true
		n.mu.Unlock()
		n.log.Info("raft cluster bootstrapped", "voters", len(servers))
	}

	// Only the leader this node follows may make it start an election
	// (see guardedTransport); dsrd's TCP transport checks that itself,
	// with the sender's certificate (Transport), and every other rule of
	// the Raft port, once the node is its authority.
	if t, own := trans.(*Transport); own {
		t.layer.SetAuthority(nodeAuthority{n})
		n.mu.Lock()
		n.inject = t
		n.mu.Unlock()
	} else {
		trans = guardTimeoutNow(trans, n.leaderID, n.log.With("component", "transport"))
		if g, ok := trans.(*guardedTransport); ok {
			n.mu.Lock()
			n.inject = g
			n.mu.Unlock()
		}
	}

	// Drain NotifyCh before raft can send on it.
	n.lead.start()
	r, err := newRaft(dir, conf, n.fsm, logs, store, snaps, trans)
	if err != nil {
		if g, ok := trans.(*guardedTransport); ok {
			g.stop()
		}
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft.Store(r)
	go n.monitor()
	n.log.Info("raft started", "address", string(trans.LocalAddr()))
	return nil
}

// loadTLS loads the node's mutual TLS and checks that its certificate is
// this node's; nil without TLS, which only a loopback-only or an explicitly
// insecure cluster may run (config enforces it too; this is the last line).
func (n *Node) loadTLS() (*PeerTLS, error) {
	c := n.cfg.Cluster
	peerTLS, err := LoadPeerTLS(c.TLS)
	if err != nil {
		return nil, err
	}
	if peerTLS != nil {
		if err := checkOwnIdentity(peerTLS, n.cfg.NodeID, n.cfg.Role); err != nil {
			return nil, err
		}
		go n.watchCert(peerTLS)
		return peerTLS, nil
	}
	exposed := c.Bind.IsValid() && !c.Bind.Addr().IsLoopback() ||
		c.Advertise.IsValid() && !c.Advertise.Addr().IsLoopback()
	for _, p := range c.Peers {
		exposed = exposed || !p.Address.Addr().IsLoopback()
	}
	switch {
	case exposed && !c.Insecure:
		return nil, errors.New("cluster.tls is not set and the cluster is not on loopback: set cluster.tls (dsrd tls makes the files) or cluster.insecure: true")
	case exposed:
		n.log.Warn("cluster.insecure is set: the Raft port is not authenticated, anyone who can reach it can change the cluster and run health check commands as root")
	}
	return nil, nil
}

// leaderID returns the ID of the leader this node knows, "" when none or
// before raft has started.
func (n *Node) leaderID() hraft.ServerID {
	r := n.raft.Load()
	if r == nil {
		return ""
	}
	_, id := r.LeaderWithID()
	return id
}

// bootstrapServers returns the voters of the first configuration.
func (n *Node) bootstrapServers(local hraft.ServerAddress) ([]hraft.Server, error) {
	self := hraft.ServerID(n.cfg.NodeID)
	if len(n.cfg.Cluster.Peers) == 0 {
		return []hraft.Server{{Suffrage: hraft.Voter, ID: self, Address: local}}, nil
	}
	servers := make([]hraft.Server, 0, len(n.cfg.Cluster.Peers))
	ids := map[string]bool{}
	addrs := map[string]bool{}
	found := false
	for _, p := range n.cfg.Cluster.Peers {
		addr := p.Address.String()
		if p.ID == "" || !p.Address.IsValid() {
			return nil, fmt.Errorf("cluster peer %q@%s: id and address are required", p.ID, addr)
		}
		if ids[p.ID] || addrs[addr] {
			return nil, fmt.Errorf("cluster peer %s@%s listed twice", p.ID, addr)
		}
		ids[p.ID], addrs[addr] = true, true
		if p.ID == n.cfg.NodeID {
			found = true
			if addr != string(local) {
				return nil, fmt.Errorf("cluster peer %s@%s: this node advertises %s", p.ID, addr, local)
			}
		}
		servers = append(servers, hraft.Server{Suffrage: hraft.Voter, ID: hraft.ServerID(p.ID), Address: hraft.ServerAddress(addr)})
	}
	if !found {
		return nil, fmt.Errorf("node %q is not in cluster.peers: list it, or start it to join an existing cluster", self)
	}
	return servers, nil
}

// monitor closes the node when the FSM stops on a command it cannot
// understand. It ends then, or when Close begins.
func (n *Node) monitor() {
	select {
	case <-n.fsm.Failed():
		err := fmt.Errorf("raft state machine stopped: %w", n.fsm.Err())
		n.mu.Lock()
		n.err = err
		n.mu.Unlock()
		n.log.Error("shutting raft down", "error", err)
		_ = n.Close()
	case <-n.stopping:
	}
}

// Close shuts Raft down at once (without handing leadership over: see
// Shutdown), reports the loss of leadership to the subscribers if the node
// was leader, and closes the transport it built and the stores. It is safe to
// call more than once and from any goroutine.
func (n *Node) Close() error {
	var errs []error
	n.closeOnce.Do(func() {
		close(n.stopping)
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		if r := n.raft.Load(); r != nil {
			if err := r.Shutdown().Error(); err != nil {
				errs = append(errs, fmt.Errorf("shut raft down: %w", err))
			}
		}
		n.lead.stop()
		n.mu.Lock()
		trans, store := n.ownTrans, n.store
		n.mu.Unlock()
		if trans != nil {
			if err := trans.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft transport: %w", err))
			}
		}
		if store != nil {
			if err := store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft store: %w", err))
			}
		}
		close(n.done)
		n.log.Info("raft stopped")
	})
	return errors.Join(errs...)
}

// Shutdown hands leadership over to another voter when this node is the
// leader (to the first of to that takes it, as TransferLeadership; raft's
// choice when to is empty; bounded by ctx; a failure is logged, not
// returned), then closes the node. A planned restart of the leader thus
// fails over in one round trip instead of an election timeout.
func (n *Node) Shutdown(ctx context.Context, to ...string) error {
	if r := n.raft.Load(); r != nil && r.State() == hraft.Leader {
		if err := n.TransferLeadership(ctx, to...); err != nil {
			n.log.Warn("leadership transfer before shutdown failed", "error", err)
		}
	}
	return n.Close()
}

// Done is closed when the node has stopped: after Close, or after the FSM
// stopped on a command it cannot understand (Err then says why).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns why the node stopped by itself, or nil.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// ID returns the node's Raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// FSM returns the node's replicated state machine (read it; only Raft
// applies to it).
func (n *Node) FSM() *FSM { return n.fsm }

// Config returns a copy of the replicated cluster configuration as this node
// has applied it.
func (n *Node) Config() ClusterConfig { return n.fsm.Config() }

// Admin returns a copy of the replicated admin states (reals not enabled).
func (n *Node) Admin() map[RealRef]Admin { return n.fsm.Admin() }

// State returns the configuration and admin states, taken together.
func (n *Node) State() State { return n.fsm.State() }

// Watch returns a channel closed at the next change of the replicated
// state; see FSM.Watch.
func (n *Node) Watch() <-chan struct{} { return n.fsm.Watch() }

// Leadership subscribes to this node's established leadership: the channel
// delivers the current state first, then true when the node has become
// leader AND a Barrier has succeeded (its FSM holds everything earlier
// leaders committed, so the VIPs can be taken), and false as soon as
// leadership is lost; in order, none lost. It is closed when ctx is done, or
// after the node is closed and its final false delivered; keep reading until
// it is closed or cancel ctx.
func (n *Node) Leadership(ctx context.Context) <-chan bool { return n.lead.subscribe(ctx) }

// IsLeader reports whether the node is the leader and has passed its
// barrier (the state Leadership last delivered).
func (n *Node) IsLeader() bool { return n.lead.isLeader() }

// VerifyLeader confirms with a round of contact with a quorum that this
// node still leads. Established leadership (IsLeader) can be stale: a
// leader whose process was paused (SIGSTOP, a frozen VM) for longer than
// its lease has been replaced, and does not know it until Raft's own
// lease check runs after the pause. It fails when the node does not lead,
// loses leadership meanwhile, or ctx ends first (Raft resolves the check
// within the leader lease either way).
func (n *Node) VerifyLeader(ctx context.Context) error {
	r := n.raft.Load()
	if r == nil || !n.IsLeader() {
		return fmt.Errorf("verify leadership: %w", ErrNotLeader)
	}
	f := r.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("verify leadership: %w", err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("verify leadership: %w", ctx.Err())
	}
}

// LeaderAddress returns the leader's Raft address, "" when none is known.
func (n *Node) LeaderAddress() string {
	addr, _ := n.leader()
	return addr
}

// LeaderID returns the leader's server ID, "" when none is known.
func (n *Node) LeaderID() string {
	_, id := n.leader()
	return id
}

func (n *Node) leader() (string, string) {
	r := n.raft.Load()
	if r == nil {
		return "", ""
	}
	addr, id := r.LeaderWithID()
	return string(addr), string(id)
}

// barrier is the leadership loop's Barrier.
func (n *Node) barrier(timeout time.Duration) error {
	r := n.raft.Load()
	if r == nil {
		return hraft.ErrNotLeader
	}
	// Bounded by timeout, not only its enqueue: a barrier raft never
	// applies (its shutdown waits on this caller, in Close) must not hang.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return waitFuture(ctx, r.Barrier(timeout))
}

// SubmitConfig replicates spec as the cluster configuration; only the leader
// accepts it (others return a *NotLeaderError). submittedBy names the
// submitting node, this one when empty. When spec's hash equals the current
// configuration's, nothing changes and the result says so. ctx's deadline
// bounds the wait to enqueue and the wait for the commit; when ctx ends
// first the submission may still be applied.
func (n *Node) SubmitConfig(ctx context.Context, spec Spec, submittedBy string) (SetConfigResult, error) {
	if err := validateSpec(n.cfg.ValidateSpec, spec); err != nil {
		return SetConfigResult{}, fmt.Errorf("submit config: %w", err)
	}
	hash, err := spec.Hash()
	if err != nil {
		return SetConfigResult{}, fmt.Errorf("submit config: %w", err)
	}
	if submittedBy == "" {
		submittedBy = n.cfg.NodeID
	}
	resp, err := n.apply(ctx, spec.setConfigType(), SetConfigCommand{
		Spec:        spec,
		Hash:        hash,
		Keys:        spec.Keys(),
		SubmittedBy: submittedBy,
		SubmittedAt: time.Now().UTC(),
	})
	if err != nil {
		return SetConfigResult{}, fmt.Errorf("submit config: %w", err)
	}
	res, ok := resp.(SetConfigResult)
	if !ok {
		return SetConfigResult{}, fmt.Errorf("submit config: unexpected fsm response %T", resp)
	}
	return res, nil
}

// SetAdmin replicates the admin state of one real; only the leader accepts
// it. A real that is not in the current configuration is refused with
// ErrUnknownReal. ctx as for SubmitConfig.
func (n *Node) SetAdmin(ctx context.Context, ref RealRef, state Admin) (SetAdminResult, error) {
	if _, err := ParseAdmin(string(state)); err != nil {
		return SetAdminResult{}, fmt.Errorf("set admin state: %w", err)
	}
	resp, err := n.apply(ctx, CommandSetAdmin, SetAdminCommand{Ref: ref, State: state})
	if err != nil {
		return SetAdminResult{}, fmt.Errorf("set admin state of %s: %w", ref, err)
	}
	res, ok := resp.(SetAdminResult)
	if !ok {
		return SetAdminResult{}, fmt.Errorf("set admin state of %s: unexpected fsm response %T", ref, resp)
	}
	return res, nil
}

// SetHealth replicates changes of the cluster's health verdicts; only the
// leader accepts it, and only once every member can apply it (command
// version 2). Verdicts for reals the configuration lacks are skipped.
func (n *Node) SetHealth(ctx context.Context, verdicts []HealthVerdict) (SetHealthResult, error) {
	for _, v := range verdicts {
		if err := checkVerdict(v); err != nil {
			return SetHealthResult{}, fmt.Errorf("set health: %w", err)
		}
	}
	resp, err := n.apply(ctx, CommandSetHealth, SetHealthCommand{Verdicts: verdicts})
	if err != nil {
		return SetHealthResult{}, fmt.Errorf("set health: %w", err)
	}
	res, ok := resp.(SetHealthResult)
	if !ok {
		return SetHealthResult{}, fmt.Errorf("set health: unexpected fsm response %T", resp)
	}
	return res, nil
}

// apply commits one command on the leader and returns the FSM's response
// (an error response is returned as the error).
func (n *Node) apply(ctx context.Context, t CommandType, body any) (any, error) {
	r, err := n.leaderRaft()
	if err != nil {
		return nil, err
	}
	if err := n.CheckMemberVersions(ctx, t.Version()); err != nil {
		return nil, err
	}
	data, err := encodeCommand(t, body)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxEntrySize {
		return nil, fmt.Errorf("%s command of %d bytes exceeds the %d bytes a log entry may hold", t, len(data), MaxEntrySize)
	}
	f := r.Apply(data, enqueueTimeout(ctx))
	if err := waitFuture(ctx, f); err != nil {
		return nil, n.raftError(err)
	}
	resp := f.Response()
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// ErrMemberTooOld is returned for a command some member cannot apply yet.
var ErrMemberTooOld = errors.New("a member runs a dsrd too old for this command")

// CheckMemberVersions returns nil when every member of the cluster can
// apply commands of version v (see CommandVersion): version 1 always; a
// later one when each other member advertises at least v through
// Config.MemberVersions. A member that does not answer counts as too old.
func (n *Node) CheckMemberVersions(ctx context.Context, v int) error {
	if v <= 1 {
		return nil
	}
	if v > CommandVersion {
		return fmt.Errorf("%w: command version %d is newer than this binary's %d", ErrMemberTooOld, v, CommandVersion)
	}
	return n.membersAt(ctx, v)
}

// membersAt returns nil when every other member advertises command
// version v or later.
func (n *Node) membersAt(ctx context.Context, v int) error {
	members, err := n.Members(ctx)
	if err != nil {
		return fmt.Errorf("check member versions: %w", err)
	}
	var others []Member
	for _, m := range members {
		if m.ID != n.cfg.NodeID {
			others = append(others, m)
		}
	}
	got := map[string]int{}
	if n.cfg.MemberVersions != nil && len(others) > 0 {
		if got, err = n.cfg.MemberVersions(ctx, others); err != nil {
			n.log.Warn("could not read every member's command version", "error", err)
		}
	}
	var old []string
	for _, m := range others {
		if got[m.ID] < v {
			old = append(old, fmt.Sprintf("%s (version %d)", m.ID, got[m.ID]))
		}
	}
	if len(old) > 0 {
		return fmt.Errorf("%w: command version %d needs every member upgraded; not yet: %s", ErrMemberTooOld, v, strings.Join(old, ", "))
	}
	return nil
}

// leaderRaft returns raft when this node is the leader, a *NotLeaderError
// otherwise.
func (n *Node) leaderRaft() (*hraft.Raft, error) {
	r := n.raft.Load()
	if r == nil {
		return nil, ErrNotStarted
	}
	if r.State() != hraft.Leader {
		return nil, n.notLeader()
	}
	return r, nil
}

func (n *Node) notLeader() *NotLeaderError {
	addr, id := n.leader()
	return &NotLeaderError{LeaderID: id, LeaderAddress: addr}
}

// raftError turns raft's not-leader error into a *NotLeaderError.
func (n *Node) raftError(err error) error {
	if errors.Is(err, hraft.ErrNotLeader) {
		return n.notLeader()
	}
	return err
}

// enqueueTimeout maps ctx's deadline to hashicorp/raft's enqueue timeout
// (0, no timeout, without a deadline).
func enqueueTimeout(ctx context.Context) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(time.Until(dl), time.Millisecond)
}

// waitFuture waits for f or ctx. When ctx ends first, a goroutine keeps
// waiting for f; Raft answers every future, at the latest on shutdown.
func waitFuture(ctx context.Context, f hraft.Future) error {
	if ctx.Done() == nil {
		return f.Error()
	}
	ch := make(chan error, 1)
	go func() { ch <- f.Error() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return fmt.Errorf("raft operation outcome unknown: %w", ctx.Err())
	}
}

// Stats is a node's Raft status for `dsrd status` and metrics.
type Stats struct {
	ID string
	// State is Follower, Candidate, Leader or Shutdown ("" before Start).
	State string
	// Leader is true when the node is the established leader (IsLeader).
	Leader        bool
	LeaderID      string
	LeaderAddress string
	Term          uint64
	// LastContact is when a follower last heard from the leader.
	LastContact  time.Time
	CommitIndex  uint64
	AppliedIndex uint64
	LastLogIndex uint64
	// Generation and ConfigHash identify the applied cluster configuration.
	Generation uint64
	ConfigHash string
}

// Stats returns the node's Raft status.
func (n *Node) Stats() Stats {
	s := Stats{ID: n.cfg.NodeID, Leader: n.lead.isLeader()}
	s.Generation, s.ConfigHash = n.fsm.Generation()
	r := n.raft.Load()
	if r == nil {
		return s
	}
	s.State = r.State().String()
	addr, id := r.LeaderWithID()
	s.LeaderAddress, s.LeaderID = string(addr), string(id)
	s.Term = r.CurrentTerm()
	s.LastContact = r.LastContact()
	s.CommitIndex = r.CommitIndex()
	s.AppliedIndex = r.AppliedIndex()
	s.LastLogIndex = r.LastIndex()
	return s
}
