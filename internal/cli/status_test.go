package cli

import (
	"bytes"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// healthyStatus is a director in good order: caught up, last reload and
// reconcile fine, every member running the cluster's generation.
func healthyStatus() api.Status {
	st := apitest.SampleStatus()
	at := time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)
	st.RunningGeneration = st.Generation
	st.Reload = api.ReloadResult{At: at, OK: true, Generation: 12, Changed: true}
	st.Reconcile = api.Reconcile{At: at.Add(time.Second), OK: true}
	st.Services = st.Services[:1]
	// The first real is reached by tunnel (forwarding: tunnel).
	st.Services[0].Reals = slices.Clone(st.Services[0].Reals)
	st.Services[0].Reals[0].Tunnel = true
	st.Peers = []api.Peer{
		{ID: "d2", Role: "director", RunningGeneration: 12, VRRPState: "BACKUP"},
		{ID: "w1", Role: "witness"},
	}
	return st
}

// anycastStatus is a director with bgp VIPs: one announced, one withdrawn
// because its service is down, and a BGP section with two routers.
func anycastStatus() api.Status {
	st := healthyStatus()
	st.VIPs = append(st.VIPs,
		api.VIP{Address: netip.MustParseAddr("203.0.113.20"), Interface: "lo", Held: true, Mode: "bgp", Announced: true},
		api.VIP{Address: netip.MustParseAddr("203.0.113.21"), Interface: "lo", Held: true, Mode: "bgp", Withdrawn: "no-service-up"},
	)
	st.BGP = &api.BGP{Peers: []api.BGPPeer{
		{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, State: "established", BFD: "up", Announced: 1},
		{Address: netip.MustParseAddr("192.0.2.2"), ASN: 64500, State: "active", BFD: "down"},
	}, Error: "announce 203.0.113.20/32: context deadline exceeded",
		Drains: []api.BGPDrain{{Node: "d2", Since: time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC), By: "d1", Forced: true}}}
	st.IPVS = &api.IPVSStatus{Connections: 1310, AMemThresh: 4 << 20, Defences: []api.IPVSDefence{
		{Name: "drop_entry", Mode: "auto", Active: true}, {Name: "drop_packet", Mode: "off"}, {Name: "secure_tcp", Mode: "always", Active: true}}}
	return st
}

// syncStatus is a healthy VIP owner running both sync daemons, and a
// failed pass.
func syncStatus() api.Status {
	st := healthyStatus()
	g := netip.MustParseAddr("224.0.0.81")
	st.IPVS = &api.IPVSStatus{Connections: 40, Sync: &api.IPVSSync{Master: true, Daemons: []api.IPVSSyncDaemon{
		{State: "master", Interface: "eth0", SyncID: 7, MaxLen: 1472, Group: g, Port: 8848, TTL: 1},
		{State: "backup", Interface: "eth0", SyncID: 7, MaxLen: 1472, Group: g, Port: 8848, TTL: 1},
	}, Error: "ipvs sync daemons: start master sync daemon on eth1: no such device (no such interface in the namespace)"}}
	return st
}

// topStatus is dsrd status --top 3: one service with dropped sources, one
// with admission control and none.
func topStatus() api.Status {
	st := healthyStatus()
	web := st.Services[0]
	a := *web.Admission
	a.Top = []api.TopSource{
		{Source: netip.MustParseAddr("192.0.2.100"), Packets: 4951, ExpiresIn: 599900 * time.Millisecond},
		{Source: netip.MustParseAddr("2001:db8::bad"), Packets: 17, ExpiresIn: 7 * time.Minute},
		{Source: netip.MustParseAddr("198.51.100.9"), Packets: 3, ExpiresIn: time.Minute},
	}
	web.Admission = &a
	quiet := web
	quiet.Name = "quiet"
	qa := a
	qa.Top = nil
	quiet.Admission = &qa
	st.Services = []api.Service{web, quiet}
	return st
}

// witnessStatus is a witness following d1, during an election's aftermath.
func witnessStatus() api.Status {
	st := apitest.SampleStatus()
	return api.Status{
		Node: "w1", Role: "witness", Version: "1.0.0",
		Raft: api.Raft{State: "Follower", LeaderID: "d1", LeaderAddress: "192.0.2.11:7946", Term: 7,
			LastContact: time.Date(2026, 11, 2, 9, 31, 0, 0, time.UTC), CommitIndex: 120, AppliedIndex: 119},
		Members:    st.Members,
		Generation: 12,
		ConfigHash: st.ConfigHash,
		Peers: []api.Peer{
			{ID: "d1", Role: "director", RunningGeneration: 11, VRRPState: "MASTER"},
			{ID: "d2", Role: "director", RunningGeneration: 12, VRRPState: "BACKUP"},
		},
	}
}

func TestRenderStatusGolden(t *testing.T) {
	noLeader := witnessStatus()
	noLeader.Raft = api.Raft{State: "Candidate", Term: 8}
	noLeader.Members = slices.Clone(noLeader.Members)
	for i := range noLeader.Members {
		noLeader.Members[i].Leader = false
	}
	noLeader.Peers = nil
	for name, st := range map[string]api.Status{
		"status_director.golden":  apitest.SampleStatus(),
		"status_healthy.golden":   healthyStatus(),
		"status_witness.golden":   witnessStatus(),
		"status_no_leader.golden": noLeader,
		"status_anycast.golden":   anycastStatus(),
		"status_sync.golden":      syncStatus(),
		"status_top.golden":       topStatus(),
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := renderStatus(&buf, st, name == "status_top.golden"); err != nil {
				t.Fatal(err)
			}
			golden(t, name, buf.Bytes())
		})
	}
}

// TestCertLine: dsrd status shows the certificate's expiry and warns from
// 30 days before it.
func TestCertLine(t *testing.T) {
	now := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		left time.Duration
		want string
	}{
		{365 * 24 * time.Hour, "director d1, expires 2027-12-04 (365 days)"},
		{10 * 24 * time.Hour, "director d1, expires 2026-12-14 (10 days): RENEW SOON (dsrd tls cert issue)"},
		{-time.Hour, "director d1, expires 2026-12-03 (0 days): EXPIRED, peers refuse this node"},
	} {
		got := certLine(&api.CertStatus{NodeID: "d1", Role: "director", NotAfter: now.Add(tc.left)}, now)
		if got != tc.want {
			t.Errorf("certLine(%s left) = %q, want %q", tc.left, got, tc.want)
		}
	}
}
