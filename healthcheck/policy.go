package healthcheck

import (
	"net/netip"
	"slices"
)

// Admin is an operator's setting for a real server, kept in the cluster
// state and applied on top of its health.
type Admin uint8

// The admin states.
const (
	// AdminEnabled is the default: the real serves when healthy.
	AdminEnabled Admin = iota
	// AdminDrained keeps the real with weight 0: no new connections,
	// established ones continue.
	AdminDrained
	// AdminDisabled takes the real out of IPVS.
	AdminDisabled
)

// String returns "enabled", "drained" or "disabled".
func (a Admin) String() string {
	switch a {
	case AdminDrained:
		return "drained"
	case AdminDisabled:
		return "disabled"
	}
	return "enabled"
}

// RealState is what the policy knows of one real server.
type RealState struct {
	// Health is the rise/fall state (Status.State). StateUnknown, or no
	// entry at all, means the check's initial state. Ignored for reals
	// without a health check: they are always up.
	Health State
	// Reason is the reason of the real's last check result
	// (Status.Last.Reason). ReasonDraining, the realserver agent asking to
	// be drained, gives weight 0 at once, whatever the state and on_down.
	Reason Reason
	// Admin is the operator's setting.
	Admin Admin
}

// RealState returns what the policy needs of a check's status, with the
// real's admin state.
func (st Status) RealState(admin Admin) RealState {
	return RealState{Health: st.State, Reason: st.Last.Reason, Admin: admin}
}

// DesiredReal is one IPVS destination the policy wants for a service.
type DesiredReal struct {
	Address netip.Addr
	Port    uint16
	// Weight is the IPVS weight: 0 takes no new connections.
	Weight int
	// UpperThreshold and LowerThreshold are the real's connection
	// thresholds, copied from its Real.
	UpperThreshold, LowerThreshold uint32
	// Sorry marks the sorry server.
	Sorry bool
}

// AbsentReason says why a configured real is not among a service's
// destinations.
type AbsentReason uint8

// The absent reasons.
const (
	// AbsentDown is a real that is down where the service removes down
	// reals (on_down: remove).
	AbsentDown AbsentReason = iota + 1
	// AbsentDisabled is a real an operator disabled.
	AbsentDisabled
)

// String returns "down" or "disabled".
func (r AbsentReason) String() string {
	switch r {
	case AbsentDown:
		return "down"
	case AbsentDisabled:
		return "disabled"
	}
	return "present"
}

// AbsentReal is a configured real the policy keeps out of IPVS, and why.
// It is taken out at once, not drained: that is only for a real removed
// from the configuration.
type AbsentReal struct {
	Address netip.Addr
	Port    uint16
	Reason  AbsentReason
}

// ServiceReason says why a service is down.
type ServiceReason uint8

// The service reasons.
const (
	// ServiceOK is a service with at least Quorum healthy reals.
	ServiceOK ServiceReason = iota
	// ServiceNoReals is a service with no real configured.
	ServiceNoReals
	// ServiceAllDown is a service with no healthy real.
	ServiceAllDown
	// ServiceBelowQuorum is a service with some, but fewer than Quorum,
	// healthy reals.
	ServiceBelowQuorum
)

// String returns the reason's stable name.
func (r ServiceReason) String() string {
	switch r {
	case ServiceNoReals:
		return "no reals"
	case ServiceAllDown:
		return "all reals down"
	case ServiceBelowQuorum:
		return "below quorum"
	}
	return "ok"
}

// MarshalText encodes the reason as its name.
func (r ServiceReason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// ServiceStatus is a service's health as the policy sees it.
type ServiceStatus struct {
	// Up is true when at least Quorum reals are healthy.
	Up bool
	// Reason says why the service is down; ServiceOK when up.
	Reason ServiceReason
	// Healthy counts the reals that are up, enabled and not draining;
	// Quorum is the service's quorum (1 when not configured).
	Healthy, Quorum int
	// Sorry reports whether the sorry server is in the destinations.
	Sorry bool
}

// Desired is what the policy wants in IPVS for one service.
type Desired struct {
	// Reals are the destinations, in configuration order, the sorry
	// server last.
	Reals []DesiredReal
	// Absent are the configured reals not in Reals, in configuration
	// order, with the reason.
	Absent []AbsentReal
	Status ServiceStatus
}

// DefaultWeight is the weight of a healthy real without a configured weight.
const DefaultWeight = 1

// Desire maps a service and the states of its reals (keyed
// by RealKey) to the IPVS destinations and weights it should have:
//
//	admin     health / last reason        on_down   destination
//	disabled  any                         any       absent (disabled)
//	any       last reason draining        any       weight 0
//	any       down                        remove    absent (down)
//	any       down                        weight0   weight 0 (the default)
//	drained   up                          any       weight 0
//	enabled   up                          any       configured weight (1)
//
// Every configured real that is absent is listed in Absent with its
// reason, so that the caller can take it out at once rather than drain it
// as it drains a real removed from the configuration.
//
// A real is healthy when it is enabled, up and not draining. With no
// healthy real the sorry server, when configured, is added with weight 1
// on the service port; as soon as one real is healthy it is gone again.
//
// Fewer healthy reals than the service's quorum (1 when unset) mark the
// service down (Status), and nothing else: as keepalived does for
// quorum_down, the destinations stay as health and admin say. Removing the
// remaining healthy reals would only turn a degraded service into an
// outage; what to do about a service below quorum (alert, withdraw the
// VIP) is the caller's decision.
//
// Desire is pure: the same input always gives the same output.
func Desire(svc Service, reals map[Key]RealState) Desired {
	quorum := max(svc.Quorum, 1)
	out := Desired{Reals: make([]DesiredReal, 0, len(svc.Reals)+1)}
	healthy := 0
	for _, r := range svc.Reals {
		key := RealKey(svc, r)
		st := reals[key]
		up := realUp(r, st)
		draining := st.Reason == ReasonDraining && r.Check != nil
		if up && !draining && st.Admin == AdminEnabled {
			healthy++
		}
		weight, absent := realWeight(svc, r, st.Admin, up, draining)
		if absent != 0 {
			out.Absent = append(out.Absent, AbsentReal{Address: key.Real.Addr(), Port: key.Real.Port(), Reason: absent})
			continue
		}
		out.Reals = append(out.Reals, DesiredReal{
			Address:        key.Real.Addr(),
			Port:           key.Real.Port(),
			Weight:         weight,
			UpperThreshold: r.UpperThreshold,
			LowerThreshold: r.LowerThreshold,
		})
	}
	out.Status = ServiceStatus{Up: healthy >= quorum, Healthy: healthy, Quorum: quorum}
	switch {
	case out.Status.Up:
	case len(svc.Reals) == 0:
		out.Status.Reason = ServiceNoReals
	case healthy == 0:
		out.Status.Reason = ServiceAllDown
	default:
		out.Status.Reason = ServiceBelowQuorum
	}
	if healthy == 0 && svc.SorryServer.IsValid() {
		out.Status.Sorry = true
		sorry := netip.AddrPortFrom(svc.SorryServer.Unmap(), svc.Port)
		out.Reals = addSorry(out.Reals, sorry)
		// A sorry server that is also an absent real serves as the
		// sorry server: present, so not absent.
		out.Absent = slices.DeleteFunc(out.Absent, func(a AbsentReal) bool {
			return a.Address == sorry.Addr() && a.Port == sorry.Port()
		})
	}
	return out
}

// realUp reports whether real r counts as up: always without a health
// check, else its state, the check's initial state while unknown.
func realUp(r Real, st RealState) bool {
	if r.Check == nil {
		return true
	}
	if st.Health == StateUnknown {
		return ParamsFrom(r.Check).Initial == StateUp
	}
	return st.Health == StateUp
}

// realWeight applies the decision table of Desire to one real: its weight,
// or why it is absent.
func realWeight(svc Service, r Real, admin Admin, up, draining bool) (weight int, absent AbsentReason) {
	switch {
	case admin == AdminDisabled:
		return 0, AbsentDisabled
	case draining:
		return 0, 0
	case !up && svc.OnDown == DownRemove:
		return 0, AbsentDown
	case !up, admin == AdminDrained:
		return 0, 0
	}
	if r.Weight == nil {
		return DefaultWeight, 0
	}
	return min(max(*r.Weight, 0), 65535), 0
}

// addSorry adds the sorry server with weight 1, or turns the destination
// already at its address into it (IPVS cannot hold the same destination
// twice).
func addSorry(reals []DesiredReal, sorry netip.AddrPort) []DesiredReal {
	for i := range reals {
		if reals[i].Address == sorry.Addr() && reals[i].Port == sorry.Port() {
			reals[i].Weight, reals[i].Sorry = 1, true
			return reals
		}
	}
	return append(reals, DesiredReal{Address: sorry.Addr(), Port: sorry.Port(), Weight: 1, Sorry: true})
}
