package admission

import (
	"net/netip"
	"slices"
)

// span is an inclusive range of addresses of one family.
type span struct{ first, last netip.Addr }

// spans turns prefixes of family fam (4 or 6) into sorted, disjoint,
// non-adjacent ranges: the kernel refuses overlapping intervals in one
// set, and merging keeps the set small. Prefixes of the other family are
// left out.
func spans(prefixes []netip.Prefix, fam int) []span {
	var in []span
	for _, p := range prefixes {
		p = p.Masked()
		if !p.IsValid() || p.Addr().Is4() != (fam == 4) {
			continue
		}
		in = append(in, span{p.Addr(), lastAddr(p)})
	}
	slices.SortFunc(in, func(a, b span) int {
		if c := a.first.Compare(b.first); c != 0 {
			return c
		}
		return b.last.Compare(a.last)
	})
	var out []span
	for _, s := range in {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			// Overlapping or adjacent: extend the current range.
			if next := cur.last.Next(); !next.IsValid() || s.first.Compare(next) <= 0 {
				if s.last.Compare(cur.last) > 0 {
					cur.last = s.last
				}
				continue
			}
		}
		out = append(out, s)
	}
	return out
}

// lastAddr returns the last address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 7; j >= 0; j-- {
			if i*8+(7-j) >= bits {
				b[i] |= 1 << j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// maskBytes returns the network mask of bits bits for an address of n
// bytes.
func maskBytes(n, bits int) []byte {
	m := make([]byte, n)
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
