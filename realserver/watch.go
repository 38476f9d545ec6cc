package realserver

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// The re-subscription backoff after a lost netlink subscription: it starts
// at watchRetryMin so that a lost subscription (typically ENOBUFS after a
// burst) costs about nothing, doubles up to watchRetryMax so that a
// subscription that keeps failing does not spin, and resets once a
// subscription has lasted watchStable.
const (
	watchRetryMin = 50 * time.Millisecond
	watchRetryMax = 5 * time.Second
	watchStable   = time.Minute
)

// subscribeWait bounds how long Run waits for the first subscription
// before its first apply. Subscribing first means no change made after the
// first apply read the kernel can be missed; if netlink cannot subscribe
// within this (it normally takes microseconds) the agent starts anyway and
// relies on the periodic resync until the subscription comes up.
const subscribeWait = 5 * time.Second

// watch keeps a Kernel.Watch subscription open until ctx ends,
// re-subscribing after each failure (netkernel.Keep). It closes subscribed
// when the first subscription is open and sends a reason on trigger for
// every event that may need a repair and after every re-subscription,
// since changes made while unsubscribed were not seen. It returns when ctx
// ends.
func (a *Agent) watch(ctx context.Context, trigger chan<- string, subscribed chan<- struct{}) {
	first := true
	backoff := netkernel.Backoff{Min: watchRetryMin, Max: watchRetryMax, Stable: watchStable}
	netkernel.Keep(ctx, a.k.Watch, backoff, func(ev Event) {
		if ev.Kind == netkernel.EventSubscribed {
			if first {
				first = false
				close(subscribed)
			} else {
				fire(trigger, "resubscribed")
			}
			return
		}
		if why, ok := a.relevant(ev); ok {
			a.log.Debug("change seen", slog.String("event", why))
			fire(trigger, why)
		}
	}, func(err error, after time.Duration) {
		a.statsMu.Lock()
		a.stats.Resubscribes++
		a.statsMu.Unlock()
		a.log.Warn("netlink subscription lost; re-subscribing",
			slog.Any("error", err), slog.Duration("after", after))
	})
}

// fire sends a trigger without blocking: one pending trigger is enough,
// since an apply re-reads everything.
func fire(trigger chan<- string, why string) {
	select {
	case trigger <- why:
	default:
	}
}

// relevant says whether ev may need a repair and describes it: an address
// removed from lo, lo going down, a director-facing interface changing
// or appearing, or (tunnel mode) a decapsulating device going down or
// away (its module unloaded). Other changes cannot undo what the agent
// does.
func (a *Agent) relevant(ev Event) (string, bool) {
	isLo := ev.Link == "lo"
	switch ev.Kind {
	case netkernel.EventAddrRemoved:
		if isLo {
			return fmt.Sprintf("%s removed from %s", ev.Prefix, ev.Link), true
		}
	case netkernel.EventLinkChanged:
		if isLo && !ev.Up {
			return "lo down", true
		}
		if slices.Contains(a.cfg.Interfaces, ev.Link) {
			return fmt.Sprintf("link %s changed", ev.Link), true
		}
		if a.cfg.Tunnel && !ev.Up && slices.ContainsFunc(tunnelsFor(a.cfg.VIPs), func(d tunnelDevice) bool { return d.Name == ev.Link }) {
			return fmt.Sprintf("tunnel device %s down", ev.Link), true
		}
	case netkernel.EventLinkRemoved:
		if a.cfg.Tunnel && slices.ContainsFunc(tunnelsFor(a.cfg.VIPs), func(d tunnelDevice) bool { return d.Name == ev.Link }) {
			return fmt.Sprintf("tunnel device %s removed", ev.Link), true
		}
	}
	return "", false
}
