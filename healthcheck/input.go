package healthcheck

import (
	"net/netip"

	"github.com/dsrd/dsrd/ipvs"
)

// This file holds the package's input: what to check and how (Spec and its
// Probe), and the services and reals the checks and the weight policy are
// about. They are the subset of dsrd's configuration that health checking
// needs, in this package's own terms; the caller translates its
// configuration into them.

// Type names a kind of check, as status output and metrics show it.
type Type string

// The check types.
const (
	TypeTCP   Type = "tcp"
	TypeHTTP  Type = "http"
	TypeHTTPS Type = "https"
	TypeUDP   Type = "udp"
	TypeDNS   Type = "dns"
	TypeICMP  Type = "icmp"
	TypeExec  Type = "exec"
	TypeAgent Type = "agent"
)

// Spec defines one health check: how often and how patiently it runs
// (Params), what it probes and what it sends and expects (Probe).
type Spec struct {
	// Params are the scheduling parameters; zero fields take the fallback
	// defaults (see ParamsFrom).
	Params
	// Address and Port, when set, replace the real's address and the
	// service port as the probed address (see TargetFor).
	Address netip.Addr
	Port    uint16
	// Source is the local address checks are sent from; unset lets the
	// kernel choose. Ignored by exec checks.
	Source netip.Addr
	// Mark, when not 0, is set on every socket of the check (SO_MARK):
	// through an IPVS fwmark service whose only destination is the real,
	// a check addressed to the VIP reaches that real exactly as client
	// traffic does. Not for icmp and exec checks.
	Mark uint32
	// SourceToward, when set and Source is not, makes the source address
	// the one the kernel would use to reach this address (the real):
	// where the check goes is then not where its replies come from. Not
	// for icmp and exec checks.
	SourceToward netip.Addr
	// Probe is the check's kind and its own settings.
	Probe Probe
}

// Type returns the type of the spec's probe; empty without a probe.
func (s *Spec) Type() Type {
	if s == nil || s.Probe == nil {
		return ""
	}
	return s.Probe.Type()
}

// Probe is the kind of a check and its settings: one of TCP, HTTP, UDP,
// DNS, ICMP, Exec and Agent.
type Probe interface {
	// Type names the kind of check.
	Type() Type
	// probe keeps the set of probes to this package's, which NewChecker
	// knows how to build.
	probe()
}

// TCP connects to the target and, when Send or Expect is set, sends Send
// and expects Expect in the reply.
type TCP struct {
	// Send is written once connected; empty sends nothing.
	Send string
	// Expect must appear in the reply; empty expects nothing.
	Expect string
	// Proxy sends a PROXY protocol header first.
	Proxy ProxyProtocol
}

// HTTP sends one request over HTTP, or HTTPS with TLS, and checks the
// status and, optionally, the body.
type HTTP struct {
	// TLS makes it an https check.
	TLS bool
	// Method is the request method; GET when empty.
	Method string
	// Path is the request's path and query; "/" when empty.
	Path string
	// Host is the Host header; the target address when empty.
	Host string
	// ExpectStatus are the accepted statuses, each a code ("200") or a
	// range ("200-399"); DefaultHTTPStatus when empty.
	ExpectStatus []string
	// BodyRegexp, when set, must match the body's first 64 KiB.
	BodyRegexp string
	// TLSServerName is the name sent in SNI and verified; Host's host
	// when empty.
	TLSServerName string
	// TLSVerify verifies the server's certificate (against
	// BuildOptions.RootCAs); off, any certificate is accepted.
	TLSVerify bool
	// Proxy sends a PROXY protocol header first, before TLS.
	Proxy ProxyProtocol
}

// UDP sends one datagram and expects a reply.
type UDP struct {
	// Send is the datagram's payload.
	Send string
	// Expect must appear in the reply; empty accepts any reply.
	Expect string
	// NoReplyIsUp counts silence without an ICMP port unreachable within
	// the timeout as up (ReasonNoReply).
	NoReplyIsUp bool
}

// DNS sends one query and checks the reply's rcode and, optionally, its
// answer.
type DNS struct {
	// QueryName is the name asked; DefaultDNSName when empty.
	QueryName string
	// QueryType is the type asked, e.g. "A"; DefaultDNSType when empty.
	QueryType string
	// ExpectRcode is the expected rcode, e.g. "NOERROR"; DefaultDNSRcode
	// when empty.
	ExpectRcode string
	// ExpectAnswer, when set, must appear in an answer record.
	ExpectAnswer string
	// TCP queries over TCP (for a TCP service); otherwise the query goes
	// over UDP and is retried over TCP when truncated.
	TCP bool
}

// ICMP sends one echo request and expects the reply.
type ICMP struct{}

// Exec runs a program: exit status 0 is up.
type Exec struct {
	// Command is the program (an absolute path) and its arguments, run
	// without a shell.
	Command []string
}

// Agent asks a realserver agent's status endpoint (see the package
// documentation). Its port defaults to DefaultAgentPort.
type Agent struct {
	// Path is the status path; DefaultAgentPath when empty.
	Path string
	// Host is the Host header; the target address when empty.
	Host string
}

// Type returns TypeTCP.
func (TCP) Type() Type { return TypeTCP }

// Type returns TypeHTTPS with TLS, TypeHTTP without.
func (h HTTP) Type() Type {
	if h.TLS {
		return TypeHTTPS
	}
	return TypeHTTP
}

// Type returns TypeUDP.
func (UDP) Type() Type { return TypeUDP }

// Type returns TypeDNS.
func (DNS) Type() Type { return TypeDNS }

// Type returns TypeICMP.
func (ICMP) Type() Type { return TypeICMP }

// Type returns TypeExec.
func (Exec) Type() Type { return TypeExec }

// Type returns TypeAgent.
func (Agent) Type() Type { return TypeAgent }

func (TCP) probe()   {}
func (HTTP) probe()  {}
func (UDP) probe()   {}
func (DNS) probe()   {}
func (ICMP) probe()  {}
func (Exec) probe()  {}
func (Agent) probe() {}

// DownPolicy says what the policy does with a real that fails its checks.
type DownPolicy uint8

// The down policies.
const (
	// DownWeightZero keeps the destination with weight 0: no new
	// connections, established ones continue. It is the zero value.
	DownWeightZero DownPolicy = iota
	// DownRemove takes the destination out.
	DownRemove
)

// Service is what the checks and the policy need of one virtual service.
type Service struct {
	// Name names the service in targets, logs and metrics.
	Name string
	// Key is the service's identity, in check keys.
	Key ipvs.ServiceKey
	// Port is the service port: the reals' port unless they name one,
	// and the sorry server's.
	Port uint16
	// Quorum is the least number of healthy reals for the service to be
	// up; below 1 counts as 1.
	Quorum int
	// OnDown is what a real failing its checks becomes.
	OnDown DownPolicy
	// SorryServer, when set, serves alone while no real is healthy.
	SorryServer netip.Addr
	// Reals are the real servers, in the order IPVS gets them.
	Reals []Real
}

// Real is what the checks and the policy need of one real server.
type Real struct {
	// Address is the real's address.
	Address netip.Addr
	// Port is the real's port; the service port when zero.
	Port uint16
	// Weight is the IPVS weight while healthy, clamped to 0..65535;
	// DefaultWeight when nil.
	Weight *int
	// UpperThreshold and LowerThreshold are IPVS connection thresholds,
	// passed through to the destination.
	UpperThreshold, LowerThreshold uint32
	// Check is the real's health check: nil for none (the real is then
	// always up). Reals pointing to the same Spec share one checker.
	Check *Spec
}
