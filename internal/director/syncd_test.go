package director

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

func TestSyncDaemonsFollowLeadership(t *testing.T) {
	ctx := context.Background()
	f := ipvs.NewFake()
	f.SetInterface("eth0", ipvs.FakeInterface{MTU: 1500})
	f.SetInterface("bond1", ipvs.FakeInterface{MTU: 9000})
	s := newSyncDaemons(slog.New(slog.DiscardHandler), f, func() string { return "eth0" })
	running := func() string {
		t.Helper()
		ds, err := f.SyncDaemons(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			out = append(out, d.State.String()+"@"+d.Interface)
		}
		return strings.Join(out, " ")
	}
	check := func(x *config.IPVSSync, master bool, want string) {
		t.Helper()
		if err := s.reconcile(ctx, x, master); err != nil {
			t.Fatal(err)
		}
		if got := running(); got != want {
			t.Fatalf("running %q, want %q", got, want)
		}
	}
	// Off, and a daemon an operator started: left alone.
	foreign := ipvs.SyncDaemon{State: ipvs.SyncBackup, Interface: "bond1", SyncID: 9}
	if err := f.StartSyncDaemon(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	check(nil, true, "backup@bond1")
	check(&config.IPVSSync{Enabled: false}, true, "backup@bond1")
	if s.status() != nil {
		t.Errorf("status while off: %+v", s.status())
	}
	// On: dsrd owns both states; the backup on node.interface.
	x := &config.IPVSSync{Enabled: true, SyncID: 5, Port: 8900}
	check(x, false, "backup@eth0")
	check(x, true, "master@eth0 backup@eth0")
	st := s.status()
	if st == nil || !st.Master || len(st.Daemons) != 2 || st.Daemons[0].Port != 8900 || st.Daemons[1].Group != netip.MustParseAddr("224.0.0.81") {
		t.Errorf("status %+v", st)
	}
	check(x, false, "backup@eth0") // leadership lost
	// Gone behind dsrd's back (keepalived 1138/1140): re-created.
	if err := f.StopSyncDaemon(ctx, ipvs.SyncBackup); err != nil {
		t.Fatal(err)
	}
	check(x, false, "backup@eth0")
	// Another interface: restarted there.
	check(&config.IPVSSync{Enabled: true, Interface: "bond1"}, true, "master@bond1 backup@bond1")
	// A missing interface fails, and says so in status.
	if err := s.reconcile(ctx, &config.IPVSSync{Enabled: true, Interface: "nosuch0"}, false); err == nil {
		t.Fatal("no error for a missing interface")
	}
	if st := s.status(); st == nil || !strings.Contains(st.Error, "no such interface") {
		t.Errorf("status %+v", st)
	}
	// Turned off after dsrd ran them: stopped.
	check(x, true, "master@eth0 backup@eth0")
	check(nil, true, "")
	if s.status() != nil {
		t.Errorf("status after off: %+v", s.status())
	}
	// Stopped at shutdown.
	check(x, true, "master@eth0 backup@eth0")
	if err := s.stop(ctx); err != nil {
		t.Fatal(err)
	}
	if got := running(); got != "" {
		t.Errorf("running after stop: %q", got)
	}
}

func TestSyncDaemonsWithoutKernelSupport(t *testing.T) {
	s := &syncDaemons{log: slog.New(slog.DiscardHandler), iface: func() string { return "eth0" }}
	if err := s.reconcile(context.Background(), nil, true); err != nil {
		t.Fatal(err)
	}
	if err := s.reconcile(context.Background(), &config.IPVSSync{Enabled: true}, true); err == nil {
		t.Fatal("sync enabled on a kernel backend without it")
	}
}

func TestHasBGPVIP(t *testing.T) {
	a := raft.Spec{VIPs: []raft.VIP{{Address: netip.MustParseAddr("203.0.113.10")}}}
	if hasBGPVIP(a) {
		t.Error("arp VIP taken for bgp")
	}
	a.VIPs = append(a.VIPs, raft.VIP{Address: netip.MustParseAddr("203.0.113.11"), Mode: raft.VIPModeBGP})
	if !hasBGPVIP(a) {
		t.Error("bgp VIP missed")
	}
}

func TestSyncDaemonsNil(t *testing.T) {
	var s *syncDaemons
	if err := s.reconcile(context.Background(), &config.IPVSSync{Enabled: true}, true); err != nil || s.status() != nil || s.stop(context.Background()) != nil {
		t.Error("a nil syncDaemons is not inert")
	}
}

// TestSyncDaemonsRun: requests are applied by run, off the reconcile
// loop; a failed pass (the interface not there yet) is retried.
func TestSyncDaemonsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := ipvs.NewFake()
	s := newSyncDaemons(slog.New(slog.DiscardHandler), f, func() string { return "eth0" })
	done := make(chan struct{})
	go func() { s.run(ctx); close(done) }()
	wait := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ds, err := f.SyncDaemons(ctx)
			if err == nil && len(ds) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d daemons (%v), want %d; status %+v", len(ds), err, want, s.status())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	x := &config.IPVSSync{Enabled: true}
	s.request(x, true) // eth0 does not exist yet: retried
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st := s.status(); st != nil && st.Error != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed pass in status: %+v", s.status())
		}
	}
	f.SetInterface("eth0", ipvs.FakeInterface{MTU: 1500})
	wait(2)
	s.request(x, false)
	wait(1)
	s.request(nil, false)
	wait(0)
	cancel()
	<-done
}
