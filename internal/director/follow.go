package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/vrrp"
)

// specFollower points the health checks, the VIP owner and the IPVS
// sysctls and timeouts at the cluster configuration. The reconcile loop
// owns it: no lock.
type specFollower struct {
	log     *slog.Logger
	checks  interface{ Update([]healthcheck.Check) }
	vips    vipUpdater   // the arp VIPs' owner
	lo      bgpVIPHolder // the bgp VIPs on lo
	sysctls ipvs.SysctlWriter
	kernel  ipvs.Kernel   // its timeouts are set when it is an ipvs.TimeoutSetter
	metrics *metrics.Set  // nil when metrics are off
	iface   func() string // this node's interface, for VIPs without one

	applied appliedSpec // the configuration followed in full
}

// vipUpdater owns the arp VIPs (vrrp.Machine).
type vipUpdater interface {
	Update(ctx context.Context, vips []vrrp.VIP) error
}

// bgpVIPHolder holds the bgp VIPs on lo, with the sysctls they need
// (loVIPs).
type bgpVIPHolder interface {
	update(ctx context.Context, sysctls ipvs.SysctlWriter, vips []netip.Addr) error
}

// appliedSpec identifies the cluster configuration the local parts follow.
type appliedSpec struct {
	generation uint64
	hash       string
}

// follow follows cc, whose services are services (its translation);
// nothing is done when cc is the configuration last followed in full.
// Every part is tried; a failed part makes the next call try again.
func (f *specFollower) follow(ctx context.Context, cc raft.ClusterConfig, services []serviceSpec) error {
	if f.applied == (appliedSpec{generation: cc.Generation, hash: cc.Hash}) {
		return nil
	}
	hsvcs := make([]healthcheck.Service, len(services))
	for i := range services {
		hsvcs[i] = services[i].Health
	}
	checks, err := healthcheck.ChecksFor(hsvcs, healthcheck.BuildOptions{})
	if err != nil {
		// A check that cannot be built stays scheduled and reports down
		// with the reason; the rest of the configuration still applies.
		f.log.Error("health checks", "error", err)
	}
	f.checks.Update(checks)
	if m := f.metrics; m != nil {
		names := make([]string, 0, len(services))
		for i := range services {
			names = append(names, services[i].Config.Name)
		}
		m.RetainServices(names)
	}
	var errs []error
	if err := f.vips.Update(ctx, vipsOf(clusterspec.VIPs(cc.Spec), f.iface())); err != nil {
		errs = append(errs, fmt.Errorf("update vips: %w", err))
	}
	if err := f.lo.update(ctx, f.sysctls, bgpVIPsOf(cc.Spec)); err != nil {
		errs = append(errs, fmt.Errorf("update bgp vips: %w", err))
	}
	if needsCheckSysctls(clusterspec.Services(cc.Spec)) {
		if err := ipvs.ApplySysctls(ctx, f.sysctls, checkSysctls); err != nil {
			errs = append(errs, fmt.Errorf("sysctls for checks through the vip: %w", err))
		}
	}
	settings := ipvsSettings(clusterspec.IPVS(cc.Spec))
	if err := ipvs.ApplySysctls(ctx, f.sysctls, ipvs.DirectorSysctls(settings)); err != nil {
		errs = append(errs, fmt.Errorf("ipvs sysctls: %w", err))
	}
	if ts, ok := f.kernel.(ipvs.TimeoutSetter); ok {
		if err := ipvs.ApplyTimeouts(ctx, ts, settings.Timeouts); err != nil {
			errs = append(errs, fmt.Errorf("ipvs timeouts: %w", err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	f.applied = appliedSpec{generation: cc.Generation, hash: cc.Hash}
	f.log.Info("following cluster configuration", "generation", cc.Generation, "services", len(cc.Services), "vips", len(cc.VIPs), "submitted_by", cc.SubmittedBy)
	return nil
}
