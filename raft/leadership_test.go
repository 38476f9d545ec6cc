package raft

import (
	"context"
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// fakeBarrier lets a test decide when and how each Barrier call returns.
type fakeBarrier struct {
	calls   chan struct{} // one value per call, when it starts
	results chan error    // what the pending call returns
}

func newFakeBarrier() *fakeBarrier {
	return &fakeBarrier{calls: make(chan struct{}, 16), results: make(chan error)}
}

func (b *fakeBarrier) barrier(time.Duration) error {
	b.calls <- struct{}{}
	return <-b.results
}

func (l *leadership) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for s := range l.subs {
		s.mu.Lock()
		n += len(s.queue)
		s.mu.Unlock()
	}
	return n
}

func expectValue(t *testing.T, ch <-chan bool, want bool) {
	t.Helper()
	v, ok := recv(t, ch, "leadership value")
	if !ok {
		t.Fatalf("subscription closed, want %v", want)
	}
	if v != want {
		t.Fatalf("leadership = %v, want %v", v, want)
	}
}

func TestLeadershipOnlyAfterBarrier(t *testing.T) {
	notify := make(chan bool)
	fb := newFakeBarrier()
	l := newLeadership(testutil.Logger(t), notify, fb.barrier)
	l.start()
	sub := l.subscribe(t.Context())
	expectValue(t, sub, false) // the current state comes first

	// Elected: nothing is reported while the barrier is pending.
	notify <- true
	recv(t, fb.calls, "barrier call")
	if l.isLeader() || l.queued() != 0 {
		t.Fatal("leadership reported before the barrier completed")
	}
	fb.results <- nil
	expectValue(t, sub, true)
	if !l.isLeader() {
		t.Error("isLeader false after the barrier")
	}

	// Lost: reported at once.
	notify <- false
	expectValue(t, sub, false)

	// Elected, then lost while the barrier is pending: the late barrier
	// success of the ended term is not reported.
	notify <- true
	recv(t, fb.calls, "barrier call")
	notify <- false
	fb.results <- nil
	// A failing barrier is retried; the successful retry is reported.
	notify <- true
	recv(t, fb.calls, "barrier call")
	fb.results <- errors.New("enqueue timeout")
	recv(t, fb.calls, "barrier retry")
	if l.isLeader() {
		t.Fatal("leader after a failed barrier")
	}
	fb.results <- nil
	expectValue(t, sub, true) // not preceded by a stale true

	// A second subscriber starts from the current state.
	sub2 := l.subscribe(t.Context())
	expectValue(t, sub2, true)

	// Raft says leadership is gone while establishing: abandon, no retry.
	notify <- false
	expectValue(t, sub, false)
	expectValue(t, sub2, false)
	notify <- true
	recv(t, fb.calls, "barrier call")
	fb.results <- hraft.ErrLeadershipLost
	notify <- false
	notify <- true
	recv(t, fb.calls, "barrier call")
	fb.results <- nil
	expectValue(t, sub, true)

	// Stop reports the loss, then closes the subscriptions.
	l.stop()
	expectValue(t, sub, false)
	if _, ok := recv(t, sub, "subscription close"); ok {
		t.Error("subscription not closed after stop")
	}
	expectValue(t, sub2, true)
	expectValue(t, sub2, false)
	if _, ok := recv(t, sub2, "subscription close"); ok {
		t.Error("subscription not closed after stop")
	}
	// Subscribing to a stopped loop yields a closed channel.
	if _, ok := recv(t, l.subscribe(t.Context()), "closed subscription"); ok {
		t.Error("subscription after stop delivered a value")
	}
}

func TestLeadershipSubscriptionCancel(t *testing.T) {
	notify := make(chan bool)
	fb := newFakeBarrier()
	l := newLeadership(testutil.Logger(t), notify, fb.barrier)
	l.start()
	defer l.stop()
	ctx, cancel := context.WithCancel(t.Context())
	sub := l.subscribe(ctx)
	expectValue(t, sub, false)
	cancel()
	if _, ok := recv(t, sub, "subscription close"); ok {
		t.Fatal("cancelled subscription delivered a value")
	}
	// A slow reader does not block the loop: events queue for it.
	slow := l.subscribe(t.Context())
	fast := l.subscribe(t.Context())
	expectValue(t, fast, false)
	for range 3 {
		notify <- true
		recv(t, fb.calls, "barrier call")
		fb.results <- nil
		expectValue(t, fast, true) // established before it is lost
		notify <- false
		expectValue(t, fast, false)
	}
	want := []bool{false, true, false, true, false, true, false}
	for _, w := range want {
		expectValue(t, slow, w)
	}
}

func TestLeadershipStopBeforeStart(t *testing.T) {
	l := newLeadership(testutil.Logger(t), make(chan bool), newFakeBarrier().barrier)
	sub := l.subscribe(t.Context())
	l.stop()
	expectValue(t, sub, false)
	if _, ok := recv(t, sub, "subscription close"); ok {
		t.Error("subscription not closed")
	}
	l.start() // after stop: no-op
	l.stop()
}
