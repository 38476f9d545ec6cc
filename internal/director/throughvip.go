package director

import (
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
)

// A check through the VIP (health_check.through_vip) reaches its real the
// way client traffic does. Every director holds, for each such real, an
// IPVS firewall-mark service of its own whose only destination is that
// real, with the real's forwarding method; the check is addressed to the
// VIP and the service's (or the check's) port, and its sockets carry the
// mark (SO_MARK). IPVS takes locally sent packets in its LOCAL_OUT hook
// and forwards them to the real exactly as it forwards a client's: only
// the destination MAC is rewritten. A real that does not hold the VIP on
// lo, answers ARP for it or filters it fails the check, while a check of
// its own address would pass.
//
// The check's source is the director's address toward the real
// (healthcheck.Spec.SourceToward), never the VIP: on the director holding
// the VIP the kernel would pick the VIP itself, and the real's reply to
// the VIP would stay on the real. The real's reply comes from the VIP to
// that address; the director holding an IPv4 VIP drops it as a martian
// (a local source address from outside) unless accept_local is set, which
// dsrd does while such checks exist (checkSysctls). A director needs a
// route to the VIP for the socket to connect (any route: IPVS forwards the
// packet before the route's next hop is used; the default route is
// enough). Verified in the lab VM (kernel 6.1): docs/config.md, "Checks
// through the VIP".

// checkMarkBase and checkMarkSpan are the firewall marks dsrd takes for
// checks through the VIP: 0xd5d00000 to 0xd5d0ffff. A mark is derived
// from the check's service and real, so a real keeps its mark (and its
// IPVS service) across configuration changes that do not touch it; a
// configured fwmark service's mark is never taken.
const (
	checkMarkBase uint32 = 0xd5d00000
	checkMarkSpan uint32 = 1 << 16
)

// throughVIP reports whether c is a check through the VIP.
func throughVIP(c *config.HealthCheck) bool {
	return c != nil && c.Type != config.CheckNone && c.ThroughVIP
}

// realCheck returns the check that applies to real r of svc: its own,
// else the service's.
func realCheck(svc *config.Service, r *config.Real) *config.HealthCheck {
	if r.HealthCheck != nil {
		return r.HealthCheck
	}
	return svc.HealthCheck
}

// checkMarks assigns a firewall mark to every real checked through the
// VIP in services, by its health check key. The marks are a pure function
// of the services: every caller given the same configuration gets the
// same marks. Keys are taken in order; each starts at the hash of its key
// and takes the next free mark (validation bounds them to
// config.MaxThroughVIPChecks, far fewer than checkMarkSpan).
func checkMarks(services []config.Service) map[healthcheck.Key]uint32 {
	taken := map[uint32]bool{}
	var keys []healthcheck.Key
	for i := range services {
		svc := &services[i]
		if svc.FWMark != 0 {
			taken[svc.FWMark] = true
		}
		hs := healthcheck.Service{Key: svc.Key(), Port: svc.Port}
		for j := range svc.Reals {
			r := &svc.Reals[j]
			if throughVIP(realCheck(svc, r)) {
				keys = append(keys, healthcheck.RealKey(hs, healthcheck.Real{Address: r.Address, Port: r.Port}))
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(a, b healthcheck.Key) int { return strings.Compare(a.String(), b.String()) })
	keys = slices.Compact(keys)
	marks := make(map[healthcheck.Key]uint32, len(keys))
	for _, k := range keys {
		h := fnv.New32a()
		_, _ = h.Write([]byte(k.String()))
		off := h.Sum32() % checkMarkSpan
		for n := uint32(0); n < checkMarkSpan; n++ {
			m := checkMarkBase + (off+n)%checkMarkSpan
			if !taken[m] {
				taken[m] = true
				marks[k] = m
				break
			}
		}
	}
	return marks
}

// throughVIPSpec returns spec made a check through vip to real with mark:
// addressed to the VIP (the port stays the check's or the service's),
// marked, and sent from the director's address toward the real.
func throughVIPSpec(spec *healthcheck.Spec, vip netip.Addr, real netip.Addr, mark uint32) *healthcheck.Spec {
	if spec == nil {
		return nil
	}
	cp := *spec
	cp.Address = vip
	cp.Mark = mark
	cp.SourceToward = real
	return &cp
}

// checkService is the IPVS service of a check through the VIP: the
// firewall mark of the check, in the VIP's family, whose one destination
// is the real (port 0: the packet keeps its port, as DR needs), at weight
// 1 whatever the real's health or admin state, with the forwarding method
// client traffic to the real uses. Round robin over one destination; no
// persistence; removed at once when no longer wanted.
func checkService(vip netip.Addr, real netip.Addr, mark uint32, fwd ipvs.Forward) ipvs.Service {
	s := ipvs.Service{Key: ipvs.FWMarkKey(ipvs.FamilyOf(vip.Unmap()), mark), Scheduler: "rr"}
	d := ipvs.NewDestination(real.Unmap(), 0, 1)
	d.Forward = fwd
	s.Put(d)
	return s
}

// checkServices returns the IPVS services of svc's checks through the
// VIP, with marks as checkMarks assigned them.
func checkServices(svc *config.Service, marks map[healthcheck.Key]uint32) []ipvs.Service {
	if len(marks) == 0 || !svc.VIP.IsValid() {
		return nil
	}
	var out []ipvs.Service
	hs := healthcheck.Service{Key: svc.Key(), Port: svc.Port}
	for j := range svc.Reals {
		r := &svc.Reals[j]
		if !throughVIP(realCheck(svc, r)) {
			continue
		}
		m, ok := marks[healthcheck.RealKey(hs, healthcheck.Real{Address: r.Address, Port: r.Port})]
		if !ok {
			continue
		}
		out = append(out, checkService(svc.VIP, r.Address, m, ipvs.ForwardDR))
	}
	return out
}

// checkSysctls are what checks through an IPVS VIP need on a director:
// the real answers from the VIP, a local address on the director that
// holds it, which the kernel drops as a martian unless accept_local is set
// (the kernel takes "all" or the interface's; IPv6 has no such check).
// Set while any IPv4 check goes through the VIP; not undone after.
var checkSysctls = []ipvs.Sysctl{
	{Family: "net.ipv4.conf.all", Name: "accept_local", Value: "1", Why: "replies to checks through an IPv4 VIP come from the VIP, a local address on the director that holds it"},
}

// needsCheckSysctls reports whether any IPv4 check goes through the VIP.
func needsCheckSysctls(services []config.Service) bool {
	for i := range services {
		svc := &services[i]
		if !svc.VIP.Unmap().Is4() {
			continue
		}
		for j := range svc.Reals {
			if throughVIP(realCheck(svc, &svc.Reals[j])) {
				return true
			}
		}
	}
	return false
}
