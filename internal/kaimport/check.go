package kaimport

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// The timing mapping, keepalived -> dsrd (docs/migrating-from-keepalived.md):
//
//	delay_loop          -> interval (keepalived's default 60s is written out)
//	connect_timeout     -> timeout, at most interval (dsrd's rule)
//	retry, nb_get_retry -> fall = retry + 1: keepalived marks a real down
//	                       after the failed check and its retries
//	delay_before_retry  -> none: dsrd's retries are the next checks, spaced
//	                       by interval (reported)
//	alpha               -> initial: down (without it keepalived starts a
//	                       real up: initial: up)
//	                       rise is 1: keepalived puts a real back after one
//	                       good check
var checkTypes = map[string]string{
	"TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https", "MISC_CHECK": "exec",
	"DNS_CHECK": "dns", "UDP_CHECK": "udp", "PING_CHECK": "icmp", "SMTP_CHECK": "tcp",
}

// minInterval is dsrd's shortest check interval.
const minInterval = 100 * time.Millisecond

func (t *tr) check(r *Node, rk vsKey, hasPort bool, k vsKey, tim timing, checkers []*Node) *yaml.Node {
	if len(checkers) == 0 {
		return mapping(kv{key: "type", value: str("none"), comment: "keepalived checked this real with nothing: always up"})
	}
	for _, extra := range checkers[1:] {
		t.issue(extra.Pos, Dropped, extra.Name, "dsrd checks a real with one check; the first, at %s, is kept", checkers[0].Pos)
	}
	c := checkers[0]
	typ, ok := checkTypes[c.Name]
	if !ok {
		t.issue(c.Pos, Dropped, c.Name, "no equivalent check: the real is always up")
		return mapping(kv{key: "type", value: str("none"), comment: c.Name + " has no dsrd equivalent: always up"})
	}
	switch c.Name {
	case "DNS_CHECK":
		if !tim.retrySet {
			tim.retry = 3
		}
	case "MISC_CHECK":
		if !tim.retrySet {
			tim.retry = 0
		}
	case "SMTP_CHECK":
		t.issue(c.Pos, Changed, c.Name, "checked as tcp, expecting the 220 greeting; no HELO is sent")
	}
	m := mapping(kv{key: "type", value: str(typ)})
	var rest []*Node
	for _, o := range c.Children {
		if !t.timingKey(o, &tim) {
			rest = append(rest, o)
		}
	}
	interval, ok := seconds(tim.delayLoop)
	if d, _ := time.ParseDuration(interval); !ok || d < minInterval {
		t.issue(c.Pos, Changed, "delay_loop", "%q: dsrd's interval is at least 100ms", tim.delayLoop)
		interval = "100ms"
	}
	add(m, "interval", str(interval), "delay_loop")
	if typ == "exec" {
		// MISC_CHECK has no connect_timeout: misc_timeout, else delay_loop.
		tim.connectTimeout = tim.delayLoop
	}
	timeout, ok := seconds(tim.connectTimeout)
	di, _ := time.ParseDuration(interval)
	if dt, _ := time.ParseDuration(timeout); !ok || dt <= 0 || dt > di {
		t.issue(c.Pos, Changed, "connect_timeout", "%s: dsrd's timeout is more than 0 and at most the interval (%s): %s used", tim.connectTimeout, interval, interval)
		timeout = interval
	}
	add(m, "timeout", str(timeout), map[bool]string{true: "keepalived's misc_timeout default: delay_loop", false: "connect_timeout"}[typ == "exec"])
	add(m, "rise", num(1), "keepalived puts a real back after one good check")
	add(m, "fall", num(int64(tim.retry)+1), "retry "+strconv.Itoa(tim.retry)+" + 1")
	initial := "up"
	if tim.alpha {
		initial = "down"
	}
	add(m, "initial", str(initial), map[bool]string{true: "alpha", false: "no alpha: keepalived starts a real up"}[tim.alpha])
	// The port: a fwmark service has none, so the real's port is the
	// check's (keepalived's default).
	needsPort := typ == "tcp" || typ == "http" || typ == "https" || typ == "udp" || typ == "dns"
	port := ""
	if k.fwmark != 0 && needsPort && hasPort {
		port = strconv.Itoa(int(rk.port))
	}
	vhost := tim.virtualhost
	var urls []*Node
	sni, sniName := false, ""
	var payload, reply string
	requireReply := false
	for _, o := range rest {
		arg := ""
		if len(o.Args) > 0 {
			arg = o.Args[0]
		}
		switch {
		case o.Name == "connect_ip":
			if a, err := netip.ParseAddr(arg); err == nil && typ != "exec" {
				add(m, "address", str(a.String()), "connect_ip")
			} else {
				t.issue(o.Pos, Dropped, o.Name, "%q is not an address", arg)
			}
		case o.Name == "connect_port":
			if p, err := strconv.ParseUint(arg, 10, 16); err == nil && p > 0 && needsPort {
				port = strconv.FormatUint(p, 10)
			} else {
				t.issue(o.Pos, Dropped, o.Name, "%q: not a port, or the check takes none", arg)
			}
		case o.Name == "bindto":
			if a, err := netip.ParseAddr(arg); err == nil && typ != "exec" {
				add(m, "source", str(a.String()), "bindto")
			} else {
				t.issue(o.Pos, Dropped, o.Name, "%q is not an address", arg)
			}
		case o.Name == "url" && (typ == "http" || typ == "https"):
			urls = append(urls, o)
		case o.Name == "virtualhost":
			vhost = arg
		case o.Name == "enable_sni":
			sni = true
		case o.Name == "sni_name":
			sni, sniName = true, arg
		case o.Name == "misc_path" && typ == "exec":
			argv, ok := splitScript(arg)
			if !ok || len(argv) == 0 {
				t.issue(o.Pos, Dropped, o.Name, "%q cannot be split into a program and its arguments", arg)
				return mapping(kv{key: "type", value: str("none"), comment: "MISC_CHECK without a usable misc_path: always up"})
			}
			add(m, "command", strs(argv), "misc_path, run without a shell")
		case o.Name == "misc_timeout" && typ == "exec":
			if d, ok := seconds(arg); ok {
				if dt, _ := time.ParseDuration(d); dt > 0 && dt <= di {
					set(m, "timeout", str(d), "misc_timeout")
					continue
				}
			}
			t.issue(o.Pos, Changed, o.Name, "%q: dsrd's timeout is at most the interval: %s used", arg, get(m, "timeout").Value)
		case o.Name == "misc_dynamic":
			t.issue(o.Pos, Dropped, o.Name, "no equivalent: an exec check's exit status does not set the weight")
		case o.Name == "user":
			t.issue(o.Pos, Changed, o.Name, "dsrd runs exec checks as root")
		case o.Name == "type" && typ == "dns":
			add(m, "query_type", str(strings.ToUpper(arg)), "")
		case o.Name == "name" && typ == "dns":
			add(m, "query_name", str(arg), "")
		case o.Name == "payload" && typ == "udp":
			payload = strings.Join(o.Args, "")
		case o.Name == "require_reply" && typ == "udp":
			requireReply, reply = true, strings.Join(o.Args, "")
		case o.Name == "helo_name" && c.Name == "SMTP_CHECK":
		case o.Name == "fast_recovery":
			t.issue(o.Pos, Replaced, o.Name, "dsrd's rise is 1: a real comes back after one good check")
		default:
			t.issue(o.Pos, Dropped, o.Name, "no dsrd equivalent in a %s check", typ)
		}
	}
	if port != "" {
		n, _ := strconv.Atoi(port)
		add(m, "port", num(int64(n)), "connect_port, or the real's port (a fwmark service has none)")
	}
	switch typ {
	case "dns":
		if get(m, "query_name") == nil {
			add(m, "query_name", str("."), "keepalived's default")
		}
		if get(m, "query_type") == nil {
			add(m, "query_type", str("SOA"), "keepalived's default")
		}
	case "udp":
		if payload != "" {
			if s, ok := printable(payload); ok {
				add(m, "send", str(s), "payload")
			} else {
				t.issue(c.Pos, Changed, "payload", "not printable text: dsrd sends its own probe")
			}
		}
		if !requireReply {
			add(m, "no_reply_is_up", boolean(true), "no require_reply: silence (no ICMP unreachable) is up")
		} else if reply != "" {
			if s, ok := printable(reply); ok {
				add(m, "expect", str(s), "require_reply")
			} else {
				t.issue(c.Pos, Changed, "require_reply", "not printable text: any reply is up")
			}
		}
	case "http", "https":
		t.httpURL(c, m, urls, vhost)
		if typ == "https" && (sni || sniName != "") {
			name := sniName
			if name == "" {
				name = vhost
			}
			if name != "" {
				add(m, "tls_server_name", str(name), "enable_sni / sni_name")
			}
		}
	case "tcp":
		if c.Name == "SMTP_CHECK" {
			add(m, "expect", str("220"), "SMTP_CHECK: the server's greeting")
		}
	}
	return m
}

// set replaces or adds key.
func set(m *yaml.Node, key string, v *yaml.Node, comment string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			m.Content[i].HeadComment = comment
			return
		}
	}
	add(m, key, v, comment)
}

func (t *tr) httpURL(c *Node, m *yaml.Node, urls []*Node, vhost string) {
	if len(urls) == 0 {
		add(m, "expect_status", strs([]string{"200-299"}), "keepalived's default")
		if vhost != "" {
			add(m, "host", str(vhost), "virtualhost")
		}
		return
	}
	for _, u := range urls[1:] {
		t.issue(u.Pos, Dropped, "url", "dsrd checks one path; the first url, at %s, is kept", urls[0].Pos)
	}
	status := []string{}
	for _, o := range urls[0].Children {
		arg := ""
		if len(o.Args) > 0 {
			arg = o.Args[0]
		}
		switch o.Name {
		case "path":
			if strings.HasPrefix(arg, "/") && !strings.ContainsFunc(arg, unicode.IsSpace) {
				add(m, "path", str(arg), "")
			} else {
				t.issue(o.Pos, Dropped, o.Name, "%q: dsrd's path starts with / and has no white space; / used", arg)
			}
		case "status_code":
			for _, s := range o.Args {
				if validStatus(s) {
					status = append(status, s)
				} else {
					t.issue(o.Pos, Dropped, o.Name, "%q: want a code or range within 100-599", s)
				}
			}
		case "digest":
			t.issue(o.Pos, Dropped, o.Name, "dsrd has no digest check: the body is not compared (body_regexp can match part of it)")
		case "virtualhost":
			vhost = arg
		case "regex":
			add(m, "body_regexp", str(arg), "regex (keepalived's is PCRE2, dsrd's Go RE2: check it still means the same)")
			t.issue(o.Pos, Changed, o.Name, "PCRE2 becomes Go's RE2 syntax: most patterns mean the same; back-references and look-arounds do not exist")
		default:
			t.issue(o.Pos, Dropped, o.Name, "no dsrd equivalent in a url")
		}
	}
	if len(status) == 0 {
		status = []string{"200-299"}
	}
	add(m, "expect_status", strs(status), "status_code (keepalived's default 200-299)")
	if vhost != "" && !strings.ContainsFunc(vhost, unicode.IsSpace) {
		add(m, "host", str(vhost), "virtualhost")
	}
}

func validStatus(s string) bool {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil || lo < 100 || lo > 599 {
		return false
	}
	if !isRange {
		return true
	}
	hi, err := strconv.Atoi(b)
	return err == nil && hi >= lo && hi <= 599
}

// printable decodes keepalived's free-form hex string and returns it as
// text when it is printable ASCII.
func printable(h string) (string, bool) {
	h = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, h)
	if len(h)%2 == 1 {
		h = "0" + h
	}
	b, err := hex.DecodeString(h)
	if err != nil || len(b) == 0 {
		return "", false
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "", false
		}
	}
	return string(b), true
}
