package config

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Admission is admission control (docs/admission.md): which sources may
// reach a service, and how fast they may open connections. It is written
// on a VIP, for every service of the VIP, and on a service, where each
// field written replaces the VIP's.
type Admission struct {
	// Allow, when not empty, admits only sources in these prefixes.
	Allow []netip.Prefix `yaml:"allow" json:"Allow,omitempty"`
	// Deny drops sources in these prefixes; deny wins over allow.
	Deny []netip.Prefix `yaml:"deny" json:"Deny,omitempty"`
	// SourceRate limits the new connections of each source (or source
	// prefix).
	SourceRate *SourceRate `yaml:"source_rate" json:"SourceRate,omitempty"`
	// ServiceRate caps the new connections of the whole service.
	ServiceRate *ServiceRate `yaml:"service_rate" json:"ServiceRate,omitempty"`
}

// SourceRate is a per-source rate of new connections.
type SourceRate struct {
	// Rate is written N/s, N/m, N/h or N/d.
	Rate Rate `yaml:"rate" json:"Rate"`
	// Burst is how many connections beyond the rate a source may open at
	// once; DefaultAdmissionBurst when absent.
	Burst uint32 `yaml:"burst" json:"Burst"`
	// PrefixV4 and PrefixV6 group sources: the rate applies to each
	// source prefix of this length (32 and 128: each address).
	PrefixV4 int `yaml:"prefix_v4" json:"PrefixV4"`
	PrefixV6 int `yaml:"prefix_v6" json:"PrefixV6"`
}

// ServiceRate is a cap on a service's new connections.
type ServiceRate struct {
	Rate  Rate   `yaml:"rate" json:"Rate"`
	Burst uint32 `yaml:"burst" json:"Burst"`
}

// Rate is Count events per Per (a second, minute, hour or day), written
// "100/s".
type Rate struct {
	Count uint64   `json:"Count"`
	Per   Duration `json:"Per"`
}

// String writes the rate as the file does.
func (r Rate) String() string {
	if r.Per == 0 && r.Count == 0 {
		return ""
	}
	for _, u := range rateUnits {
		if u.per == r.Per.D() {
			return strconv.FormatUint(r.Count, 10) + "/" + u.short
		}
	}
	return fmt.Sprintf("%d/%v", r.Count, r.Per)
}

// Admission defaults and limits.
const (
	// DefaultAdmissionBurst is nft's own default burst.
	DefaultAdmissionBurst = 5
	// DefaultSourcePrefixV4 rates each IPv4 address on its own.
	DefaultSourcePrefixV4 = 32
	// DefaultSourcePrefixV6 rates each /64: one IPv6 host usually holds
	// a whole /64 and could otherwise open connections from 2^64
	// addresses, each with a fresh burst.
	DefaultSourcePrefixV6 = 64
	// MaxAdmissionPrefixes bounds each allow and deny list.
	MaxAdmissionPrefixes = 100000
	// maxOverlapWarnings bounds the overlap warnings of one file.
	maxOverlapWarnings = 20
)

var rateUnits = []struct {
	short string
	names []string
	per   time.Duration
}{
	{"s", []string{"s", "second"}, time.Second},
	{"m", []string{"m", "minute"}, time.Minute},
	{"h", []string{"h", "hour"}, time.Hour},
	{"d", []string{"d", "day"}, 24 * time.Hour},
}

// ParseRate parses "N/s" (or /second, /m, /minute, /h, /hour, /d, /day).
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("invalid rate %q: want N/s, N/m, N/h or N/d, e.g. 100/s", s)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
	if err != nil || n > 1<<32 {
		return Rate{}, fmt.Errorf("invalid rate %q: want a whole number of at most %d before the /", s, uint64(1<<32))
	}
	unit = strings.TrimSpace(unit)
	for _, u := range rateUnits {
		for _, name := range u.names {
			if unit == name {
				return Rate{Count: n, Per: Duration(u.per)}, nil
			}
		}
	}
	return Rate{}, fmt.Errorf("invalid rate %q: unit %q, want s, m, h or d", s, unit)
}

// parsePrefix parses a source prefix: a canonical prefix (192.0.2.0/24,
// 2001:db8::/32) or a bare address, which is its host prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := parseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid prefix %q: want an address or a prefix such as 192.0.2.0/24", s)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q: want a prefix such as 192.0.2.0/24 or 2001:db8::/32", s)
	}
	if _, err := checkAddrForm(s, p.Addr()); err != nil {
		return netip.Prefix{}, err
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set: write %s", s, m)
	}
	return p, nil
}

// EffectiveAdmission returns the admission control of s: its VIP's (the
// first VIP of vips with s's address), with each field s writes in its
// place. Nil when neither has any.
func EffectiveAdmission(vips []VIP, s *Service) *Admission {
	var out Admission
	for i := range vips {
		if vips[i].Address == s.VIP && vips[i].Admission != nil {
			out = *vips[i].Admission
			break
		}
	}
	if a := s.Admission; a != nil {
		if a.Allow != nil {
			out.Allow = a.Allow
		}
		if a.Deny != nil {
			out.Deny = a.Deny
		}
		if a.SourceRate != nil {
			out.SourceRate = a.SourceRate
		}
		if a.ServiceRate != nil {
			out.ServiceRate = a.ServiceRate
		}
	}
	if out.Allow == nil && out.Deny == nil && out.SourceRate == nil && out.ServiceRate == nil {
		return nil
	}
	return &out
}

// admission checks every admission block, then warns about allow and deny
// entries that overlap in a service's effective lists.
func (v *validator) admissions(vips []VIP, services []Service) {
	for i := range vips {
		if vips[i].Admission != nil {
			v.admission(vips[i].Admission, vips[i].Address, joinPath(indexPath("vips", i), "admission"))
		}
	}
	for i := range services {
		s := &services[i]
		if s.Admission != nil {
			v.admission(s.Admission, s.VIP, joinPath(indexPath("services", i), "admission"))
		}
	}
	warned := 0
	for i := range services {
		s := &services[i]
		if a := EffectiveAdmission(vips, s); a != nil && len(a.Allow) > 0 && len(a.Deny) > 0 {
			warned = v.overlaps(a, vips, s, i, warned)
		}
	}
	if warned > maxOverlapWarnings {
		v.warnf("services", "%d more allow and deny entries overlap", warned-maxOverlapWarnings)
	}
}

// admission checks one admission block for the VIP vip (its family).
func (v *validator) admission(a *Admission, vip netip.Addr, path string) {
	for _, l := range []struct {
		name string
		list []netip.Prefix
	}{{"allow", a.Allow}, {"deny", a.Deny}} {
		lp := joinPath(path, l.name)
		if len(l.list) > MaxAdmissionPrefixes {
			v.errorf(lp, "%d entries: at most %d", len(l.list), MaxAdmissionPrefixes)
			continue
		}
		for i, p := range l.list {
			ep := indexPath(lp, i)
			if !p.IsValid() {
				v.errorf(ep, "required")
			} else if vip.IsValid() && p.Addr().Is4() != vip.Is4() {
				v.errorf(ep, "%s is not of the family of VIP %s: it could never match", p, vip)
			}
		}
	}
	if r := a.SourceRate; r != nil {
		rp := joinPath(path, "source_rate")
		v.rate(joinPath(rp, "rate"), r.Rate)
		v.burst(joinPath(rp, "burst"), r.Burst)
		if r.PrefixV4 < 1 || r.PrefixV4 > 32 {
			v.errorf(joinPath(rp, "prefix_v4"), "%d: want 1 to 32", r.PrefixV4)
		}
		if r.PrefixV6 < 1 || r.PrefixV6 > 128 {
			v.errorf(joinPath(rp, "prefix_v6"), "%d: want 1 to 128", r.PrefixV6)
		}
	}
	if r := a.ServiceRate; r != nil {
		rp := joinPath(path, "service_rate")
		v.rate(joinPath(rp, "rate"), r.Rate)
		v.burst(joinPath(rp, "burst"), r.Burst)
	}
}

func (v *validator) rate(path string, r Rate) {
	switch {
	case r.Per == 0 && r.Count == 0 && !v.pos.isSet(path):
		v.errorf(path, "required, e.g. 100/s")
	case r.Count == 0:
		v.errorf(path, "a rate of 0 admits nothing: use deny or allow to refuse sources")
	default:
		if r.String() == fmt.Sprintf("%d/%v", r.Count, r.Per) {
			v.errorf(path, "per %v: want a second, minute, hour or day", r.Per)
		}
	}
}

func (v *validator) burst(path string, b uint32) {
	if b == 0 {
		v.errorf(path, "0: at least 1 (absent means %d)", DefaultAdmissionBurst)
	}
}

// overlaps warns about each allow entry inside a deny entry and each deny
// entry inside an allow entry of s's effective lists: deny wins. n counts
// the warnings so far; the new count is returned.
func (v *validator) overlaps(a *Admission, vips []VIP, s *Service, si int, n int) int {
	allow := prefixIndex(a.Allow)
	deny := prefixIndex(a.Deny)
	type hit struct {
		inner, outer netip.Prefix
		innerList    string
		idx          int
	}
	var hits []hit
	for i, p := range a.Deny {
		if q, ok := within(p, allow); ok {
			hits = append(hits, hit{p, q, "deny", i})
		}
	}
	for i, p := range a.Allow {
		if q, ok := within(p, deny); ok && q != p {
			hits = append(hits, hit{p, q, "allow", i})
		}
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].innerList < hits[j].innerList })
	for _, h := range hits {
		n++
		if n > maxOverlapWarnings {
			continue
		}
		path := admissionEntryPath(vips, s, si, h.innerList, h.idx)
		if h.innerList == "deny" {
			v.warnf(path, "service %s: deny %s overlaps allow %s: deny wins, %s is dropped", s.Name, h.inner, h.outer, h.inner)
		} else {
			v.warnf(path, "service %s: allow %s lies inside deny %s: deny wins, %s is dropped", s.Name, h.inner, h.outer, h.inner)
		}
	}
	return n
}

// admissionEntryPath is where an entry of s's effective list is written:
// the service's own list when it has one, else its VIP's.
func admissionEntryPath(vips []VIP, s *Service, si int, list string, idx int) string {
	own := s.Admission != nil && ((list == "allow" && s.Admission.Allow != nil) || (list == "deny" && s.Admission.Deny != nil))
	if own {
		return indexPath(joinPath(joinPath(indexPath("services", si), "admission"), list), idx)
	}
	for i := range vips {
		if vips[i].Address == s.VIP {
			return indexPath(joinPath(joinPath(indexPath("vips", i), "admission"), list), idx)
		}
	}
	return joinPath(indexPath("services", si), "vip")
}

// prefixIndex is a set of prefixes for containment look-ups.
func prefixIndex(ps []netip.Prefix) map[netip.Prefix]bool {
	m := make(map[netip.Prefix]bool, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			m[p.Masked()] = true
		}
	}
	return m
}

// within returns the shortest prefix of idx that contains p (p itself
// included).
func within(p netip.Prefix, idx map[netip.Prefix]bool) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	for bits := 0; bits <= p.Bits(); bits++ {
		q, _ := p.Addr().Prefix(bits)
		if idx[q] {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

// MarshalYAML writes the rate as the file does ("100/s"), so that a
// marshalled configuration parses back.
func (r Rate) MarshalYAML() (any, error) { return r.String(), nil }
