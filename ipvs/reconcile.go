package ipvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Defaults of the Reconciler's timing.
const (
	// DefaultResyncInterval is how often Run re-reads the kernel and
	// repairs drift when nothing triggers it. Another program (or an
	// operator) changing dsrd's services is rare; a full read of a large
	// table is 1 + N netlink round trips, so not much more often than this.
	DefaultResyncInterval = 30 * time.Second
	// DefaultDrainPoll is how often Run re-reads the kernel while a real is
	// draining, to delete it soon after its last connection ends.
	DefaultDrainPoll = 2 * time.Second
	// DefaultBackoffMin and DefaultBackoffMax bound the exponential retry
	// delay after a failed Apply: a transient failure (a module still
	// loading, a netlink hiccup) clears well within the first retries, a
	// persistent one (a missing scheduler module) must not flood the log
	// nor the kernel, and is retried at about the resync interval.
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 30 * time.Second
)

// Reconciler makes the kernel's IPVS table match a desired state, touching
// only the services it owns: those of the desired state (a kernel service
// with the same key is adopted as it is, changed only where it differs) and
// those it owned before and that left the desired state (drained, then
// deleted). Every other service is foreign and never changed. On start it
// owns nothing but what WithOwned gives it: a restart adopts the kernel's
// entries without flushing or re-creating them, so established connections
// are not disturbed and an unchanged state costs no write.
//
// Apply may be called directly; Run calls it on triggers and timers. Both
// are safe for concurrent use; applies are serialised.
type Reconciler struct {
	k   Kernel
	log *slog.Logger
	now func() time.Time

	resync, drainPoll      time.Duration
	backoffMin, backoffMax time.Duration

	mu       sync.Mutex // serialises Apply; guards the fields below
	owned    map[ServiceKey]Service
	drain    drainer
	draining int

	onWrite func(OpKind, error) // WithOnWrite's; nil when not set
	guard   SysctlWriter        // WithRebuildGuard's; nil when not set

	dmu         sync.Mutex // guards desired
	desired     State
	haveDesired bool
	trigger     chan struct{}
}

// Option configures a Reconciler.
type Option func(*Reconciler)

// WithClock sets the clock drains are timed with (time.Now).
func WithClock(now func() time.Time) Option { return func(r *Reconciler) { r.now = now } }

// WithResyncInterval sets how often Run re-applies the desired state
// (DefaultResyncInterval).
func WithResyncInterval(d time.Duration) Option { return func(r *Reconciler) { r.resync = d } }

// WithDrainPoll sets how often Run re-applies while reals drain
// (DefaultDrainPoll).
func WithDrainPoll(d time.Duration) Option { return func(r *Reconciler) { r.drainPoll = d } }

// WithBackoff sets the first and the longest retry delay after a failure.
func WithBackoff(first, max time.Duration) Option {
	return func(r *Reconciler) { r.backoffMin, r.backoffMax = first, max }
}

// WithOnWrite calls f after every kernel operation Apply attempts, with
// the operation's kind and its error (nil when it succeeded), for metrics.
// f is called with the reconciler's lock held: it must be fast and must not
// call the reconciler.
func WithOnWrite(f func(kind OpKind, err error)) Option {
	return func(r *Reconciler) { r.onWrite = f }
}

// ExpireNodestConn is the sysctl WithRebuildGuard turns off while the
// reconciler reorders destinations.
const ExpireNodestConn = "net.ipv4.vs.expire_nodest_conn"

// WithRebuildGuard makes the reconciler turn net.ipv4.vs.expire_nodest_conn
// off (through w, which must write the sysctls of the network namespace of
// the Kernel) while it reorders the destinations of an order-sensitive
// service (the Reorder operations of Diff), and set it back to the value
// it read as soon as the reorder is done, whether it succeeded or not.
//
// Reordering deletes reals the service keeps and adds them back one
// netlink round trip later. The kernel keeps a deleted real (in its
// "trash") and gives it back, with its connections, when it is added
// again. But on a deletion with expire_nodest_conn=1 it queues work that
// expires, a jiffy later, every connection whose real is unavailable
// (ip_vs_enqueue_expire_nodest_conns in ip_vs_ctl.c), and a packet that
// arrives for such a connection in between expires it too: the reorder
// would cut established connections to reals that stay. With 0, a packet
// arriving in that window is dropped (TCP retransmits it) and the
// connection continues once the real is back. The other deletions (a real
// removed, down or disabled) are not guarded: they are made after the
// value is set back, and their connections fail fast as configured.
//
// The guard writes only when a reorder happens and the value is not
// already "0". If dsrd dies in the window the sysctl stays 0: the
// director's ApplySysctls on the next start sets it back. Nothing else may
// write the sysctl while Apply runs. A failure to read or turn it off is
// reported and the reorder is made anyway (flows mapped alike on every
// director matter more than the connections of the window).
func WithRebuildGuard(w SysctlWriter) Option { return func(r *Reconciler) { r.guard = w } }

// WithOwned makes the reconciler own these services from the start, as a
// previous run recorded them (see Owned): one that is no longer desired is
// then deleted rather than left behind as foreign. Their drain timeout is
// unknown, so they are deleted at once, connections or not: see
// WithOwnedServices.
func WithOwned(keys []ServiceKey) Option {
	return func(r *Reconciler) {
		for _, k := range keys {
			r.owned[k] = Service{Key: k}
		}
	}
}

// WithOwnedServices is WithOwned with each service's drain timeout (their
// Key and DrainTimeout are used, nothing else): one that is no longer
// desired drains, all its destinations at weight 0, until it has no
// connection or its drain timeout has passed, then it is deleted, as when
// it leaves the desired state of a running reconciler.
func WithOwnedServices(svcs []Service) Option {
	return func(r *Reconciler) {
		for _, s := range svcs {
			r.owned[s.Key] = Service{Key: s.Key, DrainTimeout: s.DrainTimeout}
		}
	}
}

// NewReconciler returns a reconciler programming k and logging each change
// to log (keys: op, service, real, weight, cmd).
func NewReconciler(k Kernel, log *slog.Logger, opts ...Option) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Reconciler{
		k: k, log: log, now: time.Now,
		resync: DefaultResyncInterval, drainPoll: DefaultDrainPoll,
		backoffMin: DefaultBackoffMin, backoffMax: DefaultBackoffMax,
		owned:   map[ServiceKey]Service{},
		trigger: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Apply makes the kernel match desired and returns the state it reached:
// the kernel's services (foreign ones with nil Dests) with every operation
// that succeeded applied. It does not stop at the first failed operation:
// the failures are returned together, and a service whose creation failed
// gets no further operation. A service of desired that fails Validate is
// reported and left as it is in the kernel. The next Apply starts again
// from what the kernel holds, so it converges once the cause is gone.
func (r *Reconciler) Apply(ctx context.Context, desired State) (State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()

	var errs []error
	valid := make(State, len(desired))
	invalid := map[ServiceKey]bool{}
	for k, s := range desired {
		err := s.Validate()
		if err == nil && s.Key != k {
			err = fmt.Errorf("service %s stored under key %s", s.Key, k)
		}
		if err != nil {
			errs = append(errs, err)
			invalid[k] = true
			continue
		}
		valid[k] = s.normalized()
	}
	managed := func(k ServiceKey) bool {
		if invalid[k] {
			return false
		}
		_, d := valid[k]
		_, o := r.owned[k]
		return d || o
	}

	actual, err := ReadState(ctx, r.k, managed)
	if err != nil {
		return nil, joinErrors(append(errs, fmt.Errorf("read kernel state: %w", err)))
	}
	removed := map[ServiceKey]Service{}
	for k, s := range r.owned {
		if _, ok := valid[k]; !ok && !invalid[k] {
			removed[k] = s
		}
	}
	eff, draining := r.drain.plan(r.log, actual, valid, removed, r.now())

	reached := actual
	logChanges := r.log.Enabled(ctx, slog.LevelInfo) // a full sync is thousands of changes
	failedAdd := map[ServiceKey]bool{}
	ops := Diff(actual, eff, managed)
	guard := rebuildGuard{w: r.guard, log: r.log}
	defer func() {
		if err := guard.restore(); err != nil {
			r.log.Warn("ipvs reorder: restore expire_nodest_conn", "err", err)
		}
	}()
	// One group of operations of a kind at a time, in Diff's order: a
	// batch never holds an operation that depends on another of its own.
	for len(ops) > 0 && ctx.Err() == nil {
		n := 1
		for n < len(ops) && ops[n].Kind == ops[0].Kind && ops[n].Reorder == ops[0].Reorder {
			n++
		}
		if ops[0].Reorder {
			if err := guard.engage(); err != nil {
				errs = append(errs, err)
			}
		} else if err := guard.restore(); err != nil {
			errs = append(errs, err)
		}
		group := make([]Op, 0, n)
		for _, op := range ops[:n] {
			if !failedAdd[op.Service.Key] { // its service was not created
				group = append(group, op)
			}
		}
		ops = ops[n:]
		for i, err := range r.write(ctx, group) {
			op := group[i]
			if r.onWrite != nil {
				r.onWrite(op.Kind, err)
			}
			if err != nil {
				if len(errs) < maxErrors { // the rest are counted in the returned error
					r.log.Warn("ipvs change failed", append(opAttrs(op), "err", err)...)
				}
				errs = append(errs, err)
				if op.Kind == OpAddService {
					failedAdd[op.Service.Key] = true
				}
				continue
			}
			if logChanges {
				r.log.Info("ipvs change", opAttrs(op)...)
			}
			applyOp(reached, op)
		}
	}
	if err := ctx.Err(); err != nil && len(ops) > 0 {
		errs = append(errs, err)
	}

	// Owned from now on: what is desired or drains, and what was owned and
	// is still in the kernel (a failed delete is retried next time).
	owned := make(map[ServiceKey]Service, len(eff))
	for k, s := range eff {
		owned[k] = s.withoutDests()
	}
	for k, s := range r.owned {
		if _, ok := owned[k]; !ok {
			if _, still := reached[k]; still {
				owned[k] = s
			}
		}
	}
	r.owned, r.draining = owned, draining
	return reached, joinErrors(errs)
}

// rebuildGuard turns expire_nodest_conn off for the reorder operations of
// one Apply (see WithRebuildGuard).
type rebuildGuard struct {
	w       SysctlWriter
	log     *slog.Logger
	old     string // the value to set back; "" when nothing is to be
	engaged bool   // engage ran (once per Apply)
}

// engage turns the sysctl off, the first time it is called.
func (g *rebuildGuard) engage() error {
	if g.w == nil || g.engaged {
		return nil
	}
	g.engaged = true
	cur, err := g.w.Get(ExpireNodestConn)
	if err != nil {
		return fmt.Errorf("ipvs reorder guard: %w", err)
	}
	if cur == "0" {
		return nil
	}
	if err := g.w.Set(ExpireNodestConn, "0"); err != nil {
		return fmt.Errorf("ipvs reorder guard: %w", err)
	}
	g.old = cur
	g.log.Info("ipvs reorder: expire_nodest_conn off", "was", cur)
	return nil
}

// restore sets the sysctl back to the value engage found, once.
func (g *rebuildGuard) restore() error {
	if g.old == "" {
		return nil
	}
	old := g.old
	g.old = ""
	if err := g.w.Set(ExpireNodestConn, old); err != nil {
		return fmt.Errorf("ipvs reorder guard: %w", err)
	}
	g.log.Info("ipvs reorder: expire_nodest_conn restored", "value", old)
	return nil
}

// maxErrors bounds the errors Apply reports one by one: after a timeout,
// every remaining operation of a large sync fails alike.
const maxErrors = 10

// joinErrors joins errs, the first maxErrors of them and a count of the rest.
func joinErrors(errs []error) error {
	if len(errs) > maxErrors {
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("and %d more errors", len(errs)-maxErrors))
	}
	return errors.Join(errs...)
}

// write performs operations, in batches when the kernel can, and returns
// one error per operation. Once ctx is done, the remaining ones fail.
func (r *Reconciler) write(ctx context.Context, ops []Op) []error {
	if bw, ok := r.k.(BatchWriter); ok {
		return bw.WriteBatch(ctx, ops)
	}
	errs := make([]error, len(ops))
	for i, op := range ops {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = r.exec(ctx, op)
	}
	return errs
}

// exec performs one operation on the kernel.
func (r *Reconciler) exec(ctx context.Context, op Op) error {
	k := op.Service.Key
	switch op.Kind {
	case OpAddService:
		return r.k.NewService(ctx, op.Service)
	case OpUpdateService:
		return r.k.UpdateService(ctx, op.Service)
	case OpDelService:
		return r.k.DelService(ctx, k)
	case OpAddDest:
		return r.k.NewDestination(ctx, k, op.Dest)
	case OpUpdateDest:
		return r.k.UpdateDestination(ctx, k, op.Dest)
	case OpDelDest:
		return r.k.DelDestination(ctx, k, op.Dest.Key)
	}
	return fmt.Errorf("unknown operation %v", op.Kind)
}

// opAttrs are the stable log attributes of an operation.
func opAttrs(op Op) []any {
	a := []any{"op", op.Kind.String(), "service", op.Service.Key.String()}
	if op.Kind.isDest() {
		a = append(a, "real", op.Dest.Key.String())
		if op.Kind != OpDelDest {
			a = append(a, "weight", op.Dest.Weight)
		}
		if op.Reorder {
			a = append(a, "reorder", true)
		}
	}
	return append(a, "cmd", op.String())
}

// Owned returns the keys of the services the reconciler owns, in ipvsadm's
// order, for the caller to keep across restarts (see WithOwned).
func (r *Reconciler) Owned() []ServiceKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]ServiceKey, 0, len(r.owned))
	for k := range r.owned {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareServiceKeys)
	return keys
}

// Draining returns how many reals (and removed services) are draining after
// the last Apply.
func (r *Reconciler) Draining() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.draining
}

// SetDesired sets the state Run applies and triggers an apply.
func (r *Reconciler) SetDesired(st State) {
	r.dmu.Lock()
	r.desired, r.haveDesired = st.Clone(), true
	r.dmu.Unlock()
	r.Trigger()
}

// Trigger asks Run to apply the desired state now. It never blocks;
// triggers that arrive while an apply is pending coalesce.
func (r *Reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// desiredState returns the state set by SetDesired, if any.
func (r *Reconciler) desiredState() (State, bool) {
	r.dmu.Lock()
	defer r.dmu.Unlock()
	return r.desired, r.haveDesired
}

// Run applies the state given to SetDesired when triggered, every resync
// interval, every drain poll interval while reals drain, and after a
// failure again with exponential backoff (capped). Nothing is applied until
// SetDesired was called once. Run returns nil when ctx is done; that is its
// only way to end.
func (r *Reconciler) Run(ctx context.Context) error {
	timer := time.NewTimer(r.resync)
	defer timer.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.trigger:
		case <-timer.C:
		}
		desired, ok := r.desiredState()
		if !ok {
			timer.Reset(r.resync)
			continue
		}
		start := time.Now()
		_, err := r.Apply(ctx, desired)
		if ctx.Err() != nil {
			return nil
		}
		next := r.resync
		if err != nil {
			failures++
			next = r.backoff(failures)
			r.log.Warn("ipvs reconcile failed", "err", err, "failures", failures, "retry_in", next)
		} else {
			failures = 0
			if r.Draining() > 0 {
				next = min(next, r.drainPoll)
			}
			r.log.Debug("ipvs reconciled", "took", time.Since(start))
		}
		timer.Reset(next)
	}
}

// backoff returns the retry delay after n consecutive failures.
func (r *Reconciler) backoff(n int) time.Duration {
	d := r.backoffMin
	for i := 1; i < n && d < r.backoffMax; i++ {
		d *= 2
	}
	return min(d, r.backoffMax)
}
