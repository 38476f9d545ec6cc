package realserver

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// goodHost is a fake where the agent has applied cfg.
func goodHost(t *testing.T, cfg Config) (*netkernel.Fake, *Agent) {
	t.Helper()
	fk := newFakeHost()
	a := newTestAgent(t, fk, cfg)
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	return fk, a
}

func TestCheckReasons(t *testing.T) {
	base := Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}}
	tests := []struct {
		name    string
		cfg     *Config // base when nil
		opts    CheckOptions
		breakIt func(t *testing.T, fk *netkernel.Fake)
		// want maps a VIP to the code it must report; others must be OK
		// unless listed.
		want     map[netip.Addr]Code
		severity Severity
	}{
		{
			name:    "good",
			breakIt: func(*testing.T, *netkernel.Fake) {},
		},
		{
			name:    "VIP missing",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)})) },
			want:    map[netip.Addr]Code{vip4: CodeVIPMissing},
		},
		{
			name: "VIP on an ARPing interface",
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.AddAddr(Addr{Link: "eth0", Prefix: vipPrefix(vip4)}))
			},
			want: map[netip.Addr]Code{vip4: CodeVIPOnARPInterface},
		},
		{
			name: "IPv6 VIP on an ARPing interface",
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.AddAddr(Addr{Link: "eth0", Prefix: netip.PrefixFrom(vip6, 64), Flags: netkernel.FlagNoDAD}))
			},
			want: map[netip.Addr]Code{vip6: CodeVIPOnARPInterface},
		},
		{
			name:    "arp_ignore low",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { lower(fk, "arp_ignore", "0") },
			want:    map[netip.Addr]Code{vip4: CodeARPIgnore},
		},
		{
			name:    "arp_announce low",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { lower(fk, "arp_announce", "1") },
			want:    map[netip.Addr]Code{vip4: CodeARPAnnounce},
		},
		{
			name: "arp_ignore low on a non-configured interface when none configured",
			cfg:  &Config{VIPs: []netip.Addr{vip4}},
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				lower(fk, "arp_ignore", "0")
			},
			want: map[netip.Addr]Code{vip4: CodeARPIgnore},
		},
		{
			name: "IPv6 VIP tentative",
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.SetAddrFlags("lo", vipPrefix(vip6), netkernel.FlagTentative))
			},
			want: map[netip.Addr]Code{vip6: CodeIPv6Tentative},
		},
		{
			name: "IPv6 VIP dadfailed",
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.SetAddrFlags("lo", vipPrefix(vip6), netkernel.FlagDADFailed|netkernel.FlagTentative))
			},
			want: map[netip.Addr]Code{vip6: CodeIPv6DADFailed},
		},
		{
			name:    "strict rp_filter without sources is a warning",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { must(fk.SetSysctl("net.ipv4.conf.all.rp_filter", "1")) },
			want:    map[netip.Addr]Code{vip4: CodeRPFilter},
			// OK, with a warning.
			severity: SeverityWarn,
		},
		{
			name: "strict rp_filter with a client routed elsewhere",
			opts: CheckOptions{Sources: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.SetSysctl("net.ipv4.conf.eth0.rp_filter", "1"))
				fk.AddLink(Link{Name: "mgmt0", Up: true, Running: true})
				fk.SetRoute(netip.MustParsePrefix("198.51.100.0/24"), "mgmt0")
			},
			want: map[netip.Addr]Code{vip4: CodeRPFilter},
		},
		{
			name: "strict rp_filter with clients routed back by the same interface",
			opts: CheckOptions{Sources: []netip.Addr{netip.MustParseAddr("198.51.100.7")}},
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.SetSysctl("net.ipv4.conf.eth0.rp_filter", "1"))
			},
			want:     map[netip.Addr]Code{vip4: CodeRPFilter},
			severity: SeverityWarn,
		},
		{
			name:     "SYN cookies off is a warning on every VIP",
			breakIt:  func(t *testing.T, fk *netkernel.Fake) { must(fk.SetSysctl("net.ipv4.tcp_syncookies", "0")) },
			want:     map[netip.Addr]Code{vip4: CodeSYNCookies, vip6: CodeSYNCookies},
			severity: SeverityWarn,
		},
		{
			name:    "SYN cookies always",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { must(fk.SetSysctl("net.ipv4.tcp_syncookies", "2")) },
		},
		{
			name:    "loose rp_filter",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { must(fk.SetSysctl("net.ipv4.conf.all.rp_filter", "2")) },
		},
		{
			name: "IPv4 VIP covered by a prefix on lo",
			cfg:  &Config{VIPs: []netip.Addr{vip4}},
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
				must(fk.AddAddr(Addr{Link: "lo", Prefix: netip.MustParsePrefix("203.0.113.0/24")}))
			},
		},
		{
			name:    "lo down",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { must(fk.SetLinkDown("lo")) },
			want:    map[netip.Addr]Code{vip4: CodeLoDown, vip6: CodeLoDown},
		},
		{
			name:    "director interface down",
			breakIt: func(t *testing.T, fk *netkernel.Fake) { must(fk.SetLinkDown("eth0")) },
			want:    map[netip.Addr]Code{vip4: CodeInterfaceDown, vip6: CodeInterfaceDown},
		},
		{
			name:    "director interface missing",
			cfg:     &Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0", "eth9"}},
			breakIt: func(*testing.T, *netkernel.Fake) {},
			want:    map[netip.Addr]Code{vip4: CodeInterfaceMissing},
		},
		{
			name: "director interface without IPv4 address",
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.DelAddr(Addr{Link: "eth0", Prefix: netip.MustParsePrefix("192.0.2.2/24")}))
			},
			want: map[netip.Addr]Code{vip4: CodeInterfaceNoAddress},
		},
		{
			name: "no director interface at all",
			cfg:  &Config{VIPs: []netip.Addr{vip4, vip6}},
			breakIt: func(t *testing.T, fk *netkernel.Fake) {
				must(fk.SetLinkDown("eth0"))
			},
			want: map[netip.Addr]Code{vip4: CodeNoDirectorInterface, vip6: CodeNoDirectorInterface},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.cfg != nil {
				cfg = *tt.cfg
			}
			fk, a := goodHost(t, cfg)
			tt.breakIt(t, fk)
			rep, err := a.Check(context.Background(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			var table bytes.Buffer
			if err := rep.Table(&table); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", table.String())
			sev := tt.severity
			if sev == "" {
				sev = SeverityFail
			}
			for _, v := range rep.VIPs {
				code, broken := tt.want[v.VIP]
				if !broken {
					if !v.OK || len(v.Reasons) > 0 {
						t.Errorf("%s: %v, want OK without reasons", v.VIP, v.Reasons)
					}
					continue
				}
				if !v.Has(code) {
					t.Errorf("%s: reasons %v, want %s", v.VIP, v.Reasons, code)
				}
				if v.OK != (sev == SeverityWarn) {
					t.Errorf("%s: OK = %v with a %s", v.VIP, v.OK, sev)
				}
				if !strings.Contains(table.String(), string(code)) {
					t.Errorf("table lacks %s", code)
				}
			}
			wantOK := len(tt.want) == 0 || sev == SeverityWarn
			if rep.OK() != wantOK {
				t.Errorf("OK() = %v, want %v", rep.OK(), wantOK)
			}
		})
	}
}

// lower sets a sysctl on all and eth0.
func lower(fk *netkernel.Fake, name, v string) {
	must(fk.SetSysctl(netkernel.ConfSysctl("all", name), v))
	must(fk.SetSysctl(netkernel.ConfSysctl("eth0", name), v))
}

// The kernel uses max(all, interface): a high all covers a low interface.
func TestCheckEffectiveIsMax(t *testing.T) {
	fk, a := goodHost(t, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0"}})
	must(fk.SetSysctl("net.ipv4.conf.eth0.arp_ignore", "0"))
	rep, err := a.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("eth0.arp_ignore=0 with all=1 reported: %s", rep.Summary())
	}
}

func TestReportJSONAndSummary(t *testing.T) {
	fk, a := goodHost(t, Config{VIPs: []netip.Addr{vip4, vip6}, Interfaces: []string{"eth0"}})
	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	lower(fk, "arp_ignore", "0")
	rep, err := a.Check(context.Background(), CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := rep.Summary(), "203.0.113.10: vip-missing(lo),arp-ignore(eth0)"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK   bool `json:"ok"`
		VIPs []struct {
			VIP     string `json:"vip"`
			OK      bool   `json:"ok"`
			Reasons []struct {
				Code, Severity, Interface string
			} `json:"reasons"`
		} `json:"vips"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.OK || len(back.VIPs) != 2 || back.VIPs[0].VIP != "203.0.113.10" || back.VIPs[0].OK ||
		back.VIPs[0].Reasons[0].Code != "vip-missing" || !back.VIPs[1].OK {
		t.Errorf("JSON = %s", b)
	}
}
