package director

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// The decision of which bgp VIPs this director announces. Every director
// that is ready announces every bgp VIP that can be served; the routers
// spread flows over the announcers by ECMP, and mh (with the destinations
// in one order everywhere) sends a flow to the same real through any of
// them. The decision is a pure function of what the reconcile loop knows
// (anycastInput), so every rule below is tested without a router.

// Why a bgp VIP is not announced: the values of the
// dsrd_bgp_withdrawals_total{cause} metric and of dsrd status.
const (
	// withdrawNoQuorum: none of the VIP's services has its quorum of
	// healthy reals; the routers should send the traffic nowhere rather
	// than to a director that can only refuse it.
	withdrawNoQuorum = "no-service-up"
	// withdrawNotConverged: this director's IPVS does not hold the
	// cluster's current configuration (not yet, or it failed to apply it
	// for longer than convergeGrace).
	withdrawNotConverged = "ipvs-not-converged"
	// withdrawPartitioned: this director has been cut off from the Raft
	// majority for longer than bgp.partition_hold.
	withdrawPartitioned = "cut-off-from-cluster"
	// withdrawDrained: the director is draining (planned stop, or dsrd
	// drain), and its drain delay is over.
	withdrawDrained = "drained"
	// withdrawDisagrees: this director's own checks see down a real of
	// the VIP's services that the cluster's verdict says is up: the
	// flows mh maps to that real would fail through this director, so it
	// leaves them to the directors that reach it.
	withdrawDisagrees = "health-view-disagrees"
	// withdrawStarting: the director has not yet followed any
	// configuration.
	withdrawStarting = "starting"
)

// convergeGrace is how long a director that was ready keeps announcing
// while it has not applied a new configuration generation: a new
// generation normally lands in one pass (milliseconds); a failure to apply
// it for longer means this director's flows may go where the others' do
// not.
const convergeGrace = 10 * time.Second

// anycastVIP is one bgp VIP of the followed configuration.
type anycastVIP struct {
	Address netip.Addr
	// Serving: at least one of the VIP's services meets its quorum in the
	// desired state this director programs.
	Serving bool
	// Disagrees: this director's own checks see down a real of the VIP's
	// services that the cluster's verdict says is up; DisagreesSince is
	// since when (the anycaster keeps it). The VIP is withdrawn once the
	// disagreement has lasted disagreeGrace.
	Disagrees      bool
	DisagreesSince time.Time
}

// disagreeGrace is how long a director's own view may contradict the
// cluster's verdict before it withdraws: a real that fails is seen down by
// the directors one after the other, within a check interval, and the
// verdict follows the majority within a view report and a Raft commit;
// a director should not withdraw for that moment.
const disagreeGrace = 5 * time.Second

// anycastInput is what the reconcile loop knows when it decides.
type anycastInput struct {
	Now time.Time
	// VIPs are the bgp VIPs of the configuration IPVS last followed.
	VIPs []anycastVIP
	// Generation is the cluster state's configuration generation;
	// Applied the generation the last successful IPVS pass programmed
	// (0: none yet), and AppliedAt when a pass last succeeded.
	Generation, Applied uint64
	// GenerationSeen is when this director first saw Generation.
	GenerationSeen time.Time
	// Connected: this node leads or follows a known leader;
	// DisconnectedSince is when it last stopped being connected (zero
	// while connected).
	Connected         bool
	DisconnectedSince time.Time
	// PartitionHold is bgp.partition_hold.
	PartitionHold time.Duration
	// Draining: a planned drain is under way; DrainUntil ends its
	// graceful phase (announcing with GRACEFUL_SHUTDOWN), after which
	// everything is withdrawn.
	Draining   bool
	DrainUntil time.Time
}

// anycastDecision is what to announce, and why the rest is not.
type anycastDecision struct {
	// Announce are the VIPs to announce, as host routes, sorted.
	Announce []netip.Prefix
	// Graceful: announce with the GRACEFUL_SHUTDOWN community and a worse
	// MED (a drain's first phase).
	Graceful bool
	// Withdrawn maps each bgp VIP not announced to its cause.
	Withdrawn map[netip.Addr]string
	// Detail explains a director-wide cause for logs and status ("cut off
	// from the cluster for 16s").
	Detail string
}

// decideAnycast applies the announcement rules. A director-wide cause
// (starting, not converged, cut off, drained) withdraws every VIP; then a
// VIP none of whose services meets its quorum is withdrawn alone.
func decideAnycast(in anycastInput) anycastDecision {
	d := anycastDecision{Withdrawn: map[netip.Addr]string{}}
	cause := ""
	switch {
	case in.Applied == 0:
		cause, d.Detail = withdrawStarting, "no configuration applied to ipvs yet"
	case in.Draining && !in.Now.Before(in.DrainUntil):
		cause, d.Detail = withdrawDrained, "drained"
	case !in.Connected && !in.DisconnectedSince.IsZero() && in.Now.Sub(in.DisconnectedSince) >= in.PartitionHold:
		cause = withdrawPartitioned
		d.Detail = fmt.Sprintf("cut off from the cluster for %s (partition_hold %s)", in.Now.Sub(in.DisconnectedSince).Round(time.Millisecond), in.PartitionHold)
	case in.Applied != in.Generation && in.Now.Sub(in.GenerationSeen) >= convergeGrace:
		cause = withdrawNotConverged
		d.Detail = fmt.Sprintf("ipvs holds generation %d, the cluster is at %d", in.Applied, in.Generation)
	}
	for _, v := range in.VIPs {
		switch {
		case cause != "":
			d.Withdrawn[v.Address] = cause
		case !v.Serving:
			d.Withdrawn[v.Address] = withdrawNoQuorum
		case v.Disagrees && !v.DisagreesSince.IsZero() && in.Now.Sub(v.DisagreesSince) >= disagreeGrace:
			d.Withdrawn[v.Address] = withdrawDisagrees
		default:
			d.Announce = append(d.Announce, netip.PrefixFrom(v.Address, v.Address.BitLen()))
		}
	}
	slices.SortFunc(d.Announce, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	d.Graceful = in.Draining && len(d.Announce) > 0
	return d
}
