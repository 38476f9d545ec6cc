package director

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/vrrp"
)

// Retry pacing of the reconcile loop after a failed apply: quick enough
// that a transient netlink error costs under a second, capped so a
// persistent one (a missing scheduler module) does not spin.
const (
	retryFirst = 250 * time.Millisecond
	retryMax   = 10 * time.Second
)

// reconcileLoop recomputes the desired IPVS state and applies it whenever
// the cluster state or a health input changes, after a failure (with
// backoff), while reals drain (to delete them once their connections
// end), and every resyncInterval. It returns when ctx ends (nil) or Raft
// stops (its error).
func (d *Director) reconcileLoop(ctx context.Context) error {
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	var again <-chan time.Time
	backoff := retryFirst
	for {
		watch := d.node.Watch() // before reading the state: no change is missed
		err := d.sync(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errCatchingUp):
			again = time.After(catchUpPoll)
		case err != nil:
			d.log.Warn("reconcile failed; retrying", "error", err, "retry_in", backoff)
			again = time.After(backoff)
			backoff = min(2*backoff, retryMax)
		case d.rec.Draining() > 0:
			again, backoff = time.After(ipvs.DefaultDrainPoll), retryFirst
		default:
			again, backoff = nil, retryFirst
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.node.Done():
			return fmt.Errorf("raft stopped: %w", d.node.Err())
		case <-watch:
		case <-d.healthChanged:
		case <-resync.C:
		case <-again:
		}
	}
}

// sync brings the local parts in line with the cluster state once: the
// health checks, VIPs and IPVS sysctls follow the configuration; IPVS
// follows configuration, admin state and health. A failure to follow the
// configuration (VIPs, sysctls) is reported but does not hold IPVS back:
// health and admin changes still reach the kernel.
func (d *Director) sync(ctx context.Context) (err error) {
	st := d.node.State()
	if st.Config.Generation == 0 {
		return nil // no configuration yet: touch nothing, adopt later
	}
	if err := d.loop.hold.check(st, d.node.LeaderID() != "", time.Now()); err != nil {
		return err
	}
	start := time.Now()
	defer func() {
		if ctx.Err() == nil { // a pass cut short by the stop is no failure
			end := time.Now()
			d.opts.Metrics.Reconciled(end, end.Sub(start), err)
		}
	}()
	services, translateErr := d.loop.specs.get(st.Config)
	specErr := d.loop.follow.follow(ctx, st.Config, services)
	actual, haveActual := d.progress.kernel()
	if !haveActual {
		// First pass: read what the kernel holds so adopted entries keep
		// their weights until their checks have a verdict.
		read, err := ipvs.ReadState(ctx, d.kernel, func(ipvs.ServiceKey) bool { return true })
		if err != nil {
			return errors.Join(specErr, fmt.Errorf("read ipvs: %w", err))
		}
		actual = read
	}
	if translateErr != nil {
		return errors.Join(specErr, translateErr)
	}
	epoch := d.inputs.begin()
	desired, views, own := desiredOf(services, d.inputs.view, st.Admin, st.Health, actual)
	d.inputs.end(epoch)
	if d.verdicts != nil {
		d.verdicts.setOwn(st.Config.Generation, own)
	}
	// Admission control before IPVS: a service reaches the kernel only
	// with its rules in place.
	admErr := d.followAdmission(ctx, st.Config, services, desired)
	specErr = errors.Join(specErr, admErr)
	reached, applyErr := d.rec.Apply(ctx, desired)
	d.loop.owned.save(d.rec.Owned(), desired, st.Index, applyErr == nil)
	// The sync daemons follow on their own goroutine (syncDaemons.run):
	// their failures show in status and dsrd_ipvs_sync_ok.
	d.syncd.request(clusterspec.IPVS(st.Config.Spec).Sync, d.leading.Load() || hasBGPVIP(st.Config.Spec))
	err = errors.Join(specErr, applyErr)
	d.progress.record(time.Now(), views, reached, st.Config.Generation, applyErr == nil, err)
	if d.anycast != nil {
		// The configuration is followed in full only when the VIPs are
		// held too (specErr): a director without the VIP on lo would
		// drop what the routers send it.
		if applyErr == nil && specErr == nil {
			d.loop.anycastApplied = st.Config.Generation
		}
		d.anycast.observe(anycastVIPsOf(st.Config.Spec, views), st.Config.Generation, d.loop.anycastApplied, partitionHoldOf(d.sub.current()))
		_, drained := st.Drains[d.node.ID()]
		d.anycast.followDrain(drained, d.drainDelay(0))
	}
	return err
}

// hasBGPVIP reports whether a VIP of the spec is of mode bgp: every ready
// director then serves flows, and runs the sync master.
func hasBGPVIP(s raft.Spec) bool {
	for _, v := range s.VIPs {
		if v.Mode == raft.VIPModeBGP {
			return true
		}
	}
	return false
}

// checkRan is the scheduler's OnRun: it asks for a recomputation when a
// run changed the input of its check from the one the last computation
// used. A change of state is one such change, but not the only one: a
// check's first verdict that confirms its initial state (an adopted real
// found down, whose kernel weight must go), or a realserver agent's drain
// answer before fall is reached, change no state and emit no event, yet
// change the desired state (healthInputs.changed leaves no window).
func (d *Director) checkRan(r healthcheck.Run) {
	s, stale := d.inputs.changed(r.Key)
	if stale {
		d.poke()
	}
	d.opts.Metrics.CheckRan(string(s.Type), r)
}

// followLeadership gives the VIPs to the machine while this node leads:
// Leadership reports "leader" only after a Barrier, so the configuration
// is current before the VIPs are taken, and "lost" at once.
func (d *Director) followLeadership(ctx context.Context) error {
	for leader := range d.node.Leadership(ctx) {
		d.log.Info("leadership", "leader", leader)
		d.machine.SetLeader(leader)
		d.leading.Store(leader)
		if leader {
			d.opts.Metrics.LeadershipAcquired()
		}
		d.poke() // the sync master follows leadership, both ways
	}
	return nil
}

// confirmTimeout bounds the confirmation of leadership before the VIPs are
// taken; Raft answers within the leader lease either way.
const confirmTimeout = 5 * time.Second

// confirmLeadership is the VIP machine's Confirm: the leadership is
// confirmed with a quorum just before the VIPs are taken, so that a leader
// resumed after a pause longer than its lease (SIGSTOP, a frozen VM), and
// replaced meanwhile, does not take the VIPs its successor holds (chaos
// seed 7: both directors held the VIP for a second).
func (d *Director) confirmLeadership(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, confirmTimeout)
	defer cancel()
	return d.node.VerifyLeader(ctx)
}

// handleFaults gives up leadership when the VIP interface fails: a leader
// that cannot hold the VIPs must let another director take them, one whose
// own interface is up (transferTargets: never the witness, which would
// only hand leadership on, maybe back here). If no other director can take
// over, this node stays leader and takes the VIPs again once the interface
// is back.
func (d *Director) handleFaults(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-d.machine.Faults():
			d.log.Warn("vip interface fault: giving up leadership", "reason", t.Reason)
			if !d.node.IsLeader() {
				continue
			}
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := errNoDirector
			if targets := transferTargets(tctx, d.node, d.node.ID(), peerStatus(d.peers)); len(targets) > 0 {
				err = d.node.TransferLeadership(tctx, targets...)
			}
			cancel()
			if err == nil {
				continue
			}
			d.log.Error("leadership transfer failed; keeping leadership", "error", err)
			d.reassertWhenHealthy(ctx)
		}
	}
}

// reassertWhenHealthy gives the VIPs back to the machine once it has left
// FAULT while this node is still the leader (bounded by ctx and by losing
// leadership).
func (d *Director) reassertWhenHealthy(ctx context.Context) {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.node.IsLeader() {
			return
		}
		if d.machine.State() != vrrp.StateFault {
			d.machine.SetLeader(true)
			return
		}
	}
}
