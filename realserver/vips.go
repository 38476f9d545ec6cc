package realserver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// labelSuffix marks the IPv4 VIPs the agent adds: the label is the
// interface name (the kernel requires it as prefix) plus this suffix,
// "lo:dsrd".
const labelSuffix = ":dsrd"

// ownLabel is the label of the IPv4 VIPs the agent adds to link.
func ownLabel(link string) string { return link + labelSuffix }

// vipPrefix is the host prefix of a VIP: /32 or /128.
func vipPrefix(v netip.Addr) netip.Prefix { return netip.PrefixFrom(v, v.BitLen()) }

// vipAddr is the address the agent adds for vip on lo: IPv4 with the
// agent's label, IPv6 with nodad (there is no one to detect a duplicate
// against on lo, and a tentative address accepts no traffic).
func vipAddr(lo string, vip netip.Addr) Addr {
	a := Addr{Link: lo, Prefix: vipPrefix(vip)}
	if vip.Is4() {
		a.Label = ownLabel(lo)
	} else {
		a.Flags = netkernel.FlagNoDAD
	}
	return a
}

// owned reports whether the agent added a: an IPv4 address on lo with the
// agent's label, or an IPv6 address on lo recorded in the state.
func owned(lo string, a Addr, st *state) bool {
	if a.Link != lo {
		return false
	}
	if a.Prefix.Addr().Is4() {
		return a.Label == ownLabel(lo)
	}
	return st.ownsAddr(a.Prefix)
}

// addrResult is what applyAddrs did.
type addrResult struct {
	added, removed []netip.Prefix
	// foreign are VIPs already on lo that the agent did not add: left as
	// they are, neither adopted nor removed.
	foreign []netip.Addr
}

// applyAddrs puts every VIP on lo that is not there, then removes the
// addresses the agent added earlier for VIPs no longer configured (adds
// before deletes). An IPv6 VIP is recorded in st, and st saved, before it
// is added, so a crash cannot leave an address of the agent's that the
// next run would not recognise. Addresses the agent did not add are never
// touched.
func applyAddrs(k Kernel, lo string, vips []netip.Addr, addrs []Addr, st *state, save func() error) (addrResult, error) {
	var res addrResult
	onLo := map[netip.Addr][]Addr{}
	for _, a := range addrs {
		if a.Link == lo {
			onLo[a.Prefix.Addr()] = append(onLo[a.Prefix.Addr()], a)
		}
	}
	desired := map[netip.Addr]bool{}
	for _, vip := range vips {
		desired[vip] = true
		if present := onLo[vip]; len(present) > 0 {
			if !slices.ContainsFunc(present, func(a Addr) bool { return owned(lo, a, st) }) {
				res.foreign = append(res.foreign, vip)
			}
			continue
		}
		a := vipAddr(lo, vip)
		if vip.Is6() && !st.ownsAddr(a.Prefix) {
			st.addAddr(a.Prefix)
			if err := save(); err != nil {
				st.removeAddr(a.Prefix)
				return res, fmt.Errorf("record ownership of %s: %w", a.Prefix, err)
			}
		}
		if err := k.AddAddr(a); err != nil {
			return res, err
		}
		res.added = append(res.added, a.Prefix)
	}

	stateChanged := false
	for _, a := range addrs {
		if !owned(lo, a, st) || desired[a.Prefix.Addr()] {
			continue
		}
		if err := k.DelAddr(Addr{Link: lo, Prefix: a.Prefix, Label: a.Label}); err != nil {
			return res, err
		}
		res.removed = append(res.removed, a.Prefix)
		if a.Prefix.Addr().Is6() {
			st.removeAddr(a.Prefix)
			stateChanged = true
		}
	}
	// Forget IPv6 VIPs that are neither configured nor on lo any more.
	for _, p := range slices.Clone(st.Addresses) {
		if !desired[p.Addr()] && len(onLo[p.Addr()]) == 0 {
			st.removeAddr(p)
			stateChanged = true
		}
	}
	if stateChanged {
		if err := save(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// removeOwnedAddrs removes every address the agent added to lo, configured
// or not, and forgets them in st. Addresses that fail to go stay recorded.
func removeOwnedAddrs(k Kernel, lo string, addrs []Addr, st *state) ([]netip.Prefix, error) {
	var (
		removed []netip.Prefix
		failed  = map[netip.Prefix]bool{}
		errs    []error
	)
	for _, a := range addrs {
		if !owned(lo, a, st) {
			continue
		}
		if err := k.DelAddr(Addr{Link: lo, Prefix: a.Prefix, Label: a.Label}); err != nil {
			errs = append(errs, err)
			failed[a.Prefix] = true
			continue
		}
		removed = append(removed, a.Prefix)
	}
	st.Addresses = slices.DeleteFunc(st.Addresses, func(p netip.Prefix) bool { return !failed[p] })
	return removed, errors.Join(errs...)
}
