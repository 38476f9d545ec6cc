package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Path is where the endpoint serves the metrics.
const Path = "/metrics"

// Bounds of the endpoint. A scrape reads the node's state (a Raft
// configuration and, on a director, the IPVS table) like `dsrd status`:
// a few scrapers at once are normal (an HA pair of Prometheus servers),
// more is a misconfiguration that must not pile up reads.
const (
	maxInFlight     = 4
	scrapeTimeout   = 10 * time.Second
	shutdownTimeout = 5 * time.Second
)

// Listen opens the endpoint's TCP listener on addr (host:port). Its error
// names the address.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint on %s: %w", addr, err)
	}
	return ln, nil
}

// Handler returns the HTTP handler of the endpoint: the metrics at Path,
// 404 elsewhere.
func (s *Set) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle(Path, promhttp.HandlerFor(s.Gatherer(), promhttp.HandlerOpts{
		ErrorLog: errorLog{log},
		// A metric that cannot be gathered (a bug) costs that metric,
		// not the whole scrape.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxInFlight,
		Timeout:             scrapeTimeout,
	}))
	return mux
}

// Serve serves the endpoint on ln until ctx ends, then shuts the server
// down, waiting at most shutdownTimeout for scrapes in progress. It closes
// ln. It returns nil after a shutdown, or why serving failed.
func (s *Set) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           s.Handler(log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }() // ends when the server is shut down or closed
	log.Info("metrics endpoint serving", "address", ln.Addr().String(), "path", Path)
	select {
	case err := <-errc:
		return fmt.Errorf("metrics endpoint on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("metrics endpoint shutdown", "error", err)
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics endpoint on %s: %w", ln.Addr(), err)
	}
	return nil
}

// errorLog is promhttp's error logger over slog.
type errorLog struct{ log *slog.Logger }

// Println logs a gathering or encoding error.
func (e errorLog) Println(v ...any) { e.log.Warn("metrics endpoint", "error", fmt.Sprint(v...)) }
