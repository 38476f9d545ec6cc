package cli

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/testutil"
)

// A SIGHUP that arrives while the director starts, before anything reads
// the signal channel, must neither end the process (SIGHUP's default
// action) nor be lost: it is held and reloads once the reload can run.
func TestHUPDuringStartIsHeldForTheReload(t *testing.T) {
	hup, stop := notifyHUP()
	defer stop()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}

	ready := make(chan struct{}) // the director's start-up
	reloaded := make(chan struct{}, 4)
	reload := func(ctx context.Context) (api.ReloadResult, error) {
		select {
		case <-ready:
		case <-ctx.Done():
			return api.ReloadResult{}, ctx.Err()
		}
		reloaded <- struct{}{}
		return api.ReloadResult{OK: true}, nil
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { // ends when ctx is cancelled
		defer close(done)
		reloadOnHUP(ctx, testutil.Logger(t), hup, reload)
	}()
	defer func() {
		cancel()
		<-done
	}()
	close(ready)
	select {
	case <-reloaded:
	case <-time.After(10 * time.Second):
		t.Fatal("the SIGHUP sent during start-up did not reload")
	}
}
