package raft

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 15 * time.Second

func ptr[T any](v T) *T { return &v }

// testSpec returns a small spec: one TCP service on a VIP with two reals,
// as a director's file gives it (defaults filled in, validated).
func testSpec(weight int) Spec {
	return SpecFromDirector(testutil.WebDirector(&testing.T{}, "192.0.2.100", weight))
}

// webRef is a real of testSpec's service.
func webRef(addr string) RealRef {
	return RealRef{Service: "tcp/192.0.2.100:80", Address: netip.MustParseAddr(addr)}
}

// bufSink is an in-memory hraft.SnapshotSink.
type bufSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufSink) Close() error  { s.closed = true; return nil }

// recv waits for one value of ch within testTimeout.
func recv[T any](t *testing.T, ch <-chan T, what string) (T, bool) {
	t.Helper()
	select {
	case v, ok := <-ch:
		return v, ok
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero, false
}

// waitClosed waits for ch to be closed within testTimeout.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// snapshotImage is what a snapshot of f persists now.
func snapshotImage(t *testing.T, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &bufSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}
