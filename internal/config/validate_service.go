package config

import (
	"net/netip"

	"github.com/dsrd/dsrd/ipvs"
)

// vipSet maps each valid VIP to its mode.
type vipSet map[netip.Addr]VIPMode

// services validates the services; vips is the set of valid VIPs, nil
// when it is not known (a VIP did not decode).
func (v *validator) services(svcs []Service, vips vipSet, path string) {
	names := make(map[string]int)
	keys := make(map[ipvs.ServiceKey]int)
	through := 0
	for i := range svcs {
		s := &svcs[i]
		p := indexPath(path, i)
		v.service(s, vips, p)
		for j := range s.Reals {
			if c := s.Reals[j].HealthCheck; c != nil && c.ThroughVIP || c == nil && s.HealthCheck != nil && s.HealthCheck.ThroughVIP {
				if through++; through == MaxThroughVIPChecks+1 {
					v.errorf(indexPath(joinPath(p, "reals"), j), "more than %d reals checked through the VIP: each takes an IPVS service on every director", MaxThroughVIPChecks)
				}
			}
		}
		if s.Name != "" && checkName(s.Name) == nil {
			if j, dup := names[s.Name]; dup {
				f := indexPath(path, j)
				v.errorf(joinPath(p, "name"), "duplicate service name %q, first at %s%s", s.Name, f, v.line(f))
			} else {
				names[s.Name] = i
			}
		}
		if !v.hasIdentity(s, p) {
			continue
		}
		k := s.Key()
		if j, dup := keys[k]; dup {
			f := indexPath(path, j)
			v.errorf(p, "duplicate service %s: the same as %s %q%s", k, f, svcs[j].Name, v.line(f))
		} else {
			keys[k] = i
		}
	}
}

// hasIdentity reports whether a service's key is meaningful: its VIP,
// protocol and port (or mark and family) are valid.
func (v *validator) hasIdentity(s *Service, path string) bool {
	if s.FWMark != 0 {
		return s.Family() != 0
	}
	if !s.VIP.IsValid() || v.pos.isBad(joinPath(path, "vip")) || v.pos.isBad(joinPath(path, "port")) {
		return false
	}
	switch s.Protocol {
	case TCP, UDP, SCTP:
		return true
	}
	return false
}

// service validates one service, written at path; vips is as for services.
func (v *validator) service(s *Service, vips vipSet, path string) {
	v.serviceName(s, path)
	v.serviceIdentity(s, vips, path)
	v.serviceScheduler(s, path)
	v.serviceOnBGP(s, vips, path)
	fam := s.Family()
	v.servicePersistence(s, fam, path)
	v.serviceOptions(s, path)
	v.sorryServer(s, fam, path)
	v.serviceHealthCheck(s, path)
	v.serviceReals(s, fam, path)
}

// serviceName checks that the service has a valid name.
func (v *validator) serviceName(s *Service, path string) {
	np := joinPath(path, "name")
	if s.Name == "" {
		v.errorf(np, "required: a unique name for the service")
	} else if err := checkName(s.Name); err != nil {
		v.errorf(np, "%q %v", s.Name, err)
	}
}

// serviceIdentity checks the VIP, protocol and port (absent on a fwmark service).
func (v *validator) serviceIdentity(s *Service, vips vipSet, path string) {
	vp := joinPath(path, "vip")
	pp := joinPath(path, "port")
	prp := joinPath(path, "protocol")
	switch {
	case v.pos.isBad(joinPath(path, "fwmark")):
		// Whether it is a fwmark service is unknown: judge neither way.
	case s.FWMark == 0:
		if !s.VIP.IsValid() {
			v.errorf(vp, "required: the virtual address, one of vips")
		} else if v.vip(vp, s.VIP) && vips != nil {
			if _, ok := vips[s.VIP]; !ok {
				v.errorf(vp, "%s is not one of the configured vips", s.VIP)
			}
		}
		if s.Protocol == "" {
			v.errorf(prp, "required: tcp, udp or sctp")
		} else if ok, hint := oneOf(string(s.Protocol), string(TCP), string(UDP), string(SCTP)); !ok {
			v.errorf(prp, "unknown protocol %q%s", s.Protocol, hint)
		}
		if s.Port == 0 && s.Persistence.Timeout == 0 {
			v.errorf(pp, "required: 1-65535 (0 means all ports and needs persistence.timeout)")
		}
	default:
		if s.VIP.IsValid() {
			v.vip(vp, s.VIP)
		}
		if s.Port != 0 {
			v.errorf(pp, "a fwmark service has no port: the firewall mark selects its traffic")
		}
		if s.Protocol != "" {
			v.errorf(prp, "a fwmark service has no protocol: the firewall mark selects its traffic")
		}
	}
}

// serviceScheduler checks the scheduler, and its flags: known, unique, for it.
func (v *validator) serviceScheduler(s *Service, path string) {
	sp := joinPath(path, "scheduler")
	schedOK, hint := oneOf(s.Scheduler, "rr", "wrr", "lc", "wlc", "sh", "mh")
	if !schedOK {
		v.errorf(sp, "unknown scheduler %q%s", s.Scheduler, hint)
	}
	seen := make(map[string]bool)
	for i, f := range s.SchedulerFlags {
		fp := indexPath(joinPath(path, "scheduler_flags"), i)
		if ok, hint := oneOf(f, "sh-fallback", "sh-port", "mh-fallback", "mh-port"); !ok {
			v.errorf(fp, "unknown scheduler flag %q%s", f, hint)
			continue
		}
		if seen[f] {
			v.errorf(fp, "duplicate scheduler flag %q", f)
			continue
		}
		seen[f] = true
		if schedOK && f[:2] != s.Scheduler {
			v.errorf(fp, "%q applies only to the %s scheduler, not %s", f, f[:2], s.Scheduler)
		}
	}
}

// serviceOnBGP checks what a service on a bgp VIP needs: the routers may
// send any packet of a flow to any director, so every director must send a
// flow to the same real, which only the hashing schedulers do (the
// directors hold the same reals in the same order: docs/bgp.md).
func (v *validator) serviceOnBGP(s *Service, vips vipSet, path string) {
	if s.FWMark != 0 || vips[s.VIP] != ModeBGP {
		return
	}
	if s.Scheduler != "mh" && s.Scheduler != "sh" && !s.OnePacket {
		v.errorf(joinPath(path, "scheduler"), "%s on bgp VIP %s: the routers spread a flow's packets over the directors by ECMP, and only mh (or sh) sends a flow to the same real from every director; use mh, or one_packet for single-datagram UDP", s.Scheduler, s.VIP)
	}
	if s.OnDown == DownRemove {
		v.errorf(joinPath(path, "on_down"), "remove on bgp VIP %s: deleting a failed real rebuilds the hash table and moves other reals' flows, which a router rehash then breaks; a failed real stays at weight 0 (on_down: weight0)", s.VIP)
	}
}

// servicePersistence checks the persistence timeout, and its netmask for family fam.
func (v *validator) servicePersistence(s *Service, fam int, path string) {
	pe := joinPath(path, "persistence")
	v.wholeSeconds(joinPath(pe, "timeout"), s.Persistence.Timeout)
	if s.Persistence.Timeout == 0 {
		if s.Persistence.Netmask != 0 {
			v.errorf(joinPath(pe, "netmask"), "needs persistence.timeout")
		}
	} else if fam != 0 {
		bits := 32
		if fam == 6 {
			bits = 128
		}
		if s.Persistence.Netmask < 1 || s.Persistence.Netmask > bits {
			v.errorf(joinPath(pe, "netmask"), "%d is out of range for IPv%d (1 to %d)", s.Persistence.Netmask, fam, bits)
		}
	}
}

// serviceOptions checks one_packet, drain_timeout, quorum and on_down.
func (v *validator) serviceOptions(s *Service, path string) {
	if s.OnePacket && s.FWMark == 0 && s.Protocol != UDP {
		v.errorf(joinPath(path, "one_packet"), "applies only to udp (or fwmark) services")
	}
	if s.DrainTimeout < 0 {
		v.errorf(joinPath(path, "drain_timeout"), "%s is negative", s.DrainTimeout)
	}
	qp := joinPath(path, "quorum")
	switch {
	case s.Quorum < 0:
		v.errorf(qp, "%d is negative", s.Quorum)
	case s.Quorum > len(s.Reals) && len(s.Reals) > 0:
		v.errorf(qp, "%d exceeds the number of reals (%d): the service could never be up", s.Quorum, len(s.Reals))
	}
	if ok, hint := oneOf(string(s.OnDown), string(DownWeightZero), string(DownRemove)); !ok {
		v.errorf(joinPath(path, "on_down"), "unknown policy %q%s", s.OnDown, hint)
	}
}

// sorryServer checks a sorry server if set: unicast, of family fam, not the VIP.
func (v *validator) sorryServer(s *Service, fam int, path string) {
	if !s.SorryServer.IsValid() {
		return
	}
	ssp := joinPath(path, "sorry_server")
	if v.unicast(ssp, s.SorryServer) {
		switch {
		case fam != 0 && family(s.SorryServer) != fam:
			v.errorf(ssp, "%s is IPv%d but the service is IPv%d", s.SorryServer, family(s.SorryServer), fam)
		case s.SorryServer == s.VIP:
			v.errorf(ssp, "%s is the VIP itself", s.SorryServer)
		}
	}
}

// serviceHealthCheck checks that the health check is set, and validates it.
func (v *validator) serviceHealthCheck(s *Service, path string) {
	hp := joinPath(path, "health_check")
	if s.HealthCheck == nil {
		v.errorf(hp, "not set")
	} else {
		v.check(s.HealthCheck, s, path, hp)
	}
}

// serviceReals validates the reals, at least one, with no address twice.
func (v *validator) serviceReals(s *Service, fam int, path string) {
	rp := joinPath(path, "reals")
	if len(s.Reals) == 0 {
		v.errorf(rp, "at least one real is required")
	}
	first := make(map[netip.Addr]string)
	for i := range s.Reals {
		p := indexPath(rp, i)
		if v.real(&s.Reals[i], s, path, fam, p) {
			a := s.Reals[i].Address
			ap := joinPath(p, "address")
			if f, dup := first[a]; dup {
				v.errorf(ap, "duplicate real %s, first at %s%s", a, f, v.line(f))
			} else {
				first[a] = ap
			}
		}
	}
}

// real validates one real of s (written at svcPath), whose family is fam;
// it reports whether the
// real's address is valid (for the uniqueness check).
func (v *validator) real(r *Real, s *Service, svcPath string, fam int, path string) bool {
	ap := joinPath(path, "address")
	ok := false
	switch {
	case !r.Address.IsValid():
		v.errorf(ap, "required")
	case !v.unicast(ap, r.Address):
	case fam != 0 && family(r.Address) != fam:
		v.errorf(ap, "%s is IPv%d but the service is IPv%d", r.Address, family(r.Address), fam)
	case r.Address == s.VIP:
		v.errorf(ap, "%s is the VIP itself", r.Address)
	default:
		ok = true
	}
	if r.Port != s.Port {
		pp := joinPath(path, "port")
		if s.FWMark != 0 {
			v.errorf(pp, "a fwmark service has no port, and DR cannot remap ports: remove it")
		} else {
			v.errorf(pp, "DR cannot remap ports: real port %d differs from service port %d", r.Port, s.Port)
		}
	}
	wp := joinPath(path, "weight")
	switch {
	case r.Weight == nil:
		v.errorf(wp, "not set")
	case *r.Weight < 0 || *r.Weight > 65535:
		v.errorf(wp, "%d is out of range (0 to 65535)", *r.Weight)
	}
	if r.LowerThreshold != 0 {
		lp := joinPath(path, "lower_threshold")
		switch {
		case r.UpperThreshold == 0:
			v.errorf(lp, "needs upper_threshold")
		case r.LowerThreshold > r.UpperThreshold:
			v.errorf(lp, "%d exceeds upper_threshold %d", r.LowerThreshold, r.UpperThreshold)
		}
	}
	if r.HealthCheck != nil {
		v.check(r.HealthCheck, s, svcPath, joinPath(path, "health_check"))
	}
	return ok
}
