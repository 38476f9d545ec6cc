package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/realserver"
	"github.com/dsrd/dsrd/vrrp"
)

// Validate checks a complete director configuration, defaults included (as
// ParseDirector returns it, or as received from another node), and returns
// every problem as *Errors. The errors carry no position.
func (d *Director) Validate() error {
	errs := &errorList{}
	v := &validator{errs: errs}
	v.director(d)
	return errs.err()
}

// Validate checks a complete witness configuration, defaults included, and
// returns every problem as *Errors.
func (w *Witness) Validate() error {
	errs := &errorList{}
	v := &validator{errs: errs}
	v.witness(w)
	return errs.err()
}

// Validate checks a complete realserver configuration, defaults included,
// and returns every problem as *Errors.
func (r *Realserver) Validate() error {
	errs := &errorList{}
	v := &validator{errs: errs}
	v.realserver(r)
	return errs.err()
}

// ValidateShared checks the load-balancing part of a director
// configuration, the part the directors of a cluster share through Raft
// (raft.Spec): IPVS settings, VIPs and services, by the same rules as a
// file. A VIP without an interface is allowed: each director puts it on
// its own node.interface. It returns every problem as *Errors whose
// messages start with the value's path (services[1].reals[0]: ...).
func ValidateShared(x IPVS, vips []VIP, services []Service) error {
	errs := &errorList{}
	v := &validator{errs: errs, shared: true}
	v.ipvs(&x, "ipvs")
	set := v.vips(vips, "vips")
	v.services(services, set, "services")
	v.admissions(vips, services)
	return errs.err()
}

// validator checks a decoded configuration, reporting each problem at the
// position of the offending value. pos is nil for a value built in code.
// shared marks the replicated part of a director configuration checked
// alone (ValidateShared): VIP interfaces may be left to the node.
type validator struct {
	errs   *errorList
	pos    *positions
	shared bool
	// warns collects what is accepted but probably not meant (nil: not
	// wanted).
	warns *errorList
}

// warnf records a warning about the value at path.
func (v *validator) warnf(path, format string, args ...any) {
	if v.warns == nil || v.pos.isBad(path) {
		return
	}
	v.warns.add(v.pos.at(path), prefix(path)+fmt.Sprintf(format, args...))
}

// errorf records a problem with the value at path, unless that value
// already failed to decode (which was reported then).
func (v *validator) errorf(path, format string, args ...any) {
	if v.pos.isBad(path) {
		return
	}
	v.errs.add(v.pos.at(path), prefix(path)+fmt.Sprintf(format, args...))
}

// line returns " (line N)" naming where path is written, or "".
func (v *validator) line(path string) string {
	if p := v.pos.at(path); p.line > 0 {
		return " (line " + strconv.Itoa(p.line) + ")"
	}
	return ""
}

func (v *validator) director(d *Director) {
	v.node(&d.Node, "node", KindDirector)
	v.cluster(&d.Cluster, &d.Node, "cluster")
	v.ipvs(&d.IPVS, "ipvs")
	vips := v.vips(d.VIPs, "vips")
	if v.pos.isBad("vips") {
		vips = nil
	}
	for i := range d.VIPs {
		if v.pos.isBad(joinPath(indexPath("vips", i), "address")) {
			// A VIP that did not decode: membership of a service's VIP
			// cannot be judged.
			vips = nil
		}
	}
	v.services(d.Services, vips, "services")
	v.admissions(d.VIPs, d.Services)
	v.bgp(d.BGP, "bgp")
	v.bgpVIPsNeedSpeaker(d)
}

// bgpVIPsNeedSpeaker checks that every bgp VIP can be announced: the file
// has a bgp section with a peer of the VIP's family.
func (v *validator) bgpVIPsNeedSpeaker(d *Director) {
	for i := range d.VIPs {
		x := &d.VIPs[i]
		if x.Mode != ModeBGP || !x.Address.IsValid() {
			continue
		}
		mp := joinPath(indexPath("vips", i), "mode")
		if d.BGP == nil {
			v.errorf(mp, "a bgp VIP needs the bgp section: this director's ASN and its routers")
			continue
		}
		fam := "IPv4"
		if !x.Address.Is4() {
			fam = "IPv6"
		}
		found := false
		for _, p := range d.BGP.Peers {
			if p.Address.Unmap().Is4() == x.Address.Is4() {
				found = true
				break
			}
		}
		if !found && len(d.BGP.Peers) > 0 {
			v.errorf(mp, "bgp VIP %s has no %s peer to be announced to: routes go to peers of their own family", x.Address, fam)
		}
	}
}

func (v *validator) witness(w *Witness) {
	v.node(&w.Node, "node", KindWitness)
	v.cluster(&w.Cluster, &w.Node, "cluster")
}

func (v *validator) realserver(r *Realserver) {
	if len(r.VIPs) == 0 {
		v.errorf("vips", "required: the VIPs the directors send to this server")
	}
	first := make(map[netip.Addr]string)
	for i, a := range r.VIPs {
		p := indexPath("vips", i)
		// The agent's own rules (realserver.New applies the same).
		if err := realserver.CheckVIP(a); err != nil {
			v.errorf(p, "%s", err)
			continue
		}
		if f, dup := first[a]; dup {
			v.errorf(p, "duplicate VIP %s, first at %s%s", a, f, v.line(f))
			continue
		}
		first[a] = p
	}
	seen := make(map[string]string)
	for i, name := range r.Interfaces {
		p := indexPath("interfaces", i)
		if err := realserver.CheckInterface(name); err != nil {
			v.errorf(p, "%s", err)
			continue
		}
		if f, dup := seen[name]; dup {
			v.errorf(p, "duplicate interface %q, first at %s%s", name, f, v.line(f))
			continue
		}
		seen[name] = p
	}
	v.absPath("data_dir", r.DataDir)
	if r.StatusAddress != "" {
		v.hostPort("status_address", r.StatusAddress)
	}
	if r.ResyncInterval <= 0 {
		v.errorf("resync_interval", "must be more than 0s")
	}
	v.logging("", r.LogLevel, r.LogFormat)
}

func (v *validator) node(n *Node, path string, kind Kind) {
	id := joinPath(path, "id")
	if n.ID == "" {
		v.errorf(id, "required: this node's unique name in the cluster")
	} else if err := checkName(n.ID); err != nil {
		v.errorf(id, "%q %v", n.ID, err)
	}
	if n.Interface != "" {
		if kind == KindWitness {
			v.errorf(joinPath(path, "interface"), "a witness owns no VIPs: remove it")
		} else {
			v.ifname(joinPath(path, "interface"), n.Interface)
		}
	}
	v.absPath(joinPath(path, "data_dir"), n.DataDir)
	sock := joinPath(path, "api_socket")
	if v.absPath(sock, n.APISocket) && len(n.APISocket) > maxSocketPath {
		v.errorf(sock, "%d bytes is too long for a unix socket path (at most %d)", len(n.APISocket), maxSocketPath)
	}
	v.logging(path, n.LogLevel, n.LogFormat)
	if n.MetricsAddress != "" {
		v.hostPort(joinPath(path, "metrics_address"), n.MetricsAddress)
	}
	v.notify(&n.Notify, joinPath(path, "notify"), kind)
}

// Bounds of node.notify.
const (
	// maxNotifyArgs bounds one notify program's argv: a program and a few
	// arguments; anything longer belongs in a script.
	maxNotifyArgs = 32
	// maxNotifyTimeout bounds a notify program's run: the programs run one
	// at a time, so a long one delays the next transitions'.
	maxNotifyTimeout = 5 * time.Minute
)

func (v *validator) notify(n *Notify, path string, kind Kind) {
	progs := []struct {
		key  string
		argv []string
	}{{"master", n.Master}, {"backup", n.Backup}, {"fault", n.Fault}, {"any", n.Any}}
	if kind == KindWitness {
		for _, p := range progs {
			if len(p.argv) > 0 {
				v.errorf(joinPath(path, p.key), "a witness owns no VIPs and runs no notify program: remove it")
			}
		}
		if n.Timeout != 0 {
			v.errorf(joinPath(path, "timeout"), "a witness owns no VIPs and runs no notify program: remove it")
		}
		return
	}
	for _, p := range progs {
		kp := joinPath(path, p.key)
		if len(p.argv) == 0 {
			continue
		}
		if len(p.argv) > maxNotifyArgs {
			v.errorf(kp, "%d arguments: at most %d (a longer command belongs in a script)", len(p.argv), maxNotifyArgs)
		}
		if p.argv[0] == "" || !filepath.IsAbs(p.argv[0]) {
			v.errorf(indexPath(kp, 0), "%q is not an absolute path: notify programs run without a shell and without a PATH lookup", p.argv[0])
		}
		for i, a := range p.argv {
			if strings.ContainsRune(a, 0) {
				v.errorf(indexPath(kp, i), "contains a NUL byte")
			}
		}
	}
	if d := n.Timeout.D(); d <= 0 || d > maxNotifyTimeout {
		v.errorf(joinPath(path, "timeout"), "%s: must be more than 0s and at most %s", d, maxNotifyTimeout)
	}
}

// maxSocketPath is the longest unix socket path Linux takes (sun_path is
// 108 bytes with its terminating NUL).
const maxSocketPath = 107

func (v *validator) logging(path, level, format string) {
	switch level {
	case "debug", "info", "warn", "error":
	default:
		v.errorf(joinPath(path, "log_level"), "unknown log level %q: want debug, info, warn or error", level)
	}
	switch format {
	case "text", "json":
	default:
		v.errorf(joinPath(path, "log_format"), "unknown log format %q: want text or json", format)
	}
}

// cluster validates the cluster section of node n, written at path.
func (v *validator) cluster(c *Cluster, n *Node, path string) {
	v.clusterAddresses(c, path)
	self := v.clusterPeers(c, n, path)
	v.clusterSelf(c, n, self, path)
	v.clusterTLS(c, path)
	v.clusterTimings(c, path)
}

// clusterAddresses checks the bind address and the advertised address.
func (v *validator) clusterAddresses(c *Cluster, path string) {
	bind := joinPath(path, "bind")
	adv := joinPath(path, "advertise")
	switch {
	case !c.Bind.IsValid():
		v.errorf(bind, "required: the ip:port Raft listens on")
	case c.Bind.Port() == 0:
		v.errorf(bind, "%s has no port", c.Bind)
	}
	if c.Bind.IsValid() || v.pos.isSet(adv) {
		switch {
		case !c.Advertise.IsValid():
			v.errorf(adv, "required: the ip:port peers reach this node on")
		case c.Advertise.Addr().IsUnspecified():
			if v.pos.isSet(adv) {
				v.errorf(adv, "%s is not an address peers can reach", c.Advertise)
			} else {
				v.errorf(bind, "%s is unspecified: set cluster.advertise to the address peers reach this node on", c.Bind)
			}
		case c.Advertise.Port() == 0:
			v.errorf(adv, "%s has no port", c.Advertise)
		}
	}
}

// clusterPeers checks the peers are valid and unique; it returns node n's index in them, or -1.
func (v *validator) clusterPeers(c *Cluster, n *Node, path string) int {
	peers := joinPath(path, "peers")
	if len(c.Peers) == 0 {
		v.errorf(peers, "required: every voter, this node included, as id@ip:port")
	}
	ids := make(map[string]string)
	addrs := make(map[netip.AddrPort]string)
	self := -1
	for i, p := range c.Peers {
		pp := indexPath(peers, i)
		if err := checkName(p.ID); err != nil {
			v.errorf(pp, "id %q %v", p.ID, err)
			continue
		}
		switch {
		case !p.Address.IsValid():
			v.errorf(pp, "peer %s has no address", p.ID)
			continue
		case p.Address.Addr().IsUnspecified() || p.Address.Addr().IsMulticast():
			v.errorf(pp, "%s is not an address a peer can be reached on", p.Address.Addr())
		case p.Address.Port() == 0:
			v.errorf(pp, "peer %s has no port", p.ID)
		}
		if f, dup := ids[p.ID]; dup {
			v.errorf(pp, "duplicate peer id %q, first at %s%s", p.ID, f, v.line(f))
		} else {
			ids[p.ID] = pp
		}
		if f, dup := addrs[p.Address]; dup {
			v.errorf(pp, "duplicate peer address %s, first at %s%s", p.Address, f, v.line(f))
		} else {
			addrs[p.Address] = pp
		}
		if p.ID == n.ID {
			self = i
		}
	}
	return self
}

// clusterSelf checks that node n is among the peers (at self), at its advertised address.
func (v *validator) clusterSelf(c *Cluster, n *Node, self int, path string) {
	peers := joinPath(path, "peers")
	if len(c.Peers) > 0 && n.ID != "" && self < 0 && checkName(n.ID) == nil {
		v.errorf(peers, "this node (node.id %q) is not among the peers", n.ID)
	}
	if self >= 0 && c.Advertise.IsValid() && !c.Advertise.Addr().IsUnspecified() &&
		c.Peers[self].Address.IsValid() && c.Peers[self].Address != c.Advertise {
		what := "cluster.advertise"
		if !v.pos.isSet(joinPath(path, "advertise")) {
			what = "cluster.bind (advertise is unset)"
		}
		v.errorf(indexPath(peers, self), "this node's peer address %s differs from %s %s", c.Peers[self].Address, what, c.Advertise)
	}
}

// clusterTLS checks that mutual TLS is set where required, and set whole.
func (v *validator) clusterTLS(c *Cluster, path string) {
	v.clusterTrust(c, path)
	if !c.TLS.Enabled() {
		return
	}
	var missing []string
	for _, f := range []struct{ name, val string }{{"cert", c.TLS.Cert}, {"key", c.TLS.Key}, {"ca", c.TLS.CA}} {
		if f.val == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		v.errorf(joinPath(path, "tls"), "cert, key and ca must all be set for mutual TLS, or none: missing %s", strings.Join(missing, ", "))
	}
}

// clusterTimings checks the Raft timings against their minimums and each other.
func (v *validator) clusterTimings(c *Cluster, path string) {
	hb := joinPath(path, "heartbeat_timeout")
	el := joinPath(path, "election_timeout")
	ls := joinPath(path, "leader_lease_timeout")
	ct := joinPath(path, "commit_timeout")
	hbOK := v.atLeast(hb, c.HeartbeatTimeout, 5*time.Millisecond)
	elOK := v.atLeast(el, c.ElectionTimeout, 5*time.Millisecond)
	lsOK := v.atLeast(ls, c.LeaderLeaseTimeout, 5*time.Millisecond)
	v.atLeast(ct, c.CommitTimeout, time.Millisecond)
	if hbOK && lsOK && c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		v.errorf(ls, "%s exceeds heartbeat_timeout %s: a leader must step down before followers elect another", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if hbOK && elOK && c.ElectionTimeout < c.HeartbeatTimeout {
		v.errorf(el, "%s is less than heartbeat_timeout %s (hashicorp/raft requires election_timeout >= heartbeat_timeout)", c.ElectionTimeout, c.HeartbeatTimeout)
	}
}

// clusterTrust enforces mutual TLS: a cluster whose Raft port or any peer
// is not on loopback must set cluster.tls, or say cluster.insecure: true
// (the Raft port then obeys anyone who can reach it). Loopback-only
// clusters (tests, a demo on one host) may stay plain.
func (v *validator) clusterTrust(c *Cluster, path string) {
	if c.TLS.Enabled() || c.Insecure {
		return
	}
	var exposed []string
	if c.Bind.IsValid() && !c.Bind.Addr().IsLoopback() {
		exposed = append(exposed, "bind "+c.Bind.String())
	}
	if c.Advertise.IsValid() && c.Advertise != c.Bind && !c.Advertise.Addr().IsLoopback() {
		exposed = append(exposed, "advertise "+c.Advertise.String())
	}
	for _, p := range c.Peers {
		if p.Address.IsValid() && !p.Address.Addr().IsLoopback() {
			exposed = append(exposed, "peer "+p.String())
			break
		}
	}
	if len(exposed) == 0 {
		return
	}
	at := joinPath(path, "tls")
	if !v.pos.isSet(at) {
		at = path
	}
	v.errorf(at, "mutual TLS is required off loopback (%s): set tls.cert, tls.key and tls.ca (dsrd tls makes them), "+
		"or insecure: true to run the Raft port unauthenticated", strings.Join(exposed, ", "))
}

// atLeast checks a Raft timing against hashicorp/raft's minimum; false
// when it is too short or did not decode, so that relations between
// timings are not judged on it.
func (v *validator) atLeast(path string, d Duration, lo time.Duration) bool {
	if v.pos.isBad(path) {
		return false
	}
	if d.D() < lo {
		v.errorf(path, "%s is too short: hashicorp/raft needs at least %s", d, lo)
		return false
	}
	return true
}

func (v *validator) ipvs(x *IPVS, path string) {
	for _, t := range []struct {
		name string
		d    Duration
	}{{"tcp_timeout", x.TCPTimeout}, {"tcp_fin_timeout", x.TCPFinTimeout}, {"udp_timeout", x.UDPTimeout}} {
		v.wholeSeconds(joinPath(path, t.name), t.d)
	}
	for _, b := range []struct {
		name string
		p    *bool
	}{{"sloppy_tcp", x.SloppyTCP}, {"expire_nodest_conn", x.ExpireNodestConn}, {"expire_quiescent_template", x.ExpireQuiescentTemplate}} {
		if b.p == nil {
			v.errorf(joinPath(path, b.name), "not set")
		}
	}
	if x.ConnReuseMode != nil && (*x.ConnReuseMode < 0 || *x.ConnReuseMode > 2) {
		v.errorf(joinPath(path, "conn_reuse_mode"), "%d is not 0, 1 or 2", *x.ConnReuseMode)
	}
	for _, d := range []struct{ name, mode string }{{"drop_entry", x.DropEntry}, {"drop_packet", x.DropPacket}, {"secure_tcp", x.SecureTCP}} {
		if d.mode == "" {
			continue
		}
		if _, err := ipvs.ParseDefence(d.mode); err != nil {
			v.errorf(joinPath(path, d.name), "%v", err)
		}
	}
	if x.AMemThresh != 0 && (x.AMemThresh < MinAMemThresh || x.AMemThresh > MaxAMemThresh) {
		v.errorf(joinPath(path, "amemthresh"), "%s is out of range %s to %s", x.AMemThresh, MinAMemThresh, MaxAMemThresh)
	}
	if x.Sync != nil {
		v.ipvsSync(x.Sync, joinPath(path, "sync"))
	}
}

// ipvsSync checks the sync daemons' settings by the kernel's rules (what it
// would refuse or silently change): a director runs a backup daemon, so
// maxlen has the backup's lower bound.
func (v *validator) ipvsSync(x *IPVSSync, path string) {
	if x.Interface != "" {
		v.ifname(joinPath(path, "interface"), x.Interface)
	}
	if x.SyncID < 0 || x.SyncID > 255 {
		v.errorf(joinPath(path, "sync_id"), "%d is out of range 0 to 255", x.SyncID)
	}
	if g := x.Group; g.IsValid() && (g.Zone() != "" || g.Is4In6() || !g.IsMulticast()) {
		v.errorf(joinPath(path, "group"), "%s is not a multicast address (224.0.0.0/4 or ff00::/8)", g)
	}
	if hi := ipvs.MaxSyncMaxLen(x.Group); x.MaxLen != 0 && (x.MaxLen < ipvs.MinSyncMaxLenBackup || x.MaxLen > hi) {
		v.errorf(joinPath(path, "maxlen"), "%d is out of range %d to %d (0: the kernel's choice from the interface's MTU)", x.MaxLen, ipvs.MinSyncMaxLenBackup, hi)
	}
	if x.Port < 0 || x.Port > 65535 {
		v.errorf(joinPath(path, "port"), "%d is out of range 1 to 65535 (0: 8848)", x.Port)
	}
	if x.TTL < 0 || x.TTL > 255 {
		v.errorf(joinPath(path, "ttl"), "%d is out of range 1 to 255 (0: 1)", x.TTL)
	}
}

// The range of ipvs.amemthresh: below 1 MiB the auto defences wait for an
// out-of-memory kernel; above 1 TiB they would always act.
const (
	MinAMemThresh = ByteSize(1 << 20)
	MaxAMemThresh = ByteSize(1 << 40)
)

// wholeSeconds checks an IPVS timeout, which the kernel keeps in seconds.
func (v *validator) wholeSeconds(path string, d Duration) {
	if d.D()%time.Second != 0 {
		v.errorf(path, "%s is not a whole number of seconds: IPVS counts this timeout in seconds", d)
	}
	if d.D() > time.Duration(maxIPVSSeconds)*time.Second {
		v.errorf(path, "%s is too long for IPVS (at most %ds)", d, maxIPVSSeconds)
	}
}

// maxIPVSSeconds bounds IPVS timeouts, which the kernel converts to
// jiffies in an int: keep well inside it (about 24 days).
const maxIPVSSeconds = 1<<31/1000 - 1

// vips validates the VIP list and returns the set of valid VIPs.
func (v *validator) vips(vips []VIP, path string) vipSet {
	set := make(vipSet)
	first := make(map[netip.Addr]string)
	for i := range vips {
		x := &vips[i]
		p := indexPath(path, i)
		ap := joinPath(p, "address")
		if !x.Address.IsValid() {
			v.errorf(ap, "required")
		} else if v.vip(ap, x.Address) {
			if f, dup := first[x.Address]; dup {
				v.errorf(ap, "duplicate VIP %s, first at %s%s", x.Address, f, v.line(f))
			} else {
				first[x.Address] = ap
				set[x.Address] = x.Mode
			}
		}
		mp := joinPath(p, "mode")
		switch x.Mode {
		case ModeARP:
		case ModeBGP:
			v.bgpVIP(x, p)
			continue
		default:
			_, hint := oneOf(string(x.Mode), string(ModeARP), string(ModeBGP))
			v.errorf(mp, "unknown mode %q%s", x.Mode, hint)
		}
		ip := joinPath(p, "interface")
		if x.Interface == "" {
			if !v.shared {
				v.errorf(ip, "no interface: set node.interface or this VIP's interface")
			}
		} else {
			v.ifname(ip, x.Interface)
		}
		an := joinPath(p, "announce")
		switch {
		case x.Announce.Count < 1:
			v.errorf(joinPath(an, "count"), "%d: at least 1 announcement is needed on takeover", x.Announce.Count)
		case x.Announce.Count > MaxAnnounceCount:
			v.errorf(joinPath(an, "count"), "%d: at most %d announcements on takeover", x.Announce.Count, MaxAnnounceCount)
		}
		switch {
		case x.Announce.Interval < 0:
			v.errorf(joinPath(an, "interval"), "%s is negative", x.Announce.Interval)
		case x.Announce.Count > 1 && x.Announce.Interval.D() < MinAnnounceInterval:
			v.errorf(joinPath(an, "interval"), "%s is too short: at least %s between announcements (Linux ignores a second update within its 1s locktime anyway)", x.Announce.Interval, MinAnnounceInterval)
		}
		if x.Announce.Refresh == nil {
			v.errorf(joinPath(an, "refresh"), "not set")
		} else if *x.Announce.Refresh < 0 {
			v.errorf(joinPath(an, "refresh"), "%s is negative", *x.Announce.Refresh)
		}
	}
	return set
}

// bgpVIP checks a VIP of mode bgp, written at path.
func (v *validator) bgpVIP(x *VIP, path string) {
	if x.Interface != BGPInterface && !(v.shared && x.Interface == "") {
		v.errorf(joinPath(path, "interface"), "a bgp VIP is held on %s by every director: on %s it would be answered by ARP; remove the interface", BGPInterface, x.Interface)
	}
	// A bgp VIP carries the announce defaults (the replicated format has
	// them since command version 2; they are never used): only settings
	// that differ from them are refused, so a file marshalled from a
	// parsed one parses again.
	if v.pos.isSet(joinPath(path, "announce")) && !defaultAnnounce(x.Announce) {
		v.errorf(joinPath(path, "announce"), "a bgp VIP is announced over BGP, not by gratuitous ARP / NA: remove announce")
	}
}

// defaultAnnounce reports whether a holds the defaults of a VIP's
// announcements.
func defaultAnnounce(a Announce) bool {
	return a.Count == DefaultAnnounceCount && a.Interval.D() == DefaultAnnounceInterval &&
		a.Refresh != nil && a.Refresh.D() == DefaultAnnounceRefresh
}

// Bounds of a VIP's takeover announcements: a burst is a handful of
// gratuitous ARPs or unsolicited NAs, never a flood on the segment.
const (
	MaxAnnounceCount    = 100
	MinAnnounceInterval = 10 * time.Millisecond
)

// vip checks that a is an address a director can own as a VIP, by the
// rule vrrp.NewOwner applies (vrrp.CheckVIP): a file this accepts is one
// the directors take.
func (v *validator) vip(path string, a netip.Addr) bool {
	if err := vrrp.CheckVIP(a); err != nil {
		v.errorf(path, "%s", err)
		return false
	}
	return true
}

// unicast checks that a is an address a host can own and be sent to.
func (v *validator) unicast(path string, a netip.Addr) bool {
	var why string
	switch {
	case !a.IsValid():
		why = "required"
	case a.IsUnspecified():
		why = a.String() + " is the unspecified address"
	case a.IsMulticast():
		why = a.String() + " is a multicast address"
	case a.IsLoopback():
		why = a.String() + " is a loopback address"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		why = a.String() + " is the broadcast address"
	}
	if why != "" {
		v.errorf(path, "%s", why)
		return false
	}
	return true
}

// CheckInterfaceName reports why name is not a Linux network interface
// name (the kernel's dev_valid_name: 1 to 15 bytes, not . or .., no '/',
// ':' or white space), or nil when it is one.
func CheckInterfaceName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

// ifname checks a network interface name as Linux does (dev_valid_name).
func (v *validator) ifname(path, name string) bool {
	if err := CheckInterfaceName(name); err != nil {
		v.errorf(path, "%s", err)
		return false
	}
	return true
}

// absPath checks that a file system path is absolute.
func (v *validator) absPath(path, p string) bool {
	switch {
	case p == "":
		v.errorf(path, "required")
	case !filepath.IsAbs(p):
		v.errorf(path, "%q is not an absolute path", p)
	default:
		return true
	}
	return false
}

// hostPort checks a listen address written host:port; the host may be
// empty (every address) or a name.
func (v *validator) hostPort(path, s string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.errorf(path, "%q is not host:port (e.g. 127.0.0.1:9797, :9797 or [2001:db8::1]:9797)", s)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.errorf(path, "%q: port %q is not 1-65535", s, port)
	}
	if strings.ContainsAny(host, " \t%") {
		v.errorf(path, "%q: invalid host %q", s, host)
	}
}

// checkName checks a node or service name.
func checkName(s string) error {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return errNameSyntax
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_' || r == '-') {
			return errNameSyntax
		}
	}
	return nil
}

// errNameSyntax says what a name may be.
var errNameSyntax = errors.New("must be 1 to 64 characters of A-Z a-z 0-9 . _ - (and not . or ..)")

// oneOf reports whether s is one of names and, when it is not, the end of
// a message: the closest name, or the list of them.
func oneOf(s string, names ...string) (ok bool, hint string) {
	for _, n := range names {
		if s == n {
			return true, ""
		}
	}
	if c := closest(s, names); c != "" {
		return false, fmt.Sprintf(" (did you mean %q?)", c)
	}
	return false, ": want one of " + strings.Join(names, ", ")
}
