package statuspage

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/ipvs"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/")

var t0 = time.Date(2026, 11, 2, 9, 30, 0, 0, time.UTC)

// director is a director's snapshot: the API's sample status plus a bgp
// VIP and its session, with web's first real's connection counter at conns.
func director(conns uint32) metrics.Snapshot {
	st := apitest.SampleStatus()
	st.VIPs = append(st.VIPs, api.VIP{Address: netip.MustParseAddr("203.0.113.20"), Interface: "lo", Mode: "bgp", Held: true, Announced: true})
	st.BGP = &api.BGP{Peers: []api.BGPPeer{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500, State: "established", BFD: "up", Announced: 1}}}
	return metrics.Snapshot{Status: st, Traffic: map[metrics.RealID]ipvs.Stats{
		{Service: "tcp/203.0.113.10:80", Real: netip.MustParseAddrPort("198.51.100.10:80")}: {Conns: conns},
	}}
}

// fixedPage is a page over a source returning *snap, its clock at *now.
func fixedPage(snap *metrics.Snapshot, now *time.Time) *Page {
	p := New(func(context.Context) (metrics.Snapshot, error) { return *snap, nil }, nil)
	p.now = func() time.Time { return *now }
	return p
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (go test -update rewrites it):\n%s", path, got)
	}
}

func get(t *testing.T, h http.Handler, method, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// The page of a director after three samples (a real going down, a reload
// rejected, connections rising), and of a witness, as golden HTML.
func TestPageGolden(t *testing.T) {
	now := t0
	snap := director(1000)
	p := fixedPage(&snap, &now)
	for i := range 3 {
		p.sample(context.Background())
		now = now.Add(SampleInterval)
		snap = director(1000 + uint32(i+1)*50)
		snap.Status.Services[0].Reals[0].ActiveConns += uint32(i+1) * 100
		if i == 1 {
			snap.Status.Services[0].Reals[1].Health, snap.Status.Services[0].Reals[1].HealthReason = "down", "connection refused <script>"
			snap.Status.Reload.At = t0.Add(time.Minute)
		}
	}
	w := get(t, p.Handler(), "GET", "/")
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	body := w.Body.String()
	if strings.Contains(body, "<script>\"") || strings.Contains(body, "refused <script>") {
		t.Error("a health reason reached the page unescaped")
	}
	golden(t, "director.html", w.Body.Bytes())

	wit := metrics.Snapshot{Status: api.Status{Node: "w1", Role: "witness", Version: "1.0.0",
		Raft:    api.Raft{State: "Follower", LeaderID: "d1", LeaderAddress: "192.0.2.11:7946", Term: 7},
		Members: apitest.SampleStatus().Members, Generation: 12}}
	wp := fixedPage(&wit, &now)
	wp.sample(context.Background())
	golden(t, "witness.html", get(t, wp.Handler(), "GET", "/").Body.Bytes())
}

// The events a change of state makes.
func TestEvents(t *testing.T) {
	a := director(0).Status
	b := director(0).Status
	b.Raft.LeaderID, b.Raft.Term = "d2", 8
	b.VIPs[0].Held = false
	b.VIPs[2].Announced, b.VIPs[2].Withdrawn = false, "no-service-up"
	b.Reload.At = a.Reload.At.Add(time.Minute)
	b.Services[0].Reals[0].Health, b.Services[0].Reals[0].HealthReason = "down", "connection refused"
	b.Services[0].Reals[2].Admin = "drained"
	b.Services[1].Up = true
	var got []string
	for _, e := range diff(&a, &b) {
		got = append(got, e.Kind+": "+e.Text)
	}
	want := []string{
		"leader: leader d2, term 8 (was d1)",
		"vip: 203.0.113.10 released from eth0",
		"vip: 203.0.113.20 withdrawn: no-service-up",
		"reload: reload rejected, the running configuration stays: /etc/dsrd/director.yaml:14:16: scheduler \"fastest\": want one of rr, wrr, lc, wlc, sh, mh; /etc/dsrd/director.yaml:17:15: real port 8080 differs from the service port 80 (DR cannot remap ports)",
		"real: web 198.51.100.10:80 down: connection refused",
		"real: web 198.51.100.12:80 drained by the operator",
		"service: service dns up: 0 of 2 reals healthy (quorum 1)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(diff(&a, &a)) != 0 {
		t.Error("an unchanged state made events")
	}
}

// The history: a rate from the counter (across its wrap), at most
// historyLen samples, reals that left forgotten; events bounded.
func TestHistory(t *testing.T) {
	r := newRecorder()
	key := realKey{Service: "tcp/203.0.113.10:80", Real: netip.MustParseAddrPort("198.51.100.10:80")}.String()
	at := t0
	r.record(at, director(1<<32-100))
	at = at.Add(10 * time.Second)
	r.record(at, director(400)) // wrapped: 500 new connections in 10 s
	h, _ := r.view()
	if s := h[key]; len(s) != 2 || s[1].Rate != 50 {
		t.Fatalf("history %+v, want the second sample at 50/s", s)
	}
	for range historyLen + 10 {
		at = at.Add(SampleInterval)
		r.record(at, director(400))
	}
	h, _ = r.view()
	if n := len(h[key]); n != historyLen {
		t.Errorf("%d samples kept, want %d", n, historyLen)
	}
	gone := director(400)
	gone.Status.Services = gone.Status.Services[1:]
	r.record(at.Add(SampleInterval), gone)
	if h, _ = r.view(); h[key] != nil {
		t.Error("a real that left the configuration kept its history")
	}
	for i := range maxEvents + 5 {
		r.add(Event{Kind: "node", Text: strings.Repeat("x", i)})
	}
	if _, ev := r.view(); len(ev) != maxEvents || ev[0].Text != strings.Repeat("x", maxEvents+4) {
		t.Errorf("%d events kept, newest %q", len(ev), ev[0].Text[:min(10, len(ev[0].Text))])
	}
	r.add(Event{Text: strings.Repeat("y", 10*maxEventText)})
	if _, ev := r.view(); len(ev[0].Text) > maxEventText+len("…") {
		t.Errorf("an event of %d bytes kept", len(ev[0].Text))
	}
}

// The JSON endpoints, the assets, and nothing that writes.
func TestHandler(t *testing.T) {
	now := t0
	snap := director(10)
	p := fixedPage(&snap, &now)
	p.sample(context.Background())
	h := p.Handler()

	w := get(t, h, "GET", "/view.json")
	var v struct {
		Services []struct {
			Key   string
			Reals []struct{ Key, Health string }
		}
		Events []struct{ Kind, Text string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || len(v.Services) != 2 || len(v.Services[0].Reals) != 4 || len(v.Events) != 1 {
		t.Errorf("view.json: %v %+v", err, v)
	}
	w = get(t, h, "GET", "/status.json")
	var doc statusDoc
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil || doc.Status.Node != "d1" || len(doc.History) != 6 {
		t.Errorf("status.json: %v, node %q, %d histories", err, doc.Status.Node, len(doc.History))
	}
	for path, ctype := range map[string]string{"/static/page.js": "javascript", "/static/page.css": "text/css"} {
		w = get(t, h, "GET", path)
		if w.Code != http.StatusOK || !strings.Contains(w.Header().Get("Content-Type"), ctype) {
			t.Errorf("GET %s = %d %s", path, w.Code, w.Header().Get("Content-Type"))
		}
	}
	for _, path := range []string{"/static/", "/static/page.html", "/nope", "/static/page.go"} {
		if w = get(t, h, "GET", path); w.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, w.Code)
		}
	}
	for _, m := range []string{"POST", "PUT", "DELETE"} {
		if w = get(t, h, m, "/"); w.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s / = %d, want 405", m, w.Code)
		}
	}
	w = get(t, h, "GET", "/")
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	body := w.Body.String()
	for _, external := range []string{"http://", "https://", "//fonts", "cdn"} {
		if strings.Contains(body, external) {
			t.Errorf("the page refers to %q: every asset must be its own", external)
		}
	}

	// A source that fails: the page says so instead of failing.
	failing := New(func(context.Context) (metrics.Snapshot, error) {
		return metrics.Snapshot{Status: api.Status{Node: "d1", Role: "director"}}, errors.New("read ipvs: netlink timeout")
	}, nil)
	w = get(t, failing.Handler(), "GET", "/")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Part of the state could not be read: read ipvs: netlink timeout") {
		t.Errorf("a failing source: %d %s", w.Code, w.Body.String())
	}
}

// Run samples until its context ends.
func TestRunStops(t *testing.T) {
	snap := director(1)
	now := t0
	p := fixedPage(&snap, &now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	_ = io.Discard
}
