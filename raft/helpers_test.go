package raft

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"net/netip"
	"testing"
	"time"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 15 * time.Second

func ptr[T any](v T) *T { return &v }

// testSpec returns a small spec: one TCP service on a VIP with two reals
// of the given weight, with the values a director file's defaults give.
func testSpec(weight int) Spec {
	vip := netip.MustParseAddr("192.0.2.100")
	return Spec{
		IPVS: IPVSSettings{TCPTimeout: Duration(900 * time.Second), SloppyTCP: ptr(true), ExpireNodestConn: ptr(true), ExpireQuiescentTemplate: ptr(true)},
		VIPs: []VIP{{Address: vip, Announce: Announce{Count: 3, Interval: Duration(1100 * time.Millisecond), Refresh: ptr(Duration(30 * time.Second))}}},
		Services: []Service{{
			Name: "web", VIP: vip, Port: 80, Protocol: "tcp", Scheduler: "mh", SchedulerFlags: []string{"mh-fallback"},
			DrainTimeout: Duration(5 * time.Minute), Quorum: 1, OnDown: "weight0",
			HealthCheck: &HealthCheck{Type: "http", Path: "/healthz", Method: "GET", ExpectStatus: []string{"200-399"},
				Interval: Duration(time.Second), Timeout: Duration(500 * time.Millisecond), Rise: 2, Fall: 3, Initial: "down", Port: 80},
			Reals: []Real{
				{Address: netip.MustParseAddr("198.51.100.10"), Port: 80, Weight: ptr(weight)},
				{Address: netip.MustParseAddr("198.51.100.11"), Port: 80, Weight: ptr(weight)},
			},
		}},
	}
}

// testValidate stands in for the configuration file's rules, which live
// in internal/config and are wired by the edge (internal/clusterspec,
// tested there): it refuses a VIP that is not unicast and a service
// without a name, enough for this package's tests of where specs are
// checked.
func testValidate(s Spec) error {
	for _, v := range s.VIPs {
		if !v.Address.IsValid() || v.Address.IsMulticast() || v.Address.IsUnspecified() {
			return fmt.Errorf("vip %s is not unicast", v.Address)
		}
	}
	for _, svc := range s.Services {
		if svc.Name == "" {
			return errors.New("a service without a name")
		}
	}
	return nil
}

// webRef is a real of testSpec's service.
func webRef(addr string) RealRef {
	return RealRef{Service: ipvs.MustParseServiceKey("tcp/192.0.2.100:80"), Address: netip.MustParseAddr(addr)}
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

// files turns the test CA's file names into the node's TLS settings.
func files(c testutil.TLSFiles) TLSFiles { return TLSFiles(c) }
