package config

import (
	"time"

	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"github.com/miekg/dns"
)

// checkTypes lists the health checkers in the order messages name them.
func checkTypes() []string {
	return []string{
		string(CheckTCP), string(CheckHTTP), string(CheckHTTPS), string(CheckUDP), string(CheckDNS),
		string(CheckICMP), string(CheckExec), string(CheckAgent), string(CheckNone),
	}
}

// checkField is a type-specific key of a health check: the checkers it
// applies to and whether it is set.
type checkField struct {
	name  string
	types []CheckType
	set   bool
}

// checkFields lists the keys of c that apply only to some check types.
func checkFields(c *HealthCheck) []checkField {
	target := []CheckType{CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckICMP, CheckAgent}
	ported := []CheckType{CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckAgent}
	web := []CheckType{CheckHTTP, CheckHTTPS, CheckAgent}
	stream := []CheckType{CheckTCP, CheckUDP}
	return []checkField{
		{"address", target, c.Address.IsValid()},
		{"port", ported, c.Port != 0},
		{"source", target, c.Source.IsValid()},
		{"send", stream, c.Send != ""},
		{"expect", stream, c.Expect != ""},
		{"method", web, c.Method != ""},
		{"path", web, c.Path != ""},
		{"host", web, c.Host != ""},
		{"expect_status", web, len(c.ExpectStatus) > 0},
		{"body_regexp", web, c.BodyRegexp != ""},
		{"tls_server_name", []CheckType{CheckHTTPS}, c.TLSServer != ""},
		{"tls_verify", []CheckType{CheckHTTPS}, c.TLSVerify != nil},
		{"no_reply_is_up", []CheckType{CheckUDP}, c.NoReplyIsUp},
		{"query_name", []CheckType{CheckDNS}, c.QueryName != ""},
		{"query_type", []CheckType{CheckDNS}, c.QueryType != ""},
		{"expect_rcode", []CheckType{CheckDNS}, c.ExpectCode != ""},
		{"expect_answer", []CheckType{CheckDNS}, c.ExpectAnswer != ""},
		{"command", []CheckType{CheckExec}, len(c.Command) > 0},
		{"proxy_protocol", []CheckType{CheckTCP, CheckHTTP, CheckHTTPS}, c.ProxyProtocol != ""},
		{"through_vip", []CheckType{CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS}, c.ThroughVIP},
	}
}

// check validates a health check written at path of the service s written
// at svcPath.
// MinCheckInterval is the shortest health check interval: checks more
// often than ten times a second load the reals and the director without
// detecting a failure meaningfully sooner than rise/fall allow.
const MinCheckInterval = 100 * time.Millisecond

func (v *validator) check(c *HealthCheck, s *Service, svcPath, path string) {
	tp := joinPath(path, "type")
	if ok, hint := oneOf(string(c.Type), checkTypes()...); !ok {
		v.errorf(tp, "unknown check type %q%s", c.Type, hint)
		return
	}
	if c.Type == CheckNone {
		common := []checkField{
			{"interval", nil, c.Interval != 0},
			{"timeout", nil, c.Timeout != 0},
			{"rise", nil, c.Rise != 0},
			{"fall", nil, c.Fall != 0},
			{"initial", nil, c.Initial != ""},
		}
		for _, f := range append(common, checkFields(c)...) {
			if f.set {
				v.errorf(joinPath(path, f.name), "does not apply: type none turns checking off")
			}
		}
		return
	}

	if c.Interval.D() < MinCheckInterval {
		v.errorf(joinPath(path, "interval"), "%s is too short: at least %s", c.Interval, MinCheckInterval)
	}
	if c.Timeout <= 0 {
		v.errorf(joinPath(path, "timeout"), "must be more than 0s")
	} else if c.Interval > 0 && c.Timeout > c.Interval {
		v.errorf(joinPath(path, "timeout"), "%s exceeds interval %s: a check must end before the next starts", c.Timeout, c.Interval)
	}
	if c.Rise < 1 {
		v.errorf(joinPath(path, "rise"), "%d: must be at least 1", c.Rise)
	}
	if c.Fall < 1 {
		v.errorf(joinPath(path, "fall"), "%d: must be at least 1", c.Fall)
	}
	if ok, hint := oneOf(c.Initial, "down", "up"); !ok {
		v.errorf(joinPath(path, "initial"), "unknown state %q%s", c.Initial, hint)
	}
	if c.ProxyProtocol != "" {
		if ok, hint := oneOf(c.ProxyProtocol, "v1", "v2"); !ok {
			v.errorf(joinPath(path, "proxy_protocol"), "unknown PROXY protocol version %q%s", c.ProxyProtocol, hint)
		}
	}

	for _, f := range checkFields(c) {
		if f.set && !hasType(f.types, c.Type) {
			v.errorf(joinPath(path, f.name), "does not apply to a%s %s check", article(c.Type), c.Type)
		}
	}

	if hasType([]CheckType{CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckAgent}, c.Type) && c.Port == 0 {
		switch {
		case v.pos.isSet(joinPath(path, "port")):
			v.errorf(joinPath(path, "port"), "0 is not a port to check: want 1-65535")
		case s.FWMark != 0 || (s.Port == 0 && s.Persistence.Timeout != 0):
			v.errorf(joinPath(path, "port"), "required: the service has no single port to check")
		}
		// Otherwise the service's port is missing or did not decode,
		// which is reported there.
	}
	fam := s.Family()
	if c.ThroughVIP && c.Address.IsValid() {
		v.errorf(joinPath(path, "address"), "does not apply with through_vip: the check goes to the VIP %s", s.VIP)
	}
	if c.ThroughVIP && !s.VIP.IsValid() && !v.pos.isBad(joinPath(svcPath, "vip")) {
		v.errorf(joinPath(path, "through_vip"), "needs the service's vip: the check is sent to it")
	}
	if c.Address.IsValid() {
		ap := joinPath(path, "address")
		if v.unicast(ap, c.Address) {
			fam = family(c.Address)
		}
	}
	if c.Source.IsValid() {
		sp := joinPath(path, "source")
		if v.unicast(sp, c.Source) && fam != 0 && family(c.Source) != fam {
			v.errorf(sp, "%s is IPv%d but the checked address is IPv%d", c.Source, family(c.Source), fam)
		}
	}

	switch c.Type {
	case CheckHTTP, CheckHTTPS, CheckAgent:
		v.httpCheck(c, path)
	case CheckDNS:
		v.dnsCheck(c, path)
	case CheckExec:
		cp := joinPath(path, "command")
		switch {
		case len(c.Command) == 0:
			v.errorf(cp, "required: the program to run and its arguments")
		case c.Command[0] == "":
			v.errorf(indexPath(cp, 0), "empty program name")
		}
	}
}

func (v *validator) httpCheck(c *HealthCheck, path string) {
	if ok, hint := oneOf(c.Method, "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"); !ok {
		v.errorf(joinPath(path, "method"), "unknown HTTP method %q%s", c.Method, hint)
	}
	pp := joinPath(path, "path")
	switch {
	case !strings.HasPrefix(c.Path, "/"):
		v.errorf(pp, "%q does not start with /", c.Path)
	case strings.IndexFunc(c.Path, notPrintable) >= 0:
		v.errorf(pp, "%q contains white space or control characters", c.Path)
	}
	if strings.IndexFunc(c.Host, notPrintable) >= 0 {
		v.errorf(joinPath(path, "host"), "%q contains white space or control characters", c.Host)
	}
	if strings.IndexFunc(c.TLSServer, notPrintable) >= 0 {
		v.errorf(joinPath(path, "tls_server_name"), "%q contains white space or control characters", c.TLSServer)
	}
	if len(c.ExpectStatus) == 0 {
		v.errorf(joinPath(path, "expect_status"), "empty: list the statuses that mean up, e.g. [200-399]")
	}
	for i, e := range c.ExpectStatus {
		if err := checkStatusRange(e); err != nil {
			v.errorf(indexPath(joinPath(path, "expect_status"), i), "%v", err)
		}
	}
	if c.BodyRegexp != "" {
		if _, err := regexp.Compile(c.BodyRegexp); err != nil {
			v.errorf(joinPath(path, "body_regexp"), "%v", err)
		}
	}
}

func (v *validator) dnsCheck(c *HealthCheck, path string) {
	np := joinPath(path, "query_name")
	if c.QueryName == "" {
		v.errorf(np, "required: the name to query, e.g. example.com")
	} else if _, ok := dns.IsDomainName(c.QueryName); !ok {
		v.errorf(np, "%q is not a domain name", c.QueryName)
	}
	if _, ok := dns.StringToType[c.QueryType]; !ok || c.QueryType == "None" || c.QueryType == "Reserved" {
		v.errorf(joinPath(path, "query_type"), "unknown DNS type %q%s", c.QueryType, nameHint(c.QueryType, "A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT"))
	}
	if _, ok := dns.StringToRcode[c.ExpectCode]; !ok {
		v.errorf(joinPath(path, "expect_rcode"), "unknown DNS rcode %q%s", c.ExpectCode, nameHint(c.ExpectCode, "NOERROR, NXDOMAIN, SERVFAIL, REFUSED"))
	}
}

// nameHint suggests the upper-case spelling of a DNS name written in
// another case, or lists common ones.
func nameHint(s, common string) string {
	up := strings.ToUpper(s)
	if _, ok := dns.StringToType[up]; ok && up != s {
		return fmt.Sprintf(" (did you mean %q?)", up)
	}
	if _, ok := dns.StringToRcode[up]; ok && up != s {
		return fmt.Sprintf(" (did you mean %q?)", up)
	}
	return ": want e.g. " + common
}

// checkStatusRange checks an expect_status entry: 200 or 200-299, within
// 100-599.
func checkStatusRange(s string) error {
	bad := fmt.Errorf("%q is not a status code or range such as 200 or 200-299", s)
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return bad
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
			return bad
		}
	}
	switch {
	case a < 100 || a > 599 || b < 100 || b > 599:
		return fmt.Errorf("%q is outside the HTTP status codes 100-599", s)
	case a > b:
		return fmt.Errorf("%q is an empty range", s)
	}
	return nil
}

func hasType(types []CheckType, t CheckType) bool {
	for _, x := range types {
		if x == t {
			return true
		}
	}
	return false
}

// article returns "n" for check types read with "an" (an http check).
func article(t CheckType) string {
	switch t {
	case CheckHTTP, CheckHTTPS, CheckICMP, CheckExec, CheckAgent:
		return "n"
	}
	return ""
}

// notPrintable matches white space and control characters.
func notPrintable(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }
