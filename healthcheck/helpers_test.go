package healthcheck

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// checkBound is how long a test waits for one check to return. Checks in
// tests have timeouts well below it; hitting it means Check did not honour
// its timeout.
const checkBound = 10 * time.Second

// runCheck runs one check and fails the test if it does not return within
// checkBound.
func runCheck(t *testing.T, c Checker, target Target) Result {
	t.Helper()
	done := make(chan Result, 1)
	go func() { done <- c.Check(context.Background(), target) }()
	select {
	case r := <-done:
		t.Logf("%s: %s", target, r)
		return r
	case <-time.After(checkBound):
		t.Fatalf("check of %s did not return within %s", target, checkBound)
		return Result{}
	}
}

// mustChecker builds a checker or fails the test.
func mustChecker(t *testing.T, spec Spec) Checker {
	t.Helper()
	c, err := NewChecker(spec, BuildOptions{})
	if err != nil {
		t.Fatalf("NewChecker(%+v): %v", spec, err)
	}
	return c
}

// targetOf returns a Target probing addr ("127.0.0.1:80", or a net.Addr).
func targetOf(t *testing.T, addr any) Target {
	t.Helper()
	var s string
	switch a := addr.(type) {
	case string:
		s = a
	case net.Addr:
		s = a.String()
	default:
		t.Fatalf("targetOf(%T)", addr)
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return Target{Service: "web", Real: ap, Addr: ap}
}

// want asserts a result's up/down and reason, and that its message
// contains msg.
func want(t *testing.T, r Result, up bool, reason Reason, msg string) {
	t.Helper()
	if r.Up != up || r.Reason != reason {
		t.Errorf("got %s, want up=%v reason %q", r, up, reason)
	}
	if !strings.Contains(r.Message, msg) {
		t.Errorf("message %q does not contain %q", r.Message, msg)
	}
}

// closedPort returns a loopback address with nothing listening on it, for
// network ("tcp" or "udp").
func closedPort(t *testing.T, network, host string) string {
	t.Helper()
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close()
		return addr
	default:
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		_ = pc.Close()
		return addr
	}
}

// ms is n milliseconds.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// hasIPv6Loopback reports whether ::1 can be bound.
func hasIPv6Loopback() bool {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// contextWithCancel returns a cancelable context ended with the test.
func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}
