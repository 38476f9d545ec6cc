package director

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
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
		sctx, scancel := context.WithTimeout(context.Background(), drain+speakerStopTimeout)
		defer scancel()
		d.anycast.stop(sctx, d.drainDelay(drain))
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
	now := time.Now()
	for _, p := range st.Peers {
		x := api.BGPPeer{Address: p.Address, ASN: p.ASN, State: p.State, BFD: p.BFD, Announced: p.Announced}
		if p.State == "established" && p.Uptime > 0 {
			x.Since = now.Add(-p.Uptime).Truncate(time.Second)
		}
		out = append(out, x)
	}
	return out
}
