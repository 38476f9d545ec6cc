package bgp

import (
	"fmt"
	"net/netip"
	"slices"
)

// checkPrefixes checks that every prefix is a host route (/32 or /128) of
// a plain IPv4 or IPv6 address and returns them as a set.
func checkPrefixes(prefixes []netip.Prefix) (map[netip.Prefix]struct{}, error) {
	set := make(map[netip.Prefix]struct{}, len(prefixes))
	for _, p := range prefixes {
		a := p.Addr()
		switch {
		case !p.IsValid():
			return nil, fmt.Errorf("prefix %v is not valid", p)
		case a.Is4In6() || a.Zone() != "":
			return nil, fmt.Errorf("prefix %s: an IPv4-mapped or zoned address", p)
		case !p.IsSingleIP():
			return nil, fmt.Errorf("prefix %s is not a host route (/32, /128)", p)
		case a.IsUnspecified() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsLoopback():
			return nil, fmt.Errorf("prefix %s is not a routable unicast address", p)
		}
		set[p] = struct{}{}
	}
	return set, nil
}

// diffPrefixes returns what to announce and what to withdraw to go from
// the announced set to the desired one, each sorted.
func diffPrefixes(announced, desired map[netip.Prefix]struct{}) (add, withdraw []netip.Prefix) {
	for p := range desired {
		if _, ok := announced[p]; !ok {
			add = append(add, p)
		}
	}
	for p := range announced {
		if _, ok := desired[p]; !ok {
			withdraw = append(withdraw, p)
		}
	}
	slices.SortFunc(add, comparePrefix)
	slices.SortFunc(withdraw, comparePrefix)
	return add, withdraw
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// sortedPrefixes returns a set's prefixes in order.
func sortedPrefixes(set map[netip.Prefix]struct{}) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}
