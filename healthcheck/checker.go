package healthcheck

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults, used when a field of a Spec or Params is zero. They are also
// the configuration's defaults (internal/config defines its own as these),
// so a zero value here means what an absent key means there.
const (
	// DefaultInterval spaces two checks of one real.
	DefaultInterval = 2 * time.Second
	// DefaultTimeout bounds one check.
	DefaultTimeout = 1 * time.Second
	// DefaultRise is how many consecutive successes mark a real up.
	DefaultRise = 2
	// DefaultFall is how many consecutive failures mark a real down.
	DefaultFall = 3
	// DefaultAgentPort is the port an agent check asks: the realserver
	// agent's status port (realserver.DefaultStatusPort, which
	// internal/config's tests hold equal: this package does not import
	// the agent's).
	DefaultAgentPort = 9797
	// DefaultAgentPath is the realserver agent's status path
	// (realserver.StatusPath, held equal the same way).
	DefaultAgentPath = "/status"
	// DefaultHTTPStatus is the accepted status range of http and https
	// checks: any 2xx or 3xx (redirects are not followed).
	DefaultHTTPStatus = "200-399"
	// DefaultDNSName is the query name of a dns check without one.
	DefaultDNSName = "."
	// DefaultDNSType is the query type of a dns check.
	DefaultDNSType = "A"
	// DefaultDNSRcode is the rcode a dns check expects.
	DefaultDNSRcode = "NOERROR"

	// maxBody bounds how much of an HTTP body or TCP/UDP reply is read.
	maxBody = 64 << 10
	// maxMessage bounds the message of a Result.
	maxMessage = 256
)

// Checker probes one target once. Check returns within the checker's own
// timeout or when ctx ends, whichever comes first, and reports why a target
// is down. Implementations are safe for concurrent use.
type Checker interface {
	Check(ctx context.Context, t Target) Result
}

// CheckerFunc adapts a function to the Checker interface.
type CheckerFunc func(ctx context.Context, t Target) Result

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, t Target) Result { return f(ctx, t) }

// Target is what one check probes.
type Target struct {
	// Service is the name of the service the real belongs to.
	Service string
	// Real is the real server's address and the service port.
	Real netip.AddrPort
	// Addr is the address and port probed: Real with the health check's
	// Address and Port overrides applied (and the agent port for agent
	// checks). The port is ignored by icmp and exec checks.
	Addr netip.AddrPort
}

// String formats the target for logs.
func (t Target) String() string {
	return t.Service + "/" + t.Addr.String()
}

// Reason says why a check came out the way it did.
type Reason uint8

// The reasons of a Result. ReasonOK is the only reason of an up result,
// except ReasonNoReply for a udp check with no_reply_is_up.
const (
	// ReasonOK is a successful check.
	ReasonOK Reason = iota
	// ReasonTimeout is a check that did not finish within its timeout.
	ReasonTimeout
	// ReasonRefused is a connection refused (TCP RST, ICMP port unreachable).
	ReasonRefused
	// ReasonUnreachable is a network or host unreachable.
	ReasonUnreachable
	// ReasonConnection is another connection failure: reset, closed early.
	ReasonConnection
	// ReasonBadStatus is an HTTP status outside the expected ones.
	ReasonBadStatus
	// ReasonBodyMismatch is an HTTP body that does not match body_regexp.
	ReasonBodyMismatch
	// ReasonTLS is a failed TLS handshake or certificate verification.
	ReasonTLS
	// ReasonUnexpectedReply is a reply without the expected content: tcp or
	// udp expect, dns rcode or answer, a malformed reply.
	ReasonUnexpectedReply
	// ReasonExitCode is an exec check that exited non-zero or was killed by
	// a signal it did not get from the checker.
	ReasonExitCode
	// ReasonExec is an exec check that could not be started.
	ReasonExec
	// ReasonDraining is a realserver agent that asks to be drained.
	ReasonDraining
	// ReasonAgentDown is a realserver agent that reports itself down.
	ReasonAgentDown
	// ReasonNoReply is an up udp check with no_reply_is_up that got no
	// reply and no ICMP port unreachable.
	ReasonNoReply
	// ReasonCanceled is a check whose context was canceled before it ended.
	ReasonCanceled
	// ReasonConfig is a check that cannot run as configured.
	ReasonConfig
	// ReasonError is any other failure (socket, permission, ...).
	ReasonError
)

// String returns the reason's stable name, as used in logs and status output.
func (r Reason) String() string {
	switch r {
	case ReasonOK:
		return "ok"
	case ReasonTimeout:
		return "timeout"
	case ReasonRefused:
		return "refused"
	case ReasonUnreachable:
		return "unreachable"
	case ReasonConnection:
		return "connection error"
	case ReasonBadStatus:
		return "bad status"
	case ReasonBodyMismatch:
		return "body mismatch"
	case ReasonTLS:
		return "tls error"
	case ReasonUnexpectedReply:
		return "unexpected reply"
	case ReasonExitCode:
		return "exit code"
	case ReasonExec:
		return "exec error"
	case ReasonDraining:
		return "draining"
	case ReasonAgentDown:
		return "agent down"
	case ReasonNoReply:
		return "no reply"
	case ReasonCanceled:
		return "canceled"
	case ReasonConfig:
		return "config error"
	case ReasonError:
		return "error"
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText encodes the reason as its name.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Result is the outcome of one check.
type Result struct {
	// Up reports whether the target passed.
	Up bool
	// Reason says why; ReasonOK when up (ReasonNoReply for udp no_reply_is_up).
	Reason Reason
	// Message is a short human-readable detail, at most 256 bytes.
	Message string
	// Latency is how long the check took.
	Latency time.Duration
}

// String formats the result for logs.
func (r Result) String() string {
	s := "down"
	if r.Up {
		s = "up"
	}
	s += " (" + r.Reason.String()
	if r.Message != "" {
		s += ": " + r.Message
	}
	return s + ", " + r.Latency.Round(time.Microsecond).String() + ")"
}

// upResult is a passed check started at start.
func upResult(start time.Time, msg string) Result {
	return Result{Up: true, Reason: ReasonOK, Message: clip(msg), Latency: time.Since(start)}
}

// downResult is a failed check started at start.
func downResult(start time.Time, reason Reason, msg string) Result {
	return Result{Reason: reason, Message: clip(msg), Latency: time.Since(start)}
}

// errResult is a check that failed with err: the reason is classified from
// err and from ctx (a deadline that passed is a timeout, whatever error the
// interrupted operation returned).
func errResult(ctx context.Context, start time.Time, what string, err error) Result {
	return downResult(start, classify(ctx, err), what+": "+errText(err))
}

// errText returns err's text without the addresses a *net.OpError repeats
// (the target is known) and the system call's name.
func errText(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		err = opErr.Err
	}
	var scErr *os.SyscallError
	if errors.As(err, &scErr) && scErr.Err != nil {
		err = scErr.Err
	}
	return err.Error()
}

// classify maps an error to a Reason.
func classify(ctx context.Context, err error) Reason {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return ReasonTimeout
		}
		return ReasonCanceled
	}
	var (
		certErr    *tls.CertificateVerificationError
		recordErr  tls.RecordHeaderError
		alertErr   tls.AlertError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		netErr     net.Error
		confErr    configError
	)
	switch {
	case errors.As(err, &confErr):
		return ReasonConfig
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonTimeout
	case errors.Is(err, context.Canceled):
		return ReasonCanceled
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN),
		errors.Is(err, syscall.EADDRNOTAVAIL):
		return ReasonUnreachable
	case errors.As(err, &certErr), errors.As(err, &recordErr), errors.As(err, &alertErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr),
		// net/http's text for a tls.RecordHeaderError it swallows.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return ReasonTLS
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, syscall.ECONNABORTED), errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return ReasonConnection
	case errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	}
	return ReasonError
}

// clip bounds a message to maxMessage bytes on one line.
func clip(s string) string {
	s = strings.ReplaceAll(strings.TrimSpace(s), "\t", " ")
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		s = s[:i] + " ..."
	}
	if len(s) > maxMessage {
		s = s[:maxMessage-4] + " ..."
	}
	return s
}

// BuildOptions carries what a checker needs beyond its Spec.
type BuildOptions struct {
	// RootCAs verifies https servers when TLSVerify is on; nil uses the
	// system's roots.
	RootCAs *x509.CertPool
}

// NewChecker builds the checker of spec. Zero fields of spec take the
// defaults of this package. It returns an error for a check that cannot
// run: no probe, an invalid status range, regular expression, DNS type or
// rcode, an empty exec command.
func NewChecker(spec Spec, opts BuildOptions) (Checker, error) {
	timeout := spec.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	from := originOf(spec)
	if spec.Mark != 0 || spec.SourceToward.IsValid() {
		switch spec.Probe.(type) {
		case ICMP, Exec:
			return nil, fmt.Errorf("a %s check cannot be sent with a mark or toward a real: it has no port for IPVS to forward", spec.Type())
		}
	}
	switch p := spec.Probe.(type) {
	case TCP:
		if _, err := ParseProxyProtocol(string(p.Proxy)); err != nil {
			return nil, err
		}
		return newTCPChecker(p, from, timeout), nil
	case HTTP:
		return newHTTPChecker(p, from, timeout, opts)
	case UDP:
		return newUDPChecker(p, from, timeout), nil
	case DNS:
		return newDNSChecker(p, from, timeout)
	case ICMP:
		return newICMPChecker(spec.Source, timeout), nil
	case Exec:
		return newExecChecker(p, timeout)
	case Agent:
		return newAgentChecker(p, from, timeout)
	case nil:
		return nil, errors.New("no probe: the check has no type")
	}
	return nil, fmt.Errorf("unknown probe %T", spec.Probe)
}

// withTimeout bounds ctx by the checker's timeout. When ctx already ends
// by then (the scheduler bounds every run by the same timeout) it is used
// as is, sparing a timer per check.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// deadline returns ctx's deadline, or now+fallback when it has none.
func deadline(ctx context.Context, fallback time.Duration) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(fallback)
}

// interruptOnDone makes blocked I/O on c return as soon as ctx ends, by
// moving its deadline to the past. The returned stop must be called when
// the I/O is over.
func interruptOnDone(ctx context.Context, c interface{ SetDeadline(time.Time) error }) (stop func() bool) {
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}

// localIP returns the local address a check to target is sent from: nil
// when src is unset, an error when src is of another address family than
// target (that check could never be sent).
func localIP(src, target netip.Addr) (net.IP, error) {
	if !src.IsValid() {
		return nil, nil
	}
	if src.Unmap().Is4() != target.Unmap().Is4() {
		return nil, configError{fmt.Errorf("source %s and target %s are of different address families", src, target)}
	}
	return net.IP(src.Unmap().AsSlice()), nil
}

// configError is an error of the check's configuration, found when it runs.
type configError struct{ error }

// Unwrap returns the underlying error.
func (e configError) Unwrap() error { return e.error }
