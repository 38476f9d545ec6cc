package director

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/vrrp"
)

// Every director holds every bgp VIP on lo, whether it announces it or
// not: IPVS takes a packet for a VIP only when the VIP is a local address,
// and a director the routers still send a flow to while its withdrawal
// spreads must not drop it. On lo the VIP answers no ARP on the director's
// other interfaces once arp_ignore and arp_announce are set (below), the
// realserver's own DR arrangement.

// anycastSysctls are what a director holding VIPs on lo needs: answer ARP
// only for addresses of the interface asked (arp_ignore=1), and never use
// a VIP as the source of its own ARP requests (arp_announce=2). The
// kernel applies the maximum of "all" and the interface's value, so "all"
// covers every interface; an ARP VIP on the director's interface is still
// answered (it is on the interface asked).
var anycastSysctls = []ipvs.Sysctl{
	{Family: "net.ipv4.conf.all", Name: "arp_ignore", Value: "1", Why: "a bgp VIP on lo must not be answered by ARP on other interfaces"},
	{Family: "net.ipv4.conf.all", Name: "arp_announce", Value: "2", Why: "a bgp VIP on lo must not be the source of ARP requests"},
}

// loVIPs keeps the bgp VIPs on lo. update and release are called by the
// reconcile loop only (and Run's deferred release after the loop ended);
// mu guards held for heldNow (dsrd status).
type loVIPs struct {
	k    vrrp.Kernel
	mu   sync.Mutex
	held []netip.Addr // added by this process, sorted
}

// heldNow lists the VIPs held on lo.
func (h *loVIPs) heldNow() []netip.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.held)
}

// update holds exactly vips on lo: adds the missing ones, removes the ones
// this process added that are no longer bgp VIPs, and sets the ARP
// sysctls when there are any.
func (h *loVIPs) update(ctx context.Context, sysctls ipvs.SysctlWriter, vips []netip.Addr) error {
	vips = slices.Clone(vips)
	slices.SortFunc(vips, netip.Addr.Compare)
	var errs []error
	if len(vips) > 0 {
		if err := ipvs.ApplySysctls(ctx, sysctls, anycastSysctls); err != nil {
			errs = append(errs, fmt.Errorf("arp sysctls for bgp vips: %w", err))
		}
	}
	for _, v := range vips {
		if err := h.k.AddAddr(loAddr(v)); err != nil {
			errs = append(errs, fmt.Errorf("hold bgp vip %s on %s: %w", v, config.BGPInterface, err))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var kept []netip.Addr
	for _, v := range h.held {
		if _, found := slices.BinarySearchFunc(vips, v, netip.Addr.Compare); found {
			continue
		}
		if err := h.k.DelAddr(netkernel.Addr{Link: config.BGPInterface, Prefix: netip.PrefixFrom(v, v.BitLen())}); err != nil {
			errs = append(errs, fmt.Errorf("release bgp vip %s from %s: %w", v, config.BGPInterface, err))
			kept = append(kept, v)
		}
	}
	h.held = append(vips, kept...)
	slices.SortFunc(h.held, netip.Addr.Compare)
	h.held = slices.Compact(h.held)
	return errors.Join(errs...)
}

// release removes every bgp VIP this process holds on lo.
func (h *loVIPs) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for _, v := range h.held {
		if err := h.k.DelAddr(netkernel.Addr{Link: config.BGPInterface, Prefix: netip.PrefixFrom(v, v.BitLen())}); err != nil {
			errs = append(errs, err)
		}
	}
	h.held = nil
	return errors.Join(errs...)
}

// loAddr is a bgp VIP as an address of lo: labelled dsrd's (IPv4), without
// duplicate address detection (IPv6).
func loAddr(v netip.Addr) netkernel.Addr {
	a := netkernel.Addr{Link: config.BGPInterface, Prefix: netip.PrefixFrom(v, v.BitLen())}
	if v.Is6() {
		a.Flags = netkernel.FlagNoDAD
	} else {
		a.Label = config.BGPInterface + ":dsrd"
	}
	return a
}

// bgpVIPsOf lists the bgp VIPs of a replicated spec.
func bgpVIPsOf(spec raft.Spec) []netip.Addr {
	var out []netip.Addr
	for _, v := range spec.VIPs {
		if v.Mode == raft.VIPModeBGP {
			out = append(out, v.Address)
		}
	}
	return out
}

// anycastVIPsOf is the anycaster's view of a pass: each bgp VIP of spec,
// serving when at least one of its services meets its quorum in views,
// disagreeing when this director's own checks contradict the cluster's
// verdict on a real of one of them.
func anycastVIPsOf(spec raft.Spec, views []serviceView) []anycastVIP {
	vips := bgpVIPsOf(spec)
	out := make([]anycastVIP, 0, len(vips))
	for _, v := range vips {
		x := anycastVIP{Address: v}
		for i := range views {
			if views[i].Config.FWMark != 0 || views[i].Config.VIP != v {
				continue
			}
			x.Serving = x.Serving || views[i].Desired.Status.Up
			x.Disagrees = x.Disagrees || views[i].Disagrees
		}
		out = append(out, x)
	}
	return out
}

// partitionHoldOf is the file's bgp.partition_hold (0 without a bgp
// section: nothing is announced then).
func partitionHoldOf(f *config.Director) time.Duration {
	if f == nil || f.BGP == nil {
		return 0
	}
	return f.BGP.PartitionHold.D()
}

// anycastStatus lists the bgp VIPs for dsrd status, and fills in st's
// BGP section when this director has a speaker.
func (d *Director) anycastStatus(st *api.Status) []api.VIP {
	state := d.node.State()
	vips := bgpVIPsOf(state.Config.Spec)
	var held []netip.Addr
	if d.lo != nil {
		held = d.lo.heldNow()
	}
	var as anycastStatus
	if d.anycast != nil {
		as = d.anycast.status()
		st.BGP = &api.BGP{Graceful: as.Decision.Graceful, Detail: as.Decision.Detail, Peers: []api.BGPPeer{}}
		if as.Err != nil {
			st.BGP.Error = as.Err.Error()
		}
		if d.speakerStatus != nil {
			st.BGP.Peers = d.speakerStatus()
		}
		st.BGP.Drains = drainsOf(state.Drains)
	}
	out := make([]api.VIP, 0, len(vips))
	for _, v := range vips {
		x := api.VIP{Address: v, Interface: config.BGPInterface, Mode: raft.VIPModeBGP, Held: slices.Contains(held, v)}
		switch {
		case d.anycast == nil:
			x.Withdrawn = "no-bgp-speaker"
		case slices.Contains(as.Decision.Announce, netip.PrefixFrom(v, v.BitLen())):
			x.Announced = true
		default:
			x.Withdrawn = as.Decision.Withdrawn[v]
			if x.Withdrawn == "" {
				x.Withdrawn = withdrawStarting
			}
		}
		out = append(out, x)
	}
	return out
}
