// Package apitest holds fakes of the api package's interfaces for tests: a
// Backend that keeps real state (admin states change, members join and
// leave, leadership moves), and a sample Status with a bit of everything.
package apitest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
)

// Backend is a fake api.Backend over a Status it keeps up to date. Set
// NextReload for what the next Reload finds in the file; FailWith makes
// every method fail with that error.
type Backend struct {
	mu         sync.Mutex
	st         api.Status
	nextReload api.ReloadResult
	failWith   error
	calls      []string
	drained    map[string]bool
}

var _ api.Backend = (*Backend)(nil)

// NewBackend returns a fake backend serving st.
func NewBackend(st api.Status) *Backend {
	return &Backend{st: cloneStatus(st), nextReload: api.ReloadResult{OK: true}}
}

// SetNextReload sets the outcome of the next reloads: OK with Changed
// makes a new generation; not OK keeps the running configuration.
func (b *Backend) SetNextReload(r api.ReloadResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextReload = r
}

// FailWith makes every method return err (nil: work again).
func (b *Backend) FailWith(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failWith = err
}

// Calls returns the methods called so far, with their arguments.
func (b *Backend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

func (b *Backend) called(format string, args ...any) error {
	b.calls = append(b.calls, fmt.Sprintf(format, args...))
	return b.failWith
}

// Status returns the current status.
func (b *Backend) Status(context.Context) (api.Status, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("Status"); err != nil {
		return api.Status{}, err
	}
	return cloneStatus(b.st), nil
}

// SetAdmin changes a real's admin state; the service is found by name or
// key, the real by address (api.ErrNotFound otherwise).
func (b *Backend) SetAdmin(_ context.Context, req api.AdminRequest) (api.AdminResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("SetAdmin %s %s %s", req.Service, req.Real, req.State); err != nil {
		return api.AdminResult{}, err
	}
	if err := api.ValidAdmin(req); err != nil {
		return api.AdminResult{}, err
	}
	for i := range b.st.Services {
		svc := &b.st.Services[i]
		if svc.Name != req.Service && svc.Key != req.Service {
			continue
		}
		for j := range svc.Reals {
			r := &svc.Reals[j]
			if r.Address != req.Real {
				continue
			}
			res := api.AdminResult{Service: svc.Key, Previous: r.Admin, Changed: r.Admin != req.State}
			r.Admin = req.State
			return res, nil
		}
		return api.AdminResult{}, fmt.Errorf("service %s has no real %s: %w", svc.Name, req.Real, api.ErrNotFound)
	}
	return api.AdminResult{}, fmt.Errorf("unknown service %q: %w", req.Service, api.ErrNotFound)
}

// Failover moves leadership to member to, or to the next voter.
func (b *Backend) Failover(_ context.Context, to string) (api.FailoverResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("Failover %s", to); err != nil {
		return api.FailoverResult{}, err
	}
	from := b.st.Raft.LeaderID
	next := -1
	for i, m := range b.st.Members {
		if m.Suffrage != "voter" || m.ID == from {
			continue
		}
		if to == "" || m.ID == to {
			next = i
			break
		}
	}
	if next < 0 {
		if to != "" {
			return api.FailoverResult{}, fmt.Errorf("%s: not a voter of the cluster: %w", to, api.ErrNotFound)
		}
		return api.FailoverResult{}, fmt.Errorf("no other voter to hand leadership to")
	}
	for i := range b.st.Members {
		b.st.Members[i].Leader = i == next
	}
	lead := b.st.Members[next]
	b.st.Raft.LeaderID, b.st.Raft.LeaderAddress = lead.ID, lead.Address
	b.st.Raft.Leader = lead.ID == b.st.Node
	b.st.Raft.Term++
	if lead.ID != b.st.Node && b.st.Raft.State == "Leader" {
		b.st.Raft.State = "Follower"
	}
	return api.FailoverResult{From: from, To: lead.ID}, nil
}

// Reload applies the outcome set by SetNextReload.
func (b *Backend) Reload(context.Context) (api.ReloadResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("Reload"); err != nil {
		return api.ReloadResult{}, err
	}
	res := b.nextReload
	res.At = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	if res.OK && res.Changed {
		b.st.Generation++
	}
	res.Generation = b.st.Generation
	b.st.Reload = res
	return res, nil
}

// Members returns the members.
func (b *Backend) Members(context.Context) ([]api.Member, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("Members"); err != nil {
		return nil, err
	}
	return slices.Clone(b.st.Members), nil
}

// Join adds a member, or changes the address and suffrage of one.
func (b *Backend) Join(_ context.Context, req api.JoinRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("Join %s %s %v", req.ID, req.Address, req.Voter); err != nil {
		return err
	}
	if err := api.ValidJoin(req); err != nil {
		return err
	}
	m := api.Member{ID: req.ID, Address: req.Address, Suffrage: "nonvoter"}
	if req.Voter {
		m.Suffrage = "voter"
	}
	for i := range b.st.Members {
		if b.st.Members[i].ID == req.ID {
			m.Leader = b.st.Members[i].Leader
			b.st.Members[i] = m
			return nil
		}
	}
	b.st.Members = append(b.st.Members, m)
	return nil
}

// Remove removes a member (api.ErrNotFound when unknown).
func (b *Backend) Remove(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("Remove %s", id); err != nil {
		return err
	}
	i := slices.IndexFunc(b.st.Members, func(m api.Member) bool { return m.ID == id })
	if i < 0 {
		return fmt.Errorf("%s is not a member: %w", id, api.ErrNotFound)
	}
	b.st.Members = slices.Delete(b.st.Members, i, i+1)
	return nil
}

// cloneStatus copies st deeply enough that callers cannot change the
// fake's state.
func cloneStatus(st api.Status) api.Status {
	st.Members = slices.Clone(st.Members)
	st.VIPs = slices.Clone(st.VIPs)
	st.Reload.Errors = slices.Clone(st.Reload.Errors)
	st.Peers = slices.Clone(st.Peers)
	st.Services = slices.Clone(st.Services)
	for i := range st.Services {
		st.Services[i].Reals = slices.Clone(st.Services[i].Reals)
	}
	return st
}

// SampleStatus returns the status of director d1, leader of d1, d2 and the
// witness w1, with two services: web (up, one real drained, one down) and
// dns (down: no real healthy), generation 12 of which IPVS runs 11, and a
// failed reload.
func SampleStatus() api.Status {
	at := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	addr := netip.MustParseAddr
	return api.Status{
		Node:    "d1",
		Role:    "director",
		Version: "1.0.0",
		Raft: api.Raft{
			State: "Leader", Leader: true, LeaderID: "d1", LeaderAddress: "192.0.2.11:7946",
			Term: 7, CommitIndex: 120, AppliedIndex: 120,
		},
		Members: []api.Member{
			{ID: "d1", Address: "192.0.2.11:7946", Suffrage: "voter", Leader: true},
			{ID: "d2", Address: "192.0.2.12:7946", Suffrage: "voter"},
			{ID: "w1", Address: "192.0.2.13:7946", Suffrage: "voter"},
		},
		VRRPState: "MASTER",
		VIPs: []api.VIP{
			{Address: addr("203.0.113.10"), Interface: "eth0", Held: true},
			{Address: addr("2001:db8::10"), Interface: "eth0", Held: false},
		},
		Generation:        12,
		RunningGeneration: 11,
		ConfigHash:        "sha256:5d41402abc4b2a76b9719d911017c592",
		Reload: api.ReloadResult{
			At: at, OK: false, Generation: 12,
			Errors: []string{
				"/etc/dsrd/director.yaml:14:16: scheduler \"fastest\": want one of rr, wrr, lc, wlc, sh, mh",
				"/etc/dsrd/director.yaml:17:15: real port 8080 differs from the service port 80 (DR cannot remap ports)",
			},
		},
		Reconcile: api.Reconcile{At: at.Add(time.Minute), OK: false, Error: "add destination 198.51.100.12:53: invalid argument"},
		Services: []api.Service{
			{
				Name: "web", Key: "tcp/203.0.113.10:80", Scheduler: "mh", Up: true, Healthy: 2, Quorum: 1,
				Reals: []api.Real{
					{Address: addr("198.51.100.10"), Port: 80, Admin: "enabled", Health: "up", HealthSince: at,
						Weight: 10, IPVSWeight: 10, ActiveConns: 1234, InactiveConns: 56},
					{Address: addr("198.51.100.11"), Port: 80, Admin: "drained", Health: "up", HealthSince: at,
						Weight: 10, IPVSWeight: 0, ActiveConns: 17, InactiveConns: 3},
					{Address: addr("198.51.100.12"), Port: 80, Admin: "enabled", Health: "down",
						HealthReason: "http 503 from /healthz", HealthSince: at, CheckThroughVIP: true,
						Weight: 10, IPVSWeight: 0},
					{Address: addr("198.51.100.13"), Port: 80, Admin: "disabled", Health: "unknown",
						Weight: 5, IPVSWeight: -1},
				},
			},
			{
				Name: "dns", Key: "udp/203.0.113.10:53", Scheduler: "wrr", Up: false,
				Reason: "no real is healthy", Healthy: 0, Quorum: 1,
				Reals: []api.Real{
					{Address: addr("198.51.100.12"), Port: 53, Admin: "enabled", Health: "down",
						HealthReason: "dns query timed out", Weight: 1, IPVSWeight: -1},
					{Address: addr("2001:db8::53"), Port: 53, Sorry: true, Admin: "enabled", Health: "sorry",
						Weight: 1, IPVSWeight: 1},
				},
			},
		},
		Peers: []api.Peer{
			{ID: "d2", Role: "director", RunningGeneration: 12, VRRPState: "BACKUP"},
			{ID: "w1", Error: "peer 192.0.2.13:7946: dial tcp 192.0.2.13:7946: i/o timeout"},
		},
	}
}

// DrainBGP drains or undrains as the cluster would: one director at a
// time (api.ErrConflict), only itself (the status's Node), and a drain
// without force is refused while the status has no other member (every
// announced VIP would be orphaned).
func (b *Backend) DrainBGP(_ context.Context, req api.BGPDrainRequest) (api.BGPDrainResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.called("DrainBGP %v %v %q", req.Drain, req.Force, req.Node); err != nil {
		return api.BGPDrainResult{}, err
	}
	if b.drained == nil {
		b.drained = map[string]bool{}
	}
	node := req.Node
	if node == "" {
		node = b.st.Node
	}
	if !req.Drain {
		changed := b.drained[node]
		delete(b.drained, node)
		return api.BGPDrainResult{Node: node, Changed: changed}, nil
	}
	if node != b.st.Node {
		return api.BGPDrainResult{}, fmt.Errorf("%w: a director drains only itself", api.ErrInvalid)
	}
	res := api.BGPDrainResult{Node: node, Draining: true, DrainDelay: 10 * time.Second}
	if b.drained[node] {
		return res, nil
	}
	for other := range b.drained {
		if !req.Force {
			return api.BGPDrainResult{}, fmt.Errorf("%w: %s is drained", api.ErrConflict, other)
		}
	}
	for _, v := range b.st.VIPs {
		if v.Announced {
			res.Orphaned = append(res.Orphaned, v.Address)
		}
	}
	if len(res.Orphaned) > 0 && !req.Force {
		return api.BGPDrainResult{}, fmt.Errorf("%w: no other director announces %v", api.ErrConflict, res.Orphaned)
	}
	b.drained[node], res.Changed = true, true
	return res, nil
}
