package kaimport

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
)

// Options are what keepalived's file does not say but a dsrd director
// file needs: this node and its Raft cluster.
type Options struct {
	// NodeID is node.id; empty takes global_defs' router_id when it is a
	// valid dsrd name, else DefaultNodeID.
	NodeID string
	// Bind is cluster.bind; the zero value is DefaultBind (loopback).
	Bind netip.AddrPort
	// Peers are cluster.peers as id@ip:port; empty is this node alone.
	Peers []string
	// Interface is node.interface; empty takes the interface most
	// vrrp_instances name, else DefaultInterface.
	Interface string
	// Logger receives debug logs; nil logs nothing.
	Logger *slog.Logger
}

// The defaults of Options: a single-node cluster on loopback, which
// dsrd config check accepts without TLS, to be edited before use.
const (
	DefaultNodeID    = "dir1"
	DefaultInterface = "eth0"
)

// DefaultBind is the Raft address of the single-node loopback cluster.
var DefaultBind = netip.MustParseAddrPort("127.0.0.1:7946")

// Result is the translated director file and what was lost on the way.
type Result struct {
	// YAML is the director file; dsrd config check accepts it.
	YAML []byte
	// Issues are the parser's and the translator's, sorted by position.
	Issues []Issue
	// VIPs and Services count what the file holds.
	VIPs, Services int
}

// Useful reports whether the translation holds anything to run: a VIP or
// a service.
func (r *Result) Useful() bool { return r.VIPs > 0 || r.Services > 0 }

// Losses counts the issues that lose something (every kind but Replaced).
func (r *Result) Losses() int {
	n := 0
	for _, i := range r.Issues {
		if i.Kind.Loss() {
			n++
		}
	}
	return n
}

// ErrInvalidOutput is wrapped by Translate's error when the file it built
// does not pass dsrd's validation: a bug of this package, never of the
// input.
var ErrInvalidOutput = errors.New("the translated file does not validate")

type vip struct {
	addr  netip.Addr
	iface string
	note  string
	pos   Pos
}

type tr struct {
	opt      Options
	issues   []Issue
	vips     []*vip
	vipIdx   map[netip.Addr]*vip
	groups   map[string]*Node
	notify   *yaml.Node
	notifyAt map[string]Pos
	ifCount  map[string]int
	routerID string
	ipvs     *yaml.Node
	// sync is ipvs.sync from lvs_sync_daemon (nil: none); syncIface its
	// interface, syncInstance the VRRP instance whose virtual_router_id
	// keepalived took for the sync id when none was given (empty when one
	// was); vrids are the instances' virtual_router_ids.
	sync         *yaml.Node
	syncIface    string
	syncInstance string
	syncPos      Pos
	vrids        map[string]int64
	services     []*service
	names        map[string]bool
	keys         map[string]Pos
	comments     []string
	// fileOrder is each file's index in the order read, for sorting.
	fileOrder map[string]int
}

type service struct {
	node    *yaml.Node
	name    string
	key     string
	vip     netip.Addr
	pos     Pos
	addVIP  bool
	vipNote string
	// realPos is where each real of node's reals was declared.
	realPos []Pos
	// sorryPos is where the sorry server was declared.
	sorryPos Pos
}

func (t *tr) issue(pos Pos, kind IssueKind, keyword, format string, args ...any) {
	t.issues = append(t.issues, Issue{Pos: pos, Kind: kind, Keyword: keyword, Msg: fmt.Sprintf(format, args...)})
}

// Translate turns a parsed keepalived configuration into a dsrd director
// file. The file always passes dsrd's validation: a service that would
// not is left out and reported. The error is for options that cannot make
// a valid file (a bad node id or peer) and for ErrInvalidOutput.
func Translate(f *File, opt Options) (*Result, error) {
	if opt.Interface != "" {
		if err := config.CheckInterfaceName(opt.Interface); err != nil {
			return nil, fmt.Errorf("--interface: %w", err)
		}
	}
	t := &tr{opt: opt, vipIdx: map[netip.Addr]*vip{}, vrids: map[string]int64{}, groups: map[string]*Node{}, ifCount: map[string]int{},
		names: map[string]bool{}, keys: map[string]Pos{}}
	t.issues = append(t.issues, f.Issues...)
	t.fileOrder = map[string]int{}
	for i, name := range f.Files {
		if _, ok := t.fileOrder[name]; !ok {
			t.fileOrder[name] = i
		}
	}
	// Virtual server groups may be defined after their use: collect them
	// first, and the VRRP instances before the services that use their
	// addresses.
	for _, n := range f.Nodes {
		if n.Name == "virtual_server_group" {
			if len(n.Args) < 1 {
				t.issue(n.Pos, Dropped, n.Name, "no group name")
				continue
			}
			t.groups[n.Args[0]] = n
		}
	}
	var firstInstance *Node
	for _, n := range f.Nodes {
		switch n.Name {
		case "global_defs":
			t.globalDefs(n)
		case "vrrp_instance":
			t.vrrpInstance(n)
			if firstInstance == nil {
				firstInstance = n
			} else {
				t.issue(n.Pos, Changed, n.Name, "%s: keepalived could make another node MASTER of this instance than of %s (%s); dsrd's Raft leader holds every VIP",
					strings.Join(n.Args, " "), strings.Join(firstInstance.Args, " "), firstInstance.Pos)
			}
		}
	}
	for _, n := range f.Nodes {
		switch n.Name {
		case "global_defs", "vrrp_instance", "virtual_server_group":
		case "virtual_server":
			t.virtualServer(n)
		case "vrrp_sync_group":
			t.issue(n.Pos, Replaced, n.Name, "dsrd moves every VIP with the Raft leader, as one sync group")
			for _, c := range n.Children {
				if strings.HasPrefix(c.Name, "notify") {
					t.notifyScript(c)
				}
			}
		case "vrrp_script":
			t.issue(n.Pos, Dropped, n.Name, "no equivalent: dsrd's VIP owner is the Raft leader, and a director gives up VIPs only when their interface goes down")
		case "static_ipaddress", "static_routes", "static_rules":
			t.issue(n.Pos, Dropped, n.Name, "no equivalent: configure static addresses, routes and rules with the system's network configuration")
		case "lvs_sync_daemon":
			t.lvsSyncDaemon(n)
		case "SSL":
			t.issue(n.Pos, Dropped, n.Name, "no equivalent: dsrd's https checks present no client certificate")
		default:
			t.issue(n.Pos, Dropped, n.Name, "no dsrd equivalent")
		}
	}
	return t.finish()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func validName(s string) bool { return nameRE.MatchString(s) && s != "." && s != ".." }

func (t *tr) globalDefs(n *Node) {
	for _, c := range n.Children {
		switch c.Name {
		case "router_id":
			if len(c.Args) > 0 {
				t.routerID = c.Args[0]
			}
		case "lvs_timeouts":
			t.lvsTimeouts(c)
		case "lvs_sync_daemon":
			t.lvsSyncDaemon(c)
		case "lvs_flush", "lvs_flush_onstop":
			t.issue(c.Pos, Replaced, c.Name, "dsrd never flushes IPVS: it manages only the services its file declares and adopts them on restart")
		case "vrrp_garp_master_delay", "vrrp_garp_master_repeat", "vrrp_garp_master_refresh", "vrrp_garp_master_refresh_repeat",
			"vrrp_garp_interval", "vrrp_gna_interval", "vrrp_garp_lower_prio_delay", "vrrp_garp_lower_prio_repeat":
			t.issue(c.Pos, Replaced, c.Name, "dsrd announces a VIP with 3 gratuitous ARPs (or NAs) 1.1 s apart, then one every 30 s: vips[].announce")
		case "enable_script_security", "script_user":
			t.issue(c.Pos, Changed, c.Name, "dsrd runs notify and exec check programs as root, without a shell, with a minimal environment")
		default:
			t.issue(c.Pos, Dropped, c.Name, "no dsrd equivalent")
		}
	}
}

// lvsTimeouts maps `lvs_timeouts tcp N tcpfin N udp N`.
func (t *tr) lvsTimeouts(c *Node) {
	keys := map[string]string{"tcp": "tcp_timeout", "tcpfin": "tcp_fin_timeout", "udp": "udp_timeout"}
	for i := 0; i < len(c.Args); i++ {
		k, ok := keys[c.Args[i]]
		if !ok || i+1 >= len(c.Args) {
			t.issue(c.Pos, Dropped, c.Name, "%q: want tcp, tcpfin or udp and seconds", c.Args[i])
			continue
		}
		i++
		n, err := strconv.ParseUint(c.Args[i], 10, 32)
		if err != nil || n == 0 || n > 2147482 {
			t.issue(c.Pos, Dropped, c.Name, "%s %q: want 1 to 2147482 seconds", c.Args[i-1], c.Args[i])
			continue
		}
		if t.ipvs == nil {
			t.ipvs = mapping()
		}
		add(t.ipvs, k, str(strconv.FormatUint(n, 10)+"s"), "")
	}
}

// vrrpReplaced are the VRRP settings whose purpose dsrd serves by Raft.
var vrrpReplaced = map[string]string{
	"state":                      "the Raft leader holds the VIPs; there is no configured MASTER",
	"priority":                   "the Raft leader holds the VIPs; use dsrd failover --to to choose a director",
	"virtual_router_id":          "no VRRP: the directors coordinate over Raft (cluster.peers)",
	"authentication":             "no VRRP: the Raft port uses mutual TLS (cluster.tls)",
	"nopreempt":                  "a Raft leader keeps the VIPs until it fails or hands them over (dsrd failover): never preempted",
	"preempt_delay":              "a Raft leader is never preempted",
	"unicast_peer":               "the directors reach each other at cluster.peers",
	"unicast_src_ip":             "the directors reach each other at cluster.peers",
	"mcast_src_ip":               "no VRRP multicast: the directors reach each other at cluster.peers",
	"version":                    "no VRRP",
	"garp_master_delay":          "dsrd announces a VIP with 3 gratuitous ARPs (or NAs) 1.1 s apart, then one every 30 s: vips[].announce",
	"garp_master_repeat":         "dsrd announces a VIP with 3 gratuitous ARPs (or NAs) 1.1 s apart, then one every 30 s: vips[].announce",
	"garp_master_refresh":        "dsrd announces a VIP with 3 gratuitous ARPs (or NAs) 1.1 s apart, then one every 30 s: vips[].announce",
	"garp_master_refresh_repeat": "dsrd announces a VIP with 3 gratuitous ARPs (or NAs) 1.1 s apart, then one every 30 s: vips[].announce",
	"dont_track_primary":         "a director goes to FAULT when a VIP's interface is down",
}

func (t *tr) vrrpInstance(n *Node) {
	name := strings.Join(n.Args, " ")
	iface := ""
	for _, c := range n.Children {
		if c.Name == "interface" && len(c.Args) > 0 {
			if err := config.CheckInterfaceName(c.Args[0]); err != nil {
				t.issue(c.Pos, Dropped, c.Name, "%v: the VIPs of this instance go on node.interface", err)
				continue
			}
			iface = c.Args[0]
		}
	}
	for _, c := range n.Children {
		switch c.Name {
		case "interface":
			if iface != "" {
				t.ifCount[iface]++
			}
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			for _, a := range c.Children {
				t.vrrpAddress(name, c.Name, iface, a)
			}
		case "notify_master", "notify_backup", "notify_fault", "notify", "notify_stop", "notify_deleted", "notify_master_rx_lower_pri":
			t.notifyScript(c)
		case "advert_int":
			adv := strings.Join(c.Args, " ")
			t.comments = append(t.comments, fmt.Sprintf("keepalived's vrrp_instance %s had advert_int %s (%s): a BACKUP took over after about 3 adverts. "+
				"dsrd's failover time is Raft's: cluster.heartbeat_timeout (500ms by default, about a second to fail over); "+
				"100ms matches advert_int 0.1 (docs/benchmarks.md).", name, adv, c.Pos))
			t.issue(c.Pos, Replaced, c.Name, "failover timing is Raft's (cluster.heartbeat_timeout, election_timeout); see the comment in the output")
		case "lvs_sync_daemon_interface":
			// keepalived before 1.2.20: the instance's interface for sync,
			// its virtual_router_id as the sync id.
			if len(c.Args) != 1 {
				t.issue(c.Pos, Dropped, c.Name, "want one interface name")
			} else if err := config.CheckInterfaceName(c.Args[0]); err != nil {
				t.issue(c.Pos, Dropped, c.Name, "%v", err)
			} else if t.sync != nil {
				t.issue(c.Pos, Dropped, c.Name, "ipvs.sync is already set from %s: dsrd runs one pair of sync daemons", t.syncPos)
			} else {
				t.sync, t.syncIface, t.syncInstance, t.syncPos = mapping(kv{key: "enabled", value: boolean(true)}), c.Args[0], name, c.Pos
				t.issue(c.Pos, Changed, c.Name, "ipvs.sync: every director runs the backup sync daemon and the VIP owner the master too (keepalived switched one daemon with the VRRP state)")
			}
		case "virtual_router_id":
			if len(c.Args) == 1 {
				if id, err := strconv.ParseInt(c.Args[0], 10, 64); err == nil {
					t.vrids[name] = id
				}
			}
			t.issue(c.Pos, Replaced, c.Name, "%s", vrrpReplaced[c.Name])
		default:
			if why, ok := vrrpReplaced[c.Name]; ok {
				t.issue(c.Pos, Replaced, c.Name, "%s", why)
			} else {
				t.issue(c.Pos, Dropped, c.Name, "no dsrd equivalent for this vrrp_instance setting")
			}
		}
	}
}

// lvsSyncDaemon maps keepalived's
// `lvs_sync_daemon IFNAME INSTANCE [id N] [maxlen N] [port N] [ttl N] [group ADDR]`
// to ipvs.sync, each part checked by dsrd's rules (a bad one is dropped
// with its reason, the rest kept).
func (t *tr) lvsSyncDaemon(c *Node) {
	if t.sync != nil {
		t.issue(c.Pos, Dropped, c.Name, "ipvs.sync is already set from %s: dsrd runs one pair of sync daemons", t.syncPos)
		return
	}
	if len(c.Args) < 1 {
		t.issue(c.Pos, Dropped, c.Name, "want an interface name")
		return
	}
	if err := config.CheckInterfaceName(c.Args[0]); err != nil {
		t.issue(c.Pos, Dropped, c.Name, "%v", err)
		return
	}
	m := mapping(kv{key: "enabled", value: boolean(true)})
	t.syncIface, t.syncPos = c.Args[0], c.Pos
	args := c.Args[1:]
	if len(args) > 0 && !slices.Contains([]string{"id", "maxlen", "port", "ttl", "group"}, args[0]) {
		t.syncInstance = args[0] // keepalived's default sync id is its virtual_router_id
		args = args[1:]
	}
	ranges := map[string][2]int64{"id": {0, 255}, "maxlen": {ipvs.MinSyncMaxLenBackup, int64(ipvs.MaxSyncMaxLen(netip.Addr{}))}, "port": {1, 65535}, "ttl": {1, 255}}
	keys := map[string]string{"id": "sync_id", "maxlen": "maxlen", "port": "port", "ttl": "ttl"}
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			t.issue(c.Pos, Dropped, c.Name, "%q has no value", args[i])
			break
		}
		k, v := args[i], args[i+1]
		switch k {
		case "group":
			g, err := netip.ParseAddr(v)
			if err != nil || g.Zone() != "" || g.Is4In6() || !g.IsMulticast() {
				t.issue(c.Pos, Dropped, c.Name, "group %q is not a multicast address: the default 224.0.0.81 is used", v)
				continue
			}
			add(m, "group", str(g.String()), "")
		case "id", "maxlen", "port", "ttl":
			n, err := strconv.ParseInt(v, 10, 64)
			if r := ranges[k]; err != nil || n < r[0] || n > r[1] {
				t.issue(c.Pos, Dropped, c.Name, "%s %q: want %d to %d; the kernel's default is used", k, v, r[0], r[1])
				continue
			}
			if k == "id" {
				t.syncInstance = ""
			}
			add(m, keys[k], num(n), "")
		default:
			t.issue(c.Pos, Dropped, c.Name, "%q is not an lvs_sync_daemon option (id, maxlen, port, ttl, group)", k)
		}
	}
	t.sync = m
	t.issue(c.Pos, Changed, c.Name, "ipvs.sync: every director runs the backup sync daemon and the VIP owner the master too (keepalived switched one daemon with the VRRP state)")
}

// finishSync completes ipvs.sync once the instances and node.interface are
// known: the interface unless it is node.interface, and keepalived's
// default sync id (the instance's virtual_router_id).
func (t *tr) finishSync(iface string) {
	if t.sync == nil {
		return
	}
	if t.syncIface != iface {
		t.sync.Content = append(t.sync.Content[:2], append([]*yaml.Node{str("interface"), str(t.syncIface)}, t.sync.Content[2:]...)...)
	}
	if t.syncInstance != "" {
		if id, ok := t.vrids[t.syncInstance]; ok && id >= 0 && id <= 255 {
			add(t.sync, "sync_id", num(id), fmt.Sprintf("keepalived's default: vrrp_instance %s's virtual_router_id", t.syncInstance))
		} else if ok {
			t.issue(t.syncPos, Dropped, "lvs_sync_daemon", "sync id: vrrp_instance %s's virtual_router_id %d is out of 0 to 255: sync_id 0 is used", t.syncInstance, id)
		}
	}
	if t.ipvs == nil {
		t.ipvs = mapping()
	}
	add(t.ipvs, "sync", t.sync, "from "+t.syncPos.String()+": IPVS connection sync (docs/sync.md)")
}

// ipvsComment says where the ipvs section came from.
func ipvsComment(m *yaml.Node) string {
	var from []string
	if len(m.Content) > 2 || get(m, "sync") == nil {
		from = append(from, "global_defs lvs_timeouts")
	}
	if get(m, "sync") != nil {
		from = append(from, "lvs_sync_daemon")
	}
	return "from " + strings.Join(from, " and ")
}

// vrrpAddress maps one line of virtual_ipaddress:
// ADDR[/LEN] [dev IF] [brd ..] [scope ..] [label ..] ...
func (t *tr) vrrpAddress(instance, block, iface string, a *Node) {
	words := append([]string{a.Name}, a.Args...)
	addrText := words[0]
	prefix, err := netip.ParsePrefix(addrText)
	var addr netip.Addr
	if err == nil {
		addr = prefix.Addr()
		if prefix.Bits() != addr.BitLen() {
			t.issue(a.Pos, Changed, block, "%s: dsrd adds a VIP as a host address (/%d), not with prefix /%d: the subnet route keepalived added with it is not added", addrText, addr.BitLen(), prefix.Bits())
		}
	} else if addr, err = netip.ParseAddr(addrText); err != nil {
		t.issue(a.Pos, Dropped, block, "%q is not an IP address", addrText)
		return
	}
	for i := 1; i < len(words); i++ {
		switch words[i] {
		case "dev":
			if i+1 < len(words) {
				if err := config.CheckInterfaceName(words[i+1]); err != nil {
					t.issue(a.Pos, Dropped, block, "%s: dev %v: kept on the instance's interface", addrText, err)
				} else {
					iface = words[i+1]
				}
				i++
			}
		case "no_track":
			t.issue(a.Pos, Replaced, block, "no_track: a director goes to FAULT only for a VIP's interface")
		default:
			opt := words[i]
			if i+1 < len(words) && opt != "home" && opt != "nodad" && opt != "noprefixroute" && opt != "autojoin" {
				i++
			}
			t.issue(a.Pos, Dropped, block, "%s: address option %q has no dsrd equivalent", addrText, opt)
		}
	}
	if !addr.IsGlobalUnicast() || addr.Zone() != "" || addr.Is4In6() {
		t.issue(a.Pos, Dropped, block, "%s: dsrd VIPs are unicast addresses without zone, not link-local, loopback or multicast", addrText)
		return
	}
	if v, ok := t.vipIdx[addr]; ok {
		if v.iface != iface {
			t.issue(a.Pos, Changed, block, "%s is also on %s (%s): kept there", addr, v.iface, v.pos)
		}
		return
	}
	note := ""
	if block == "virtual_ipaddress_excluded" {
		note = "from virtual_ipaddress_excluded of " + instance + " (keepalived kept it out of VRRP adverts; dsrd sends no adverts)"
	}
	v := &vip{addr: addr, iface: iface, note: note, pos: a.Pos}
	t.vips = append(t.vips, v)
	t.vipIdx[addr] = v
}

var notifyKeys = map[string]string{"notify_master": "master", "notify_backup": "backup", "notify_fault": "fault", "notify": "any"}

func (t *tr) notifyScript(c *Node) {
	key, ok := notifyKeys[c.Name]
	if !ok {
		t.issue(c.Pos, Dropped, c.Name, "no equivalent: dsrd runs notify.master, backup, fault and any")
		return
	}
	if len(c.Args) == 0 {
		t.issue(c.Pos, Dropped, c.Name, "no script")
		return
	}
	argv, ok := splitScript(c.Args[0])
	if !ok || len(argv) == 0 || !strings.HasPrefix(argv[0], "/") || len(argv) > 32 || strings.ContainsRune(c.Args[0], 0) {
		t.issue(c.Pos, Dropped, c.Name, "%q: dsrd runs an absolute program path and at most 31 arguments, without a shell", c.Args[0])
		return
	}
	if len(c.Args) > 1 {
		t.issue(c.Pos, Changed, c.Name, "user %q: dsrd runs notify programs as root", strings.Join(c.Args[1:], " "))
	}
	if t.notify == nil {
		t.notify = mapping()
		t.notifyAt = map[string]Pos{}
	}
	if at, ok := t.notifyAt[key]; ok {
		t.issue(c.Pos, Dropped, c.Name, "dsrd has one notify.%s for the director; the one at %s is kept", key, at)
		return
	}
	t.notifyAt[key] = c.Pos
	comment := ""
	if key == "any" {
		comment = "keepalived passed the script its arguments (INSTANCE|GROUP, name, state, priority); dsrd sets DSRD_STATE, DSRD_PREVIOUS_STATE, DSRD_REASON, DSRD_VIPS instead"
		t.issue(c.Pos, Changed, c.Name, "keepalived appended arguments (type, name, state, priority); dsrd passes the state in DSRD_STATE and friends")
	}
	add(t.notify, key, strs(argv), comment)
}

func (t *tr) finish() (*Result, error) {
	nodeID := t.opt.NodeID
	if nodeID == "" {
		nodeID = DefaultNodeID
		if validName(t.routerID) {
			nodeID = t.routerID
		}
	}
	if !validName(nodeID) {
		return nil, fmt.Errorf("node id %q: want 1 to 64 of A-Z a-z 0-9 . _ -", nodeID)
	}
	bind := t.opt.Bind
	if !bind.IsValid() {
		bind = DefaultBind
	}
	peers := t.opt.Peers
	if len(peers) == 0 {
		peers = []string{nodeID + "@" + bind.String()}
	}
	iface := t.opt.Interface
	ifaceComment := "set by --interface"
	if iface == "" {
		best := 0
		for name, n := range t.ifCount {
			if n > best || n == best && name < iface {
				iface, best = name, n
			}
		}
		ifaceComment = "the interface of most vrrp_instances"
		if iface == "" {
			iface = DefaultInterface
			ifaceComment = "keepalived named no VRRP interface: EDIT this to the interface facing the clients"
		}
	}
	for _, v := range t.vips {
		if v.iface == "" {
			v.iface = iface
		}
	}
	t.finishSync(iface)

	// Every service's VIP must be a dsrd VIP: keepalived may have run LVS
	// without VRRP (the VIPs owned some other way). extraVIPs are those
	// the given services need beyond the VRRP ones.
	extraVIPs := func(services []*service) []*vip {
		var out []*vip
		seen := map[netip.Addr]bool{}
		for _, s := range services {
			if !s.addVIP || !s.vip.IsValid() || seen[s.vip] {
				continue
			}
			if _, ok := t.vipIdx[s.vip]; ok {
				continue
			}
			seen[s.vip] = true
			out = append(out, &vip{addr: s.vip, iface: iface, pos: s.pos,
				note: "added for virtual_server at " + s.pos.String() + ": no vrrp_instance held it, and a dsrd service's VIP is held by the Raft leader"})
		}
		return out
	}
	head := func(services []*service) *yaml.Node {
		node := mapping(
			kv{key: "id", value: str(nodeID)},
			kv{key: "interface", value: str(iface), comment: ifaceComment},
		)
		if t.notify != nil {
			add(node, "notify", t.notify, "keepalived's notify scripts, run on VIP ownership changes (docs/config.md, node.notify)")
		}
		clusterComment := "keepalived has no Raft cluster. EDIT: this is a single-node cluster on loopback (no TLS needed there), " +
			"made so that dsrd config check accepts the file as it is. An HA pair is two directors and a witness: " +
			"set bind to this director's address, list every member in peers, and add tls (docs/config.md#certificates)."
		if t.opt.Bind.IsValid() || len(t.opt.Peers) > 0 {
			clusterComment = "set by --bind and --peer."
		}
		if len(t.comments) > 0 {
			clusterComment += "\n" + strings.Join(t.comments, "\n")
		}
		cluster := mapping(kv{key: "bind", value: str(bind.String())}, kv{key: "peers", value: strs(peers)})
		if !bind.Addr().IsLoopback() {
			add(cluster, "tls", mapping(
				kv{key: "cert", value: str("/etc/dsrd/tls/" + nodeID + ".crt")},
				kv{key: "key", value: str("/etc/dsrd/tls/" + nodeID + ".key")},
				kv{key: "ca", value: str("/etc/dsrd/tls/ca.crt")},
			), "Off loopback the Raft port runs mutual TLS: make these files with dsrd tls (docs/config.md#certificates).")
		}
		doc := mapping(
			kv{key: "node", value: node, comment: "Imported from keepalived by dsrd config import keepalived. Every choice made is commented; the report on stderr lists what was not translated."},
			kv{key: "cluster", value: cluster, comment: clusterComment},
		)
		if t.ipvs != nil {
			add(doc, "ipvs", t.ipvs, ipvsComment(t.ipvs))
		}
		if vips := append(append([]*vip(nil), t.vips...), extraVIPs(services)...); len(vips) > 0 {
			vs := seq()
			for _, v := range vips {
				m := mapping(kv{key: "address", value: str(v.addr.String()), comment: v.note})
				if v.iface != iface {
					add(m, "interface", str(v.iface), "")
				}
				vs.Content = append(vs.Content, m)
			}
			add(doc, "vips", vs, "The VRRP addresses: held by the Raft leader, announced with gratuitous ARP / unsolicited NA.")
		}
		if len(services) > 0 {
			ss := seq()
			for _, s := range services {
				ss.Content = append(ss.Content, s.node)
			}
			add(doc, "services", ss, "")
		}
		return doc
	}
	marshal := func(doc *yaml.Node) ([]byte, error) {
		var b bytes.Buffer
		validUTF8(doc)
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
			return nil, fmt.Errorf("marshal: %w", err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("marshal: %w", err)
		}
		return b.Bytes(), nil
	}
	// Check the skeleton, then each service on its own: one that dsrd
	// would refuse is left out with dsrd's reasons.
	base, err := marshal(head(nil))
	if err != nil {
		return nil, err
	}
	if err := config.Check("import", base, config.KindDirector); err != nil {
		return nil, fmt.Errorf("node and cluster: %w", err)
	}
	var kept []*service
	for _, s := range t.services {
		ok, err := t.validService(s, func(s *service) ([]byte, error) { return marshal(head([]*service{s})) })
		if err != nil {
			return nil, err
		}
		if ok {
			kept = append(kept, s)
		}
	}
	extra := extraVIPs(kept)
	for _, v := range extra {
		t.issue(v.pos, Changed, "virtual_server", "%s was held by no vrrp_instance: added to vips, held by the Raft leader on %s", v.addr, iface)
	}
	out, err := marshal(head(kept))
	if err != nil {
		return nil, err
	}
	if err := config.Check("import", out, config.KindDirector); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidOutput, err)
	}
	if t.opt.Logger != nil {
		t.opt.Logger.Debug("keepalived import translated", "vips", len(t.vips)+len(extra), "services", len(kept), "issues", len(t.issues))
	}
	sort.SliceStable(t.issues, func(i, j int) bool {
		a, b := t.issues[i].Pos, t.issues[j].Pos
		if a.File != b.File {
			return t.fileOrder[a.File] < t.fileOrder[b.File]
		}
		return a.Line < b.Line
	})
	// A group's services repeat their virtual_server's issues: once each.
	seen := map[Issue]bool{}
	issues := t.issues[:0]
	for _, i := range t.issues {
		if !seen[i] {
			seen[i] = true
			issues = append(issues, i)
		}
	}
	return &Result{YAML: out, Issues: issues, VIPs: len(t.vips) + len(extra), Services: len(kept)}, nil
}

// seconds parses a keepalived TIMER (seconds, fractions allowed) into a
// Go duration string.
func seconds(s string) (string, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e7 || math.IsNaN(f) {
		return "", false
	}
	ms := int64(math.Round(f * 1000))
	if ms%1000 == 0 {
		return strconv.FormatInt(ms/1000, 10) + "s", true
	}
	return strconv.FormatInt(ms, 10) + "ms", true
}

// realErrRE finds the real an error of a one-service file is about.
var realErrRE = regexp.MustCompile(`^services\[0\]\.reals\[([0-9]+)\]`)

// validService checks s alone in a file (as render writes it). When dsrd
// refuses only some reals or the sorry server, they are left out and
// reported, and the rest is checked again; otherwise the whole service is
// left out and reported with dsrd's reasons.
func (t *tr) validService(s *service, render func(*service) ([]byte, error)) (bool, error) {
	for {
		data, err := render(s)
		if err != nil {
			return false, err
		}
		err = config.Check("import", data, config.KindDirector)
		if err == nil {
			return true, nil
		}
		var errs *config.Errors
		if !errors.As(err, &errs) {
			return false, err
		}
		badReals := map[int][]string{}
		var sorry, other []string
		for _, e := range errs.List {
			switch m := realErrRE.FindStringSubmatch(e.Msg); {
			case m != nil:
				i, _ := strconv.Atoi(m[1])
				badReals[i] = append(badReals[i], e.Msg)
			case strings.HasPrefix(e.Msg, "services[0].sorry_server"):
				sorry = append(sorry, e.Msg)
			default:
				other = append(other, e.Msg)
			}
		}
		reals := get(s.node, "reals")
		if len(other) > 0 || reals == nil || len(badReals) >= len(reals.Content) {
			var msgs []string
			for _, e := range errs.List {
				msgs = append(msgs, e.Msg)
			}
			t.issue(s.pos, Dropped, "virtual_server", "%s refused by dsrd's validation: %s", s.name, strings.Join(msgs, "; "))
			return false, nil
		}
		if len(sorry) > 0 {
			remove(s.node, "sorry_server")
			t.issue(s.sorryPos, Dropped, "sorry_server", "%s: refused by dsrd's validation: %s", s.name, strings.Join(sorry, "; "))
		}
		var keep []*yaml.Node
		var keepPos []Pos
		for i, r := range reals.Content {
			if msgs, bad := badReals[i]; bad {
				addr := ""
				if a := get(r, "address"); a != nil {
					addr = a.Value
				}
				t.issue(s.realPos[i], Dropped, "real_server", "%s real %s: refused by dsrd's validation: %s", s.name, addr, strings.Join(msgs, "; "))
				continue
			}
			keep = append(keep, r)
			keepPos = append(keepPos, s.realPos[i])
		}
		if len(keep) == len(reals.Content) && len(sorry) == 0 {
			// Nothing left out: the errors name no real we hold.
			t.issue(s.pos, Dropped, "virtual_server", "%s refused by dsrd's validation: %v", s.name, err)
			return false, nil
		}
		reals.Content, s.realPos = keep, keepPos
	}
}

// remove deletes key from mapping m.
func remove(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}
