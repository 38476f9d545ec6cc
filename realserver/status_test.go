package realserver

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Code, rec.Body.String()
}

func TestStatusEndpoint(t *testing.T) {
	fk, a := goodHost(t, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0"}})
	a.cacheMaxAge = 0
	h := a.StatusHandler()

	if code, body := get(t, h, "/status"); code != 200 || body != "ok" {
		t.Errorf("good host: %d %q, want 200 ok", code, body)
	}

	must(SetDrain(a.Config().DataDir, true))
	if code, body := get(t, h, "/status"); code != 503 || body != "draining" {
		t.Errorf("drained: %d %q, want 503 draining", code, body)
	}
	must(SetDrain(a.Config().DataDir, true)) // idempotent
	must(SetDrain(a.Config().DataDir, false))
	must(SetDrain(a.Config().DataDir, false))
	if code, _ := get(t, h, "/status"); code != 200 {
		t.Errorf("undrained: %d, want 200", code)
	}

	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	if code, body := get(t, h, "/status"); code != 503 || body != "203.0.113.10: vip-missing(lo)" {
		t.Errorf("broken: %d %q", code, body)
	}
	code, body := get(t, h, "/status?format=json")
	var resp StatusResponse
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if code != 503 || resp.Status != "fail" || len(resp.Report.VIPs) != 1 || resp.Report.VIPs[0].OK {
		t.Errorf("json: %d %s", code, body)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/status", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	if code, _ := get(t, h, "/other"); code != 404 {
		t.Errorf("/other: %d", code)
	}
}

func TestStatusCache(t *testing.T) {
	fk, a := goodHost(t, Config{VIPs: []netip.Addr{vip4}})
	a.cacheMaxAge = time.Hour
	h := a.StatusHandler()
	get(t, h, "/status")
	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	if code, _ := get(t, h, "/status"); code != 200 {
		t.Errorf("cached verdict not used: %d", code)
	}
	// Drain is read on every request.
	must(SetDrain(a.Config().DataDir, true))
	if _, body := get(t, h, "/status"); body != "draining" {
		t.Errorf("drain not seen at once: %q", body)
	}
	must(SetDrain(a.Config().DataDir, false))
	// An apply invalidates the cache.
	if _, err := a.Apply(context.Background()); err != nil {
		t.Fatal(err)
	}
	must(fk.DelAddr(Addr{Link: "lo", Prefix: vipPrefix(vip4)}))
	a.invalidateStatus()
	if code, _ := get(t, h, "/status"); code != 503 {
		t.Errorf("stale verdict after invalidation: %d", code)
	}
}

// Run serves the endpoint on StatusAddress and stops it when it ends.
func TestRunServesStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, StatusAddress: addr})
	stop := runAgent(t, a)
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Errorf("%d %q", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get("http://" + addr + "/status"); err == nil {
		t.Error("endpoint still serving after Run returned")
	}
}

func TestStatusListenAddress(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: ":9797", want: ":9797"},
		{in: "0.0.0.0", want: "0.0.0.0:9797"},
		{in: "192.0.2.2:8000", want: "192.0.2.2:8000"},
		{in: "::", want: "[::]:9797"},
		{in: "[2001:db8::2]", want: "[2001:db8::2]:9797"},
		{in: "[2001:db8::2]:80", want: "[2001:db8::2]:80"},
		{in: "localhost", want: "localhost:9797"},
		{in: "host:99999", err: "invalid port"},
		{in: "a b", err: "not host:port"},
	}
	for _, tt := range tests {
		got, err := statusListenAddress(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v, want error %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
