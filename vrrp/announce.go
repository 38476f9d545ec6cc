package vrrp

import (
	"context"
	"log/slog"
	"net/netip"
	"time"
)

// AnnounceFunc sends one announcement that addr is on interface ifname:
// gratuitous ARP for IPv4, an unsolicited neighbour advertisement for IPv6.
// [Linux.Announce] is the real one; tests record calls instead.
type AnnounceFunc func(ctx context.Context, ifname string, addr netip.Addr) error

// announcer runs the announcements of one held VIP.
type announcer struct {
	vip    VIP
	cancel context.CancelFunc
	done   chan struct{}
}

// startAnnouncer starts announcing vip: a burst of Count announcements
// spaced by Interval when burst is set, then one every Refresh unless the
// refresh is off. The goroutine ends when ctx is done or stop is called.
func startAnnouncer(ctx context.Context, send AnnounceFunc, log *slog.Logger, vip VIP, burst bool) *announcer {
	ctx, cancel := context.WithCancel(ctx)
	a := &announcer{vip: vip, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		runAnnouncements(ctx, send, log, vip, burst)
	}()
	return a
}

// stop ends the announcements and waits until none is in flight.
func (a *announcer) stop() {
	a.cancel()
	<-a.done
}

// runAnnouncements is the body of an announcer; it returns when ctx is done
// or, with the refresh off, after the burst.
func runAnnouncements(ctx context.Context, send AnnounceFunc, log *slog.Logger, vip VIP, burst bool) {
	log = log.With(keyVIP, vip.Address.String(), keyInterface, vip.Interface)
	announce := func(what string, n int) {
		if ctx.Err() != nil {
			return
		}
		if err := send(ctx, vip.Interface, vip.Address); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn("announcement failed", "kind", what, "n", n, keyError, err)
			return
		}
		log.Debug("announced", "kind", what, "n", n)
	}
	if burst {
		for i := range vip.Announce.Count {
			if i > 0 && !sleep(ctx, vip.Announce.Interval) {
				return
			}
			announce("burst", i+1)
		}
	}
	if vip.Announce.Refresh <= 0 {
		return
	}
	t := time.NewTicker(vip.Announce.Refresh)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			announce("refresh", n)
		}
	}
}

// sleep waits d or until ctx is done; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
