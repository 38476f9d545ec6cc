// Package config defines dsrd's configuration files (director, witness and
// realserver), decodes them from YAML with a position for every value, applies
// defaults in one place and validates them, reporting every error at once as
// file:line:col: message.
package config

import (
	"net/netip"
	"time"
)

// Kind names which daemon a configuration file is for.
type Kind string

// The kinds of configuration file.
const (
	KindDirector   Kind = "director"
	KindWitness    Kind = "witness"
	KindRealserver Kind = "realserver"
)

// Director is the configuration of a director node: its own settings, the
// cluster it belongs to, and the load-balancing configuration (VIPs and
// services) it proposes to the cluster.
type Director struct {
	Node     Node      `yaml:"node"`
	Cluster  Cluster   `yaml:"cluster"`
	IPVS     IPVS      `yaml:"ipvs"`
	VIPs     []VIP     `yaml:"vips"`
	Services []Service `yaml:"services"`
	// BGP is this director's BGP speaker, which announces the VIPs of
	// mode bgp to the routers. Node-local: never replicated.
	BGP *BGP `yaml:"bgp"`
}

// Witness is the configuration of a witness: a Raft voter that never owns
// VIPs nor touches IPVS.
type Witness struct {
	Node    Node    `yaml:"node"`
	Cluster Cluster `yaml:"cluster"`
}

// Node holds the settings of one dsrd process.
type Node struct {
	// ID is the node's unique name in the cluster (Raft server ID).
	ID string `yaml:"id"`
	// Interface is where VIPs are added by default (directors only).
	Interface string `yaml:"interface"`
	// DataDir holds Raft state, snapshots and saved sysctl values.
	DataDir string `yaml:"data_dir"`
	// APISocket is the unix socket of the local API used by dsrd status.
	APISocket string `yaml:"api_socket"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`
	// MetricsAddress is host:port of the Prometheus endpoint; empty is off.
	MetricsAddress string `yaml:"metrics_address"`
	// Notify are the programs run on VIP ownership transitions (directors
	// only).
	Notify Notify `yaml:"notify"`
}

// Notify names the programs a director runs when its VIP ownership state
// changes, as keepalived's notify_master, notify_backup, notify_fault and
// notify: each an argv (absolute program path, then its arguments) run
// without a shell. Empty runs nothing.
type Notify struct {
	// Master runs on taking the VIPs (MASTER).
	Master []string `yaml:"master"`
	// Backup runs on not holding them (BACKUP), at start too.
	Backup []string `yaml:"backup"`
	// Fault runs when a VIP's interface goes down (FAULT).
	Fault []string `yaml:"fault"`
	// Any runs on every transition, after the state's own program.
	Any []string `yaml:"any"`
	// Timeout bounds each run: the program is then killed.
	Timeout Duration `yaml:"timeout"`
}

// Cluster configures the Raft cluster of directors and witnesses.
type Cluster struct {
	// Bind is the host:port Raft listens on.
	Bind netip.AddrPort `yaml:"bind"`
	// Advertise is the host:port peers reach this node on; Bind when unset.
	Advertise netip.AddrPort `yaml:"advertise"`
	// Peers lists every voter, this node included, as id@host:port.
	Peers []Peer `yaml:"peers"`
	// TLS enables mutual TLS between peers when its files are set. It is
	// required unless every address is loopback or Insecure is set.
	TLS TLS `yaml:"tls"`
	// Insecure runs the Raft port without mutual TLS off loopback: anyone
	// who can reach it can change the cluster. A warning is logged at
	// every start.
	Insecure bool `yaml:"insecure"`
	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and CommitTimeout
	// are hashicorp/raft's timings; they bound how fast a failover is.
	HeartbeatTimeout   Duration `yaml:"heartbeat_timeout"`
	ElectionTimeout    Duration `yaml:"election_timeout"`
	LeaderLeaseTimeout Duration `yaml:"leader_lease_timeout"`
	CommitTimeout      Duration `yaml:"commit_timeout"`
}

// Peer is one Raft voter, written id@host:port.
type Peer struct {
	ID      string
	Address netip.AddrPort
}

// TLS names the PEM files for mutual TLS between cluster members.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	CA   string `yaml:"ca"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }

// The types the directors replicate (IPVS, VIP, Announce, Service,
// Persistence, Real, HealthCheck) are translated into raft's own wire types
// by internal/clusterspec. Their json tags are the wire format's keys
// (frozen at the Go field names of the first release; docs/wire.md):
// clusterspec's round-trip test holds the two encodings equal. Renaming a
// field keeps its json tag.

// IPVS holds kernel-wide IPVS settings a director applies.
type IPVS struct {
	// TCPTimeout, TCPFinTimeout and UDPTimeout are IPVS connection timeouts
	// (ipvsadm --set); zero keeps the kernel's value.
	TCPTimeout    Duration `yaml:"tcp_timeout" json:"TCPTimeout"`
	TCPFinTimeout Duration `yaml:"tcp_fin_timeout" json:"TCPFinTimeout"`
	UDPTimeout    Duration `yaml:"udp_timeout" json:"UDPTimeout"`
	// SloppyTCP lets a director pick up TCP flows mid-stream after a failover.
	SloppyTCP *bool `yaml:"sloppy_tcp" json:"SloppyTCP"`
	// ExpireNodestConn expires connections to deleted destinations at once.
	ExpireNodestConn *bool `yaml:"expire_nodest_conn" json:"ExpireNodestConn"`
	// ExpireQuiescentTemplate expires persistence templates of weight-0 reals.
	ExpireQuiescentTemplate *bool `yaml:"expire_quiescent_template" json:"ExpireQuiescentTemplate"`
	// ConnReuseMode is net.ipv4.vs.conn_reuse_mode (0, 1 or 2).
	ConnReuseMode *int `yaml:"conn_reuse_mode" json:"ConnReuseMode"`
	// DropEntry, DropPacket and SecureTCP are IPVS's defences against a
	// connection table that eats the memory (a SYN flood): off, auto
	// (while the available memory is below AMemThresh) or always. Empty
	// means the default (DefaultDropEntry...), applied by the director:
	// a file that does not name them replicates as before.
	DropEntry  string `yaml:"drop_entry" json:"DropEntry,omitempty"`
	DropPacket string `yaml:"drop_packet" json:"DropPacket,omitempty"`
	SecureTCP  string `yaml:"secure_tcp" json:"SecureTCP,omitempty"`
	// AMemThresh is the free memory below which the auto defences act
	// (net.ipv4.vs.amemthresh, converted to pages on each director); 0
	// leaves the kernel's.
	AMemThresh ByteSize `yaml:"amemthresh" json:"AMemThresh,omitempty"`
	// Sync runs IPVS's connection synchronisation daemons: the VIP owner
	// sends its connections to a multicast group, the other directors
	// receive them, so that flows of any scheduler survive a failover.
	// Absent: no daemon (and a file that does not name it replicates as
	// before).
	Sync *IPVSSync `yaml:"sync" json:"Sync,omitempty"`
}

// IPVSSync configures the IPVS connection synchronisation daemons
// (ipvsadm --start-daemon). Zero values mean the kernel's defaults.
type IPVSSync struct {
	// Enabled runs the daemons.
	Enabled bool `yaml:"enabled" json:"Enabled"`
	// Interface is the interface the sync multicast goes out of and comes
	// in on; empty: each director's node.interface.
	Interface string `yaml:"interface" json:"Interface,omitempty"`
	// SyncID (0-255) is put in the master's messages; a backup takes only
	// its own id's (0 takes all), so clusters can share a segment.
	SyncID int `yaml:"sync_id" json:"SyncID,omitempty"`
	// MaxLen is the largest sync message (UDP payload) in bytes, 1024 to
	// 65507 (65487 for an IPv6 group); 0: the kernel's choice from the
	// interface's MTU (1472 on the master).
	MaxLen int `yaml:"maxlen" json:"MaxLen,omitempty"`
	// Group is the multicast group (IPv4 or IPv6); unset: 224.0.0.81.
	Group netip.Addr `yaml:"group" json:"Group,omitzero"`
	// Port is the group's UDP port; 0: 8848.
	Port int `yaml:"port" json:"Port,omitempty"`
	// TTL is the multicast TTL (hop limit), 1-255; 0: 1.
	TTL int `yaml:"ttl" json:"TTL,omitempty"`
}

// ByteSize is an amount of memory, written with a binary unit: 512KiB,
// 256MiB, 1GiB.
type ByteSize uint64

// VIP is a virtual IP address: in mode arp owned by the Raft leader and
// announced with gratuitous ARP / unsolicited NA, in mode bgp held on lo by
// every ready director and announced over BGP.
type VIP struct {
	Address netip.Addr `yaml:"address" json:"Address"`
	// Mode is how the VIP is owned and announced: arp (the default) or
	// bgp.
	Mode VIPMode `yaml:"mode" json:"Mode,omitempty"`
	// Interface overrides Node.Interface for this VIP (mode arp); a bgp
	// VIP is held on lo.
	Interface string `yaml:"interface" json:"Interface"`
	// Announce configures gratuitous ARP (IPv4) or unsolicited NA (IPv6).
	Announce Announce `yaml:"announce" json:"Announce"`
	// Admission is the admission control of every service of the VIP
	// (docs/admission.md).
	Admission *Admission `yaml:"admission" json:"Admission,omitempty"`
}

// VIPMode is how a VIP is owned and announced.
type VIPMode string

// The VIP modes.
const (
	// ModeARP: the Raft leader holds the VIP on its interface and
	// announces it with gratuitous ARP / unsolicited NA.
	ModeARP VIPMode = "arp"
	// ModeBGP: every ready director holds the VIP on lo and announces it
	// over BGP; the routers spread flows over them by ECMP.
	ModeBGP VIPMode = "bgp"
)

// BGP is a director's BGP speaker: who it is and which routers it
// announces the bgp VIPs to. See docs/bgp.md.
type BGP struct {
	// ASN is this director's autonomous system number.
	ASN uint32 `yaml:"asn"`
	// RouterID is the BGP identifier, an IPv4 address; the node's cluster
	// address by default when that is IPv4.
	RouterID netip.Addr `yaml:"router_id"`
	// Communities are added to every announcement, each "asn:value".
	Communities []string `yaml:"communities"`
	// MED is the multi-exit discriminator of every announcement.
	MED *uint32 `yaml:"med"`
	// DrainDelay is how long a draining director keeps announcing with
	// the GRACEFUL_SHUTDOWN community before it withdraws (RFC 8326).
	DrainDelay Duration `yaml:"drain_delay"`
	// PartitionHold is how long a director cut off from the Raft majority
	// keeps announcing with its last configuration before it withdraws.
	PartitionHold Duration `yaml:"partition_hold"`
	// Peers are the routers.
	Peers []BGPPeer `yaml:"peers"`
}

// BGPPeer is one router the director announces to.
type BGPPeer struct {
	// Address is the router's address; its family is the family of the
	// VIPs announced to it.
	Address netip.Addr `yaml:"address"`
	// ASN is the router's autonomous system number.
	ASN uint32 `yaml:"asn"`
	// Port is the router's BGP port (179).
	Port uint16 `yaml:"port"`
	// Password enables TCP-MD5 signatures (RFC 2385).
	Password string `yaml:"password"`
	// HoldTime and KeepaliveTime are the session's timers.
	HoldTime      Duration `yaml:"hold_time"`
	KeepaliveTime Duration `yaml:"keepalive_time"`
	// SourceAddress is the local address of the session.
	SourceAddress netip.Addr `yaml:"source_address"`
	// EBGPMultihop is the TTL of an eBGP session to a router that is not
	// directly connected; zero is a direct session.
	EBGPMultihop uint8 `yaml:"ebgp_multihop"`
	// BFD, when set, runs Bidirectional Forwarding Detection on the
	// session so a lost director is noticed in a second.
	BFD *BFD `yaml:"bfd"`
}

// BFD are a session's BFD timers.
type BFD struct {
	MinRx      Duration `yaml:"min_rx"`
	MinTx      Duration `yaml:"min_tx"`
	Multiplier uint8    `yaml:"multiplier"`
}

// Announce configures how a new VIP owner tells its L2 segment.
type Announce struct {
	// Count is how many announcements make up the burst on takeover.
	Count int `yaml:"count" json:"Count"`
	// Interval spaces the burst; over 1 s because Linux ignores a second
	// update of the same neighbour within its locktime.
	Interval Duration `yaml:"interval" json:"Interval"`
	// Refresh repeats one announcement this often while owning the VIP;
	// zero disables the refresh.
	Refresh *Duration `yaml:"refresh" json:"Refresh"`
}

// Protocol is an IPVS service protocol.
type Protocol string

// The supported protocols.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	SCTP Protocol = "sctp"
)

// DownPolicy says what happens in IPVS to a real that fails its checks.
type DownPolicy string

// The down policies.
const (
	// DownWeightZero keeps the destination with weight 0: no new
	// connections, established ones continue.
	DownWeightZero DownPolicy = "weight0"
	// DownRemove deletes the destination.
	DownRemove DownPolicy = "remove"
)

// Forwarding is how IPVS sends a service's packets to a real.
type Forwarding string

// The forwarding methods.
const (
	// ForwardDR is direct routing: IPVS rewrites only the destination MAC,
	// so the real must be on the director's L2 segment. The default.
	ForwardDR Forwarding = "dr"
	// ForwardTunnel is IP-in-IP: IPVS encapsulates the packet to the
	// real's address, which may be in any routed subnet; the real
	// decapsulates it (the realserver agent's tunnel mode) and replies
	// straight to the client. See docs/tunnel.md.
	ForwardTunnel Forwarding = "tunnel"
)

// Service is one virtual service: a VIP and port (or a firewall mark) load
// balanced over reals in direct-routing (or tunnel) mode.
type Service struct {
	Name string `yaml:"name" json:"Name"`
	// VIP is the virtual address; it must be one of the configured VIPs.
	VIP netip.Addr `yaml:"vip" json:"VIP"`
	// Port is the virtual port; reals listen on the same port (DR cannot
	// remap ports). Zero with Protocol set means all ports (persistent only).
	Port uint16 `yaml:"port" json:"Port"`
	// Protocol is tcp, udp or sctp; unset for a fwmark service.
	Protocol Protocol `yaml:"protocol" json:"Protocol"`
	// FWMark selects the service by firewall mark instead of VIP and port;
	// VIP then only sets the address family.
	FWMark uint32 `yaml:"fwmark" json:"FWMark"`
	// Scheduler is rr, wrr, lc, wlc, sh or mh.
	Scheduler string `yaml:"scheduler" json:"Scheduler"`
	// SchedulerFlags are sh-fallback, sh-port, mh-fallback, mh-port.
	SchedulerFlags []string `yaml:"scheduler_flags" json:"SchedulerFlags"`
	// Persistence makes a client stick to a real.
	Persistence Persistence `yaml:"persistence" json:"Persistence"`
	// OnePacket schedules each UDP datagram on its own (ops).
	OnePacket bool `yaml:"one_packet" json:"OnePacket"`
	// DrainTimeout bounds how long a removed real is kept at weight 0
	// waiting for its connections to end.
	DrainTimeout Duration `yaml:"drain_timeout" json:"DrainTimeout"`
	// Quorum is the minimum number of healthy reals for the service to be up.
	Quorum int `yaml:"quorum" json:"Quorum"`
	// OnDown is what a failed check does to a real: weight0 or remove.
	OnDown DownPolicy `yaml:"on_down" json:"OnDown"`
	// SorryServer is added when every real is down; it listens on Port.
	SorryServer netip.Addr `yaml:"sorry_server" json:"SorryServer"`
	// HealthCheck is the service's check of every real.
	HealthCheck *HealthCheck `yaml:"health_check" json:"HealthCheck"`
	Reals       []Real       `yaml:"reals" json:"Reals"`
	// Forwarding is how packets reach the reals (and the sorry server):
	// dr (empty: the default) or tunnel. A real may override it.
	Forwarding Forwarding `yaml:"forwarding" json:"Forwarding,omitempty"`
	// Admission overrides, field by field, its VIP's admission control
	// (docs/admission.md).
	Admission *Admission `yaml:"admission" json:"Admission,omitempty"`
}

// RealForwarding returns the forwarding method of real r of s: the real's
// own, else the service's, else dr.
func (s *Service) RealForwarding(r *Real) Forwarding {
	switch {
	case r != nil && r.Forwarding != "":
		return r.Forwarding
	case s.Forwarding != "":
		return s.Forwarding
	}
	return ForwardDR
}

// Persistence configures IPVS persistent (sticky) scheduling.
type Persistence struct {
	// Timeout is how long a client's template lives; zero disables it.
	Timeout Duration `yaml:"timeout" json:"Timeout"`
	// Netmask groups clients: a prefix length (32 for IPv4, 128 for IPv6
	// means per client).
	Netmask int `yaml:"netmask" json:"Netmask"`
}

// Real is a backend server of a service.
type Real struct {
	Address netip.Addr `yaml:"address" json:"Address"`
	// Port, when set, must equal the service port (DR cannot remap ports).
	Port uint16 `yaml:"port" json:"Port"`
	// Weight is the IPVS weight while healthy, 0 to 65535.
	Weight *int `yaml:"weight" json:"Weight"`
	// UpperThreshold and LowerThreshold are IPVS connection thresholds;
	// zero means none.
	UpperThreshold uint32 `yaml:"upper_threshold" json:"UpperThreshold"`
	LowerThreshold uint32 `yaml:"lower_threshold" json:"LowerThreshold"`
	// HealthCheck overrides the service's check for this real.
	HealthCheck *HealthCheck `yaml:"health_check" json:"HealthCheck"`
	// Forwarding overrides the service's forwarding method for this real.
	Forwarding Forwarding `yaml:"forwarding" json:"Forwarding,omitempty"`
}

// CheckType names a health checker.
type CheckType string

// The health checkers.
const (
	CheckTCP   CheckType = "tcp"
	CheckHTTP  CheckType = "http"
	CheckHTTPS CheckType = "https"
	CheckUDP   CheckType = "udp"
	CheckDNS   CheckType = "dns"
	CheckICMP  CheckType = "icmp"
	CheckExec  CheckType = "exec"
	CheckAgent CheckType = "agent"
	CheckNone  CheckType = "none"
)

// HealthCheck configures how a real is checked. Fields that do not apply to
// Type are rejected by validation.
type HealthCheck struct {
	Type CheckType `yaml:"type" json:"Type"`
	// Interval between two checks of one real; Timeout bounds one check.
	Interval Duration `yaml:"interval" json:"Interval"`
	Timeout  Duration `yaml:"timeout" json:"Timeout"`
	// Rise consecutive successes mark a real up, Fall failures down.
	Rise int `yaml:"rise" json:"Rise"`
	Fall int `yaml:"fall" json:"Fall"`
	// Initial is the state before the first verdict: down or up.
	Initial string `yaml:"initial" json:"Initial"`
	// Address and Port override the real's address and the service port.
	Address netip.Addr `yaml:"address" json:"Address"`
	Port    uint16     `yaml:"port" json:"Port"`
	// Source is the local address checks are sent from.
	Source netip.Addr `yaml:"source" json:"Source"`

	// tcp: optional bytes to send and a substring to expect.
	Send   string `yaml:"send" json:"Send"`
	Expect string `yaml:"expect" json:"Expect"`

	// http, https, agent
	Method       string   `yaml:"method" json:"Method"`
	Path         string   `yaml:"path" json:"Path"`
	Host         string   `yaml:"host" json:"Host"`
	ExpectStatus []string `yaml:"expect_status" json:"ExpectStatus"`
	BodyRegexp   string   `yaml:"body_regexp" json:"BodyRegexp"`
	TLSServer    string   `yaml:"tls_server_name" json:"TLSServer"`
	TLSVerify    *bool    `yaml:"tls_verify" json:"TLSVerify"`

	// udp: Payload sent (Send) and, with NoReplyIsUp, silence without an
	// ICMP port unreachable within the timeout counts as up.
	NoReplyIsUp bool `yaml:"no_reply_is_up" json:"NoReplyIsUp"`

	// dns
	QueryName  string `yaml:"query_name" json:"QueryName"`
	QueryType  string `yaml:"query_type" json:"QueryType"`
	ExpectCode string `yaml:"expect_rcode" json:"ExpectCode"`
	// ExpectAnswer, when set, must appear in the answer section.
	ExpectAnswer string `yaml:"expect_answer" json:"ExpectAnswer"`

	// exec: the program and its arguments, run without a shell.
	Command []string `yaml:"command" json:"Command"`

	// tcp, http, https: the PROXY protocol header sent first ("v1" or
	// "v2"), for reals that accept only connections that start with one
	// (HAProxy's accept-proxy, nginx's proxy_protocol).
	ProxyProtocol string `yaml:"proxy_protocol" json:"ProxyProtocol,omitempty"`

	// tcp, http, https, udp, dns: send the check to the VIP and the
	// service's port (or the check's port) through IPVS, to this real
	// only, as client traffic goes: a real that would drop VIP traffic
	// (VIP not on lo, ARP settings, a firewall on the VIP) fails it.
	ThroughVIP bool `yaml:"through_vip" json:"ThroughVIP,omitempty"`
}

// MaxThroughVIPChecks bounds the reals checked through the VIP in one
// configuration: each has an IPVS service of its own (a firewall mark)
// on every director.
const MaxThroughVIPChecks = 4096

// Realserver is the configuration of the backend agent.
type Realserver struct {
	// VIPs are put on lo (IPv4 /32, IPv6 /128 nodad).
	VIPs []netip.Addr `yaml:"vips"`
	// Interfaces face the directors; arp_ignore/arp_announce are set on them.
	Interfaces []string `yaml:"interfaces"`
	// DataDir keeps the original sysctl values for cleanup.
	DataDir string `yaml:"data_dir"`
	// CleanupOnExit removes the VIPs and restores sysctls on shutdown.
	CleanupOnExit bool `yaml:"cleanup_on_exit"`
	// StatusAddress is host:port of the status endpoint; empty is off.
	StatusAddress string `yaml:"status_address"`
	// ResyncInterval re-applies the whole state periodically.
	ResyncInterval Duration `yaml:"resync_interval"`
	// SYNCookies keeps net.ipv4.tcp_syncookies at 1 or above.
	SYNCookies bool `yaml:"syn_cookies"`
	// Tunnel readies the host for tunnel forwarding too: the ipip (and
	// ip6_tunnel) module loaded, tunl0 (ip6tnl0) up, rp_filter 0 on all
	// and tunl0 (docs/tunnel.md).
	Tunnel    bool   `yaml:"tunnel"`
	LogLevel  string `yaml:"log_level"`
	LogFormat string `yaml:"log_format"`
}

// Duration is a time.Duration written as a Go duration string ("1.5s").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }
