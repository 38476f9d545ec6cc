package director

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/internal/version"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// statusReadTimeout bounds the kernel read behind one status request.
const statusReadTimeout = 5 * time.Second

// Status reports this director's view: Raft, VIPs, and every service with
// its reals' admin state, health, configured and programmed weight and
// IPVS connection counters (read from the kernel now).
func (d *Director) Status(ctx context.Context) (api.Status, error) {
	return d.status(ctx, nil)
}

// metricsSnapshot is the status with each real's IPVS traffic counters:
// the metrics' source.
func (d *Director) metricsSnapshot(ctx context.Context) (metrics.Snapshot, error) {
	select {
	case <-d.ready: // Run has set up what status reads
	default:
		return metrics.Snapshot{}, errors.New("director not started")
	}
	snap := metrics.Snapshot{Traffic: map[metrics.RealID]ipvs.Stats{}}
	st, err := d.status(ctx, snap.Traffic)
	snap.Status = st
	return snap, err
}

// status is Status; it also puts the traffic counters of every real in
// IPVS in traffic, when traffic is not nil.
func (d *Director) status(ctx context.Context, traffic map[metrics.RealID]ipvs.Stats) (api.Status, error) {
	st := raftStatus(ctx, d.node, "director")
	st.VRRPState = d.machine.State().String()
	held := map[string]bool{}
	for _, v := range d.owner.Held() {
		held[v.Address.String()+"%"+v.Interface] = true
	}
	for _, v := range d.owner.VIPs() {
		st.VIPs = append(st.VIPs, api.VIP{Address: v.Address, Interface: v.Interface, Held: held[v.Address.String()+"%"+v.Interface]})
	}
	st.VIPs = append(st.VIPs, d.anycastStatus(&st)...)

	running, last, views := d.progress.status()
	st.RunningGeneration, st.Reconcile = running, last
	st.Reload = d.sub.last()

	rctx, cancel := context.WithTimeout(ctx, statusReadTimeout)
	defer cancel()
	kernel, err := ipvs.ReadState(rctx, d.kernel, func(k ipvs.ServiceKey) bool {
		for _, v := range views {
			if v.Key == k {
				return true
			}
		}
		return false
	})
	if err != nil {
		return st, fmt.Errorf("read ipvs: %w", err)
	}
	admin := d.node.Admin()
	st.IPVS = defencesStatus(d.sysctls)
	adm := d.admissionStatus(rctx)
	st.IPVS.Sync = d.syncd.status()
	for _, v := range views {
		svc := serviceStatus(v, kernel[v.Key], admin, d.checks)
		if a, ok := adm[v.Config.Name]; ok {
			svc.Admission = &a
		}
		st.Services = append(st.Services, svc)
		for _, rs := range svc.Reals {
			st.IPVS.Connections += uint64(rs.ActiveConns) + uint64(rs.InactiveConns)
		}
		if traffic == nil {
			continue
		}
		for _, rs := range svc.Reals {
			if dst, ok := destOf(v.Key, kernel[v.Key], rs.Address, rs.Port); ok {
				traffic[metrics.RealID{Service: svc.Key, Real: netip.AddrPortFrom(rs.Address, rs.Port)}] = dst.Stats
			}
		}
	}
	return st, nil
}

// defencesStatus reads IPVS's defences from the kernel's sysctls.
func defencesStatus(sys ipvs.SysctlWriter) *api.IPVSStatus {
	out := &api.IPVSStatus{}
	var errs []string
	for _, name := range ipvs.DefenceSysctls {
		v, err := sys.Get("net.ipv4.vs." + name)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		mode := map[string]string{"0": "off", "1": "auto", "2": "auto", "3": "always"}[v]
		if mode == "" {
			mode = "unknown (" + v + ")"
		}
		out.Defences = append(out.Defences, api.IPVSDefence{Name: name, Mode: mode, Active: ipvs.DefenceActive(v)})
	}
	if v, err := sys.Get("net.ipv4.vs.amemthresh"); err != nil {
		errs = append(errs, err.Error())
	} else if pages, err := strconv.ParseUint(v, 10, 64); err == nil {
		out.AMemThresh = pages * uint64(os.Getpagesize())
	}
	out.Error = strings.Join(errs, "; ")
	return out
}

// raftStatus fills the parts of a status every node kind shares.
func raftStatus(ctx context.Context, n *raft.Node, role string) api.Status {
	s := n.Stats()
	st := api.Status{
		Node:           n.ID(),
		Role:           role,
		Version:        version.Version,
		CommandVersion: raft.CommandVersion,
		Raft: api.Raft{
			State: s.State, Leader: s.Leader, LeaderID: s.LeaderID, LeaderAddress: s.LeaderAddress,
			Term: s.Term, LastContact: s.LastContact, CommitIndex: s.CommitIndex, AppliedIndex: s.AppliedIndex,
		},
		Generation: s.Generation,
		ConfigHash: s.ConfigHash,
	}
	if id, notAfter, ok := n.CertInfo(); ok {
		st.Raft.TLS = &api.CertStatus{NodeID: id.NodeID, Role: string(id.Role), NotAfter: notAfter}
	}
	ts := n.TransportStats()
	st.Raft.PortConns, st.Raft.Refused = ts.Conns, ts.Refused
	if members, err := n.Members(ctx); err == nil {
		st.Members = membersOf(members)
	}
	return st
}

// membersOf converts Raft members to the API's.
func membersOf(ms []raft.Member) []api.Member {
	out := make([]api.Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, api.Member{ID: m.ID, Address: m.Address, Suffrage: string(m.Suffrage), Leader: m.Leader})
	}
	return out
}

// serviceStatus describes one service from the last desired computation
// and the kernel's current entries.
func serviceStatus(v serviceView, k ipvs.Service, admin map[raft.RealRef]raft.Admin, checks *healthcheck.Scheduler) api.Service {
	svc := v.Config
	out := api.Service{
		Name:      svc.Name,
		Key:       v.Key.String(),
		Scheduler: svc.Scheduler,
		Up:        v.Desired.Status.Up,
		Healthy:   v.Desired.Status.Healthy,
		Quorum:    v.Desired.Status.Quorum,
	}
	if !out.Up {
		out.Reason = v.Desired.Status.Reason.String()
	}
	for i := range svc.Reals {
		r := &svc.Reals[i]
		hk := v.checks[i]
		a := raft.AdminEnabled
		if x, ok := admin[v.refs[i]]; ok {
			a = x
		}
		rs := api.Real{Address: r.Address, Port: hk.Real.Port(), Admin: string(a), Health: "up", IPVSWeight: -1}
		if r.Weight != nil {
			rs.Weight = *r.Weight
		}
		if c := v.Health.Reals[i].Check; c != nil && c.Mark != 0 {
			rs.CheckThroughVIP = true
		}
		rs.Tunnel = v.forward[r.Address] == ipvs.ForwardTunnel
		if s, ok := checks.Status(hk); ok {
			rs.Health = s.State.String()
			if !settled(s, v.params[i]) {
				// No verdict yet: the initial state is no finding, and an
				// adopted real keeps its kernel weight meanwhile.
				rs.Health = healthcheck.StateUnknown.String()
			}
			rs.HealthSince = s.Since
			if !s.Last.Up && s.Runs > 0 {
				rs.HealthReason = s.Last.String()
			}
		}
		fillKernel(&rs, v.Key, k)
		out.Reals = append(out.Reals, rs)
	}
	for _, dr := range v.Desired.Reals {
		if dr.Sorry {
			rs := api.Real{Address: dr.Address, Port: dr.Port, Admin: string(raft.AdminEnabled), Health: "sorry", Weight: dr.Weight, Sorry: true, IPVSWeight: -1,
				Tunnel: v.sorryForward == ipvs.ForwardTunnel}
			fillKernel(&rs, v.Key, k)
			out.Reals = append(out.Reals, rs)
		}
	}
	return out
}

// fillKernel copies a destination's programmed weight and counters.
func fillKernel(rs *api.Real, key ipvs.ServiceKey, k ipvs.Service) {
	if d, ok := destOf(key, k, rs.Address, rs.Port); ok {
		rs.IPVSWeight = d.Weight
		rs.ActiveConns, rs.InactiveConns = d.ActiveConns, d.InactiveConns
	}
}

// destOf finds the kernel's destination of a real of the service key
// (k as read from the kernel; fwmark services' destinations have port 0).
func destOf(key ipvs.ServiceKey, k ipvs.Service, addr netip.Addr, port uint16) (ipvs.Destination, bool) {
	if key.IsFWMark() {
		port = 0
	}
	d, ok := k.Dests[ipvs.DestKey{Addr: addr, Port: port}]
	return d, ok
}

// memberVersions asks each member's peer status for the Raft command
// version it can apply (raft.Config.MemberVersions); a member that does
// not answer is left out, which counts as too old.
func memberVersions(peers func() *api.PeerClient) func(ctx context.Context, members []raft.Member) (map[string]int, error) {
	return func(ctx context.Context, members []raft.Member) (map[string]int, error) {
		out := make(map[string]int, len(members))
		var errs []error
		for _, m := range members {
			st, err := peers().Status(ctx, m.Address)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.ID, err))
				continue
			}
			out[m.ID] = st.CommandVersion
		}
		return out, errors.Join(errs...)
	}
}

// AdmissionTop returns, by service name, the n sources (at most
// admission.MaxTop) whose packets each service's admission control
// dropped most, read from the kernel's offender sets now.
func (d *Director) AdmissionTop(ctx context.Context, n int) (map[string][]api.TopSource, error) {
	rctx, cancel := context.WithTimeout(ctx, statusReadTimeout)
	defer cancel()
	top, err := d.adm.Top(rctx, n)
	out := make(map[string][]api.TopSource, len(top))
	for svc, srcs := range top {
		l := make([]api.TopSource, 0, len(srcs))
		for _, s := range srcs {
			l = append(l, api.TopSource{Source: s.Source, Packets: s.Packets, ExpiresIn: s.Expires})
		}
		out[svc] = l
	}
	if err != nil {
		return out, fmt.Errorf("read the offender sets: %w", err)
	}
	return out, nil
}

var _ api.AdmissionTopper = (*Director)(nil)

// admissionStatus reads the admission control of each service, by name.
func (d *Director) admissionStatus(ctx context.Context) map[string]api.Admission {
	list, err := d.adm.Status(ctx)
	out := make(map[string]api.Admission, len(list))
	for _, s := range list {
		a := api.Admission{InPlace: s.InPlace, Allow: s.Allow, Deny: s.Deny, SourceRate: s.SourceRate,
			SourcePrefix: s.SourcePrefix, ServiceRate: s.ServiceRate, MeterSources: s.MeterSources}
		if len(s.Dropped) > 0 {
			a.Dropped = make(map[string]uint64, len(s.Dropped))
			for r, n := range s.Dropped {
				a.Dropped[string(r)] = n
			}
		}
		if err != nil {
			a.Error = err.Error()
		}
		out[s.Name] = a
	}
	return out
}
