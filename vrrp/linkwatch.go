package vrrp

import (
	"context"
	"log/slog"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// resubscribeDelay is the pause before subscribing to link changes again
// after the subscription failed: short, since a missed "interface down"
// delays the FAULT; not zero, so a persistent failure does not spin. The
// machine's periodic check covers the gap.
const resubscribeDelay = time.Second

// watchLinks forwards the link changes reported by k to out until ctx is
// done, which is how its goroutine ends. When the subscription fails it
// subscribes again after resubscribeDelay (netkernel.Keep). After every
// successful subscription it sends a Link with an empty name, meaning
// "changes may have been missed: read every interface again".
func watchLinks(ctx context.Context, k Kernel, log *slog.Logger, out chan<- Link) {
	backoff := netkernel.Backoff{Min: resubscribeDelay, Max: resubscribeDelay}
	netkernel.Keep(ctx, k.Watch, backoff, func(ev netkernel.Event) {
		var l Link
		switch ev.Kind {
		case netkernel.EventSubscribed:
			l = Link{} // read every interface again
		case netkernel.EventLinkChanged:
			l = Link{Name: ev.Link, Status: statusOf(ev.Up, ev.Running)}
		case netkernel.EventLinkRemoved:
			l = Link{Name: ev.Link, Status: LinkMissing}
		default:
			return // address changes: the periodic check repairs VIPs
		}
		sendLink(ctx, out, l)
	}, func(err error, after time.Duration) {
		log.Warn("watching links failed: subscribing again", keyError, err, "after", after)
	})
}

// sendLink sends l on out unless ctx ends first.
func sendLink(ctx context.Context, out chan<- Link, l Link) {
	select {
	case out <- l:
	case <-ctx.Done():
	}
}
