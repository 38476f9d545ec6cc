// Package metrics is dsrd's Prometheus endpoint. A Set holds a private
// registry with the Go and process collectors, the metrics fed by events
// (health check runs, IPVS reconciles and writes, leadership changes) and
// a collector that reads the node's state when it is scraped, from the
// same snapshot `dsrd status` shows, so no state is kept twice.
//
// A nil *Set is valid: every method is then a no-op, which is how a
// daemon runs with metrics off. Every metric is documented in
// docs/metrics.md.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
)

// namespace prefixes every dsrd metric.
const namespace = "dsrd"

// Role is the kind of daemon a Set serves: it decides which metrics exist.
type Role string

// The roles. A witness has no IPVS, VIPs, health checks nor configuration
// file of its own to reload: it exports the Raft metrics only.
const (
	RoleDirector Role = "director"
	RoleWitness  Role = "witness"
)

// Snapshot is a node's state at one scrape.
type Snapshot struct {
	// Status is what `dsrd status` shows of this node.
	Status api.Status
	// Traffic are IPVS's counters of each real that is in IPVS.
	Traffic map[RealID]ipvs.Stats
}

// RealID names a real of a service in a Snapshot.
type RealID struct {
	// Service is the service's key (api.Service.Key), e.g. tcp/203.0.113.10:80.
	Service string
	// Real is the real's address and port, as in api.Real.
	Real netip.AddrPort
}

// Source reads a node's state for a scrape. When it fails it returns what
// it could read along with the error.
type Source func(ctx context.Context) (Snapshot, error)

// checkBuckets are the health check durations' histogram buckets, in
// seconds: from a sub-millisecond tcp connect on the local segment to an
// exec or http check near the longest sensible timeout.
var checkBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// reconcileBuckets are the reconcile durations' buckets, in seconds: a
// pass with nothing to change reads the kernel (1 + services netlink round
// trips, milliseconds), a full sync of thousands of services takes about a
// second, a netlink timeout several.
var reconcileBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Set is the metrics of one daemon. Its methods are safe for concurrent
// use, and no-ops on a nil *Set.
type Set struct {
	role Role
	reg  *prometheus.Registry
	now  func() time.Time

	failovers prometheus.Counter

	// Directors only (nil for a witness).
	checkDuration     *prometheus.HistogramVec
	checkResults      *prometheus.CounterVec
	checkDelay        prometheus.Histogram
	reconcileDuration prometheus.Histogram
	reconcileErrors   prometheus.Counter
	ipvsWrites        *prometheus.CounterVec
	bgpWithdrawals    *prometheus.CounterVec

	// lastSuccess is the unix time in nanoseconds of the last reconcile
	// that succeeded; 0 before the first.
	lastSuccess atomic.Int64

	mu       sync.Mutex
	source   Source
	page     http.Handler
	services map[string]bool // services with check series, for RetainServices
}

// New returns the metrics of a daemon of this role, registered with a
// registry of their own along with the Go and process collectors.
func New(role Role) *Set {
	s := &Set{
		role:     role,
		reg:      prometheus.NewRegistry(),
		now:      time.Now,
		services: map[string]bool{},
	}
	s.failovers = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "failovers_total",
		Help: "Times this node became the Raft leader (for a director: took the VIPs over).",
	})
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		s.failovers,
		statusCollector{s},
	)
	if role != RoleDirector {
		return s
	}
	s.checkDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "check_duration_seconds",
		Help:    "How long health check runs took, by service and check type.",
		Buckets: checkBuckets,
	}, []string{"service", "type"})
	s.checkResults = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "check_results_total",
		Help: "Health check runs by service, result (up or down) and reason (ok, timeout, refused, ...).",
	}, []string{"service", "result", "reason"})
	s.checkDelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "check_schedule_delay_seconds",
		Help:    "How late health check runs started after they were due: the scheduler's lateness.",
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	})
	s.reconcileDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "ipvs_reconcile_duration_seconds",
		Help:    "How long IPVS reconcile passes took (read the kernel, apply the differences).",
		Buckets: reconcileBuckets,
	})
	s.reconcileErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "ipvs_reconcile_errors_total",
		Help: "IPVS reconcile passes that failed (retried with backoff).",
	})
	s.ipvsWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "ipvs_writes_total",
		Help: "IPVS operations written to the kernel, by operation and result (ok or error).",
	}, []string{"op", "result"})
	for _, k := range []ipvs.OpKind{ipvs.OpAddService, ipvs.OpUpdateService, ipvs.OpDelService, ipvs.OpAddDest, ipvs.OpUpdateDest, ipvs.OpDelDest} {
		s.ipvsWrites.WithLabelValues(k.String(), "ok")
		s.ipvsWrites.WithLabelValues(k.String(), "error")
	}
	s.bgpWithdrawals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "bgp_withdrawals_total",
		Help: "Times this director stopped announcing a bgp VIP, by cause (no-service-up, ipvs-not-converged, cut-off-from-cluster, health-view-disagrees, drained).",
	}, []string{"cause"})
	s.reg.MustRegister(s.checkDuration, s.checkResults, s.checkDelay, s.reconcileDuration, s.reconcileErrors, s.ipvsWrites, s.bgpWithdrawals)
	return s
}

// Gatherer returns the registry the endpoint serves.
func (s *Set) Gatherer() prometheus.Gatherer {
	if s == nil {
		return prometheus.NewRegistry()
	}
	return s.reg
}

// Watch makes src the source of the state-based metrics; until it is
// called they are absent.
func (s *Set) Watch(src Source) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.source = src
}

// Snapshot reads the node's state from the source Watch set (an error
// before it is set).
func (s *Set) Snapshot(ctx context.Context) (Snapshot, error) {
	if s == nil {
		return Snapshot{}, errors.New("no metrics")
	}
	s.mu.Lock()
	src := s.source
	s.mu.Unlock()
	if src == nil {
		return Snapshot{}, errors.New("the node has not started yet")
	}
	return src(ctx)
}

// ServePage serves h (the status page) on the endpoint at every path but
// the metrics'; call it before Serve.
func (s *Set) ServePage(h http.Handler) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.page = h
}

// BGPWithdrawn counts one withdrawal of a bgp VIP by its cause.
func (s *Set) BGPWithdrawn(cause string) {
	if s == nil || s.bgpWithdrawals == nil {
		return
	}
	s.bgpWithdrawals.WithLabelValues(cause).Inc()
}

// LeadershipAcquired counts one acquisition of the Raft leadership.
func (s *Set) LeadershipAcquired() {
	if s == nil {
		return
	}
	s.failovers.Inc()
}

// CheckRan records one completed health check run of the given check type.
func (s *Set) CheckRan(checkType string, r healthcheck.Run) {
	if s == nil || s.checkDuration == nil {
		return
	}
	result := "down"
	if r.Result.Up {
		result = "up"
	}
	s.mu.Lock()
	s.services[r.Service] = true
	s.mu.Unlock()
	s.checkDuration.WithLabelValues(r.Service, checkType).Observe(r.Result.Latency.Seconds())
	s.checkResults.WithLabelValues(r.Service, result, r.Result.Reason.String()).Inc()
	if !r.Scheduled.IsZero() && !r.Started.IsZero() {
		s.checkDelay.Observe(max(r.Started.Sub(r.Scheduled), 0).Seconds())
	}
}

// RetainServices drops the health check series of services not named:
// those removed from the configuration.
func (s *Set) RetainServices(names []string) {
	if s == nil || s.checkDuration == nil {
		return
	}
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for n := range s.services {
		if keep[n] {
			continue
		}
		delete(s.services, n)
		s.checkDuration.DeletePartialMatch(prometheus.Labels{"service": n})
		s.checkResults.DeletePartialMatch(prometheus.Labels{"service": n})
	}
}

// Reconciled records one IPVS reconcile pass that ended at end after took,
// with its error (nil when it succeeded).
func (s *Set) Reconciled(end time.Time, took time.Duration, err error) {
	if s == nil || s.reconcileDuration == nil {
		return
	}
	s.reconcileDuration.Observe(took.Seconds())
	if err != nil {
		s.reconcileErrors.Inc()
		return
	}
	s.lastSuccess.Store(end.UnixNano())
}

// IPVSWrite records one IPVS operation and its error (nil when it
// succeeded); its signature is ipvs.WithOnWrite's.
func (s *Set) IPVSWrite(kind ipvs.OpKind, err error) {
	if s == nil || s.ipvsWrites == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.ipvsWrites.WithLabelValues(kind.String(), result).Inc()
}
