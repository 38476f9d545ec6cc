package netkernel

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Keep re-subscribes after each failure with a pause that doubles up to
// Max, tells the handler EventSubscribed each time, and returns when its
// context ends, its Watch goroutine gone.
func TestKeepResubscribes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := NewFake()
		ctx, cancel := context.WithCancel(t.Context())
		var (
			mu     sync.Mutex
			kinds  []EventKind
			pauses []time.Duration
		)
		done := make(chan struct{})
		go func() {
			defer close(done)
			Keep(ctx, f.Watch, Backoff{Min: time.Second, Max: 3 * time.Second},
				func(ev Event) { mu.Lock(); kinds = append(kinds, ev.Kind); mu.Unlock() },
				func(err error, after time.Duration) { mu.Lock(); pauses = append(pauses, after); mu.Unlock() })
		}()
		synctest.Wait()
		f.AddLink(Link{Name: "eth0"})
		synctest.Wait()
		for range 3 {
			f.FailWatch(errors.New("ENOBUFS"))
			synctest.Wait()
			time.Sleep(3 * time.Second) // the longest pause
			synctest.Wait()
		}
		if n := f.Watchers(); n != 1 {
			t.Fatalf("%d watchers, want 1", n)
		}
		cancel()
		<-done
		if n := f.Watchers(); n != 0 {
			t.Fatalf("%d watchers after the end, want 0", n)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []EventKind{EventSubscribed, EventLinkChanged, EventSubscribed, EventSubscribed, EventSubscribed}
		if !slices.Equal(kinds, want) {
			t.Errorf("events %v, want %v", kinds, want)
		}
		if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}; !slices.Equal(pauses, want) {
			t.Errorf("pauses %v, want %v", pauses, want)
		}
	})
}
