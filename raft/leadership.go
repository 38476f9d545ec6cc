package raft

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"
)

// Timings of establishing leadership.
const (
	// barrierTimeout bounds how long a new leader waits to enqueue its
	// Barrier; the barrier then completes when every earlier entry is
	// applied, or fails when leadership is lost.
	barrierTimeout = 10 * time.Second
	// barrierRetryMin and barrierRetryMax space the retries of a failed
	// barrier while the node is still leader (consul retries the same way
	// in its leader loop rather than give up leadership).
	barrierRetryMin = 50 * time.Millisecond
	barrierRetryMax = 5 * time.Second
)

// leadership turns raft's NotifyCh into the established-leadership signal:
// true only once a Barrier has succeeded in the current term (the FSM has
// applied every entry of the previous leaders, so the VIPs are taken with the
// cluster's latest configuration), false as soon as raft reports the loss.
//
// Goroutines: run ends when stop is called; each establish goroutine ends
// when its barrier succeeds and is reported, when its term ends (cancel), or
// after stop, when its pending Barrier call returns (raft answers every
// barrier when it shuts down, so stop is called after raft.Shutdown).
// Subscription forwarders end as described in subscribe.
type leadership struct {
	log     *slog.Logger
	notify  <-chan bool
	barrier func(timeout time.Duration) error

	// ctl carries the node's own word, ahead of raft's: false when it is
	// about to hand leadership over (handOver), true when that failed and
	// it still leads (resume).
	ctl chan bool

	mu          sync.Mutex
	established bool
	subs        map[*subscriber]struct{}
	closed      bool

	running bool          // start was called (under mu)
	stopCh  chan struct{} // closed by stop
	done    chan struct{} // closed when run has returned and published its last state
	wg      sync.WaitGroup
	once    sync.Once
}

func newLeadership(logger *slog.Logger, notify <-chan bool, barrier func(time.Duration) error) *leadership {
	return &leadership{
		log:     logger,
		notify:  notify,
		barrier: barrier,
		subs:    map[*subscriber]struct{}{},
		ctl:     make(chan bool),
		stopCh:  make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// start runs the loop that drains NotifyCh. NotifyCh must always be drained:
// raft blocks on it.
func (l *leadership) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.running {
		return
	}
	l.running = true
	l.wg.Add(1)
	go l.run()
}

// stop ends the loop, reports the loss of leadership if the node was
// established, and closes the subscriptions once they have delivered it.
// Call it after raft is shut down.
func (l *leadership) stop() {
	l.once.Do(func() {
		close(l.stopCh)
		l.mu.Lock()
		running := l.running
		if !running {
			l.closed = true
		}
		l.mu.Unlock()
		if !running {
			close(l.done)
		}
	})
	l.wg.Wait()
}

// isLeader reports whether the node is an established leader.
func (l *leadership) isLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.established
}

func (l *leadership) run() {
	defer l.wg.Done()
	var (
		epoch   uint64        // increases at every notification
		cancel  chan struct{} // closed to abandon the current establish goroutine
		results = make(chan uint64)
	)
	abandon := func() {
		if cancel != nil {
			close(cancel)
			cancel = nil
		}
	}
	// start ends the current term's state and, for a leader, establishes
	// the new one.
	start := func(leader bool, acquired, lost string) {
		epoch++
		abandon()
		l.set(false)
		if !leader {
			l.log.Info(lost)
			return
		}
		l.log.Info(acquired)
		cancel = make(chan struct{})
		l.wg.Add(1)
		go l.establish(epoch, cancel, results)
	}
	for {
		select {
		case <-l.stopCh:
			abandon()
			l.set(false)
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
			close(l.done)
			return

		// Raft alternates true and false on NotifyCh; a true while
		// established would be a new term all the same: report the old
		// one lost before establishing the new one. The node's own word
		// (ctl) takes the same path: false as it hands leadership over,
		// true when that failed and raft still leads (the barrier then
		// fails at once if it no longer does; NotifyCh says so too).
		case leader := <-l.notify:
			start(leader, "raft leadership acquired, waiting for barrier", "raft leadership lost")
		case leader := <-l.ctl:
			start(leader, "leadership transfer failed, re-establishing leadership",
				"handing leadership over: reported lost ahead of raft")

		case e := <-results:
			if e != epoch {
				continue // a barrier of a term that already ended
			}
			cancel = nil // that goroutine has returned
			l.log.Info("leadership established: fsm up to date")
			l.set(true)
		}
	}
}

// handOver reports leadership lost at once, before raft knows: the node is
// about to hand it to another voter, whose new term may reach a quorum (and
// its Barrier, and its VIPs) before it reaches this node. Releasing first
// turns that overlap into a gap. Call resume if the transfer fails.
func (l *leadership) handOver() { l.control(false) }

// resume re-establishes leadership after a failed transfer: a Barrier, then
// true, if raft still leads.
func (l *leadership) resume() { l.control(true) }

// control hands v to the loop; it does nothing when the loop is not running.
func (l *leadership) control(v bool) {
	l.mu.Lock()
	running := l.running && !l.closed
	l.mu.Unlock()
	if !running {
		return
	}
	select {
	case l.ctl <- v:
	case <-l.stopCh:
	case <-l.done:
	}
}

// establish issues barriers until one succeeds, then reports epoch on
// results; it gives up when cancel is closed or raft says leadership is gone.
func (l *leadership) establish(epoch uint64, cancel <-chan struct{}, results chan<- uint64) {
	defer l.wg.Done()
	delay := barrierRetryMin
	for {
		err := l.barrier(barrierTimeout)
		if err == nil {
			select {
			case results <- epoch:
			case <-cancel:
			}
			return
		}
		if errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipLost) ||
			errors.Is(err, hraft.ErrRaftShutdown) {
			l.log.Debug("barrier abandoned", "error", err)
			return
		}
		l.log.Warn("barrier failed, retrying", "error", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-cancel:
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(2*delay, barrierRetryMax)
	}
}

// set records the established state and publishes it when it changed.
func (l *leadership) set(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.established == v {
		return
	}
	l.established = v
	for s := range l.subs {
		s.push(v)
	}
}

// subscribe returns a channel that delivers the established-leadership
// state: first the current state, then every change, in order and without
// loss (a slow reader delays only itself; events queue for it). The channel
// is closed when ctx is done, or when the node stops, after the final
// false (if the node was leader) has been delivered: a reader must keep
// reading until the channel is closed or cancel ctx.
func (l *leadership) subscribe(ctx context.Context) <-chan bool {
	out := make(chan bool)
	s := &subscriber{kick: make(chan struct{}, 1)}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		close(out)
		return out
	}
	s.push(l.established)
	l.subs[s] = struct{}{}
	l.mu.Unlock()
	go l.forward(ctx, s, out)
	return out
}

// forward delivers s's queue on out. It ends when ctx is done, or after the
// loop has stopped and the queue is delivered.
func (l *leadership) forward(ctx context.Context, s *subscriber, out chan<- bool) {
	defer close(out)
	defer func() {
		l.mu.Lock()
		delete(l.subs, s)
		l.mu.Unlock()
	}()
	for {
		final := false
		select {
		case <-s.kick:
		case <-l.done:
			final = true
		case <-ctx.Done():
			return
		}
		for {
			v, ok := s.pop()
			if !ok {
				break
			}
			select {
			case out <- v:
			case <-ctx.Done():
				return
			}
		}
		if final {
			return
		}
	}
}

// subscriber is one subscription's queue of undelivered states.
type subscriber struct {
	mu    sync.Mutex
	queue []bool
	kick  chan struct{} // capacity 1: the queue is not empty
}

func (s *subscriber) push(v bool) {
	s.mu.Lock()
	s.queue = append(s.queue, v)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *subscriber) pop() (bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return false, false
	}
	v := s.queue[0]
	s.queue = s.queue[1:]
	return v, true
}
