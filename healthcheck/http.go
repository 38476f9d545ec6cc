package healthcheck

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// userAgent identifies dsrd's checks in backends' access logs.
const userAgent = "dsrd-healthcheck/1"

// httpChecker sends one HTTP(S) request per check and tests the status code
// and, optionally, the first 64 KiB of the body.
//
// Connections are never reused: keep-alive is off, so every check opens a
// new connection the way a client's first packet would, and a server that
// stopped accepting cannot hide behind an old idle connection. Like the tcp
// check, the connection is closed with a reset to spare the director's
// TIME_WAIT table. Redirects are never followed: a 3xx is judged by itself.
type httpChecker struct {
	timeout time.Duration
	scheme  string
	method  string
	path    string
	host    string
	status  []statusRange
	body    *regexp.Regexp
	client  *http.Client
}

func newHTTPChecker(p HTTP, from origin, timeout time.Duration, opts BuildOptions) (*httpChecker, error) {
	status, err := parseStatuses(p.ExpectStatus)
	if err != nil {
		return nil, err
	}
	if _, err := ParseProxyProtocol(string(p.Proxy)); err != nil {
		return nil, err
	}
	var body *regexp.Regexp
	if p.BodyRegexp != "" {
		if body, err = regexp.Compile(p.BodyRegexp); err != nil {
			return nil, fmt.Errorf("body_regexp: %w", err)
		}
	}
	path := normalizePath(p.Path, "/")
	if _, err := url.ParseRequestURI(path); err != nil {
		return nil, fmt.Errorf("path %q: %w", p.Path, err)
	}
	scheme := "http"
	var tlsConf *tls.Config
	if p.TLS {
		scheme = "https"
		serverName := p.TLSServerName
		if serverName == "" && p.Host != "" {
			serverName = hostOnly(p.Host)
		}
		tlsConf = &tls.Config{
			ServerName: serverName,
			// Verification is off unless TLSVerify is set: reals are
			// reached by address, which their certificates rarely name
			// (the configuration's default too). With it on, the name
			// verified is TLSServerName, else the Host header's host,
			// else the address.
			InsecureSkipVerify: !p.TLSVerify, //nolint:gosec // the operator's choice
			RootCAs:            opts.RootCAs,
			MinVersion:         tls.VersionTLS12,
		}
	}
	return &httpChecker{
		timeout: timeout,
		scheme:  scheme,
		method:  orDefault(strings.ToUpper(p.Method), http.MethodGet),
		path:    path,
		host:    p.Host,
		status:  status,
		body:    body,
		client:  newHTTPClient(from, tlsConf, p.Proxy),
	}, nil
}

// newHTTPClient returns a client that opens a new connection for every
// request, from its origin, never follows redirects and ignores proxy
// settings from the environment.
func newHTTPClient(from origin, tlsConf *tls.Config, proxy ProxyProtocol) *http.Client {
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, fmt.Errorf("target %q: %w", addr, err)
			}
			conn, err := dialTCP(ctx, from, ap)
			if err != nil {
				return nil, err
			}
			_ = conn.SetLinger(0)
			if err := sendProxyHeader(conn, proxy, deadline(ctx, DefaultTimeout)); err != nil {
				_ = conn.Close()
				return nil, err
			}
			return conn, nil
		},
		TLSClientConfig:        tlsConf,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxBody,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Check implements Checker.
func (c *httpChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if t.Addr.Port() == 0 {
		return downResult(start, ReasonConfig, "no port to check: set the health check's port")
	}
	resp, err := get(ctx, c.client, c.method, c.scheme, t.Addr, c.path, c.host)
	if err != nil {
		return errResult(ctx, start, c.method+" "+c.path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if !statusIn(resp.StatusCode, c.status) {
		return downResult(start, ReasonBadStatus,
			fmt.Sprintf("status %d, want %s", resp.StatusCode, formatStatuses(c.status)))
	}
	if c.body == nil {
		return upResult(start, "status "+strconv.Itoa(resp.StatusCode))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return errResult(ctx, start, "reading body", err)
	}
	if !c.body.Match(body) {
		return downResult(start, ReasonBodyMismatch,
			fmt.Sprintf("body (%d bytes) does not match %q", len(body), c.body.String()))
	}
	return upResult(start, "status "+strconv.Itoa(resp.StatusCode)+", body matches")
}

// get sends one request to addr and returns its response, whose body the
// caller closes.
func get(ctx context.Context, client *http.Client, method, scheme string, addr netip.AddrPort, path, host string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr.String()+path, nil)
	if err != nil {
		return nil, fmt.Errorf("building request: %w", err)
	}
	if host != "" {
		req.Host = host
	}
	req.Close = true
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		// Unwrap *url.Error: its text repeats the URL, which the target
		// already says.
		var uerr interface{ Unwrap() error }
		if errors.As(err, &uerr) && uerr.Unwrap() != nil {
			return nil, uerr.Unwrap()
		}
		return nil, err
	}
	return resp, nil
}

// statusRange is an inclusive range of HTTP status codes.
type statusRange struct{ lo, hi int }

// parseStatuses parses expect_status: codes ("200") and inclusive ranges
// ("200-299"). None means DefaultHTTPStatus.
func parseStatuses(specs []string) ([]statusRange, error) {
	if len(specs) == 0 {
		specs = []string{DefaultHTTPStatus}
	}
	out := make([]statusRange, 0, len(specs))
	for _, s := range specs {
		r, err := parseStatus(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// parseStatus parses one status code or range.
func parseStatus(s string) (statusRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	a, err := parseCode(lo)
	if err != nil {
		return statusRange{}, fmt.Errorf("expect_status %q: %w", s, err)
	}
	b := a
	if isRange {
		if b, err = parseCode(hi); err != nil {
			return statusRange{}, fmt.Errorf("expect_status %q: %w", s, err)
		}
		if b < a {
			return statusRange{}, fmt.Errorf("expect_status %q: range ends before it starts", s)
		}
	}
	return statusRange{a, b}, nil
}

// parseCode parses one HTTP status code, 100 to 599.
func parseCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 {
		return 0, fmt.Errorf("%q is not a status code", s)
	}
	if n < 100 || n > 599 {
		return 0, fmt.Errorf("status code %d is out of 100-599", n)
	}
	return n, nil
}

// statusIn reports whether code is in one of the ranges.
func statusIn(code int, ranges []statusRange) bool {
	for _, r := range ranges {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

// formatStatuses writes the ranges back in configuration syntax.
func formatStatuses(ranges []statusRange) string {
	parts := make([]string, len(ranges))
	for i, r := range ranges {
		parts[i] = strconv.Itoa(r.lo)
		if r.hi != r.lo {
			parts[i] += "-" + strconv.Itoa(r.hi)
		}
	}
	return strings.Join(parts, ",")
}

// hostOnly strips a port from a Host header value.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// normalizePath returns p with a leading slash, def when empty.
func normalizePath(p, def string) string {
	if p == "" {
		return def
	}
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
