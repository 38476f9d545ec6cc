package admission

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Plan is the whole dsrd table as nftables objects, ready to be sent in one
// batch: the base chain, one chain per service with admission control, its
// sets, named counters and rules. Its String is the table written in nft's
// syntax, which the unit tests compare.
type Plan struct {
	Table    *nftables.Table
	Base     *nftables.Chain
	Chains   []*nftables.Chain
	Sets     []PlanSet
	Counters []string
	Rules    []PlanRule
	// Services lists the services the table controls, in order.
	Services []PlanService

	lastID uint32
}

// PlanSet is a set and its elements.
type PlanSet struct {
	Set      *nftables.Set
	Elements []nftables.SetElement
	// Text is the set's elements in nft's syntax (prefixes, ranges).
	Text []string
}

// PlanRule is one rule of a chain.
type PlanRule struct {
	Chain *nftables.Chain
	Exprs []expr.Any
	Text  string
}

// PlanService names what the table holds for one service.
type PlanService struct {
	Name string
	// Counters maps each reason the service can drop for to its counter.
	Counters map[Reason]string
	// Meter is the name of the service's per-source meter, "" if none.
	Meter string
	// Top is the name of the service's offender set, "" if none (a
	// service with only a cap drops no source for what it did).
	Top string
}

// Empty reports whether the plan controls no service.
func (p *Plan) Empty() bool { return len(p.Services) == 0 }

// CounterName returns the name of a service's counter for a reason.
func CounterName(service string, r Reason) string { return string(r) + "_" + service }

// ParseCounterName splits a counter name into its reason and service.
func ParseCounterName(name string) (service string, r Reason, ok bool) {
	for _, x := range Reasons {
		if s, found := strings.CutPrefix(name, string(x)+"_"); found && s != "" {
			return s, x, true
		}
	}
	return "", "", false
}

// MeterName returns the name of a service's per-source meter.
func MeterName(service string) string { return "meter_" + service }

// TopName returns the name of a service's offender set.
func TopName(service string) string { return "top_" + service }

// Build turns a configuration into the plan of the dsrd table. It checks
// what the kernel would refuse (names, families, rates) so that a bad
// configuration fails before anything is sent.
func Build(c Config) (*Plan, error) {
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	p := &Plan{
		Table: t,
		Base: &nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(ChainPriority), Policy: &accept},
	}
	seen := make(map[string]bool)
	for i := range c.Services {
		s := &c.Services[i]
		if !s.Active() {
			continue
		}
		if err := checkService(s); err != nil {
			return nil, fmt.Errorf("service %q: %w", s.Name, err)
		}
		if seen[s.Name] {
			return nil, fmt.Errorf("service %q: duplicate name", s.Name)
		}
		seen[s.Name] = true
		p.service(s)
	}
	return p, nil
}

// checkService refuses what Build cannot program.
func checkService(s *Service) error {
	if s.Name == "" || len(s.Name) > 64 {
		return fmt.Errorf("name must be 1 to 64 characters")
	}
	for _, r := range s.Name {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("name has %q: only A-Z a-z 0-9 . _ -", r)
		}
	}
	if s.Family != 4 && s.Family != 6 {
		return fmt.Errorf("family %d: want 4 or 6", s.Family)
	}
	if s.FWMark == 0 {
		if _, ok := l4proto(s.Protocol); !ok {
			return fmt.Errorf("protocol %q: want tcp, udp or sctp", s.Protocol)
		}
		if !s.VIP.IsValid() || s.VIP.Is4() != (s.Family == 4) || s.VIP.Zone() != "" {
			return fmt.Errorf("vip %v is not an IPv%d address", s.VIP, s.Family)
		}
	}
	if len(s.Allow) > MaxPrefixes || len(s.Deny) > MaxPrefixes {
		return fmt.Errorf("more than %d prefixes in a list", MaxPrefixes)
	}
	for _, r := range []*Rate{s.ServiceRate, sourceRate(s)} {
		if r == nil {
			continue
		}
		if r.Count == 0 {
			return fmt.Errorf("rate 0")
		}
		if unitName(r.Per) == r.Per.String() {
			return fmt.Errorf("rate per %v: want a second, minute, hour or day", r.Per)
		}
	}
	if sr := s.SourceRate; sr != nil {
		if sr.PrefixV4 < 1 || sr.PrefixV4 > 32 || sr.PrefixV6 < 1 || sr.PrefixV6 > 128 {
			return fmt.Errorf("source prefix lengths /%d and /%d out of range", sr.PrefixV4, sr.PrefixV6)
		}
	}
	return nil
}

func sourceRate(s *Service) *Rate {
	if s.SourceRate == nil {
		return nil
	}
	return &s.SourceRate.Rate
}

func l4proto(p string) (byte, bool) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, true
	case "udp":
		return unix.IPPROTO_UDP, true
	case "sctp":
		return unix.IPPROTO_SCTP, true
	}
	return 0, false
}

// addrInfo is where an address family keeps its addresses.
type addrInfo struct {
	nfproto      byte
	name         string // ip or ip6
	saddr, daddr uint32 // offsets in the network header
	size         uint32
	keyType      nftables.SetDatatype
}

func familyInfo(fam int) addrInfo {
	if fam == 4 {
		return addrInfo{unix.NFPROTO_IPV4, "ip", 12, 16, 4, nftables.TypeIPAddr}
	}
	return addrInfo{unix.NFPROTO_IPV6, "ip6", 8, 24, 16, nftables.TypeIP6Addr}
}

// rule accumulates a rule's expressions and its text.
type rule struct {
	exprs []expr.Any
	words []string
}

func (r *rule) add(text string, e ...expr.Any) *rule {
	if text != "" {
		r.words = append(r.words, text)
	}
	r.exprs = append(r.exprs, e...)
	return r
}

func (r *rule) cmp(op expr.CmpOp, data []byte) *rule {
	return r.add("", &expr.Cmp{Op: op, Register: 1, Data: data})
}

func (r *rule) counter(name string) *rule {
	return r.add(fmt.Sprintf("counter name %q", name), &expr.Objref{Type: int(nftables.ObjTypeCounter), Name: name})
}

func (r *rule) verdict(v expr.VerdictKind, chain string) *rule {
	text := map[expr.VerdictKind]string{expr.VerdictDrop: "drop", expr.VerdictReturn: "return", expr.VerdictAccept: "accept"}[v]
	switch v {
	case expr.VerdictJump:
		text = "jump " + chain
	case expr.VerdictGoto:
		text = "goto " + chain
	}
	return r.add(text, &expr.Verdict{Kind: v, Chain: chain})
}

// saddr loads the source address into register 1.
func (r *rule) saddr(fi addrInfo) *rule {
	return r.add("", &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fi.saddr, Len: fi.size})
}

func (p *Plan) addRule(c *nftables.Chain, r *rule) {
	p.Rules = append(p.Rules, PlanRule{Chain: c, Exprs: r.exprs, Text: strings.Join(r.words, " ")})
}

// service adds a service's chain, sets, counters and rules, and the jump
// to its chain from the base chain.
func (p *Plan) service(s *Service) {
	fi := familyInfo(s.Family)
	ps := PlanService{Name: s.Name, Counters: make(map[Reason]string)}
	chain := &nftables.Chain{Name: "svc_" + s.Name, Table: p.Table}
	p.Chains = append(p.Chains, chain)

	// Dispatch: the packets of this service jump to its chain.
	d := &rule{}
	d.add("meta nfproto "+map[int]string{4: "ipv4", 6: "ipv6"}[s.Family],
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}).cmp(expr.CmpOpEq, []byte{fi.nfproto})
	if s.FWMark != 0 {
		d.add(fmt.Sprintf("meta mark 0x%08x", s.FWMark), &expr.Meta{Key: expr.MetaKeyMARK, Register: 1}).
			cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(s.FWMark))
	} else {
		proto, _ := l4proto(s.Protocol)
		d.add(fmt.Sprintf("%s daddr %s", fi.name, s.VIP),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: fi.daddr, Len: fi.size}).
			cmp(expr.CmpOpEq, s.VIP.AsSlice())
		d.add("meta l4proto "+s.Protocol, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}).cmp(expr.CmpOpEq, []byte{proto})
		if s.Port != 0 {
			// tcp, udp and sctp keep the destination port at offset 2.
			d.add(fmt.Sprintf("th dport %d", s.Port),
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}).
				cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(s.Port))
		}
	}
	d.verdict(expr.VerdictJump, chain.Name)
	p.addRule(p.Base, d)

	counter := func(r Reason) string {
		n := CounterName(s.Name, r)
		p.Counters = append(p.Counters, n)
		ps.Counters[r] = n
		return n
	}
	// A drop the source earned (deny, not allowed, its rate) goes to the
	// service's drop chain, which records the source before it drops.
	var dropChain *nftables.Chain
	offender := func(r *rule) {
		if dropChain == nil {
			dropChain = p.dropChain(s.Name, fi, &ps)
		}
		p.addRule(chain, r.verdict(expr.VerdictGoto, dropChain.Name))
	}

	// Deny first: deny wins over allow.
	if set := p.prefixSet("deny_"+s.Name, fi, s.Family, s.Deny); set != nil {
		r := (&rule{}).saddr(fi).add(fmt.Sprintf("%s saddr @%s", fi.name, set.Name),
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
		offender(r.counter(counter(ReasonDeny)))
	}
	if len(s.Allow) > 0 {
		// An allow list without an address of this family allows none of
		// the family: the set is then empty and the rule drops all.
		set := p.prefixSet("allow_"+s.Name, fi, s.Family, s.Allow)
		if set == nil {
			set = p.emptySet("allow_"+s.Name, fi)
		}
		r := (&rule{}).saddr(fi).add(fmt.Sprintf("%s saddr != @%s", fi.name, set.Name),
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true})
		offender(r.counter(counter(ReasonNotAllowed)))
	}
	if s.SourceRate == nil && s.ServiceRate == nil {
		p.Services = append(p.Services, ps)
		return
	}
	// Rates count new connections: a TCP segment that is not a bare SYN
	// leaves the chain here.
	if s.Protocol == "tcp" {
		r := (&rule{}).add("tcp flags & (syn | ack) != syn",
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x12}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0x02}})
		p.addRule(chain, r.verdict(expr.VerdictReturn, ""))
	}
	if sr := s.SourceRate; sr != nil {
		bits := sr.PrefixV4
		if s.Family == 6 {
			bits = sr.PrefixV6
		}
		meter := &nftables.Set{Table: p.Table, Name: MeterName(s.Name), KeyType: fi.keyType,
			Dynamic: true, HasTimeout: true, Timeout: MeterTimeout, Size: MeterSize, ID: p.setID()}
		p.Sets = append(p.Sets, PlanSet{Set: meter})
		ps.Meter = meter.Name
		r := (&rule{}).saddr(fi)
		key := fi.name + " saddr"
		if bits < int(fi.size)*8 {
			r.add("", &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: fi.size,
				Mask: maskBytes(int(fi.size), bits), Xor: make([]byte, fi.size)})
			key = fmt.Sprintf("%s saddr and /%d", fi.name, bits)
		}
		r.add(fmt.Sprintf("update @%s { %s limit rate over %s }", meter.Name, key, sr.Rate),
			&expr.Dynset{SrcRegKey: 1, SetName: meter.Name, SetID: meter.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
				Exprs: []expr.Any{limit(sr.Rate)}})
		offender(r.counter(counter(ReasonRate)))
	}
	if sr := s.ServiceRate; sr != nil {
		r := (&rule{}).add("limit rate over "+sr.String(), limit(*sr))
		p.addRule(chain, r.counter(counter(ReasonCap)).verdict(expr.VerdictDrop, ""))
	}
	p.Services = append(p.Services, ps)
}

// dropChain adds a service's offender set and the chain that records a
// packet's source in it, with a packet counter per source, and drops the
// packet. The record is a rule of its own: an update that fails (the set
// is full) ends that rule only, and the next one drops all the same.
func (p *Plan) dropChain(service string, fi addrInfo, ps *PlanService) *nftables.Chain {
	set := &nftables.Set{Table: p.Table, Name: TopName(service), KeyType: fi.keyType,
		Dynamic: true, HasTimeout: true, Timeout: TopTimeout, Size: TopSize, ID: p.setID()}
	p.Sets = append(p.Sets, PlanSet{Set: set})
	ps.Top = set.Name
	c := &nftables.Chain{Name: "drop_" + service, Table: p.Table}
	p.Chains = append(p.Chains, c)
	r := (&rule{}).saddr(fi).add(fmt.Sprintf("update @%s { %s saddr counter }", set.Name, fi.name),
		&expr.Dynset{SrcRegKey: 1, SetName: set.Name, SetID: set.ID, Operation: unix.NFT_DYNSET_OP_UPDATE,
			Exprs: []expr.Any{&expr.Counter{}}})
	p.addRule(c, r)
	p.addRule(c, (&rule{}).verdict(expr.VerdictDrop, ""))
	return c
}

func limit(r Rate) *expr.Limit {
	return &expr.Limit{Type: expr.LimitTypePkts, Rate: r.Count, Over: true,
		Unit: expr.LimitTime(r.Per / time.Second), Burst: r.Burst}
}

// setID numbers the sets of a plan: a rule refers to a set created in
// the same batch by its ID, unique within the batch.
func (p *Plan) setID() uint32 {
	p.lastID++
	return p.lastID
}

// prefixSet adds an interval set of the prefixes of family fam, nil when
// there are none.
func (p *Plan) prefixSet(name string, fi addrInfo, fam int, prefixes []netip.Prefix) *nftables.Set {
	sp := spans(prefixes, fam)
	if len(sp) == 0 {
		return nil
	}
	set := p.emptySet(name, fi)
	ps := &p.Sets[len(p.Sets)-1]
	ps.Elements = make([]nftables.SetElement, 0, 2*len(sp))
	ps.Text = make([]string, 0, len(sp))
	for _, x := range sp {
		ps.Elements = append(ps.Elements, nftables.SetElement{Key: x.first.AsSlice()})
		if end := x.last.Next(); end.IsValid() {
			ps.Elements = append(ps.Elements, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
		ps.Text = append(ps.Text, spanText(x))
	}
	return set
}

// emptySet adds an interval set with no elements.
func (p *Plan) emptySet(name string, fi addrInfo) *nftables.Set {
	set := &nftables.Set{Table: p.Table, Name: name, KeyType: fi.keyType, Interval: true, ID: p.setID()}
	p.Sets = append(p.Sets, PlanSet{Set: set})
	return set
}

// spanText writes a range as nft lists it: a prefix when it is one.
func spanText(x span) string {
	// The only prefix that can be the range is the one of the bits first
	// and last share.
	a, b := x.first.As16(), x.last.As16()
	bits := 0
	for i := range a {
		if d := a[i] ^ b[i]; d != 0 {
			for d&0x80 == 0 {
				d <<= 1
				bits++
			}
			break
		}
		bits += 8
	}
	if x.first.Is4() {
		bits -= 96
	}
	if pf := netip.PrefixFrom(x.first, bits); pf.Masked().Addr() == x.first && lastAddr(pf) == x.last {
		return pf.String()
	}
	return x.first.String() + "-" + x.last.String()
}

// String writes the plan in nft's syntax.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", p.Table.Name)
	for _, c := range p.Counters {
		fmt.Fprintf(&b, "\tcounter %s {\n\t}\n", c)
	}
	for _, s := range p.Sets {
		fmt.Fprintf(&b, "\tset %s {\n\t\ttype %s\n", s.Set.Name, map[string]string{"ipv4_addr": "ipv4_addr", "ipv6_addr": "ipv6_addr"}[s.Set.KeyType.Name])
		switch {
		case s.Set.Interval:
			b.WriteString("\t\tflags interval\n")
		case s.Set.Dynamic:
			fmt.Fprintf(&b, "\t\tsize %d\n\t\tflags dynamic,timeout\n\t\ttimeout %v\n", s.Set.Size, s.Set.Timeout)
		}
		if len(s.Text) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(s.Text, ", "))
		}
		b.WriteString("\t}\n")
	}
	chains := append([]*nftables.Chain{p.Base}, p.Chains...)
	for _, c := range chains {
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Hooknum != nil {
			fmt.Fprintf(&b, "\t\ttype filter hook input priority %d; policy accept;\n", *c.Priority)
		}
		for _, r := range p.Rules {
			if r.Chain == c {
				fmt.Fprintf(&b, "\t\t%s\n", r.Text)
			}
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}
