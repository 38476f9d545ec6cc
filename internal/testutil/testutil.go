// Package testutil holds the helpers that the tests of several packages
// share: a logger writing to the test's output, a throwaway certificate
// authority, and bounded waits.
//
// It is imported only from _test.go files: nothing in it belongs in a
// binary.
package testutil

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// levelTrace is the level of hashicorp/raft's trace messages (raft.LevelTrace,
// which this package cannot import: raft's own tests import it).
const levelTrace = slog.LevelDebug - 4

// Logger returns a logger writing text to t's output (shown with -v or when
// the test fails) until t's cleanup, and discarding after it, so that a
// goroutine logging late does not write to a finished test. Its level is
// DSRD_TEST_LOG's: trace, debug or info; warn otherwise.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{out: t.Output()}
	t.Cleanup(w.stop)
	level := slog.LevelWarn
	switch os.Getenv("DSRD_TEST_LOG") {
	case "trace":
		level = levelTrace
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// testWriter forwards to a test's output until stop.
type testWriter struct {
	mu  sync.Mutex
	out io.Writer // nil once stopped
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out == nil {
		return len(p), nil
	}
	return w.out.Write(p)
}

// stop makes later writes discard.
func (w *testWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out = nil
}

// Context returns a context that ends after d or with the test, whichever
// comes first.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// ShortTempDir returns a temporary directory with a short path, removed
// with the test: a unix socket path must fit in 108 bytes, which
// t.TempDir's, named after the test, may not.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dsrd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
