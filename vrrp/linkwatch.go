package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
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

// watchLinksOnce runs one subscription until it fails or ctx is done.
func watchLinksOnce(ctx context.Context, k Kernel, log *slog.Logger, out chan<- Link) error {
	done := make(chan struct{})
	ch, err := k.SubscribeLinks(done, func(err error) {
		log.Debug("link subscription", keyError, err)
	})
	if err != nil {
		close(done)
		return fmt.Errorf("subscribe to link changes: %w", err)
	}
	defer func() {
		close(done)
		for range ch { // the Kernel contract: drain until closed
		}
	}()
	if !sendLink(ctx, out, Link{}) {
		return ctx.Err()
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l, ok := <-ch:
			if !ok {
				return errSubscriptionEnded
			}
			if l.Name == "" {
				continue
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
