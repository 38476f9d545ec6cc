package healthcheck

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// dnsChecker sends one query and tests the reply's rcode and, optionally,
// that a string appears in one of its answer records (as presentation
// format, e.g. "IN\tA\t192.0.2.1"). It queries over TCP when the service is
// TCP, otherwise over UDP, retrying over TCP when the UDP reply is
// truncated.
type dnsChecker struct {
	timeout time.Duration
	from    origin
	tcp     bool
	name    string
	qtype   uint16
	rcode   int
	answer  string
}

func newDNSChecker(p DNS, from origin, timeout time.Duration) (*dnsChecker, error) {
	typeName := strings.ToUpper(orDefault(p.QueryType, DefaultDNSType))
	qtype, ok := dns.StringToType[typeName]
	if !ok {
		return nil, fmt.Errorf("query_type %q is not a DNS type", p.QueryType)
	}
	codeName := strings.ToUpper(orDefault(p.ExpectRcode, DefaultDNSRcode))
	rcode, ok := dns.StringToRcode[codeName]
	if !ok {
		return nil, fmt.Errorf("expect_rcode %q is not a DNS rcode", p.ExpectRcode)
	}
	name := orDefault(p.QueryName, DefaultDNSName)
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("query_name %q is not a domain name", name)
	}
	return &dnsChecker{
		timeout: timeout,
		from:    from,
		tcp:     p.TCP,
		name:    dns.Fqdn(name),
		qtype:   qtype,
		rcode:   rcode,
		answer:  p.ExpectAnswer,
	}, nil
}

// Check implements Checker.
func (c *dnsChecker) Check(ctx context.Context, t Target) Result {
	start := time.Now()
	ctx, cancel := withTimeout(ctx, c.timeout)
	defer cancel()
	if t.Addr.Port() == 0 {
		return downResult(start, ReasonConfig, "no port to check: set the health check's port")
	}
	q := new(dns.Msg)
	q.SetQuestion(c.name, c.qtype)
	r, err := c.exchange(ctx, q, t.Addr, c.tcp)
	if err == nil && r.Truncated && !c.tcp {
		r, err = c.exchange(ctx, q, t.Addr, true)
	}
	if err != nil {
		return errResult(ctx, start, "query", err)
	}
	if r.Rcode != c.rcode {
		return downResult(start, ReasonUnexpectedReply,
			fmt.Sprintf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode]))
	}
	if c.answer == "" {
		return upResult(start, "rcode "+dns.RcodeToString[r.Rcode])
	}
	for _, rr := range r.Answer {
		if strings.Contains(rr.String(), c.answer) {
			return upResult(start, "answer "+rr.String())
		}
	}
	return downResult(start, ReasonUnexpectedReply,
		fmt.Sprintf("%q not in the %d answer records", c.answer, len(r.Answer)))
}

// exchange sends q to addr over TCP or UDP and returns the reply.
func (c *dnsChecker) exchange(ctx context.Context, q *dns.Msg, addr netip.AddrPort, tcp bool) (*dns.Msg, error) {
	var (
		conn net.Conn
		err  error
	)
	network := "udp"
	if tcp {
		network = "tcp"
		conn, err = dialTCP(ctx, c.from, addr)
	} else {
		conn, err = dialUDP(ctx, c.from, addr)
	}
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	stop := interruptOnDone(ctx, conn)
	defer stop()
	client := dns.Client{Net: network, Timeout: c.timeout}
	r, _, err := client.ExchangeWithConnContext(ctx, q, &dns.Conn{Conn: conn})
	if err != nil {
		return nil, err
	}
	return r, nil
}
