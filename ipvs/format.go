package ipvs

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// FormatRules prints the state as `ipvsadm -Sn` does (ipvsadm 1.31, which
// sorts its output): one "-A" line per service followed by its "-a" lines,
// services ordered by firewall mark, family, protocol, address and port,
// destinations by address and port. As in ipvsadm -S, thresholds are not
// printed. Services with nil Dests print without destinations.
func FormatRules(st State) string {
	var b strings.Builder
	for _, k := range SortedKeys(st) {
		s := st[k]
		b.WriteString(serviceRule("-A", s))
		b.WriteByte('\n')
		for _, d := range sortedDests(s.Dests) {
			b.WriteString(destRule("-a", k, d, false))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// SortedKeys returns the state's keys in ipvsadm's order.
func SortedKeys(st State) []ServiceKey {
	keys := make([]ServiceKey, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareServiceKeys)
	return keys
}

// compareServiceKeys orders keys as ipvsadm sorts services: non-fwmark
// first, then by mark, family, protocol, address, port.
func compareServiceKeys(a, b ServiceKey) int {
	return cmp.Or(
		cmp.Compare(a.FWMark, b.FWMark),
		cmp.Compare(a.Family, b.Family),
		cmp.Compare(a.Protocol, b.Protocol),
		a.Addr.Compare(b.Addr),
		cmp.Compare(a.Port, b.Port),
	)
}

// compareDestKeys orders destinations by address, then port.
func compareDestKeys(a, b DestKey) int {
	return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port))
}

// sortedDests returns the destinations in ipvsadm's order.
func sortedDests(m map[DestKey]Destination) []Destination {
	ds := make([]Destination, 0, len(m))
	for _, d := range m {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b Destination) int { return compareDestKeys(a.Key, b.Key) })
	return ds
}

// serviceName is ipvsadm's service selector: "-t 192.0.2.1:80",
// "-u [2001:db8::1]:53", "--sctp-service ...", "-f 7", "-f 8 -6".
func serviceName(k ServiceKey) string {
	if k.IsFWMark() {
		if k.Family == IPv6 {
			return fmt.Sprintf("-f %d -6", k.FWMark)
		}
		return fmt.Sprintf("-f %d", k.FWMark)
	}
	ap := netip.AddrPortFrom(k.Addr, k.Port).String()
	switch k.Protocol {
	case TCP:
		return "-t " + ap
	case UDP:
		return "-u " + ap
	case SCTP:
		return "--sctp-service " + ap
	}
	return fmt.Sprintf("--proto-%d %s", k.Protocol, ap)
}

// serviceRule prints a service command (verb -A or -E) with its options in
// ipvsadm -S order: -s, -p, -M, -o, -b.
func serviceRule(verb string, s Service) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s -s %s", verb, serviceName(s.Key), s.Scheduler)
	if s.Persistent() {
		fmt.Fprintf(&b, " -p %d", int64(s.Timeout.Seconds()))
		full := s.Key.Family.bits()
		if s.Netmask != full {
			switch {
			case s.Netmask < 0:
				b.WriteString(" -M invalid")
			case s.Key.Family == IPv4:
				b.WriteString(" -M " + netmaskString(s.Netmask))
			default:
				fmt.Fprintf(&b, " -M %d", s.Netmask)
			}
		}
	}
	if s.Flags&FlagOnePacket != 0 {
		b.WriteString(" -o")
	}
	if s.Flags&flagsSched != 0 {
		names := schedFlagNames(s.Scheduler)
		var fl []string
		for i := range 3 {
			if s.Flags&(FlagSched1<<i) != 0 {
				fl = append(fl, names[i])
			}
		}
		b.WriteString(" -b " + strings.Join(fl, ","))
	}
	return b.String()
}

// netmaskString prints an IPv4 prefix length as a dotted mask.
func netmaskString(bits int) string {
	var m [4]byte
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(m).String()
}

// forwardSwitch is ipvsadm's option for a forwarding method (ipvsadm
// prints -g for anything it does not know, Local included).
func forwardSwitch(f Forward) string {
	switch f {
	case ForwardMasq:
		return "-m"
	case ForwardTunnel:
		return "-i"
	}
	return "-g"
}

// destRule prints a destination command (verb -a or -e); thresholds only
// when asked, as ipvsadm -S leaves them out.
func destRule(verb string, k ServiceKey, d Destination, thresholds bool) string {
	s := fmt.Sprintf("%s %s -r %s %s -w %d", verb, serviceName(k), d.Key, forwardSwitch(d.Forward), d.Weight)
	if d.Forward == ForwardTunnel {
		s += " --tun-type ipip"
	}
	if thresholds {
		if d.UpperThreshold != 0 {
			s += fmt.Sprintf(" -x %d", d.UpperThreshold)
		}
		if d.LowerThreshold != 0 {
			s += fmt.Sprintf(" -y %d", d.LowerThreshold)
		}
	}
	return s
}
