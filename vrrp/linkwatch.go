package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// resubscribeDelay is the pause before subscribing to link changes again
// after the subscription failed: short, since a missed "interface down"
// delays the FAULT; not zero, so a persistent failure does not spin. The
// machine's periodic check covers the gap.
const resubscribeDelay = time.Second

// errSubscriptionEnded reports a link subscription that stopped on its own
// (the netlink socket failed, e.g. ENOBUFS after an overflow).
var errSubscriptionEnded = errors.New("link subscription ended")

// watchLinks forwards the link changes reported by k to out until ctx is
// done, which is how its goroutine ends. When the subscription fails it
// subscribes again after resubscribeDelay. After every successful
// subscription it sends a Link with an empty name, meaning "changes may
// have been missed: read every interface again".
func watchLinks(ctx context.Context, k Kernel, log *slog.Logger, out chan<- Link) {
	for {
		err := watchLinksOnce(ctx, k, log, out)
		if ctx.Err() != nil {
			return
		}
		log.Warn("watching links failed: subscribing again", keyError, err, "after", resubscribeDelay)
		if !sleep(ctx, resubscribeDelay) {
			return
		}
	}
}

// watchLinksOnce runs one Kernel.Watch until it fails or ctx is done. The
// Watch runs on a goroutine of its own that ends when the subscription
// fails or its context is cancelled; watchLinksOnce waits for it.
func watchLinksOnce(ctx context.Context, k Kernel, log *slog.Logger, out chan<- Link) error {
	subCtx, cancel := context.WithCancel(ctx)
	events := make(chan netkernel.Event, 64)
	errc := make(chan error, 1)
	go func() { errc <- k.Watch(subCtx, events) }()
	ended := false
	defer func() {
		cancel()
		if !ended {
			<-errc
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			ended = true
			log.Debug("link subscription", keyError, err)
			return fmt.Errorf("%w: %w", errSubscriptionEnded, err)
		case ev := <-events:
			var l Link
			switch ev.Kind {
			case netkernel.EventSubscribed:
				l = Link{} // read every interface again
			case netkernel.EventLinkChanged:
				l = Link{Name: ev.Link, Status: statusOf(ev.Up, ev.Running)}
			case netkernel.EventLinkRemoved:
				l = Link{Name: ev.Link, Status: LinkMissing}
			default:
				continue // address changes: the periodic check repairs VIPs
			}
			if !sendLink(ctx, out, l) {
				return ctx.Err()
			}
		}
	}
}

func sendLink(ctx context.Context, out chan<- Link, l Link) bool {
	select {
	case out <- l:
		return true
	case <-ctx.Done():
		return false
	}
}
