package testutil

import (
	"testing"
	"time"
)

// pollEvery is how often WaitFor re-checks its condition: often enough not
// to slow the tests, rarely enough not to load a 2-core machine.
const pollEvery = 20 * time.Millisecond

// WaitFor checks cond every 20 ms until it holds, and fails the test when
// timeout passes first, saying what it waited for and what cond last saw.
// cond returns whether it holds and, when not, what it saw.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last saw: %s", timeout, what, saw)
		}
		time.Sleep(pollEvery)
	}
}

// WaitChange is WaitFor for state that announces its changes (as
// raft.Node.Watch does): instead of polling it checks cond again each time
// the channel changed returns is closed. changed is called anew before
// every check, so a change between the check and the wait is not missed.
func WaitChange(t testing.TB, timeout time.Duration, what string, changed func() <-chan struct{}, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		ch := changed()
		ok, saw := cond()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; last saw: %s", timeout, what, saw)
		}
	}
}
