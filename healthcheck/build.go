package healthcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/dsrd/dsrd/ipvs"
)

// Key identifies one check: a real server of a service.
type Key struct {
	// Service is the service's identity (Service.Key).
	Service ipvs.ServiceKey
	// Real is the real server's address and the service port.
	Real netip.AddrPort
}

// String formats the key as service/address:port:
// "tcp/203.0.113.10:80/192.0.2.21:80".
func (k Key) String() string { return k.Service.String() + "/" + k.Real.String() }

// compare orders keys by service, then real.
func (k Key) compare(o Key) int {
	if c := strings.Compare(k.Service.String(), o.Service.String()); c != 0 {
		return c
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

// ParamsFrom returns spec's scheduling parameters, with this package's
// defaults for zero values: DefaultInterval, DefaultTimeout, DefaultRise,
// DefaultFall and initial down. A nil spec has them all.
func ParamsFrom(spec *Spec) Params {
	var p Params
	if spec != nil {
		p = spec.Params
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
	Type    Type
	Checker Checker
	Params  Params
	// Fingerprint identifies the check's definition: the scheduler keeps
	// the state and schedule of a check whose key and fingerprint did not
	// change across an update. Empty fingerprints never match.
	Fingerprint string
}

// RealKey returns the key of real r of svc.
func RealKey(svc Service, r Real) Key {
	port := r.Port
	if port == 0 {
		port = svc.Port
	}
	return Key{Service: svc.Key, Real: netip.AddrPortFrom(r.Address.Unmap(), port)}
}

// TargetFor returns what r's check probes: the real's address and the
// service port, or the check's Address and Port when set; the agent port
// by default for agent checks.
func TargetFor(svc Service, r Real) Target {
	k := RealKey(svc, r)
	addr, port := k.Real.Addr(), k.Real.Port()
	if spec := r.Check; spec != nil {
		if spec.Type() == TypeAgent {
			port = DefaultAgentPort
		}
		if spec.Address.IsValid() {
			addr = spec.Address.Unmap()
		}
		if spec.Port != 0 {
			port = spec.Port
		}
	}
	return Target{Service: svc.Name, Real: k.Real, Addr: netip.AddrPortFrom(addr, port)}
}

// ChecksFor builds the checks of every real of services that has a health
// check. A check that cannot be built is still returned, with a checker
// that always reports ReasonConfig, so that its real stays down and the
// reason shows in status; the returned error lists every such check.
func ChecksFor(services []Service, opts BuildOptions) ([]Check, error) {
	var (
		checks []Check
		errs   []error
	)
	for _, svc := range services {
		// Reals sharing a spec share one checker.
		built := make(map[*Spec]Checker)
		for _, r := range svc.Reals {
			spec := r.Check
			if spec == nil {
				continue
			}
			key := RealKey(svc, r)
			checker, ok := built[spec]
			if !ok {
				var err error
				checker, err = NewChecker(*spec, opts)
				if err != nil {
					err = fmt.Errorf("service %s real %s: health check: %w", svc.Name, key.Real, err)
					errs = append(errs, err)
					checker = brokenChecker(err.Error())
				}
				built[spec] = checker
			}
			target := TargetFor(svc, r)
			checks = append(checks, Check{
				Key:         key,
				Target:      target,
				Type:        spec.Type(),
				Checker:     checker,
				Params:      ParamsFrom(spec),
				Fingerprint: fingerprint(spec, target, opts),
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
func fingerprint(spec *Spec, t Target, opts BuildOptions) string {
	// The probe's type is spelled out: two probes of other types can
	// encode alike (ICMP and an empty Agent).
	b, err := json.Marshal(struct {
		Spec    *Spec
		Type    Type
		Target  Target
		RootCAs bool
	}{spec, spec.Type(), t, opts.RootCAs != nil})
	if err != nil {
		return "" // never matches: the check is rebuilt
	}
	return string(b)
}
