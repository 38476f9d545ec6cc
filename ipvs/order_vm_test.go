//go:build vmtest

package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

func TestVMKernelOrderContract(t *testing.T) {
	n := newVMNetns(t)
	testKernelOrderContract(t, n.open())
}

// The mh lab: a director namespace whose VIP and probe source are local
// (on a dummy device) and whose reals' subnet routes to that dummy, which
// drops what IPVS sends them: connection entries are made all the same,
// and say which real IPVS chose for each flow.
var (
	mhVIP      = ap("203.0.113.10:80")
	mhProbeSrc = addr("192.0.2.100")
)

// mhReals are the reals of the mh lab, in canonical order.
func mhReals(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("198.51.100.%d:80", 1+i))
	}
	return out
}

// newMHLab returns a namespace prepared as an mh director.
func newMHLab(t *testing.T) *vmNetns {
	n := newVMNetns(t)
	n.in(func() error {
		dummy := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "dummy0"}}
		if err := netlink.LinkAdd(dummy); err != nil {
			return err
		}
		for _, a := range []string{mhVIP.Addr().String() + "/32", mhProbeSrc.String() + "/32", "198.51.100.254/24"} {
			ad, _ := netlink.ParseAddr(a)
			if err := netlink.AddrAdd(dummy, ad); err != nil {
				return err
			}
		}
		return netlink.LinkSetUp(dummy)
	})
	return n
}

// mhService is the lab's service: mh hashing source address and port
// (one flow per source port), with fallback, as dsrd's configurations use.
func mhService(dests ...string) Service {
	s := svc(NewServiceKey(TCP, mhVIP), "mh", dests...)
	s.Flags |= FlagMHFallback | FlagMHPort
	return s
}

// mhProbe sends one SYN from each of count source ports of mhProbeSrc,
// starting at base, to the VIP, and returns the real IPVS chose for each
// flow, "-" where it made no connection entry. Each socket sends its SYN
// once and at most one retransmission (TCP_SYNCNT 1) before it is closed.
func mhProbe(t *testing.T, n *vmNetns, base, count int) []string {
	t.Helper()
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	n.in(func() error {
		for i := range count {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1); err != nil {
				return err
			}
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: base + i, Addr: mhProbeSrc.As4()}); err != nil {
				return fmt.Errorf("bind port %d: %w", base+i, err)
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(mhVIP.Port()), Addr: mhVIP.Addr().As4()})
			if err != nil && err != unix.EINPROGRESS && err != unix.ECONNREFUSED {
				return fmt.Errorf("connect from port %d: %w", base+i, err)
			}
		}
		return nil
	})
	return mhReadAll(t, n, base, count)
}

// mhReadAll is mhRead repeated, up to 5 reads 200 ms apart while a flow
// is missing, each flow's real taken from any read that has it. The table
// is read through /proc/net/ip_vs_conn, which walks the kernel's one hash
// table of every namespace's entries a page per read(2) and resumes each
// page by counting entries into the bucket it stopped in, whatever their
// namespace: when another namespace's entries are flushed meanwhile, the
// walk skips some of ours. CI saw half of a lab's flows missing while the
// previous subtest's namespaces were torn down. A flow missing from every
// read made no entry (or its entry expired).
func mhReadAll(t *testing.T, n *vmNetns, base, count int) []string {
	t.Helper()
	got := mhRead(t, n, base, count)
	for read := 1; read < 5 && slices.Contains(got, "-"); read++ {
		time.Sleep(200 * time.Millisecond)
		again := mhRead(t, n, base, count)
		found := 0
		for i := range got {
			if got[i] == "-" && again[i] != "-" {
				got[i] = again[i]
				found++
			}
		}
		if found > 0 {
			t.Logf("read %d of the connection table found %d flows the earlier reads missed", read+1, found)
		}
	}
	return got
}

// mhRead returns the real of each flow from source ports base to
// base+count-1 (see mhProbe) as the connection table has it now.
func mhRead(t *testing.T, n *vmNetns, base, count int) []string {
	t.Helper()
	got := make([]string, count)
	for i := range got {
		got[i] = "-"
	}
	for _, l := range strings.Split(n.run("ipvsadm", "-Lnc"), "\n") {
		f := strings.Fields(l)
		if len(f) != 6 || f[4] != mhVIP.String() {
			continue
		}
		src, err := netip.ParseAddrPort(f[3])
		if err != nil || src.Addr() != mhProbeSrc {
			continue
		}
		if i := int(src.Port()) - base; i >= 0 && i < count {
			got[i] = f[5]
		}
	}
	return got
}

// agreement counts the flows two directors send to the same real.
func agreement(a, b []string) int {
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}

// programInOrder creates s in the namespace's kernel and adds its
// destinations in the given order, as a director would have over time.
func programInOrder(t *testing.T, k Kernel, s Service, order ...string) {
	t.Helper()
	ctx := context.Background()
	if err := k.NewService(ctx, s.withoutDests()); err != nil {
		t.Fatal(err)
	}
	for _, d := range order {
		if err := k.NewDestination(ctx, s.Key, s.Dests[dk(d)]); err != nil {
			t.Fatal(err)
		}
	}
}

const mhFlows = 1024

// TestVMMHOrderAgreement measures what share of mhFlows flows three
// directors with the same service map to the same real when they hold its
// reals in different orders (A added them in canonical order, B saw two
// reals flap, C added them in reverse), and again after each ran the
// reconciler, which must make them agree on every flow: mh with equal and
// with unequal weights, and sh.
func TestVMMHOrderAgreement(t *testing.T) {
	for _, tc := range []struct {
		name, sched string
		weighted    bool
	}{
		{"mh", "mh", false},
		{"mh-weighted", "mh", true},
		{"sh", "sh", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reals := mhReals(8)
			dests := slices.Clone(reals)
			if tc.weighted {
				for i := range dests {
					dests[i] += fmt.Sprintf("=%d", i+1)
				}
			}
			s := mhService(dests...)
			s.Scheduler = tc.sched
			testOrderAgreement(t, s, reals)
		})
	}
}

func testOrderAgreement(t *testing.T, s Service, reals []string) {
	ctx := context.Background()
	desired := state(s)
	flapped := []string{reals[0], reals[1], reals[3], reals[4], reals[6], reals[7], reals[2], reals[5]}
	var reversed []string
	for i := len(reals) - 1; i >= 0; i-- {
		reversed = append(reversed, reals[i])
	}
	orders := map[string][]string{"A": reals, "B": flapped, "C": reversed}
	labs := map[string]*vmNetns{}
	kernels := map[string]*countingKernel{}
	before := map[string][]string{}
	for _, name := range []string{"A", "B", "C"} {
		labs[name] = newMHLab(t)
		kernels[name] = &countingKernel{Kernel: labs[name].open()}
		programInOrder(t, kernels[name], s, orders[name]...)
		before[name] = mhProbe(t, labs[name], 20000, mhFlows)
	}
	for _, name := range []string{"A", "B", "C"} {
		for _, r := range before[name] {
			if r == "-" {
				t.Fatalf("%s: a flow got no connection entry: %v", name, before[name])
			}
		}
	}
	after := map[string][]string{}
	for _, name := range []string{"A", "B", "C"} {
		k := kernels[name]
		k.reset()
		if _, err := NewReconciler(k, nil).Apply(ctx, desired); err != nil {
			t.Fatal(err)
		}
		st, err := ReadState(ctx, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := st[s.Key].KernelOrder(); !slices.Equal(got, CanonicalOrder(s)) {
			t.Errorf("%s: order after the apply %v", name, got)
		}
		t.Logf("%s: added in order %v; %d writes to reorder", name, orders[name], k.writes.Load())
		after[name] = mhProbe(t, labs[name], 22000, mhFlows)
	}
	if w := kernels["A"].writes.Load(); w != 0 {
		t.Errorf("A was in canonical order, yet the reconciler wrote %d times", w)
	}
	// After the fix B and C map the flows as A does: the flows they
	// disagreed on before are those that moved on them, the price of the
	// fix on a director that was out of order.
	for _, other := range []string{"B", "C"} {
		b, a := agreement(before["A"], before[other]), agreement(after["A"], after[other])
		t.Logf("%s, 8 reals, %d flows: A and %s map %d (%.1f%%) to the same real before the reorder, %d (%.1f%%) after",
			s.Scheduler, mhFlows, other, b, 100*float64(b)/mhFlows, a, 100*float64(a)/mhFlows)
		if a != mhFlows {
			t.Errorf("after the reorder A and %s agree on %d of %d flows", other, a, mhFlows)
		}
		if b == mhFlows {
			t.Errorf("before the reorder A and %s already agreed on every flow: the test shows nothing", other)
		}
	}
}

// TestVMMHWeightZero measures the kernel's mh with a real at weight 0:
// director A saw it go from 1 to 0 (it keeps its table slots, the
// kernel's last_weight), director B added it at 0 (no slots: every flow
// may move), director C ran the reconciler with LastWeight 1 (added at 1,
// then set to 0).
func TestVMMHWeightZero(t *testing.T) {
	ctx := context.Background()
	reals := mhReals(8)
	down := dk(reals[4])
	key := mhService().Key
	labs := map[string]*vmNetns{}
	for _, name := range []string{"A", "B", "C"} {
		labs[name] = newMHLab(t)
	}
	kA := labs["A"].open()
	if _, err := NewReconciler(kA, nil).Apply(ctx, state(mhService(reals...))); err != nil {
		t.Fatal(err)
	}
	zero := NewDestination(down.Addr, down.Port, 0)
	if err := kA.UpdateDestination(ctx, key, zero); err != nil {
		t.Fatal(err)
	}
	naive := mhService(reals...)
	naive.Put(zero)
	if _, err := NewReconciler(labs["B"].open(), nil).Apply(ctx, state(naive)); err != nil {
		t.Fatal(err)
	}
	fixed := naive.Clone()
	z := zero
	z.LastWeight = 1
	fixed.Put(z)
	kC := labs["C"].open()
	if _, err := NewReconciler(kC, nil).Apply(ctx, state(fixed)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []Kernel{kA, kC} {
		st, err := ReadState(ctx, k, nil)
		if err != nil {
			t.Fatal(err)
		}
		if w := st[key].Dests[down].Weight; w != 0 {
			t.Fatalf("the down real is at weight %d", w)
		}
	}
	got := map[string][]string{}
	for _, name := range []string{"A", "B", "C"} {
		got[name] = mhProbe(t, labs[name], 26000, mhFlows)
		for _, r := range got[name] {
			if r == down.String() {
				t.Errorf("%s sent a flow to the real at weight 0", name)
				break
			}
		}
	}
	b, c := agreement(got["A"], got["B"]), agreement(got["A"], got["C"])
	t.Logf("mh, 8 reals, one at weight 0, %d flows: added at 0, %d (%.1f%%) agree with a director that set it to 0; added at 1 then set to 0, %d (%.1f%%)",
		mhFlows, b, 100*float64(b)/mhFlows, c, 100*float64(c)/mhFlows)
	if c != mhFlows {
		t.Errorf("added at its weight then set to 0: %d of %d flows agree", c, mhFlows)
	}
	if b == mhFlows {
		t.Errorf("added at 0: every flow agrees, so weight 0 at add and by update are alike: the LastWeight step is useless")
	}
}

// nsSysctl reads and writes the sysctls of a namespace.
type nsSysctl struct{ path string }

func (s nsSysctl) do(f func() error) error {
	ns, err := netns.GetFromPath(s.path)
	if err != nil {
		return err
	}
	defer ns.Close()
	return netnsutil.Run(ns, f)
}

func (s nsSysctl) Get(name string) (v string, err error) {
	err = s.do(func() error { v, err = (ProcSys{}).Get(name); return err })
	return v, err
}

func (s nsSysctl) Set(name, value string) error {
	return s.do(func() error { return (ProcSys{}).Set(name, value) })
}

// pauseBeforeReadd waits 100 ms before writing the re-adds of a reorder.
type pauseBeforeReadd struct{ *Netlink }

func (p pauseBeforeReadd) WriteBatch(ctx context.Context, ops []Op) []error {
	if len(ops) > 0 && ops[0].Reorder && ops[0].Kind == OpAddDest {
		time.Sleep(100 * time.Millisecond)
	}
	return p.Netlink.WriteBatch(ctx, ops)
}

// TestVMRebuildGuard reorders an mh service whose reals have connection
// entries, with net.ipv4.vs.expire_nodest_conn=1, with and without the
// guard, and counts the entries that survive. The reorder pauses between
// its deletes and its re-adds, as a large one does.
func TestVMRebuildGuard(t *testing.T) {
	ctx := context.Background()
	reals := mhReals(4)
	const flows = 256
	for _, guarded := range []bool{false, true} {
		n := newMHLab(t)
		sys := nsSysctl{n.path()}
		if err := sys.Set(ExpireNodestConn, "1"); err != nil {
			t.Fatal(err)
		}
		// A pause before the re-adds stands for a large reorder: every
		// service's deletes go in one batch before every re-add.
		k := pauseBeforeReadd{n.open()}
		// reals[0] last: every other is deleted and added again.
		programInOrder(t, k, mhService(reals...), reals[1], reals[2], reals[3], reals[0])
		before := mhProbe(t, n, 30000, flows)
		var opts []Option
		if guarded {
			opts = append(opts, WithRebuildGuard(sys))
		}
		if _, err := NewReconciler(k, nil, opts...).Apply(ctx, state(mhService(reals...))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the kernel expires them a jiffy after a delete
		had, kept := 0, 0
		for i, r := range mhReadAll(t, n, 30000, flows) {
			if before[i] != "-" {
				had++
			}
			if r != "-" {
				kept++
			}
		}
		v, err := sys.Get(ExpireNodestConn)
		if err != nil || v != "1" {
			t.Errorf("guarded=%v: expire_nodest_conn is %q (%v) after the apply, want 1", guarded, v, err)
		}
		t.Logf("expire_nodest_conn=1, guard %v: %d of %d connection entries kept across the reorder",
			guarded, kept, had)
		if had != flows || guarded && kept != flows || !guarded && kept == flows {
			t.Errorf("with the guard, %d of %d connection entries kept", kept, flows)
		}
	}
}
