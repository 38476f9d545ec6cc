package ipvs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Fake is an in-memory Kernel for tests. It keeps real state and enforces
// what the kernel enforces, with the kernel's errnos: EEXIST for a duplicate
// service or destination, ESRCH for a missing service, ENOENT for a missing
// destination or an unknown scheduler, ERANGE for a negative weight or a
// lower threshold above the upper, EINVAL for an IPv6 persistence netmask
// out of 1-128 or a destination of another family. What it returns is what
// the kernel backend reads back: FlagHashed set, timeouts in whole seconds,
// netmask defaulted to the full length. It counts calls, can fail a chosen
// write, and prints itself like `ipvsadm -Sn`. Like the kernel, it keeps
// each service's destinations in the order they were added and lists the
// last added first. It is safe for concurrent use.
type Fake struct {
	mu         sync.Mutex
	st         State
	schedulers map[string]bool
	timeouts   Timeouts
	calls      []Call
	writes     int
	failAt     map[int]error         // write number -> error
	next       map[ServiceKey]uint32 // the Position of the last destination added
	batches    int
	closed     bool

	ifaces  map[string]FakeInterface // what the sync daemons may use
	daemons [3]*SyncDaemon           // by SyncState
}

// Call records one call made to a Fake.
type Call struct {
	// Method is the Kernel method's name, e.g. "NewDestination".
	Method string
	// Service and Dest are the objects of the call, when it has them.
	Service ServiceKey
	Dest    DestKey
	// Write is true for calls that change state (whether they succeeded
	// or not).
	Write bool
}

// String prints the call as "Method service dest".
func (c Call) String() string {
	s := c.Method
	if c.Service != (ServiceKey{}) {
		s += " " + c.Service.String()
	}
	if c.Dest != (DestKey{}) {
		s += " " + c.Dest.String()
	}
	return s
}

// FakeOption configures NewFake.
type FakeOption func(*Fake)

// WithSchedulers sets the schedulers the fake kernel has (by default those
// of a stock Linux kernel: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh
// twos).
func WithSchedulers(names ...string) FakeOption {
	return func(f *Fake) {
		f.schedulers = map[string]bool{}
		for _, n := range names {
			f.schedulers[n] = true
		}
	}
}

// NewFake returns an empty fake kernel with the kernel's default timeouts.
func NewFake(opts ...FakeOption) *Fake {
	f := &Fake{
		st:       State{},
		timeouts: Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second},
		failAt:   map[int]error{},
		next:     map[ServiceKey]uint32{},
		ifaces:   map[string]FakeInterface{"lo": {MTU: 65536}},
	}
	WithSchedulers("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos")(f)
	for _, o := range opts {
		o(f)
	}
	return f
}

// Seed installs s and its destinations directly, as another program would
// have (an operator's ipvsadm, a previous dsrd), without counting calls.
// It replaces a service of the same key. The destinations are in the order
// of their Position when every one has one, else in CanonicalOrder (as a
// director creating the service adds them).
func (f *Fake) Seed(s Service) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s = f.asKernel(s).Clone()
	if s.Dests == nil {
		s.Dests = map[DestKey]Destination{}
	}
	order := s.KernelOrder()
	if order == nil {
		order = CanonicalOrder(s)
	}
	for i, k := range order {
		d := s.Dests[k]
		d.Position = uint32(i + 1)
		s.Dests[k] = d
	}
	f.st[s.Key] = s
	f.next[s.Key] = uint32(len(order))
}

// SetConns sets the connection counters of a destination, as traffic would.
func (f *Fake) SetConns(k ServiceKey, d DestKey, active, inactive uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.st[k]
	if !ok {
		return syscall.ESRCH
	}
	dd, ok := s.Dests[d]
	if !ok {
		return syscall.ENOENT
	}
	dd.ActiveConns, dd.InactiveConns = active, inactive
	s.Dests[d] = dd
	return nil
}

// FailWrite makes the n-th write from now (1 is the next one) fail with
// err, changing nothing.
func (f *Fake) FailWrite(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failAt[f.writes+n] = err
}

// ClearFailures cancels the failures set by FailWrite that did not happen.
func (f *Fake) ClearFailures() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.failAt)
}

// Calls returns the calls made so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// ResetCalls forgets the calls made so far (not the pending failures).
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

// Writes returns how many write calls were recorded.
func (f *Fake) Writes() int {
	n := 0
	for _, c := range f.Calls() {
		if c.Write {
			n++
		}
	}
	return n
}

// WritesTo returns how many recorded write calls were about service k
// (its destinations included).
func (f *Fake) WritesTo(k ServiceKey) int {
	n := 0
	for _, c := range f.Calls() {
		if c.Write && c.Service == k {
			n++
		}
	}
	return n
}

// State returns a deep copy of the fake kernel's state as ReadState would
// return it: each destination's Position counts from 1, oldest first.
func (f *Fake) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.st.Clone()
	for _, s := range st {
		for i, k := range s.KernelOrder() {
			d := s.Dests[k]
			d.Position = uint32(i + 1)
			s.Dests[k] = d
		}
	}
	return st
}

// String prints the state like `ipvsadm -Sn`.
func (f *Fake) String() string { return FormatRules(f.State()) }

// record notes a call and, for a write, returns the injected failure if
// any. It is called with f.mu held.
func (f *Fake) record(ctx context.Context, c Call) error {
	f.calls = append(f.calls, c)
	if f.closed {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !c.Write {
		return nil
	}
	f.writes++
	if err, ok := f.failAt[f.writes]; ok {
		delete(f.failAt, f.writes)
		return err
	}
	return nil
}

// asKernel returns s as the kernel backend reads it back once written.
func (f *Fake) asKernel(s Service) Service {
	s.Flags |= FlagHashed
	s.Timeout = ceilSeconds(s.Timeout)
	if s.Netmask <= 0 || (s.Key.Family == IPv4 && s.Netmask > 32) {
		s.Netmask = s.Key.Family.bits()
	}
	return s
}

// checkService applies the kernel's checks of a service's attributes.
func (f *Fake) checkService(s Service) error {
	if !f.schedulers[s.Scheduler] {
		return syscall.ENOENT
	}
	if s.Key.Family == IPv6 && (s.Netmask < 0 || s.Netmask > 128) {
		return syscall.EINVAL
	}
	return nil
}

// checkDest applies the kernel's checks of a destination.
func checkDest(k ServiceKey, d Destination) error {
	if d.Weight < 0 || d.LowerThreshold > d.UpperThreshold {
		return syscall.ERANGE
	}
	// The kernel takes a tunnel destination of another family, but only
	// with its family attribute, which moby/ipvs does not send: Netlink
	// refuses every mixed family (checkDestFamily), and so does the fake.
	if FamilyOf(d.Key.Addr) != k.Family {
		return syscall.EINVAL
	}
	return nil
}

// GetServices returns every service with nil Dests.
func (f *Fake) GetServices(ctx context.Context) ([]Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "GetServices"}); err != nil {
		return nil, fmt.Errorf("%s: %w", callGetServices, err)
	}
	out := make([]Service, 0, len(f.st))
	for _, k := range SortedKeys(f.st) {
		out = append(out, f.st[k].withoutDests())
	}
	return out, nil
}

// GetDestinations returns the destinations of service k, the last added
// first; none (and no error) when the service does not exist, as the
// kernel's dump does.
func (f *Fake) GetDestinations(ctx context.Context, k ServiceKey) ([]Destination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "GetDestinations", Service: k}); err != nil {
		return nil, fmt.Errorf("%s of %s: %w", callGetDests, k, err)
	}
	out := make([]Destination, 0, len(f.st[k].Dests))
	for _, d := range f.st[k].Dests {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Destination) int { return cmp.Compare(b.Position, a.Position) })
	for i := range out {
		out[i].Position = 0 // the kernel lists them in order but says no number
	}
	return out, nil
}

// NewService creates s.
func (f *Fake) NewService(ctx context.Context, s Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.record(ctx, Call{Method: "NewService", Service: s.Key, Write: true})
	if err == nil {
		if _, ok := f.st[s.Key]; ok {
			err = syscall.EEXIST
		}
	}
	if err == nil {
		err = f.checkService(s)
	}
	if err == nil {
		s = f.asKernel(s.withoutDests())
		s.Dests, s.Stats = map[DestKey]Destination{}, Stats{}
		f.st[s.Key] = s
		f.next[s.Key] = 0
	}
	return serviceCallError(callNewService, s, err)
}

// UpdateService changes the existing service s, keeping its destinations.
func (f *Fake) UpdateService(ctx context.Context, s Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.record(ctx, Call{Method: "UpdateService", Service: s.Key, Write: true})
	old, ok := f.st[s.Key]
	if err == nil && !ok {
		err = syscall.ESRCH
	}
	if err == nil {
		err = f.checkService(s)
	}
	if err == nil {
		s = f.asKernel(s.withoutDests())
		s.Dests, s.Stats = old.Dests, old.Stats
		f.st[s.Key] = s
	}
	return serviceCallError(callSetService, s, err)
}

// DelService deletes service k and its destinations.
func (f *Fake) DelService(ctx context.Context, k ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.record(ctx, Call{Method: "DelService", Service: k, Write: true})
	if _, ok := f.st[k]; err == nil && !ok {
		err = syscall.ESRCH
	}
	if err == nil {
		delete(f.st, k)
		delete(f.next, k)
	}
	return serviceCallError(callDelService, Service{Key: k}, err)
}

// NewDestination adds d to service k.
func (f *Fake) NewDestination(ctx context.Context, k ServiceKey, d Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.record(ctx, Call{Method: "NewDestination", Service: k, Dest: d.Key, Write: true})
	s, ok := f.st[k]
	switch {
	case err != nil:
	case !ok:
		err = syscall.ESRCH
	default:
		if _, dup := s.Dests[d.Key]; dup {
			err = syscall.EEXIST
		} else {
			err = checkDest(k, d)
		}
	}
	if err == nil {
		d = asKernelDest(d, Destination{})
		f.next[k]++
		d.Position = f.next[k] // after the others: the kernel adds at the head of its list
		s.Dests[d.Key] = d
	}
	return destCallError(callNewDest, k, d.Key, err)
}

// UpdateDestination changes the existing destination d of service k,
// keeping its counters.
func (f *Fake) UpdateDestination(ctx context.Context, k ServiceKey, d Destination) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.record(ctx, Call{Method: "UpdateDestination", Service: k, Dest: d.Key, Write: true})
	s, ok := f.st[k]
	var old Destination
	switch {
	case err != nil:
	case !ok:
		err = syscall.ESRCH
	default:
		if old, ok = s.Dests[d.Key]; !ok {
			err = syscall.ENOENT
		} else {
			err = checkDest(k, d)
		}
	}
	if err == nil {
		s.Dests[d.Key] = asKernelDest(d, old)
	}
	return destCallError(callSetDest, k, d.Key, err)
}

// asKernelDest returns d as read back after a write, with old's counters.
// Weights travel as 32 bits but moby/ipvs reads back 16.
func asKernelDest(d, old Destination) Destination {
	d.Weight &= 0xffff
	d.LastWeight = 0 // dsrd's, not the kernel's
	d.ActiveConns, d.InactiveConns, d.Stats = old.ActiveConns, old.InactiveConns, old.Stats
	d.Position = old.Position
	return d
}

// DelDestination deletes destination d of service k.
func (f *Fake) DelDestination(ctx context.Context, k ServiceKey, d DestKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.record(ctx, Call{Method: "DelDestination", Service: k, Dest: d, Write: true})
	s, ok := f.st[k]
	switch {
	case err != nil:
	case !ok:
		err = syscall.ESRCH
	default:
		if _, ok := s.Dests[d]; !ok {
			err = syscall.ENOENT
		}
	}
	if err == nil {
		delete(s.Dests, d)
	}
	return destCallError(callDelDest, k, d, err)
}

// WriteBatch performs the operations one after the other (each recorded
// as its own call) and counts one batch.
func (f *Fake) WriteBatch(ctx context.Context, ops []Op) []error {
	f.mu.Lock()
	f.batches++
	f.mu.Unlock()
	errs := make([]error, len(ops))
	for i, op := range ops {
		k := op.Service.Key
		switch op.Kind {
		case OpAddService:
			errs[i] = f.NewService(ctx, op.Service)
		case OpUpdateService:
			errs[i] = f.UpdateService(ctx, op.Service)
		case OpDelService:
			errs[i] = f.DelService(ctx, k)
		case OpAddDest:
			errs[i] = f.NewDestination(ctx, k, op.Dest)
		case OpUpdateDest:
			errs[i] = f.UpdateDestination(ctx, k, op.Dest)
		case OpDelDest:
			errs[i] = f.DelDestination(ctx, k, op.Dest.Key)
		}
	}
	return errs
}

// Batches returns how many times WriteBatch was called.
func (f *Fake) Batches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches
}

// Timeouts returns the fake's connection timeouts.
func (f *Fake) Timeouts(ctx context.Context) (Timeouts, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "Timeouts"}); err != nil {
		return Timeouts{}, fmt.Errorf("%s: %w", callGetTimeouts, err)
	}
	return f.timeouts, nil
}

// SetTimeouts sets the non-zero timeouts, rounded up to whole seconds.
func (f *Fake) SetTimeouts(ctx context.Context, t Timeouts) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "SetTimeouts", Write: true}); err != nil {
		return fmt.Errorf("%s: %w", callSetTimeouts, err)
	}
	for _, p := range []struct{ dst, src *time.Duration }{
		{&f.timeouts.TCP, &t.TCP}, {&f.timeouts.TCPFin, &t.TCPFin}, {&f.timeouts.UDP, &t.UDP},
	} {
		if *p.src > 0 {
			*p.dst = ceilSeconds(*p.src)
		}
	}
	return nil
}

// Close makes further calls fail.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

var (
	_ Kernel        = (*Fake)(nil)
	_ TimeoutSetter = (*Fake)(nil)
	_ BatchWriter   = (*Fake)(nil)
)
