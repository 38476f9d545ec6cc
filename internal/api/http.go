package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Server limits shared by the local API and the peer protocol.
const (
	// readHeaderTimeout bounds a client that connects and sends its
	// request line and headers slowly.
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request, body included.
	readTimeout = 30 * time.Second
	// idleTimeout closes kept-alive connections nobody uses.
	idleTimeout = 60 * time.Second
	// maxHeaderBytes bounds the request headers.
	maxHeaderBytes = 64 << 10
	// shutdownGrace is how long Serve lets requests in flight finish
	// after its ctx ended before closing their connections.
	shutdownGrace = 5 * time.Second
	// maxResponseBytes bounds what a client reads of an answer: a status
	// of thousands of services and reals stays far below it.
	maxResponseBytes = 64 << 20
)

// serveHTTP serves h on ln until ctx ends, then shuts the server down
// (gracefully for shutdownGrace). It returns nil when ctx ended or ln was
// closed (net.ErrClosed), the listener's error otherwise. The Serve
// goroutine it starts ends when the server stops, before serveHTTP returns.
//
// connContext, when not nil, is the server's ConnContext (the peer
// protocol puts each connection's proven Peer in its requests' context).
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, writeTimeout time.Duration,
	connContext func(context.Context, net.Conn) context.Context, log *slog.Logger) error {
	srv := &http.Server{
		ConnContext:       connContext,
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if errors.Is(err, net.ErrClosed) || errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("api server shutdown: closing connections still busy", "error", err)
		_ = srv.Close()
	}
	<-errc
	return nil
}

// writeJSON writes v as the JSON answer with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: fmt.Sprintf("encode answer: %v", err), Code: CodeInternal})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers err; notLeader is the status of raft.ErrNotLeader.
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error, notLeader int) {
	status, body := errorResponse(err, notLeader)
	if status >= http.StatusInternalServerError {
		log.Warn("api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	} else {
		log.Debug("api request refused", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeJSON(w, status, body)
}

// decodeJSON reads the request body as JSON into v, at most limit bytes; a
// bad body is an ErrInvalid, no body leaves v as it is.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // no body: the zero request
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: request body larger than %d bytes", ErrInvalid, limit)
		}
		return fmt.Errorf("%w: decode request body: %v", ErrInvalid, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the request body", ErrInvalid)
	}
	// White space may follow the value, within the limit like the rest:
	// read what is left so that a body over the limit is refused however
	// it ends.
	rest, err := io.ReadAll(io.MultiReader(dec.Buffered(), body))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: request body larger than %d bytes", ErrInvalid, limit)
	case err != nil:
		return fmt.Errorf("%w: read request body: %v", ErrInvalid, err)
	case len(bytes.TrimSpace(rest)) > 0:
		return fmt.Errorf("%w: trailing data after the request body", ErrInvalid)
	}
	return nil
}

// roundTrip sends one JSON request with hc and decodes a 2xx answer into
// out (nil: the body is ignored); other answers become an *Error. base is
// "http://HOST".
func roundTrip(ctx context.Context, hc *http.Client, base, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{StatusCode: resp.StatusCode}
		if json.Unmarshal(data, &e.ErrorResponse) != nil || e.ErrorResponse.Error == "" {
			e.ErrorResponse = ErrorResponse{Error: fmt.Sprintf("%s %s: %s", method, path, resp.Status), Code: CodeInternal}
		}
		return e
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// noBody is the body limit of a route that reads no request body (a GET,
// a DELETE, a reload): handle leaves its body unread, and its request is
// the zero value.
const noBody = 0

// handle returns the handler of one JSON route of the local API or of the
// peer protocol. It reads the request body as a Req, at most limit bytes
// (not at all with noBody); refuses the request when check, if not nil,
// does; runs call bounded by timeout and by the request's context; and
// answers status with call's result as JSON, or without a body when status
// is 204 No Content. fail answers every error: a bad or oversized body is
// an ErrInvalid (400), an operation that overran timeout a
// context.DeadlineExceeded (504).
func handle[Req, Res any](fail func(http.ResponseWriter, *http.Request, error), limit int64, timeout time.Duration,
	check func(Req) error, call func(ctx context.Context, r *http.Request, req Req) (Res, error), status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if limit != noBody {
			if err := decodeJSON(w, r, limit, &req); err != nil {
				fail(w, r, err)
				return
			}
		}
		if check != nil {
			if err := check(req); err != nil {
				fail(w, r, err)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		res, err := call(ctx, r, req)
		if err != nil {
			fail(w, r, err)
			return
		}
		if status == http.StatusNoContent {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, res)
	}
}
