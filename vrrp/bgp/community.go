package bgp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Well-known communities (IANA "BGP Well-known Communities").
const (
	// CommunityGracefulShutdown is GRACEFUL_SHUTDOWN, 65535:0 (RFC 8326):
	// the routers lower the route's preference, so traffic moves away
	// before the route is withdrawn.
	CommunityGracefulShutdown  uint32 = 0xFFFF0000
	communityBlackhole         uint32 = 0xFFFF029A // RFC 7999
	communityNoExport          uint32 = 0xFFFFFF01 // RFC 1997
	communityNoAdvertise       uint32 = 0xFFFFFF02 // RFC 1997
	communityNoExportSubconfed uint32 = 0xFFFFFF03 // RFC 1997
	communityNoPeer            uint32 = 0xFFFFFF04 // RFC 3765
)

// GracefulShutdownMED is the MED a draining director announces with: the
// worst but one (4294967295 is treated as infinity by some routers).
const GracefulShutdownMED uint32 = 4294967294

var wellKnownCommunities = map[string]uint32{
	"no-export":           communityNoExport,
	"no-advertise":        communityNoAdvertise,
	"no-export-subconfed": communityNoExportSubconfed,
	"no-peer":             communityNoPeer,
	"blackhole":           communityBlackhole,
	"graceful-shutdown":   CommunityGracefulShutdown,
}

// ParseCommunity parses a standard community (RFC 1997): "asn:value", each
// a decimal 0 to 65535, or a well-known name (no-export, no-advertise,
// no-export-subconfed, no-peer, blackhole, graceful-shutdown).
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnownCommunities[s]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want asn:value or a well-known name", s)
	}
	h, err := parseUint16(hi)
	if err != nil {
		return 0, fmt.Errorf("community %q: asn: %w", s, err)
	}
	l, err := parseUint16(lo)
	if err != nil {
		return 0, fmt.Errorf("community %q: value: %w", s, err)
	}
	return uint32(h)<<16 | uint32(l), nil
}

// parseUint16 parses a plain decimal: digits only, no sign, no spaces.
func parseUint16(s string) (uint16, error) {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errors.New("not a number 0 to 65535")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, errors.New("not a number 0 to 65535")
	}
	return uint16(n), nil
}

// parseConfigCommunity parses a configured community: ParseCommunity
// without GRACEFUL_SHUTDOWN, which only a drain adds (SetGraceful).
func parseConfigCommunity(s string) (uint32, error) {
	v, err := ParseCommunity(s)
	if err != nil {
		return 0, err
	}
	if v == CommunityGracefulShutdown {
		return 0, fmt.Errorf("community %q is GRACEFUL_SHUTDOWN, which a drain adds: not configurable", s)
	}
	return v, nil
}

// formatCommunity writes a community as "asn:value".
func formatCommunity(c uint32) string {
	return strconv.FormatUint(uint64(c>>16), 10) + ":" + strconv.FormatUint(uint64(c&0xFFFF), 10)
}
