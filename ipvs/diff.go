package ipvs

import (
	"fmt"
	"slices"
)

// OpKind is the kind of a kernel operation.
type OpKind uint8

// The operation kinds, in the order Diff emits them.
const (
	OpAddService OpKind = iota + 1
	OpUpdateService
	OpAddDest
	OpUpdateDest
	OpDelDest
	OpDelService
)

// String returns a stable name for logs: add-service, update-service,
// add-dest, update-dest, del-dest, del-service.
func (k OpKind) String() string {
	switch k {
	case OpAddService:
		return "add-service"
	case OpUpdateService:
		return "update-service"
	case OpAddDest:
		return "add-dest"
	case OpUpdateDest:
		return "update-dest"
	case OpDelDest:
		return "del-dest"
	case OpDelService:
		return "del-service"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// isDest reports whether the kind is a destination operation.
func (k OpKind) isDest() bool { return k == OpAddDest || k == OpUpdateDest || k == OpDelDest }

// Op is one kernel operation.
type Op struct {
	Kind OpKind
	// Reorder marks the destination operations that put an
	// order-sensitive service's destinations back in CanonicalOrder: the
	// deletion of a real the service keeps, its re-addition, and the
	// addition of the reals that must come after it (see Diff).
	Reorder bool
	// Service is the service's (normalised) attributes for service
	// operations, and carries the key of the service for destination
	// operations. Its Dests are not used.
	Service Service
	// Dest is the destination of destination operations.
	Dest Destination
}

// String prints the operation in ipvsadm syntax, e.g.
// "-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 1".
func (o Op) String() string {
	k := o.Service.Key
	switch o.Kind {
	case OpAddService:
		return serviceRule("-A", o.Service)
	case OpUpdateService:
		return serviceRule("-E", o.Service)
	case OpDelService:
		return "-D " + serviceName(k)
	case OpAddDest:
		return destRule("-a", k, o.Dest, true)
	case OpUpdateDest:
		return destRule("-e", k, o.Dest, true)
	case OpDelDest:
		return fmt.Sprintf("-d %s -r %s", serviceName(k), o.Dest.Key)
	}
	return o.Kind.String()
}

// Diff returns the operations that turn actual into desired, in this order:
// add services, update services, add destinations, update destinations,
// the reorder operations (delete, add, update destinations), delete
// destinations, delete services; within each group by service and
// destination in ipvsadm's order.
//
// Every service of desired is managed: created when missing, updated when
// its attributes differ, its destinations made exactly desired's. A service
// of actual that is not in desired is deleted only when managed reports it
// (nil manages nothing more): other services are foreign and never touched.
// Attributes are compared as the kernel holds them: desired is normalised
// (see Service), FlagHashed is ignored, the persistence timeout and netmask
// count only for persistent services, counters never. A change is always an
// update, never a delete and add, but for order:
//
// The destinations of a service whose desired scheduler is OrderSensitive
// (mh, sh, dh) must end up in the kernel in CanonicalOrder, so that every
// director maps a flow to the same real. The kernel only ever adds a
// destination after the others (the head of its list), so the reals that
// stay where they are form the longest start of the canonical order found,
// in order, in actual's KernelOrder; every desired real after that start is
// (re)added in canonical order, those the kernel holds deleted first. These
// operations are marked Reorder. A real added with a key above every other
// costs one add, as always; a real whose key sorts before k others costs
// its add plus k deletes and k adds (the reals after it). A service of
// actual whose KernelOrder is unknown is taken to be in order.
//
// A destination of an mh service desired at Weight 0 with a LastWeight is
// added at LastWeight, then updated to 0 (see Destination.LastWeight).
func Diff(actual, desired State, managed func(ServiceKey) bool) []Op {
	// Walking keys in order emits each group already sorted: sorting the
	// (large) operations afterwards costs more than the diff itself.
	var addS, updS, addD, updD, reDel, reAdd, reUpd, delD, delS []Op
	var dkeys []DestKey
	for _, k := range SortedKeys(desired) {
		d := desired[k].normalized()
		attrs := d.withoutDests()
		dkeys = sortedDestKeys(dkeys[:0], d.Dests)
		a, ok := actual[k]
		if !ok {
			addS = append(addS, Op{Kind: OpAddService, Service: attrs})
			for _, dk := range dkeys {
				addD, updD = appendAdd(addD, updD, attrs, d.Dests[dk], false)
			}
			continue
		}
		if !a.sameConfig(d) {
			updS = append(updS, Op{Kind: OpUpdateService, Service: attrs})
		}
		// dkeys[from:] are (re)added in canonical order by the reorder
		// operations; from is len(dkeys) when the order is right.
		from := len(dkeys)
		if OrderSensitive(d.Scheduler) && !inCanonicalOrder(a, dkeys) {
			if order := a.KernelOrder(); order != nil {
				from = reorderFrom(a, order, dkeys)
			}
		}
		kept := 0 // desired destinations the kernel has
		for i, dk := range dkeys {
			dd := d.Dests[dk]
			ad, ok := a.Dests[dk]
			switch {
			case i >= from:
				if ok {
					reDel = append(reDel, Op{Kind: OpDelDest, Service: attrs, Dest: ad, Reorder: true})
				}
				reAdd, reUpd = appendAdd(reAdd, reUpd, attrs, dd, true)
			case !ok:
				addD, updD = appendAdd(addD, updD, attrs, dd, false)
				continue
			case !ad.sameConfig(dd):
				updD = append(updD, Op{Kind: OpUpdateDest, Service: attrs, Dest: dd})
			}
			if ok {
				kept++
			}
		}
		if len(a.Dests) > kept { // the kernel has others: delete them
			for _, dk := range sortedDestKeys(nil, a.Dests) {
				if _, ok := d.Dests[dk]; !ok {
					delD = append(delD, Op{Kind: OpDelDest, Service: attrs, Dest: a.Dests[dk]})
				}
			}
		}
	}
	if managed != nil {
		var gone []ServiceKey
		for k := range actual {
			if _, ok := desired[k]; !ok && managed(k) {
				gone = append(gone, k)
			}
		}
		slices.SortFunc(gone, compareServiceKeys)
		for _, k := range gone {
			delS = append(delS, Op{Kind: OpDelService, Service: actual[k].withoutDests()})
		}
	}
	groups := [][]Op{addS, updS, addD, updD, reDel, reAdd, reUpd, delD, delS}
	n := 0
	for _, g := range groups {
		n += len(g)
	}
	ops := make([]Op, 0, n)
	for _, g := range groups {
		ops = append(ops, g...)
	}
	return ops
}

// reorderFrom returns the index in canon (a service's desired
// destinations in CanonicalOrder) from which they must be (re)added so
// that the kernel holds them in that order: the length of the longest
// start of canon that appears, in order, in the kernel's order, unless
// every desired real after that start is new to the kernel (then adding
// them, in order, is enough: len(canon)).
func reorderFrom(a Service, order, canon []DestKey) int {
	i := 0
	for _, k := range order {
		if i < len(canon) && k == canon[i] {
			i++
		}
	}
	for _, k := range canon[i:] {
		if _, ok := a.Dests[k]; ok {
			return i
		}
	}
	return len(canon)
}

// inCanonicalOrder reports, without allocating, that the kernel's service
// a holds the desired destinations canon in that order (or that its order
// is unknown) and that those it lacks come after those it has: then
// adding them is enough. False sends Diff to reorderFrom.
func inCanonicalOrder(a Service, canon []DestKey) bool {
	var last uint32
	missing := false
	for _, k := range canon {
		d, ok := a.Dests[k]
		switch {
		case !ok:
			missing = true
		case d.Position == 0:
			return true // unknown
		case missing || d.Position <= last:
			return false
		default:
			last = d.Position
		}
	}
	return true
}

// appendAdd appends to adds the operation that adds dd to the service
// attrs and, for an mh destination at weight 0 with a LastWeight, adds it
// at LastWeight and appends to upds the update that sets it to 0.
func appendAdd(adds, upds []Op, attrs Service, dd Destination, reorder bool) ([]Op, []Op) {
	if dd.Weight == 0 && dd.LastWeight > 0 && attrs.Scheduler == "mh" {
		first := dd
		first.Weight = int(dd.LastWeight)
		adds = append(adds, Op{Kind: OpAddDest, Service: attrs, Dest: first, Reorder: reorder})
		return adds, append(upds, Op{Kind: OpUpdateDest, Service: attrs, Dest: dd, Reorder: reorder})
	}
	return append(adds, Op{Kind: OpAddDest, Service: attrs, Dest: dd, Reorder: reorder}), upds
}

// sortedDestKeys appends the keys of m to buf in ipvsadm's order.
func sortedDestKeys(buf []DestKey, m map[DestKey]Destination) []DestKey {
	for k := range m {
		buf = append(buf, k)
	}
	slices.SortFunc(buf, compareDestKeys)
	return buf
}

// applyOp records a successful operation in st, which it changes.
func applyOp(st State, o Op) {
	k := o.Service.Key
	switch o.Kind {
	case OpAddService:
		s := o.Service.withoutDests()
		s.Dests = map[DestKey]Destination{}
		s.Flags |= FlagHashed
		st[k] = s
	case OpUpdateService:
		s := o.Service.withoutDests()
		s.Flags |= FlagHashed
		old := st[k]
		s.Dests, s.Stats = old.Dests, old.Stats
		if s.Dests == nil {
			s.Dests = map[DestKey]Destination{}
		}
		st[k] = s
	case OpDelService:
		delete(st, k)
	case OpAddDest, OpUpdateDest:
		s := st[k]
		if s.Dests == nil {
			s.Dests = map[DestKey]Destination{}
		}
		d := o.Dest
		if old, ok := s.Dests[d.Key]; ok && o.Kind == OpUpdateDest {
			d.ActiveConns, d.InactiveConns, d.Stats = old.ActiveConns, old.InactiveConns, old.Stats
			d.Position = old.Position
		} else {
			d.ActiveConns, d.InactiveConns, d.Stats = 0, 0, Stats{}
			d.Position = nextPosition(s)
		}
		s.Dests[d.Key] = d
		st[k] = s
	case OpDelDest:
		if s, ok := st[k]; ok {
			delete(s.Dests, o.Dest.Key)
		}
	}
}

// nextPosition returns the Position of a destination added to s, which the
// kernel puts after the others: 0 (unknown) when theirs is.
func nextPosition(s Service) uint32 {
	var last uint32
	for _, d := range s.Dests {
		if d.Position == 0 {
			return 0
		}
		last = max(last, d.Position)
	}
	return last + 1
}
