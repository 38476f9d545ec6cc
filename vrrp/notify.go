package vrrp

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dsrd/dsrd/internal/execenv"
)

// Notify defaults.
const (
	// DefaultNotifyTimeout bounds one notify script: long enough for a
	// script that reloads a service or posts to a chat, short enough that a
	// hung one does not hold back the next transitions' scripts for long.
	DefaultNotifyTimeout = 30 * time.Second
	// DefaultNotifyQueue is how many transitions may wait for their scripts
	// while one runs; more are dropped with a log.
	DefaultNotifyQueue = 16
	// notifyOutputMax bounds how much of a script's output is kept for the
	// log.
	notifyOutputMax = 4096
	// notifyWaitDelay bounds how long a killed script's descendants may keep
	// its output open before the run is abandoned.
	notifyWaitDelay = 2 * time.Second
)

// NotifyScripts are keepalived-style hooks run on state transitions
// (notify_master, notify_backup, notify_fault, notify). Each is an argv run
// without a shell, in /, with a minimal environment (execenv.Minimal):
// dsrd's PATH and
//
//	DSRD_STATE           the new state: MASTER, BACKUP or FAULT
//	DSRD_PREVIOUS_STATE  the state left: INIT, MASTER, BACKUP or FAULT
//	DSRD_REASON          why, e.g. leader, not-leader, interface-down
//	DSRD_INTERFACE       the interface behind a FAULT or its recovery
//	DSRD_VIPS            the configured VIP addresses, space-separated
//
// Scripts run one at a time, in transition order, on their own goroutine:
// they never block the state machine. A script that outlives Timeout is
// killed with its process group.
type NotifyScripts struct {
	// Master runs on entering MASTER.
	Master []string
	// Backup runs on entering BACKUP.
	Backup []string
	// Fault runs on entering FAULT.
	Fault []string
	// Any runs on every transition, after the state's own script.
	Any []string
	// Timeout bounds each script; zero means DefaultNotifyTimeout.
	Timeout time.Duration
	// Queue is how many transitions may wait for their scripts; zero means
	// DefaultNotifyQueue.
	Queue int
}

func (s NotifyScripts) forState(st State) [][]string {
	var out [][]string
	switch st {
	case StateMaster:
		out = append(out, s.Master)
	case StateBackup:
		out = append(out, s.Backup)
	case StateFault:
		out = append(out, s.Fault)
	}
	out = append(out, s.Any)
	var nonEmpty [][]string
	for _, argv := range out {
		if len(argv) > 0 {
			nonEmpty = append(nonEmpty, argv)
		}
	}
	return nonEmpty
}

// notifier runs the notify scripts of queued transitions.
type notifier struct {
	scripts NotifyScripts
	log     *slog.Logger
	queue   chan Transition
}

func newNotifier(s NotifyScripts, log *slog.Logger) *notifier {
	if s.Timeout <= 0 {
		s.Timeout = DefaultNotifyTimeout
	}
	if s.Queue <= 0 {
		s.Queue = DefaultNotifyQueue
	}
	return &notifier{scripts: s, log: log, queue: make(chan Transition, s.Queue)}
}

// enqueue queues t for its scripts without ever blocking; when the queue is
// full, t's scripts are dropped with a log.
func (n *notifier) enqueue(t Transition) {
	if len(n.scripts.forState(t.To)) == 0 {
		return
	}
	select {
	case n.queue <- t:
	default:
		n.log.Warn("notify queue full: scripts of this transition dropped",
			keyState, t.To.String(), "from", t.From.String(), "queue", cap(n.queue))
	}
}

// run runs queued scripts until ctx is done; a script still running then
// is killed, and transitions still queued are dropped.
func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-n.queue:
			for _, argv := range n.scripts.forState(t.To) {
				if ctx.Err() != nil {
					return
				}
				n.runScript(ctx, argv, t)
			}
		}
	}
}

func (n *notifier) runScript(ctx context.Context, argv []string, t Transition) {
	ctx, cancel := context.WithTimeout(ctx, n.scripts.Timeout)
	defer cancel()
	log := n.log.With("script", argv[0], keyState, t.To.String())
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = execenv.Minimal(notifyEnv(t)...)
	cmd.Dir = execenv.Dir
	// Its own process group, so a timeout kills what the script started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = notifyWaitDelay
	out := &limitedBuffer{max: notifyOutputMax}
	cmd.Stdout, cmd.Stderr = out, out
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	switch {
	case err == nil:
		log.Info("notify script done", "took", took, "output", out.String())
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		log.Warn("notify script timed out and was killed", "timeout", n.scripts.Timeout, "output", out.String())
	case ctx.Err() != nil:
		log.Warn("notify script killed: shutting down", "output", out.String())
	default:
		log.Warn("notify script failed", "took", took, keyError, err, "output", out.String())
	}
}

// notifyEnv is the environment a notify script gets besides PATH.
func notifyEnv(t Transition) []string {
	return []string{
		"DSRD_STATE=" + t.To.String(),
		"DSRD_PREVIOUS_STATE=" + t.From.String(),
		"DSRD_REASON=" + string(t.Reason),
		"DSRD_INTERFACE=" + t.Interface,
		"DSRD_VIPS=" + vipList(t.VIPs),
	}
}

// limitedBuffer keeps the first max bytes written to it. It is written
// from os/exec's copying goroutines, hence the lock.
type limitedBuffer struct {
	mu        sync.Mutex
	max       int
	b         []byte
	truncated bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	room := max(l.max-len(l.b), 0)
	if len(p) > room {
		l.truncated = true
		l.b = append(l.b, p[:room]...)
	} else {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(string(l.b))
	if l.truncated {
		s += " [truncated]"
	}
	return s
}
