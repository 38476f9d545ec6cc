package ipvs

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Kernel is the IPVS table of one network namespace, as the Reconciler
// uses it. Every call is one netlink round trip on the real kernel; each
// is bounded by ctx and returns errors that name the call and its object.
// The kernel's errno stays reachable with errors.Is (syscall.EEXIST for a
// duplicate, syscall.ESRCH for a missing service, syscall.ENOENT for a
// missing destination or scheduler).
type Kernel interface {
	// GetServices returns every service with nil Dests.
	GetServices(ctx context.Context) ([]Service, error)
	// GetDestinations returns the destinations of the service k in the
	// kernel's order: the last added first.
	GetDestinations(ctx context.Context, k ServiceKey) ([]Destination, error)
	// NewService creates s (without its Dests).
	NewService(ctx context.Context, s Service) error
	// UpdateService changes the attributes of the existing service s.
	UpdateService(ctx context.Context, s Service) error
	// DelService deletes the service k and its destinations.
	DelService(ctx context.Context, k ServiceKey) error
	// NewDestination adds d to the service k.
	NewDestination(ctx context.Context, k ServiceKey, d Destination) error
	// UpdateDestination changes the existing destination d of service k.
	UpdateDestination(ctx context.Context, k ServiceKey, d Destination) error
	// DelDestination deletes the destination d of service k.
	DelDestination(ctx context.Context, k ServiceKey, d DestKey) error
	// Close releases the kernel handle.
	Close() error
}

// BatchWriter is implemented by a Kernel that can perform many writes in
// few round trips (Netlink sends them many to a netlink message batch). The
// Reconciler uses it when the Kernel has it.
type BatchWriter interface {
	// WriteBatch performs ops in order and returns one error per
	// operation, nil for success, wrapped as the single calls wrap them.
	WriteBatch(ctx context.Context, ops []Op) []error
}

// ErrUnavailable is returned when the running kernel has no IPVS.
var ErrUnavailable = errors.New("IPVS is not available in this kernel: load the ip_vs module (modprobe ip_vs)")

// errClosed is returned by calls on a closed Kernel.
var errClosed = errors.New("ipvs kernel handle is closed")

// SchedulerError says that the kernel has no scheduler of that name: its
// module (ip_vs_NAME) is neither loaded nor loadable. It wraps the errno.
type SchedulerError struct {
	Scheduler string
	Err       error
}

// Error names the scheduler and the module to load.
func (e *SchedulerError) Error() string {
	return fmt.Sprintf("scheduler %s is not available: load the ip_vs_%s module", e.Scheduler, e.Scheduler)
}

// Unwrap returns the kernel's errno.
func (e *SchedulerError) Unwrap() error { return e.Err }

// The call names used in errors.
const (
	callGetServices  = "get services"
	callGetDests     = "get destinations"
	callNewService   = "new service"
	callSetService   = "update service"
	callDelService   = "delete service"
	callNewDest      = "new destination"
	callSetDest      = "update destination"
	callDelDest      = "delete destination"
	callGetTimeouts  = "get timeouts"
	callSetTimeouts  = "set timeouts"
	hintLoDown       = "the kernel refuses new destinations while lo is down"
	hintRange        = "weight or thresholds out of range"
	errnoNoScheduler = syscall.ENOENT
)

// serviceCallError wraps err from a service call, turning the kernel's
// ENOENT on create or update into a SchedulerError.
func serviceCallError(call string, s Service, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, errnoNoScheduler) && (call == callNewService || call == callSetService) {
		err = &SchedulerError{Scheduler: s.Scheduler, Err: err}
	}
	return fmt.Errorf("%s %s: %w", call, s.Key, err)
}

// destCallError wraps err from a destination call with the destination,
// the service and a hint for errnos whose cause is known.
func destCallError(call string, k ServiceKey, d DestKey, err error) error {
	if err == nil {
		return nil
	}
	switch {
	case call == callNewDest && errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%s %s of %s: %w (%s)", call, d, k, err, hintLoDown)
	case errors.Is(err, syscall.ERANGE):
		return fmt.Errorf("%s %s of %s: %w (%s)", call, d, k, err, hintRange)
	}
	return fmt.Errorf("%s %s of %s: %w", call, d, k, err)
}

// opError wraps the error of a write operation as the single calls do;
// nil stays nil.
func opError(op Op, err error) error {
	if err == nil {
		return nil
	}
	switch op.Kind {
	case OpAddService:
		return serviceCallError(callNewService, op.Service, err)
	case OpUpdateService:
		return serviceCallError(callSetService, op.Service, err)
	case OpDelService:
		return serviceCallError(callDelService, op.Service, err)
	case OpAddDest:
		return destCallError(callNewDest, op.Service.Key, op.Dest.Key, err)
	case OpUpdateDest:
		return destCallError(callSetDest, op.Service.Key, op.Dest.Key, err)
	}
	return destCallError(callDelDest, op.Service.Key, op.Dest.Key, err)
}

// ReadState reads the services of k and the destinations of those for which
// manage reports true (all when manage is nil), with their Position; the
// others have nil Dests. It makes 1 + (managed services) round trips.
func ReadState(ctx context.Context, k Kernel, manage func(ServiceKey) bool) (State, error) {
	svcs, err := k.GetServices(ctx)
	if err != nil {
		return nil, err
	}
	st := make(State, len(svcs))
	for _, s := range svcs {
		if manage == nil || manage(s.Key) {
			ds, err := k.GetDestinations(ctx, s.Key)
			if err != nil {
				return nil, err
			}
			s.Dests = make(map[DestKey]Destination, len(ds))
			for i, d := range ds {
				d.Position = uint32(len(ds) - i) // the last added first
				s.Dests[d.Key] = d
			}
		}
		st[s.Key] = s
	}
	return st, nil
}

// Timeouts are IPVS's connection timeouts (ipvsadm --set); a zero field
// leaves the kernel's value unchanged. The kernel keeps whole seconds.
type Timeouts struct {
	TCP    time.Duration
	TCPFin time.Duration
	UDP    time.Duration
}

// IsZero reports whether no timeout is to be set.
func (t Timeouts) IsZero() bool { return t == Timeouts{} }

// TimeoutSetter reads and sets IPVS connection timeouts; Netlink and Fake
// implement it.
type TimeoutSetter interface {
	Timeouts(ctx context.Context) (Timeouts, error)
	SetTimeouts(ctx context.Context, t Timeouts) error
}

// ApplyTimeouts sets the timeouts of want that are set and differ from the
// kernel's (compared in whole seconds), writing nothing when none does.
func ApplyTimeouts(ctx context.Context, ts TimeoutSetter, want Timeouts) error {
	if want.IsZero() {
		return nil
	}
	cur, err := ts.Timeouts(ctx)
	if err != nil {
		return err
	}
	var set Timeouts
	for _, f := range []struct{ want, cur, set *time.Duration }{
		{&want.TCP, &cur.TCP, &set.TCP}, {&want.TCPFin, &cur.TCPFin, &set.TCPFin}, {&want.UDP, &cur.UDP, &set.UDP},
	} {
		if *f.want > 0 && ceilSeconds(*f.want) != *f.cur {
			*f.set = *f.want
		}
	}
	if set.IsZero() {
		return nil
	}
	return ts.SetTimeouts(ctx, set)
}
