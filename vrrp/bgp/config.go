package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// DefaultPort is BGP's TCP port, dialled when a peer's Port is 0.
const DefaultPort = 179

// DefaultHoldTime is the hold time of a peer that sets none: 9 s (keepalive
// 3 s), the data-centre timer FRR uses, rather than RFC 4271's 90 s, so
// that a director lost without BFD leaves the routers' ECMP set in seconds.
const DefaultHoldTime = 9 * time.Second

// Limits of the configuration.
const (
	// asTrans is AS_TRANS (RFC 6793), a placeholder never to be configured.
	asTrans = 23456
	// maxPasswordLen is the longest TCP-MD5 key Linux takes
	// (TCP_MD5SIG_MAXKEYLEN).
	maxPasswordLen = 80
	minHoldTime    = 3 * time.Second
	maxHoldTime    = 65535 * time.Second
	minBFDInterval = 50 * time.Millisecond
	maxBFDInterval = 10 * time.Second
)

// Config is what the speaker announces with and to whom: the subset of a
// director's configuration that concerns BGP.
type Config struct {
	// ASN is this director's AS number.
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address.
	RouterID netip.Addr
	// Communities are added to every announcement: "asn:value" or a
	// well-known name (no-export, no-advertise, no-export-subconfed,
	// no-peer, blackhole).
	Communities []string
	// MED is the MULTI_EXIT_DISC of every announcement; nil sends none.
	MED *uint32
	// Peers are the routers to announce to.
	Peers []Peer
}

// Peer is one router the speaker dials.
type Peer struct {
	// Address is the router's address; the speaker dials it.
	Address netip.Addr
	// ASN is the router's AS number, equal to Config.ASN for iBGP.
	ASN uint32
	// Port is the router's BGP port; 0 means DefaultPort.
	Port uint16
	// Password is the TCP-MD5 key (RFC 2385), at most 80 bytes; empty for none.
	Password string
	// HoldTime is the proposed hold time, whole seconds from 3s to 65535s;
	// 0 means DefaultHoldTime.
	HoldTime time.Duration
	// KeepaliveTime is the keepalive interval, whole seconds below the hold
	// time; 0 means a third of the hold time.
	KeepaliveTime time.Duration
	// SourceAddress is the session's local address (and so the announced
	// next hop); the zero Addr lets the kernel choose.
	SourceAddress netip.Addr
	// EBGPMultihop is the TTL for an eBGP router that is not directly
	// connected; 0 for a directly connected one. Not for iBGP.
	EBGPMultihop uint8
	// BFD runs Bidirectional Forwarding Detection with the router when set.
	BFD *BFD
}

// BFD are a peer's BFD timers (RFC 5880): the session is down after
// Multiplier intervals of MinRx without a packet.
type BFD struct {
	// MinRx is the required minimum receive interval, 50ms to 10s.
	MinRx time.Duration
	// MinTx is the desired minimum transmit interval, 50ms to 10s.
	MinTx time.Duration
	// Multiplier is the detection multiplier, 1 to 255.
	Multiplier uint8
}

// FieldError is a configuration problem: Field names the offending field
// relative to the Config in YAML terms ("asn", "communities[0]",
// "peers[1].bfd.min_rx").
type FieldError struct {
	// Field is the path of the field, e.g. "peers[1].hold_time".
	Field string
	// Err says what is wrong with it.
	Err error
}

// Error returns "field: problem".
func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }

// Unwrap returns the problem.
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}

// Validate checks every rule of the configuration and returns the first
// problem as a *FieldError, or nil.
func (c Config) Validate() error {
	if err := validASN(c.ASN); err != nil {
		return &FieldError{Field: "asn", Err: err}
	}
	switch {
	case !c.RouterID.IsValid():
		return fieldErr("router_id", "required")
	case !c.RouterID.Is4():
		return fieldErr("router_id", "%s is not an IPv4 address", c.RouterID)
	case c.RouterID.IsUnspecified() || c.RouterID.IsMulticast() || c.RouterID == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fieldErr("router_id", "%s is not a unicast address", c.RouterID)
	}
	for i, s := range c.Communities {
		if _, err := parseConfigCommunity(s); err != nil {
			return &FieldError{Field: fmt.Sprintf("communities[%d]", i), Err: err}
		}
	}
	if len(c.Peers) == 0 {
		return fieldErr("peers", "at least one peer is required")
	}
	seen := make(map[netip.Addr]int, len(c.Peers))
	for i, p := range c.Peers {
		if j, dup := seen[p.Address]; dup && p.Address.IsValid() {
			return fieldErr(fmt.Sprintf("peers[%d].address", i), "%s is also peers[%d]", p.Address, j)
		}
		seen[p.Address] = i
		if err := p.validate(c.ASN); err != nil {
			err.Field = fmt.Sprintf("peers[%d].%s", i, err.Field)
			return err
		}
	}
	return nil
}

func validASN(asn uint32) error {
	switch asn {
	case 0:
		return errors.New("required, 1 to 4294967295")
	case asTrans:
		return errors.New("23456 is AS_TRANS (RFC 6793), not an AS")
	}
	return nil
}

// validPeerAddr checks an address to dial or to dial from.
func validPeerAddr(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("required")
	case a.Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 address: write it as IPv4", a)
	case a.Zone() != "":
		return fmt.Errorf("%s has a zone", a)
	case a.IsUnspecified():
		return fmt.Errorf("%s is unspecified", a)
	case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s is not a unicast address", a)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("%s is link-local", a)
	}
	return nil
}

// validate checks one peer; the FieldError's Field is relative to the peer.
func (p Peer) validate(localASN uint32) *FieldError {
	if err := validPeerAddr(p.Address); err != nil {
		return &FieldError{Field: "address", Err: err}
	}
	if err := validASN(p.ASN); err != nil {
		return &FieldError{Field: "asn", Err: err}
	}
	if len(p.Password) > maxPasswordLen {
		return fieldErr("password", "%d bytes, at most %d", len(p.Password), maxPasswordLen)
	}
	hold := p.HoldTime
	if hold != 0 {
		switch {
		case hold%time.Second != 0:
			return fieldErr("hold_time", "%s is not whole seconds", hold)
		case hold < minHoldTime || hold > maxHoldTime:
			return fieldErr("hold_time", "%s is out of range 3s to 65535s", hold)
		}
	} else {
		hold = DefaultHoldTime
	}
	if ka := p.KeepaliveTime; ka != 0 {
		switch {
		case ka%time.Second != 0 || ka < 0:
			return fieldErr("keepalive_time", "%s is not whole seconds", ka)
		case ka >= hold:
			return fieldErr("keepalive_time", "%s is not below the hold time %s", ka, hold)
		}
	}
	if p.SourceAddress.IsValid() {
		if err := validPeerAddr(p.SourceAddress); err != nil {
			return &FieldError{Field: "source_address", Err: err}
		}
		if p.SourceAddress.Is4() != p.Address.Is4() {
			return fieldErr("source_address", "%s is not of the family of %s", p.SourceAddress, p.Address)
		}
	}
	if p.EBGPMultihop != 0 && p.ASN == localASN {
		return fieldErr("ebgp_multihop", "only for eBGP, and peer asn %d is the local asn", p.ASN)
	}
	if b := p.BFD; b != nil {
		if p.EBGPMultihop != 0 {
			// gobgp's BFD is single-hop only (RFC 5881).
			return fieldErr("bfd", "single-hop BFD only, not with ebgp_multihop")
		}
		for _, f := range []struct {
			name string
			d    time.Duration
		}{{"bfd.min_rx", b.MinRx}, {"bfd.min_tx", b.MinTx}} {
			if f.d < minBFDInterval || f.d > maxBFDInterval {
				return fieldErr(f.name, "%s is out of range 50ms to 10s", f.d)
			}
			if f.d%time.Microsecond != 0 {
				return fieldErr(f.name, "%s is finer than a microsecond", f.d)
			}
		}
		if b.Multiplier == 0 {
			return fieldErr("bfd.multiplier", "required, 1 to 255")
		}
	}
	return nil
}

// port returns the port to dial.
func (p Peer) port() uint16 {
	if p.Port == 0 {
		return DefaultPort
	}
	return p.Port
}

// holdTime returns the effective hold time.
func (p Peer) holdTime() time.Duration {
	if p.HoldTime == 0 {
		return DefaultHoldTime
	}
	return p.HoldTime
}

// keepaliveTime returns the effective keepalive interval.
func (p Peer) keepaliveTime() time.Duration {
	if p.KeepaliveTime == 0 {
		return (p.holdTime() / 3).Truncate(time.Second)
	}
	return p.KeepaliveTime
}
