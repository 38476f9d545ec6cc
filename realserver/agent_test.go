package realserver

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
)

func TestApplyFreshHost(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}})
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"sysctl -w net.ipv4.conf.all.arp_ignore=1",
		"sysctl -w net.ipv4.conf.all.arp_announce=2",
		"sysctl -w net.ipv4.conf.eth0.arp_ignore=1",
		"sysctl -w net.ipv4.conf.eth0.arp_announce=2",
		"ip addr add 203.0.113.10/32 dev lo label lo:dsrd",
		"ip addr add 2001:db8::10/128 dev lo nodad",
	}
	calls := fk.Calls()
	calls = calls[len(calls)-len(want):]
	if !slices.Equal(calls, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if len(ch.AddedVIPs) != 2 || len(ch.Sysctls) != 4 || ch.LoBroughtUp {
		t.Errorf("changes = %+v", ch)
	}
	st, err := loadState(a.Config().DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Sysctls["net.ipv4.conf.all.arp_ignore"]; got != (savedSysctl{Original: "0", Set: "1"}) {
		t.Errorf("saved all.arp_ignore = %+v", got)
	}
	if len(st.Sysctls) != 4 {
		t.Errorf("saved %d sysctls, want 4", len(st.Sysctls))
	}
	if !slices.Equal(st.Addresses, []netip.Prefix{vipPrefix(vip6)}) {
		t.Errorf("state addresses = %v, want only the IPv6 VIP", st.Addresses)
	}
}

// Asked to, the agent keeps SYN cookies on, records the original and puts
// it back on cleanup; not asked, it leaves them alone.
func TestApplySYNCookies(t *testing.T) {
	fk := newFakeHost()
	must(fk.SetSysctl("net.ipv4.tcp_syncookies", "0"))
	plain := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}})
	if _, err := plain.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := fk.Sysctl("net.ipv4.tcp_syncookies"); v != "0" {
		t.Fatalf("an agent not asked to set SYN cookies set them to %s", v)
	}

	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, SYNCookies: true, DataDir: plain.Config().DataDir})
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := fk.Sysctl("net.ipv4.tcp_syncookies"); v != "1" || !slices.ContainsFunc(ch.Sysctls, func(c SysctlChange) bool { return c.Name == "net.ipv4.tcp_syncookies" }) {
		t.Errorf("tcp_syncookies = %s, changes %v: want set to 1", v, ch.Sysctls)
	}
	must(fk.SetSysctl("net.ipv4.tcp_syncookies", "2"))
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := fk.Sysctl("net.ipv4.tcp_syncookies"); v != "2" {
		t.Errorf("the stricter 2 became %s", v)
	}
	must(fk.SetSysctl("net.ipv4.tcp_syncookies", "1"))
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, _ := fk.Sysctl("net.ipv4.tcp_syncookies"); v != "0" {
		t.Errorf("tcp_syncookies = %s after cleanup, want the original 0", v)
	}
}

func TestApplyIdempotent(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}})
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	before, calls := fk.String(), len(fk.Calls())
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ch.Changed() {
		t.Errorf("second apply changed %+v", ch)
	}
	if got := fk.Calls()[calls:]; len(got) != 0 {
		t.Errorf("second apply called %v", got)
	}
	if fk.String() != before {
		t.Errorf("state changed:\n%s\nwas:\n%s", fk.String(), before)
	}
}

func TestApplyKeepsStricterSysctls(t *testing.T) {
	fk := newFakeHost()
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_ignore", "2"))
	must(fk.SetSysctl("net.ipv4.conf.all.arp_announce", "2"))
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0"}})
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range ch.Sysctls {
		names = append(names, s.Name)
	}
	want := []string{"net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.arp_announce"}
	if !slices.Equal(names, want) {
		t.Errorf("changed %v, want %v", names, want)
	}
	if v := sysctl(t, fk, "net.ipv4.conf.eth0.arp_ignore"); v != "2" {
		t.Errorf("eth0.arp_ignore = %s, want the stricter 2 kept", v)
	}
}

// A restart after a crash (no cleanup) must keep the originals recorded by
// the first run, not record the agent's own values.
func TestOriginalsSurviveRestart(t *testing.T) {
	fk := newFakeHost()
	dir := t.TempDir()
	cfg := Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}, DataDir: dir}
	if _, err := newTestAgent(t, fk, cfg).Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	// An operator lowers one value meanwhile; the new run raises it again.
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_announce", "1"))
	a2 := newTestAgent(t, fk, cfg)
	if _, err := a2.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, s := range st.Sysctls {
		if s.Original != "0" {
			t.Errorf("%s original = %q, want 0", path, s.Original)
		}
	}
	if err := a2.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"all", "eth0"} {
		for _, n := range []string{"arp_ignore", "arp_announce"} {
			if v := sysctl(t, fk, netkernel.ConfSysctl(p, n)); v != "0" {
				t.Errorf("%s.%s = %s after cleanup, want 0", p, n, v)
			}
		}
	}
}

// The original is on disk before the sysctl changes: a data dir that
// cannot be written stops the agent before it changes anything.
func TestOriginalSavedBeforeChange(t *testing.T) {
	fk := newFakeHost()
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, DataDir: notADir})
	if _, err := a.Apply(context.Background()); err == nil {
		t.Fatal("apply succeeded with an unwritable data dir")
	}
	if got := fk.Calls(); slices.ContainsFunc(got, func(c string) bool { return strings.HasPrefix(c, "sysctl -w") }) {
		t.Errorf("changed sysctls without saving the originals: %v", got)
	}

	// And when the write itself fails, the original is already recorded.
	fk2 := newFakeHost()
	a2 := newTestAgent(t, fk2, Config{VIPs: []netip.Addr{vip4}})
	fk2.FailNext("SetSysctl", errors.New("injected"))
	if _, err := a2.Apply(context.Background()); err == nil {
		t.Fatal("apply succeeded despite the injected failure")
	}
	st, err := loadState(a2.Config().DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Sysctls["net.ipv4.conf.all.arp_ignore"]; !ok {
		t.Error("original not recorded before the write")
	}
}

func TestCleanupRestoresAndRemovesOnlyOwn(t *testing.T) {
	fk := newFakeHost()
	must(fk.SetSysctl("net.ipv4.conf.all.arp_ignore", "0"))
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_announce", "1"))
	// The operator's own addresses on lo, one of them a configured VIP.
	foreign := []Addr{
		{Link: "lo", Prefix: netip.MustParsePrefix("198.51.100.7/32")},
		{Link: "lo", Prefix: vipPrefix(vip4b)},
		{Link: "lo", Prefix: netip.MustParsePrefix("2001:db8::99/128")},
	}
	for _, f := range foreign {
		must(fk.AddAddr(f))
	}
	before := fk.String()

	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4, vip4b, vip6}, Interfaces: []string{"eth0"}})
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ch.ForeignVIPs, []netip.Addr{vip4b}) {
		t.Errorf("foreign = %v, want [%s]", ch.ForeignVIPs, vip4b)
	}
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := fk.String(); after != before {
		t.Errorf("after cleanup:\n%s\nwant what was there before:\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(a.Config().DataDir, stateFile)); !os.IsNotExist(err) {
		t.Errorf("state file left behind: %v", err)
	}
	// Idempotent.
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A value someone changed after the agent set it is theirs: left alone.
func TestCleanupLeavesValuesChangedByOthers(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}})
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	must(fk.SetSysctl("net.ipv4.conf.all.arp_ignore", "8"))
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v := sysctl(t, fk, "net.ipv4.conf.all.arp_ignore"); v != "8" {
		t.Errorf("arp_ignore = %s, want the operator's 8", v)
	}
	if v := sysctl(t, fk, "net.ipv4.conf.all.arp_announce"); v != "0" {
		t.Errorf("arp_announce = %s, want restored 0", v)
	}
}

// An IPv6 VIP already on lo that the state does not list is not ours.
func TestForeignIPv6NotAdopted(t *testing.T) {
	fk := newFakeHost()
	must(fk.AddAddr(Addr{Link: "lo", Prefix: vipPrefix(vip6)}))
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip6}})
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := a.Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !hasAddr(t, fk, "lo", vipPrefix(vip6)) {
		t.Error("cleanup removed the operator's IPv6 VIP")
	}
}

func TestVIPRemovedFromConfigIsRemoved(t *testing.T) {
	fk := newFakeHost()
	dir := t.TempDir()
	if _, err := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4, vip4b, vip6}, DataDir: dir}).Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	ch, err := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, DataDir: dir}).Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.RemovedVIPs) != 2 {
		t.Errorf("removed %v, want %s and %s", ch.RemovedVIPs, vip4b, vip6)
	}
	if hasAddr(t, fk, "lo", vipPrefix(vip6)) || hasAddr(t, fk, "lo", vipPrefix(vip4b)) || !hasAddr(t, fk, "lo", vipPrefix(vip4)) {
		t.Errorf("lo after shrinking the config:\n%s", fk)
	}
	st, _ := loadState(dir)
	if len(st.Addresses) != 0 {
		t.Errorf("state still lists %v", st.Addresses)
	}
}

func TestApplyBringsLoUp(t *testing.T) {
	fk := newFakeHost()
	must(fk.SetLinkDown("lo"))
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip6}})
	ch, err := a.Apply(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !ch.LoBroughtUp {
		t.Error("lo not brought up")
	}
	links, _ := fk.Links()
	if lo, _ := loopback(links); !lo.Up {
		t.Error("lo still down")
	}
}

func TestMissingInterfaceSetLater(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0", "eth1"}})
	runAgent(t, a)
	fk.AddLink(Link{Name: "eth1", Up: true, Running: true})
	testutil.WaitFor(t, time.Second, "eth1 sysctls set", func() (bool, string) {
		v1, _ := fk.Sysctl("net.ipv4.conf.eth1.arp_ignore")
		v2, _ := fk.Sysctl("net.ipv4.conf.eth1.arp_announce")
		return v1 == "1" && v2 == "2", "not yet"
	})
}

func TestRunRepairs(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}, ResyncInterval: time.Hour})
	runAgent(t, a)

	// An operator removes a VIP: back within a second, through the event.
	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	start := time.Now()
	testutil.WaitFor(t, time.Second, "IPv4 VIP re-added", func() (bool, string) { return hasAddr(t, fk, "lo", vipPrefix(vip4)), "not yet" })
	took := time.Since(start)
	t.Logf("repaired in %s", took)

	// lo flaps: it comes back up with its IPv6 VIP (the kernel drops IPv6
	// addresses from a lo that goes down).
	must(fk.SetLinkDown("lo"))
	testutil.WaitFor(t, time.Second, "lo up with the IPv6 VIP, and the repair counted", func() (bool, string) {
		links, _ := fk.Links()
		lo, _ := loopback(links)
		// The agent counts a repair after it made it.
		return lo.Up && hasAddr(t, fk, "lo", vipPrefix(vip6)) && a.Stats().LoRepairs > 0, "not yet"
	})
	s := a.Stats()
	if s.VIPRepairs < 2 || s.LoRepairs != 1 || s.Repairs < 3 || s.LastRepair.IsZero() {
		t.Errorf("stats = %+v", s)
	}
}

func TestRunResyncRepairsSysctls(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, ResyncInterval: 50 * time.Millisecond})
	runAgent(t, a)
	// No event for sysctls: the resync catches it.
	must(fk.SetSysctl("net.ipv4.conf.all.arp_ignore", "0"))
	testutil.WaitFor(t, time.Second, "arp_ignore raised again, and counted", func() (bool, string) {
		v, _ := fk.Sysctl("net.ipv4.conf.all.arp_ignore")
		// The agent counts a repair after it made it.
		return v == "1" && a.Stats().SysctlRepairs > 0, "not yet"
	})
	if s := a.Stats(); s.SysctlRepairs == 0 {
		t.Errorf("stats = %+v", s)
	}
}

func TestRunResubscribes(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, ResyncInterval: time.Hour})
	runAgent(t, a)
	testutil.WaitFor(t, time.Second, "subscribed", func() (bool, string) { return fk.Watchers() == 1, "not yet" })
	fk.FailWatch(errors.New("injected ENOBUFS"))
	testutil.WaitFor(t, time.Second, "re-subscribed", func() (bool, string) { return fk.Watchers() == 1 && a.Stats().Resubscribes == 1, "not yet" })
	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	testutil.WaitFor(t, time.Second, "VIP re-added after re-subscription", func() (bool, string) { return hasAddr(t, fk, "lo", vipPrefix(vip4)), "not yet" })
}

func TestRunRetriesFailedApply(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, ResyncInterval: time.Hour})
	runAgent(t, a)
	fk.FailNext("AddAddr", errors.New("injected"))
	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	testutil.WaitFor(t, 3*time.Second, "VIP re-added after a failed attempt", func() (bool, string) { return hasAddr(t, fk, "lo", vipPrefix(vip4)), "not yet" })
	if s := a.Stats(); s.ApplyErrors != 1 || s.LastError != "" {
		t.Errorf("stats = %+v", s)
	}
}

func TestRunCleanupOnExit(t *testing.T) {
	fk := newFakeHost()
	before := fk.String()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}, CleanupOnExit: true})
	stop := runAgent(t, a)
	if fk.String() == before {
		t.Fatal("nothing applied")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if fk.String() != before {
		t.Errorf("after exit:\n%s\nwant:\n%s", fk, before)
	}
	if fk.Watchers() != 0 {
		t.Error("watch still running after Run returned")
	}
}

func TestRunWithoutCleanupKeepsState(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}})
	stop := runAgent(t, a)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !hasAddr(t, fk, "lo", vipPrefix(vip4)) {
		t.Error("VIP removed although cleanup_on_exit is off")
	}
}

func TestRunFailsWhenFirstApplyFails(t *testing.T) {
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}})
	fk.FailNext("Links", errors.New("injected"))
	err := a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "first apply") {
		t.Fatalf("Run = %v, want the first apply's error", err)
	}
	select {
	case <-a.Ready():
		t.Error("ready although nothing was applied")
	default:
	}
}

func TestConfigValidation(t *testing.T) {
	valid := Config{VIPs: []netip.Addr{vip4}, DataDir: t.TempDir(), ResyncInterval: time.Minute}
	with := func(f func(*Config)) Config {
		c := valid
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"duplicate VIP", with(func(c *Config) { c.VIPs = []netip.Addr{vip4, vip4} }), "listed twice"},
		{"duplicate mapped VIP", with(func(c *Config) { c.VIPs = []netip.Addr{vip4, netip.AddrFrom16(vip4.As16())} }), "listed twice"},
		{"loopback VIP", with(func(c *Config) { c.VIPs = []netip.Addr{netip.MustParseAddr("127.0.0.2")} }), "loopback"},
		{"link-local VIP", with(func(c *Config) { c.VIPs = []netip.Addr{netip.MustParseAddr("fe80::1")} }), "link-local"},
		{"invalid VIP", with(func(c *Config) { c.VIPs = []netip.Addr{{}} }), "invalid VIP"},
		{"lo as interface", with(func(c *Config) { c.Interfaces = []string{"lo"} }), "VIPs go on lo"},
		{"all as interface", with(func(c *Config) { c.Interfaces = []string{"all"} }), "reserved"},
		{"bad interface", with(func(c *Config) { c.Interfaces = []string{"a/b"} }), "contains '/'"},
		{"long interface", with(func(c *Config) { c.Interfaces = []string{"abcdefghijklmnop"} }), "longer than 15"},
		{"duplicate interface", with(func(c *Config) { c.Interfaces = []string{"eth0", "eth0"} }), "listed twice"},
		{"no data dir", with(func(c *Config) { c.DataDir = "" }), "data dir: required"},
		{"no resync", with(func(c *Config) { c.ResyncInterval = 0 }), "must be positive"},
		{"negative resync", with(func(c *Config) { c.ResyncInterval = -time.Second }), "must be positive"},
		{"bad status", with(func(c *Config) { c.StatusAddress = "a:b:c" }), "status address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil, WithKernel(netkernel.NewFake()))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	_, err := New(with(func(c *Config) { c.Interfaces = []string{"lo"} }), nil, WithKernel(netkernel.NewFake()))
	if !errors.Is(err, ErrLoopbackInterface) {
		t.Errorf("lo as interface: %v is not ErrLoopbackInterface", err)
	}
	a, err := New(with(func(c *Config) { c.VIPs = []netip.Addr{netip.MustParseAddr("::ffff:203.0.113.10")} }), nil, WithKernel(netkernel.NewFake()))
	if err != nil {
		t.Fatal(err)
	}
	if c := a.Config(); c.VIPs[0] != vip4 {
		t.Errorf("IPv4-mapped VIP kept as %s, want %s", c.VIPs[0], vip4)
	}
}

func TestCheckInterface(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "enp3s0f1": true, "bond0.100": true, "br-lan_1": true, "abcdefghijklmno": true,
		"": false, "lo": false, "all": false, "default": false, ".": false, "..": false,
		"lo:1": false, "a/b": false, "a b": false, "a\tb": false, "abcdefghijklmnop": false,
	} {
		if err := CheckInterface(name); (err == nil) != ok {
			t.Errorf("CheckInterface(%q) = %v, want ok %v", name, err, ok)
		}
	}
}

func TestCheckVIP(t *testing.T) {
	for s, ok := range map[string]bool{
		"203.0.113.10": true, "2001:db8::10": true, "::ffff:203.0.113.10": true, "198.51.100.7": true,
		"0.0.0.0": false, "::": false, "127.0.0.2": false, "::1": false, "224.0.0.1": false, "ff02::1": false,
		"169.254.1.1": false, "fe80::1": false, "255.255.255.255": false, "2001:db8::10%eth0": false,
	} {
		if err := CheckVIP(netip.MustParseAddr(s)); (err == nil) != ok {
			t.Errorf("CheckVIP(%s) = %v, want ok %v", s, err, ok)
		}
	}
	if err := CheckVIP(netip.Addr{}); err == nil {
		t.Error("CheckVIP accepted the zero Addr")
	}
}
