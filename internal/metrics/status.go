package metrics

import (
	"context"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
)

// collectTimeout bounds the state read behind one scrape: under
// Prometheus's default scrape timeout of 10 s, so a slow kernel read gives
// a scrape without the per-real metrics rather than no scrape at all.
const collectTimeout = 5 * time.Second

// desc is a shorthand for a dsrd metric's description.
func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
}

// The metrics read from the node's state at scrape time.
var (
	descNodeInfo = desc("node_info", "Always 1: this node's id, role (director or witness) and dsrd version.", "node", "role", "version")
	descReadOK   = desc("status_read_success", "1 when this scrape read the node's state in full; 0 when part of it (such as the IPVS counters) could not be read.")

	descRaftLeader      = desc("raft_leader", "1 while this node is the Raft leader with established leadership (after its barrier), else 0.")
	descRaftState       = desc("raft_state", "This node's Raft state, one-hot.", "state")
	descRaftTerm        = desc("raft_term", "This node's current Raft term.")
	descRaftCommit      = desc("raft_commit_index", "The highest Raft log index known to be committed.")
	descRaftApplied     = desc("raft_applied_index", "The highest Raft log index applied to this node's state.")
	descRaftLastContact = desc("raft_last_contact_seconds", "Seconds since this node last heard from the leader: 0 on the leader, +Inf when it never has.")
	descCertExpiry      = desc("tls_cert_expiry_timestamp_seconds", "Unix time at which this node's cluster certificate expires (absent without TLS); peers refuse it after.")
	descPortConns       = desc("raft_port_connections", "Inbound connections open on the Raft port (raft's and the peer protocol's).")
	descRefused         = desc("raft_refused_total", "Connections and requests the Raft port refused, by reason (conn_limit, source_limit, handshake_limit, handshake, identity, not_member, impersonation, role, stale_transfer, malformed, too_large, timeout).", "reason")
	descGeneration      = desc("config_generation", "Generation of the cluster configuration this node's Raft state holds.")

	descRunning      = desc("config_running_generation", "Generation of the cluster configuration this director's IPVS last converged on.")
	descVRRPState    = desc("vrrp_state", "This director's VIP ownership state, one-hot: master holds the VIPs, backup does not, fault cannot (interface down).", "state")
	descVIPOwned     = desc("vip_owned", "1 while this director holds the VIP on its interface, else 0.", "vip", "interface")
	descAnnounced    = desc("vip_announced", "1 while this director announces the bgp VIP to its routers, else 0 (dsrd status says why).", "vip")
	descBGPSession   = desc("bgp_session_up", "1 while the BGP session with the router is established, else 0.", "peer")
	descBGPPrefixes  = desc("bgp_announced_prefixes", "Prefixes (bgp VIPs) the speaker sends the router.", "peer")
	descReloadOK     = desc("config_reload_success", "1 when the last reload of this director's file (or its submission at start) succeeded, 0 when it was rejected: the running configuration stayed.")
	descReloadTime   = desc("config_last_reload_timestamp_seconds", "Unix time of the last reload of this director's file (or of its submission at start).")
	descIPVSConns    = desc("ipvs_connections", "IPVS connections of the services' reals (active and inactive; persistence templates aside).")
	descIPVSDefence  = desc("ipvs_defence_active", "1 while an IPVS defence acts (drop_entry, drop_packet, secure_tcp: auto below amemthresh, or always), else 0.", "defence")
	descIPVSSync     = desc("ipvs_sync_daemon", "1 while this director runs the IPVS connection sync daemon of the state (master: sends its connections, backup: receives them), else 0. Absent while ipvs.sync is off.", "state")
	descIPVSSyncOK   = desc("ipvs_sync_ok", "1 when the last pass left the sync daemons as ipvs.sync asks (backup on every director, master on the VIP owner), 0 when it failed (dsrd status says why). Absent while ipvs.sync is off.")
	descLastSync     = desc("ipvs_last_reconcile_success_timestamp_seconds", "Unix time of the last IPVS reconcile pass that succeeded.")
	descServiceUp    = desc("service_up", "1 while at least the service's quorum of reals is healthy, else 0.", "service")
	descAdmDropped   = desc("admission_dropped_packets_total", "Packets to the service that admission control dropped before IPVS, by reason: deny (source in the deny list), not_allowed (source outside the allow list), rate (the source's new connections over source_rate), cap (the service's new connections over service_rate).", "service", "reason")
	descAdmMeter     = desc("admission_meter_sources", "Sources (or source prefixes) the service's per-source rate meter tracks now; at 65536 the meter is full and new sources are not rate limited per source.", "service")
	descAdmInPlace   = desc("admission_in_place", "1 while the service's admission control is in the kernel as configured; 0 while it is not, and the service is kept out of IPVS (fail closed).", "service")
	descServiceReals = desc("service_healthy_reals", "Reals of the service that are healthy.", "service")

	descWeight   = desc("real_weight", "The real's weight as programmed in IPVS now (0: no new connections). Absent while the real is not in IPVS.", "service", "real")
	descHealthy  = desc("real_healthy", "1 while the real passes its health check, 0 while it fails it. Absent until its check has a verdict.", "service", "real")
	descAdmin    = desc("real_admin_state", "The real's admin state, one-hot: enabled, drained (weight 0, connections continue) or disabled (out of IPVS).", "service", "real", "state")
	descActive   = desc("real_active_connections", "The real's active connections in IPVS (TCP established).", "service", "real")
	descInactive = desc("real_inactive_connections", "The real's inactive connections in IPVS (other TCP states, UDP).", "service", "real")
	descConns    = desc("real_connections_total", "Connections IPVS scheduled to the real (a 32-bit kernel counter: it wraps).", "service", "real")
	descPktsIn   = desc("real_packets_in_total", "Packets IPVS forwarded to the real (a 32-bit kernel counter: it wraps).", "service", "real")
	descPktsOut  = desc("real_packets_out_total", "Packets from the real through IPVS: 0 in direct routing, where replies bypass the director.", "service", "real")
	descBytesIn  = desc("real_bytes_in_total", "Bytes IPVS forwarded to the real.", "service", "real")
	descBytesOut = desc("real_bytes_out_total", "Bytes from the real through IPVS: 0 in direct routing.", "service", "real")
)

// raftStates are hashicorp/raft's states, as the one-hot label values.
var raftStates = []string{"follower", "candidate", "leader", "shutdown"}

// vrrpStates are the VIP machine's states (vrrp.State), as label values.
var vrrpStates = []string{"init", "backup", "master", "fault", "stop"}

// adminStates are a real's admin states (raft.Admin).
var adminStates = []string{"enabled", "drained", "disabled"}

// statusCollector reads the Set's source at each scrape.
type statusCollector struct{ s *Set }

// Describe sends every metric the collector may produce.
func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descNodeInfo, descReadOK, descRaftLeader, descRaftState, descRaftTerm, descRaftCommit,
		descRaftApplied, descRaftLastContact, descGeneration, descCertExpiry, descPortConns, descRefused,
	} {
		ch <- d
	}
	if c.s.role != RoleDirector {
		return
	}
	for _, d := range []*prometheus.Desc{
		descRunning, descVRRPState, descVIPOwned, descAnnounced, descBGPSession, descBGPPrefixes, descReloadOK, descReloadTime, descLastSync,
		descIPVSConns, descIPVSDefence, descIPVSSync, descIPVSSyncOK, descServiceUp, descServiceReals, descAdmDropped, descAdmMeter, descAdmInPlace, descWeight, descHealthy, descAdmin, descActive, descInactive,
		descConns, descPktsIn, descPktsOut, descBytesIn, descBytesOut,
	} {
		ch <- d
	}
}

// Collect reads the node's state and sends its metrics.
func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	src := c.s.source
	c.s.mu.Unlock()
	if src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	snap, err := src(ctx)
	c.s.collect(ch, snap, err == nil)
}

// gauge sends one gauge sample.
func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// counter sends one counter sample.
func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// bit is 1 for true, 0 for false.
func bit(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// oneHot sends one sample per state, 1 for the current one.
func oneHot(ch chan<- prometheus.Metric, d *prometheus.Desc, states []string, current string, labels ...string) {
	for _, st := range states {
		gauge(ch, d, bit(st == current), append(labels, st)...)
	}
}

// collect sends the metrics of a snapshot; ok says it was read in full.
func (s *Set) collect(ch chan<- prometheus.Metric, snap Snapshot, ok bool) {
	st := snap.Status
	gauge(ch, descReadOK, bit(ok))
	if st.Node == "" {
		return // nothing was read (the daemon has not started yet)
	}
	gauge(ch, descNodeInfo, 1, st.Node, st.Role, st.Version)
	r := st.Raft
	gauge(ch, descRaftLeader, bit(r.Leader))
	if r.State != "" {
		oneHot(ch, descRaftState, raftStates, strings.ToLower(r.State))
	}
	gauge(ch, descRaftTerm, float64(r.Term))
	gauge(ch, descRaftCommit, float64(r.CommitIndex))
	gauge(ch, descRaftApplied, float64(r.AppliedIndex))
	switch {
	case strings.EqualFold(r.State, "leader"):
		gauge(ch, descRaftLastContact, 0)
	case r.LastContact.IsZero():
		gauge(ch, descRaftLastContact, math.Inf(1))
	default:
		gauge(ch, descRaftLastContact, max(s.now().Sub(r.LastContact), 0).Seconds())
	}
	gauge(ch, descGeneration, float64(st.Generation))
	if r.TLS != nil {
		gauge(ch, descCertExpiry, float64(r.TLS.NotAfter.Unix()))
	}
	gauge(ch, descPortConns, float64(r.PortConns))
	for reason, n := range r.Refused {
		counter(ch, descRefused, float64(n), reason)
	}
	if s.role != RoleDirector {
		return
	}

	gauge(ch, descRunning, float64(st.RunningGeneration))
	if st.VRRPState != "" {
		oneHot(ch, descVRRPState, vrrpStates, strings.ToLower(st.VRRPState))
	}
	seenVIP := map[string]bool{}
	for _, v := range st.VIPs {
		addr := v.Address.String()
		if seenVIP[addr+"%"+v.Interface] {
			continue
		}
		seenVIP[addr+"%"+v.Interface] = true
		gauge(ch, descVIPOwned, bit(v.Held), addr, v.Interface)
		if v.Mode != "" {
			gauge(ch, descAnnounced, bit(v.Announced), addr)
		}
	}
	if st.BGP != nil {
		for _, p := range st.BGP.Peers {
			gauge(ch, descBGPSession, bit(p.State == "established"), p.Address.String())
			gauge(ch, descBGPPrefixes, float64(p.Announced), p.Address.String())
		}
	}
	gauge(ch, descReloadOK, bit(st.Reload.OK))
	if !st.Reload.At.IsZero() {
		gauge(ch, descReloadTime, unixSeconds(st.Reload.At))
	}
	if ns := s.lastSuccess.Load(); ns != 0 {
		gauge(ch, descLastSync, float64(ns)/1e9)
	}
	if x := st.IPVS; x != nil {
		gauge(ch, descIPVSConns, float64(x.Connections))
		for _, d := range x.Defences {
			gauge(ch, descIPVSDefence, bit(d.Active), d.Name)
		}
		if y := x.Sync; y != nil {
			for _, state := range []string{"master", "backup"} {
				running := false
				for _, d := range y.Daemons {
					running = running || d.State == state
				}
				gauge(ch, descIPVSSync, bit(running), state)
			}
			gauge(ch, descIPVSSyncOK, bit(y.Error == ""))
		}
	}

	seenSvc := map[string]bool{}
	for _, svc := range st.Services {
		name := ServiceLabel(svc)
		if seenSvc[name] {
			continue
		}
		seenSvc[name] = true
		gauge(ch, descServiceUp, bit(svc.Up), name)
		gauge(ch, descServiceReals, float64(svc.Healthy), name)
		if a := svc.Admission; a != nil {
			gauge(ch, descAdmInPlace, bit(a.InPlace), name)
			for reason, n := range a.Dropped {
				counter(ch, descAdmDropped, float64(n), name, reason)
			}
			if a.MeterSources >= 0 {
				gauge(ch, descAdmMeter, float64(a.MeterSources), name)
			}
		}
		seenReal := map[netip.AddrPort]bool{}
		for _, rs := range svc.Reals {
			ap := netip.AddrPortFrom(rs.Address, rs.Port)
			if seenReal[ap] {
				continue
			}
			seenReal[ap] = true
			s.collectReal(ch, name, ap, rs, snap.Traffic, svc.Key)
		}
	}
}

// collectReal sends the metrics of one real of the service labelled name.
func (s *Set) collectReal(ch chan<- prometheus.Metric, name string, ap netip.AddrPort, rs api.Real, traffic map[RealID]ipvs.Stats, key string) {
	rl := ap.String()
	if !rs.Sorry {
		switch rs.Health {
		case "up":
			gauge(ch, descHealthy, 1, name, rl)
		case "down":
			gauge(ch, descHealthy, 0, name, rl)
		}
		oneHot(ch, descAdmin, adminStates, rs.Admin, name, rl)
	}
	if rs.IPVSWeight < 0 {
		return // not in IPVS
	}
	gauge(ch, descWeight, float64(rs.IPVSWeight), name, rl)
	gauge(ch, descActive, float64(rs.ActiveConns), name, rl)
	gauge(ch, descInactive, float64(rs.InactiveConns), name, rl)
	if t, ok := traffic[RealID{Service: key, Real: ap}]; ok {
		counter(ch, descConns, float64(t.Conns), name, rl)
		counter(ch, descPktsIn, float64(t.PacketsIn), name, rl)
		counter(ch, descPktsOut, float64(t.PacketsOut), name, rl)
		counter(ch, descBytesIn, float64(t.BytesIn), name, rl)
		counter(ch, descBytesOut, float64(t.BytesOut), name, rl)
	}
}

// ServiceLabel is the service label of a service: its name, or its key
// (tcp/203.0.113.10:80) when it has none.
func ServiceLabel(svc api.Service) string {
	if svc.Name != "" {
		return svc.Name
	}
	return svc.Key
}

// unixSeconds is t as fractional seconds since the Unix epoch.
func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
