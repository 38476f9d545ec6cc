package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEndpointServesMetrics(t *testing.T) {
	s := newTestSet(RoleDirector, directorSnapshot(), nil)
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln, nil) }() // ends when ctx is cancelled
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %s, %s", Path, resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, line := range []string{
		"dsrd_raft_leader 0",
		`dsrd_real_weight{real="192.0.2.21:80",service="web"} 100`,
		`dsrd_vip_owned{interface="eth1",vip="2001:db8::10"} 1`,
		"dsrd_failovers_total 0",
		"# TYPE go_goroutines gauge",
		"# TYPE process_start_time_seconds gauge",
	} {
		if !strings.Contains(string(body), "\n"+line+"\n") {
			t.Errorf("GET %s has no line %q", Path, line)
		}
	}
	if resp, err := http.Get(base + "/"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after its context ended: %v", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("the endpoint did not shut down")
	}
	if _, err := http.Get(base + Path); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET after the shutdown: %v, want connection refused", err)
	}
}

func TestListenFailureNamesTheAddress(t *testing.T) {
	busy, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	ln, err := Listen(addr)
	if err == nil {
		ln.Close()
		t.Fatalf("a second listener on %s: no error", addr)
	}
	if !strings.Contains(err.Error(), "metrics endpoint on "+addr) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %q does not name %s as in use", err, addr)
	}
}
