package netkernel

import (
	"context"
	"time"
)

// WatchFunc is a Watch: Linux.Watch, Fake.Watch, or a consumer's Kernel's.
type WatchFunc func(ctx context.Context, events chan<- Event) error

// Backoff is the pause before subscribing again after a subscription
// ended: Min after the first failure, doubling up to Max while
// subscriptions keep failing, back to Min once one has lasted Stable
// (zero: never reset). Min equal to Max is a fixed pause.
type Backoff struct {
	Min, Max, Stable time.Duration
}

// keepEventBuffer is how many events may wait between Watch and handle:
// the handler re-reads the kernel on most events, so a burst collapses.
const keepEventBuffer = 64

// Keep keeps a subscription of watch open until ctx ends, which is how it
// returns. It calls handle on its own goroutine for every event, in order,
// EventSubscribed included: after a re-subscription changes made while
// unsubscribed were not seen, so a handler re-reads the state then. When a
// subscription ends, Keep calls lost with why and the pause it will make,
// and subscribes again after it. Each Watch runs on a goroutine that ends
// before Keep subscribes again or returns.
func Keep(ctx context.Context, watch WatchFunc, b Backoff, handle func(Event), lost func(err error, after time.Duration)) {
	pause := b.Min
	for {
		started := time.Now()
		err := keepOnce(ctx, watch, handle)
		if ctx.Err() != nil {
			return
		}
		if b.Stable > 0 && time.Since(started) > b.Stable {
			pause = b.Min
		}
		lost(err, pause)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = min(2*pause, b.Max)
	}
}

// keepOnce runs one subscription until it ends or ctx does, and returns
// why it ended.
func keepOnce(ctx context.Context, watch WatchFunc, handle func(Event)) error {
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan Event, keepEventBuffer)
	errc := make(chan error, 1)
	go func() { errc <- watch(subCtx, events) }()
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-errc
			return ctx.Err()
		case err := <-errc:
			return err
		case ev := <-events:
			handle(ev)
		}
	}
}
