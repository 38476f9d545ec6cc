package director

import (
	"context"
	"fmt"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
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
// the cluster state or a health state changes, after a failure (with
// backoff), and every resyncInterval. It returns when ctx ends (nil) or
// Raft stops (its error).
func (d *Director) reconcileLoop(ctx context.Context) error {
	resync := time.NewTicker(resyncInterval)
	defer resync.Stop()
	var retry <-chan time.Time
	backoff := retryFirst
	for {
		watch := d.node.Watch() // before reading the state: no change is missed
		if err := d.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			d.log.Warn("reconcile failed; retrying", "error", err, "retry_in", backoff)
			retry = time.After(backoff)
			backoff = min(2*backoff, retryMax)
		} else {
			retry, backoff = nil, retryFirst
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.node.Done():
			return fmt.Errorf("raft stopped: %w", d.node.Err())
		case <-watch:
		case <-d.healthChanged:
		case <-resync.C:
		case <-retry:
		}
	}
}

// sync brings the local parts in line with the cluster state once: the
// health checks, VIPs and IPVS sysctls follow the configuration; IPVS
// follows configuration, admin state and health.
func (d *Director) sync(ctx context.Context) error {
	st := d.node.State()
	if st.Config.Generation == 0 {
		return nil // no configuration yet: touch nothing, adopt later
	}
	if err := d.followSpec(ctx, st.Config); err != nil {
		return err
	}
	d.mu.Lock()
	actual, haveActual := d.actual, d.actualRead
	d.mu.Unlock()
	if !haveActual {
		// First pass: read what the kernel holds so adopted entries keep
		// their weights until their checks have a verdict.
		read, err := ipvs.ReadState(ctx, d.kernel, func(ipvs.ServiceKey) bool { return true })
		if err != nil {
			return fmt.Errorf("read ipvs: %w", err)
		}
		actual = read
	}
	desired, views, err := desiredState(st.Config.Spec, d.healthOf, st.Admin, actual)
	if err != nil {
		return err
	}
	reached, err := d.rec.Apply(ctx, desired)
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.views = views
	d.actual, d.actualRead = reached, true
	if err != nil {
		d.lastSync = api.Reconcile{At: now, OK: false, Error: err.Error()}
		return err
	}
	d.lastSync = api.Reconcile{At: now, OK: true}
	d.running = st.Config.Generation
	return nil
}

// healthOf is the health view of the scheduler.
func (d *Director) healthOf(k healthcheck.Key) (healthcheck.Status, bool) {
	return d.checks.Status(k)
}

// followSpec points the health checks, the VIP owner and the IPVS sysctls
// and timeouts at a new cluster configuration; nothing is done when the
// configuration did not change since the last call.
func (d *Director) followSpec(ctx context.Context, cc raft.ClusterConfig) error {
	d.mu.Lock()
	same := d.applied == appliedSpec{generation: cc.Generation, hash: cc.Hash}
	iface := d.file.Node.Interface
	d.mu.Unlock()
	if same {
		return nil
	}
	checks, err := healthcheck.ChecksFor(cc.Services, healthcheck.BuildOptions{})
	if err != nil {
		// A check that cannot be built stays scheduled and reports down
		// with the reason; the rest of the configuration still applies.
		d.log.Error("health checks", "error", err)
	}
	d.checks.Update(checks)
	if err := d.machine.Update(ctx, vipsOf(cc.VIPs, iface)); err != nil {
		return fmt.Errorf("update vips: %w", err)
	}
	if err := ipvs.ApplySysctls(ctx, d.sysctls, ipvs.DirectorSysctls(cc.IPVS)); err != nil {
		return fmt.Errorf("ipvs sysctls: %w", err)
	}
	if ts, ok := d.kernel.(ipvs.TimeoutSetter); ok {
		if err := ipvs.ApplyTimeouts(ctx, ts, ipvs.TimeoutsFromConfig(cc.IPVS)); err != nil {
			return fmt.Errorf("ipvs timeouts: %w", err)
		}
	}
	d.mu.Lock()
	d.applied = appliedSpec{generation: cc.Generation, hash: cc.Hash}
	d.mu.Unlock()
	d.log.Info("following cluster configuration", "generation", cc.Generation, "services", len(cc.Services), "vips", len(cc.VIPs), "submitted_by", cc.SubmittedBy)
	return nil
}

// followLeadership gives the VIPs to the machine while this node leads:
// Leadership reports "leader" only after a Barrier, so the configuration
// is current before the VIPs are taken, and "lost" at once.
func (d *Director) followLeadership(ctx context.Context) error {
	for leader := range d.node.Leadership(ctx) {
		d.log.Info("leadership", "leader", leader)
		d.machine.SetLeader(leader)
		if leader {
			d.poke()
		}
	}
	return nil
}

// handleFaults gives up leadership when the VIP interface fails: a leader
// that cannot hold the VIPs must let another director take them. If no
// other director can take over, this node stays leader and takes the VIPs
// again once the interface is back.
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
			err := d.node.TransferLeadership(tctx)
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

// submitUntilAccepted proposes the director's file to the cluster until the
// cluster runs it (or runs something newer submitted by another node): at
// start the leader may not be known yet, so it retries with backoff.
func (d *Director) submitUntilAccepted(ctx context.Context, spec raft.Spec) {
	backoff := retryFirst
	for {
		res, err := d.submit(ctx, spec)
		if err == nil {
			d.log.Info("configuration submitted", "generation", res.Generation, "changed", res.Changed)
			return
		}
		d.log.Debug("configuration not submitted yet", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// submit sends spec to the leader unless the cluster already runs it.
func (d *Director) submit(ctx context.Context, spec raft.Spec) (raft.SetConfigResult, error) {
	hash, err := spec.Hash()
	if err != nil {
		return raft.SetConfigResult{}, err
	}
	if cur := d.node.Config(); cur.Hash == hash {
		return raft.SetConfigResult{Generation: cur.Generation}, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return d.fw.SubmitConfig(sctx, spec, d.node.ID())
}
