package director

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// speaker is what the director needs of its BGP speaker (vrrp/bgp): the
// full set of host routes to announce, and whether to announce them as
// leaving (RFC 8326 GRACEFUL_SHUTDOWN and a worse MED).
type speaker interface {
	Announce(ctx context.Context, prefixes []netip.Prefix) error
	SetGraceful(ctx context.Context, on bool) error
}

// anycastStep is how often the anycaster decides again without new
// input: the time-bound rules (partition_hold, convergeGrace, a drain's
// delay) take effect within it.
const anycastStep = time.Second

// anycastCallTimeout bounds one call to the speaker.
const anycastCallTimeout = 5 * time.Second

// anycaster applies decideAnycast to the speaker: the reconcile loop
// reports what it programmed (observe), a planned stop drains (drain),
// and run decides again on every report and every anycastStep, so the
// rules that depend on time alone (a partition outlasting partition_hold)
// act without a pass of the loop. Its lock guards everything below it;
// run (or stop, after run ended) is the only caller of the speaker.
type anycaster struct {
	sp        speaker
	log       *slog.Logger
	now       func() time.Time
	connected func() bool // this node leads or follows a known leader
	withdrew  func(cause string)
	wake      chan struct{} // capacity 1: a pending "decide again"

	mu          sync.Mutex
	in          anycastInput // the loop's last report (Now unused)
	observed    bool         // the loop has reported at least once
	last        anycastDecision
	lastErr     error
	sent        []netip.Prefix // what the speaker announces
	sentGrace   bool           // whether it announces them as leaving
	sentOK      bool           // the last calls succeeded
	connectedAt bool           // connected at the last step
	// clusterDrain: the drain under way is the cluster's record of this
	// director (followDrain); stopping: a stop drains (stop), which no
	// undrain ends.
	clusterDrain, stopping bool
}

func newAnycaster(sp speaker, connected func() bool, withdrew func(string), log *slog.Logger) *anycaster {
	if withdrew == nil {
		withdrew = func(string) {}
	}
	return &anycaster{sp: sp, log: log, now: time.Now, connected: connected, withdrew: withdrew,
		wake: make(chan struct{}, 1), connectedAt: true}
}

func (a *anycaster) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// observe takes what the reconcile loop knows after a pass: the bgp VIPs
// of the configuration it followed and whether each can be served, the
// cluster's configuration generation and the one IPVS holds, and
// partition_hold. It keeps when each generation was first seen.
func (a *anycaster) observe(vips []anycastVIP, generation, applied uint64, partitionHold time.Duration) {
	a.mu.Lock()
	now := a.now()
	if generation != a.in.Generation {
		a.in.GenerationSeen = now
	}
	since := map[netip.Addr]time.Time{}
	for _, v := range a.in.VIPs {
		if v.Disagrees {
			since[v.Address] = v.DisagreesSince
		}
	}
	vips = slices.Clone(vips)
	for i := range vips {
		if !vips[i].Disagrees {
			continue
		}
		if t, ok := since[vips[i].Address]; ok {
			vips[i].DisagreesSince = t
		} else {
			vips[i].DisagreesSince = now
		}
	}
	a.in.VIPs, a.in.Generation, a.in.Applied, a.in.PartitionHold = vips, generation, applied, partitionHold
	a.observed = true
	a.mu.Unlock()
	a.poke()
}

// drainLocked starts a drain unless one is under way: the VIPs are
// announced as leaving for delay, then withdrawn. A director that
// announces nothing withdraws at once: there is no traffic to move away.
// a.mu is held.
func (a *anycaster) drainLocked(delay time.Duration) bool {
	if a.in.Draining {
		return false
	}
	until := a.now().Add(delay)
	if len(a.sent) == 0 && len(a.last.Announce) == 0 {
		until = a.now()
	}
	a.in.Draining, a.in.DrainUntil = true, until
	return true
}

// followDrain applies the cluster's drain record of this director, as the
// reconcile loop last read it: a record starts a drain of delay (this
// director's drain_delay), its removal ends the drain unless the director
// is stopping. Called on every pass; only changes act.
func (a *anycaster) followDrain(drained bool, delay time.Duration) {
	a.mu.Lock()
	changed := false
	switch {
	case drained && !a.clusterDrain:
		a.clusterDrain = true
		changed = a.drainLocked(delay)
		if changed {
			a.log.Info("bgp: drained by the cluster: announcing as leaving, then withdrawing", "drain_delay", a.in.DrainUntil.Sub(a.now()))
		}
	case !drained && a.clusterDrain:
		a.clusterDrain = false
		if !a.stopping {
			a.in.Draining, a.in.DrainUntil = false, time.Time{}
			changed = true
			a.log.Info("bgp: undrained by the cluster: announcing again")
		}
	}
	a.mu.Unlock()
	if changed {
		a.poke()
	}
}

// status is what dsrd status shows of the anycaster.
type anycastStatus struct {
	Decision anycastDecision
	Err      error
}

func (a *anycaster) status() anycastStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.last
	d.Withdrawn = maps.Clone(d.Withdrawn)
	d.Announce = slices.Clone(d.Announce)
	return anycastStatus{Decision: d, Err: a.lastErr}
}

// run decides and applies until ctx ends.
func (a *anycaster) run(ctx context.Context) {
	t := time.NewTicker(anycastStep)
	defer t.Stop()
	for {
		a.step(ctx)
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-t.C:
		}
	}
}

// step decides once and tells the speaker what changed.
func (a *anycaster) step(ctx context.Context) {
	connected := a.connected()
	a.mu.Lock()
	now := a.now()
	switch {
	case connected:
		a.in.Connected, a.in.DisconnectedSince = true, time.Time{}
	case a.in.DisconnectedSince.IsZero():
		a.in.Connected, a.in.DisconnectedSince = false, now
	}
	if !a.observed {
		a.mu.Unlock()
		return
	}
	in := a.in
	in.Now = now
	prev := a.last
	d := decideAnycast(in)
	a.last = d
	same := a.sentOK && slices.Equal(a.sent, d.Announce) && a.sentGrace == d.Graceful
	a.mu.Unlock()

	a.logChanges(prev, d)
	if same {
		return
	}
	err := a.apply(ctx, d)
	a.mu.Lock()
	a.lastErr = err
	a.sentOK = err == nil
	if err == nil {
		a.sent, a.sentGrace = d.Announce, d.Graceful
	}
	a.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		a.log.Warn("bgp announcement not updated; retrying", "error", err, "retry_in", anycastStep)
	}
}

// apply hands a decision to the speaker: the graceful marking first when
// it turns on (the routers move traffic away before anything is
// withdrawn), last when it turns off.
func (a *anycaster) apply(ctx context.Context, d anycastDecision) error {
	cctx, cancel := context.WithTimeout(ctx, anycastCallTimeout)
	defer cancel()
	if d.Graceful {
		if err := a.sp.SetGraceful(cctx, true); err != nil {
			return err
		}
		return a.sp.Announce(cctx, d.Announce)
	}
	if err := a.sp.Announce(cctx, d.Announce); err != nil {
		return err
	}
	return a.sp.SetGraceful(cctx, false)
}

// logChanges logs each VIP whose announcement changed and counts each
// withdrawal by its cause.
func (a *anycaster) logChanges(prev, d anycastDecision) {
	was := map[netip.Addr]bool{}
	for _, p := range prev.Announce {
		was[p.Addr()] = true
	}
	for _, p := range d.Announce {
		if !was[p.Addr()] {
			a.log.Info("bgp: announcing vip", "vip", p.Addr(), "graceful", d.Graceful)
		}
	}
	for vip, cause := range d.Withdrawn {
		if prevCause, ok := prev.Withdrawn[vip]; ok && prevCause == cause {
			continue
		}
		if was[vip] {
			a.withdrew(cause)
		}
		a.log.Info("bgp: not announcing vip", "vip", vip, "cause", cause, "detail", d.Detail)
	}
}

// stop ends the announcements of a director that stops: when it
// announces anything, it announces it as leaving for delay (the routers
// move new flows to the other directors while this one still forwards
// what arrives), then withdraws everything. Bounded by ctx.
func (a *anycaster) stop(ctx context.Context, delay time.Duration) {
	a.mu.Lock()
	a.stopping = true
	announcing := len(a.sent) > 0 && !(a.in.Draining && !a.now().Before(a.in.DrainUntil))
	if announcing && a.in.Draining {
		// A drain under way: its graceful phase counts.
		delay = min(delay, max(0, a.in.DrainUntil.Sub(a.now())))
	}
	a.drainLocked(delay)
	a.mu.Unlock()
	if announcing && delay > 0 {
		a.step(ctx)
		a.log.Info("bgp: draining before stop", "drain_delay", delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	a.mu.Lock()
	a.in.Draining, a.in.DrainUntil = true, a.now()
	a.mu.Unlock()
	a.step(ctx)
}
