package director

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/vrrp"
)

// fakeChecks records the checks it was given.
type fakeChecks struct{ updates [][]healthcheck.Check }

func (f *fakeChecks) Update(c []healthcheck.Check) { f.updates = append(f.updates, c) }

// fakeVIPs records the VIPs it was given, failing while fail is set.
type fakeVIPs struct {
	mu      sync.Mutex
	fail    bool
	updates [][]vrrp.VIP
}

func (f *fakeVIPs) Update(_ context.Context, vips []vrrp.VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, vips)
	if f.fail {
		return errors.New("no such interface")
	}
	return nil
}

// fakeLo records the bgp VIPs it was given.
type fakeLo struct{ updates [][]netip.Addr }

func (f *fakeLo) update(_ context.Context, _ ipvs.SysctlWriter, vips []netip.Addr) error {
	f.updates = append(f.updates, vips)
	return nil
}

// The follower follows a configuration once: again only after a part
// failed, or for a new generation.
func TestSpecFollower(t *testing.T) {
	spec := testSpec(t)
	services, err := translateSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	checks, vips, sys := &fakeChecks{}, &fakeVIPs{fail: true}, newMemSysctls()
	lo := &fakeLo{}
	f := specFollower{log: testutil.Logger(t), checks: checks, vips: vips, lo: lo, sysctls: sys, kernel: ipvs.NewFake(), iface: func() string { return "eth0" }}
	cc := raft.ClusterConfig{Generation: 1, Hash: "h1", Spec: spec}

	if err := f.follow(t.Context(), cc, services); err == nil {
		t.Fatal("a failed VIP update: no error")
	}
	if len(checks.updates) != 1 || len(checks.updates[0]) != 4 {
		t.Fatalf("checks updated %d times (%v), want once with web's 3 reals and sticky's", len(checks.updates), checks.updates)
	}
	if v, _ := sys.Get("net.ipv4.vs.sloppy_tcp"); v == "" {
		t.Error("sysctls not written though the VIPs failed")
	}
	vips.fail = false
	if err := f.follow(t.Context(), cc, services); err != nil {
		t.Fatal(err)
	}
	if err := f.follow(t.Context(), cc, services); err != nil {
		t.Fatal(err)
	}
	if len(vips.updates) != 2 || len(checks.updates) != 2 || len(lo.updates) != 2 {
		t.Errorf("%d VIP and %d check updates, want 2 each: none once followed", len(vips.updates), len(checks.updates))
	}
	if got := vips.updates[1]; len(got) != 1 || got[0].Interface != "eth0" {
		t.Errorf("VIPs %+v, want 203.0.113.10 on eth0", got)
	}
	cc.Generation, cc.Hash = 2, "h2"
	if err := f.follow(t.Context(), cc, services); err != nil || len(vips.updates) != 3 {
		t.Errorf("a new generation: %v, %d VIP updates; want it followed", err, len(vips.updates))
	}
}

// The translation is done once per generation.
func TestSpecCache(t *testing.T) {
	spec := testSpec(t)
	var c specCache
	cc := raft.ClusterConfig{Generation: 1, Hash: "h1", Spec: spec}
	a, err := c.get(cc)
	if err != nil || len(a) != 3 {
		t.Fatalf("get = %d services, %v", len(a), err)
	}
	if b, _ := c.get(cc); &b[0] != &a[0] {
		t.Error("the same generation translated again")
	}
	cc.Generation = 2
	if b, _ := c.get(cc); &b[0] == &a[0] {
		t.Error("a new generation not translated")
	}
}
