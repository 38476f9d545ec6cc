package director

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
	"github.com/dsrd/dsrd/vrrp/bgp"
)

// bgpSpeaker is the embedded speaker as the director drives it: the
// anycaster's calls, and the rest of its life (vrrp/bgp.Speaker).
type bgpSpeaker interface {
	speaker
	Start(ctx context.Context) error
	Reconfigure(ctx context.Context, cfg bgp.Config) error
	Status() bgp.Status
	Stop(ctx context.Context) error
}

// speakerStopTimeout bounds the withdrawal and the closing of the
// sessions once a stop's drain delay is over.
const speakerStopTimeout = 5 * time.Second

// startSpeaker starts the BGP speaker of a director with a bgp section and
// the anycaster that drives it; connected reports whether this node leads
// or follows a leader. It returns the stop to defer: announce as leaving
// for drain_delay, withdraw, close the sessions. Without a bgp section it
// does nothing and returns a no-op.
func (d *Director) startSpeaker(ctx context.Context, cfg *config.Director, connected func() bool, log *slog.Logger) (stop func(), err error) {
	if cfg.BGP == nil {
		return func() {}, nil
	}
	var sp bgpSpeaker
	if d.opts.Speaker != nil {
		sp = d.opts.Speaker
	} else {
		s, err := bgp.New(log.With("component", "bgp"), cfg.BGP.Speaker())
		if err != nil {
			return nil, fmt.Errorf("bgp: %w", err)
		}
		sp = s
	}
	if err := sp.Start(ctx); err != nil {
		return nil, fmt.Errorf("start bgp speaker: %w", err)
	}
	d.speaker = sp
	d.anycast = newAnycaster(sp, connected, d.opts.Metrics.BGPWithdrawn, log)
	d.speakerStatus = func() []api.BGPPeer { return peersOf(sp.Status()) }
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.anycast.run(runCtx)
	}()
	drain := cfg.BGP.DrainDelay.D()
	return func() {
		cancel()
		<-done
		delay := d.drainDelay(drain)
		if d.opts.Stopping != nil {
			d.opts.Stopping(delay + speakerStopTimeout)
		}
		sctx, scancel := context.WithTimeout(context.Background(), delay+speakerStopTimeout)
		defer scancel()
		d.anycast.stop(sctx, delay)
		if err := sp.Stop(sctx); err != nil {
			log.Warn("bgp speaker stop", "error", err)
		}
	}, nil
}

// drainDelay is the drain_delay of the file as last loaded (a reload may
// have changed it), else start's.
func (d *Director) drainDelay(start time.Duration) time.Duration {
	if f := d.sub.current(); f != nil && f.BGP != nil {
		return f.BGP.DrainDelay.D()
	}
	return start
}

// reconfigureSpeaker applies a reloaded file's bgp section to the running
// speaker: peers added, removed or changed, new communities or MED. A bgp
// section added to or removed from the file takes effect at the next
// start.
func (d *Director) reconfigureSpeaker(ctx context.Context, cfg *config.Director) {
	switch {
	case d.speaker == nil && cfg.BGP == nil:
		return
	case d.speaker == nil:
		d.log.Warn("reload: the file now has a bgp section; the speaker starts with the next start of the director")
		return
	case cfg.BGP == nil:
		d.log.Warn("reload: the file no longer has a bgp section; the speaker keeps running until the next start of the director")
		return
	}
	if err := d.speaker.Reconfigure(ctx, cfg.BGP.Speaker()); err != nil {
		d.log.Error("reload: bgp speaker not reconfigured", "error", err)
		return
	}
	d.anycast.poke()
}

// peersOf is the speaker's status as dsrd status shows it.
func peersOf(st bgp.Status) []api.BGPPeer {
	out := make([]api.BGPPeer, 0, len(st.Peers))
	for _, p := range st.Peers {
		x := api.BGPPeer{Address: p.Address, ASN: p.ASN, State: p.State, BFD: p.BFD, Announced: p.Announced}
		if p.State == "established" {
			// Since, not now - Uptime: a session up for less than a
			// second has a zero Uptime and was shown as never up.
			x.Since = p.Since
		}
		out = append(out, x)
	}
	return out
}

// drainAskTimeout bounds the question to the other directors before a
// drain: which VIPs they announce.
const drainAskTimeout = 2 * time.Second

// DrainBGP drains or undrains a director's BGP announcements
// (api.BGPDrainer) through the cluster: the leader appends the drain to
// the Raft log, and the drained director, following it, announces its
// VIPs as leaving for its drain_delay, then withdraws them, until it is
// undrained (a record that outlives restarts). The cluster drains one
// director at a time (raft.ErrDrainBusy). A director drains only itself,
// and a drain that would leave a VIP it announces with no other director
// announcing it (as each one's status says, asked now) is refused; force
// overrides both. Undrain takes any member's ID, for a record left by a
// director that is gone.
func (d *Director) DrainBGP(ctx context.Context, req api.BGPDrainRequest) (api.BGPDrainResult, error) {
	self := d.node.ID()
	node := cmp.Or(req.Node, self)
	if err := pki.CheckNodeID(node); err != nil {
		return api.BGPDrainResult{}, fmt.Errorf("%w: node %q %v", api.ErrInvalid, node, err)
	}
	if req.Drain && node != self {
		return api.BGPDrainResult{}, fmt.Errorf("%w: a director drains only itself: run dsrd bgp drain on %s", api.ErrInvalid, node)
	}
	if node == self && d.anycast == nil {
		return api.BGPDrainResult{}, fmt.Errorf("%w: this director has no bgp section", api.ErrNotFound)
	}
	res := api.BGPDrainResult{Node: node, Draining: req.Drain}
	if req.Drain {
		res.DrainDelay = d.drainDelay(0)
		drains := d.node.State().Drains
		if _, already := drains[self]; !already {
			// The leader's log decides (raft.ErrDrainBusy); asking the
			// state this director follows first names the real reason
			// rather than the VIPs the other drain left alone.
			if len(drains) > 0 && !req.Force {
				other := slices.Min(slices.Collect(maps.Keys(drains)))
				return api.BGPDrainResult{}, &raft.DrainBusyError{Drained: drains[other]}
			}
			orphans, err := d.orphanedByDrain(ctx)
			if err != nil {
				return api.BGPDrainResult{}, err
			}
			if len(orphans) > 0 && !req.Force {
				return api.BGPDrainResult{}, fmt.Errorf("%w: no other director announces %v: draining would leave the routers nowhere to send it (--force drains anyway)", api.ErrConflict, orphans)
			}
			res.Orphaned = orphans
		}
	}
	r, err := d.fw.SetDrain(ctx, raft.SetDrainCommand{Node: node, Drain: req.Drain, Force: req.Force, By: self})
	if err != nil {
		return api.BGPDrainResult{}, err
	}
	res.Changed = r.Changed
	verb := "undrained"
	if req.Drain {
		verb = "drained"
	}
	d.log.Info("bgp: "+verb+" through the cluster", "node", node, "changed", r.Changed, "forced", req.Force, "orphaned", res.Orphaned)
	return res, nil
}

// drainsOf is the cluster's drain records as dsrd status shows them, by
// node ID.
func drainsOf(m map[string]raft.Drain) []api.BGPDrain {
	out := make([]api.BGPDrain, 0, len(m))
	for _, r := range m {
		out = append(out, api.BGPDrain{Node: r.Node, Since: r.Since, By: r.By, Forced: r.Forced})
	}
	slices.SortFunc(out, func(a, b api.BGPDrain) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// orphanedByDrain lists the VIPs this director announces that no other
// director announces (not as leaving), by the other members' status.
func (d *Director) orphanedByDrain(ctx context.Context) ([]netip.Addr, error) {
	mine := d.anycast.status().Decision.Announce
	if len(mine) == 0 {
		return nil, nil
	}
	members, err := d.node.Members(ctx)
	if err != nil {
		return nil, fmt.Errorf("list members: %w", err)
	}
	others := map[netip.Addr]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m.ID == d.node.ID() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, drainAskTimeout)
			defer cancel()
			st, err := d.peers.Status(actx, m.Address)
			if err != nil || st.BGP == nil || st.BGP.Graceful {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, v := range st.VIPs {
				if v.Announced {
					others[v.Address] = true
				}
			}
		}()
	}
	wg.Wait()
	var orphans []netip.Addr
	for _, p := range mine {
		if !others[p.Addr()] {
			orphans = append(orphans, p.Addr())
		}
	}
	return orphans, nil
}
