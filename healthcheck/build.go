package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dsrd/dsrd/internal/config"
)

// Key identifies one check: a real server of a service.
type Key struct {
	// Service is the service's name.
	Service string
	// Real is the real server's address and the service port.
	Real netip.AddrPort
}

// String formats the key as service/address:port.
func (k Key) String() string { return k.Service + "/" + k.Real.String() }

// compare orders keys by service, then real.
func (k Key) compare(o Key) int {
	switch {
	case k.Service < o.Service:
		return -1
	case k.Service > o.Service:
		return 1
	}
	return k.Real.Compare(o.Real)
}

// Params are the scheduling parameters of a check.
type Params struct {
	// Interval spaces two runs of the check.
	Interval time.Duration
	// Timeout bounds one run.
	Timeout time.Duration
	// Rise and Fall are the consecutive results that change the state.
	Rise, Fall int
	// Initial is the state before the first verdict.
	Initial State
}

// ParamsFrom returns hc's scheduling parameters, with this package's
// fallback defaults for zero values: DefaultInterval, DefaultTimeout,
// DefaultRise, DefaultFall and initial down.
func ParamsFrom(hc *config.HealthCheck) Params {
	var p Params
	if hc != nil {
		p = Params{
			Interval: hc.Interval.D(),
			Timeout:  hc.Timeout.D(),
			Rise:     hc.Rise,
			Fall:     hc.Fall,
		}
		if hc.Initial == "up" {
			p.Initial = StateUp
		}
	}
	return p.withDefaults()
}

// withDefaults fills zero or invalid fields with the fallback defaults.
func (p Params) withDefaults() Params {
	if p.Interval <= 0 {
		p.Interval = DefaultInterval
	}
	if p.Timeout <= 0 {
		p.Timeout = DefaultTimeout
	}
	if p.Rise <= 0 {
		p.Rise = DefaultRise
	}
	if p.Fall <= 0 {
		p.Fall = DefaultFall
	}
	if p.Initial != StateUp {
		p.Initial = StateDown
	}
	return p
}

// Check is one scheduled health check: which real, what to probe, with
// which checker, how often.
type Check struct {
	Key    Key
	Target Target
	// Type is the checker's type, for status output.
	Type    config.CheckType
	Checker Checker
	Params  Params
	// Fingerprint identifies the check's definition: the scheduler keeps
	// the state and schedule of a check whose key and fingerprint did not
	// change across an update. Empty fingerprints never match.
	Fingerprint string
}

// Effective returns the health check that applies to real r of svc: the
// real's own, else the service's; nil when there is none or its type is
// "none" (the real is then always up).
func Effective(svc config.Service, r config.Real) *config.HealthCheck {
	hc := r.HealthCheck
	if hc == nil {
		hc = svc.HealthCheck
	}
	if hc == nil || hc.Type == config.CheckNone {
		return nil
	}
	return hc
}

// RealKey returns the key of real r of svc.
func RealKey(svc config.Service, r config.Real) Key {
	port := r.Port
	if port == 0 {
		port = svc.Port
	}
	return Key{Service: svc.Name, Real: netip.AddrPortFrom(r.Address.Unmap(), port)}
}

// TargetFor returns what hc probes for real r of svc: the real's address
// and the service port, or hc's Address and Port when set; the agent port
// by default for agent checks.
func TargetFor(svc config.Service, r config.Real, hc *config.HealthCheck) Target {
	k := RealKey(svc, r)
	addr, port := k.Real.Addr(), k.Real.Port()
	if hc != nil {
		if hc.Type == config.CheckAgent {
			port = DefaultAgentPort
		}
		if hc.Address.IsValid() {
			addr = hc.Address.Unmap()
		}
		if hc.Port != 0 {
			port = hc.Port
		}
	}
	return Target{Service: svc.Name, Real: k.Real, Addr: netip.AddrPortFrom(addr, port)}
}

// ChecksFor builds the checks of every real of services that has a health
// check. A check that cannot be built is still returned, with a checker
// that always reports ReasonConfig, so that its real stays down and the
// reason shows in status; the returned error lists every such check.
func ChecksFor(services []config.Service, opts BuildOptions) ([]Check, error) {
	var (
		checks []Check
		errs   []error
	)
	for _, svc := range services {
		opts := opts
		opts.Protocol = svc.Protocol
		// Reals sharing the service's check share one checker.
		built := make(map[*config.HealthCheck]Checker)
		for _, r := range svc.Reals {
			hc := Effective(svc, r)
			if hc == nil {
				continue
			}
			key := RealKey(svc, r)
			checker, ok := built[hc]
			if !ok {
				var err error
				checker, err = NewChecker(hc, opts)
				if err != nil {
					err = fmt.Errorf("service %s real %s: health check: %w", svc.Name, key.Real, err)
					errs = append(errs, err)
					checker = brokenChecker(err.Error())
				}
				built[hc] = checker
			}
			target := TargetFor(svc, r, hc)
			checks = append(checks, Check{
				Key:         key,
				Target:      target,
				Type:        hc.Type,
				Checker:     checker,
				Params:      ParamsFrom(hc),
				Fingerprint: fingerprint(hc, target, opts),
			})
		}
	}
	return checks, errors.Join(errs...)
}

// brokenChecker always reports a configuration error.
func brokenChecker(msg string) Checker {
	return CheckerFunc(func(context.Context, Target) Result {
		return Result{Reason: ReasonConfig, Message: clip(msg)}
	})
}

// fingerprint encodes everything a check's behaviour depends on.
func fingerprint(hc *config.HealthCheck, t Target, opts BuildOptions) string {
	b, err := json.Marshal(struct {
		HC       *config.HealthCheck
		Target   Target
		Protocol config.Protocol
		RootCAs  bool
	}{hc, t, opts.Protocol, opts.RootCAs != nil})
	if err != nil {
		return "" // never matches: the check is rebuilt
	}
	return string(b)
}
