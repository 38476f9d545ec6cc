package director

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/internal/testutil"
)

// seriesOf returns the series of a gauge or counter gathered from m, by
// their labels as "name=value,..." (sorted by name, as gathered).
func seriesOf(t *testing.T, m *metrics.Set, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := s.GetGauge().GetValue()
			if c := s.GetCounter(); c != nil {
				v = c.GetValue()
			}
			out[strings.Join(labels, ",")] = v
		}
	}
	return out
}

// metricWeights returns a director's dsrd_real_weight series of service
// web as weightsOf does for the fake kernel: "addr:port=weight", sorted.
func metricWeights(t *testing.T, m *metrics.Set) []string {
	t.Helper()
	out := []string{}
	for labels, v := range seriesOf(t, m, "dsrd_real_weight") {
		real, ok := strings.CutPrefix(labels, "real=")
		real, svc, _ := strings.Cut(real, ",")
		if ok && svc == "service=web" {
			out = append(out, fmt.Sprintf("%s=%d", real, int(v)))
		}
	}
	slices.Sort(out)
	return out
}

func TestClusterMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Raft cluster on 127.0.0.1")
	}
	l := newLab(t, "")
	l.setHealth("192.0.2.21", true)
	l.setHealth("192.0.2.22", true) // 192.0.2.23 fails its check
	for _, n := range l.dirs {
		l.writeDirector(n, l.service("web", 80, "192.0.2.21", "192.0.2.22", "192.0.2.23"))
		n.metrics = metrics.New(metrics.RoleDirector)
	}
	l.wit.metrics = metrics.New(metrics.RoleWitness)
	l.startWitness()
	l.start(l.dirs["dir1"])
	l.start(l.dirs["dir2"])
	leader := l.waitVIPOwner(nil)
	follower := l.other(leader)
	l.waitWeights(labWeb, "192.0.2.21:80=100", "192.0.2.22:80=100", "192.0.2.23:80=0")

	testutil.WaitFor(t, testTimeout, "the metrics to show one leader, its VIP, the kernel's weights and the checks' verdicts", func() (bool, string) {
		var saw []string
		ok := true
		for _, n := range []*labDirector{leader, follower} {
			isLeader := n == leader
			want := map[string]float64{"dsrd_raft_leader": 0, "dsrd_vrrp_state|state=master": 0}
			if isLeader {
				want = map[string]float64{"dsrd_raft_leader": 1, "dsrd_vrrp_state|state=master": 1}
			}
			for key, w := range want {
				name, labels, _ := strings.Cut(key, "|")
				if got, found := seriesOf(t, n.metrics, name)[labels]; !found || got != w {
					ok = false
					saw = append(saw, fmt.Sprintf("%s %s=%v (found %v)", n.id, key, got, found))
				}
			}
			if got := seriesOf(t, n.metrics, "dsrd_vip_owned")["interface=eth0,vip="+labVIP.String()]; got != map[bool]float64{true: 1}[isLeader] {
				ok = false
				saw = append(saw, fmt.Sprintf("%s vip_owned=%v", n.id, got))
			}
			if got, kernel := metricWeights(t, n.metrics), weightsOf(n.ipvs, labWeb); !slices.Equal(got, kernel) {
				ok = false
				saw = append(saw, fmt.Sprintf("%s weights %v, kernel %v", n.id, got, kernel))
			}
			healthy := seriesOf(t, n.metrics, "dsrd_real_healthy")
			if healthy["real=192.0.2.21:80,service=web"] != 1 || healthy["real=192.0.2.23:80,service=web"] != 0 || len(healthy) != 3 {
				ok = false
				saw = append(saw, fmt.Sprintf("%s healthy %v", n.id, healthy))
			}
		}
		if got := seriesOf(t, l.wit.metrics, "dsrd_raft_leader")[""]; got != 0 {
			ok = false
			saw = append(saw, fmt.Sprintf("witness raft_leader=%v", got))
		}
		return ok, strings.Join(saw, "; ")
	})

	// The event-fed metrics: the leader's takeover, the checks' runs and
	// the reconciler's writes.
	if got := seriesOf(t, leader.metrics, "dsrd_failovers_total")[""]; got < 1 {
		t.Errorf("%s (leader): dsrd_failovers_total = %v, want at least 1", leader.id, got)
	}
	for _, n := range []*labDirector{leader, follower} {
		results := seriesOf(t, n.metrics, "dsrd_check_results_total")
		if results["reason=ok,result=up,service=web"] < 2 || results["reason=exit code,result=down,service=web"] < 1 {
			t.Errorf("%s: check results %v, want ups and exit-code downs of web", n.id, results)
		}
		if got := seriesOf(t, n.metrics, "dsrd_ipvs_writes_total")["op=add-dest,result=ok"]; got < 3 {
			t.Errorf("%s: %v add-dest writes, want at least 3", n.id, got)
		}
		if got := seriesOf(t, n.metrics, "dsrd_ipvs_last_reconcile_success_timestamp_seconds"); len(got) != 1 {
			t.Errorf("%s: last reconcile success %v, want a timestamp", n.id, got)
		}
	}
}
