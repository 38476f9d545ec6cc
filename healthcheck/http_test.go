package healthcheck

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// recorder keeps what the test server saw of the last request.
type recorder struct {
	mu         sync.Mutex
	host       string
	method     string
	remoteAddr string
	sni        string
}

func (r *recorder) get() recorder {
	r.mu.Lock()
	defer r.mu.Unlock()
	return recorder{host: r.host, method: r.method, remoteAddr: r.remoteAddr, sni: r.sni}
}

// testHandler serves the paths the HTTP tests probe.
func testHandler(rec *recorder, release <-chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.host, rec.method, rec.remoteAddr = r.Host, r.Method, r.RemoteAddr
		rec.mu.Unlock()
		_, _ = io.WriteString(w, "hello, status: green\n")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "on fire", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	return mux
}

func TestHTTP(t *testing.T) {
	rec := &recorder{}
	release := make(chan struct{})
	srv := httptest.NewServer(testHandler(rec, release))
	t.Cleanup(func() { close(release); srv.Close() })
	addr := srv.Listener.Addr().String()

	tests := []struct {
		name   string
		spec   Spec
		addr   string
		up     bool
		reason Reason
		msg    string
	}{
		{"ok", Spec{Probe: HTTP{}}, addr, true, ReasonOK, "status 200"},
		{"bad status", Spec{Probe: HTTP{Path: "/fail"}}, addr, false, ReasonBadStatus, "status 503, want 200-399"},
		{"expected bad status", Spec{Probe: HTTP{Path: "/fail", ExpectStatus: []string{"503"}}}, addr, true, ReasonOK, ""},
		{"redirect not followed", Spec{Probe: HTTP{Path: "/redirect", ExpectStatus: []string{"200"}}}, addr, false, ReasonBadStatus, "status 302, want 200"},
		{"redirect accepted", Spec{Probe: HTTP{Path: "/redirect", ExpectStatus: []string{"200", "300-399"}}}, addr, true, ReasonOK, "302"},
		{"body matches", Spec{Probe: HTTP{BodyRegexp: `status: (green|yellow)`}}, addr, true, ReasonOK, "body matches"},
		{"body mismatch", Spec{Probe: HTTP{BodyRegexp: `status: red`}}, addr, false, ReasonBodyMismatch, "status: red"},
		{"refused", Spec{Probe: HTTP{}}, closedPort(t, "tcp", "127.0.0.1"), false, ReasonRefused, "connection refused"},
		{"timeout", Spec{Params: Params{Timeout: ms(200)}, Probe: HTTP{Path: "/slow"}}, addr, false, ReasonTimeout, ""},
		{"not tls", Spec{Probe: HTTP{TLS: true}}, addr, false, ReasonTLS, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want(t, runCheck(t, mustChecker(t, tt.spec), targetOf(t, tt.addr)), tt.up, tt.reason, tt.msg)
		})
	}

	t.Run("method, host and source", func(t *testing.T) {
		c := mustChecker(t, Spec{Source: netip.MustParseAddr("127.0.0.1"), Probe: HTTP{Method: "head", Host: "www.example.test"}})
		want(t, runCheck(t, c, targetOf(t, addr)), true, ReasonOK, "")
		got := rec.get()
		if got.method != http.MethodHead || got.host != "www.example.test" {
			t.Errorf("server saw %s with Host %q, want HEAD with Host www.example.test", got.method, got.host)
		}
		if host, _, _ := net.SplitHostPort(got.remoteAddr); host != "127.0.0.1" {
			t.Errorf("request came from %s, want 127.0.0.1", got.remoteAddr)
		}
	})

	t.Run("no keep-alive", func(t *testing.T) {
		var (
			mu    sync.Mutex
			conns = map[string]bool{}
		)
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			conns[r.RemoteAddr] = true
			mu.Unlock()
		}))
		srv.Start()
		defer srv.Close()
		c := mustChecker(t, Spec{Probe: HTTP{}})
		for range 3 {
			want(t, runCheck(t, c, targetOf(t, srv.Listener.Addr())), true, ReasonOK, "")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(conns) != 3 {
			t.Errorf("3 checks came over %d connections, want 3", len(conns))
		}
	})
}

func TestHTTPIPv6(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback address (::1) in this sandbox")
	}
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(testHandler(&recorder{}, nil))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	want(t, runCheck(t, mustChecker(t, Spec{Probe: HTTP{}}), targetOf(t, ln.Addr())), true, ReasonOK, "")
}

func TestHTTPS(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewUnstartedServer(testHandler(rec, nil))
	srv.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		rec.mu.Lock()
		rec.sni = hello.ServerName
		rec.mu.Unlock()
		return nil, nil
	}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // expected handshake failures
	srv.StartTLS()
	defer srv.Close()
	target := targetOf(t, srv.Listener.Addr())
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	t.Run("verify off", func(t *testing.T) {
		c := mustChecker(t, Spec{Params: tlsParams, Probe: HTTP{TLS: true, BodyRegexp: "green"}})
		want(t, runCheck(t, c, target), true, ReasonOK, "")
	})
	t.Run("verify on, unknown authority", func(t *testing.T) {
		c := mustChecker(t, Spec{Params: tlsParams, Probe: HTTP{TLS: true, TLSVerify: true}})
		want(t, runCheck(t, c, target), false, ReasonTLS, "certificate")
	})
	t.Run("sni sent", func(t *testing.T) {
		c := mustChecker(t, Spec{Params: tlsParams, Probe: HTTP{TLS: true, TLSServerName: "backend.example.test"}})
		want(t, runCheck(t, c, target), true, ReasonOK, "")
		if got := rec.get().sni; got != "backend.example.test" {
			t.Errorf("server got SNI %q, want backend.example.test", got)
		}
	})
	t.Run("sni from host header", func(t *testing.T) {
		c := mustChecker(t, Spec{Params: tlsParams, Probe: HTTP{TLS: true, Host: "www.example.test:8443"}})
		want(t, runCheck(t, c, target), true, ReasonOK, "")
		if got := rec.get().sni; got != "www.example.test" {
			t.Errorf("server got SNI %q, want www.example.test", got)
		}
	})
	// httptest's certificate is for example.com and 127.0.0.1.
	for _, tt := range []struct {
		name, serverName string
		up               bool
	}{
		{"verify on, trusted, name matches", "example.com", true},
		{"verify on, trusted, address matches", "", true},
		{"verify on, trusted, name mismatch", "other.example.test", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := Spec{Probe: HTTP{TLS: true, TLSVerify: true, TLSServerName: tt.serverName}}
			c, err := NewChecker(spec, BuildOptions{RootCAs: roots})
			if err != nil {
				t.Fatal(err)
			}
			r := runCheck(t, c, target)
			if tt.up {
				want(t, r, true, ReasonOK, "")
			} else {
				want(t, r, false, ReasonTLS, "")
			}
		})
	}
}

func TestNewCheckerErrors(t *testing.T) {
	for _, spec := range []Spec{
		{},
		{Probe: HTTP{ExpectStatus: []string{"2xx"}}},
		{Probe: HTTP{ExpectStatus: []string{"299-200"}}},
		{Probe: HTTP{BodyRegexp: "("}},
		{Probe: DNS{QueryName: "example.test", QueryType: "BOGUS"}},
		{Probe: DNS{QueryName: "example.test", ExpectRcode: "FINE"}},
		{Probe: Exec{}},
	} {
		t.Run(fmt.Sprintf("%s %+v", spec.Type(), spec.Probe), func(t *testing.T) {
			if c, err := NewChecker(spec, BuildOptions{}); err == nil {
				t.Errorf("NewChecker = %T, want an error", c)
			} else {
				t.Log(err)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in     string
		lo, hi int
		ok     bool
	}{
		{"200", 200, 200, true},
		{" 200-299 ", 200, 299, true},
		{"301-301", 301, 301, true},
		{"599", 599, 599, true},
		{"99", 0, 0, false},
		{"600", 0, 0, false},
		{"2xx", 0, 0, false},
		{"299-200", 0, 0, false},
		{"200-", 0, 0, false},
		{"-200", 0, 0, false},
		{"+200", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		r, err := parseStatus(tt.in)
		if (err == nil) != tt.ok || (tt.ok && (r.lo != tt.lo || r.hi != tt.hi)) {
			t.Errorf("parseStatus(%q) = %v, %v; want %d-%d ok=%v", tt.in, r, err, tt.lo, tt.hi, tt.ok)
		}
	}
	ranges, err := parseStatuses(nil)
	if err != nil || !statusIn(200, ranges) || !statusIn(302, ranges) || statusIn(404, ranges) {
		t.Errorf("default statuses %v, %v: want 200-399", ranges, err)
	}
}

func FuzzParseStatus(f *testing.F) {
	for _, s := range []string{"200", "200-299", "2xx", "-", "599-100", " 404 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseStatus(s)
		if err != nil {
			return
		}
		if r.lo < 100 || r.hi > 599 || r.lo > r.hi {
			t.Errorf("parseStatus(%q) = %v: out of range", s, r)
		}
		back, err := parseStatus(formatStatuses([]statusRange{r}))
		if err != nil || back != r {
			t.Errorf("round trip of %q: %v, %v", s, back, err)
		}
	})
}

// tlsParams give a TLS check room for its handshake on a loaded machine
// under the race detector: the checks here must end by their outcome,
// never by the default 1 s timeout.
var tlsParams = Params{Timeout: 10 * time.Second}
