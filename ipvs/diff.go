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
// delete destinations, delete services; within each group by service and
// destination in ipvsadm's order.
//
// Every service of desired is managed: created when missing, updated when
// its attributes differ, its destinations made exactly desired's. A service
// of actual that is not in desired is deleted only when managed reports it
// (nil manages nothing more): other services are foreign and never touched.
// Attributes are compared as the kernel holds them: desired is normalised
// (see Service), FlagHashed is ignored, the persistence timeout and netmask
// count only for persistent services, counters never. A change is always an
// update, never a delete and add.
func Diff(actual, desired State, managed func(ServiceKey) bool) []Op {
	// Walking keys in order emits each group already sorted: sorting the
	// (large) operations afterwards costs more than the diff itself.
	var addS, updS, addD, updD, delD, delS []Op
	var dkeys []DestKey
	for _, k := range SortedKeys(desired) {
		d := desired[k].normalized()
		attrs := d.withoutDests()
		dkeys = sortedDestKeys(dkeys[:0], d.Dests)
		a, ok := actual[k]
		if !ok {
			addS = append(addS, Op{Kind: OpAddService, Service: attrs})
			for _, dk := range dkeys {
				addD = append(addD, Op{Kind: OpAddDest, Service: attrs, Dest: d.Dests[dk]})
			}
			continue
		}
		if !a.sameConfig(d) {
			updS = append(updS, Op{Kind: OpUpdateService, Service: attrs})
		}
		kept := 0 // desired destinations the kernel has
		for _, dk := range dkeys {
			dd := d.Dests[dk]
			ad, ok := a.Dests[dk]
			switch {
			case !ok:
				addD = append(addD, Op{Kind: OpAddDest, Service: attrs, Dest: dd})
				continue
			case !ad.sameConfig(dd):
				updD = append(updD, Op{Kind: OpUpdateDest, Service: attrs, Dest: dd})
			}
			kept++
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
	ops := make([]Op, 0, len(addS)+len(updS)+len(addD)+len(updD)+len(delD)+len(delS))
	for _, g := range [][]Op{addS, updS, addD, updD, delD, delS} {
		ops = append(ops, g...)
	}
	return ops
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
		} else {
			d.ActiveConns, d.InactiveConns, d.Stats = 0, 0, Stats{}
		}
		s.Dests[d.Key] = d
		st[k] = s
	case OpDelDest:
		if s, ok := st[k]; ok {
			delete(s.Dests, o.Dest.Key)
		}
	}
}
