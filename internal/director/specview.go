package director

import (
	"fmt"
	"net/netip"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// serviceSpec is one service of the cluster configuration translated for
// this director once: its configuration, IPVS identity and base service,
// the health checks' input, and per real (in the configuration's order)
// its check's key and parameters and its replicated reference. Shared
// between passes and with dsrd status: never modified once built.
type serviceSpec struct {
	Config config.Service
	Key    ipvs.ServiceKey
	Health healthcheck.Service
	// base is the IPVS service without destinations (scheduler, flags,
	// persistence, drain timeout).
	base ipvs.Service
	// anycast: the service is on a bgp VIP, so its reals follow the
	// cluster's health verdicts.
	anycast bool
	checks  []healthcheck.Key
	params  []healthcheck.Params
	refs    []raft.RealRef
	// checkServices are the IPVS services of the service's checks through
	// the VIP (throughvip.go), held on every director.
	checkServices []ipvs.Service
}

// translateSpec translates the services of a cluster configuration. The
// error names the first service without an IPVS identity or with
// scheduler flags its scheduler does not take (validation refuses both
// first): such a spec gives no desired IPVS state, but every service is
// still translated for the health checks.
func translateSpec(spec raft.Spec) ([]serviceSpec, error) {
	bgpVIPs := map[netip.Addr]bool{}
	for _, v := range spec.VIPs {
		if v.Mode == raft.VIPModeBGP {
			bgpVIPs[v.Address] = true
		}
	}
	services := clusterspec.Services(spec)
	marks := checkMarks(services)
	out := make([]serviceSpec, len(services))
	var first error
	for i := range services {
		svc := services[i]
		key := svc.Key()
		if key == (ipvs.ServiceKey{}) && first == nil {
			first = fmt.Errorf("service %s: no ipvs identity (protocol %q, vip %s, fwmark %d)", svc.Name, svc.Protocol, svc.VIP, svc.FWMark)
		}
		flags, err := ipvs.ParseSchedFlags(svc.Scheduler, svc.SchedulerFlags)
		if err != nil && first == nil {
			first = fmt.Errorf("service %s: %w", svc.Name, err)
		}
		base := ipvs.Service{Key: key, Scheduler: svc.Scheduler, Flags: flags}
		if svc.OnePacket {
			base.Flags |= ipvs.FlagOnePacket
		}
		if svc.Persistence.Timeout > 0 {
			base.SetPersistence(svc.Persistence.Timeout.D(), svc.Persistence.Netmask)
		}
		base.DrainTimeout = svc.DrainTimeout.D()
		s := serviceSpec{
			Config:        svc,
			Key:           key,
			Health:        healthService(svc, marks),
			base:          base,
			anycast:       svc.FWMark == 0 && bgpVIPs[svc.VIP],
			checks:        make([]healthcheck.Key, len(svc.Reals)),
			params:        make([]healthcheck.Params, len(svc.Reals)),
			refs:          make([]raft.RealRef, len(svc.Reals)),
			checkServices: checkServices(&svc, marks),
		}
		for j := range svc.Reals {
			s.checks[j] = healthcheck.RealKey(s.Health, s.Health.Reals[j])
			s.params[j] = healthcheck.ParamsFrom(s.Health.Reals[j].Check)
			s.refs[j] = realRef(&s.Config, &s.Config.Reals[j])
		}
		out[i] = s
	}
	return out, first
}

// specCache keeps the translation of the cluster configuration last
// asked for: a configuration is translated once per generation, not on
// every reconcile pass. The reconcile loop owns it: no lock.
type specCache struct {
	valid      bool
	generation uint64
	hash       string
	services   []serviceSpec
	err        error
}

// get returns the translated services of cc (see translateSpec).
func (c *specCache) get(cc raft.ClusterConfig) ([]serviceSpec, error) {
	if !c.valid || c.generation != cc.Generation || c.hash != cc.Hash {
		services, err := translateSpec(cc.Spec)
		*c = specCache{valid: true, generation: cc.Generation, hash: cc.Hash, services: services, err: err}
	}
	return c.services, c.err
}
