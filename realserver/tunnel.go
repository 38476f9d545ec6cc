package realserver

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// A real of a tunnel service (forwarding: tunnel, docs/tunnel.md) gets the
// client's packet inside an IP-in-IP packet from the director. The kernel
// decapsulates it on the fallback tunnel device of its family, which the
// module creates in every network namespace: tunl0 (ipip) for IPv4 in
// IPv4, ip6tnl0 (ip6_tunnel) for IPv6 in IPv6. The inner packet, client
// to VIP, is then delivered because the VIP is on lo, as in DR.
//
// Reverse-path filtering: tunl0 has no address, and for a device without
// one the kernel's source validation (fib_validate_source in
// net/ipv4/fib_frontend.c) fails every packet whose route back does not
// leave by that device when rp_filter is on, in loose mode (2) as in
// strict (1): the route back to a client never leaves by tunl0, so any
// rp_filter drops every decapsulated packet. The kernel takes the maximum
// of conf/all and conf/tunl0, so both must be 0. conf/all does not lower
// the other interfaces' own rp_filter (the maximum again): eth0 keeps its
// strict or loose setting. IPv6 has no rp_filter.

// tunnelDevice is the fallback tunnel device of one family.
type tunnelDevice struct {
	// Family is 4 or 6: the VIPs (and the packets) it decapsulates.
	Family int
	// Module creates it when loaded.
	Module string
	// Name is the device.
	Name string
}

// tunnelDevices are the decapsulating devices of each family.
var tunnelDevices = []tunnelDevice{
	{Family: 4, Module: "ipip", Name: "tunl0"},
	{Family: 6, Module: "ip6_tunnel", Name: "ip6tnl0"},
}

// tunnelsFor returns the devices the VIPs need: one per family present.
func tunnelsFor(vips []netip.Addr) []tunnelDevice {
	var out []tunnelDevice
	for _, d := range tunnelDevices {
		if slices.ContainsFunc(vips, func(v netip.Addr) bool { return family(v) == d.Family }) {
			out = append(out, d)
		}
	}
	return out
}

// family is 4 or 6.
func family(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

// tunnelRPFilterWhy says why the tunnel rules hold rp_filter at 0.
const tunnelRPFilterWhy = "accept decapsulated packets: tunl0 has no address, so any rp_filter (strict or loose) drops every packet it decapsulates (the kernel uses the maximum of all and tunl0)"

// tunnelRules are the sysctls tunnel mode keeps at most 0: rp_filter on
// all and tunl0, when an IPv4 VIP is configured.
func tunnelRules(vips []netip.Addr) []sysctlRule {
	var rules []sysctlRule
	for _, d := range tunnelsFor(vips) {
		if d.Family != 4 {
			continue
		}
		for _, iface := range []string{"all", d.Name} {
			rules = append(rules, sysctlRule{Name: netkernel.ConfSysctl(iface, "rp_filter"), Iface: iface,
				Min: 0, AtMost: true, Why: tunnelRPFilterWhy})
		}
	}
	return rules
}

// ModuleLoader loads a kernel module by name, as modprobe does.
type ModuleLoader func(ctx context.Context, name string) error

// WithModuleLoader makes the agent load modules with l instead of
// running modprobe.
func WithModuleLoader(l ModuleLoader) Option { return func(a *Agent) { a.loadModule = l } }

// modprobeTimeout bounds one modprobe run: loading a module from disk
// takes milliseconds; a hung one must not stop the repair loop.
const modprobeTimeout = 10 * time.Second

// Modprobe loads a kernel module with modprobe(8): the agent's default
// ModuleLoader.
func Modprobe(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, modprobeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "modprobe", "-q", "--", name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("modprobe %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// applyTunnels makes every decapsulating device the VIPs need exist
// (loading its module) and be up. It returns the modules it loaded and
// the devices it brought up, also when it fails part way.
func (a *Agent) applyTunnels(ctx context.Context) (loaded, up []string, err error) {
	devs := tunnelsFor(a.cfg.VIPs)
	if !a.cfg.Tunnel || len(devs) == 0 {
		return nil, nil, nil
	}
	links, err := a.k.Links()
	if err != nil {
		return nil, nil, err
	}
	for _, d := range devs {
		i := slices.IndexFunc(links, func(l Link) bool { return l.Name == d.Name })
		if i < 0 {
			if err := a.loadModule(ctx, d.Module); err != nil {
				return loaded, up, fmt.Errorf("tunnel device %s: %w (where the agent may not load modules, as under the packaged unit's ProtectKernelModules=yes, load %s at boot: /etc/modules-load.d, docs/tunnel.md)", d.Name, err, d.Module)
			}
			loaded = append(loaded, d.Module)
			if links, err = a.k.Links(); err != nil {
				return loaded, up, err
			}
			if i = slices.IndexFunc(links, func(l Link) bool { return l.Name == d.Name }); i < 0 {
				return loaded, up, fmt.Errorf("tunnel device %s: module %s loaded but the device does not exist (net.core.fb_tunnels_only_for_init_net set?)", d.Name, d.Module)
			}
		}
		if !links[i].Up {
			if err := a.k.SetLinkUp(d.Name); err != nil {
				return loaded, up, fmt.Errorf("tunnel device %s: %w", d.Name, err)
			}
			up = append(up, d.Name)
		}
	}
	return loaded, up, nil
}

// The reasons Check reports in tunnel mode.
const (
	// CodeTunnelModuleMissing: the decapsulating device of the VIP's
	// family does not exist: its module (ipip, ip6_tunnel) is not loaded.
	CodeTunnelModuleMissing Code = "tunnel-module-missing"
	// CodeTunnelDown: the decapsulating device is down: the kernel drops
	// the director's encapsulated packets.
	CodeTunnelDown Code = "tunnel-down"
	// CodeTunnelRPFilter: effective rp_filter on tunl0 (max of all and
	// tunl0) is not 0: every decapsulated packet is dropped.
	CodeTunnelRPFilter Code = "tunnel-rp-filter"
)

// checkTunnels adds the tunnel-mode findings for the VIPs' families.
func checkTunnels(k Kernel, h hostView, vips []netip.Addr, rs *reasons) error {
	for _, d := range tunnelsFor(vips) {
		l, ok := h.byName[d.Name]
		switch {
		case !ok:
			rs.add(d.Family, Reason{Code: CodeTunnelModuleMissing, Severity: SeverityFail, Interface: d.Name,
				Detail: fmt.Sprintf("%s does not exist, so IPv%d-in-IPv%d packets from the director are not decapsulated: load the %s module (modprobe %s; dsrd realserver --tunnel does, and keeps it)",
					d.Name, d.Family, d.Family, d.Module, d.Module)})
			continue
		case !l.Up:
			rs.add(d.Family, Reason{Code: CodeTunnelDown, Severity: SeverityFail, Interface: d.Name,
				Detail: fmt.Sprintf("%s is down, so the director's encapsulated packets are dropped: ip link set %s up (dsrd realserver --tunnel does, and keeps it up)", d.Name, d.Name)})
		}
		if d.Family != 4 {
			continue
		}
		all, err := readInt(k, netkernel.ConfSysctl("all", "rp_filter"))
		if err != nil {
			return err
		}
		own, err := readInt(k, netkernel.ConfSysctl(d.Name, "rp_filter"))
		if err != nil {
			// The device vanished since Links: the next check says so.
			continue
		}
		if eff := max(all, own); eff != 0 {
			rs.add(4, Reason{Code: CodeTunnelRPFilter, Severity: SeverityFail, Interface: d.Name,
				Detail: fmt.Sprintf("effective rp_filter %d (all=%d, %s=%d), want 0: %s; set net.ipv4.conf.all.rp_filter=0 and net.ipv4.conf.%s.rp_filter=0 (dsrd realserver --tunnel does; the other interfaces keep their own rp_filter)",
					eff, all, d.Name, own, tunnelRPFilterWhy, d.Name)})
		}
	}
	return nil
}
