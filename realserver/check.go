package realserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// Code names why a host would not accept DR traffic for a VIP.
type Code string

// The reasons Check reports.
const (
	// CodeLoDown: lo is down; the kernel accepts nothing for the addresses
	// on it.
	CodeLoDown Code = "lo-down"
	// CodeVIPMissing: the VIP is not on lo, so the host drops packets for it.
	CodeVIPMissing Code = "vip-missing"
	// CodeVIPOnARPInterface: the VIP is also on an interface that answers
	// ARP or neighbour solicitations for it (NOARP not set): the host
	// competes with the director for the VIP on the segment.
	CodeVIPOnARPInterface Code = "vip-on-arp-interface"
	// CodeARPIgnore: effective arp_ignore (max of all and the interface)
	// below 1: the host answers ARP for the VIP on lo.
	CodeARPIgnore Code = "arp-ignore"
	// CodeARPAnnounce: effective arp_announce below 2: the host may use the
	// VIP as source of its ARP requests, pointing neighbours at itself.
	CodeARPAnnounce Code = "arp-announce"
	// CodeIPv6Tentative: the IPv6 VIP is still in duplicate address
	// detection; the kernel accepts no traffic for it.
	CodeIPv6Tentative Code = "ipv6-tentative"
	// CodeIPv6DADFailed: the IPv6 VIP failed duplicate address detection.
	CodeIPv6DADFailed Code = "ipv6-dadfailed"
	// CodeRPFilter: strict reverse-path filtering (effective rp_filter 1)
	// on a director-facing interface. A failure when the route back to a
	// sample client leaves by another interface (the kernel drops that
	// client's packets), a warning when no sample contradicts it.
	CodeRPFilter Code = "rp-filter"
	// CodeInterfaceMissing: a configured director-facing interface does
	// not exist.
	CodeInterfaceMissing Code = "interface-missing"
	// CodeInterfaceDown: a configured director-facing interface is down or
	// has no carrier.
	CodeInterfaceDown Code = "interface-down"
	// CodeInterfaceNoAddress: a configured director-facing interface has no
	// address of the VIP's family, so the directors cannot reach the host
	// on that family (DR needs the real's own address on the segment).
	CodeInterfaceNoAddress Code = "interface-no-address"
	// CodeNoDirectorInterface: no interfaces are configured and no
	// interface other than lo is up with an address of the VIP's family.
	CodeNoDirectorInterface Code = "no-director-interface"
	// CodeSYNCookies: net.ipv4.tcp_syncookies is 0 (a warning): a SYN
	// flood the director forwards fills the host's SYN backlog and
	// legitimate clients are refused.
	CodeSYNCookies Code = "syn-cookies-off"
)

// Severity says whether a reason breaks DR traffic.
type Severity string

// The severities.
const (
	// SeverityFail: the host would not accept (or would steal) the traffic.
	SeverityFail Severity = "fail"
	// SeverityWarn: works as things are, but is fragile.
	SeverityWarn Severity = "warn"
)

// Reason is one finding about a VIP.
type Reason struct {
	Code     Code     `json:"code"`
	Severity Severity `json:"severity"`
	// Interface is the interface concerned, when there is one.
	Interface string `json:"interface,omitempty"`
	// Detail explains it for people.
	Detail string `json:"detail"`
}

// String formats the reason on one line.
func (r Reason) String() string {
	s := string(r.Code)
	if r.Interface != "" {
		s += " (" + r.Interface + ")"
	}
	if r.Severity == SeverityWarn {
		s = "warning: " + s
	}
	return s + ": " + r.Detail
}

// VIPStatus is the verdict for one VIP.
type VIPStatus struct {
	VIP netip.Addr `json:"vip"`
	// OK means no failing reason: the host would accept DR traffic for it.
	OK      bool     `json:"ok"`
	Reasons []Reason `json:"reasons,omitempty"`
}

// Has reports whether the status lists code.
func (v VIPStatus) Has(code Code) bool {
	return slices.ContainsFunc(v.Reasons, func(r Reason) bool { return r.Code == code })
}

// Report is Check's diagnosis.
type Report struct {
	VIPs []VIPStatus `json:"vips"`
	// Interfaces are the director-facing interfaces checked: the
	// configured ones, or every non-lo interface that is up.
	Interfaces []string `json:"interfaces"`
	// Draining says the drain file is present: the status endpoint reports
	// 503 "draining" whatever the verdict.
	Draining bool `json:"draining"`
}

// OK reports whether every VIP is fine (warnings do not count).
func (r Report) OK() bool {
	for _, v := range r.VIPs {
		if !v.OK {
			return false
		}
	}
	return true
}

// VIP returns the status of one VIP.
func (r Report) VIP(vip netip.Addr) (VIPStatus, bool) {
	i := slices.IndexFunc(r.VIPs, func(v VIPStatus) bool { return v.VIP == vip })
	if i < 0 {
		return VIPStatus{}, false
	}
	return r.VIPs[i], true
}

// MarshalJSON encodes the report with its overall verdict as "ok".
func (r Report) MarshalJSON() ([]byte, error) {
	type plain Report
	return json.Marshal(struct {
		OK bool `json:"ok"`
		plain
	}{r.OK(), plain(r)})
}

// Table writes the report for people: one row per VIP with its state (OK,
// FAIL) and its reasons, one per line.
func (r Report) Table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tSTATE\tREASONS")
	for _, v := range r.VIPs {
		state := "OK"
		if !v.OK {
			state = "FAIL"
		}
		if len(v.Reasons) == 0 {
			fmt.Fprintf(tw, "%s\t%s\t-\n", v.VIP, state)
			continue
		}
		for i, reason := range v.Reasons {
			if i == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", v.VIP, state, reason)
			} else {
				fmt.Fprintf(tw, "\t\t%s\n", reason)
			}
		}
	}
	if r.Draining {
		fmt.Fprintln(tw, "(draining: the status endpoint reports 503 until undrained)\t\t")
	}
	return tw.Flush()
}

// Summary is a one-line account of what fails ("203.0.113.10: vip-missing;
// 2001:db8::10: ipv6-tentative"), "ok" when nothing does.
func (r Report) Summary() string {
	var parts []string
	for _, v := range r.VIPs {
		if v.OK {
			continue
		}
		var codes []string
		for _, reason := range v.Reasons {
			if reason.Severity != SeverityFail {
				continue
			}
			c := string(reason.Code)
			if reason.Interface != "" {
				c += "(" + reason.Interface + ")"
			}
			if !slices.Contains(codes, c) {
				codes = append(codes, c)
			}
		}
		parts = append(parts, v.VIP.String()+": "+strings.Join(codes, ","))
	}
	if len(parts) == 0 {
		return "ok"
	}
	return strings.Join(parts, "; ")
}

// CheckOptions tunes Check.
type CheckOptions struct {
	// Sources are sample client addresses. With strict rp_filter on a
	// director-facing interface, a source whose route leaves by another
	// interface is a failure: the kernel drops that client's packets
	// arriving from the director. Without sources strict rp_filter is only
	// a warning.
	Sources []netip.Addr
	// tunnel: the agent is in tunnel mode (Config.Tunnel).
	tunnel bool
}

// Check diagnoses, for every configured VIP, whether this host would
// accept DR traffic for it and why not. It changes nothing and does not
// need Run. The error is for a kernel that could not be read at all.
func (a *Agent) Check(ctx context.Context, opts CheckOptions) (Report, error) {
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	opts.tunnel = a.cfg.Tunnel
	rep, err := diagnose(a.k, a.cfg.VIPs, a.cfg.Interfaces, opts)
	if err != nil {
		return Report{}, fmt.Errorf("check: %w", err)
	}
	rep.Draining, err = Draining(a.cfg.DataDir)
	if err != nil {
		return Report{}, fmt.Errorf("check: %w", err)
	}
	return rep, nil
}

// reasons accumulates findings that apply to every VIP or to one family.
type reasons struct{ all, v4, v6 []Reason }

func (rs *reasons) add(family int, r Reason) {
	switch family {
	case 4:
		rs.v4 = append(rs.v4, r)
	case 6:
		rs.v6 = append(rs.v6, r)
	default:
		rs.all = append(rs.all, r)
	}
}

// diagnose is Check without the drain file.
func diagnose(k Kernel, vips []netip.Addr, configured []string, opts CheckOptions) (Report, error) {
	links, err := k.Links()
	if err != nil {
		return Report{}, err
	}
	addrs, err := k.Addrs("")
	if err != nil {
		return Report{}, err
	}
	h := newHostView(links, addrs)
	var rs reasons
	loName := checkLoopback(links, &rs)
	// The interfaces the directors' packets come in by.
	var facing []string
	if len(configured) > 0 {
		facing = checkConfiguredInterfaces(h, configured, &rs)
	} else {
		facing = findFacingInterfaces(h, loName, opts.tunnel, &rs)
	}
	if opts.tunnel {
		if err := checkTunnels(k, h, vips, &rs); err != nil {
			return Report{}, err
		}
	}
	// IPv4 sysctls, effective value max(all, interface).
	if err := checkSysctls(k, facing, opts.Sources, &rs); err != nil {
		return Report{}, err
	}
	rep := Report{Interfaces: facing, VIPs: []VIPStatus{}}
	if rep.Interfaces == nil {
		rep.Interfaces = []string{}
	}
	for _, vip := range vips {
		rep.VIPs = append(rep.VIPs, h.vipStatus(vip, loName, &rs))
	}
	return rep, nil
}

// hostView is the links and addresses diagnose reads from the kernel once.
type hostView struct {
	links  []Link
	byName map[string]Link
	addrs  []Addr
}

// newHostView indexes links by name.
func newHostView(links []Link, addrs []Addr) hostView {
	byName := map[string]Link{}
	for _, l := range links {
		byName[l.Name] = l
	}
	return hostView{links: links, byName: byName, addrs: addrs}
}

// hasAddr reports whether link has an address of family the directors can reach.
func (h hostView) hasAddr(link string, family int) bool {
	return slices.ContainsFunc(h.addrs, func(a Addr) bool {
		ip := a.Prefix.Addr()
		if a.Link != link {
			return false
		}
		if family == 4 {
			return ip.Is4()
		}
		// The directors reach a real at its configured address; a
		// link-local one is not what IPVS destinations are made of.
		return ip.Is6() && !ip.IsLinkLocalUnicast()
	})
}

// checkLoopback adds the findings about lo and returns its name.
func checkLoopback(links []Link, rs *reasons) string {
	lo, ok := loopback(links)
	switch {
	case !ok:
		rs.add(0, Reason{Code: CodeLoDown, Severity: SeverityFail, Interface: "lo",
			Detail: "no loopback interface"})
	case !lo.Up:
		rs.add(0, Reason{Code: CodeLoDown, Severity: SeverityFail, Interface: lo.Name,
			Detail: "lo is down: the kernel accepts nothing for the addresses on it"})
	}
	if ok {
		return lo.Name
	}
	return "lo"
}

// checkConfiguredInterfaces checks the configured director-facing interfaces; it returns those that exist.
func checkConfiguredInterfaces(h hostView, configured []string, rs *reasons) []string {
	var facing []string
	for _, name := range configured {
		l, ok := h.byName[name]
		switch {
		case !ok:
			rs.add(0, Reason{Code: CodeInterfaceMissing, Severity: SeverityFail, Interface: name,
				Detail: "configured director-facing interface does not exist"})
			continue
		case !l.Up || !l.Running:
			rs.add(0, Reason{Code: CodeInterfaceDown, Severity: SeverityFail, Interface: name,
				Detail: "director-facing interface is down or has no carrier"})
		}
		facing = append(facing, name)
		for _, fam := range []int{4, 6} {
			if !h.hasAddr(name, fam) {
				rs.add(fam, Reason{Code: CodeInterfaceNoAddress, Severity: SeverityFail, Interface: name,
					Detail: fmt.Sprintf("no IPv%d address: the directors cannot reach this host on it", fam)})
			}
		}
	}
	return facing
}

// findFacingInterfaces returns the up interfaces but lo, with a finding per family none of them serves.
// In tunnel mode the decapsulating devices are not among them: they have
// no address, and checkTunnels judges them.
func findFacingInterfaces(h hostView, loName string, tunnel bool, rs *reasons) []string {
	var facing []string
	found := map[int]bool{}
	for _, l := range h.links {
		if l.Name == loName || !l.Up {
			continue
		}
		if tunnel && slices.ContainsFunc(tunnelDevices, func(d tunnelDevice) bool { return d.Name == l.Name }) {
			continue
		}
		facing = append(facing, l.Name)
		if l.Running {
			found[4] = found[4] || h.hasAddr(l.Name, 4)
			found[6] = found[6] || h.hasAddr(l.Name, 6)
		}
	}
	for _, fam := range []int{4, 6} {
		if !found[fam] {
			rs.add(fam, Reason{Code: CodeNoDirectorInterface, Severity: SeverityFail,
				Detail: fmt.Sprintf("no interface besides lo is up with an IPv%d address: nothing connects this host to the directors", fam)})
		}
	}
	return facing
}

// vipStatus is the verdict for vip: the host-wide findings, its own, then its family's.
func (h hostView) vipStatus(vip netip.Addr, loName string, rs *reasons) VIPStatus {
	st := VIPStatus{VIP: vip}
	st.Reasons = append(st.Reasons, rs.all...)
	onLo, elsewhere := h.vipPlacement(vip, loName)
	st.Reasons = append(st.Reasons, elsewhere...)
	st.Reasons = append(st.Reasons, loAddrReasons(onLo, loName)...)
	if vip.Is6() {
		st.Reasons = append(st.Reasons, rs.v6...)
	} else {
		st.Reasons = append(st.Reasons, rs.v4...)
	}
	st.OK = !slices.ContainsFunc(st.Reasons, func(r Reason) bool { return r.Severity == SeverityFail })
	return st
}

// vipPlacement returns the lo addresses that make vip local, and findings for ARP interfaces holding it.
func (h hostView) vipPlacement(vip netip.Addr, loName string) (onLo []Addr, found []Reason) {
	for _, a := range h.addrs {
		// An IPv4 prefix on lo makes every address in it local (127.0.0.1/8
		// does), so an operator's 203.0.113.0/24 on lo accepts the VIP too.
		if a.Link == loName && (a.Prefix.Addr() == vip || vip.Is4() && a.Prefix.Contains(vip)) {
			onLo = append(onLo, a)
			continue
		}
		if a.Prefix.Addr() != vip {
			continue
		}
		if l, ok := h.byName[a.Link]; ok && !l.NoARP {
			what := "answers ARP for it"
			if vip.Is6() {
				what = "answers neighbour solicitations for it"
			}
			found = append(found, Reason{Code: CodeVIPOnARPInterface, Severity: SeverityFail, Interface: a.Link,
				Detail: fmt.Sprintf("VIP is also on %s, which %s: the host takes the VIP from the director (remove it there, or set NOARP)", a.Link, what)})
		}
	}
	return onLo, found
}

// loAddrReasons returns the findings about the VIP's addresses on lo: none, or failing DAD.
func loAddrReasons(onLo []Addr, loName string) []Reason {
	var found []Reason
	if len(onLo) == 0 {
		found = append(found, Reason{Code: CodeVIPMissing, Severity: SeverityFail, Interface: loName,
			Detail: "VIP is not on lo: the host drops packets for it"})
	}
	for _, a := range onLo {
		if a.Flags&netkernel.FlagDADFailed != 0 {
			found = append(found, Reason{Code: CodeIPv6DADFailed, Severity: SeverityFail, Interface: loName,
				Detail: fmt.Sprintf("%s failed duplicate address detection: the kernel does not use it (add it with nodad)", a.Prefix)})
		} else if a.Flags&netkernel.FlagTentative != 0 {
			found = append(found, Reason{Code: CodeIPv6Tentative, Severity: SeverityFail, Interface: loName,
				Detail: fmt.Sprintf("%s is tentative (duplicate address detection running): not usable yet (add it with nodad)", a.Prefix)})
		}
	}
	return found
}

// checkSysctls adds the IPv4 ARP and rp_filter findings for the facing
// interfaces.
//
// rp_filter: DR packets arrive on a director-facing interface with the
// client as source and the VIP (on lo) as destination. Reverse-path
// filtering looks up the route back to the source, never the destination,
// so the VIP being on lo does not matter; strict mode (1) drops the packet
// when that route leaves by another interface than the one it came in on.
// With the usual single uplink the route back to clients is the arrival
// interface and strict mode is harmless, hence a warning. Given sample
// clients, Check looks their routes up and fails an interface whose route
// back to one of them goes elsewhere (asymmetric routing, a separate
// management network holding the default route). Loose mode (2) and off
// (0) never drop DR traffic. IPv6 has no rp_filter sysctl.
func checkSysctls(k Kernel, facing []string, sources []netip.Addr, rs *reasons) error {
	read := func(iface, name string) (int, bool, error) {
		v, err := readInt(k, netkernel.ConfSysctl(iface, name))
		if errors.Is(err, fs.ErrNotExist) && iface != "all" {
			return 0, false, nil // the interface vanished meanwhile
		}
		return v, err == nil, err
	}
	switch v, err := readInt(k, synCookies.Name); {
	case errors.Is(err, fs.ErrNotExist):
		// A kernel without SYN cookies (CONFIG_SYN_COOKIES off).
	case err != nil:
		return err
	case v < synCookies.Min:
		rs.add(0, Reason{Code: CodeSYNCookies, Severity: SeverityWarn,
			Detail: fmt.Sprintf("%s=%d: SYN cookies are off, so a SYN flood the director forwards fills this host's SYN backlog and clients are refused; set it to 1 (syn_cookies: true in the realserver file keeps it so)", synCookies.Name, v)})
	}
	all := map[string]int{}
	for _, name := range []string{"arp_ignore", "arp_announce", "rp_filter"} {
		v, _, err := read("all", name)
		if err != nil {
			return err
		}
		all[name] = v
	}
	for _, iface := range facing {
		eff := map[string]int{}
		raw := map[string]int{}
		exists := true
		for _, name := range []string{"arp_ignore", "arp_announce", "rp_filter"} {
			v, ok, err := read(iface, name)
			if err != nil {
				return err
			}
			if !ok {
				exists = false
				break
			}
			raw[name], eff[name] = v, max(v, all[name])
		}
		if !exists {
			continue
		}
		for _, s := range arpSettings() {
			if eff[s.Name] >= s.Min {
				continue
			}
			code := CodeARPIgnore
			if s.Name == "arp_announce" {
				code = CodeARPAnnounce
			}
			rs.add(4, Reason{Code: code, Severity: SeverityFail, Interface: iface,
				Detail: fmt.Sprintf("effective %s %d (all=%d, %s=%d), want >= %d: %s",
					s.Name, eff[s.Name], all[s.Name], iface, raw[s.Name], s.Min, s.Why)})
		}
		if eff["rp_filter"] == 1 {
			checkStrictRPFilter(k, iface, sources, all["rp_filter"], raw["rp_filter"], rs)
		}
	}
	return nil
}

// checkStrictRPFilter adds the finding for strict rp_filter on iface (all and own are the sysctls).
func checkStrictRPFilter(k Kernel, iface string, sources []netip.Addr, all, own int, rs *reasons) {
	var wrong []string
	for _, src := range sources {
		if !src.Is4() {
			continue
		}
		out, err := k.RouteInterface(src)
		if err != nil {
			wrong = append(wrong, fmt.Sprintf("%s (no route)", src))
			continue
		}
		if out != iface {
			wrong = append(wrong, fmt.Sprintf("%s (routed via %s)", src, out))
		}
	}
	detail := fmt.Sprintf("strict rp_filter (all=%d, %s=%d)", all, iface, own)
	if len(wrong) > 0 {
		rs.add(4, Reason{Code: CodeRPFilter, Severity: SeverityFail, Interface: iface,
			Detail: detail + " drops packets arriving on " + iface + " from clients routed elsewhere: " +
				strings.Join(wrong, ", ") + "; use loose mode (2)"})
		return
	}
	checked := ""
	if len(sources) > 0 {
		checked = " (it does for the sample clients)"
	}
	rs.add(4, Reason{Code: CodeRPFilter, Severity: SeverityWarn, Interface: iface,
		Detail: detail + ": fine while the route back to every client leaves by " + iface + checked +
			"; loose mode (2) is safer with asymmetric routing"})
}
