package ipvs

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// syncIfaceFunc makes an interface in the namespace under test: a Fake's
// SetInterface, or a dummy device in the VM.
type syncIfaceFunc func(t *testing.T, name string, mtu int)

// testSyncContract checks the sync daemon calls of k as the kernel answers
// them; the fake and the VM's kernel run it.
func testSyncContract(t *testing.T, k SyncDaemonKernel, addIface syncIfaceFunc) {
	ctx := context.Background()
	list := func() []SyncDaemon {
		t.Helper()
		ds, err := k.SyncDaemons(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	start := func(d SyncDaemon, want error) {
		t.Helper()
		err := k.StartSyncDaemon(ctx, d)
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("start %v: %v, want %v", d, err, want)
		}
	}
	stop := func(s SyncState, want error) {
		t.Helper()
		err := k.StopSyncDaemon(ctx, s)
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Fatalf("stop %v: %v, want %v", s, err, want)
		}
	}
	expect := func(want ...SyncDaemon) {
		t.Helper()
		if got := list(); !slices.Equal(got, want) {
			t.Fatalf("daemons\n got %v\nwant %v", got, want)
		}
	}
	expect()

	// The defaults: 224.0.0.81:8848 TTL 1; a backup's maxlen from the
	// MTU of lo (65536, clamped to 65535), minus IPv4 and UDP headers.
	start(SyncDaemon{State: SyncBackup, Interface: "lo"}, nil)
	backup := SyncDaemon{State: SyncBackup, Interface: "lo", MaxLen: 65535 - 28, Group: DefaultSyncGroup, Port: 8848, TTL: 1}
	expect(backup)
	start(SyncDaemon{State: SyncBackup, Interface: "lo", SyncID: 9}, syscall.EEXIST)
	expect(backup)

	// A master beside it, with every attribute set (4.3+ attributes).
	master := SyncDaemon{State: SyncMaster, Interface: "lo", SyncID: 7, MaxLen: 1400,
		Group: netip.MustParseAddr("239.255.88.48"), Port: 8850, TTL: 3}
	start(master, nil)
	expect(master, backup)
	stop(SyncMaster, nil)
	stop(SyncMaster, syscall.ESRCH)
	expect(backup)

	// A master's default maxlen is 1500 minus headers, whatever the MTU.
	start(SyncDaemon{State: SyncMaster, Interface: "lo", SyncID: 255}, nil)
	expect(SyncDaemon{State: SyncMaster, Interface: "lo", SyncID: 255, MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1}, backup)
	stop(SyncMaster, nil)
	stop(SyncBackup, nil)
	stop(SyncBackup, syscall.ESRCH)
	expect()

	start(SyncDaemon{State: SyncBackup, Interface: "nosuch0"}, syscall.ENODEV)
	start(SyncDaemon{State: SyncMaster, Interface: "nosuch0"}, syscall.ENODEV)

	// An interface with a 9000 MTU and no address: the backup's default
	// follows the MTU, the master's does not; an IPv6 group has 20 more
	// bytes of headers. (The kernel starts a master on an interface
	// without an address: it then sends from none.)
	addIface(t, "sync0", 9000)
	start(SyncDaemon{State: SyncMaster, Interface: "sync0"}, nil)
	expect(SyncDaemon{State: SyncMaster, Interface: "sync0", MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1})
	stop(SyncMaster, nil)
	g6 := netip.MustParseAddr("ff02::db8:81")
	start(SyncDaemon{State: SyncMaster, Interface: "sync0", Group: g6, Port: 9000}, nil)
	start(SyncDaemon{State: SyncBackup, Interface: "sync0", Group: g6, Port: 9000}, nil)
	expect(SyncDaemon{State: SyncMaster, Interface: "sync0", MaxLen: 1500 - 48, Group: g6, Port: 9000, TTL: 1},
		SyncDaemon{State: SyncBackup, Interface: "sync0", MaxLen: 9000 - 48, Group: g6, Port: 9000, TTL: 1})
	stop(SyncMaster, nil)
	stop(SyncBackup, nil)
	// A backup's smallest and largest maxlen.
	start(SyncDaemon{State: SyncBackup, Interface: "sync0", MaxLen: MinSyncMaxLenBackup}, nil)
	expect(SyncDaemon{State: SyncBackup, Interface: "sync0", MaxLen: MinSyncMaxLenBackup, Group: DefaultSyncGroup, Port: 8848, TTL: 1})
	stop(SyncBackup, nil)
	start(SyncDaemon{State: SyncBackup, Interface: "sync0", MaxLen: 65535 - 28}, nil)
	expect(SyncDaemon{State: SyncBackup, Interface: "sync0", MaxLen: 65535 - 28, Group: DefaultSyncGroup, Port: 8848, TTL: 1})
	stop(SyncBackup, nil)
	expect()

	// What the kernel would change or refuse is refused before the call.
	for _, d := range []SyncDaemon{
		{State: 3, Interface: "lo"},
		{State: SyncBackup, Interface: ""},
		{State: SyncBackup, Interface: "a/b"},
		{State: SyncBackup, Interface: "lo", Group: netip.MustParseAddr("192.0.2.1")},
		{State: SyncBackup, Interface: "lo", MaxLen: 1023},
		{State: SyncMaster, Interface: "lo", MaxLen: 65535 - 27},
	} {
		if err := k.StartSyncDaemon(ctx, d); err == nil || errors.Is(err, syscall.EEXIST) {
			t.Errorf("start %v: %v, want a validation error", d, err)
		}
	}
	expect()
}

func TestFakeSyncContract(t *testing.T) {
	f := NewFake()
	testSyncContract(t, f, func(t *testing.T, name string, mtu int) {
		f.SetInterface(name, FakeInterface{MTU: mtu})
	})
}

func TestFakeSyncMixedFamilies(t *testing.T) {
	f := NewFake()
	s := svc(tcp("192.0.2.1:80"), "rr")
	s.Dests = map[DestKey]Destination{{Addr: addr("2001:db8::2"), Port: 80}: {Key: DestKey{Addr: addr("2001:db8::2"), Port: 80}, Weight: 1, Forward: ForwardTunnel}}
	f.Seed(s)
	err := f.StartSyncDaemon(context.Background(), SyncDaemon{State: SyncBackup, Interface: "lo"})
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("got %v, want EINVAL", err)
	}
}

func TestSyncDaemonSatisfies(t *testing.T) {
	got := SyncDaemon{State: SyncBackup, Interface: "eth0", MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1}
	for _, tc := range []struct {
		want SyncDaemon
		ok   bool
	}{
		{SyncDaemon{State: SyncBackup, Interface: "eth0"}, true},
		{SyncDaemon{State: SyncBackup, Interface: "eth0", MaxLen: 1472, Port: 8848, TTL: 1, Group: DefaultSyncGroup}, true},
		{SyncDaemon{State: SyncBackup, Interface: "eth0", MaxLen: 1400}, false},
		{SyncDaemon{State: SyncBackup, Interface: "eth1"}, false},
		{SyncDaemon{State: SyncBackup, Interface: "eth0", SyncID: 1}, false},
		{SyncDaemon{State: SyncBackup, Interface: "eth0", Port: 8849}, false},
		{SyncDaemon{State: SyncBackup, Interface: "eth0", TTL: 2}, false},
		{SyncDaemon{State: SyncBackup, Interface: "eth0", Group: netip.MustParseAddr("239.1.1.1")}, false},
		{SyncDaemon{State: SyncMaster, Interface: "eth0"}, false},
	} {
		if ok := tc.want.Satisfies(got); ok != tc.ok {
			t.Errorf("%v satisfied by %v: %v, want %v", tc.want, got, ok, tc.ok)
		}
	}
}

func TestReconcileSync(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.SetInterface("eth0", FakeInterface{MTU: 1500})
	backup := SyncDaemon{State: SyncBackup, Interface: "eth0", SyncID: 4}
	master := SyncDaemon{State: SyncMaster, Interface: "eth0", SyncID: 4}
	actions := func(res []SyncResult) string {
		var s []string
		for _, r := range res {
			s = append(s, r.State.String()+"="+string(r.Action))
		}
		return strings.Join(s, " ")
	}
	step := func(want []SyncDaemon, wantActions string, wantWrites int) {
		t.Helper()
		f.ResetCalls()
		res, err := ReconcileSync(ctx, f, want)
		if err != nil {
			t.Fatal(err)
		}
		if got := actions(res); got != wantActions {
			t.Errorf("actions %q, want %q", got, wantActions)
		}
		if w := f.Writes(); w != wantWrites {
			t.Errorf("%d writes, want %d: %v", w, wantWrites, f.Calls())
		}
		ds, _ := f.SyncDaemons(ctx)
		if len(ds) != len(want) {
			t.Errorf("running %v, want %v", ds, want)
		}
	}
	step([]SyncDaemon{backup}, "master=kept backup=started", 1)
	step([]SyncDaemon{backup}, "master=kept backup=kept", 0)
	step([]SyncDaemon{master, backup}, "master=started backup=kept", 1)
	// Another program stopped the master (keepalived issues 1138/1140:
	// daemons that vanish): the next pass starts it again.
	if err := f.StopSyncDaemon(ctx, SyncMaster); err != nil {
		t.Fatal(err)
	}
	step([]SyncDaemon{master, backup}, "master=started backup=kept", 1)
	// Settings changed: the kernel cannot change a running daemon.
	master.Port = 8900
	backup.Port = 8900
	step([]SyncDaemon{backup, master}, "master=restarted backup=restarted", 4)
	step([]SyncDaemon{backup}, "master=stopped backup=kept", 1)
	step(nil, "master=kept backup=stopped", 1)

	// A failure on one state does not keep the other from its turn.
	res, err := ReconcileSync(ctx, f, []SyncDaemon{{State: SyncMaster, Interface: "nosuch0"}, backup})
	if !errors.Is(err, syscall.ENODEV) || actions(res) != "master=kept backup=started" {
		t.Fatalf("got %q %v", actions(res), err)
	}
	// Invalid or duplicate wants are refused before any call.
	f.ResetCalls()
	if _, err := ReconcileSync(ctx, f, []SyncDaemon{backup, backup}); err == nil {
		t.Error("two backups accepted")
	}
	if _, err := ReconcileSync(ctx, f, []SyncDaemon{{State: SyncBackup}}); err == nil {
		t.Error("no interface accepted")
	}
	if n := len(f.Calls()); n != 0 {
		t.Errorf("%d calls for refused wants", n)
	}
}
