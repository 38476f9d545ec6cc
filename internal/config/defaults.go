package config

import (
	"net/netip"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
)

// Every default of the three files, each with the reason for its value. A
// default applies only to a key that is absent from the file (or null): a
// key written with a zero value keeps it, and validation judges it.

// Node defaults.
const (
	// DefaultDataDir is where a director or witness keeps Raft state: the
	// FHS place for state that must survive a reboot.
	DefaultDataDir = "/var/lib/dsrd"
	// DefaultAPISocket is the local API socket: /run is cleared at boot, so
	// a stale socket never outlives the machine's uptime, and systemd's
	// RuntimeDirectory=dsrd creates /run/dsrd.
	DefaultAPISocket = "/run/dsrd/dsrd.sock"
	// DefaultNotifyTimeout bounds one notify program, as
	// vrrp.DefaultNotifyTimeout does for the state machine's scripts.
	DefaultNotifyTimeout = 30 * time.Second
	// DefaultLogLevel is info: state changes, not per-check chatter.
	DefaultLogLevel = "info"
	// DefaultLogFormat is text, which reads best in journalctl.
	DefaultLogFormat = "text"
)

// BGP defaults (mode bgp VIPs; see docs/bgp.md).
const (
	// BGPInterface holds every bgp VIP: lo does not answer ARP for an
	// address on another interface once arp_ignore is 1, and is always up.
	BGPInterface = "lo"
	// DefaultBGPPort is BGP's port.
	DefaultBGPPort = 179
	// DefaultBGPHoldTime: 9 s (keepalive 3 s), the data-centre timers FRR
	// ships, not RFC 4271's 90 s: a director that dies without BFD should
	// leave the routers' ECMP set in seconds, not minutes. BFD, when
	// configured, is faster still.
	DefaultBGPHoldTime = 9 * time.Second
	// DefaultBFDInterval and DefaultBFDMultiplier detect a lost director
	// in under a second (300 ms x 3).
	DefaultBFDInterval   = 300 * time.Millisecond
	DefaultBFDMultiplier = 3
	// DefaultBGPDrainDelay is how long a draining director announces with
	// GRACEFUL_SHUTDOWN before it withdraws: long enough for the routers
	// to prefer the others and for short flows to finish.
	DefaultBGPDrainDelay = 10 * time.Second
	// DefaultBGPPartitionHold is how long a director cut off from the Raft
	// majority keeps announcing with its last configuration: it rides out
	// a leader election and a short network hiccup, and gives up before
	// its view can drift far from the cluster's.
	DefaultBGPPartitionHold = 15 * time.Second
)

// Raft timing defaults. hashicorp/raft requires HeartbeatTimeout,
// ElectionTimeout and LeaderLeaseTimeout of at least 5ms, CommitTimeout of
// at least 1ms, LeaderLeaseTimeout <= HeartbeatTimeout and
// ElectionTimeout >= HeartbeatTimeout (raft.ValidateConfig); validation
// enforces the same. The library's own defaults (1s, 1s, 500ms, 50ms) are
// made for WANs; directors share one L2 segment with sub-millisecond round
// trips, so half of them still leaves a wide margin over GC pauses and
// fsyncs while bringing failover under about a second and a half.
const (
	// DefaultHeartbeatTimeout: a follower starts an election after between
	// one and two heartbeat timeouts without hearing from the leader.
	DefaultHeartbeatTimeout = 500 * time.Millisecond
	// DefaultElectionTimeout: a candidate retries after between one and two
	// election timeouts without a result.
	DefaultElectionTimeout = 500 * time.Millisecond
	// DefaultLeaderLeaseTimeout: a leader that has not reached a quorum for
	// this long steps down, and so releases its VIPs, before the followers'
	// heartbeat timeout (twice as long) lets one of them take over: this
	// keeps two directors from answering ARP for a VIP at once.
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	// DefaultCommitTimeout is hashicorp/raft's own: how long the leader
	// waits before sending an AppendEntries carrying only the commit index.
	DefaultCommitTimeout = 50 * time.Millisecond
)

// VIP announcement defaults.
const (
	// DefaultAnnounceCount: three gratuitous ARPs / unsolicited NAs on
	// takeover, so that one lost frame does not leave a neighbour pointing
	// at the old director.
	DefaultAnnounceCount = 3
	// DefaultAnnounceInterval spaces the burst by more than Linux's
	// neighbour locktime (1 s), within which a second update of the same
	// neighbour is ignored (the same 1100ms choice as metallb's).
	DefaultAnnounceInterval = 1100 * time.Millisecond
	// DefaultAnnounceRefresh repeats one announcement while the VIP is
	// owned, well inside switches' MAC ageing (typically 300 s) and close to
	// Linux's base reachable time (30 s), so caches never go stale.
	DefaultAnnounceRefresh = 30 * time.Second
)

// Service and real defaults.
const (
	// DefaultScheduler is mh (Maglev hashing): every director maps a flow
	// to the same real, so established flows survive a director change.
	DefaultScheduler = "mh"
	// DefaultOnDown is weight0: a real failing its checks gets no new
	// connections but a false failure does not cut the established ones.
	DefaultOnDown = DownWeightZero
	// DefaultQuorum: a service is up while at least one real is healthy.
	DefaultQuorum = 1
	// DefaultDrainTimeout is how long a real removed from the configuration
	// keeps its established connections at weight 0 before it is deleted:
	// long enough for ordinary requests and downloads to finish.
	DefaultDrainTimeout = 5 * time.Minute
	// DefaultWeight leaves room to weigh reals both above and below the
	// default in fine steps. An explicit weight: 0 stays 0 (a real that gets
	// no new connections).
	DefaultWeight = 100
	// DefaultNetmask4 and DefaultNetmask6 make persistence per client
	// address when persistence.timeout is set and netmask is not.
	DefaultNetmask4 = 32
	DefaultNetmask6 = 128
)

// Health check defaults. A service without a health_check gets a tcp check
// on the service port: a real is in service only while it accepts
// connections. Type none disables checking (every real is always up).
// Where healthcheck has the same default (the value of a zero field of its
// Spec), it is defined once, there, and the file's is defined as it.
const (
	// DefaultCheckType is tcp, the check that works for any TCP service.
	DefaultCheckType = CheckTCP
	// DefaultCheckInterval and DefaultCheckFall detect a dead real within
	// about six seconds (three failures two seconds apart); DefaultCheckRise
	// takes a real back only after two good checks in a row, so a flapping
	// real does not flap the traffic.
	DefaultCheckInterval = healthcheck.DefaultInterval
	// DefaultCheckTimeout is half the interval: a check ends before the next.
	DefaultCheckTimeout = healthcheck.DefaultTimeout
	DefaultCheckRise    = healthcheck.DefaultRise
	DefaultCheckFall    = healthcheck.DefaultFall
	// DefaultCheckInitial is down: a new real gets traffic only after it
	// has proven itself.
	DefaultCheckInitial = "down"
	// DefaultHTTPMethod, DefaultHTTPPath and DefaultExpectStatus: any 2xx
	// or 3xx answer to GET / means alive (a redirect to a login page is a
	// live server), as HAProxy's httpchk does.
	DefaultHTTPMethod   = "GET"
	DefaultHTTPPath     = "/"
	DefaultExpectStatus = healthcheck.DefaultHTTPStatus
	// DefaultDNSQueryType and DefaultDNSRcode: an A query answered with
	// NOERROR.
	DefaultDNSQueryType = healthcheck.DefaultDNSType
	DefaultDNSRcode     = healthcheck.DefaultDNSRcode
	// DefaultAgentPort is the port of the realserver agent's status
	// endpoint that an agent check asks: the agent's own default
	// (realserver.DefaultStatusPort, which this package's tests hold
	// equal). The agent serves it only when its status_address is set (off
	// by default).
	DefaultAgentPort = healthcheck.DefaultAgentPort
	// DefaultAgentPath and DefaultAgentStatus are the agent's contract:
	// GET /status (realserver.StatusPath) answers 200 when every VIP is in
	// place and 503 when the backend is draining or broken.
	DefaultAgentPath   = healthcheck.DefaultAgentPath
	DefaultAgentStatus = "200"
)

// IPVS defaults (docs/config.md, "ipvs"): sloppy_tcp lets a new director pick up
// established TCP flows mid-stream after a failover; expire_nodest_conn
// drops the connections of a deleted real at once, so their clients
// retry instead of sending into a black hole until the connection times
// out; expire_quiescent_template expires the persistence templates of a
// weight-0 real, so sticky clients move off a failed real. conn_reuse_mode
// is left to the kernel unless set.
const (
	DefaultSloppyTCP               = true
	DefaultExpireNodestConn        = true
	DefaultExpireQuiescentTemplate = true
)

// IPVS's defences by default: drop_entry and secure_tcp act on their own
// while the available memory is below amemthresh (a SYN flood filling the
// connection table); drop_packet, which drops the packets of established
// flows too, stays off. amemthresh is left at the kernel's (1024 pages)
// unless set: the kernel counts free memory without the page cache, which
// a busy host keeps low, so a larger default would arm the defences on
// healthy directors (docs/config.md).
const (
	DefaultDropEntry  = "auto"
	DefaultDropPacket = "off"
	DefaultSecureTCP  = "auto"
)

// Realserver defaults.
const (
	// DefaultRealserverDataDir keeps the sysctl values found at start, so
	// cleanup can restore them.
	DefaultRealserverDataDir = "/var/lib/dsrd/realserver"
	// DefaultResyncInterval re-applies the VIPs and sysctls even when no
	// change was seen: a safety net behind the agent's netlink events and
	// sysctl poll, which repair within about a second.
	DefaultResyncInterval = 30 * time.Second
	// cleanup_on_exit defaults to false: restarting or upgrading the agent
	// must not take the VIPs off lo, which would drop traffic.
)

// setFunc reports whether a path was written in the file.
type setFunc func(path string) bool

// defaultDirector fills in the defaults of a director configuration.
func defaultDirector(d *Director, set setFunc) {
	defaultNode(&d.Node, "node", set)
	setDuration(&d.Node.Notify.Timeout, DefaultNotifyTimeout, "node.notify.timeout", set)
	defaultCluster(&d.Cluster, "cluster", set)
	defaultIPVS(&d.IPVS)
	for i := range d.VIPs {
		defaultVIP(&d.VIPs[i], d.Node.Interface, indexPath("vips", i), set)
	}
	for i := range d.Services {
		defaultService(&d.Services[i], indexPath("services", i), set)
	}
	if d.BGP != nil {
		defaultBGP(d.BGP, d.Cluster.Advertise, "bgp", set)
	}
}

// defaultWitness fills in the defaults of a witness configuration.
func defaultWitness(w *Witness, set setFunc) {
	defaultNode(&w.Node, "node", set)
	defaultCluster(&w.Cluster, "cluster", set)
}

// defaultRealserver fills in the defaults of a realserver configuration.
func defaultRealserver(r *Realserver, set setFunc) {
	setString(&r.DataDir, DefaultRealserverDataDir, "data_dir", set)
	setString(&r.LogLevel, DefaultLogLevel, "log_level", set)
	setString(&r.LogFormat, DefaultLogFormat, "log_format", set)
	setDuration(&r.ResyncInterval, DefaultResyncInterval, "resync_interval", set)
}

func defaultNode(n *Node, path string, set setFunc) {
	setString(&n.DataDir, DefaultDataDir, joinPath(path, "data_dir"), set)
	setString(&n.APISocket, DefaultAPISocket, joinPath(path, "api_socket"), set)
	setString(&n.LogLevel, DefaultLogLevel, joinPath(path, "log_level"), set)
	setString(&n.LogFormat, DefaultLogFormat, joinPath(path, "log_format"), set)
}

func defaultCluster(c *Cluster, path string, set setFunc) {
	// Peers reach this node where it listens unless told otherwise.
	if !set(joinPath(path, "advertise")) {
		c.Advertise = c.Bind
	}
	setDuration(&c.HeartbeatTimeout, DefaultHeartbeatTimeout, joinPath(path, "heartbeat_timeout"), set)
	setDuration(&c.ElectionTimeout, DefaultElectionTimeout, joinPath(path, "election_timeout"), set)
	setDuration(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout, joinPath(path, "leader_lease_timeout"), set)
	setDuration(&c.CommitTimeout, DefaultCommitTimeout, joinPath(path, "commit_timeout"), set)
}

func defaultIPVS(v *IPVS) {
	setBool(&v.SloppyTCP, DefaultSloppyTCP)
	setBool(&v.ExpireNodestConn, DefaultExpireNodestConn)
	setBool(&v.ExpireQuiescentTemplate, DefaultExpireQuiescentTemplate)
}

func defaultVIP(v *VIP, nodeInterface, path string, set setFunc) {
	defaultAdmission(v.Admission, joinPath(path, "admission"), set)
	setString((*string)(&v.Mode), string(ModeARP), joinPath(path, "mode"), set)
	// An arp VIP goes on the node's interface unless it names its own; a
	// bgp VIP is held on lo, where the director does not answer ARP for
	// it (the routers send its traffic by the BGP next hop).
	iface := nodeInterface
	if v.Mode == ModeBGP {
		iface = BGPInterface
	}
	setString(&v.Interface, iface, joinPath(path, "interface"), set)
	a := joinPath(path, "announce")
	if !set(joinPath(a, "count")) {
		v.Announce.Count = DefaultAnnounceCount
	}
	setDuration(&v.Announce.Interval, DefaultAnnounceInterval, joinPath(a, "interval"), set)
	if v.Announce.Refresh == nil {
		r := Duration(DefaultAnnounceRefresh)
		v.Announce.Refresh = &r
	}
}

func defaultBGP(b *BGP, advertise netip.AddrPort, path string, set setFunc) {
	// The router id is the node's cluster address when that is IPv4: an
	// address the operator already keeps unique per director.
	if !set(joinPath(path, "router_id")) {
		if a := advertise.Addr().Unmap(); a.Is4() && !a.IsUnspecified() {
			b.RouterID = a
		}
	}
	setDuration(&b.DrainDelay, DefaultBGPDrainDelay, joinPath(path, "drain_delay"), set)
	setDuration(&b.PartitionHold, DefaultBGPPartitionHold, joinPath(path, "partition_hold"), set)
	for i := range b.Peers {
		p := &b.Peers[i]
		pp := indexPath(joinPath(path, "peers"), i)
		if !set(joinPath(pp, "port")) {
			p.Port = DefaultBGPPort
		}
		setDuration(&p.HoldTime, DefaultBGPHoldTime, joinPath(pp, "hold_time"), set)
		// The keepalive is a third of the hold time, as RFC 4271
		// suggests, whichever of the two was written.
		setDuration(&p.KeepaliveTime, p.HoldTime.D()/3, joinPath(pp, "keepalive_time"), set)
		if p.BFD != nil {
			bp := joinPath(pp, "bfd")
			setDuration(&p.BFD.MinRx, DefaultBFDInterval, joinPath(bp, "min_rx"), set)
			setDuration(&p.BFD.MinTx, DefaultBFDInterval, joinPath(bp, "min_tx"), set)
			if !set(joinPath(bp, "multiplier")) {
				p.BFD.Multiplier = DefaultBFDMultiplier
			}
		}
	}
}

func defaultService(s *Service, path string, set setFunc) {
	defaultAdmission(s.Admission, joinPath(path, "admission"), set)
	setString(&s.Scheduler, DefaultScheduler, joinPath(path, "scheduler"), set)
	// mh and sh hash a new flow to one real; without their fallback flag,
	// a flow hashed to a real at weight 0 (down or drained: dsrd's default
	// on_down) finds no destination and is refused by the director itself.
	// With it, the kernel picks another real. Written flags are kept as
	// written (an empty list included).
	if !set(joinPath(path, "scheduler_flags")) {
		switch s.Scheduler {
		case "mh":
			s.SchedulerFlags = []string{"mh-fallback"}
		case "sh":
			s.SchedulerFlags = []string{"sh-fallback"}
		}
	}
	if !set(joinPath(path, "on_down")) {
		s.OnDown = DefaultOnDown
	}
	if !set(joinPath(path, "quorum")) {
		s.Quorum = DefaultQuorum
	}
	setDuration(&s.DrainTimeout, DefaultDrainTimeout, joinPath(path, "drain_timeout"), set)
	if s.Persistence.Timeout != 0 && !set(joinPath(path, "persistence.netmask")) {
		s.Persistence.Netmask = DefaultNetmask4
		if s.Family() == 6 {
			s.Persistence.Netmask = DefaultNetmask6
		}
	}
	// Without a health_check, a real is checked by connecting to the
	// service port (a fwmark or all-ports service has none: validation
	// then asks for an explicit check).
	if s.HealthCheck == nil {
		s.HealthCheck = &HealthCheck{}
	}
	defaultCheck(s.HealthCheck, s.Port, joinPath(path, "health_check"), set)
	for i := range s.Reals {
		r := &s.Reals[i]
		rp := indexPath(joinPath(path, "reals"), i)
		// DR cannot remap ports: a real listens on the service port.
		if !set(joinPath(rp, "port")) {
			r.Port = s.Port
		}
		if r.Weight == nil {
			w := DefaultWeight
			r.Weight = &w
		}
		if r.HealthCheck != nil {
			defaultCheck(r.HealthCheck, s.Port, joinPath(rp, "health_check"), set)
		}
	}
}

// defaultCheck fills in the defaults of a health check of a service on
// servicePort (0 for fwmark and all-ports services).
func defaultCheck(c *HealthCheck, servicePort uint16, path string, set setFunc) {
	if !set(joinPath(path, "type")) {
		c.Type = DefaultCheckType
	}
	if c.Type == CheckNone {
		return
	}
	setDuration(&c.Interval, DefaultCheckInterval, joinPath(path, "interval"), set)
	setDuration(&c.Timeout, DefaultCheckTimeout, joinPath(path, "timeout"), set)
	setInt(&c.Rise, DefaultCheckRise, joinPath(path, "rise"), set)
	setInt(&c.Fall, DefaultCheckFall, joinPath(path, "fall"), set)
	setString(&c.Initial, DefaultCheckInitial, joinPath(path, "initial"), set)
	if !set(joinPath(path, "port")) {
		switch c.Type {
		case CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS:
			c.Port = servicePort
		case CheckAgent:
			c.Port = DefaultAgentPort
		}
	}
	switch c.Type {
	case CheckHTTP, CheckHTTPS, CheckAgent:
		urlPath, status := DefaultHTTPPath, DefaultExpectStatus
		if c.Type == CheckAgent {
			urlPath, status = DefaultAgentPath, DefaultAgentStatus
		}
		setString(&c.Method, DefaultHTTPMethod, joinPath(path, "method"), set)
		setString(&c.Path, urlPath, joinPath(path, "path"), set)
		if !set(joinPath(path, "expect_status")) {
			c.ExpectStatus = []string{status}
		}
		if c.Type == CheckHTTPS && c.TLSVerify == nil {
			// A health check proves that a real answers, not who it is:
			// reals are reached by IP address, which their certificates
			// rarely name. Set tls_verify (and tls_server_name) to verify.
			f := false
			c.TLSVerify = &f
		}
	case CheckDNS:
		setString(&c.QueryType, DefaultDNSQueryType, joinPath(path, "query_type"), set)
		setString(&c.ExpectCode, DefaultDNSRcode, joinPath(path, "expect_rcode"), set)
	}
}

func setString(p *string, def, path string, set setFunc) {
	if !set(path) {
		*p = def
	}
}

func setDuration(p *Duration, def time.Duration, path string, set setFunc) {
	if !set(path) {
		*p = Duration(def)
	}
}

func setInt(p *int, def int, path string, set setFunc) {
	if !set(path) {
		*p = def
	}
}

func setBool(p **bool, def bool) {
	if *p == nil {
		*p = &def
	}
}

// defaultAdmission fills in the bursts and source prefix lengths of an
// admission block (nil: none).
func defaultAdmission(a *Admission, path string, set setFunc) {
	if a == nil {
		return
	}
	if r := a.SourceRate; r != nil {
		p := joinPath(path, "source_rate")
		if !set(joinPath(p, "burst")) {
			r.Burst = DefaultAdmissionBurst
		}
		if !set(joinPath(p, "prefix_v4")) {
			r.PrefixV4 = DefaultSourcePrefixV4
		}
		if !set(joinPath(p, "prefix_v6")) {
			r.PrefixV6 = DefaultSourcePrefixV6
		}
	}
	if r := a.ServiceRate; r != nil && !set(joinPath(joinPath(path, "service_rate"), "burst")) {
		r.Burst = DefaultAdmissionBurst
	}
}
