package cli

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"
)

// runDaemon tells systemd READY=1 once the daemon is ready and STOPPING=1
// as soon as the stop begins (while the daemon still drains, not after);
// extendStop asks for the drain's length plus stopMargin.
func TestRunDaemonTellsSystemd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	read := func() string {
		t.Helper()
		buf := make([]byte, 128)
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	log := testutil.Logger(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	var during []string
	run := func(ctx context.Context) error {
		close(ready)
		<-ctx.Done()
		// The stop: what systemd heard while the daemon drains.
		during = append(during, read())
		extendStop(log, 5*time.Second)
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- runDaemon(ctx, log, "director", run, ready) }()
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("runDaemon did not return")
	}
	if len(during) != 1 || during[0] != "STOPPING=1" {
		t.Errorf("during the stop systemd heard %q, want STOPPING=1", during)
	}
	if got := read(); got != "EXTEND_TIMEOUT_USEC=15000000" {
		t.Errorf("extension %q, want EXTEND_TIMEOUT_USEC=15000000 (5s drain + 10s margin)", got)
	}
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := conn.Read(make([]byte, 64)); !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Errorf("an extra notification (%d bytes, %v)", n, err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
