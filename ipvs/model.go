// Package ipvs programs the kernel's IP Virtual Server from a desired state.
//
// The desired and the actual state are values (State, Service, Destination)
// keyed by identity (ServiceKey, DestKey). Diff compares two states the way
// the kernel normalises them and returns the operations that turn one into
// the other: adds before updates before deletes, an update never a
// delete-and-add, except to put the destinations of a service whose
// scheduler depends on their order in the kernel (mh, sh, dh) in the one
// order every director uses (CanonicalOrder). A Reconciler reads the
// kernel through the small Kernel interface, drains removed destinations
// (weight 0 until idle or a timeout) but deletes at once those the desired
// state names absent (a real down or disabled), applies the operations and
// reports the state it actually reached. It touches only what it owns: the services of its desired state and the
// services it created or adopted before; an operator's or another program's
// services are never read in detail nor changed.
//
// Two Kernel implementations live here: Netlink, over github.com/moby/ipvs,
// one per network namespace, which also sends writes many to a netlink
// message batch (BatchWriter); and Fake, an in-memory kernel for tests that
// enforces the kernel's rules and prints itself like `ipvsadm -Sn`.
// DirectorSysctls and ApplySysctls set the kernel settings a DR director
// needs, ApplyTimeouts the IPVS connection timeouts.
package ipvs

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Family is a service's address family.
type Family uint8

// The address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("family(%d)", uint8(f))
}

// bits is the address length of the family in bits.
func (f Family) bits() int {
	if f == IPv6 {
		return 128
	}
	return 32
}

// FamilyOf returns the family of an address (an IPv4-mapped IPv6 address is
// IPv4), e.g. to build the key of a fwmark service from its VIP.
func FamilyOf(a netip.Addr) Family {
	if a.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

// Protocol is an IPVS service protocol, numbered as IP protocols.
type Protocol uint16

// The protocols IPVS balances.
const (
	TCP  Protocol = 6
	UDP  Protocol = 17
	SCTP Protocol = 132
)

// String returns "tcp", "udp" or "sctp".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case SCTP:
		return "sctp"
	case 0:
		return "none"
	}
	return fmt.Sprintf("proto(%d)", uint16(p))
}

// ParseProtocol parses "tcp", "udp" or "sctp" (any case), as written in the
// configuration.
func ParseProtocol(s string) (Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "sctp":
		return SCTP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q: want tcp, udp or sctp", s)
}

// ServiceKey identifies a virtual service: either family, protocol, address
// and port, or family and firewall mark (FWMark non-zero, Protocol 0, Addr
// the zero Addr, Port 0). It is comparable and used as a map key; build it
// with NewServiceKey or FWMarkKey so that it is in canonical form.
type ServiceKey struct {
	Family   Family
	Protocol Protocol
	Addr     netip.Addr
	Port     uint16
	FWMark   uint32
}

// NewServiceKey returns the key of the service for protocol p on the virtual
// address and port vip. An IPv4-mapped IPv6 address is taken as IPv4.
func NewServiceKey(p Protocol, vip netip.AddrPort) ServiceKey {
	a := vip.Addr().Unmap()
	return ServiceKey{Family: FamilyOf(a), Protocol: p, Addr: a, Port: vip.Port()}
}

// FWMarkKey returns the key of the firewall-mark service mark of family f.
func FWMarkKey(f Family, mark uint32) ServiceKey {
	return ServiceKey{Family: f, FWMark: mark}
}

// IsFWMark reports whether the key names a firewall-mark service.
func (k ServiceKey) IsFWMark() bool { return k.FWMark != 0 }

// String returns the service's identity as dsrd writes it everywhere (the
// configuration's duplicate check, the replicated admin and health states,
// dsrd status, logs): "tcp/192.0.2.1:80", "udp/[2001:db8::1]:53" or, for a
// firewall-mark service, "fwmark/4/7" (family 4 or 6, then the mark).
// ParseServiceKey reads it back. It is part of the replicated format:
// never change it.
func (k ServiceKey) String() string {
	if k.IsFWMark() {
		return "fwmark/" + strconv.Itoa(int(k.Family)) + "/" + strconv.FormatUint(uint64(k.FWMark), 10)
	}
	return k.Protocol.String() + "/" + netip.AddrPortFrom(k.Addr, k.Port).String()
}

// MarshalText encodes the key as String does: a JSON string.
func (k ServiceKey) MarshalText() ([]byte, error) {
	return []byte(k.String()), nil
}

// UnmarshalText decodes a key written by MarshalText (ParseServiceKey).
func (k *ServiceKey) UnmarshalText(b []byte) error {
	x, err := ParseServiceKey(string(b))
	if err != nil {
		return err
	}
	*k = x
	return nil
}

// ParseServiceKey parses a key as String writes it, into canonical form:
// "tcp/192.0.2.1:80", "udp/[2001:db8::1]:53", "fwmark/6/8". Only the
// canonical text is accepted, so that a parsed key prints as it was read.
func ParseServiceKey(s string) (ServiceKey, error) {
	kind, rest, ok := strings.Cut(s, "/")
	if !ok {
		return ServiceKey{}, fmt.Errorf("service key %q: want protocol/address:port or fwmark/family/mark", s)
	}
	if kind == "fwmark" {
		fam, mark, ok := strings.Cut(rest, "/")
		f := Family(0)
		switch fam {
		case "4":
			f = IPv4
		case "6":
			f = IPv6
		}
		m, err := strconv.ParseUint(mark, 10, 32)
		if !ok || f == 0 || err != nil || m == 0 || strconv.FormatUint(m, 10) != mark {
			return ServiceKey{}, fmt.Errorf("service key %q: want fwmark/4/mark or fwmark/6/mark with a mark from 1", s)
		}
		return FWMarkKey(f, uint32(m)), nil
	}
	p, err := ParseProtocol(kind)
	if err != nil || p.String() != kind {
		return ServiceKey{}, fmt.Errorf("service key %q: unknown protocol %q: want tcp, udp or sctp", s, kind)
	}
	ap, err := netip.ParseAddrPort(rest)
	if err != nil {
		return ServiceKey{}, fmt.Errorf("service key %q: %w", s, err)
	}
	k := NewServiceKey(p, ap)
	if k.String() != s {
		return ServiceKey{}, fmt.Errorf("service key %q is not in canonical form %q", s, k.String())
	}
	return k, nil
}

// MustParseServiceKey is ParseServiceKey for keys known to be valid (in
// tests, constants): it panics on an error.
func MustParseServiceKey(s string) ServiceKey {
	k, err := ParseServiceKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// ServiceKeyOf returns the key of a service as the configuration gives
// it: a firewall mark of family 4 or 6 when fwmark is not 0, else
// protocol ("tcp", "udp" or "sctp"), VIP and port.
func ServiceKeyOf(protocol string, vip netip.Addr, port uint16, fwmark uint32, family int) (ServiceKey, error) {
	if fwmark != 0 {
		switch family {
		case 4:
			return FWMarkKey(IPv4, fwmark), nil
		case 6:
			return FWMarkKey(IPv6, fwmark), nil
		}
		return ServiceKey{}, fmt.Errorf("fwmark %d: unknown family %d", fwmark, family)
	}
	p, err := ParseProtocol(protocol)
	if err != nil {
		return ServiceKey{}, err
	}
	if !vip.IsValid() {
		return ServiceKey{}, fmt.Errorf("%s service on port %d: no VIP", protocol, port)
	}
	return NewServiceKey(p, netip.AddrPortFrom(vip, port)), nil
}

// DestKey identifies a destination (real server) within a service.
type DestKey struct {
	Addr netip.Addr
	Port uint16
}

// String returns "192.0.2.10:80" or "[2001:db8::10]:80".
func (k DestKey) String() string { return netip.AddrPortFrom(k.Addr, k.Port).String() }

// Flags are IPVS service flags, numbered as the kernel numbers them. The
// scheduler flags (Sched1..3) mean what the scheduler makes of them: sh and mh
// name the first two "fallback" and "port".
type Flags uint32

// The service flags.
const (
	// FlagPersistent makes a client stick to one real for Timeout.
	FlagPersistent Flags = 0x1
	// FlagHashed is set by the kernel on every service it holds; it is
	// ignored in comparisons and never sent.
	FlagHashed Flags = 0x2
	// FlagOnePacket schedules every UDP datagram on its own (ipvsadm -o).
	FlagOnePacket Flags = 0x4
	// FlagSched1, FlagSched2 and FlagSched3 are the scheduler's own flags.
	FlagSched1 Flags = 0x8
	FlagSched2 Flags = 0x10
	FlagSched3 Flags = 0x20

	// FlagSHFallback lets sh skip an unavailable real (sh-fallback).
	FlagSHFallback = FlagSched1
	// FlagSHPort hashes the source port too (sh-port).
	FlagSHPort = FlagSched2
	// FlagMHFallback lets mh skip an unavailable real (mh-fallback).
	FlagMHFallback = FlagSched1
	// FlagMHPort hashes the source port too (mh-port).
	FlagMHPort = FlagSched2

	flagsSched = FlagSched1 | FlagSched2 | FlagSched3
)

// String lists the set flags, comma separated, with generic names.
func (f Flags) String() string {
	names := []struct {
		f Flags
		n string
	}{
		{FlagPersistent, "persistent"}, {FlagHashed, "hashed"}, {FlagOnePacket, "one-packet"},
		{FlagSched1, "flag-1"}, {FlagSched2, "flag-2"}, {FlagSched3, "flag-3"},
	}
	var parts []string
	for _, n := range names {
		if f&n.f != 0 {
			parts = append(parts, n.n)
			f &^= n.f
		}
	}
	if f != 0 {
		parts = append(parts, fmt.Sprintf("%#x", uint32(f)))
	}
	return strings.Join(parts, ",")
}

// schedFlagNames returns the names ipvsadm gives the three scheduler flags
// of a scheduler.
func schedFlagNames(scheduler string) [3]string {
	switch scheduler {
	case "sh":
		return [3]string{"sh-fallback", "sh-port", "flag-3"}
	case "mh":
		return [3]string{"mh-fallback", "mh-port", "flag-3"}
	}
	return [3]string{"flag-1", "flag-2", "flag-3"}
}

// ParseSchedFlags parses scheduler flag names as ipvsadm -b takes them and the
// configuration writes them (sh-fallback, sh-port, mh-fallback, mh-port,
// flag-1, flag-2, flag-3). A flag that belongs to another scheduler is an
// error: sh-port with mh is a mistake, not a synonym.
func ParseSchedFlags(scheduler string, names []string) (Flags, error) {
	var f Flags
	own := schedFlagNames(strings.ToLower(scheduler))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		found := false
		for i, o := range own {
			if n == o || n == fmt.Sprintf("flag-%d", i+1) {
				f |= FlagSched1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("scheduler flag %q does not apply to scheduler %q", n, scheduler)
		}
	}
	return f, nil
}

// Forward is a destination's packet forwarding method. Its zero value is
// direct routing; dsrd programs it and ForwardTunnel (plain IP-in-IP: the
// library cannot set a tunnel type, so never GUE or GRE); the others exist
// because the kernel may hold them (an adopted or foreign entry).
type Forward uint8

// The forwarding methods.
const (
	// ForwardDR is direct routing ("gatewaying", ipvsadm -g): only the
	// destination MAC is rewritten.
	ForwardDR Forward = iota
	// ForwardMasq is NAT (ipvsadm -m).
	ForwardMasq
	// ForwardTunnel is IP-in-IP (ipvsadm -i): the packet is encapsulated
	// to the destination's address, of the service's family.
	ForwardTunnel
	// ForwardLocal delivers to the director itself.
	ForwardLocal
	// ForwardBypass bypasses the connection cache.
	ForwardBypass
)

// The kernel's forwarding method numbers (IP_VS_CONN_F_*).
const (
	kfwdMasq   = 0
	kfwdLocal  = 1
	kfwdTunnel = 2
	kfwdDR     = 3
	kfwdBypass = 4
)

// kernelValue returns the kernel's number for the method.
func (f Forward) kernelValue() uint32 {
	switch f {
	case ForwardMasq:
		return kfwdMasq
	case ForwardTunnel:
		return kfwdTunnel
	case ForwardLocal:
		return kfwdLocal
	case ForwardBypass:
		return kfwdBypass
	}
	return kfwdDR
}

// forwardFromKernel maps the kernel's number (masked with 0x7) to a Forward.
func forwardFromKernel(v uint32) Forward {
	switch v & 0x7 {
	case kfwdMasq:
		return ForwardMasq
	case kfwdLocal:
		return ForwardLocal
	case kfwdTunnel:
		return ForwardTunnel
	case kfwdBypass:
		return ForwardBypass
	}
	return ForwardDR
}

// String returns the name ipvsadm -L shows: Route, Masq, Tunnel, Local, Bypass.
func (f Forward) String() string {
	switch f {
	case ForwardDR:
		return "Route"
	case ForwardMasq:
		return "Masq"
	case ForwardTunnel:
		return "Tunnel"
	case ForwardLocal:
		return "Local"
	case ForwardBypass:
		return "Bypass"
	}
	return fmt.Sprintf("Forward(%d)", uint8(f))
}

// Stats are the kernel's traffic counters of a service or destination.
// They are read-only and never take part in comparisons.
type Stats struct {
	Conns      uint32
	PacketsIn  uint32
	PacketsOut uint32
	BytesIn    uint64
	BytesOut   uint64
	CPS        uint32
	PPSIn      uint32
	PPSOut     uint32
	BPSIn      uint32
	BPSOut     uint32
}

// Destination is a real server of a service.
type Destination struct {
	Key DestKey
	// Weight is 0 to 65535; 0 takes no new connections while established
	// ones continue (a real that failed its checks).
	Weight int
	// Forward is the forwarding method; the zero value is direct routing.
	Forward Forward
	// LastWeight is, for a destination desired at Weight 0, the weight it
	// has when it is up (its configured weight). The mh scheduler sizes a
	// real's share of its lookup table by the last non-zero weight the
	// real had (the kernel's last_weight), but a real added at weight 0
	// gets no share at all: a director that adds a down real at 0 builds
	// another table than one that saw it go from its weight to 0, and maps
	// other flows to other reals. A destination of an mh service that must
	// be added at Weight 0 is therefore added at LastWeight and then set to
	// 0 (see Diff); 0 adds it at 0. It is dsrd's: never read from the
	// kernel nor compared. (uint16, the kernel's range of weights, keeps
	// Destination as small as it was.)
	LastWeight uint16
	// UpperThreshold and LowerThreshold bound the real's connections; 0
	// means no limit. The kernel requires Lower <= Upper.
	UpperThreshold uint32
	LowerThreshold uint32

	// ActiveConns, InactiveConns and Stats are read from the kernel; they
	// are ignored in comparisons and when programming.
	ActiveConns   uint32
	InactiveConns uint32
	// Position is the destination's place in its service's list in the
	// kernel, as ReadState reads it: 1 for the oldest (the first added),
	// higher for later ones (see Service.KernelOrder); 0 is unknown (a
	// desired state, a state built by hand). Like the counters it is
	// ignored in comparisons and when programming.
	Position uint32
	Stats    Stats
}

// NewDestination returns a direct-routing destination at addr:port with
// the given weight.
func NewDestination(addr netip.Addr, port uint16, weight int) Destination {
	return Destination{Key: DestKey{Addr: addr.Unmap(), Port: port}, Weight: weight}
}

// Conns returns the destination's active plus inactive connections.
func (d Destination) Conns() uint64 { return uint64(d.ActiveConns) + uint64(d.InactiveConns) }

// sameConfig reports whether two destinations are programmed alike
// (counters ignored).
func (d Destination) sameConfig(o Destination) bool {
	return d.Weight == o.Weight && d.Forward == o.Forward &&
		d.UpperThreshold == o.UpperThreshold && d.LowerThreshold == o.LowerThreshold
}

// Absence says why a destination is kept out of a desired service while
// the service still has it as a real (Service.Absent). Every absence
// deletes the destination at once: with net.ipv4.vs.expire_nodest_conn
// its connections then fail fast instead of hanging. Only a destination
// that is no longer the service's at all (removed from the configuration)
// drains at weight 0.
type Absence uint8

// The absences.
const (
	// AbsentDown is a real that failed its health checks where the
	// service takes failed reals out (on_down: remove).
	AbsentDown Absence = iota + 1
	// AbsentDisabled is a real an operator disabled (dsrd disable).
	AbsentDisabled
)

// String returns "down" or "disabled", for logs.
func (a Absence) String() string {
	switch a {
	case AbsentDown:
		return "down"
	case AbsentDisabled:
		return "disabled"
	}
	return fmt.Sprintf("absence(%d)", uint8(a))
}

// DefaultScheduler is the scheduler of a service whose Scheduler is empty,
// as in ipvsadm.
const DefaultScheduler = "wlc"

// DefaultPersistence is the persistence timeout ipvsadm uses for -p without
// a value.
const DefaultPersistence = 360 * time.Second

// Service is a virtual service and its destinations.
type Service struct {
	Key ServiceKey
	// Scheduler is the kernel scheduler's name: rr, wrr, lc, wlc, sh, mh...
	// Empty means DefaultScheduler.
	Scheduler string
	// Flags are the service flags; FlagHashed is ignored.
	Flags Flags
	// Timeout is the persistence timeout, programmed in whole seconds
	// (rounded up); it is meaningful only with FlagPersistent.
	Timeout time.Duration
	// Netmask is the persistence granularity as a prefix length: clients
	// in one prefix share a real. 0 in a desired state means the whole
	// address (32 or 128, per client). A kernel mask that is not a prefix
	// reads as -1. Meaningful only with FlagPersistent.
	Netmask int
	// DrainTimeout bounds how long a removed destination (or the service's
	// destinations when the service itself is removed) stays at weight 0
	// waiting for its connections to end. It is dsrd's, not the kernel's:
	// never programmed nor compared.
	DrainTimeout time.Duration
	// Dests are the destinations by key. Services read from the kernel
	// that the reader does not manage have nil Dests (not read).
	Dests map[DestKey]Destination
	// Absent names, in a desired state, destinations of the service that
	// are kept out of Dests on purpose, and why: they leave the kernel at
	// once, connections or not. A kernel destination that is neither in
	// Dests nor in Absent was removed from the service and drains (see
	// DrainTimeout). A key may not be in both. Like DrainTimeout it is
	// dsrd's, never programmed nor compared; nil is empty.
	Absent map[DestKey]Absence

	// Stats are read from the kernel; ignored in comparisons.
	Stats Stats
}

// KernelOrder returns the keys of the service's destinations in the order
// of the kernel's list, oldest first (the order in which they were added:
// the kernel adds each new destination at the head of its list and dumps
// the list from the head), from their Position; nil when a destination's
// Position is unknown. A director must hold the destinations of an
// OrderSensitive service in CanonicalOrder.
func (s Service) KernelOrder() []DestKey {
	ds := make([]Destination, 0, len(s.Dests))
	for _, d := range s.Dests {
		if d.Position == 0 {
			return nil
		}
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b Destination) int { return cmp.Compare(a.Position, b.Position) })
	out := make([]DestKey, len(ds))
	for i, d := range ds {
		out[i] = d.Key
	}
	return out
}

// OrderSensitive reports whether the scheduler's choice of a real for a
// flow depends on the order of the service's destinations in the kernel:
// mh (Maglev) fills its lookup table walking the list, sh and dh deal
// their hash buckets to the reals round-robin in list order. Two
// directors holding the same reals in another order send the same flow
// to different reals. The other schedulers keep no table built from the
// list.
func OrderSensitive(scheduler string) bool {
	switch strings.ToLower(strings.TrimSpace(scheduler)) {
	case "mh", "sh", "dh":
		return true
	}
	return false
}

// CanonicalOrder returns the order, oldest first, in which the kernel must
// hold the destinations of an order-sensitive service on every director:
// ascending address, then port (ipvsadm's order). A director that creates
// a service adds its reals in this order; a new real with a higher key
// than the others is then simply added, one with a lower key costs
// re-adding every real after it (see Diff).
func CanonicalOrder(s Service) []DestKey {
	return sortedDestKeys(make([]DestKey, 0, len(s.Dests)), s.Dests)
}

// NewService returns a service with key k, the scheduler and no
// destinations.
func NewService(k ServiceKey, scheduler string) Service {
	return Service{Key: k, Scheduler: scheduler, Dests: map[DestKey]Destination{}}
}

// Persistent reports whether FlagPersistent is set.
func (s Service) Persistent() bool { return s.Flags&FlagPersistent != 0 }

// SetPersistence makes the service persistent with the timeout and
// netmask (a prefix length, 0 for per client); a timeout <= 0 makes it not
// persistent.
func (s *Service) SetPersistence(timeout time.Duration, netmask int) {
	if timeout <= 0 {
		s.Flags &^= FlagPersistent
		s.Timeout, s.Netmask = 0, 0
		return
	}
	s.Flags |= FlagPersistent
	s.Timeout, s.Netmask = timeout, netmask
}

// Put adds or replaces a destination.
func (s *Service) Put(d Destination) {
	if s.Dests == nil {
		s.Dests = map[DestKey]Destination{}
	}
	d.Key.Addr = d.Key.Addr.Unmap()
	s.Dests[d.Key] = d
}

// SetAbsent records that the destination key is kept out of the service
// for reason a: it is deleted at once rather than drained.
func (s *Service) SetAbsent(key DestKey, a Absence) {
	if s.Absent == nil {
		s.Absent = map[DestKey]Absence{}
	}
	key.Addr = key.Addr.Unmap()
	s.Absent[key] = a
}

// Clone returns a copy that shares no map with s.
func (s Service) Clone() Service {
	if s.Dests != nil {
		s.Dests = maps.Clone(s.Dests)
	}
	if s.Absent != nil {
		s.Absent = maps.Clone(s.Absent)
	}
	return s
}

// withoutDests returns a copy of the service's attributes with no Dests
// (and no Absent).
func (s Service) withoutDests() Service {
	s.Dests, s.Absent = nil, nil
	return s
}

// normalized returns the service as the kernel will hold it once
// programmed: scheduler lower case and defaulted, FlagHashed cleared,
// timeout in whole seconds, netmask defaulted; timeout and netmask are
// cleared (to 0 and the full length) when the service is not persistent,
// as ipvsadm sends them.
func (s Service) normalized() Service {
	s.Scheduler = strings.ToLower(strings.TrimSpace(s.Scheduler))
	if s.Scheduler == "" {
		s.Scheduler = DefaultScheduler
	}
	s.Flags &^= FlagHashed
	full := s.Key.Family.bits()
	if !s.Persistent() {
		s.Timeout, s.Netmask = 0, full
	} else {
		s.Timeout = ceilSeconds(s.Timeout)
		if s.Netmask == 0 {
			s.Netmask = full
		}
	}
	return s
}

// ceilSeconds rounds d up to a whole number of seconds.
func ceilSeconds(d time.Duration) time.Duration {
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	return d
}

// sameConfig reports whether the kernel service a is programmed as the
// normalised desired service d: FlagHashed is ignored, and timeout and
// netmask only count for a persistent service. Destinations and counters
// are not compared.
func (s Service) sameConfig(d Service) bool {
	if s.Scheduler != d.Scheduler || s.Flags&^FlagHashed != d.Flags&^FlagHashed {
		return false
	}
	if d.Persistent() {
		return s.Timeout == d.Timeout && s.Netmask == d.Netmask
	}
	return true
}

// Validate reports what in the service the kernel would reject or dsrd does
// not support, all at once: mismatched families, a DR destination on
// another port, weights out of range, thresholds in the wrong order, a
// persistence netmask or timeout out of range, port 0 without persistence,
// a destination both in Dests and Absent.
func (s Service) Validate() error {
	var errs []error
	k := s.Key
	switch k.Family {
	case IPv4, IPv6:
	default:
		errs = append(errs, fmt.Errorf("unknown address family %d", k.Family))
	}
	if k.IsFWMark() {
		if k.Protocol != 0 || k.Addr.IsValid() || k.Port != 0 {
			errs = append(errs, errors.New("a fwmark service has no protocol, address nor port"))
		}
	} else {
		switch k.Protocol {
		case TCP, UDP, SCTP:
		default:
			errs = append(errs, fmt.Errorf("unsupported protocol %s", k.Protocol))
		}
		if !k.Addr.IsValid() {
			errs = append(errs, errors.New("no virtual address"))
		} else if k.Addr.Is4In6() || FamilyOf(k.Addr) != k.Family {
			errs = append(errs, fmt.Errorf("virtual address %s is not %s", k.Addr, k.Family))
		}
		if k.Port == 0 && !s.Persistent() {
			errs = append(errs, errors.New("port 0 (all ports) needs persistence"))
		}
	}
	if strings.ContainsAny(s.Scheduler, " \t\n/") || len(s.Scheduler) > 15 {
		errs = append(errs, fmt.Errorf("invalid scheduler name %q", s.Scheduler))
	}
	if s.Persistent() {
		if s.Timeout < time.Second {
			errs = append(errs, fmt.Errorf("persistence timeout %v is under 1s", s.Timeout))
		}
		if s.Netmask < 0 || s.Netmask > k.Family.bits() {
			errs = append(errs, fmt.Errorf("persistence netmask /%d out of range for %s", s.Netmask, k.Family))
		}
	}
	for _, d := range s.Dests {
		if !d.Key.Addr.IsValid() {
			errs = append(errs, errors.New("destination without address"))
			continue
		}
		if FamilyOf(d.Key.Addr) != k.Family || d.Key.Addr.Is4In6() {
			errs = append(errs, fmt.Errorf("destination %s is not %s", d.Key, k.Family))
		}
		if d.Forward == ForwardDR && !k.IsFWMark() && d.Key.Port != k.Port {
			errs = append(errs, fmt.Errorf("destination %s: direct routing cannot change the port %d", d.Key, k.Port))
		}
		if d.Weight < 0 || d.Weight > 65535 {
			errs = append(errs, fmt.Errorf("destination %s: weight %d out of range 0-65535", d.Key, d.Weight))
		}
		if d.LowerThreshold > d.UpperThreshold {
			errs = append(errs, fmt.Errorf("destination %s: lower threshold %d above upper threshold %d", d.Key, d.LowerThreshold, d.UpperThreshold))
		}
	}
	for dk, a := range s.Absent {
		if _, ok := s.Dests[dk]; ok {
			errs = append(errs, fmt.Errorf("destination %s is both present and absent (%s)", dk, a))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("service %s: %w", k, errors.Join(errs...))
	}
	return nil
}

// State is a set of services by key.
type State map[ServiceKey]Service

// Put adds or replaces a service.
func (st State) Put(s Service) { st[s.Key] = s }

// Clone returns a deep copy.
func (st State) Clone() State {
	if st == nil {
		return nil
	}
	c := make(State, len(st))
	for k, s := range st {
		c[k] = s.Clone()
	}
	return c
}
