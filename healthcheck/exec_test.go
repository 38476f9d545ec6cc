package healthcheck

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"
)

// script writes an executable shell script into a temporary directory.
func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// processGone reports whether pid has exited (gone or a zombie waiting for
// its new parent to reap it).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// pid (comm) state ...
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// readPID waits for a script to write its child's pid to path.
func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	testutil.WaitFor(t, 5*time.Second, "the child's pid", func() (bool, string) {
		b, err := os.ReadFile(path)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false, "not yet"
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil, "not yet"
	})
	return pid
}

func TestExec(t *testing.T) {
	target := targetOf(t, "127.0.0.1:8080")
	target.Addr = netip.AddrPortFrom(target.Addr.Addr(), 9000)

	t.Run("exit 0", func(t *testing.T) {
		c := mustChecker(t, Spec{Probe: Exec{Command: []string{script(t, "echo fine\nexit 0\n")}}})
		want(t, runCheck(t, c, target), true, ReasonOK, "exit 0: fine")
	})
	t.Run("exit 3", func(t *testing.T) {
		c := mustChecker(t, Spec{Probe: Exec{Command: []string{script(t, "echo broken thing >&2\nexit 3\n")}}})
		want(t, runCheck(t, c, target), false, ReasonExitCode, "exit status 3: broken thing")
	})
	t.Run("arguments and environment", func(t *testing.T) {
		body := `[ "$1" = "--flag" ] || { echo "bad arg $1"; exit 1; }
[ "$DSRD_SERVICE" = web ] || { echo "bad service $DSRD_SERVICE"; exit 1; }
[ "$DSRD_REAL_ADDRESS" = 127.0.0.1 ] || { echo "bad address $DSRD_REAL_ADDRESS"; exit 1; }
[ "$DSRD_REAL_PORT" = 8080 ] || { echo "bad port $DSRD_REAL_PORT"; exit 1; }
[ "$DSRD_CHECK_PORT" = 9000 ] || { echo "bad check port $DSRD_CHECK_PORT"; exit 1; }
[ -n "$PATH" ] || { echo "no PATH"; exit 1; }
[ -z "$HOME" ] || { echo "HOME leaked: $HOME"; exit 1; }
echo env ok
`
		c := mustChecker(t, Spec{Probe: Exec{Command: []string{script(t, body), "--flag"}}})
		want(t, runCheck(t, c, target), true, ReasonOK, "env ok")
	})
	t.Run("not found", func(t *testing.T) {
		c := mustChecker(t, Spec{Probe: Exec{Command: []string{filepath.Join(t.TempDir(), "missing")}}})
		want(t, runCheck(t, c, target), false, ReasonExec, "no such file")
	})
	t.Run("output is bounded", func(t *testing.T) {
		c := mustChecker(t, Spec{Probe: Exec{Command: []string{script(t, "head -c 1000000 /dev/zero | tr '\\0' x\nexit 1\n")}}})
		r := runCheck(t, c, target)
		want(t, r, false, ReasonExitCode, "xxxx")
		if len(r.Message) > maxMessage {
			t.Errorf("message of %d bytes, want at most %d", len(r.Message), maxMessage)
		}
	})
	t.Run("timeout kills the process group", func(t *testing.T) {
		pidFile := filepath.Join(t.TempDir(), "child.pid")
		body := "sleep 60 &\necho $! > " + pidFile + "\nsleep 60\n"
		c := mustChecker(t, Spec{Params: Params{Timeout: ms(500)}, Probe: Exec{Command: []string{script(t, body)}}})
		done := make(chan Result, 1)
		go func() { done <- c.Check(t.Context(), target) }()
		child := readPID(t, pidFile)
		select {
		case r := <-done:
			want(t, r, false, ReasonTimeout, "killed after")
		case <-time.After(checkBound):
			t.Fatal("exec check did not return at its timeout")
		}
		testutil.WaitFor(t, 5*time.Second, "the child sleep to be killed", func() (bool, string) { return processGone(child), "not yet" })
	})
	t.Run("children are killed when it exits", func(t *testing.T) {
		// The child keeps stdout open: without the group kill, the check
		// would wait for it.
		pidFile := filepath.Join(t.TempDir(), "child.pid")
		body := "sleep 60 &\necho $! > " + pidFile + "\necho done\nexit 0\n"
		c := mustChecker(t, Spec{Params: Params{Timeout: ms(5000)}, Probe: Exec{Command: []string{script(t, body)}}})
		r := runCheck(t, c, target)
		want(t, r, true, ReasonOK, "done")
		child := readPID(t, pidFile)
		testutil.WaitFor(t, 5*time.Second, "the child sleep to be killed", func() (bool, string) { return processGone(child), "not yet" })
	})
	t.Run("canceled", func(t *testing.T) {
		c := mustChecker(t, Spec{Params: Params{Timeout: ms(10000)}, Probe: Exec{Command: []string{script(t, "sleep 60\n")}}})
		ctx, cancel := contextWithCancel(t)
		done := make(chan Result, 1)
		go func() { done <- c.Check(ctx, target) }()
		cancel()
		select {
		case r := <-done:
			want(t, r, false, ReasonCanceled, "killed")
		case <-time.After(checkBound):
			t.Fatal("exec check did not return when canceled")
		}
	})
}
