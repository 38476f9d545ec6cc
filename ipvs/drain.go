package ipvs

import (
	"log/slog"
	"time"
)

// drainer remembers since when each destination removed from the desired
// state, and each removed service, has been draining. It is used under the
// Reconciler's lock.
//
// A removed destination (in the kernel, neither in the desired service's
// Dests nor in its Absent) is kept at weight 0 (no new connections,
// established ones continue) until its active plus inactive connections
// reach 0 or its service's DrainTimeout has passed; then the diff deletes
// it. An absent destination (Service.Absent: down with on_down remove,
// disabled) is not drained: the diff deletes it at once, and a drain it
// was in ends. A removed service is drained the same way as a whole: all
// its destinations at weight 0 until none has a connection or the
// service's last DrainTimeout has passed. A weight of 0 in the desired
// state (a real that failed its checks) is an ordinary weight, not a drain.
type drainer struct {
	dests map[ServiceKey]map[DestKey]time.Time
	svcs  map[ServiceKey]time.Time
}

// plan returns the state to program: desired plus, at weight 0, what still
// drains, and how many destinations and services are draining. actual must
// have the destinations of every service of desired and removed; removed
// holds the last desired version of owned services no longer desired.
func (dr *drainer) plan(log *slog.Logger, actual, desired State, removed map[ServiceKey]Service, now time.Time) (State, int) {
	if dr.dests == nil {
		dr.dests, dr.svcs = map[ServiceKey]map[DestKey]time.Time{}, map[ServiceKey]time.Time{}
	}
	eff := make(State, len(desired)+len(removed))
	draining := 0
	for k, d := range desired {
		s, n := dr.planDesired(log, k, d, actual, now)
		eff[k] = s
		draining += n
	}
	for k, last := range removed {
		if s, ok := dr.planRemoved(log, k, last, actual, now); ok {
			eff[k] = s
			draining++
		}
	}
	return eff, draining
}

// planDesired returns desired service d plus its draining destinations at weight 0, and their number.
func (dr *drainer) planDesired(log *slog.Logger, k ServiceKey, d Service, actual State, now time.Time) (Service, int) {
	delete(dr.svcs, k)
	a, ok := actual[k]
	if !ok {
		delete(dr.dests, k)
		return d, 0
	}
	dr.endDestDrains(k, d, a)
	draining := 0
	cloned := false
	for dk, ad := range a.Dests {
		if _, want := d.Dests[dk]; want {
			continue
		}
		if !dr.keepDest(log, k, d, dk, ad, now) {
			continue
		}
		if !cloned {
			d = d.Clone()
			cloned = true
		}
		kept := ad
		kept.Weight = 0
		d.Put(kept)
		draining++
	}
	if len(dr.dests[k]) == 0 {
		delete(dr.dests, k)
	}
	return d, draining
}

// endDestDrains ends the drains of k's destinations desired again (in d) or gone from the kernel (a).
func (dr *drainer) endDestDrains(k ServiceKey, d, a Service) {
	started := dr.dests[k]
	for dk := range started {
		if _, want := d.Dests[dk]; want {
			delete(started, dk) // back in the desired state: drain over
		} else if _, in := a.Dests[dk]; !in {
			delete(started, dk) // gone from the kernel
		}
	}
}

// keepDest decides for dk, in the kernel as ad but not desired in k: true drains it, false deletes it.
func (dr *drainer) keepDest(log *slog.Logger, k ServiceKey, d Service, dk DestKey, ad Destination, now time.Time) bool {
	if why, absent := d.Absent[dk]; absent {
		delete(dr.dests[k], dk) // the diff deletes it
		log.Info("ipvs deleting real without drain", "service", k.String(), "real", dk.String(),
			"reason", why.String(), "conns", ad.Conns())
		return false
	}
	started := dr.dests[k]
	if started == nil {
		started = map[DestKey]time.Time{}
		dr.dests[k] = started
	}
	start, seen := started[dk]
	if !seen {
		start = now
		started[dk] = now
	}
	if ad.Conns() == 0 || now.Sub(start) >= d.DrainTimeout {
		delete(started, dk) // the diff deletes it
		return false
	}
	if !seen {
		log.Info("ipvs draining real", "service", k.String(), "real", dk.String(),
			"conns", ad.Conns(), "drain_timeout", d.DrainTimeout)
	}
	return true
}

// planRemoved returns removed service k drained at weight 0, or false when the diff is to delete it.
func (dr *drainer) planRemoved(log *slog.Logger, k ServiceKey, last Service, actual State, now time.Time) (Service, bool) {
	delete(dr.dests, k)
	a, ok := actual[k]
	if !ok {
		delete(dr.svcs, k)
		return Service{}, false
	}
	start, seen := dr.svcs[k]
	if !seen {
		start = now
		dr.svcs[k] = now
	}
	var conns uint64
	for _, ad := range a.Dests {
		conns += ad.Conns()
	}
	if conns == 0 || now.Sub(start) >= last.DrainTimeout {
		delete(dr.svcs, k) // the diff deletes it
		return Service{}, false
	}
	if !seen {
		log.Info("ipvs draining service", "service", k.String(), "conns", conns, "drain_timeout", last.DrainTimeout)
	}
	return drained(a, last.DrainTimeout), true
}

// drained returns a copy of service a with every destination at weight 0 and the given DrainTimeout.
func drained(a Service, timeout time.Duration) Service {
	s := a.Clone()
	s.DrainTimeout = timeout
	for dk, ad := range s.Dests {
		ad.Weight = 0
		s.Dests[dk] = ad
	}
	return s
}
