package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
)

// Pacing of a witness's attempts to hand over a leadership it won while
// no director can take it (both down, or unreachable). The delay after a
// failed attempt starts at handOverRetryMin heartbeat timeouts (1 s at the
// default 500 ms) and doubles after each further failure up to
// handOverRetryMax heartbeat timeouts (4 s): the cap is how long a
// director that comes back may wait, beyond its own start, for the
// leadership and so for the VIPs, which no one holds while the witness
// leads. Scaling with the heartbeat keeps that wait in proportion to the
// cluster's own failover time.
const (
	handOverRetryMin = 2
	handOverRetryMax = 8
	// handOverWarnEvery bounds the log of failed attempts: the first
	// failure is logged, then at most one line per interval, with the
	// count of attempts so far.
	handOverWarnEvery = time.Minute
)

// errWitness answers requests only a director can serve.
var errWitness = errors.New("a witness holds no services: run this on a director")

// Witness is a running witness: a Raft voter that never owns VIPs nor
// touches IPVS, the third vote of an HA pair. Elected leader, it transfers
// leadership to a director at once. Its methods implement api.Backend.
type Witness struct {
	cfg     *config.Witness
	log     *slog.Logger
	metrics *metrics.Set
	node    *raft.Node
	peers   *api.PeerClient
	fw      api.Forwarder
	ln      net.Listener
	ready   chan struct{}
	once    sync.Once
}

// NewWitness prepares a witness from its configuration; m receives its
// metrics (nil when metrics are off).
func NewWitness(cfg *config.Witness, log *slog.Logger, m *metrics.Set) *Witness {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Witness{cfg: cfg, log: log.With("node", cfg.Node.ID), metrics: m, ready: make(chan struct{})}
	m.Watch(w.metricsSnapshot)
	return w
}

// Ready is closed once Raft has started and the API serves.
func (w *Witness) Ready() <-chan struct{} { return w.ready }

// Run runs the witness until ctx ends.
func (w *Witness) Run(ctx context.Context) error {
	ln, err := api.ListenUnix(w.cfg.Node.APISocket)
	if err != nil {
		return err
	}
	defer ln.Close()
	w.ln = ln
	node, err := raft.New(raft.Config{NodeID: w.cfg.Node.ID, DataDir: w.cfg.Node.DataDir, Cluster: clusterspec.Settings(w.cfg.Cluster), Role: pki.RoleWitness, ValidateSpec: clusterspec.Validate, MemberVersions: memberVersions(func() *api.PeerClient { return w.peers }), Logger: w.log})
	if err != nil {
		return err
	}
	w.node = node
	w.peers = &api.PeerClient{Dial: node.DialPeer}
	w.fw = api.Forwarder{Local: node, Peers: *w.peers}
	if err := node.Start(ctx); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	// Last: hand leadership over if the witness holds it (it does not
	// keep it, but may have it at this moment), then stop Raft.
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := node.Shutdown(sctx); err != nil {
			w.log.Warn("raft shutdown", "error", err)
		}
	}()

	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	errs := make(chan error, 2)
	serveAPI := func(ctx context.Context) error {
		return api.NewServer(w, w.log, api.ServerOptions{Peers: w.peers}).Serve(ctx, w.ln)
	}
	servePeers := func(ctx context.Context) error {
		return api.NewPeerServer(node, node, w, w.log).Serve(ctx, node.PeerListener())
	}
	for _, f := range []func(context.Context) error{serveAPI, servePeers} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				errs <- err
			}
		}()
	}
	w.once.Do(func() { close(w.ready) })

	hb := w.cfg.Cluster.HeartbeatTimeout.D()
	if hb <= 0 {
		hb = config.DefaultHeartbeatTimeout
	}
	h := &handOver{
		transfer: w.transfer,
		isLeader: node.IsLeader,
		acquired: w.metrics.LeadershipAcquired,
		log:      w.log,
		min:      handOverRetryMin * hb,
		max:      handOverRetryMax * hb,
	}
	handed := make(chan struct{})
	wg.Add(1)
	go func() { // ends when runCtx ends or Raft closes the leadership channel
		defer wg.Done()
		defer close(handed)
		h.run(runCtx, node.Leadership(runCtx))
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errs:
		return err
	case <-node.Done():
		return fmt.Errorf("raft stopped: %w", node.Err())
	case <-handed:
		return nil
	}
}

// transfer transfers leadership away, to a director whose VIP interface
// is up first, then those that did not answer, then those in FAULT; none
// answering, raft's own choice.
func (w *Witness) transfer(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	p := planTransfer(tctx, w.members(tctx), w.node.ID(), peerStatus(w.peers))
	targets := append(append(p.Healthy, p.Unknown...), p.Fault...)
	return w.node.TransferLeadership(tctx, targets...)
}

// handOver hands a witness's leadership over whenever the witness holds
// it. A failed transfer is tried again after a delay that grows from min
// to max (see handOverRetryMin); its log is rate-limited.
type handOver struct {
	transfer func(context.Context) error
	isLeader func() bool
	acquired func() // counts a leadership acquisition (metrics)
	log      *slog.Logger
	min, max time.Duration

	// Touched by run only.
	delay    time.Duration // before the next attempt, after a failure
	failures int           // failed attempts since the last success
	warned   time.Time     // when a failure was last logged
}

// run hands leadership over on each acquisition that lead reports, until
// ctx ends or lead is closed.
//
// A failed transfer reports the leadership lost and then regained
// (raft.Node.TransferLeadership): that regained leadership does not
// attempt again at once but waits for the pending retry, or the witness
// would retry in a tight loop.
func (h *handOver) run(ctx context.Context, lead <-chan bool) {
	var retry <-chan time.Time // the pending attempt after a failure
	for {
		select {
		case <-ctx.Done():
			return
		case leader, ok := <-lead:
			if !ok {
				return
			}
			if !leader {
				continue // a pending retry checks leadership when it fires
			}
			h.acquired()
			if retry == nil {
				retry = h.attempt(ctx)
			}
		case <-retry:
			retry = nil
			if !h.isLeader() {
				// Someone else leads: whatever stopped the transfers
				// is over; a next win tries at once, from min again.
				h.delay, h.failures = 0, 0
				continue
			}
			retry = h.attempt(ctx)
		}
	}
}

// attempt transfers leadership once; it returns the timer of the next
// attempt when that failed, nil on success.
func (h *handOver) attempt(ctx context.Context) <-chan time.Time {
	err := h.transfer(ctx)
	if err == nil {
		h.log.Info("witness handed leadership over", "attempts", h.failures+1)
		h.delay, h.failures = 0, 0
		return nil
	}
	if ctx.Err() != nil {
		return nil // shutting down: the shutdown hands over
	}
	h.failures++
	h.delay = min(max(2*h.delay, h.min), h.max)
	if now := time.Now(); h.failures == 1 || now.Sub(h.warned) >= handOverWarnEvery {
		h.warned = now
		h.log.Warn("witness is leader and could not hand over yet", "error", err, "attempts", h.failures, "retry_in", h.delay)
	}
	return time.After(h.delay)
}

// members is the Raft configuration as the witness knows it (nil when it
// cannot be read: the transfer then goes to raft's own choice).
func (w *Witness) members(ctx context.Context) []raft.Member {
	m, err := w.node.Members(ctx)
	if err != nil {
		return nil
	}
	return m
}

// Status reports the witness's Raft view.
func (w *Witness) Status(ctx context.Context) (api.Status, error) {
	st := raftStatus(ctx, w.node, "witness")
	return st, nil
}

// metricsSnapshot is the witness's status, the metrics' source. It reads
// nothing before Run has started Raft.
func (w *Witness) metricsSnapshot(ctx context.Context) (metrics.Snapshot, error) {
	select {
	case <-w.ready:
	default:
		return metrics.Snapshot{}, errors.New("witness not started")
	}
	st, err := w.Status(ctx)
	return metrics.Snapshot{Status: st}, err
}

// SetAdmin is for directors.
func (w *Witness) SetAdmin(context.Context, api.AdminRequest) (api.AdminResult, error) {
	return api.AdminResult{}, errWitness
}

// Reload is for directors: a witness's file holds no shared configuration.
func (w *Witness) Reload(context.Context) (api.ReloadResult, error) {
	return api.ReloadResult{}, errWitness
}

// Failover transfers leadership when the witness leads.
func (w *Witness) Failover(ctx context.Context, to string) (api.FailoverResult, error) {
	return failover(ctx, w.node, w.fw, to)
}

// Members lists the Raft configuration.
func (w *Witness) Members(ctx context.Context) ([]api.Member, error) {
	ms, err := w.node.Members(ctx)
	if err != nil {
		return nil, err
	}
	return membersOf(ms), nil
}

// Join adds a member through the leader.
func (w *Witness) Join(ctx context.Context, req api.JoinRequest) error {
	return join(ctx, w.fw, req)
}

// Remove removes a member through the leader.
func (w *Witness) Remove(ctx context.Context, id string) error {
	return remove(ctx, w.node, w.fw, id)
}
