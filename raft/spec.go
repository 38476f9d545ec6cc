package raft

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dsrd/dsrd/ipvs"
)

// The replicated specification: the wire types of the load-balancing part
// of a director's configuration that every director shares through Raft.
// They belong to this package, not to the configuration file's schema: the
// edge (internal/clusterspec) translates a file into a Spec. Their JSON
// encoding is the Raft log's and the snapshots' format, frozen at the keys
// the first release wrote (the Go field names of the file's types) and
// pinned by the golden files under testdata/wire; docs/wire.md says how it
// may change. Field meanings are the configuration file's
// (docs/config.md).

// Spec is the load-balancing part of a director's configuration file, the
// part every director of a cluster shares through Raft: kernel-wide IPVS
// settings, the VIPs and the services. Node-local settings (interface,
// data dir, cluster membership) are not part of it.
type Spec struct {
	IPVS     IPVSSettings `json:"ipvs"`
	VIPs     []VIP        `json:"vips"`
	Services []Service    `json:"services"`
}

// IPVSSettings are the kernel-wide IPVS settings (ipvs: in the file).
type IPVSSettings struct {
	TCPTimeout              Duration `json:"TCPTimeout"`
	TCPFinTimeout           Duration `json:"TCPFinTimeout"`
	UDPTimeout              Duration `json:"UDPTimeout"`
	SloppyTCP               *bool    `json:"SloppyTCP"`
	ExpireNodestConn        *bool    `json:"ExpireNodestConn"`
	ExpireQuiescentTemplate *bool    `json:"ExpireQuiescentTemplate"`
	ConnReuseMode           *int     `json:"ConnReuseMode"`
	// DropEntry, DropPacket, SecureTCP and AMemThresh (bytes) are IPVS's
	// defences; empty and 0 mean each director's defaults. Added without
	// a new command version (docs/wire.md, rule 2): a member that ignores
	// them keeps the kernel's defences, which changes nothing the members
	// agree on.
	DropEntry  string `json:"DropEntry,omitempty"`
	DropPacket string `json:"DropPacket,omitempty"`
	SecureTCP  string `json:"SecureTCP,omitempty"`
	AMemThresh uint64 `json:"AMemThresh,omitempty"`
	// Sync configures the IPVS connection sync daemons; nil runs none.
	// Added without a new command version (docs/wire.md, rule 2): a
	// member that ignores it runs no daemon, as before, and programs the
	// same IPVS state; only its own connections' survival of a failover
	// depends on it, nothing the members must agree on.
	Sync *SyncSettings `json:"Sync,omitempty"`
}

// SyncSettings are the IPVS connection sync daemons' settings (ipvs.sync in
// the file); zero values mean the kernel's defaults and an empty Interface
// each director's node.interface.
type SyncSettings struct {
	Enabled   bool       `json:"Enabled"`
	Interface string     `json:"Interface,omitempty"`
	SyncID    int        `json:"SyncID,omitempty"`
	MaxLen    int        `json:"MaxLen,omitempty"`
	Group     netip.Addr `json:"Group,omitzero"`
	Port      int        `json:"Port,omitempty"`
	TTL       int        `json:"TTL,omitempty"`
}

// VIP is a virtual IP address; an empty Interface means each director's
// node.interface.
type VIP struct {
	Address netip.Addr `json:"Address"`
	// Mode is how the VIP is owned: "" (ARP: the leader holds it) or
	// VIPModeBGP. Added in command version 2: an older member would ignore
	// it and take a bgp VIP for an ARP one, so a spec that uses it travels
	// only in CommandSetConfigV2 (Spec.Version).
	Mode      string   `json:"Mode,omitempty"`
	Interface string   `json:"Interface"`
	Announce  Announce `json:"Announce"`
	// Admission is the admission control of the VIP's services. Added
	// with CommandSetConfigV3 (needsV3): a member that ignored it would
	// serve the services unprotected.
	Admission *Admission `json:"Admission,omitempty"`
}

// VIPModeBGP is the Mode of a VIP every ready director holds on lo and
// announces over BGP.
const VIPModeBGP = "bgp"

// Version returns the command version a set-config of this spec needs: 1,
// 2 when a VIP has a Mode, 4 when it uses a field of CommandSetConfigV3
// (needsV3).
func (s Spec) Version() int {
	return s.setConfigType().Version()
}

// usesModes reports whether a VIP has a Mode (command version 2).
func (s Spec) usesModes() bool {
	for _, v := range s.VIPs {
		if v.Mode != "" {
			return true
		}
	}
	return false
}

// needsV3 reports whether s uses a field added with CommandSetConfigV3:
// one a version 3 binary would ignore and so act differently from the
// members that read it. Every such field is listed here and cleared by
// asVersion2.
func (s Spec) needsV3() bool {
	return s.usesV3Checks() || s.usesTunnel() || s.usesAdmission()
}

// usesTunnel reports whether a service or a real names a forwarding
// method (clusterspec writes only tunnel, and dr only on a real of a
// tunnel service): a member that ignored it would program direct routing
// to a real that is not on its segment, and the real's packets would go
// nowhere.
func (s Spec) usesTunnel() bool {
	for i := range s.Services {
		if s.Services[i].Forwarding != "" {
			return true
		}
		for j := range s.Services[i].Reals {
			if s.Services[i].Reals[j].Forwarding != "" {
				return true
			}
		}
	}
	return false
}

// usesAdmission reports whether a VIP or a service has admission control:
// a member that ignored it would serve the services unprotected.
func (s Spec) usesAdmission() bool {
	for i := range s.VIPs {
		if s.VIPs[i].Admission != nil {
			return true
		}
	}
	for i := range s.Services {
		if s.Services[i].Admission != nil {
			return true
		}
	}
	return false
}

// usesV3Checks reports whether a health check sends a PROXY protocol
// header or goes through the VIP: a member that ignored either would
// check differently (without the header, or at the real's own address)
// and disagree with the others on the reals' health.
func (s Spec) usesV3Checks() bool {
	uses := func(c *HealthCheck) bool { return c != nil && (c.ProxyProtocol != "" || c.ThroughVIP) }
	for i := range s.Services {
		if uses(s.Services[i].HealthCheck) {
			return true
		}
		for j := range s.Services[i].Reals {
			if uses(s.Services[i].Reals[j].HealthCheck) {
				return true
			}
		}
	}
	return false
}

// asVersion2 returns s as a binary of command version 2 or 3 decodes it:
// the fields of CommandSetConfigV3 are unknown there. It never changes s's
// own slices.
func (s Spec) asVersion2() Spec {
	if !s.needsV3() {
		return s
	}
	noProxy := func(c *HealthCheck) *HealthCheck {
		if c == nil || c.ProxyProtocol == "" && !c.ThroughVIP {
			return c
		}
		cp := *c
		cp.ProxyProtocol, cp.ThroughVIP = "", false
		return &cp
	}
	if s.usesAdmission() {
		vips := make([]VIP, len(s.VIPs))
		copy(vips, s.VIPs)
		for i := range vips {
			vips[i].Admission = nil
		}
		s.VIPs = vips
	}
	services := make([]Service, len(s.Services))
	copy(services, s.Services)
	for i := range services {
		svc := &services[i]
		svc.Admission = nil
		svc.HealthCheck = noProxy(svc.HealthCheck)
		svc.Forwarding = ""
		if svc.Reals == nil {
			continue
		}
		reals := make([]Real, len(svc.Reals))
		copy(reals, svc.Reals)
		for j := range reals {
			reals[j].HealthCheck = noProxy(reals[j].HealthCheck)
			reals[j].Forwarding = ""
		}
		svc.Reals = reals
	}
	s.Services = services
	return s
}

// asVersion1 returns s as a binary of command version 1 decodes it: VIP
// modes are unknown there.
func (s Spec) asVersion1() Spec {
	s = s.asVersion2()
	if !s.usesModes() {
		return s
	}
	vips := make([]VIP, len(s.VIPs))
	copy(vips, s.VIPs)
	for i := range vips {
		vips[i].Mode = ""
	}
	s.VIPs = vips
	return s
}

// setConfigType returns the command type that carries a set-config of s.
func (s Spec) setConfigType() CommandType {
	switch {
	case s.needsV3():
		return CommandSetConfigV3
	case s.usesModes():
		return CommandSetConfigV2
	}
	return CommandSetConfig
}

// Announce is a VIP's takeover announcements.
type Announce struct {
	Count    int       `json:"Count"`
	Interval Duration  `json:"Interval"`
	Refresh  *Duration `json:"Refresh"`
}

// Service is one virtual service.
type Service struct {
	Name           string       `json:"Name"`
	VIP            netip.Addr   `json:"VIP"`
	Port           uint16       `json:"Port"`
	Protocol       string       `json:"Protocol"`
	FWMark         uint32       `json:"FWMark"`
	Scheduler      string       `json:"Scheduler"`
	SchedulerFlags []string     `json:"SchedulerFlags"`
	Persistence    Persistence  `json:"Persistence"`
	OnePacket      bool         `json:"OnePacket"`
	DrainTimeout   Duration     `json:"DrainTimeout"`
	Quorum         int          `json:"Quorum"`
	OnDown         string       `json:"OnDown"`
	SorryServer    netip.Addr   `json:"SorryServer"`
	HealthCheck    *HealthCheck `json:"HealthCheck"`
	Reals          []Real       `json:"Reals"`
	// Forwarding is "" (direct routing) or "tunnel" (IP-in-IP), for
	// the reals that do not name their own. Added in command version 4
	// (needsV3).
	Forwarding string `json:"Forwarding,omitempty"`
	// Admission overrides, field by field, its VIP's (CommandSetConfigV3).
	Admission *Admission `json:"Admission,omitempty"`
}

// Admission is admission control (docs/admission.md): source prefix
// lists and new-connection rates.
type Admission struct {
	Allow       []netip.Prefix `json:"Allow,omitempty"`
	Deny        []netip.Prefix `json:"Deny,omitempty"`
	SourceRate  *SourceRate    `json:"SourceRate,omitempty"`
	ServiceRate *ServiceRate   `json:"ServiceRate,omitempty"`
}

// Rate is Count events per Per.
type Rate struct {
	Count uint64   `json:"Count"`
	Per   Duration `json:"Per"`
}

// SourceRate is a per-source rate, sources grouped by prefix length.
type SourceRate struct {
	Rate     Rate   `json:"Rate"`
	Burst    uint32 `json:"Burst"`
	PrefixV4 int    `json:"PrefixV4"`
	PrefixV6 int    `json:"PrefixV6"`
}

// ServiceRate is a cap on a service's new connections.
type ServiceRate struct {
	Rate  Rate   `json:"Rate"`
	Burst uint32 `json:"Burst"`
}

// Persistence is a service's persistent scheduling.
type Persistence struct {
	Timeout Duration `json:"Timeout"`
	Netmask int      `json:"Netmask"`
}

// Real is a backend server of a service.
type Real struct {
	Address        netip.Addr   `json:"Address"`
	Port           uint16       `json:"Port"`
	Weight         *int         `json:"Weight"`
	UpperThreshold uint32       `json:"UpperThreshold"`
	LowerThreshold uint32       `json:"LowerThreshold"`
	HealthCheck    *HealthCheck `json:"HealthCheck"`
	// Forwarding overrides the service's: "" (the service's), "dr" or
	// "tunnel". Added in command version 4 (needsV3).
	Forwarding string `json:"Forwarding,omitempty"`
}

// HealthCheck is how a real is checked.
type HealthCheck struct {
	Type         string     `json:"Type"`
	Interval     Duration   `json:"Interval"`
	Timeout      Duration   `json:"Timeout"`
	Rise         int        `json:"Rise"`
	Fall         int        `json:"Fall"`
	Initial      string     `json:"Initial"`
	Address      netip.Addr `json:"Address"`
	Port         uint16     `json:"Port"`
	Source       netip.Addr `json:"Source"`
	Send         string     `json:"Send"`
	Expect       string     `json:"Expect"`
	Method       string     `json:"Method"`
	Path         string     `json:"Path"`
	Host         string     `json:"Host"`
	ExpectStatus []string   `json:"ExpectStatus"`
	BodyRegexp   string     `json:"BodyRegexp"`
	TLSServer    string     `json:"TLSServer"`
	TLSVerify    *bool      `json:"TLSVerify"`
	NoReplyIsUp  bool       `json:"NoReplyIsUp"`
	QueryName    string     `json:"QueryName"`
	QueryType    string     `json:"QueryType"`
	ExpectCode   string     `json:"ExpectCode"`
	ExpectAnswer string     `json:"ExpectAnswer"`
	Command      []string   `json:"Command"`
	// ProxyProtocol is the PROXY protocol header a tcp, http or https
	// check sends first: "", "v1" or "v2". Added in command version 4
	// (needsV3).
	ProxyProtocol string `json:"ProxyProtocol,omitempty"`
	// ThroughVIP sends the check to the VIP through IPVS, to this real
	// only. Added in command version 4 (needsV3).
	ThroughVIP bool `json:"ThroughVIP,omitempty"`
}

// Duration is a time.Duration written as a Go duration string ("1.5s"),
// as the replicated format has it.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration string, refusing negative durations.
func (d *Duration) UnmarshalText(text []byte) error {
	x, err := time.ParseDuration(string(text))
	if err != nil {
		return fmt.Errorf("duration %q: %w", text, err)
	}
	if x < 0 {
		return fmt.Errorf("duration %q is negative", text)
	}
	*d = Duration(x)
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
// admin and health states; the zero key when the service has none (a spec
// that fails validation).
func (s *Service) Key() ipvs.ServiceKey {
	k, _ := ipvs.ServiceKeyOf(s.Protocol, s.VIP, s.Port, s.FWMark, s.Family())
	return k
}

// family returns 4 or 6.
func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// SpecValidator checks a spec by the rules of a director's configuration
// file. The edge provides it (internal/clusterspec.Validate): every spec
// is checked on every path, the peer protocol, the leader's submission and
// the FSM's Apply, by the same rules as the file.
type SpecValidator func(Spec) error

// errNoValidator is what a spec is checked against when a node was given
// no SpecValidator: every non-empty spec is refused, never accepted
// unchecked.
var errNoValidator = errors.New("no spec validator: this node cannot check a configuration")
