package statuspage

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/metrics"
)

// chromium returns Debian's chromium, failing the test where the tests
// must run in full (DSRD_TEST_PRIVILEGED=require: make unit, CI), else
// skipping it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("DSRD_TEST_PRIVILEGED") == "require" {
		t.Fatal("chromium not found: install Debian's chromium package (apt-get install chromium)")
	}
	t.Skip("chromium not found (Debian's chromium package)")
	return ""
}

// browse runs headless chromium on url for a virtual time budget and
// returns what it printed: the DOM after the page's script ran, or
// nothing when it writes a screenshot.
func browse(t *testing.T, bin, url string, budget time.Duration, extra ...string) string {
	t.Helper()
	// --no-sandbox: the tests run as root, which chromium's sandbox
	// refuses; the page is our own, served on loopback.
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
		"", "--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10)}, extra...)
	// Once more when a browser hangs: under a loaded machine one was seen
	// not to finish in a minute (the page had been served; the browser
	// itself stalled).
	var err error
	for attempt := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		args[6] = "--user-data-dir=" + t.TempDir()
		cmd := exec.CommandContext(ctx, bin, append(args, url)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		var out []byte
		out, err = cmd.Output()
		cancel()
		if err == nil {
			return string(out)
		}
		t.Logf("chromium %s, attempt %d: %v", url, attempt+1, err)
	}
	t.Fatalf("chromium %s: %v", url, err)
	return ""
}

// cell returns the text of a real's field in the DOM chromium printed.
func cell(dom, realKey, field string) string {
	row := regexp.MustCompile(`(?s)<tr data-real="` + regexp.QuoteMeta(realKey) + `">(.*?)</tr>`).FindStringSubmatch(dom)
	if row == nil {
		return "(no row)"
	}
	m := regexp.MustCompile(`data-field="` + field + `"[^>]*>([^<]*)<`).FindStringSubmatch(row[1])
	if m == nil {
		return "(no field)"
	}
	return m[1]
}

// The page in a real browser: Debian's chromium loads it from the real
// handler on loopback, runs its script, and the DOM shows every service
// and real of the status; a real that goes down after the page loaded is
// shown down after one refresh, with the event listed; a screenshot is
// written (DSRD_STATUSPAGE_SCREENSHOT names where, for the README) for
// people to look at, not compared.
func TestPageInBrowser(t *testing.T) {
	bin := chromium(t)
	var mu sync.Mutex
	reads, down := 0, false
	page := New(func(context.Context) (metrics.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		reads++
		snap := director(1000 + uint32(reads)*25)
		snap.Status.Services[0].Reals[0].ActiveConns = 1000 + uint32(reads%7)*40
		if down {
			snap.Status.Services[0].Reals[0].Health = "down"
			snap.Status.Services[0].Reals[0].HealthReason = "connection refused"
			snap.Status.Services[0].Reals[0].IPVSWeight = 0
		}
		return snap, nil
	}, nil)
	page.poll = 500 * time.Millisecond
	now := time.Now().Add(-time.Minute)
	page.now = func() time.Time { return now }
	for range 12 { // a minute of history for the sparklines
		page.sample(context.Background())
		now = now.Add(SampleInterval)
	}
	// The real goes down once the page has been served: the browser
	// learns it from the script's refresh only.
	h := page.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Path == "/" {
			mu.Lock()
			down = true
			mu.Unlock()
		}
	}))
	defer srv.Close()

	const real0 = "tcp/203.0.113.10:80/198.51.100.10:80"
	dom := browse(t, bin, srv.URL+"/", 2500*time.Millisecond, "--dump-dom")
	for _, svc := range director(0).Status.Services {
		if !strings.Contains(dom, `data-service="`+svc.Key+`"`) {
			t.Errorf("the page lacks service %s", svc.Key)
		}
		for _, r := range svc.Reals {
			key := realKey{Service: svc.Key, Real: netip.AddrPortFrom(r.Address, r.Port)}.String()
			if got := cell(dom, key, "health"); got == "(no row)" {
				t.Errorf("the page lacks real %s", key)
			}
		}
	}
	if got := cell(dom, real0, "health"); got != "down (connection refused)" {
		t.Errorf("%s's health on the page after a refresh: %q, want down (connection refused)", real0, got)
	}
	if got := cell(dom, real0, "weight"); got != "10/0" {
		t.Errorf("%s's weight on the page after a refresh: %q, want 10/0", real0, got)
	}
	if !strings.Contains(dom, "live, every 0.5 s") {
		t.Error("the script did not report a successful refresh")
	}

	shot := os.Getenv("DSRD_STATUSPAGE_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status-page.png")
	}
	abs, err := filepath.Abs(shot)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	browse(t, bin, srv.URL+"/", time.Second, "--screenshot="+abs, "--window-size=1100,1500", "--hide-scrollbars")
	if fi, err := os.Stat(abs); err != nil || fi.Size() < 10_000 {
		t.Errorf("screenshot %s: %v", abs, err)
	} else {
		t.Logf("screenshot: %s (%d bytes)", abs, fi.Size())
	}
}
