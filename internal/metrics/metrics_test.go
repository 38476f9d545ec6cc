package metrics

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
)

// now is the fixed clock of these tests.
var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// directorSnapshot is a follower director's state: one service with a
// real up, one drained and down, one disabled and not checked yet, and a
// sorry server; a second service without a name and without reals.
func directorSnapshot() Snapshot {
	real := func(addr, admin, health string, weight int, active, inactive uint32) api.Real {
		p := ap(addr)
		return api.Real{Address: p.Addr(), Port: p.Port(), Admin: admin, Health: health, Weight: 100, IPVSWeight: weight, ActiveConns: active, InactiveConns: inactive}
	}
	sorry := real("198.51.100.9:80", "enabled", "sorry", 0, 0, 0)
	sorry.Sorry = true
	return Snapshot{
		Status: api.Status{
			Node: "dir1", Role: "director", Version: "v1.2.3",
			Raft: api.Raft{
				State: "Follower", LeaderID: "dir2", Term: 7, CommitIndex: 42, AppliedIndex: 41,
				LastContact: now.Add(-1500 * time.Millisecond),
			},
			VRRPState:         "BACKUP",
			VIPs:              []api.VIP{{Address: netip.MustParseAddr("203.0.113.10"), Interface: "eth0", Held: false}, {Address: netip.MustParseAddr("2001:db8::10"), Interface: "eth1", Held: true}},
			Generation:        3,
			RunningGeneration: 2,
			Reload:            api.ReloadResult{At: time.Unix(1_700_000_000, 500_000_000), OK: false, Errors: []string{"director.yaml:3:3: bad"}},
			Services: []api.Service{
				{
					Name: "web", Key: "tcp/203.0.113.10:80", Up: true, Healthy: 1, Quorum: 1,
					Reals: []api.Real{
						real("192.0.2.21:80", "enabled", "up", 100, 5, 2),
						real("192.0.2.22:80", "drained", "down", 0, 1, 0),
						real("192.0.2.23:80", "disabled", "unknown", -1, 0, 0),
						sorry,
					},
				},
				{Key: "udp/203.0.113.10:53", Up: false, Healthy: 0, Quorum: 1},
			},
		},
		Traffic: map[RealID]ipvs.Stats{
			{Service: "tcp/203.0.113.10:80", Real: ap("192.0.2.21:80")}: {Conns: 10, PacketsIn: 200, BytesIn: 30_000},
			{Service: "tcp/203.0.113.10:80", Real: ap("192.0.2.22:80")}: {Conns: 3, PacketsIn: 7, BytesIn: 420, PacketsOut: 1, BytesOut: 60},
		},
	}
}

// newTestSet is a Set of role reading snap (and err) at every scrape,
// with the fixed clock.
func newTestSet(role Role, snap Snapshot, err error) *Set {
	s := New(role)
	s.now = func() time.Time { return now }
	s.Watch(func(context.Context) (Snapshot, error) { return snap, err })
	return s
}

func TestDirectorStateMetrics(t *testing.T) {
	s := newTestSet(RoleDirector, directorSnapshot(), nil)
	const want = `
# HELP dsrd_config_generation Generation of the cluster configuration this node's Raft state holds.
# TYPE dsrd_config_generation gauge
dsrd_config_generation 3
# HELP dsrd_config_running_generation Generation of the cluster configuration this director's IPVS last converged on.
# TYPE dsrd_config_running_generation gauge
dsrd_config_running_generation 2
# HELP dsrd_config_reload_success 1 when the last reload of this director's file (or its submission at start) succeeded, 0 when it was rejected: the running configuration stayed.
# TYPE dsrd_config_reload_success gauge
dsrd_config_reload_success 0
# HELP dsrd_config_last_reload_timestamp_seconds Unix time of the last reload of this director's file (or of its submission at start).
# TYPE dsrd_config_last_reload_timestamp_seconds gauge
dsrd_config_last_reload_timestamp_seconds 1.7000000005e+09
# HELP dsrd_node_info Always 1: this node's id, role (director or witness) and dsrd version.
# TYPE dsrd_node_info gauge
dsrd_node_info{node="dir1",role="director",version="v1.2.3"} 1
# HELP dsrd_raft_leader 1 while this node is the Raft leader with established leadership (after its barrier), else 0.
# TYPE dsrd_raft_leader gauge
dsrd_raft_leader 0
# HELP dsrd_raft_state This node's Raft state, one-hot.
# TYPE dsrd_raft_state gauge
dsrd_raft_state{state="candidate"} 0
dsrd_raft_state{state="follower"} 1
dsrd_raft_state{state="leader"} 0
dsrd_raft_state{state="shutdown"} 0
# HELP dsrd_raft_term This node's current Raft term.
# TYPE dsrd_raft_term gauge
dsrd_raft_term 7
# HELP dsrd_raft_commit_index The highest Raft log index known to be committed.
# TYPE dsrd_raft_commit_index gauge
dsrd_raft_commit_index 42
# HELP dsrd_raft_applied_index The highest Raft log index applied to this node's state.
# TYPE dsrd_raft_applied_index gauge
dsrd_raft_applied_index 41
# HELP dsrd_raft_last_contact_seconds Seconds since this node last heard from the leader: 0 on the leader, +Inf when it never has.
# TYPE dsrd_raft_last_contact_seconds gauge
dsrd_raft_last_contact_seconds 1.5
# HELP dsrd_status_read_success 1 when this scrape read the node's state in full; 0 when part of it (such as the IPVS counters) could not be read.
# TYPE dsrd_status_read_success gauge
dsrd_status_read_success 1
# HELP dsrd_vrrp_state This director's VIP ownership state, one-hot: master holds the VIPs, backup does not, fault cannot (interface down).
# TYPE dsrd_vrrp_state gauge
dsrd_vrrp_state{state="backup"} 1
dsrd_vrrp_state{state="fault"} 0
dsrd_vrrp_state{state="init"} 0
dsrd_vrrp_state{state="master"} 0
dsrd_vrrp_state{state="stop"} 0
# HELP dsrd_vip_owned 1 while this director holds the VIP on its interface, else 0.
# TYPE dsrd_vip_owned gauge
dsrd_vip_owned{interface="eth0",vip="203.0.113.10"} 0
dsrd_vip_owned{interface="eth1",vip="2001:db8::10"} 1
# HELP dsrd_service_up 1 while at least the service's quorum of reals is healthy, else 0.
# TYPE dsrd_service_up gauge
dsrd_service_up{service="udp/203.0.113.10:53"} 0
dsrd_service_up{service="web"} 1
# HELP dsrd_service_healthy_reals Reals of the service that are healthy.
# TYPE dsrd_service_healthy_reals gauge
dsrd_service_healthy_reals{service="udp/203.0.113.10:53"} 0
dsrd_service_healthy_reals{service="web"} 1
`
	names := []string{
		"dsrd_config_generation", "dsrd_config_running_generation", "dsrd_config_reload_success",
		"dsrd_config_last_reload_timestamp_seconds", "dsrd_node_info", "dsrd_raft_leader", "dsrd_raft_state",
		"dsrd_raft_term", "dsrd_raft_commit_index", "dsrd_raft_applied_index", "dsrd_raft_last_contact_seconds",
		"dsrd_status_read_success", "dsrd_vrrp_state", "dsrd_vip_owned", "dsrd_service_up", "dsrd_service_healthy_reals",
	}
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestRealMetrics(t *testing.T) {
	s := newTestSet(RoleDirector, directorSnapshot(), nil)
	// 192.0.2.23 is not in IPVS (no weight, connections nor counters) and
	// not checked yet (no health); the sorry server has no admin state nor
	// health, and no counters in the snapshot.
	const want = `
# HELP dsrd_real_weight The real's weight as programmed in IPVS now (0: no new connections). Absent while the real is not in IPVS.
# TYPE dsrd_real_weight gauge
dsrd_real_weight{real="192.0.2.21:80",service="web"} 100
dsrd_real_weight{real="192.0.2.22:80",service="web"} 0
dsrd_real_weight{real="198.51.100.9:80",service="web"} 0
# HELP dsrd_real_healthy 1 while the real passes its health check, 0 while it fails it. Absent until its check has a verdict.
# TYPE dsrd_real_healthy gauge
dsrd_real_healthy{real="192.0.2.21:80",service="web"} 1
dsrd_real_healthy{real="192.0.2.22:80",service="web"} 0
# HELP dsrd_real_admin_state The real's admin state, one-hot: enabled, drained (weight 0, connections continue) or disabled (out of IPVS).
# TYPE dsrd_real_admin_state gauge
dsrd_real_admin_state{real="192.0.2.21:80",service="web",state="disabled"} 0
dsrd_real_admin_state{real="192.0.2.21:80",service="web",state="drained"} 0
dsrd_real_admin_state{real="192.0.2.21:80",service="web",state="enabled"} 1
dsrd_real_admin_state{real="192.0.2.22:80",service="web",state="disabled"} 0
dsrd_real_admin_state{real="192.0.2.22:80",service="web",state="drained"} 1
dsrd_real_admin_state{real="192.0.2.22:80",service="web",state="enabled"} 0
dsrd_real_admin_state{real="192.0.2.23:80",service="web",state="disabled"} 1
dsrd_real_admin_state{real="192.0.2.23:80",service="web",state="drained"} 0
dsrd_real_admin_state{real="192.0.2.23:80",service="web",state="enabled"} 0
# HELP dsrd_real_active_connections The real's active connections in IPVS (TCP established).
# TYPE dsrd_real_active_connections gauge
dsrd_real_active_connections{real="192.0.2.21:80",service="web"} 5
dsrd_real_active_connections{real="192.0.2.22:80",service="web"} 1
dsrd_real_active_connections{real="198.51.100.9:80",service="web"} 0
# HELP dsrd_real_inactive_connections The real's inactive connections in IPVS (other TCP states, UDP).
# TYPE dsrd_real_inactive_connections gauge
dsrd_real_inactive_connections{real="192.0.2.21:80",service="web"} 2
dsrd_real_inactive_connections{real="192.0.2.22:80",service="web"} 0
dsrd_real_inactive_connections{real="198.51.100.9:80",service="web"} 0
# HELP dsrd_real_connections_total Connections IPVS scheduled to the real (a 32-bit kernel counter: it wraps).
# TYPE dsrd_real_connections_total counter
dsrd_real_connections_total{real="192.0.2.21:80",service="web"} 10
dsrd_real_connections_total{real="192.0.2.22:80",service="web"} 3
# HELP dsrd_real_packets_in_total Packets IPVS forwarded to the real (a 32-bit kernel counter: it wraps).
# TYPE dsrd_real_packets_in_total counter
dsrd_real_packets_in_total{real="192.0.2.21:80",service="web"} 200
dsrd_real_packets_in_total{real="192.0.2.22:80",service="web"} 7
# HELP dsrd_real_packets_out_total Packets from the real through IPVS: 0 in direct routing, where replies bypass the director.
# TYPE dsrd_real_packets_out_total counter
dsrd_real_packets_out_total{real="192.0.2.21:80",service="web"} 0
dsrd_real_packets_out_total{real="192.0.2.22:80",service="web"} 1
# HELP dsrd_real_bytes_in_total Bytes IPVS forwarded to the real.
# TYPE dsrd_real_bytes_in_total counter
dsrd_real_bytes_in_total{real="192.0.2.21:80",service="web"} 30000
dsrd_real_bytes_in_total{real="192.0.2.22:80",service="web"} 420
# HELP dsrd_real_bytes_out_total Bytes from the real through IPVS: 0 in direct routing.
# TYPE dsrd_real_bytes_out_total counter
dsrd_real_bytes_out_total{real="192.0.2.21:80",service="web"} 0
dsrd_real_bytes_out_total{real="192.0.2.22:80",service="web"} 60
`
	names := []string{
		"dsrd_real_weight", "dsrd_real_healthy", "dsrd_real_admin_state", "dsrd_real_active_connections",
		"dsrd_real_inactive_connections", "dsrd_real_connections_total", "dsrd_real_packets_in_total",
		"dsrd_real_packets_out_total", "dsrd_real_bytes_in_total", "dsrd_real_bytes_out_total",
	}
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestLeaderLastContactIsZero(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.Raft.State, snap.Status.Raft.Leader = "Leader", true
	s := newTestSet(RoleDirector, snap, nil)
	for name, want := range map[string]float64{"dsrd_raft_leader": 1, "dsrd_raft_last_contact_seconds": 0} {
		if got := gathered(t, s, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestNeverHeardFromALeaderIsInfinite(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.Raft.State, snap.Status.Raft.LastContact = "Candidate", time.Time{}
	s := newTestSet(RoleDirector, snap, nil)
	if got := gathered(t, s, "dsrd_raft_last_contact_seconds"); got < 1e300 {
		t.Errorf("last contact = %v, want +Inf", got)
	}
}

func TestWitnessHasRaftMetricsOnly(t *testing.T) {
	st := api.Status{Node: "wit", Role: "witness", Version: "v1.2.3", Raft: api.Raft{State: "Leader", Leader: true, Term: 3}, Generation: 4}
	s := newTestSet(RoleWitness, Snapshot{Status: st}, nil)
	if got := gathered(t, s, "dsrd_raft_leader"); got != 1 {
		t.Errorf("dsrd_raft_leader = %v, want 1", got)
	}
	if got := gathered(t, s, "dsrd_config_generation"); got != 4 {
		t.Errorf("dsrd_config_generation = %v, want 4", got)
	}
	for _, name := range []string{
		"dsrd_vrrp_state", "dsrd_vip_owned", "dsrd_config_reload_success", "dsrd_config_running_generation",
		"dsrd_real_weight", "dsrd_check_duration_seconds", "dsrd_ipvs_writes_total", "dsrd_ipvs_reconcile_errors_total",
	} {
		if n, err := testutil.GatherAndCount(s.Gatherer(), name); err != nil || n != 0 {
			t.Errorf("a witness exports %d %s series (err %v), want none", n, name, err)
		}
	}
	// Its events: leadership only; the director's are no-ops.
	s.LeadershipAcquired()
	s.CheckRan("tcp", healthcheck.Run{Service: "web"})
	s.Reconciled(now, time.Second, nil)
	s.IPVSWrite(ipvs.OpAddDest, nil)
	if got := gathered(t, s, "dsrd_failovers_total"); got != 1 {
		t.Errorf("dsrd_failovers_total = %v, want 1", got)
	}
}

func TestFailedReadKeepsWhatWasRead(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.Services, snap.Traffic = nil, nil // as when the IPVS read failed
	s := newTestSet(RoleDirector, snap, errors.New("read ipvs: timeout"))
	if got := gathered(t, s, "dsrd_status_read_success"); got != 0 {
		t.Errorf("dsrd_status_read_success = %v, want 0", got)
	}
	if got := gathered(t, s, "dsrd_raft_term"); got != 7 {
		t.Errorf("dsrd_raft_term = %v, want 7 (read before the failure)", got)
	}
}

func TestNothingReadBeforeStart(t *testing.T) {
	s := newTestSet(RoleDirector, Snapshot{}, errors.New("director not started"))
	const want = `
# HELP dsrd_status_read_success 1 when this scrape read the node's state in full; 0 when part of it (such as the IPVS counters) could not be read.
# TYPE dsrd_status_read_success gauge
dsrd_status_read_success 0
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), "dsrd_status_read_success", "dsrd_raft_leader", "dsrd_raft_last_contact_seconds", "dsrd_node_info"); err != nil {
		t.Error(err)
	}
	// Without a source at all, no state metric exists.
	if n, err := testutil.GatherAndCount(New(RoleDirector).Gatherer(), "dsrd_status_read_success"); err != nil || n != 0 {
		t.Errorf("%d series without a source (err %v), want none", n, err)
	}
}

func TestCheckMetrics(t *testing.T) {
	s := New(RoleDirector)
	run := func(svc, real string, up bool, reason healthcheck.Reason, latency, late time.Duration) healthcheck.Run {
		return healthcheck.Run{
			Key:       healthcheck.Key{Real: ap(real)},
			Service:   svc,
			Scheduled: now, Started: now.Add(late),
			Result: healthcheck.Result{Up: up, Reason: reason, Latency: latency},
		}
	}
	s.CheckRan("http", run("web", "192.0.2.21:80", true, healthcheck.ReasonOK, 3*time.Millisecond, time.Millisecond))
	s.CheckRan("http", run("web", "192.0.2.22:80", false, healthcheck.ReasonTimeout, 2*time.Second, 0))
	s.CheckRan("http", run("web", "192.0.2.21:80", true, healthcheck.ReasonOK, 40*time.Millisecond, 0))
	s.CheckRan("tcp", run("db", "192.0.2.31:5432", false, healthcheck.ReasonRefused, 200*time.Microsecond, 0))
	const want = `
# HELP dsrd_check_results_total Health check runs by service, result (up or down) and reason (ok, timeout, refused, ...).
# TYPE dsrd_check_results_total counter
dsrd_check_results_total{reason="ok",result="up",service="web"} 2
dsrd_check_results_total{reason="refused",result="down",service="db"} 1
dsrd_check_results_total{reason="timeout",result="down",service="web"} 1
# HELP dsrd_check_duration_seconds How long health check runs took, by service and check type.
# TYPE dsrd_check_duration_seconds histogram
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.0005"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.001"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.0025"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.005"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.01"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.025"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.05"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.1"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.25"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="0.5"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="1"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="2.5"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="5"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="10"} 1
dsrd_check_duration_seconds_bucket{service="db",type="tcp",le="+Inf"} 1
dsrd_check_duration_seconds_sum{service="db",type="tcp"} 0.0002
dsrd_check_duration_seconds_count{service="db",type="tcp"} 1
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.0005"} 0
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.001"} 0
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.0025"} 0
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.005"} 1
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.01"} 1
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.025"} 1
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.05"} 2
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.1"} 2
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.25"} 2
dsrd_check_duration_seconds_bucket{service="web",type="http",le="0.5"} 2
dsrd_check_duration_seconds_bucket{service="web",type="http",le="1"} 2
dsrd_check_duration_seconds_bucket{service="web",type="http",le="2.5"} 3
dsrd_check_duration_seconds_bucket{service="web",type="http",le="5"} 3
dsrd_check_duration_seconds_bucket{service="web",type="http",le="10"} 3
dsrd_check_duration_seconds_bucket{service="web",type="http",le="+Inf"} 3
dsrd_check_duration_seconds_sum{service="web",type="http"} 2.043
dsrd_check_duration_seconds_count{service="web",type="http"} 3
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), "dsrd_check_results_total", "dsrd_check_duration_seconds"); err != nil {
		t.Error(err)
	}
	if n, err := testutil.GatherAndCount(s.Gatherer(), "dsrd_check_schedule_delay_seconds"); err != nil || n != 1 {
		t.Errorf("dsrd_check_schedule_delay_seconds: %d series (err %v), want 1", n, err)
	}

	// db leaves the configuration: its series go, web's stay.
	s.RetainServices([]string{"web", "api"})
	if n, err := testutil.GatherAndCount(s.Gatherer(), "dsrd_check_results_total"); err != nil || n != 2 {
		t.Errorf("after db was removed: %d result series (err %v), want web's 2", n, err)
	}
	if n, err := testutil.GatherAndCount(s.Gatherer(), "dsrd_check_duration_seconds"); err != nil || n != 1 {
		t.Errorf("after db was removed: %d duration series (err %v), want web's 1", n, err)
	}
}

func TestReconcileMetrics(t *testing.T) {
	s := New(RoleDirector)
	s.Watch(func(context.Context) (Snapshot, error) { return directorSnapshot(), nil })
	if n, err := testutil.GatherAndCount(s.Gatherer(), "dsrd_ipvs_last_reconcile_success_timestamp_seconds"); err != nil || n != 0 {
		t.Errorf("before any success: %d timestamp series (err %v), want none", n, err)
	}
	s.Reconciled(now, 20*time.Millisecond, nil)
	s.Reconciled(now.Add(time.Minute), 3*time.Second, errors.New("netlink: timeout"))
	s.IPVSWrite(ipvs.OpAddService, nil)
	s.IPVSWrite(ipvs.OpAddDest, nil)
	s.IPVSWrite(ipvs.OpAddDest, nil)
	s.IPVSWrite(ipvs.OpUpdateDest, errors.New("no such destination"))
	for name, want := range map[string]float64{
		"dsrd_ipvs_reconcile_errors_total":                   1,
		"dsrd_ipvs_last_reconcile_success_timestamp_seconds": float64(now.Unix()),
	} {
		if got := gathered(t, s, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	const want = `
# HELP dsrd_ipvs_writes_total IPVS operations written to the kernel, by operation and result (ok or error).
# TYPE dsrd_ipvs_writes_total counter
dsrd_ipvs_writes_total{op="add-dest",result="error"} 0
dsrd_ipvs_writes_total{op="add-dest",result="ok"} 2
dsrd_ipvs_writes_total{op="add-service",result="error"} 0
dsrd_ipvs_writes_total{op="add-service",result="ok"} 1
dsrd_ipvs_writes_total{op="del-dest",result="error"} 0
dsrd_ipvs_writes_total{op="del-dest",result="ok"} 0
dsrd_ipvs_writes_total{op="del-service",result="error"} 0
dsrd_ipvs_writes_total{op="del-service",result="ok"} 0
dsrd_ipvs_writes_total{op="update-dest",result="error"} 1
dsrd_ipvs_writes_total{op="update-dest",result="ok"} 0
dsrd_ipvs_writes_total{op="update-service",result="error"} 0
dsrd_ipvs_writes_total{op="update-service",result="ok"} 0
# HELP dsrd_ipvs_reconcile_duration_seconds How long IPVS reconcile passes took (read the kernel, apply the differences).
# TYPE dsrd_ipvs_reconcile_duration_seconds histogram
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.001"} 0
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.0025"} 0
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.005"} 0
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.01"} 0
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.025"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.05"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.1"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.25"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="0.5"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="1"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="2.5"} 1
dsrd_ipvs_reconcile_duration_seconds_bucket{le="5"} 2
dsrd_ipvs_reconcile_duration_seconds_bucket{le="10"} 2
dsrd_ipvs_reconcile_duration_seconds_bucket{le="30"} 2
dsrd_ipvs_reconcile_duration_seconds_bucket{le="+Inf"} 2
dsrd_ipvs_reconcile_duration_seconds_sum 3.02
dsrd_ipvs_reconcile_duration_seconds_count 2
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), "dsrd_ipvs_writes_total", "dsrd_ipvs_reconcile_duration_seconds"); err != nil {
		t.Error(err)
	}
}

func TestNilSetIsOff(t *testing.T) {
	var s *Set
	s.Watch(func(context.Context) (Snapshot, error) { return Snapshot{}, nil })
	s.LeadershipAcquired()
	s.CheckRan("tcp", healthcheck.Run{})
	s.RetainServices(nil)
	s.Reconciled(now, time.Second, nil)
	s.IPVSWrite(ipvs.OpAddDest, nil)
	if mfs, err := s.Gatherer().Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("a nil Set gathers %d families (err %v), want none", len(mfs), err)
	}
}

func TestNamesFollowConventions(t *testing.T) {
	s := newTestSet(RoleDirector, directorSnapshot(), nil)
	s.LeadershipAcquired()
	s.CheckRan("tcp", healthcheck.Run{Key: healthcheck.Key{Real: ap("192.0.2.21:80")}, Service: "web", Scheduled: now, Started: now})
	s.Reconciled(now, time.Millisecond, nil)
	mfs, err := s.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var dsrd []string
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "dsrd_") {
			dsrd = append(dsrd, name)
		} else if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") {
			t.Errorf("metric %s has neither the dsrd_ prefix nor the Go or process collector's", name)
		}
	}
	if len(dsrd) < 30 {
		t.Errorf("only %d dsrd metrics gathered: %v", len(dsrd), dsrd)
	}
	problems, err := testutil.GatherAndLint(s.Gatherer(), dsrd...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// gathered returns the value of the single series of a gauge or counter.
func gathered(t *testing.T, s *Set, name string) float64 {
	t.Helper()
	mfs, err := s.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		if len(mf.GetMetric()) != 1 {
			t.Fatalf("%s has %d series, want 1", name, len(mf.GetMetric()))
		}
		m := mf.GetMetric()[0]
		if g := m.GetGauge(); g != nil {
			return g.GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no %s gathered", name)
	return 0
}

func TestBGPMetrics(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.VIPs = append(snap.Status.VIPs,
		api.VIP{Address: netip.MustParseAddr("203.0.113.20"), Interface: "lo", Held: true, Mode: "bgp", Announced: true},
		api.VIP{Address: netip.MustParseAddr("203.0.113.21"), Interface: "lo", Held: true, Mode: "bgp", Withdrawn: "no-service-up"},
	)
	snap.Status.BGP = &api.BGP{Peers: []api.BGPPeer{
		{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, State: "established", Announced: 1},
		{Address: netip.MustParseAddr("192.0.2.2"), ASN: 64500, State: "active"},
	}}
	s := newTestSet(RoleDirector, snap, nil)
	s.BGPWithdrawn("no-service-up")
	s.BGPWithdrawn("no-service-up")
	s.BGPWithdrawn("drained")
	const want = `
# HELP dsrd_vip_announced 1 while this director announces the bgp VIP to its routers, else 0 (dsrd status says why).
# TYPE dsrd_vip_announced gauge
dsrd_vip_announced{vip="203.0.113.20"} 1
dsrd_vip_announced{vip="203.0.113.21"} 0
# HELP dsrd_bgp_session_up 1 while the BGP session with the router is established, else 0.
# TYPE dsrd_bgp_session_up gauge
dsrd_bgp_session_up{peer="192.0.2.1"} 1
dsrd_bgp_session_up{peer="192.0.2.2"} 0
# HELP dsrd_bgp_announced_prefixes Prefixes (bgp VIPs) the speaker sends the router.
# TYPE dsrd_bgp_announced_prefixes gauge
dsrd_bgp_announced_prefixes{peer="192.0.2.1"} 1
dsrd_bgp_announced_prefixes{peer="192.0.2.2"} 0
# HELP dsrd_bgp_withdrawals_total Times this director stopped announcing a bgp VIP, by cause (no-service-up, ipvs-not-converged, cut-off-from-cluster, health-view-disagrees, drained).
# TYPE dsrd_bgp_withdrawals_total counter
dsrd_bgp_withdrawals_total{cause="drained"} 1
dsrd_bgp_withdrawals_total{cause="no-service-up"} 2
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want),
		"dsrd_vip_announced", "dsrd_bgp_session_up", "dsrd_bgp_announced_prefixes", "dsrd_bgp_withdrawals_total"); err != nil {
		t.Error(err)
	}
}

func TestIPVSDefenceMetrics(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.IPVS = &api.IPVSStatus{Connections: 1310, Defences: []api.IPVSDefence{
		{Name: "drop_entry", Mode: "auto", Active: true}, {Name: "drop_packet", Mode: "off"}, {Name: "secure_tcp", Mode: "auto"}}}
	s := newTestSet(RoleDirector, snap, nil)
	const want = `
# HELP dsrd_ipvs_connections IPVS connections of the services' reals (active and inactive; persistence templates aside).
# TYPE dsrd_ipvs_connections gauge
dsrd_ipvs_connections 1310
# HELP dsrd_ipvs_defence_active 1 while an IPVS defence acts (drop_entry, drop_packet, secure_tcp: auto below amemthresh, or always), else 0.
# TYPE dsrd_ipvs_defence_active gauge
dsrd_ipvs_defence_active{defence="drop_entry"} 1
dsrd_ipvs_defence_active{defence="drop_packet"} 0
dsrd_ipvs_defence_active{defence="secure_tcp"} 0
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), "dsrd_ipvs_connections", "dsrd_ipvs_defence_active"); err != nil {
		t.Error(err)
	}
}

func TestAdmissionMetrics(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.Services = []api.Service{
		{Name: "web", Key: "tcp/203.0.113.10:80", Admission: &api.Admission{InPlace: true, Deny: 3, SourceRate: "10/second burst 5 packets",
			Dropped: map[string]uint64{"deny": 17, "rate": 4}, MeterSources: 2}},
		{Name: "dns", Key: "udp/203.0.113.10:53", Admission: &api.Admission{InPlace: false, Allow: 1, MeterSources: -1}},
		{Name: "plain", Key: "tcp/203.0.113.10:81"},
	}
	s := newTestSet(RoleDirector, snap, nil)
	const want = `
# HELP dsrd_admission_dropped_packets_total Packets to the service that admission control dropped before IPVS, by reason: deny (source in the deny list), not_allowed (source outside the allow list), rate (the source's new connections over source_rate), cap (the service's new connections over service_rate).
# TYPE dsrd_admission_dropped_packets_total counter
dsrd_admission_dropped_packets_total{reason="deny",service="web"} 17
dsrd_admission_dropped_packets_total{reason="rate",service="web"} 4
# HELP dsrd_admission_meter_sources Sources (or source prefixes) the service's per-source rate meter tracks now; at 65536 the meter is full and new sources are not rate limited per source.
# TYPE dsrd_admission_meter_sources gauge
dsrd_admission_meter_sources{service="web"} 2
# HELP dsrd_admission_in_place 1 while the service's admission control is in the kernel as configured; 0 while it is not, and the service is kept out of IPVS (fail closed).
# TYPE dsrd_admission_in_place gauge
dsrd_admission_in_place{service="dns"} 0
dsrd_admission_in_place{service="web"} 1
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want),
		"dsrd_admission_dropped_packets_total", "dsrd_admission_meter_sources", "dsrd_admission_in_place"); err != nil {
		t.Error(err)
	}
}

func TestIPVSSyncMetrics(t *testing.T) {
	snap := directorSnapshot()
	snap.Status.IPVS = &api.IPVSStatus{Sync: &api.IPVSSync{Daemons: []api.IPVSSyncDaemon{{State: "backup", Interface: "eth0"}},
		Error: "ipvs sync daemons: start master sync daemon on eth1: no such device"}}
	s := newTestSet(RoleDirector, snap, nil)
	const want = `
# HELP dsrd_ipvs_sync_daemon 1 while this director runs the IPVS connection sync daemon of the state (master: sends its connections, backup: receives them), else 0. Absent while ipvs.sync is off.
# TYPE dsrd_ipvs_sync_daemon gauge
dsrd_ipvs_sync_daemon{state="backup"} 1
dsrd_ipvs_sync_daemon{state="master"} 0
# HELP dsrd_ipvs_sync_ok 1 when the last pass left the sync daemons as ipvs.sync asks (backup on every director, master on the VIP owner), 0 when it failed (dsrd status says why). Absent while ipvs.sync is off.
# TYPE dsrd_ipvs_sync_ok gauge
dsrd_ipvs_sync_ok 0
`
	if err := testutil.GatherAndCompare(s.Gatherer(), strings.NewReader(want), "dsrd_ipvs_sync_daemon", "dsrd_ipvs_sync_ok"); err != nil {
		t.Error(err)
	}
	// Off: absent.
	snap.Status.IPVS = &api.IPVSStatus{}
	s = newTestSet(RoleDirector, snap, nil)
	if n, err := testutil.GatherAndCount(s.Gatherer(), "dsrd_ipvs_sync_daemon", "dsrd_ipvs_sync_ok"); err != nil || n != 0 {
		t.Errorf("%d sync series while off (%v)", n, err)
	}
}
