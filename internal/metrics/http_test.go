package metrics

import (
	"context"
	"errors"
	"io"
	"net"
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

// serveWith serves s on a fresh loopback listener with lim until the test
// ends, and returns the listener's address.
func serveWith(t *testing.T, s *Set, lim serverLimits) string {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx, ln, nil, lim) }() // ends at cleanup
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestEndpointDropsAHalfSentHeader(t *testing.T) {
	lim := defaultLimits()
	lim.readHeader = 200 * time.Millisecond
	addr := serveWith(t, newTestSet(RoleDirector, directorSnapshot(), nil), lim)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A header that never ends: no blank line.
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: dsrd\r\n"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Far longer than the header timeout, far shorter than production's:
	// only the injected timeout can end the connection in time.
	_ = c.SetReadDeadline(start.Add(3 * time.Second))
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("connection still open %s after half a header (read %q): %v", time.Since(start).Round(time.Millisecond), rest, err)
	}
	if took := time.Since(start); took < lim.readHeader/2 {
		t.Errorf("connection closed after %s, before the header timeout %s", took, lim.readHeader)
	}
	if len(rest) > 0 && !strings.HasPrefix(string(rest), "HTTP/1.1 4") {
		t.Errorf("answer to half a header: %q", rest)
	}
}

func TestEndpointRefusesAHugeHeader(t *testing.T) {
	lim := defaultLimits()
	lim.maxHeader = 1 << 10
	addr := serveWith(t, newTestSet(RoleDirector, directorSnapshot(), nil), lim)

	req, err := http.NewRequest(http.MethodGet, "http://"+addr+Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	// net/http allows 4 KiB over MaxHeaderBytes.
	req.Header.Set("X-Padding", strings.Repeat("a", lim.maxHeader+8<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("GET with a %d-byte header: %s, want 431", lim.maxHeader+8<<10, resp.Status)
	}
}

func TestDefaultLimitsLetAScrapeFinish(t *testing.T) {
	lim := defaultLimits()
	if lim.readHeader <= 0 || lim.read < lim.readHeader || lim.idle <= 0 || lim.maxHeader <= 0 {
		t.Errorf("limits unset or inconsistent: %+v", lim)
	}
	// The write deadline runs from the end of the request: it must
	// outlast promhttp's own bound on gathering.
	if lim.write <= scrapeTimeout {
		t.Errorf("write timeout %s does not outlast the scrape timeout %s", lim.write, scrapeTimeout)
	}
}
