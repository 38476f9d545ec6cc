package lab

import (
	"testing"
	"time"
)

// Eventually calls f every interval until it returns nil, and fails the test
// with f's last error if that has not happened within timeout.
func Eventually(t testing.TB, timeout, interval time.Duration, f func() error) {
	t.Helper()
	if err := Poll(timeout, interval, f); err != nil {
		t.Fatalf("not within %v: %v", timeout, err)
	}
}

// Poll calls f every interval until it returns nil or timeout has passed; it
// returns f's last error in the second case.
func Poll(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().Add(interval).After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
