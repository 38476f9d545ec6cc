//go:build vmtest

// Tests of the kernel backend against the real IPVS, run inside the VM lab
// (tests/vm/run) as root, each in a network namespace of its own: IPVS
// state is per namespace. Build and run:
//
//	go test -c -tags vmtest -o .cache/ipvs.test ./ipvs
//	tests/vm/run .cache/ipvs.test -test.v
package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// vmNetns is a fresh named network namespace (/run/netns/NAME, so that
// `ip netns exec` reaches it) with lo up.
type vmNetns struct {
	t    *testing.T
	name string
}

// newVMNetns creates a namespace for the test and deletes it at the end.
func newVMNetns(t *testing.T) *vmNetns {
	t.Helper()
	// As tests/e2e/lab: skip outside the lab, never skip inside it.
	privileged.Require(t,
		privileged.NetNS("to create a network namespace per test"),
		privileged.Need{What: "kernel IPVS, which the VM lab has (tests/vm/run)", Missing: Probe})
	name := fmt.Sprintf("ipvs-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.NewNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: let it die with the test
		// goroutine (no UnlockOSThread).
		t.Fatalf("restore the network namespace: %v", err)
	}
	orig.Close()
	runtime.UnlockOSThread()
	n := &vmNetns{t: t, name: name}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	n.in(func() error {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			return fmt.Errorf("bring lo up: %w", err)
		}
		return nil
	})
	return n
}

// path is the namespace's file.
func (n *vmNetns) path() string { return "/run/netns/" + n.name }

// run runs a command in the namespace and returns its output. The child
// is forked from a thread in the namespace (`ip netns exec` costs over a
// second in the VM).
func (n *vmNetns) run(args ...string) string {
	n.t.Helper()
	var out []byte
	var err error
	n.in(func() error {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		return nil // reported below, with the output
	})
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipvsadm returns `ipvsadm -Sn` in the namespace.
func (n *vmNetns) ipvsadm() string { return n.run("ipvsadm", "-Sn") }

// in runs f on a thread switched into the namespace (sockets f opens and
// processes it starts belong to it); it fails the test with f's error.
// f runs on a goroutine of its own: it returns its error rather than
// calling t.Fatal.
func (n *vmNetns) in(f func() error) {
	n.t.Helper()
	ns, err := netns.GetFromPath(n.path())
	if err != nil {
		n.t.Fatal(err)
	}
	defer ns.Close()
	if err := netnsutil.Run(ns, f); err != nil {
		n.t.Fatal(err)
	}
}

// open returns a Netlink handle on the namespace, closed at the end.
func (n *vmNetns) open(opts ...NetlinkOption) *Netlink {
	n.t.Helper()
	k, err := OpenNetlink(context.Background(), n.path(), opts...)
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { k.Close() })
	return k
}

// countingKernel counts the calls made through it.
type countingKernel struct {
	Kernel
	reads, writes, trips atomic.Int64
}

func (c *countingKernel) GetServices(ctx context.Context) ([]Service, error) {
	c.reads.Add(1)
	return c.Kernel.GetServices(ctx)
}
func (c *countingKernel) GetDestinations(ctx context.Context, k ServiceKey) ([]Destination, error) {
	c.reads.Add(1)
	return c.Kernel.GetDestinations(ctx, k)
}
func (c *countingKernel) NewService(ctx context.Context, s Service) error {
	c.writes.Add(1)
	c.trips.Add(1)
	return c.Kernel.NewService(ctx, s)
}
func (c *countingKernel) UpdateService(ctx context.Context, s Service) error {
	c.writes.Add(1)
	c.trips.Add(1)
	return c.Kernel.UpdateService(ctx, s)
}
func (c *countingKernel) DelService(ctx context.Context, k ServiceKey) error {
	c.writes.Add(1)
	c.trips.Add(1)
	return c.Kernel.DelService(ctx, k)
}
func (c *countingKernel) NewDestination(ctx context.Context, k ServiceKey, d Destination) error {
	c.writes.Add(1)
	c.trips.Add(1)
	return c.Kernel.NewDestination(ctx, k, d)
}
func (c *countingKernel) UpdateDestination(ctx context.Context, k ServiceKey, d Destination) error {
	c.writes.Add(1)
	c.trips.Add(1)
	return c.Kernel.UpdateDestination(ctx, k, d)
}
func (c *countingKernel) DelDestination(ctx context.Context, k ServiceKey, d DestKey) error {
	c.writes.Add(1)
	c.trips.Add(1)
	return c.Kernel.DelDestination(ctx, k, d)
}

// WriteBatch counts the writes and one round trip per batch of up to
// DefaultBatchSize (Netlink's default).
func (c *countingKernel) WriteBatch(ctx context.Context, ops []Op) []error {
	c.writes.Add(int64(len(ops)))
	c.trips.Add(int64((len(ops) + DefaultBatchSize - 1) / DefaultBatchSize))
	if bw, ok := c.Kernel.(BatchWriter); ok {
		return bw.WriteBatch(ctx, ops)
	}
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = (&Reconciler{k: c.Kernel}).exec(ctx, op)
	}
	return errs
}

// reset zeroes the counters.
func (c *countingKernel) reset() { c.reads.Store(0); c.writes.Store(0); c.trips.Store(0) }

func TestVMKernelContract(t *testing.T) {
	n := newVMNetns(t)
	testKernelContract(t, n.open(), n.ipvsadm)
}

func TestVMWriteBatchContract(t *testing.T) {
	n := newVMNetns(t)
	testWriteBatchContract(t, n.open())
	testWriteBatchContract(t, n.open(WithBatchSize(1)))
}

// TestVMGoldenSteps applies the golden steps to the real kernel and compares
// `ipvsadm -Sn` with the same testdata as the fake's test, with an
// operator's service (created by ipvsadm) that must survive every step.
func TestVMGoldenSteps(t *testing.T) {
	ctx := context.Background()
	n := newVMNetns(t)
	for _, cmd := range foreignIpvsadm {
		n.run(append([]string{"ipvsadm"}, strings.Fields(cmd)...)...)
	}
	k := &countingKernel{Kernel: n.open()}
	r := NewReconciler(k, nil)
	for _, step := range goldenSteps() {
		if _, err := r.Apply(ctx, step.st); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		golden(t, step.name, n.ipvsadm())
		k.reset()
		if _, err := r.Apply(ctx, step.st); err != nil {
			t.Fatal(err)
		}
		if w := k.writes.Load(); w != 0 {
			t.Errorf("%s: a second apply made %d writes", step.name, w)
		}
		// A new reconciler (a restarted dsrd) adopts it all: no write.
		k.reset()
		if _, err := NewReconciler(k, nil).Apply(ctx, step.st); err != nil {
			t.Fatal(err)
		}
		if w := k.writes.Load(); w != 0 {
			t.Errorf("%s: adoption by a new reconciler made %d writes", step.name, w)
		}
	}
}

// TestVMThresholdsAndForwarding checks what ipvsadm -S does not show.
func TestVMThresholdsAndForwarding(t *testing.T) {
	ctx := context.Background()
	n := newVMNetns(t)
	k := n.open()
	steps := goldenSteps()
	if _, err := NewReconciler(k, nil).Apply(ctx, steps[0].st); err != nil {
		t.Fatal(err)
	}
	out := n.run("ipvsadm", "-Ln", "--thresholds")
	if !regexp.MustCompile(`198\.51\.100\.3:80\s+100\s+10\s`).MatchString(out) {
		t.Errorf("thresholds 100/10 not in\n%s", out)
	}
	// Every forwarding method reads back as written.
	sk := tcp("192.0.2.50:80")
	if err := k.NewService(ctx, NewService(sk, "rr")); err != nil {
		t.Fatal(err)
	}
	for i, f := range []Forward{ForwardDR, ForwardMasq, ForwardTunnel, ForwardLocal} {
		d := NewDestination(addr(fmt.Sprintf("198.51.100.%d", 60+i)), 80, 1)
		d.Forward = f
		if err := k.NewDestination(ctx, sk, d); err != nil {
			t.Fatalf("%v: %v", f, err)
		}
	}
	ds, err := k.GetDestinations(ctx, sk)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range ds {
		i := int(d.Key.Addr.As4()[3]) - 60
		if want := []Forward{ForwardDR, ForwardMasq, ForwardTunnel, ForwardLocal}[i]; d.Forward != want {
			t.Errorf("%s reads back %v, want %v", d.Key, d.Forward, want)
		}
	}
	st, err := ReadState(ctx, k, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The fake's print of every method is ipvsadm's.
	if got, want := FormatRules(state(st[sk])), FormatRules(state(st[sk])); !strings.Contains(n.ipvsadm(), got) {
		t.Errorf("ipvsadm -Sn does not contain\n%s\n(fake print); it is\n%s", want, n.ipvsadm())
	}
}

// connLines returns `ipvsadm -Lnc` without the expiry column, sorted.
func connLines(n *vmNetns) []string {
	var out []string
	for _, l := range strings.Split(n.run("ipvsadm", "-Lnc"), "\n") {
		f := strings.Fields(l)
		if len(f) == 6 && f[0] != "pro" {
			out = append(out, strings.Join(append(f[:1:1], f[2:]...), " "))
		}
	}
	slices.Sort(out)
	return out
}

// TestVMRestartKeepsConnections opens connections through IPVS, restarts
// the reconciler (a new one on a new handle) and checks that it makes no
// write and that connection entries, persistence templates and counters
// are all still there: nothing was flushed or re-created.
func TestVMRestartKeepsConnections(t *testing.T) {
	ctx := context.Background()
	n := newVMNetns(t)
	// VIPs are local (DR directors hold them); the reals' subnet routes to
	// a dummy device that drops what IPVS sends: the entries exist anyway.
	n.in(func() error {
		dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}}
		if err := netlink.LinkAdd(dummy); err != nil {
			return err
		}
		for _, a := range []string{"192.0.2.1/32", "192.0.2.2/32", "198.51.100.254/24"} {
			ad, _ := netlink.ParseAddr(a)
			if err := netlink.AddrAdd(dummy, ad); err != nil {
				return err
			}
		}
		return netlink.LinkSetUp(dummy)
	})
	desired := goldenSteps()[0].st
	k1 := n.open()
	if _, err := NewReconciler(k1, nil).Apply(ctx, desired); err != nil {
		t.Fatal(err)
	}
	n.in(func() error {
		for _, a := range []string{"192.0.2.1:80", "192.0.2.1:80", "192.0.2.2:443"} {
			c, err := net.DialTimeout("tcp", a, 100*time.Millisecond)
			if err == nil {
				c.Close()
			}
		}
		return nil
	})
	before := connLines(n)
	if len(before) < 3 || !strings.Contains(strings.Join(before, "\n"), "NONE") {
		t.Fatalf("expected connection entries and a persistence template, got %v", before)
	}
	statsBefore, err := ReadState(ctx, k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	k1.Close()

	k2 := &countingKernel{Kernel: n.open()}
	if _, err := NewReconciler(k2, nil).Apply(ctx, desired); err != nil {
		t.Fatal(err)
	}
	if w := k2.writes.Load(); w != 0 {
		t.Errorf("the restarted reconciler made %d writes", w)
	}
	if after := connLines(n); !slices.Equal(before, after) {
		t.Errorf("connection entries changed across the restart:\nbefore %v\nafter  %v", before, after)
	}
	statsAfter, err := ReadState(ctx, k2, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The reals' connection counters (kept by the kernel as the entries come
	// and go; the traffic statistics lag behind, summed every 2 s).
	conns := func(s Service) (n uint64) {
		for _, d := range s.Dests {
			n += d.Conns()
		}
		return n
	}
	for _, key := range []ServiceKey{tcp("192.0.2.1:80"), tcp("192.0.2.2:443")} {
		b, a := conns(statsBefore[key]), conns(statsAfter[key])
		if b == 0 || a != b {
			t.Errorf("%s: %d connections before, %d after", key, b, a)
		}
	}
}

// TestVMCallDeadline checks that a call that overruns its deadline fails
// and that the next call works on a reopened handle in the same namespace.
func TestVMCallDeadline(t *testing.T) {
	ctx := context.Background()
	n := newVMNetns(t)
	k := n.open()
	key := tcp("192.0.2.1:80")
	if err := k.NewService(ctx, NewService(key, "rr")); err != nil {
		t.Fatal(err)
	}
	k.callTimeout = time.Nanosecond
	_, err := k.GetServices(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call past its deadline returned %v", err)
	}
	k.callTimeout = DefaultCallTimeout
	svcs, err := k.GetServices(ctx)
	if err != nil || len(svcs) != 1 || svcs[0].Key != key {
		t.Fatalf("after the reopen: %v, %v", svcs, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := k.GetServices(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("a call with a cancelled context returned %v", err)
	}
}

func TestVMSysctls(t *testing.T) {
	n := newVMNetns(t)
	n.in(func() error {
		return ApplySysctls(context.Background(), ProcSys{}, DirectorSysctls(allOn))
	})
	n.in(func() error {
		for _, s := range DirectorSysctls(allOn) {
			if got, err := (ProcSys{}).Get(s.Key()); err != nil || got != s.Value {
				t.Errorf("%s=%s (%v), want %s", s.Key(), got, err, s.Value)
			}
		}
		return nil
	})
	// Another namespace keeps its own values.
	if got, err := (ProcSys{}).Get("net.ipv4.vs.sloppy_tcp"); err != nil || got != "0" {
		t.Errorf("the VM's own sloppy_tcp is %q (%v), want the default 0", got, err)
	}
}

// The defences in a namespace of their own: each mode's value lands, the
// namespace's amemthresh takes the pages, and an auto defence the kernel
// has switched on (2: written here as the kernel would) is left alone by a
// second apply.
func TestVMDefenceSysctls(t *testing.T) {
	n := newVMNetns(t)
	s := allOn
	s.DropEntry, s.DropPacket, s.SecureTCP, s.AMemThresh = DefenceAuto, DefenceAlways, DefenceOff, 64<<20
	pages := fmt.Sprint((64 << 20) / os.Getpagesize())
	n.in(func() error { return ApplySysctls(context.Background(), ProcSys{}, DirectorSysctls(s)) })
	n.in(func() error {
		for name, want := range map[string]string{"drop_entry": "1", "drop_packet": "3", "secure_tcp": "0", "amemthresh": pages} {
			if got, err := (ProcSys{}).Get("net.ipv4.vs." + name); err != nil || got != want {
				t.Errorf("net.ipv4.vs.%s=%s (%v), want %s", name, got, err, want)
			}
		}
		if err := (ProcSys{}).Set("net.ipv4.vs.drop_entry", "2"); err != nil {
			return err
		}
		if err := ApplySysctls(context.Background(), ProcSys{}, DirectorSysctls(s)); err != nil {
			return err
		}
		// The kernel's once-a-second defence work may itself have set it
		// back to 1 (free memory is plenty here): 1 and 2 are both auto.
		if got, _ := (ProcSys{}).Get("net.ipv4.vs.drop_entry"); got != "2" && got != "1" {
			t.Errorf("drop_entry %s after a second apply, want auto's 2 or 1", got)
		}
		return nil
	})
}

func TestVMOpenCurrentNamespaceAndMissing(t *testing.T) {
	n := newVMNetns(t)
	var k *Netlink
	n.in(func() error {
		var err error
		k, err = OpenNetlink(context.Background(), "")
		return err
	})
	defer k.Close()
	// Created from another thread, the service lands in the namespace the
	// handle was opened in.
	if err := k.NewService(context.Background(), NewService(tcp("192.0.2.1:80"), "rr")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(n.ipvsadm(), "-A -t 192.0.2.1:80 -s rr") {
		t.Errorf("service not in the namespace:\n%s", n.ipvsadm())
	}
	if _, err := OpenNetlink(context.Background(), "/run/netns/does-not-exist"); err == nil {
		t.Error("opened a missing namespace")
	}
}
