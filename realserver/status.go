package realserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DefaultStatusPort is the status endpoint's port when StatusAddress has
// none; the directors' "agent" health check uses the same default.
const DefaultStatusPort = 9797

// StatusPath is the status endpoint's path.
const StatusPath = "/status"

// The status server's bounds: a director's check is one small request, so
// a client that has not sent its headers in 2 s or its request in 5 s is
// not a director; 10 s to write covers a Check on a busy host; idle
// keep-alive connections are dropped after a minute.
const (
	statusReadHeaderTimeout = 2 * time.Second
	statusReadTimeout       = 5 * time.Second
	statusWriteTimeout      = 10 * time.Second
	statusIdleTimeout       = time.Minute
	statusMaxHeaderBytes    = 8 << 10
	// statusShutdownTimeout bounds how long Run waits for requests in
	// flight when it stops.
	statusShutdownTimeout = 5 * time.Second
	// statusCacheMaxAge is how long a verdict is reused: every director
	// polls every real, typically each second; 500 ms caps the netlink
	// dumps at two a second whatever their number, and an apply clears
	// the cache at once.
	statusCacheMaxAge = 500 * time.Millisecond
)

// statusListenAddress adds DefaultStatusPort to an address without a port
// ("0.0.0.0", "::1", "[::1]", "host").
func statusListenAddress(addr string) (string, error) {
	if _, port, err := net.SplitHostPort(addr); err == nil {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf("status address %q: invalid port", addr)
		}
		return addr, nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.String()
	} else if strings.ContainsAny(host, ":[]/ ") {
		return "", fmt.Errorf("status address %q: not host:port", addr)
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultStatusPort)), nil
}

type statusCache struct {
	at     time.Time
	report Report
	err    error
}

// invalidateStatus drops the cached verdict (after an apply or a cleanup).
func (a *Agent) invalidateStatus() {
	a.cacheMu.Lock()
	a.cached = nil
	a.cacheMu.Unlock()
}

// statusReport returns a verdict at most cacheMaxAge old; the drain file is
// read on every call.
func (a *Agent) statusReport(ctx context.Context) (Report, error) {
	a.cacheMu.Lock()
	defer a.cacheMu.Unlock()
	if a.cached == nil || time.Since(a.cached.at) > a.cacheMaxAge {
		rep, err := a.Check(ctx, CheckOptions{})
		a.cached = &statusCache{at: time.Now(), report: rep, err: err}
	}
	rep, err := a.cached.report, a.cached.err
	if err != nil {
		return rep, err
	}
	rep.Draining, err = Draining(a.cfg.DataDir)
	return rep, err
}

// StatusResponse is the body of GET /status?format=json.
type StatusResponse struct {
	// Status is "ok", "draining" or "fail"; the HTTP status is 200 for
	// "ok" and 503 otherwise.
	Status string `json:"status"`
	// Reason is the plain-text body: "ok", "draining" or the failures.
	Reason string `json:"reason"`
	Report Report `json:"report"`
	Stats  Stats  `json:"stats"`
}

// StatusHandler serves the status endpoint, the contract with the
// directors' "agent" health check: GET /status answers 200 with body "ok"
// when every VIP is in place with the sysctls right, 503 with body
// "draining" while the drain file exists, and 503 with a one-line account
// of the failures otherwise (500 if the kernel cannot be read).
// GET /status?format=json returns a StatusResponse with the same HTTP status.
func (a *Agent) StatusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(StatusPath, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		rep, err := a.statusReport(r.Context())
		if err != nil {
			a.log.Error("status check failed", slog.Any("error", err))
			http.Error(w, "check failed: "+err.Error(), http.StatusInternalServerError)
			return
		}
		resp := StatusResponse{Status: "ok", Reason: "ok", Report: rep, Stats: a.Stats()}
		code := http.StatusOK
		switch {
		case rep.Draining:
			resp.Status, resp.Reason, code = "draining", "draining", http.StatusServiceUnavailable
		case !rep.OK():
			resp.Status, resp.Reason, code = "fail", rep.Summary(), http.StatusServiceUnavailable
		}
		if r.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(resp)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		// The body is exactly the reason, without a newline: the agent
		// check may compare it as is.
		_, _ = w.Write([]byte(resp.Reason))
	})
	return mux
}

// newStatusServer builds the bounded HTTP server of the status endpoint.
func (a *Agent) newStatusServer() *http.Server {
	return &http.Server{
		Handler:           a.StatusHandler(),
		ReadHeaderTimeout: statusReadHeaderTimeout,
		ReadTimeout:       statusReadTimeout,
		WriteTimeout:      statusWriteTimeout,
		IdleTimeout:       statusIdleTimeout,
		MaxHeaderBytes:    statusMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// serveStatus serves until srv is shut down.
func (a *Agent) serveStatus(srv *http.Server, ln net.Listener) {
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("status endpoint stopped", slog.Any("error", err))
	}
}
