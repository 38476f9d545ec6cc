package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/execenv"
)

// execOutputLimit bounds the output of an exec check kept for its message.
const execOutputLimit = 4 << 10

// execWaitDelay bounds how long an exec check waits for its output pipes to
// close after its process group is gone: a grandchild that left the group
// (setsid) may hold them open.
const execWaitDelay = 500 * time.Millisecond

// execChecker runs a program (argv, no shell); exit status 0 is up.
//
// The program runs in its own process group with a minimal environment
// (execenv.Minimal): PATH (dsrd's), DSRD_SERVICE, DSRD_REAL_ADDRESS and DSRD_REAL_PORT (the
// real server), DSRD_CHECK_ADDRESS and DSRD_CHECK_PORT (the probed address
// after overrides). At the timeout, or when the program exits, the whole
// group is killed with SIGKILL, so a check cannot leave processes behind
// (except ones that left the group). Up to 4 KiB of its combined stdout
// and stderr is kept: the first line goes into the result's message.
type execChecker struct {
	timeout time.Duration
	argv    []string
}

func newExecChecker(p Exec, timeout time.Duration) (*execChecker, error) {
	if len(p.Command) == 0 || p.Command[0] == "" {
		return nil, errors.New("exec check without a command")
	}
	return &execChecker{
		timeout: timeout,
		argv:    append([]string(nil), p.Command...),
	}, nil
}

// Check implements Checker.
func (c *execChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()

	var out limitedBuffer
	cmd := exec.Command(c.argv[0], c.argv[1:]...)
	cmd.Env = execenv.Minimal(
		"DSRD_SERVICE="+t.Service,
		"DSRD_REAL_ADDRESS="+t.Real.Addr().String(),
		"DSRD_REAL_PORT="+strconv.Itoa(int(t.Real.Port())),
		"DSRD_CHECK_ADDRESS="+t.Addr.Addr().String(),
		"DSRD_CHECK_PORT="+strconv.Itoa(int(t.Addr.Port())),
	)
	cmd.Dir = execenv.Dir
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return downResult(start, ReasonExec, "start: "+err.Error())
	}
	pgid := cmd.Process.Pid

	// Wait for the leader to exit without reaping it: its zombie keeps the
	// process group ID from being reused until the group is killed below.
	// This goroutine ends when the leader exits, which the kill guarantees.
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, pgid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, unix.EINTR) {
				return
			}
		}
	}()
	timedOut := false
	select {
	case <-exited:
	case <-ctx.Done():
		timedOut = true
	}
	// Kill what is left of the group: the leader at the timeout, its
	// children in both cases; and the leader itself, should it have moved
	// to another group (its pid cannot be reused before it is reaped).
	_ = unix.Kill(-pgid, unix.SIGKILL)
	_ = unix.Kill(pgid, unix.SIGKILL)
	<-exited
	err := cmd.Wait()
	if timedOut {
		reason := ReasonTimeout
		if errors.Is(ctx.Err(), context.Canceled) {
			reason = ReasonCanceled
		}
		return downResult(start, reason, fmt.Sprintf("killed after %s%s", time.Since(start).Round(time.Millisecond), out.summary()))
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return upResult(start, "exit 0"+out.summary())
	case errors.As(err, &exitErr):
		return downResult(start, ReasonExitCode, exitErr.Error()+out.summary())
	case errors.Is(err, exec.ErrWaitDelay):
		// The program exited 0 but something outside its group kept its
		// output open.
		return upResult(start, "exit 0, output left open"+out.summary())
	}
	return downResult(start, ReasonExec, "wait: "+err.Error())
}

// limitedBuffer keeps the first execOutputLimit bytes written to it and
// discards the rest, so a chatty check can neither block nor grow memory.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

// Write implements io.Writer.
func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := execOutputLimit - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// summary returns ": " and the output's first line, or "" without output.
func (b *limitedBuffer) summary() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := clip(string(b.buf))
	if s == "" {
		return ""
	}
	return ": " + s
}
