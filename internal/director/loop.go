package director

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
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

// catchUpPoll is how often a director holding its IPVS at start (catchUp)
// looks again besides the Raft state's own changes: only to notice that
// the hold has lasted catchUpMax.
const catchUpPoll = 250 * time.Millisecond

// catchUpMax bounds the hold of catchUp while a leader is known. A follower
// replays its log within a few heartbeats of hearing from the leader; a
// state still older than the one recorded after that long means the
// cluster's state went back (a cluster rebuilt from scratch over a kept
// data dir), and the director follows it rather than wait forever.
const catchUpMax = 10 * time.Second

// errCatchingUp is sync's answer while the Raft state is older than the
// one the kernel already holds: not a failure, nothing was touched.
var errCatchingUp = errors.New("raft state older than the one ipvs last followed: catching up")

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
	if err := d.catchUp(st, d.node.LeaderID() != "", time.Now()); err != nil {
		return err
	}
	start := time.Now()
	defer func() {
		if ctx.Err() == nil { // a pass cut short by the stop is no failure
			end := time.Now()
			d.opts.Metrics.Reconciled(end, end.Sub(start), err)
		}
	}()
	specErr := d.followSpec(ctx, st.Config)
	d.mu.Lock()
	actual, haveActual := d.actual, d.actualRead
	d.mu.Unlock()
	if !haveActual {
		// First pass: read what the kernel holds so adopted entries keep
		// their weights until their checks have a verdict.
		read, err := ipvs.ReadState(ctx, d.kernel, func(ipvs.ServiceKey) bool { return true })
		if err != nil {
			return errors.Join(specErr, fmt.Errorf("read ipvs: %w", err))
		}
		actual = read
	}
	epoch := d.nextEpoch()
	desired, views, own, err := desiredStateWith(st.Config.Spec, d.healthOf, st.Admin, st.Health, actual)
	d.forgetInputsBefore(epoch)
	if err != nil {
		return errors.Join(specErr, err)
	}
	if d.verdicts != nil {
		d.verdicts.setOwn(st.Config.Generation, own)
	}
	reached, applyErr := d.rec.Apply(ctx, desired)
	d.saveOwned(desired, st.Index, applyErr == nil)
	err = errors.Join(specErr, applyErr)
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.views = views
	d.actual, d.actualRead = reached, true
	if applyErr == nil {
		d.running = st.Config.Generation
	}
	if d.anycast != nil {
		// The configuration is followed in full only when the VIPs are
		// held too (specErr): a director without the VIP on lo would
		// drop what the routers send it.
		if applyErr == nil && specErr == nil {
			d.anycastApplied = st.Config.Generation
		}
		d.anycast.observe(anycastVIPsOf(st.Config.Spec, views), st.Config.Generation, d.anycastApplied, partitionHoldOf(d.file))
	}
	if err != nil {
		d.lastSync = api.Reconcile{At: now, OK: false, Error: err.Error()}
		return err
	}
	d.lastSync = api.Reconcile{At: now, OK: true}
	return nil
}

// catchUp holds the kernel at start while the Raft state is older than
// the one IPVS last followed in full (the owned file's index): Raft
// replays its log through every older state, and programming one would
// undo for a moment what the kernel already holds (delete a real added
// since and add it back at weight 0, drain a service created since),
// which is the blip a restart must not cause. Once the state has caught
// up the hold is over for good; while a leader is known it lasts at most
// catchUpMax (leaderKnown: this node knows a leader; now: the time).
func (d *Director) catchUp(st raft.State, leaderKnown bool, now time.Time) error {
	if d.holdBelow == 0 {
		return nil
	}
	if st.Index >= d.holdBelow {
		d.holdBelow = 0
		return nil
	}
	if leaderKnown && now.Sub(d.started) >= catchUpMax {
		d.log.Warn("the cluster's state is older than the one ipvs last followed (was the cluster rebuilt?): following it",
			"index", st.Index, "ipvs_index", d.holdBelow)
		d.holdBelow = 0
		return nil
	}
	return errCatchingUp
}

// saveOwned records the reconciler's owned services with their drain
// timeouts (desired's, or as recorded before for those no longer desired),
// and the state index when the apply of desired succeeded, in the data dir
// when they changed. A failure is logged and retried after the next apply.
func (d *Director) saveOwned(desired ipvs.State, index uint64, applied bool) {
	next := owned{index: d.saved.index}
	if applied {
		next.index = index
	}
	for _, k := range d.rec.Owned() {
		s := ipvs.Service{Key: k, DrainTimeout: config.DefaultDrainTimeout}
		if ds, ok := desired[k]; ok {
			s.DrainTimeout = ds.DrainTimeout
		} else if i := slices.IndexFunc(d.saved.services, func(o ipvs.Service) bool { return o.Key == k }); i >= 0 {
			s.DrainTimeout = d.saved.services[i].DrainTimeout
		}
		next.services = append(next.services, s)
	}
	if next.equal(d.saved) {
		return
	}
	if err := saveOwned(d.dataDir, next); err != nil {
		d.log.Error("cannot record the owned ipvs services", "error", err)
		return
	}
	d.saved = next
}

// nextEpoch starts a desired computation: the health inputs it reads are
// recorded under the new epoch.
func (d *Director) nextEpoch() uint64 {
	d.inmu.Lock()
	defer d.inmu.Unlock()
	d.epoch++
	return d.epoch
}

// forgetInputsBefore drops the recorded inputs the computation of epoch
// did not read (checks no longer configured).
func (d *Director) forgetInputsBefore(epoch uint64) {
	d.inmu.Lock()
	defer d.inmu.Unlock()
	for k, u := range d.inputs {
		if u.epoch < epoch {
			delete(d.inputs, k)
		}
	}
}

// healthOf is the health view of the scheduler. It records what it
// returns, atomically with reading it, for checkRan.
func (d *Director) healthOf(k healthcheck.Key, p healthcheck.Params) (healthInput, bool) {
	d.inmu.Lock()
	defer d.inmu.Unlock()
	s, ok := d.checks.Status(k)
	if !ok {
		delete(d.inputs, k)
		return healthInput{}, false
	}
	in := inputOf(s, p)
	d.inputs[k] = usedInput{in: in, params: p, epoch: d.epoch}
	return in, true
}

// checkRan is the scheduler's OnRun: it asks for a recomputation when a
// run changed the input of its check from the one the last computation
// used. A change of state is one such change, but not the only one: a
// check's first verdict that confirms its initial state (an adopted real
// found down, whose kernel weight must go), or a realserver agent's drain
// answer before fall is reached, change no state and emit no event, yet
// change the desired state. Reading the status and comparing under inmu,
// which healthOf holds across its read and record, leaves no window: a
// run either lands before a computation reads its check, or is compared
// with what that computation recorded.
func (d *Director) checkRan(r healthcheck.Run) {
	d.inmu.Lock()
	u, known := d.inputs[r.Key]
	s, ok := d.checks.Status(r.Key)
	stale := !known || !ok || inputOf(s, u.params) != u.in
	d.inmu.Unlock()
	if stale {
		d.poke()
	}
	d.opts.Metrics.CheckRan(string(s.Type), r)
}

// followSpec points the health checks, the VIP owner and the IPVS sysctls
// and timeouts at a new cluster configuration; nothing is done when the
// configuration did not change since the last call. Every part is tried;
// a failed part makes the next call try again.
func (d *Director) followSpec(ctx context.Context, cc raft.ClusterConfig) error {
	d.mu.Lock()
	same := d.applied == appliedSpec{generation: cc.Generation, hash: cc.Hash}
	iface := d.file.Node.Interface
	d.mu.Unlock()
	if same {
		return nil
	}
	services, vips, ipvsCfg := clusterspec.Services(cc.Spec), clusterspec.VIPs(cc.Spec), clusterspec.IPVS(cc.Spec)
	checks, err := healthcheck.ChecksFor(healthServices(services), healthcheck.BuildOptions{})
	if err != nil {
		// A check that cannot be built stays scheduled and reports down
		// with the reason; the rest of the configuration still applies.
		d.log.Error("health checks", "error", err)
	}
	d.checks.Update(checks)
	if m := d.opts.Metrics; m != nil {
		names := make([]string, 0, len(services))
		for _, svc := range services {
			names = append(names, svc.Name)
		}
		m.RetainServices(names)
	}
	var errs []error
	if err := d.machine.Update(ctx, vipsOf(vips, iface)); err != nil {
		errs = append(errs, fmt.Errorf("update vips: %w", err))
	}
	if err := d.lo.update(ctx, d.sysctls, bgpVIPsOf(cc.Spec)); err != nil {
		errs = append(errs, fmt.Errorf("update bgp vips: %w", err))
	}
	settings := ipvsSettings(ipvsCfg)
	if err := ipvs.ApplySysctls(ctx, d.sysctls, ipvs.DirectorSysctls(settings)); err != nil {
		errs = append(errs, fmt.Errorf("ipvs sysctls: %w", err))
	}
	if ts, ok := d.kernel.(ipvs.TimeoutSetter); ok {
		if err := ipvs.ApplyTimeouts(ctx, ts, settings.Timeouts); err != nil {
			errs = append(errs, fmt.Errorf("ipvs timeouts: %w", err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
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
			d.opts.Metrics.LeadershipAcquired()
			d.poke()
		}
	}
	return nil
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

// submitUntilAccepted proposes the director's file as loaded at start to
// the cluster until the cluster runs it: at start the leader may not be
// known yet, so it retries with backoff. It stops early when a Reload has
// submitted a newer file. Its outcome is the first "last reload" of dsrd
// status, recorded as Reload records its own, unless a Reload came first.
func (d *Director) submitUntilAccepted(ctx context.Context, cfg *config.Director) {
	spec := clusterspec.FromDirector(cfg)
	if hash, err := spec.Hash(); err == nil {
		last, err := loadSubmitted(cfg.Node.DataDir)
		if err != nil {
			d.log.Warn("submitting the file at start", "error", err)
		}
		if last != "" && last == hash {
			d.log.Info("configuration file unchanged since this director last submitted it: following the cluster's configuration", "hash", hash)
			return
		}
	}
	backoff := retryFirst
	for {
		d.mu.Lock()
		superseded := d.file != cfg
		d.mu.Unlock()
		if superseded {
			return // a Reload submitted a newer file
		}
		res, err := d.submit(ctx, spec)
		if err == nil {
			d.log.Info("configuration submitted", "generation", res.Generation, "changed", res.Changed)
			d.mu.Lock()
			if !d.reloaded {
				d.reload = api.ReloadResult{At: d.loadedAt, OK: true, Generation: res.Generation, Changed: res.Changed}
			}
			d.mu.Unlock()
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
		d.mu.Lock()
		dataDir := d.file.Node.DataDir
		d.mu.Unlock()
		if err := saveSubmitted(dataDir, hash); err != nil {
			d.log.Warn("configuration already running", "error", err)
		}
		return raft.SetConfigResult{Generation: cur.Generation}, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := d.fw.SubmitConfig(sctx, spec, d.node.ID())
	if err != nil {
		return res, err
	}
	d.mu.Lock()
	dataDir := d.file.Node.DataDir
	d.mu.Unlock()
	if err := saveSubmitted(dataDir, hash); err != nil {
		d.log.Warn("configuration submitted", "error", err)
	}
	return res, nil
}
