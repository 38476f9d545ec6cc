package kaimport

import (
	"fmt"
	"math/big"
	"net/netip"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// vsKey is one IPVS service a virtual_server stands for: an address and
// port, or a firewall mark.
type vsKey struct {
	addr   netip.Addr
	port   uint16
	fwmark uint32
	family string // inet or inet6 for a fwmark, "" when not given
}

// maxRange bounds how many addresses one range of a
// virtual_server_group may expand to.
const maxRange = 256

// schedulers maps keepalived's lb_algo to dsrd's scheduler, with why when
// the meaning changes. dsrd offers rr, wrr, lc, wlc, sh and mh.
var schedulers = map[string]struct{ to, why string }{
	"rr": {"rr", ""}, "wrr": {"wrr", ""}, "lc": {"lc", ""}, "wlc": {"wlc", ""}, "sh": {"sh", ""}, "mh": {"mh", ""},
	"sed":   {"wlc", "sed (shortest expected delay) is not offered by dsrd: wlc, the closest least-connection scheduler"},
	"nq":    {"wlc", "nq (never queue) is not offered by dsrd: wlc, the closest least-connection scheduler"},
	"twos":  {"wlc", "twos (weighted random twos choice) is not offered by dsrd: wlc, the closest least-connection scheduler"},
	"lblc":  {"wlc", "lblc (locality-based, by destination address, for cache clusters) is not offered by dsrd: wlc"},
	"lblcr": {"wlc", "lblcr (locality-based with replication) is not offered by dsrd: wlc"},
	"dh":    {"sh", "dh (destination hashing) is not offered by dsrd: sh hashes the source address instead"},
	"fo":    {"wlc", "fo (weighted failover: all to the highest weight) is not offered by dsrd: wlc spreads over every real"},
	"ovf":   {"wlc", "ovf (overflow by weight and connections) is not offered by dsrd: wlc"},
}

// timing holds the check timing keywords, inherited virtual server ->
// real server -> checker.
type timing struct {
	delayLoop, connectTimeout, delayBeforeRetry string
	retry                                       int
	retrySet                                    bool
	alpha                                       bool
	virtualhost                                 string
}

func (t *tr) virtualServer(n *Node) {
	var keys []vsKey
	what := "virtual_server " + strings.Join(n.Args, " ")
	switch {
	case len(n.Args) >= 2 && n.Args[0] == "group":
		g, ok := t.groups[n.Args[1]]
		if !ok {
			t.issue(n.Pos, Dropped, "virtual_server", "group %q is not defined", n.Args[1])
			return
		}
		keys = t.groupKeys(g)
	case len(n.Args) >= 2 && n.Args[0] == "fwmark":
		m, err := strconv.ParseUint(n.Args[1], 0, 32)
		if err != nil || m == 0 {
			t.issue(n.Pos, Dropped, "virtual_server", "fwmark %q: want 1 to 4294967295", n.Args[1])
			return
		}
		keys = []vsKey{{fwmark: uint32(m)}}
	case len(n.Args) >= 1:
		k, ok := t.addrPort(n.Pos, "virtual_server", n.Args)
		if !ok {
			return
		}
		keys = []vsKey{k}
	default:
		t.issue(n.Pos, Dropped, "virtual_server", "no address, fwmark or group")
		return
	}
	// Forwarding method: keepalived's default is NAT.
	kind := ""
	for _, c := range n.Children {
		if (c.Name == "lb_kind" || c.Name == "lvs_method") && len(c.Args) > 0 {
			kind = strings.ToUpper(c.Args[0])
		}
	}
	switch kind {
	case "DR":
	case "":
		t.issue(n.Pos, Dropped, "virtual_server", "%s: no lb_kind, and keepalived's default is NAT: dsrd does direct routing and IP-in-IP tunnels only (the reals hold the VIP on lo and answer clients directly); if the reals are set up for DR, add lb_kind DR (or TUN) and import again", what)
		return
	case "NAT":
		t.issue(n.Pos, Dropped, "virtual_server", "%s: lb_kind NAT: dsrd does direct routing and IP-in-IP tunnels only (the director sees only inbound packets, the reals answer clients directly and cannot remap ports); set the reals up for DR (dsrd realserver) and use lb_kind DR", what)
		return
	case "TUN":
		// keepalived 2.x: tun_type ipip (the default), gue or gre.
		for _, c := range n.Children {
			if c.Name == "tun_type" && len(c.Args) > 0 && !strings.EqualFold(c.Args[0], "ipip") {
				t.issue(c.Pos, Dropped, "virtual_server", "%s: tun_type %s: dsrd forwards by plain IP-in-IP only (the IPVS library it uses cannot program GUE or GRE); set the reals up for ipip (dsrd realserver --tunnel) and use tun_type ipip", what, c.Args[0])
				return
			}
		}
	default:
		t.issue(n.Pos, Dropped, "virtual_server", "%s: unknown lb_kind %q", what, kind)
		return
	}
	for _, k := range keys {
		t.service(n, k, kind)
	}
}

// addrPort reads "ADDR [PORT]".
func (t *tr) addrPort(pos Pos, kw string, args []string) (vsKey, bool) {
	addr, err := netip.ParseAddr(args[0])
	if err != nil || addr.Zone() != "" {
		t.issue(pos, Dropped, kw, "%q is not an IP address", args[0])
		return vsKey{}, false
	}
	k := vsKey{addr: addr.Unmap()}
	if len(args) > 1 {
		p, err := strconv.ParseUint(args[1], 10, 16)
		if err != nil {
			t.issue(pos, Dropped, kw, "port %q: want 0 to 65535", args[1])
			return vsKey{}, false
		}
		k.port = uint16(p)
	}
	return k, true
}

// groupKeys expands a virtual_server_group: addresses, ranges
// (A-B as last byte or whole address, or a prefix) and fwmarks.
func (t *tr) groupKeys(g *Node) []vsKey {
	var keys []vsKey
	for _, e := range g.Children {
		words := append([]string{e.Name}, e.Args...)
		if words[0] == "fwmark" {
			if len(words) < 2 {
				t.issue(e.Pos, Dropped, "virtual_server_group", "fwmark without a number")
				continue
			}
			m, err := strconv.ParseUint(words[1], 0, 32)
			if err != nil || m == 0 {
				t.issue(e.Pos, Dropped, "virtual_server_group", "fwmark %q: want 1 to 4294967295", words[1])
				continue
			}
			k := vsKey{fwmark: uint32(m)}
			if len(words) > 2 {
				k.family = words[2]
			}
			keys = append(keys, k)
			continue
		}
		addrs, ok := t.expandRange(e.Pos, words[0])
		if !ok {
			continue
		}
		for _, a := range addrs {
			args := []string{a.String()}
			if len(words) > 1 {
				args = append(args, words[1])
			}
			if k, ok := t.addrPort(e.Pos, "virtual_server_group", args); ok {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

func (t *tr) expandRange(pos Pos, s string) ([]netip.Addr, bool) {
	bad := func(why string) ([]netip.Addr, bool) {
		t.issue(pos, Dropped, "virtual_server_group", "%q: %s", s, why)
		return nil, false
	}
	var first, last netip.Addr
	switch {
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return bad("not an address prefix")
		}
		p = p.Masked()
		first = p.Addr()
		last = lastOf(p)
	case strings.Contains(s, "-"):
		a, b, _ := strings.Cut(s, "-")
		var err error
		if first, err = netip.ParseAddr(a); err != nil {
			return bad("not an address range")
		}
		if last, err = netip.ParseAddr(b); err != nil {
			// The short form: the last byte (IPv4) or group (IPv6).
			if first.Is4() {
				n, err := strconv.ParseUint(b, 10, 8)
				if err != nil {
					return bad("not an address range")
				}
				a4 := first.As4()
				a4[3] = byte(n)
				last = netip.AddrFrom4(a4)
			} else {
				n, err := strconv.ParseUint(b, 16, 16)
				if err != nil {
					return bad("not an address range")
				}
				a16 := first.As16()
				a16[14], a16[15] = byte(n>>8), byte(n)
				last = netip.AddrFrom16(a16)
			}
		}
	default:
		a, err := netip.ParseAddr(s)
		if err != nil {
			return bad("not an IP address")
		}
		return []netip.Addr{a}, true
	}
	if first.Zone() != "" || last.Zone() != "" {
		return bad("an address with a zone cannot be a VIP")
	}
	first, last = first.Unmap(), last.Unmap()
	if first.BitLen() != last.BitLen() || last.Less(first) {
		return bad("the range's end is before its start")
	}
	span := new(big.Int).Sub(new(big.Int).SetBytes(last.AsSlice()), new(big.Int).SetBytes(first.AsSlice()))
	if span.Cmp(big.NewInt(maxRange-1)) > 0 {
		return bad(fmt.Sprintf("more than %d addresses: expand it into services by hand, or use a fwmark", maxRange))
	}
	var out []netip.Addr
	for a := first; ; a = a.Next() {
		out = append(out, a)
		if a == last {
			break
		}
	}
	return out, true
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// serviceName is the service's name: snmp_name when dsrd accepts it, else
// made of the protocol, address and port (or the mark), unique.
func (t *tr) serviceName(snmp string, k vsKey, proto string) string {
	base := snmp
	if !validName(base) || t.names[base] {
		if k.fwmark != 0 {
			base = "fwmark-" + strconv.FormatUint(uint64(k.fwmark), 10)
			if k.family != "" {
				base += "-" + k.family
			}
		} else {
			base = proto + "-" + strings.ReplaceAll(k.addr.String(), ":", "-") + "-" + strconv.Itoa(int(k.port))
		}
	}
	name := base
	for i := 2; t.names[name]; i++ {
		name = base + "-" + strconv.Itoa(i)
	}
	t.names[name] = true
	return name
}

func (t *tr) service(n *Node, k vsKey, kind string) {
	proto := "tcp"
	sched, schedPos := "wlc", n.Pos
	var flags []string
	var snmp string
	var persist, granularity string
	var persistPos Pos
	quorum, hysteresis := int64(1), int64(0)
	var quorumPos Pos
	var sorry *Node
	onePacket := false
	tim := timing{delayLoop: "60", connectTimeout: "5", retry: 1}
	var reals []*Node
	var comments []string
	inhibit := false
	for _, c := range n.Children {
		arg := ""
		if len(c.Args) > 0 {
			arg = c.Args[0]
		}
		switch c.Name {
		case "lb_kind", "lvs_method":
		case "tun_type":
			// ipip: virtualServer refused the others.
		case "protocol":
			p := strings.ToLower(arg)
			if p != "tcp" && p != "udp" && p != "sctp" {
				t.issue(c.Pos, Dropped, c.Name, "%q: want TCP, UDP or SCTP; TCP kept", arg)
				continue
			}
			proto = p
			if k.fwmark != 0 {
				t.issue(c.Pos, Replaced, c.Name, "a fwmark service has no protocol (keepalived ignores it too)")
			}
		case "lb_algo", "lvs_sched":
			sched, schedPos = arg, c.Pos
		case "hashed":
			t.issue(c.Pos, Replaced, c.Name, "the kernel hashes every service")
		case "flag-1", "flag-2", "flag-3", "sh-port", "sh-fallback", "mh-port", "mh-fallback":
			flags = append(flags, c.Name)
		case "ops":
			onePacket = true
		case "persistence_timeout":
			persist, persistPos = "360", c.Pos
			if arg != "" {
				persist = arg
			}
		case "persistence_granularity":
			granularity = arg
			persistPos = c.Pos
			if persist == "" {
				persist = "360"
			}
		case "quorum":
			q, err := strconv.ParseInt(arg, 10, 32)
			if err != nil || q < 0 {
				t.issue(c.Pos, Dropped, c.Name, "%q is not a count", arg)
				continue
			}
			quorum, quorumPos = q, c.Pos
		case "hysteresis":
			h, _ := strconv.ParseInt(arg, 10, 32)
			hysteresis = h
			if h != 0 {
				t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd's quorum has no hysteresis")
			}
		case "sorry_server":
			sorry = c
		case "sorry_server_inhibit":
			t.issue(c.Pos, Changed, c.Name, "dsrd drains the sorry server (weight 0) once a real is healthy again, then deletes it")
		case "sorry_server_lvs_method":
			if strings.ToUpper(arg) != kind {
				t.issue(c.Pos, Dropped, c.Name, "%s: dsrd reaches the sorry server as the service's reals (lb_kind %s)", arg, kind)
			}
		case "real_server":
			reals = append(reals, c)
		case "inhibit_on_failure":
			inhibit = arg == "" || checkTrue(arg)
		case "snmp_name":
			snmp = arg
		case "virtualhost":
			tim.virtualhost = arg
		case "ip_family":
			if k.fwmark != 0 && k.family == "" {
				k.family = arg
			}
		default:
			if !t.timingKey(c, &tim) {
				t.vsOther(c)
			}
		}
	}
	_ = hysteresis
	name := t.serviceName(snmp, k, proto)
	svc := mapping(kv{key: "name", value: str(name)})
	if k.fwmark != 0 {
		add(svc, "fwmark", num(int64(k.fwmark)), "")
	} else {
		add(svc, "vip", str(k.addr.String()), "")
		add(svc, "protocol", str(proto), "")
		add(svc, "port", num(int64(k.port)), "")
	}
	if kind == "TUN" {
		add(svc, "forwarding", str("tunnel"), "lb_kind TUN: IP-in-IP; the reals decapsulate (dsrd realserver --tunnel, docs/tunnel.md)")
	}
	// Scheduler and flags.
	m, ok := schedulers[sched]
	if !ok {
		t.issue(schedPos, Changed, "lb_algo", "unknown scheduler %q: wlc, keepalived's default", sched)
		m.to = "wlc"
	} else if m.why != "" {
		t.issue(schedPos, Changed, "lb_algo", "%s", m.why)
		comments = append(comments, "scheduler: "+m.why)
	}
	schedComment := ""
	if sched == "wlc" && schedPos == n.Pos {
		schedComment = "keepalived's default (no lb_algo); dsrd's default mh keeps flows on the same real after a director change"
	}
	add(svc, "scheduler", str(m.to), schedComment)
	var dflags []string
	for _, f := range flags {
		mapped := ""
		switch {
		case f == "flag-1" && (m.to == "sh" || m.to == "mh"):
			mapped = m.to + "-fallback"
		case f == "flag-2" && (m.to == "sh" || m.to == "mh"):
			mapped = m.to + "-port"
		case strings.HasPrefix(f, m.to+"-"):
			mapped = f
		}
		if mapped == "" {
			t.issue(n.Pos, Dropped, f, "not a flag of the %s scheduler", m.to)
			continue
		}
		dup := false
		for _, d := range dflags {
			dup = dup || d == mapped
		}
		if !dup {
			dflags = append(dflags, mapped)
		}
	}
	if m.to == "sh" || m.to == "mh" {
		add(svc, "scheduler_flags", strs(dflags), "as keepalived had them; dsrd's default would be ["+m.to+"-fallback]")
	}
	if onePacket {
		if proto == "udp" || k.fwmark != 0 {
			add(svc, "one_packet", boolean(true), "")
		} else {
			t.issue(n.Pos, Dropped, "ops", "one-packet scheduling is for udp and fwmark services")
		}
	}
	if persist != "" {
		p := mapping()
		if d, ok := seconds(persist); ok && !strings.HasSuffix(d, "ms") {
			add(p, "timeout", str(d), "")
		} else {
			t.issue(persistPos, Dropped, "persistence_timeout", "%q: want whole seconds", persist)
			p = nil
		}
		if p != nil && granularity != "" {
			bits, ok := netmaskBits(granularity)
			if ok {
				add(p, "netmask", num(int64(bits)), "persistence_granularity "+granularity)
			} else {
				t.issue(persistPos, Dropped, "persistence_granularity", "%q: want a contiguous netmask or a prefix length", granularity)
			}
		}
		add(svc, "persistence", p, "")
	}
	// Reals.
	anyInhibit, allInhibit := inhibit, true
	var realNodes []*yaml.Node
	var checks []*yaml.Node
	var weights []int64
	var realPos []Pos
	for _, r := range reals {
		rn, chk, w, rInhibit, ok := t.real(r, k, kind, tim, inhibit)
		if !ok {
			continue
		}
		anyInhibit = anyInhibit || rInhibit
		allInhibit = allInhibit && rInhibit
		realNodes = append(realNodes, rn)
		checks = append(checks, chk)
		weights = append(weights, w)
		realPos = append(realPos, r.Pos)
	}
	if len(realNodes) == 0 {
		t.issue(n.Pos, Dropped, "virtual_server", "%s: no real server could be translated, and a dsrd service needs one", name)
		return
	}
	switch {
	case allInhibit:
		add(svc, "on_down", str("weight0"), "inhibit_on_failure: a failed real stays at weight 0")
	case anyInhibit:
		add(svc, "on_down", str("weight0"), "some reals had inhibit_on_failure: dsrd's on_down is per service, weight0 for all")
		t.issue(n.Pos, Changed, "inhibit_on_failure", "set on some reals only: every real of %s is kept at weight 0 when it fails", name)
	default:
		add(svc, "on_down", str("remove"), "keepalived removes a failed real (no inhibit_on_failure); dsrd's default weight0 keeps its connections")
	}
	if quorum != 1 {
		q, note := quorumCount(quorum, weights)
		if note != "" {
			t.issue(quorumPos, Changed, "quorum", "%s", note)
		}
		add(svc, "quorum", num(q), "keepalived's quorum "+strconv.FormatInt(quorum, 10)+" is a total weight; dsrd's is a count of healthy reals")
	}
	var sorryPos Pos
	if sorry != nil && len(sorry.Args) > 0 {
		sorryPos = sorry.Pos
		if sk, ok := t.addrPort(sorry.Pos, "sorry_server", sorry.Args); ok {
			if len(sorry.Args) > 1 && sk.port != k.port && k.fwmark == 0 {
				t.issue(sorry.Pos, Changed, "sorry_server", "port %d: DR cannot remap ports, the sorry server is reached on the service port %d", sk.port, k.port)
			}
			comment := "added when every real is down"
			if quorum > 1 {
				comment += " (keepalived: when the quorum was lost)"
				t.issue(sorry.Pos, Changed, "sorry_server", "keepalived added it when the quorum was lost; dsrd when every real is down")
			}
			add(svc, "sorry_server", str(sk.addr.String()), comment)
		}
	}
	// The first real's check is the service's; a real checked otherwise
	// carries its own (a fwmark service needs a service check with a
	// port even then).
	first := marshalNode(checks[0])
	add(svc, "health_check", checks[0], "")
	for i, rn := range realNodes {
		if i > 0 && marshalNode(checks[i]) != first {
			add(rn, "health_check", checks[i], "")
		}
	}
	add(svc, "reals", seq(realNodes...), "")
	if len(comments) > 0 {
		svc.Content[0].HeadComment = strings.Join(comments, "\n")
	}
	key := fmt.Sprintf("%s/%s:%d", proto, k.addr, k.port)
	if k.fwmark != 0 {
		key = fmt.Sprintf("fwmark/%s/%d", k.family, k.fwmark)
	}
	if prev, ok := t.keys[key]; ok {
		t.issue(n.Pos, Dropped, "virtual_server", "%s is declared again (first at %s)", key, prev)
		delete(t.names, name)
		return
	}
	t.keys[key] = n.Pos
	t.services = append(t.services, &service{node: svc, name: name, key: key, vip: k.addr, pos: n.Pos, addVIP: k.fwmark == 0, realPos: realPos, sorryPos: sorryPos})
}

func marshalNode(n *yaml.Node) string {
	validUTF8(n)
	out, _ := yaml.Marshal(n)
	return string(out)
}

func checkTrue(s string) bool {
	switch s {
	case "true", "on", "yes":
		return true
	}
	return false
}

// quorumCount turns keepalived's quorum, a total weight of live reals,
// into dsrd's count of healthy reals: the fewest reals that reach the
// weight when the heaviest are up.
func quorumCount(q int64, weights []int64) (int64, string) {
	sorted := append([]int64(nil), weights...)
	for i := range sorted {
		for j := i + 1; j < len(sorted); j++ {
			if sorted[j] > sorted[i] {
				sorted[i], sorted[j] = sorted[j], sorted[i]
			}
		}
	}
	var sum, n int64
	for _, w := range sorted {
		if sum >= q {
			break
		}
		sum += w
		n++
	}
	if sum < q {
		return int64(len(weights)), fmt.Sprintf("quorum %d is more than the reals' total weight %d: every real (%d) must be healthy", q, sum, len(weights))
	}
	allSame := true
	for _, w := range weights {
		allSame = allSame && w == weights[0]
	}
	if allSame && weights[0] > 0 && q%weights[0] == 0 {
		return n, ""
	}
	return n, fmt.Sprintf("quorum %d (a total weight) becomes %d healthy reals, the fewest whose weights reach it", q, n)
}

// netmaskBits reads persistence_granularity: a dotted IPv4 netmask or a
// prefix length.
func netmaskBits(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, n >= 1 && n <= 128
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	bits := 0
	for v&0x80000000 != 0 {
		bits++
		v <<= 1
	}
	return bits, v == 0 && bits > 0
}

// timingKey reads a check timing keyword into tim.
func (t *tr) timingKey(c *Node, tim *timing) bool {
	arg := ""
	if len(c.Args) > 0 {
		arg = c.Args[0]
	}
	switch c.Name {
	case "delay_loop":
		tim.delayLoop = arg
	case "connect_timeout":
		tim.connectTimeout = arg
	case "retry", "nb_get_retry":
		r, err := strconv.Atoi(arg)
		if err != nil || r < 0 || r > 1000 {
			t.issue(c.Pos, Dropped, c.Name, "%q is not a count", arg)
			return true
		}
		tim.retry, tim.retrySet = r, true
	case "delay_before_retry":
		tim.delayBeforeRetry = arg
		t.issue(c.Pos, Changed, c.Name, "dsrd checks again after interval (delay_loop), not after delay_before_retry: a real is marked down after fall (retry+1) checks spaced by interval")
	case "alpha":
		tim.alpha = arg == "" || checkTrue(arg)
	case "omega":
		t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd runs no quorum or real notify scripts")
	case "warmup":
		t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd starts checks at once")
	default:
		return false
	}
	return true
}

// vsOther reports the virtual_server keywords with no equivalent.
func (t *tr) vsOther(c *Node) {
	switch c.Name {
	case "quorum_up", "quorum_down", "notify_up", "notify_down":
		t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd runs no script on a service's or a real's change; its metrics (docs/metrics.md) and dsrd status show them")
	case "ha_suspend":
		t.issue(c.Pos, Replaced, c.Name, "every director checks the reals, leader or not, so a standby is warm")
	case "smtp_alert":
		t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd sends no mail")
	case "persistence_engine":
		t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd has no persistence engine (sip)")
	default:
		t.issue(c.Pos, Dropped, c.Name, "no dsrd equivalent")
	}
}

// real translates one real_server: its mapping, its check (always set),
// its weight and whether it had inhibit_on_failure.
func (t *tr) real(r *Node, k vsKey, kind string, tim timing, inhibit bool) (*yaml.Node, *yaml.Node, int64, bool, bool) {
	if len(r.Args) == 0 {
		t.issue(r.Pos, Dropped, "real_server", "no address")
		return nil, nil, 0, false, false
	}
	rk, ok := t.addrPort(r.Pos, "real_server", r.Args)
	if !ok {
		return nil, nil, 0, false, false
	}
	hasPort := len(r.Args) > 1
	if k.fwmark == 0 && hasPort && rk.port != k.port {
		t.issue(r.Pos, Changed, "real_server", "%s port %d: DR cannot remap ports; dsrd sends to the service port %d (so did the kernel in DR)", rk.addr, rk.port, k.port)
	}
	rn := mapping(kv{key: "address", value: str(rk.addr.String())})
	forwarding := ""
	weight := int64(1)
	var uth, lth int64 = -1, -1
	var checkers []*Node
	for _, c := range r.Children {
		arg := ""
		if len(c.Args) > 0 {
			arg = c.Args[0]
		}
		switch c.Name {
		case "weight":
			w, err := strconv.ParseInt(arg, 10, 32)
			if err != nil || w < 0 || w > 65535 {
				t.issue(c.Pos, Dropped, c.Name, "%q: want 0 to 65535; keepalived's default 1 kept", arg)
				continue
			}
			weight = w
		case "lb_kind", "lvs_method":
			switch m := strings.ToUpper(arg); {
			case m == kind:
			case m == "DR":
				forwarding = "dr"
			case m == "TUN":
				forwarding = "tunnel"
			default:
				t.issue(c.Pos, Dropped, "real_server", "%s lvs_method %s: dsrd does direct routing and IP-in-IP tunnels only; real left out", rk.addr, arg)
				return nil, nil, 0, false, false
			}
		case "uthreshold":
			uth, _ = strconv.ParseInt(arg, 10, 64)
		case "lthreshold":
			lth, _ = strconv.ParseInt(arg, 10, 64)
		case "inhibit_on_failure":
			inhibit = arg == "" || checkTrue(arg)
		case "virtualhost":
			tim.virtualhost = arg
		case "HTTP_GET", "SSL_GET", "TCP_CHECK", "MISC_CHECK", "DNS_CHECK", "UDP_CHECK", "PING_CHECK", "SMTP_CHECK", "BFD_CHECK", "FILE_CHECK":
			checkers = append(checkers, c)
		default:
			if !t.timingKey(c, &tim) {
				t.vsOther(c)
			}
		}
	}
	if forwarding != "" {
		add(rn, "forwarding", str(forwarding), "lvs_method of this real")
	}
	add(rn, "weight", num(weight), "")
	if uth > 0 && uth <= math32 {
		add(rn, "upper_threshold", num(uth), "")
		if lth >= 0 && lth <= uth {
			add(rn, "lower_threshold", num(lth), "")
		} else if lth >= 0 {
			t.issue(r.Pos, Dropped, "lthreshold", "%d is above uthreshold %d", lth, uth)
		}
	} else if lth > 0 {
		t.issue(r.Pos, Dropped, "lthreshold", "without uthreshold it means nothing")
	}
	chk := t.check(r, rk, hasPort, k, tim, checkers)
	return rn, chk, weight, inhibit, true
}

const math32 = 1<<32 - 1
