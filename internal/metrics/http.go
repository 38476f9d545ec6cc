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

// serverLimits bound what one connection to the endpoint may hold: the
// endpoint listens on the network (node.metrics_address), so a client that
// opens connections and sends nothing, or a header a byte at a time, must
// not keep goroutines and file descriptors for ever.
type serverLimits struct {
	readHeader time.Duration
	read       time.Duration
	write      time.Duration
	idle       time.Duration
	maxHeader  int
}

// defaultLimits returns the endpoint's bounds in production.
func defaultLimits() serverLimits {
	return serverLimits{
		// A scraper sends its request header at once: 5 s is generous over
		// any network a scraper sits on, and short enough that a slow client
		// (slowloris) holds a connection briefly.
		readHeader: 5 * time.Second,
		// A scrape is a GET without a body: the whole request fits in the
		// header's time, with room to spare.
		read: 10 * time.Second,
		// The response is written after gathering, which promhttp bounds by
		// scrapeTimeout: the write deadline, set when the request is read,
		// must leave the gathering its full time and the encoding some more.
		write: scrapeTimeout + 10*time.Second,
		// Prometheus keeps its connection between scrapes (every 15 s to 1
		// min by default): a minute lets it reuse it, and no longer.
		idle: time.Minute,
		// A scrape's header is a few hundred bytes (Accept, User-Agent, an
		// Authorization header at most): 16 KiB is ample. net/http adds 4 KiB
		// of slack over this.
		maxHeader: 16 << 10,
	}
}

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
// and the status page (ServePage) at every other path, else 404.
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
	s.mu.Lock()
	page := s.page
	s.mu.Unlock()
	if page != nil {
		mux.Handle("/", page)
	}
	return mux
}

// Serve serves the endpoint on ln until ctx ends, then shuts the server
// down, waiting at most shutdownTimeout for scrapes in progress. It closes
// ln. It returns nil after a shutdown, or why serving failed.
func (s *Set) Serve(ctx context.Context, ln net.Listener, log *slog.Logger) error {
	return s.serve(ctx, ln, log, defaultLimits())
}

// serve is Serve with the connection bounds as a parameter (tests shorten
// them).
func (s *Set) serve(ctx context.Context, ln net.Listener, log *slog.Logger, lim serverLimits) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv := &http.Server{
		Handler:           s.Handler(log),
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeader,
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
