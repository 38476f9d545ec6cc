// Package admission decides, before IPVS, whether a packet for a virtual
// service may go on: per-service allow and deny source prefix lists, a
// per-source rate of new connections and a per-service cap on new
// connections, programmed as one nftables table (inet dsrd) that dsrd owns
// and replaces as a whole in one netlink batch.
//
// Where it hooks: the table's base chain is a filter chain on the input
// hook at priority 0 (NF_IP_PRI_FILTER). IPVS registers its LOCAL_IN hooks
// at NF_IP_PRI_NAT_SRC-2 (98, ip_vs_reply4) and NF_IP_PRI_NAT_SRC-1 (99,
// ip_vs_remote_request4), and the IPv6 ones at the same priorities: a
// lower number runs first, so every packet to a VIP meets these rules
// before IPVS schedules it. Verified in the VM lab (tests/e2e
// admission_test.go): a denied source's SYNs raise the deny counter and
// never create an IPVS connection entry.
//
// What is matched: allow and deny apply to every packet of a service
// (with net.ipv4.vs.sloppy_tcp=1 IPVS creates a connection from a
// mid-stream packet, so a denied source must not get its ACKs through
// either). The rate limits count new connections only: for TCP a segment
// with SYN set and ACK clear (no conntrack: the director keeps no state of
// its own that a flood could fill); UDP and SCTP have no stateless "first
// packet", so their rate limits count every datagram. Over a limit is
// dropped, never rejected: a reply would help a flood.
package admission

import (
	"fmt"
	"net/netip"
	"time"
)

// TableName is the nftables table dsrd owns, in the inet family. Nothing
// else is ever touched.
const TableName = "dsrd"

// ChainPriority is the base chain's priority on the input hook: the
// filter priority, before IPVS's LOCAL_IN hooks at 98 and 99.
const ChainPriority = 0

// MeterSize bounds the sources one service's rate meter tracks. A full
// meter adds no new source: such a source is then not rate limited per
// source, and only the service cap holds it (docs/admission.md).
const MeterSize = 65536

// MeterTimeout is how long a source stays in a meter after its last new
// connection; past it, the source starts again with a full burst.
const MeterTimeout = 60 * time.Second

// TopSize bounds the sources one service's offender set records: the
// sources whose packets the service's deny, allow or per-source rate rules
// dropped, each with its own packet counter. A full set records no new
// source (the packet is dropped all the same); the sources in it keep
// counting.
const TopSize = 4096

// TopTimeout is how long a source stays in an offender set after its last
// dropped packet; its counter then starts again from 0.
const TopTimeout = 10 * time.Minute

// MaxTop bounds the offending sources reported per service.
const MaxTop = 10

// MaxPrefixes bounds each allow and each deny list.
const MaxPrefixes = 100000

// Reason is why a packet was dropped; it names a counter.
type Reason string

// The drop reasons.
const (
	// ReasonDeny: the source is in the deny list.
	ReasonDeny Reason = "deny"
	// ReasonNotAllowed: the service has an allow list without the source.
	ReasonNotAllowed Reason = "not_allowed"
	// ReasonRate: the source (or its prefix) exceeded its rate.
	ReasonRate Reason = "rate"
	// ReasonCap: the service exceeded its cap of new connections.
	ReasonCap Reason = "cap"
)

// Reasons lists every reason, in rule order.
var Reasons = []Reason{ReasonDeny, ReasonNotAllowed, ReasonRate, ReasonCap}

// Config is the admission control of every service of a director. A
// service without any admission setting is left out: its packets pass.
type Config struct {
	Services []Service
}

// Service is one service's admission control.
type Service struct {
	// Name is the service's name (unique; A-Z a-z 0-9 . _ -, at most 64
	// characters): it names the service's chain, sets and counters.
	Name string
	// Family is 4 or 6; Protocol "tcp", "udp" or "sctp" ("" for a fwmark
	// service); VIP and Port identify the service (Port 0: all ports), or
	// FWMark when not 0.
	Family   int
	Protocol string
	VIP      netip.Addr
	Port     uint16
	FWMark   uint32
	// Allow, when not empty, admits only these sources; Deny drops these
	// sources (deny wins over allow). Prefixes of the other family are
	// ignored.
	Allow, Deny []netip.Prefix
	// SourceRate limits new connections per source; nil is no limit.
	SourceRate *SourceRate
	// ServiceRate caps new connections of the whole service; nil is no cap.
	ServiceRate *Rate
}

// Active reports whether the service has any admission setting.
func (s *Service) Active() bool {
	return len(s.Allow) > 0 || len(s.Deny) > 0 || s.SourceRate != nil || s.ServiceRate != nil
}

// Rate is Count new connections per Per (one second, minute, hour or day)
// with Burst more allowed at once.
type Rate struct {
	Count uint64
	Per   time.Duration
	Burst uint32
}

// String writes the rate as nft does: 100/second burst 5 packets.
func (r Rate) String() string {
	return fmt.Sprintf("%d/%s burst %d packets", r.Count, unitName(r.Per), r.Burst)
}

// SourceRate is a rate per source, sources grouped by prefix length:
// PrefixV4 and PrefixV6 bits of the source address (32 and 128: per
// address).
type SourceRate struct {
	Rate
	PrefixV4, PrefixV6 int
}

func unitName(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return d.String()
}
