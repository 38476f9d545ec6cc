package realserver

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
)

// fakeModules is a ModuleLoader over a fake kernel: loading ipip or
// ip6_tunnel creates its fallback device, down, as the kernel does.
type fakeModules struct {
	fk     *netkernel.Fake
	mu     sync.Mutex
	loaded []string
	fail   error
}

func (m *fakeModules) load(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	for _, d := range tunnelDevices {
		if d.Module == name {
			m.loaded = append(m.loaded, name)
			m.fk.AddLink(Link{Name: d.Name, NoARP: true})
			return nil
		}
	}
	return errors.New("modprobe: FATAL: Module " + name + " not found")
}

func (m *fakeModules) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.loaded)
}

func newTunnelAgent(t *testing.T, fk *netkernel.Fake, vips ...netip.Addr) (*Agent, *fakeModules) {
	t.Helper()
	mods := &fakeModules{fk: fk}
	a, err := New(Config{VIPs: vips, Interfaces: []string{"eth0"}, DataDir: t.TempDir(), ResyncInterval: time.Hour, Tunnel: true},
		testLogger(t), WithKernel(fk), WithModuleLoader(mods.load))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, mods
}

func linkUp(t *testing.T, k Kernel, name string) bool {
	t.Helper()
	links, err := k.Links()
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(links, func(l Link) bool { return l.Name == name })
	return i >= 0 && links[i].Up
}

// TestApplyTunnel: tunnel mode loads the module of each VIP family,
// brings its device up and sets rp_filter 0 on all and tunl0 (lowering a
// loose 2), besides what DR needs; eth0's own rp_filter is left alone;
// cleanup puts back the rp_filter it changed.
func TestApplyTunnel(t *testing.T) {
	fk := newFakeHost()
	must(fk.SetSysctl("net.ipv4.conf.all.rp_filter", "2"))
	must(fk.SetSysctl("net.ipv4.conf.default.rp_filter", "1"))
	must(fk.SetSysctl("net.ipv4.conf.eth0.rp_filter", "1"))
	a, mods := newTunnelAgent(t, fk, vip4, vip6)
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := mods.names(); !slices.Equal(got, []string{"ipip", "ip6_tunnel"}) {
		t.Errorf("modules loaded %v", got)
	}
	if !slices.Equal(ch.LoadedModules, []string{"ipip", "ip6_tunnel"}) || !slices.Equal(ch.TunnelsUp, []string{"tunl0", "ip6tnl0"}) {
		t.Errorf("changes %+v", ch)
	}
	for _, d := range []string{"tunl0", "ip6tnl0"} {
		if !linkUp(t, fk, d) {
			t.Errorf("%s not up", d)
		}
	}
	for name, want := range map[string]string{
		"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.tunl0.rp_filter": "0",
		"net.ipv4.conf.eth0.rp_filter": "1", "net.ipv4.conf.all.arp_ignore": "1",
	} {
		if got := sysctl(t, fk, name); got != want {
			t.Errorf("%s = %s, want %s", name, got, want)
		}
	}
	if !hasAddr(t, fk, "lo", vipPrefix(vip4)) || !hasAddr(t, fk, "lo", vipPrefix(vip6)) {
		t.Error("VIPs not on lo")
	}
	rep, err := a.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("check after apply: %s", rep.Summary())
	}
	if slices.Contains(rep.Interfaces, "tunl0") {
		t.Errorf("tunl0 taken for a director-facing interface: %v", rep.Interfaces)
	}

	again, err := a.Apply(context.Background())
	if err != nil || again.Changed() || len(mods.names()) != 2 {
		t.Errorf("second apply changed %+v (%v), modules %v", again, err, mods.names())
	}
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sysctl(t, fk, "net.ipv4.conf.all.rp_filter"); got != "2" {
		t.Errorf("all.rp_filter after cleanup = %s, want the original 2", got)
	}
}

// TestApplyTunnelOneFamily: only the families of the VIPs get a device;
// without tunnel mode nothing is loaded and rp_filter is not touched.
func TestApplyTunnelOneFamily(t *testing.T) {
	fk := newFakeHost()
	a, mods := newTunnelAgent(t, fk, vip6)
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := mods.names(); !slices.Equal(got, []string{"ip6_tunnel"}) {
		t.Errorf("an IPv6 VIP alone loaded %v", got)
	}

	fk = newFakeHost()
	must(fk.SetSysctl("net.ipv4.conf.all.rp_filter", "1"))
	mods = &fakeModules{fk: fk}
	plain, err := New(Config{VIPs: []netip.Addr{vip4}, DataDir: t.TempDir(), ResyncInterval: time.Hour}, testLogger(t), WithKernel(fk), WithModuleLoader(mods.load))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(mods.names()) != 0 || sysctl(t, fk, "net.ipv4.conf.all.rp_filter") != "1" {
		t.Errorf("DR mode loaded %v, all.rp_filter %s", mods.names(), sysctl(t, fk, "net.ipv4.conf.all.rp_filter"))
	}
}

// TestApplyTunnelModuleFails: a module that does not load fails the
// apply, naming the device and the error.
func TestApplyTunnelModuleFails(t *testing.T) {
	fk := newFakeHost()
	a, mods := newTunnelAgent(t, fk, vip4)
	mods.fail = errors.New("modprobe ipip: exit status 1: FATAL: Module ipip not found")
	_, err := a.Apply(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "tunnel device tunl0: modprobe ipip: exit status 1: FATAL: Module ipip not found (") || !strings.Contains(err.Error(), "/etc/modules-load.d") {
		t.Errorf("apply = %v", err)
	}
}

// TestRunRepairsTunnel: tunl0 taken down comes back up through its link
// event; a strict rp_filter on tunl0 or all is lowered to 0 again by the
// sysctl poll; both are counted as repairs.
func TestRunRepairsTunnel(t *testing.T) {
	fk := newFakeHost()
	a, _ := newTunnelAgent(t, fk, vip4)
	runAgent(t, a)
	must(fk.SetLinkDown("tunl0"))
	testutil.WaitFor(t, 2*time.Second, "tunl0 up again, and counted", func() (bool, string) {
		return linkUp(t, fk, "tunl0") && a.Stats().TunnelRepairs > 0, "not yet"
	})
	must(fk.SetSysctl("net.ipv4.conf.tunl0.rp_filter", "1"))
	must(fk.SetSysctl("net.ipv4.conf.all.rp_filter", "2"))
	testutil.WaitFor(t, 3*time.Second, "rp_filter 0 again", func() (bool, string) {
		return sysctl(t, fk, "net.ipv4.conf.tunl0.rp_filter") == "0" && sysctl(t, fk, "net.ipv4.conf.all.rp_filter") == "0", "not yet"
	})
	if s := a.Stats(); s.TunnelRepairs != 1 || s.SysctlRepairs < 2 {
		t.Errorf("stats = %+v", s)
	}
}

// TestCheckTunnel: check names each missing piece of the decapsulation
// with its code, on the VIPs of its family only.
func TestCheckTunnel(t *testing.T) {
	setup := func(t *testing.T, f func(fk *netkernel.Fake)) Report {
		fk := newFakeHost()
		a, _ := newTunnelAgent(t, fk, vip4, vip6)
		if _, err := a.Apply(context.Background()); err != nil {
			t.Fatal(err)
		}
		f(fk)
		rep, err := a.Check(context.Background(), CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	for _, tc := range []struct {
		name     string
		break_   func(fk *netkernel.Fake)
		code     Code
		vip, not netip.Addr
	}{
		{"ipip missing", func(fk *netkernel.Fake) { fk.RemoveLink("tunl0") }, CodeTunnelModuleMissing, vip4, vip6},
		{"ip6_tunnel missing", func(fk *netkernel.Fake) { fk.RemoveLink("ip6tnl0") }, CodeTunnelModuleMissing, vip6, vip4},
		{"tunl0 down", func(fk *netkernel.Fake) { must(fk.SetLinkDown("tunl0")) }, CodeTunnelDown, vip4, vip6},
		{"ip6tnl0 down", func(fk *netkernel.Fake) { must(fk.SetLinkDown("ip6tnl0")) }, CodeTunnelDown, vip6, vip4},
		{"tunl0 strict", func(fk *netkernel.Fake) { must(fk.SetSysctl("net.ipv4.conf.tunl0.rp_filter", "1")) }, CodeTunnelRPFilter, vip4, vip6},
		{"all loose", func(fk *netkernel.Fake) { must(fk.SetSysctl("net.ipv4.conf.all.rp_filter", "2")) }, CodeTunnelRPFilter, vip4, vip6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := setup(t, tc.break_)
			bad, _ := rep.VIP(tc.vip)
			good, _ := rep.VIP(tc.not)
			if bad.OK || !bad.Has(tc.code) {
				t.Errorf("%s: %+v, want %s", tc.vip, bad, tc.code)
			}
			if !good.OK || good.Has(tc.code) {
				t.Errorf("%s: %+v, want ok", tc.not, good)
			}
			for _, r := range bad.Reasons {
				if r.Code == tc.code {
					t.Log(r)
				}
			}
		})
	}
}
