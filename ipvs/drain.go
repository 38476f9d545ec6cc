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
	for k, s := range desired {
		eff[k] = s
	}
	draining := 0

	for k, d := range desired {
		delete(dr.svcs, k)
		a, ok := actual[k]
		if !ok {
			delete(dr.dests, k)
			continue
		}
		started := dr.dests[k]
		for dk := range started {
			if _, want := d.Dests[dk]; want {
				delete(started, dk) // back in the desired state: drain over
			} else if _, in := a.Dests[dk]; !in {
				delete(started, dk) // gone from the kernel
			}
		}
		cloned := false
		for dk, ad := range a.Dests {
			if _, want := d.Dests[dk]; want {
				continue
			}
			if why, absent := d.Absent[dk]; absent {
				delete(started, dk) // the diff deletes it
				log.Info("ipvs deleting real without drain", "service", k.String(), "real", dk.String(),
					"reason", why.String(), "conns", ad.Conns())
				continue
			}
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
				continue
			}
			if !seen {
				log.Info("ipvs draining real", "service", k.String(), "real", dk.String(),
					"conns", ad.Conns(), "drain_timeout", d.DrainTimeout)
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
		if cloned {
			eff[k] = d
		}
		if len(started) == 0 {
			delete(dr.dests, k)
		}
	}

	for k, last := range removed {
		delete(dr.dests, k)
		a, ok := actual[k]
		if !ok {
			delete(dr.svcs, k)
			continue
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
			continue
		}
		if !seen {
			log.Info("ipvs draining service", "service", k.String(), "conns", conns, "drain_timeout", last.DrainTimeout)
		}
		s := a.Clone()
		s.DrainTimeout = last.DrainTimeout
		for dk, ad := range s.Dests {
			ad.Weight = 0
			s.Dests[dk] = ad
		}
		eff[k] = s
		draining++
	}
	return eff, draining
}
