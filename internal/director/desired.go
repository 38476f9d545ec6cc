package director

import (
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// healthView is what the desired-state computation needs of the health
// checks: the input of one real's check, whose parameters are p, if it has
// one.
type healthView func(k healthcheck.Key, p healthcheck.Params) (healthInput, bool)

// healthInput is all the desired state takes from one real's check status:
// its state, the reason of its last result (a realserver agent asking for
// a drain) and whether it has reached its first verdict (until then an
// adopted real keeps its kernel weight). Any of them can change on any run,
// without a change of state: the reconcile loop recomputes whenever the
// input of a check differs from the one the last computation used (see
// Director.checkRan), not only on state changes.
type healthInput struct {
	State   healthcheck.State
	Reason  healthcheck.Reason
	Settled bool
}

// inputOf is the input of a check with parameters p in status s.
func inputOf(s healthcheck.Status, p healthcheck.Params) healthInput {
	return healthInput{State: s.State, Reason: s.Last.Reason, Settled: settled(s, p)}
}

// serviceView is one service's translation and its desired destinations
// and status, kept for dsrd status.
type serviceView struct {
	*serviceSpec
	Desired healthcheck.Desired
	// Disagrees: a bgp service one of whose reals this director's own
	// check sees down while the cluster's verdict says up.
	Disagrees bool
}

// desiredState maps the cluster's services, the local health view and the
// admin state to the IPVS state this director should hold (desiredOf of
// the spec's translation, without verdicts).
func desiredState(spec raft.Spec, health healthView, admin map[raft.RealRef]raft.Admin, actual ipvs.State) (ipvs.State, []serviceView, error) {
	st, views, _, err := desiredStateWith(spec, health, admin, nil, actual)
	return st, views, err
}

// desiredStateWith is desiredOf of the spec's translation.
func desiredStateWith(spec raft.Spec, health healthView, admin map[raft.RealRef]raft.Admin, verdicts map[raft.RealRef]raft.HealthVerdict, actual ipvs.State) (ipvs.State, []serviceView, []api.RealView, error) {
	services, err := translateSpec(spec)
	if err != nil {
		return nil, nil, nil, err
	}
	st, views, own := desiredOf(services, health, admin, verdicts, actual)
	return st, views, own, nil
}

// desiredOf maps the translated services, the local health view and the
// admin state to the IPVS state this director should hold. A configured
// real the policy keeps out (down with on_down remove, disabled) is named
// in its service's Absent, so the reconciler deletes it at once; only a
// real that left the configuration is drained. actual is the kernel's
// state as last read: a real that is in the kernel and whose check has
// not reached its first verdict keeps its kernel weight (and is not taken
// out for its initial state), so a restarted director adopts its entries
// without setting them to weight 0 or deleting them for the rise period
// (no blip on restart).
//
// verdicts are the cluster's health verdicts: the reals of a service on a
// bgp VIP, which every director serves at once, follow the cluster's
// verdict where there is one (so every director holds the same
// destinations and weights, and mh sends a flow to the same real through
// any of them); every other real, and one without a verdict yet, follows
// this director's own checks. own is this director's own view of the bgp
// services' reals whose checks have reached a verdict, for the leader's
// aggregation (verdict.go), sorted by reference.
func desiredOf(services []serviceSpec, health healthView, admin map[raft.RealRef]raft.Admin, verdicts map[raft.RealRef]raft.HealthVerdict, actual ipvs.State) (st ipvs.State, views []serviceView, own []api.RealView) {
	st = make(ipvs.State, len(services))
	views = make([]serviceView, 0, len(services))
	for i := range services {
		svc := &services[i]
		key := svc.Key
		disagrees := false
		reals := make(map[healthcheck.Key]healthcheck.RealState, len(svc.checks))
		pending := map[healthcheck.Key]bool{}
		for j, hk := range svc.checks {
			ref := svc.refs[j]
			rs := healthcheck.RealState{Admin: adminOf(admin[ref])}
			if in, ok := health(hk, svc.params[j]); ok {
				rs.Health, rs.Reason = in.State, in.Reason
				pending[hk] = !in.Settled
				if svc.anycast && in.Settled && (in.State == healthcheck.StateUp || in.State == healthcheck.StateDown) {
					own = append(own, api.RealView{Ref: ref, State: healthOf(in.State), Reason: in.Reason.String()})
				}
				if v, ok := verdicts[ref]; svc.anycast && ok {
					if in.Settled && in.State == healthcheck.StateDown && v.State == raft.HealthUp {
						disagrees = true
					}
					rs.Health, rs.Reason = verdictState(v)
					pending[hk] = false
				}
			}
			reals[hk] = rs
		}
		want := healthcheck.Desire(svc.Health, reals)

		s := svc.base
		s.Dests = make(map[ipvs.DestKey]ipvs.Destination, len(want.Reals))
		old, hadOld := actual[key]
		// A real at weight 0 keeps its share of mh's table only when the
		// kernel first saw it at its configured weight (LastWeight): one
		// added at 0 gets no slots, and directors that saw it up would
		// map flows differently from one that did not.
		configured := make(map[netip.AddrPort]int, len(svc.Health.Reals))
		for _, r := range svc.Health.Reals {
			w := healthcheck.DefaultWeight
			if r.Weight != nil {
				w = min(max(*r.Weight, 0), math.MaxUint16)
			}
			configured[netip.AddrPortFrom(r.Address, r.Port)] = w
		}
		for _, dr := range want.Reals {
			port := dr.Port
			if key.IsFWMark() {
				port = 0
			}
			d := ipvs.NewDestination(dr.Address, port, dr.Weight)
			d.UpperThreshold, d.LowerThreshold = dr.UpperThreshold, dr.LowerThreshold
			if w := configured[netip.AddrPortFrom(dr.Address, dr.Port)]; dr.Weight == 0 && !dr.Sorry && w > 0 {
				d.LastWeight = uint16(w)
			}
			if hadOld && !dr.Sorry && pending[healthcheck.Key{Service: svc.Key, Real: netip.AddrPortFrom(dr.Address, dr.Port)}] {
				if cur, ok := old.Dests[d.Key]; ok {
					d.Weight = cur.Weight
				}
			}
			s.Put(d)
		}
		for _, ar := range want.Absent {
			port := ar.Port
			if key.IsFWMark() {
				port = 0
			}
			dk := ipvs.NewDestination(ar.Address, port, 0).Key
			if hadOld && ar.Reason == healthcheck.AbsentDown && pending[healthcheck.Key{Service: svc.Key, Real: netip.AddrPortFrom(ar.Address, ar.Port)}] {
				if cur, ok := old.Dests[dk]; ok {
					// Down only by its initial state: adopted as it is,
					// like a present real, until its check has a verdict.
					s.Put(cur)
					continue
				}
			}
			s.SetAbsent(dk, absenceOf(ar.Reason))
		}
		st.Put(s)
		for _, cs := range svc.checkServices {
			st.Put(cs)
		}
		views = append(views, serviceView{serviceSpec: svc, Desired: want, Disagrees: disagrees})
	}
	slices.SortFunc(own, func(a, b api.RealView) int { return strings.Compare(a.Ref.String(), b.Ref.String()) })
	return st, views, own
}

// healthOf is the replicated form of a check's state (up or down).
func healthOf(s healthcheck.State) raft.Health {
	if s == healthcheck.StateUp {
		return raft.HealthUp
	}
	return raft.HealthDown
}

// verdictState is the policy's input of a cluster verdict: its state, and
// its reason where this binary knows the name (a realserver agent's
// "draining" must drain here as it does on the director that saw it).
func verdictState(v raft.HealthVerdict) (healthcheck.State, healthcheck.Reason) {
	st := healthcheck.StateDown
	if v.State == raft.HealthUp {
		st = healthcheck.StateUp
	}
	r, ok := healthcheck.ParseReason(v.Reason)
	if !ok {
		r = healthcheck.ReasonOK
		if st == healthcheck.StateDown {
			r = healthcheck.ReasonError
		}
	}
	return st, r
}

// settled reports whether a check with parameters p has reached its first
// verdict: it left its initial state, or ran often enough that staying
// there is a verdict.
func settled(s healthcheck.Status, p healthcheck.Params) bool {
	if s.State == healthcheck.StateUnknown {
		return false
	}
	if s.State != p.Initial {
		return true
	}
	return s.Runs >= uint64(max(p.Rise, p.Fall, 1))
}

// absenceOf converts the policy's reason for an absent real to IPVS's.
func absenceOf(r healthcheck.AbsentReason) ipvs.Absence {
	if r == healthcheck.AbsentDisabled {
		return ipvs.AbsentDisabled
	}
	return ipvs.AbsentDown
}

// adminOf converts the replicated admin state to the policy's.
func adminOf(a raft.Admin) healthcheck.Admin {
	switch a {
	case raft.AdminDrained:
		return healthcheck.AdminDrained
	case raft.AdminDisabled:
		return healthcheck.AdminDisabled
	}
	return healthcheck.AdminEnabled
}

// resyncInterval bounds how long a change made behind dsrd's back (an
// operator's ipvsadm -d on a managed entry) survives: the next full read
// of the kernel puts it back.
const resyncInterval = 30 * time.Second

// realRef is the replicated reference of real r of service s.
func realRef(s *config.Service, r *config.Real) raft.RealRef {
	return raft.RealRef{Service: s.Key(), Address: r.Address}
}
