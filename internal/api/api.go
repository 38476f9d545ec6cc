// Package api is the director's and witness's local control interface: an
// HTTP+JSON API on a root-only unix socket used by dsrd status, drain,
// enable, failover, reload and cluster, and the peer protocol by which a
// follower forwards a cluster write to the leader. The types here are the
// wire format; Backend is what a daemon implements to serve them.
package api

import (
	"context"
	"net/netip"
	"time"
)

// Backend is what the API serves: a director or a witness. Methods that
// change the cluster are valid on any node; the backend forwards them to
// the leader when it is not the leader.
type Backend interface {
	// Status is this node's view: cluster, VIPs, services and reals.
	Status(ctx context.Context) (Status, error)
	// SetAdmin sets the admin state of a real: service is a service name
	// or key (tcp/203.0.113.10:80), state enabled, drained or disabled.
	SetAdmin(ctx context.Context, req AdminRequest) (AdminResult, error)
	// Failover transfers leadership, to the node named by to when set.
	Failover(ctx context.Context, to string) (FailoverResult, error)
	// Reload re-reads the configuration file; an invalid file changes
	// nothing and its errors come back in the result.
	Reload(ctx context.Context) (ReloadResult, error)
	// Members lists the Raft configuration.
	Members(ctx context.Context) ([]Member, error)
	// Join adds a node to the cluster; Remove removes one.
	Join(ctx context.Context, req JoinRequest) error
	Remove(ctx context.Context, id string) error
}

// Status is one node's view of the cluster and of its own IPVS.
type Status struct {
	Node string `json:"node"`
	// Role is director or witness.
	Role string `json:"role"`
	// Version is the dsrd release the node runs (as "dsrd version" prints
	// it first, without the "dsrd" prefix).
	Version string `json:"version"`
	// CommandVersion is the highest Raft command version the node can
	// apply (raft.CommandVersion); leaders read it before using a newer
	// command.
	CommandVersion int  `json:"command_version"`
	Raft           Raft `json:"raft"`
	// Members is the Raft configuration as this node knows it.
	Members []Member `json:"members"`
	// VRRPState is MASTER, BACKUP or FAULT (directors only).
	VRRPState string `json:"vrrp_state,omitempty"`
	// VIPs are the configured VIPs and whether this node holds them.
	VIPs []VIP `json:"vips,omitempty"`
	// BGP is the director's BGP speaker, when it has a bgp section.
	BGP *BGP `json:"bgp,omitempty"`
	// Generation is the cluster configuration's generation;
	// RunningGeneration the one this director's IPVS runs.
	Generation        uint64 `json:"generation"`
	RunningGeneration uint64 `json:"running_generation"`
	ConfigHash        string `json:"config_hash,omitempty"`
	// Reload is the outcome of the last reload of the local file.
	Reload ReloadResult `json:"reload"`
	// Reconcile is the outcome of the last IPVS reconcile.
	Reconcile Reconcile `json:"reconcile"`
	// IPVS is this director's IPVS as a whole: its connections and its
	// defences against a full connection table.
	IPVS     *IPVSStatus `json:"ipvs,omitempty"`
	Services []Service   `json:"services,omitempty"`
	// Peers are the other members' running generations, filled in by
	// dsrd status from each member (best effort).
	Peers []Peer `json:"peers,omitempty"`
}

// Raft is the node's Raft state.
type Raft struct {
	State         string    `json:"state"`
	Leader        bool      `json:"leader"`
	LeaderID      string    `json:"leader_id"`
	LeaderAddress string    `json:"leader_address"`
	Term          uint64    `json:"term"`
	LastContact   time.Time `json:"last_contact,omitzero"`
	CommitIndex   uint64    `json:"commit_index"`
	AppliedIndex  uint64    `json:"applied_index"`
	// TLS describes this node's cluster certificate; nil without TLS.
	TLS *CertStatus `json:"tls,omitempty"`
	// PortConns is the number of inbound connections on the Raft port.
	PortConns int `json:"port_connections"`
	// Refused counts what the Raft port refused, by reason (raft.Refused*).
	Refused map[string]uint64 `json:"refused,omitempty"`
}

// CertStatus is a node's own cluster certificate.
type CertStatus struct {
	NodeID   string    `json:"node_id"`
	Role     string    `json:"role"`
	NotAfter time.Time `json:"not_after"`
}

// Member is one server of the Raft configuration.
type Member struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
}

// Peer is another member's running state as it reported it.
type Peer struct {
	ID                string `json:"id"`
	Role              string `json:"role,omitempty"`
	RunningGeneration uint64 `json:"running_generation"`
	VRRPState         string `json:"vrrp_state,omitempty"`
	// Error says why the member could not be asked.
	Error string `json:"error,omitempty"`
}

// VIP is a configured VIP on this director.
type VIP struct {
	Address   netip.Addr `json:"address"`
	Interface string     `json:"interface"`
	Held      bool       `json:"held"`
	// Mode is "bgp" for a VIP every ready director announces over BGP;
	// empty for an arp VIP.
	Mode string `json:"mode,omitempty"`
	// Announced: this director announces the bgp VIP to its routers;
	// Withdrawn says why not (no-service-up, ipvs-not-converged,
	// cut-off-from-cluster, health-view-disagrees, drained, starting, or no-bgp-speaker).
	Announced bool   `json:"announced,omitempty"`
	Withdrawn string `json:"withdrawn,omitempty"`
}

// BGP is a director's BGP speaker as dsrd status shows it.
type BGP struct {
	// Graceful: the announcements carry GRACEFUL_SHUTDOWN (a drain).
	Graceful bool `json:"graceful,omitempty"`
	// Detail explains a director-wide withdrawal.
	Detail string `json:"detail,omitempty"`
	// Error is the last failure to update the announcements.
	Error string    `json:"error,omitempty"`
	Peers []BGPPeer `json:"peers"`
	// Drains are the cluster's drained directors (this one or others).
	Drains []BGPDrain `json:"drains,omitempty"`
}

// BGPDrainRequest is the body of POST /v1/bgp/drain: drain (announce as
// leaving for bgp.drain_delay, then withdraw) or undrain a director. The
// cluster records drains through Raft and drains one director at a time.
type BGPDrainRequest struct {
	Drain bool `json:"drain"`
	// Force drains even when another director is drained, or a VIP would
	// be left with no other director announcing it.
	Force bool `json:"force,omitempty"`
	// Node is the director to undrain (any member's record, for one that
	// is gone); empty means this director. A director drains only
	// itself.
	Node string `json:"node,omitempty"`
}

// BGPDrainResult is the answer to a drain request.
type BGPDrainResult struct {
	// Draining is the director's drain state now.
	Draining bool `json:"draining"`
	// DrainDelay is how long it announces as leaving before it withdraws.
	DrainDelay time.Duration `json:"drain_delay,omitempty"`
	// Orphaned are the VIPs no other director announces, drained anyway
	// (Force).
	Orphaned []netip.Addr `json:"orphaned,omitempty"`
	// Node is the director the request was for; Changed is false when it
	// was in the requested state already.
	Node    string `json:"node,omitempty"`
	Changed bool   `json:"changed,omitempty"`
}

// BGPDrain is the cluster's record of a drained director.
type BGPDrain struct {
	Node   string    `json:"node"`
	Since  time.Time `json:"since"`
	By     string    `json:"by,omitempty"`
	Forced bool      `json:"forced,omitempty"`
}

// BGPDrainer is a Backend whose BGP announcements can be drained.
type BGPDrainer interface {
	DrainBGP(ctx context.Context, req BGPDrainRequest) (BGPDrainResult, error)
}

// MaxTop bounds the offending sources GET /v1/status?top=N reports per
// service.
const MaxTop = 10

// AdmissionTopper is a Backend that enforces admission control and can
// name the sources it dropped most (GET /v1/status?top=N).
type AdmissionTopper interface {
	// AdmissionTop returns, by service name, the n sources (at most
	// MaxTop) whose packets the service's admission control dropped
	// most, most first. The error says what could not be read.
	AdmissionTop(ctx context.Context, n int) (map[string][]TopSource, error)
}

// TopSource is a source whose packets a service's admission control
// dropped (deny, not allowed or over its rate), recently.
type TopSource struct {
	Source netip.Addr `json:"source"`
	// Packets counts its dropped packets since it entered the record,
	// which forgets it ExpiresIn after its last dropped packet
	// (nanoseconds in JSON, as drain_delay).
	Packets   uint64        `json:"packets"`
	ExpiresIn time.Duration `json:"expires_in"`
}

// BGPPeer is one BGP session.
type BGPPeer struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the session's state (established, active, connect, idle...).
	State string `json:"state"`
	// Since is when the session was established (zero when it is not).
	Since time.Time `json:"since,omitzero"`
	// BFD is the BFD session's state (up, down, init), empty without BFD.
	BFD string `json:"bfd,omitempty"`
	// Announced is how many prefixes the router is sent.
	Announced int `json:"announced"`
}

// IPVSStatus is a director's IPVS as a whole.
type IPVSStatus struct {
	// Connections sums the active and inactive connections of the
	// services' reals: IPVS's connection table, persistence templates
	// aside.
	Connections uint64 `json:"connections"`
	// Defences are drop_entry, drop_packet and secure_tcp as the kernel
	// holds them.
	Defences []IPVSDefence `json:"defences,omitempty"`
	// AMemThresh is net.ipv4.vs.amemthresh in bytes: the auto defences
	// act while the available memory is below it.
	AMemThresh uint64 `json:"amemthresh_bytes,omitempty"`
	// Sync is the IPVS connection sync daemons dsrd runs (ipvs.sync):
	// nil when the configuration does not enable them.
	Sync *IPVSSync `json:"sync,omitempty"`
	// Error says what could not be read.
	Error string `json:"error,omitempty"`
}

// IPVSSync is the state of a director's IPVS connection sync daemons.
type IPVSSync struct {
	// Daemons are those running after the last pass (master first),
	// as the kernel reported or was asked.
	Daemons []IPVSSyncDaemon `json:"daemons,omitempty"`
	// Master says whether this director should run the master daemon
	// (it owns the VIPs, or a VIP is of mode bgp).
	Master bool `json:"master"`
	// Error is the last pass's failure, empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// IPVSSyncDaemon is one running sync daemon.
type IPVSSyncDaemon struct {
	// State is master or backup.
	State     string     `json:"state"`
	Interface string     `json:"interface"`
	SyncID    int        `json:"sync_id"`
	MaxLen    int        `json:"maxlen,omitempty"`
	Group     netip.Addr `json:"group"`
	Port      int        `json:"port"`
	TTL       int        `json:"ttl"`
}

// IPVSDefence is one of IPVS's defences.
type IPVSDefence struct {
	// Name is the sysctl: drop_entry, drop_packet or secure_tcp.
	Name string `json:"name"`
	// Mode is off, auto or always (the kernel's 0, 1 or 2, 3).
	Mode string `json:"mode"`
	// Active: the defence acts now (auto below amemthresh, or always).
	Active bool `json:"active,omitempty"`
}

// Reconcile is the outcome of the last IPVS reconcile.
type Reconcile struct {
	At    time.Time `json:"at,omitzero"`
	OK    bool      `json:"ok"`
	Error string    `json:"error,omitempty"`
}

// Service is a virtual service with its reals.
type Service struct {
	Name      string `json:"name"`
	Key       string `json:"key"`
	Scheduler string `json:"scheduler"`
	// Up is false when fewer reals than the quorum are healthy.
	Up      bool   `json:"up"`
	Reason  string `json:"reason,omitempty"`
	Healthy int    `json:"healthy"`
	Quorum  int    `json:"quorum"`
	Reals   []Real `json:"reals"`
	// Admission is the service's admission control, nil when it has none.
	Admission *Admission `json:"admission,omitempty"`
}

// Admission is a service's admission control (docs/admission.md).
type Admission struct {
	// InPlace: the director's nftables table holds the service's rules
	// as configured. While false the service is kept out of IPVS.
	InPlace bool `json:"in_place"`
	// Allow and Deny count the prefixes of the lists.
	Allow int `json:"allow"`
	Deny  int `json:"deny"`
	// SourceRate (per source prefix of SourcePrefix bits) and
	// ServiceRate, as nft writes them; empty when none.
	SourceRate   string `json:"source_rate,omitempty"`
	SourcePrefix int    `json:"source_prefix,omitempty"`
	ServiceRate  string `json:"service_rate,omitempty"`
	// Dropped counts the packets dropped, by reason: deny, not_allowed,
	// rate, cap.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// MeterSources is how many sources the per-source meter tracks now;
	// -1 without a per-source rate or when unknown.
	MeterSources int `json:"meter_sources"`
	// Top lists the sources dropped most, most first, when the status
	// was asked for with ?top=N; empty otherwise.
	Top []TopSource `json:"top,omitempty"`
	// Error says what could not be read.
	Error string `json:"error,omitempty"`
}

// Real is a real server of a service.
type Real struct {
	Address netip.Addr `json:"address"`
	Port    uint16     `json:"port"`
	// Admin is enabled, drained or disabled.
	Admin string `json:"admin"`
	// Health is up, down or unknown (not checked yet).
	Health       string    `json:"health"`
	HealthReason string    `json:"health_reason,omitempty"`
	HealthSince  time.Time `json:"health_since,omitzero"`
	// CheckThroughVIP: the real's check goes through the VIP
	// (health_check.through_vip), on an IPVS service of its own that
	// status does not list.
	CheckThroughVIP bool `json:"check_through_vip,omitempty"`
	// Tunnel: IPVS forwards to the real by IP-in-IP (forwarding:
	// tunnel), not by direct routing.
	Tunnel bool `json:"tunnel,omitempty"`
	// Weight is the configured weight; IPVSWeight what IPVS holds now
	// (-1 when the real is not in IPVS).
	Weight     int  `json:"weight"`
	IPVSWeight int  `json:"ipvs_weight"`
	Sorry      bool `json:"sorry,omitempty"`
	// ActiveConns and InactiveConns are IPVS's connection counters.
	ActiveConns   uint32 `json:"active_conns"`
	InactiveConns uint32 `json:"inactive_conns"`
}

// AdminRequest asks for a real's admin state.
type AdminRequest struct {
	Service string     `json:"service"`
	Real    netip.Addr `json:"real"`
	State   string     `json:"state"`
}

// AdminResult says what an admin request changed.
type AdminResult struct {
	Service  string `json:"service"`
	Previous string `json:"previous"`
	Changed  bool   `json:"changed"`
}

// FailoverResult names the leader after a transfer.
type FailoverResult struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// ReloadResult is the outcome of a reload.
type ReloadResult struct {
	At time.Time `json:"at,omitzero"`
	OK bool      `json:"ok"`
	// Errors are the file's errors, file:line:col: message each.
	Errors []string `json:"errors,omitempty"`
	// Generation is the cluster generation after the reload; Changed
	// whether the reload changed the cluster configuration.
	Generation uint64 `json:"generation"`
	Changed    bool   `json:"changed"`
	// NotSubmitted marks a valid file the cluster did not take (no leader,
	// the leader unreachable): nothing is wrong with the file, the reload
	// can be tried again. Errors then holds why.
	NotSubmitted bool `json:"not_submitted,omitempty"`
}

// JoinRequest adds a server to the Raft configuration.
type JoinRequest struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	// Voter is false for a non-voting member.
	Voter bool `json:"voter"`
}
