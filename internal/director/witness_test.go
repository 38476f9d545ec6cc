package director

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeRaftLeadership plays a witness's Raft leadership for handOver: a
// transfer reports the leadership lost, then, when it fails, regained, as
// raft.Node.TransferLeadership does.
type fakeRaftLeadership struct {
	lead     chan bool
	mu       sync.Mutex
	leader   bool
	fail     int // transfers that fail before one succeeds; -1: all fail
	attempts []time.Duration
	start    time.Time
}

func newFakeRaftLeadership(fail int) *fakeRaftLeadership {
	return &fakeRaftLeadership{lead: make(chan bool, 1024), fail: fail, start: time.Now()}
}

func (f *fakeRaftLeadership) win() {
	f.mu.Lock()
	f.leader = true
	f.mu.Unlock()
	f.lead <- true
}

func (f *fakeRaftLeadership) isLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeRaftLeadership) transfer(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts = append(f.attempts, time.Since(f.start))
	f.lead <- false
	if f.fail == 0 {
		f.leader = false
		return nil
	}
	if f.fail > 0 {
		f.fail--
	}
	f.lead <- true
	return errors.New("transfer leadership: no director reachable")
}

// logCount counts log records by message.
type logCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCount) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCount) WithGroup(string) slog.Handler            { return c }
func (c *logCount) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[r.Message]++
	return nil
}

func (c *logCount) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[msg]
}

// runHandOver runs a handOver over f at the default heartbeat (500 ms)
// until the returned stop is called.
func runHandOver(t *testing.T, f *fakeRaftLeadership) (logs *logCount, stop func()) {
	logs = &logCount{n: map[string]int{}}
	hb := 500 * time.Millisecond
	h := &handOver{
		transfer: f.transfer,
		isLeader: f.isLeader,
		acquired: func() {},
		log:      slog.New(logs),
		min:      handOverRetryMin * hb,
		max:      handOverRetryMax * hb,
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { // ends when stop cancels ctx
		defer close(done)
		h.run(ctx, f.lead)
	}()
	return logs, func() {
		cancel()
		<-done
	}
}

const (
	handOverFailed = "witness is leader and could not hand over yet"
	handedOver     = "witness handed leadership over"
)

// A witness that cannot hand over (no director up) used to retry in a
// tight loop: each failed transfer reported the leadership regained, which
// started the next attempt at once (9,254 log lines in 7 s). Its attempts
// now back off from 1 s to 4 s (2 and 8 heartbeats), and it logs the
// first failure and then one line a minute.
func TestWitnessHandOverBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeRaftLeadership(-1)
		logs, stop := runHandOver(t, f)
		f.win()
		time.Sleep(5 * time.Minute)
		stop()

		// Attempts at 0, 1, 3, 7 s, then every 4 s: 7+4k < 300 for k <= 73.
		want := []time.Duration{0, time.Second, 3 * time.Second, 7 * time.Second, 11 * time.Second}
		if len(f.attempts) != 4+73 {
			t.Errorf("%d attempts in 5 min, want %d", len(f.attempts), 4+73)
		}
		for i, at := range want {
			if i < len(f.attempts) && f.attempts[i] != at {
				t.Errorf("attempt %d at %s, want %s", i+1, f.attempts[i], at)
			}
		}
		// Logged at 0 s, then at the first attempt a minute or more after
		// the last line: 63, 123, 183, 243 s.
		if got := logs.count(handOverFailed); got != 5 {
			t.Errorf("%d warnings in 5 min, want 5", got)
		}
	})
}

// A transfer that fails a few times and then succeeds ends the attempts;
// a later win hands over at once again (the backoff starts over).
func TestWitnessHandOverSucceedsAfterFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeRaftLeadership(3)
		logs, stop := runHandOver(t, f)
		defer stop()
		f.win()
		time.Sleep(time.Minute)
		synctest.Wait()
		if len(f.attempts) != 4 || f.attempts[3] != 7*time.Second {
			t.Fatalf("attempts at %v, want 4, the last at 7s", f.attempts)
		}
		if logs.count(handOverFailed) != 1 || logs.count(handedOver) != 1 {
			t.Errorf("logs %v, want one warning and one hand-over", logs.n)
		}

		f.win()
		synctest.Wait()
		if len(f.attempts) != 5 || f.attempts[4] != time.Minute {
			t.Errorf("attempts at %v after a second win at 1m0s, want a fifth at once", f.attempts)
		}
	})
}
