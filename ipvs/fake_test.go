package ipvs

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestGoldenSteps drives the golden steps through a Reconciler on the fake
// kernel and compares its `ipvsadm -Sn` print with testdata; the VM test
// compares the real kernel with the same files.
func TestGoldenSteps(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	f.Seed(foreignService())
	r := NewReconciler(f, nil)
	for _, step := range goldenSteps() {
		if _, err := r.Apply(ctx, step.st); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		golden(t, step.name, f.String())
		f.ResetCalls()
		if _, err := r.Apply(ctx, step.st); err != nil {
			t.Fatal(err)
		}
		if n := f.Writes(); n != 0 {
			t.Errorf("%s: a second apply of the same state made %d writes: %v", step.name, n, f.Calls())
		}
	}
}

func TestFormatRulesOrder(t *testing.T) {
	st := state(
		svc(FWMarkKey(IPv6, 2), "rr"),
		svc(FWMarkKey(IPv4, 3), "rr"),
		svc(FWMarkKey(IPv4, 2), "rr"),
		svc(NewServiceKey(SCTP, ap("192.0.2.1:1")), "rr"),
		svc(udp("192.0.2.1:1"), "rr"),
		svc(tcp("[2001:db8::1]:1"), "rr"),
		svc(tcp("192.0.2.2:1"), "rr", "198.51.100.2:1", "198.51.100.1:2", "198.51.100.1:1"),
		svc(tcp("192.0.2.1:2"), "rr"),
		svc(tcp("192.0.2.1:1"), "rr"),
	)
	want := `-A -t 192.0.2.1:1 -s rr
-A -t 192.0.2.1:2 -s rr
-A -t 192.0.2.2:1 -s rr
-a -t 192.0.2.2:1 -r 198.51.100.1:1 -g -w 1
-a -t 192.0.2.2:1 -r 198.51.100.1:2 -g -w 1
-a -t 192.0.2.2:1 -r 198.51.100.2:1 -g -w 1
-A -u 192.0.2.1:1 -s rr
-A --sctp-service 192.0.2.1:1 -s rr
-A -t [2001:db8::1]:1 -s rr
-A -f 2 -s rr
-A -f 2 -6 -s rr
-A -f 3 -s rr
`
	if got := FormatRules(st); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestFakeKernelContract(t *testing.T) {
	testKernelContract(t, NewFake(), nil)
}

func TestFakeWriteBatchContract(t *testing.T) {
	testWriteBatchContract(t, NewFake())
}

// batchKernel is a Kernel that writes in batches.
type batchKernel interface {
	Kernel
	BatchWriter
}

// testWriteBatchContract checks that a batch reports each operation's
// outcome, across several batches, on an empty kernel.
func testWriteBatchContract(t *testing.T, k batchKernel) {
	ctx := context.Background()
	a, b := tcp("192.0.2.1:80"), tcp("192.0.2.2:80")
	ops := []Op{
		{Kind: OpAddService, Service: NewService(a, "rr")},
		{Kind: OpAddService, Service: NewService(a, "rr")},
		{Kind: OpAddService, Service: NewService(b, "nosuch")},
		{Kind: OpAddDest, Service: Service{Key: b}, Dest: NewDestination(addr("198.51.100.1"), 80, 1)},
		{Kind: OpAddDest, Service: Service{Key: a}, Dest: NewDestination(addr("198.51.100.1"), 80, 1)},
		{Kind: OpUpdateDest, Service: Service{Key: a}, Dest: NewDestination(addr("198.51.100.9"), 80, 1)},
		{Kind: OpAddDest, Service: Service{Key: a}, Dest: NewDestination(addr("2001:db8::1"), 80, 1)},
		{Kind: OpUpdateService, Service: NewService(b, "rr")},
	}
	// Many more than a batch holds, half of them failing.
	for i := range 600 {
		d := NewDestination(netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i%200)}), uint16(1000+i/200), 1)
		ops = append(ops, Op{Kind: OpAddDest, Service: Service{Key: a}, Dest: d})
		ops = append(ops, Op{Kind: OpDelDest, Service: Service{Key: b}, Dest: d})
	}
	ops = append(ops, Op{Kind: OpUpdateDest, Service: Service{Key: a}, Dest: NewDestination(addr("198.51.100.1"), 80, 7)})
	errs := k.WriteBatch(ctx, ops)
	if len(errs) != len(ops) {
		t.Fatalf("%d errors for %d operations", len(errs), len(ops))
	}
	want := []error{nil, syscall.EEXIST, syscall.ENOENT, syscall.ESRCH, nil, syscall.ENOENT, syscall.EINVAL, syscall.ESRCH}
	for i, w := range want {
		if (w == nil) != (errs[i] == nil) || w != nil && !errors.Is(errs[i], w) {
			t.Errorf("operation %d %s: %v, want %v", i, ops[i], errs[i], w)
		}
	}
	var se *SchedulerError
	if !errors.As(errs[2], &se) {
		t.Errorf("unknown scheduler in a batch: %v is not a SchedulerError", errs[2])
	}
	for i := len(want); i < len(ops)-1; i += 2 {
		if errs[i] != nil || !errors.Is(errs[i+1], syscall.ESRCH) {
			t.Fatalf("operations %d and %d: %v, %v; want nil and ESRCH", i, i+1, errs[i], errs[i+1])
		}
	}
	if errs[len(ops)-1] != nil {
		t.Errorf("last operation: %v", errs[len(ops)-1])
	}
	ds, err := k.GetDestinations(ctx, a)
	if err != nil || len(ds) != 601 {
		t.Fatalf("%d destinations (%v), want 601", len(ds), err)
	}
	for _, d := range ds {
		if d.Key == (DestKey{addr("198.51.100.1"), 80}) && d.Weight != 7 {
			t.Errorf("the last update did not land: %+v", d)
		}
	}
	for _, key := range []ServiceKey{a} {
		if err := k.DelService(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFakeFailWriteAndCounts(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	boom := errors.New("boom")
	f.FailWrite(2, boom)
	k := tcp("192.0.2.1:80")
	if err := f.NewService(ctx, NewService(k, "rr")); err != nil {
		t.Fatal(err)
	}
	err := f.NewDestination(ctx, k, NewDestination(addr("198.51.100.1"), 80, 1))
	if !errors.Is(err, boom) {
		t.Fatalf("second write: %v, want boom", err)
	}
	if len(f.State()[k].Dests) != 0 {
		t.Error("a failed write changed the state")
	}
	if err := f.NewDestination(ctx, k, NewDestination(addr("198.51.100.1"), 80, 1)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.GetServices(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.Writes(); got != 3 {
		t.Errorf("writes %d, want 3", got)
	}
	if got := f.WritesTo(k); got != 3 {
		t.Errorf("writes to %s: %d, want 3", k, got)
	}
	if got := len(f.Calls()); got != 4 {
		t.Errorf("calls %d, want 4", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.GetServices(ctx); err == nil {
		t.Error("call after Close succeeded")
	}
}

func TestFakeTimeouts(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	if err := f.SetTimeouts(ctx, Timeouts{TCP: 1500 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	got, err := f.Timeouts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := Timeouts{TCP: 2 * time.Second, TCPFin: 120 * time.Second, UDP: 300 * time.Second}
	if got != want {
		t.Errorf("timeouts %+v, want %+v", got, want)
	}
}

func TestApplyTimeouts(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	want := Timeouts{TCP: 900 * time.Second, UDP: 60 * time.Second}
	if err := ApplyTimeouts(ctx, f, want); err != nil {
		t.Fatal(err)
	}
	got, _ := f.Timeouts(ctx)
	if want := (Timeouts{TCP: 900 * time.Second, TCPFin: 120 * time.Second, UDP: 60 * time.Second}); got != want {
		t.Errorf("timeouts %+v, want %+v", got, want)
	}
	f.ResetCalls()
	if err := ApplyTimeouts(ctx, f, want); err != nil {
		t.Fatal(err)
	}
	if n := f.Writes(); n != 0 {
		t.Errorf("unchanged timeouts made %d writes", n)
	}
	if err := ApplyTimeouts(ctx, f, Timeouts{}); err != nil || len(f.Calls()) != 1 {
		t.Errorf("no timeouts configured: %v, calls %v", err, f.Calls())
	}
}

// testKernelContract checks a Kernel against the kernel's rules: the fake
// in unit tests, the real kernel in the VM. k must be empty. ipvsadm, when
// not nil, returns the real `ipvsadm -Sn` to compare with the fake's print.
func testKernelContract(t *testing.T, k Kernel, ipvsadm func() string) {
	ctx := context.Background()
	mustErrno := func(what string, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", what, err, want)
		}
	}
	ok := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	k4 := tcp("192.0.2.1:80")
	s4 := NewService(k4, "wlc")
	s4.SetPersistence(600*time.Second, 24)
	ok("new service", k.NewService(ctx, s4))
	mustErrno("duplicate service", k.NewService(ctx, s4), syscall.EEXIST)

	nosuch := NewService(tcp("192.0.2.2:80"), "nosuch")
	err := k.NewService(ctx, nosuch)
	mustErrno("unknown scheduler", err, syscall.ENOENT)
	var se *SchedulerError
	if !errors.As(err, &se) || se.Scheduler != "nosuch" {
		t.Errorf("unknown scheduler: %v is not a SchedulerError for nosuch", err)
	}
	if want := "new service tcp/192.0.2.2:80: scheduler nosuch is not available: load the ip_vs_nosuch module"; err == nil || err.Error() != want {
		t.Errorf("unknown scheduler message:\n got %v\nwant %s", err, want)
	}

	missing := NewService(tcp("192.0.2.9:80"), "rr")
	mustErrno("update missing service", k.UpdateService(ctx, missing), syscall.ESRCH)
	mustErrno("delete missing service", k.DelService(ctx, missing.Key), syscall.ESRCH)
	d1 := NewDestination(addr("198.51.100.1"), 80, 5)
	mustErrno("dest of missing service", k.NewDestination(ctx, missing.Key, d1), syscall.ESRCH)
	ds, err := k.GetDestinations(ctx, missing.Key)
	if err != nil || len(ds) != 0 {
		t.Errorf("destinations of a missing service: %v, %v; want none, no error", ds, err)
	}

	ok("new dest", k.NewDestination(ctx, k4, d1))
	mustErrno("duplicate dest", k.NewDestination(ctx, k4, d1), syscall.EEXIST)
	bad := NewDestination(addr("198.51.100.2"), 80, 1)
	bad.LowerThreshold = 10
	mustErrno("lower threshold above upper", k.NewDestination(ctx, k4, bad), syscall.ERANGE)
	other := NewDestination(addr("2001:db8::1"), 80, 1)
	mustErrno("dest of another family", k.NewDestination(ctx, k4, other), syscall.EINVAL)
	nd := NewDestination(addr("198.51.100.3"), 80, 1)
	mustErrno("update missing dest", k.UpdateDestination(ctx, k4, nd), syscall.ENOENT)
	mustErrno("delete missing dest", k.DelDestination(ctx, k4, nd.Key), syscall.ENOENT)
	d2 := NewDestination(addr("198.51.100.2"), 80, 0)
	d2.UpperThreshold, d2.LowerThreshold = 100, 10
	ok("new dest with thresholds", k.NewDestination(ctx, k4, d2))
	d1.Weight = 9
	ok("update dest", k.UpdateDestination(ctx, k4, d1))
	tun := NewDestination(addr("198.51.100.4"), 80, 2)
	tun.Forward = ForwardTunnel
	ok("new tunnel dest", k.NewDestination(ctx, k4, tun))
	tun6 := NewDestination(addr("2001:db8::4"), 80, 1)
	tun6.Forward = ForwardTunnel
	mustErrno("tunnel dest of another family", k.NewDestination(ctx, k4, tun6), syscall.EINVAL)
	tun.Forward = ForwardDR
	ok("tunnel dest to direct routing, in place", k.UpdateDestination(ctx, k4, tun))
	if ds, err := k.GetDestinations(ctx, k4); err != nil || !slices.ContainsFunc(ds, func(d Destination) bool { return d.Key == tun.Key && d.Forward == ForwardDR }) {
		t.Errorf("after the update to direct routing: %+v, %v", ds, err)
	}
	tun.Forward = ForwardTunnel
	ok("and back to tunnel", k.UpdateDestination(ctx, k4, tun))

	k6 := tcp("[2001:db8::1]:443")
	s6 := NewService(k6, "mh")
	s6.Flags |= FlagMHFallback | FlagMHPort
	s6.SetPersistence(300*time.Second, 64)
	ok("new v6 service", k.NewService(ctx, s6))
	ok("new v6 dest", k.NewDestination(ctx, k6, NewDestination(addr("2001:db8::10"), 443, 3)))
	bad6 := NewService(tcp("[2001:db8::2]:443"), "rr")
	bad6.SetPersistence(300*time.Second, 129)
	mustErrno("v6 netmask 129", k.NewService(ctx, bad6), syscall.EINVAL)

	kf := FWMarkKey(IPv6, 8)
	ok("new fwmark service", k.NewService(ctx, NewService(kf, "rr")))
	ok("new fwmark dest", k.NewDestination(ctx, kf, NewDestination(addr("2001:db8::20"), 0, 1)))
	ku := udp("192.0.2.1:53")
	su := NewService(ku, "sh")
	su.Flags |= FlagSHFallback | FlagOnePacket
	ok("new udp service", k.NewService(ctx, su))

	st, err := ReadState(ctx, k, nil)
	ok("read state", err)
	got := st[k4]
	if got.Flags != FlagPersistent|FlagHashed || got.Timeout != 600*time.Second || got.Netmask != 24 || got.Scheduler != "wlc" {
		t.Errorf("v4 service read back as %+v", got)
	}
	if d := got.Dests[d2.Key]; d.UpperThreshold != 100 || d.LowerThreshold != 10 || d.Weight != 0 || d.Forward != ForwardDR {
		t.Errorf("dest read back as %+v", d)
	}
	if d := got.Dests[d1.Key]; d.Weight != 9 {
		t.Errorf("updated dest read back as %+v", d)
	}
	if d := got.Dests[tun.Key]; d.Forward != ForwardTunnel || d.Weight != 2 {
		t.Errorf("tunnel dest read back as %+v", d)
	}
	if g6 := st[k6]; g6.Netmask != 64 || g6.Flags != FlagPersistent|FlagHashed|FlagMHFallback|FlagMHPort {
		t.Errorf("v6 service read back as %+v", g6)
	}
	if gu := st[ku]; gu.Netmask != 32 || gu.Flags != FlagHashed|FlagSHFallback|FlagOnePacket {
		t.Errorf("udp service read back as %+v", gu)
	}
	want := `-A -t 192.0.2.1:80 -s wlc -p 600 -M 255.255.255.0
-a -t 192.0.2.1:80 -r 198.51.100.1:80 -g -w 9
-a -t 192.0.2.1:80 -r 198.51.100.2:80 -g -w 0
-a -t 192.0.2.1:80 -r 198.51.100.4:80 -i -w 2 --tun-type ipip
-A -u 192.0.2.1:53 -s sh -o -b sh-fallback
-A -t [2001:db8::1]:443 -s mh -p 300 -M 64 -b mh-fallback,mh-port
-a -t [2001:db8::1]:443 -r [2001:db8::10]:443 -g -w 3
-A -f 8 -6 -s rr
-a -f 8 -6 -r [2001:db8::20]:0 -g -w 1
`
	if p := FormatRules(st); p != want {
		t.Errorf("state prints as\n%s\nwant\n%s", p, want)
	}
	if ipvsadm != nil {
		if p := ipvsadm(); p != want {
			t.Errorf("ipvsadm -Sn prints\n%s\nwant\n%s", p, want)
		}
	}

	// An update keeps the destinations and their counters.
	s4.Scheduler = "rr"
	s4.SetPersistence(0, 0)
	ok("update service", k.UpdateService(ctx, s4))
	mustErrno("update to unknown scheduler", k.UpdateService(ctx, NewService(k4, "nosuch")), syscall.ENOENT)
	ds, err = k.GetDestinations(ctx, k4)
	ok("get dests", err)
	if len(ds) != 3 {
		t.Errorf("after a service update, %d dests, want 3", len(ds))
	}
	ok("delete dest", k.DelDestination(ctx, k4, d1.Key))
	for _, key := range []ServiceKey{k4, k6, kf, ku} {
		ok("delete service", k.DelService(ctx, key))
	}
	svcs, err := k.GetServices(ctx)
	ok("get services", err)
	if len(svcs) != 0 {
		t.Errorf("services left: %v", svcs)
	}

	if ts, isTS := k.(TimeoutSetter); isTS {
		ok("set timeouts", ts.SetTimeouts(ctx, Timeouts{TCP: 1000 * time.Second, UDP: 1500 * time.Millisecond}))
		got, err := ts.Timeouts(ctx)
		ok("get timeouts", err)
		if got.TCP != 1000*time.Second || got.UDP != 2*time.Second || got.TCPFin == 0 {
			t.Errorf("timeouts %+v", got)
		}
	}
}
