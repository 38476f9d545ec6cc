package director

import (
	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/config"
)

// healthServices translates configured services into the health checks'
// and the policy's input.
func healthServices(services []config.Service) []healthcheck.Service {
	out := make([]healthcheck.Service, len(services))
	marks := checkMarks(services)
	for i := range services {
		out[i] = healthService(services[i], marks)
	}
	return out
}

// healthService translates one configured service into the health
// checks' and the policy's input: its reals in the same order, each with
// the check that applies to it (its own, else the service's; none for
// type none). Reals that take the service's check share one Spec, so they
// share one checker. A check through the VIP is the real's own (its mark
// in marks, from checkMarks of every service).
func healthService(svc config.Service, marks map[healthcheck.Key]uint32) healthcheck.Service {
	out := healthcheck.Service{
		Name:        svc.Name,
		Key:         svc.Key(),
		Port:        svc.Port,
		Quorum:      svc.Quorum,
		SorryServer: svc.SorryServer,
		Reals:       make([]healthcheck.Real, len(svc.Reals)),
	}
	if svc.OnDown == config.DownRemove {
		out.OnDown = healthcheck.DownRemove
	}
	shared := checkSpec(svc.HealthCheck, svc.Protocol)
	for i := range svc.Reals {
		r := &svc.Reals[i]
		check := shared
		if r.HealthCheck != nil {
			check = checkSpec(r.HealthCheck, svc.Protocol)
		}
		out.Reals[i] = healthcheck.Real{
			Address:        r.Address,
			Port:           r.Port,
			Weight:         r.Weight,
			UpperThreshold: r.UpperThreshold,
			LowerThreshold: r.LowerThreshold,
			Check:          check,
		}
		if throughVIP(realCheck(&svc, r)) {
			mark := marks[healthcheck.RealKey(out, out.Reals[i])]
			out.Reals[i].Check = throughVIPSpec(check, svc.VIP, r.Address, mark)
		}
	}
	return out
}

// checkSpec translates a configured health check of a service over proto:
// nil for none (no health check, or type none). A type the configuration
// does not know gives a Spec without a probe, which the checks report as
// a configuration error (validation refuses such a type first).
func checkSpec(hc *config.HealthCheck, proto config.Protocol) *healthcheck.Spec {
	if hc == nil || hc.Type == config.CheckNone {
		return nil
	}
	spec := &healthcheck.Spec{
		Params: healthcheck.Params{
			Interval: hc.Interval.D(),
			Timeout:  hc.Timeout.D(),
			Rise:     hc.Rise,
			Fall:     hc.Fall,
		},
		Address: hc.Address,
		Port:    hc.Port,
		Source:  hc.Source,
	}
	if hc.Initial == "up" {
		spec.Initial = healthcheck.StateUp
	}
	switch hc.Type {
	case config.CheckTCP, "":
		spec.Probe = healthcheck.TCP{Send: hc.Send, Expect: hc.Expect, Proxy: healthcheck.ProxyProtocol(hc.ProxyProtocol)}
	case config.CheckHTTP, config.CheckHTTPS:
		spec.Probe = healthcheck.HTTP{
			TLS:           hc.Type == config.CheckHTTPS,
			Method:        hc.Method,
			Path:          hc.Path,
			Host:          hc.Host,
			ExpectStatus:  hc.ExpectStatus,
			BodyRegexp:    hc.BodyRegexp,
			TLSServerName: hc.TLSServer,
			TLSVerify:     hc.TLSVerify != nil && *hc.TLSVerify,
			Proxy:         healthcheck.ProxyProtocol(hc.ProxyProtocol),
		}
	case config.CheckUDP:
		spec.Probe = healthcheck.UDP{Send: hc.Send, Expect: hc.Expect, NoReplyIsUp: hc.NoReplyIsUp}
	case config.CheckDNS:
		spec.Probe = healthcheck.DNS{
			QueryName:    hc.QueryName,
			QueryType:    hc.QueryType,
			ExpectRcode:  hc.ExpectCode,
			ExpectAnswer: hc.ExpectAnswer,
			TCP:          proto == config.TCP,
		}
	case config.CheckICMP:
		spec.Probe = healthcheck.ICMP{}
	case config.CheckExec:
		spec.Probe = healthcheck.Exec{Command: hc.Command}
	case config.CheckAgent:
		spec.Probe = healthcheck.Agent{Path: hc.Path, Host: hc.Host}
	}
	return spec
}
