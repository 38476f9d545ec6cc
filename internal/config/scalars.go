package config

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/dsrd/dsrd/ipvs"

	"go.yaml.in/yaml/v3"
)

// ParsePeer parses a peer written id@ip:port, an IPv6 address in brackets
// (id@[2001:db8::1]:7946). The id must be a valid node name.
func ParsePeer(s string) (Peer, error) {
	id, addr, ok := strings.Cut(s, "@")
	if !ok {
		return Peer{}, fmt.Errorf("invalid peer %q: want id@ip:port, e.g. dir1@192.0.2.1:7946", s)
	}
	if err := checkName(id); err != nil {
		return Peer{}, fmt.Errorf("invalid peer %q: id %w", s, err)
	}
	ap, err := parseAddrPort(addr)
	if err != nil {
		return Peer{}, fmt.Errorf("invalid peer %q: %w", s, err)
	}
	return Peer{ID: id, Address: ap}, nil
}

// String formats the peer as id@ip:port; the zero Peer is "".
func (p Peer) String() string {
	if p == (Peer{}) {
		return ""
	}
	return p.ID + "@" + p.Address.String()
}

// MarshalText writes the peer as id@ip:port.
func (p Peer) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses id@ip:port; empty text is the zero Peer.
func (p *Peer) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*p = Peer{}
		return nil
	}
	q, err := ParsePeer(string(text))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// MarshalYAML writes the duration as a Go duration string ("1.5s").
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string, refusing negative durations.
// It lets a Duration be decoded by the yaml package directly; the Parse
// functions of this package do not need it.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a duration such as 1.5s", n.Line)
	}
	x, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = x
	return nil
}

// MarshalText writes the duration as a Go duration string, for JSON.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string, refusing negative durations.
func (d *Duration) UnmarshalText(text []byte) error {
	x, err := parseDuration(string(text))
	if err != nil {
		return err
	}
	*d = x
	return nil
}

// Family returns the IP family of the service, 4 or 6: its VIP's, or for
// a fwmark service without a VIP, its first real's; 0 when unknown.
func (s *Service) Family() int {
	switch {
	case s.VIP.IsValid():
		return family(s.VIP)
	case len(s.Reals) > 0 && s.Reals[0].Address.IsValid():
		return family(s.Reals[0].Address)
	}
	return 0
}

// Key returns the identity of the service in IPVS and in the replicated
// admin and health states (ipvs.ServiceKey): "tcp/203.0.113.10:80",
// "udp/[2001:db8::53]:53" or, for a firewall-mark service, "fwmark/4/1";
// the zero key when the service has none (validation reports why). Two
// services with the same key would be the same IPVS service.
func (s *Service) Key() ipvs.ServiceKey {
	k, _ := ipvs.ServiceKeyOf(string(s.Protocol), s.VIP, s.Port, s.FWMark, s.Family())
	return k
}

// CheckFor returns the health check that applies to r: its own, else the
// service's.
func (s *Service) CheckFor(r *Real) *HealthCheck {
	if r.HealthCheck != nil {
		return r.HealthCheck
	}
	return s.HealthCheck
}

// family returns 4 or 6.
func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// parseAddr parses an IP address as the configuration accepts it: no zone,
// no IPv4-mapped IPv6 form.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if strings.Contains(s, "/") {
			return netip.Addr{}, fmt.Errorf("invalid IP address %q: want a bare address, not a prefix", s)
		}
		return netip.Addr{}, fmt.Errorf("invalid IP address %q", s)
	}
	return checkAddrForm(s, a)
}

// checkAddrForm refuses the address forms dsrd does not accept.
func checkAddrForm(s string, a netip.Addr) (netip.Addr, error) {
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("IP address %q has a zone: zones are not supported", s)
	}
	if a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q is an IPv4-mapped IPv6 address: write %s", s, a.Unmap())
	}
	return a, nil
}

// parseAddrPort parses ip:port, IPv6 in brackets.
func parseAddrPort(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("invalid address %q: want ip:port, e.g. 192.0.2.1:7946 or [2001:db8::1]:7946", s)
	}
	if _, err := checkAddrForm(s, ap.Addr()); err != nil {
		return netip.AddrPort{}, err
	}
	return ap, nil
}

// parseByteSize parses an amount of memory with a binary unit (B, KiB,
// MiB, GiB, TiB): "256MiB".
func parseByteSize(s string) (ByteSize, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}
	for _, u := range units {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 64)
		if err != nil || n > math.MaxUint64>>u.shift {
			break
		}
		return ByteSize(n << u.shift), nil
	}
	return 0, fmt.Errorf("invalid size %q: want a whole number with a binary unit, such as 256MiB or 1GiB", s)
}

// String formats the size with the largest unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if b != 0 && b%(1<<u.shift) == 0 {
			return strconv.FormatUint(uint64(b>>u.shift), 10) + u.suffix
		}
	}
	return strconv.FormatUint(uint64(b), 10) + "B"
}

// MarshalYAML writes the size as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// parseDuration parses a Go duration string, refusing negative ones.
func parseDuration(s string) (Duration, error) {
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: want a number with a unit, such as 1.5s, 500ms or 1m30s", s)
	}
	if dur < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(dur), nil
}
