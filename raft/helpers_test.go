package raft

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 15 * time.Second

func ptr[T any](v T) *T { return &v }

// testSpec returns a small spec: one TCP service on a VIP with two reals.
func testSpec(weight int) Spec {
	vip := netip.MustParseAddr("192.0.2.100")
	return Spec{
		IPVS: config.IPVS{TCPTimeout: config.Duration(900 * time.Second), SloppyTCP: ptr(true)},
		VIPs: []config.VIP{{Address: vip, Interface: "eth0",
			Announce: config.Announce{Count: 3, Interval: config.Duration(1100 * time.Millisecond)}}},
		Services: []config.Service{{
			Name: "web", VIP: vip, Port: 80, Protocol: config.TCP, Scheduler: "mh",
			HealthCheck: &config.HealthCheck{Type: config.CheckHTTP, Path: "/healthz",
				Interval: config.Duration(time.Second), Timeout: config.Duration(500 * time.Millisecond)},
			Reals: []config.Real{
				{Address: netip.MustParseAddr("198.51.100.10"), Weight: ptr(weight)},
				{Address: netip.MustParseAddr("198.51.100.11"), Weight: ptr(weight)},
			},
		}},
	}
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
