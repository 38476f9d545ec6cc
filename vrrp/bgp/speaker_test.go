package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// The loopback lab: the router, a second gobgp, listens on 127.0.0.1 and
// ::1; the speaker dials it from 127.0.0.2 (IPv4) and ::1 (IPv6).
var (
	routerV4  = netip.MustParseAddr("127.0.0.1")
	speakerV4 = netip.MustParseAddr("127.0.0.2")
	loopV6    = netip.MustParseAddr("::1")
)

const (
	routerASN  = 64512
	speakerASN = 64513
	waitFor    = 20 * time.Second
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() && os.Getenv("DSRD_TEST_BGP_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// freePort returns a TCP port free on both loopback addresses at the
// moment of asking.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port))
		if err == nil {
			l6.Close()
			return port
		}
	}
	t.Fatal("no free port on 127.0.0.1 and ::1")
	return 0
}

// router is a gobgp server playing the router: it listens, accepts any
// route, and its peers are passive (the speaker dials).
type router struct {
	srv  *server.BgpServer
	port int
}

func startRouter(t *testing.T, neighbors ...netip.Addr) *router {
	t.Helper()
	ctx := t.Context()
	port := freePort(t)
	srv := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), nil))
	go srv.Serve()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: routerASN, RouterId: "192.0.2.1", ListenPort: int32(port),
		ListenAddresses: []string{"127.0.0.1", "::1"},
	}}); err != nil {
		t.Fatalf("router: StartBgp: %v", err)
	}
	t.Cleanup(srv.Stop)
	for _, n := range neighbors {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n.String(), PeerAsn: speakerASN},
			Transport: &api.Transport{PassiveMode: true},
			Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3}},
			AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family(n), Enabled: true}}},
		}}); err != nil {
			t.Fatalf("router: AddPeer %s: %v", n, err)
		}
	}
	return &router{srv: srv, port: port}
}

// route is what the router holds for a prefix.
type route struct {
	nexthop     netip.Addr
	communities []uint32
	med         *uint32
}

func (r route) String() string {
	med := "none"
	if r.med != nil {
		med = fmt.Sprint(*r.med)
	}
	cs := make([]string, len(r.communities))
	for i, c := range r.communities {
		cs[i] = formatCommunity(c)
	}
	return fmt.Sprintf("nexthop %s communities %v med %s", r.nexthop, cs, med)
}

// routes returns the router's best routes of both families received
// from a peer.
func (r *router) routes(t *testing.T) map[netip.Prefix]route {
	t.Helper()
	out := map[netip.Prefix]route{}
	for _, fam := range []gobgp.Family{gobgp.RF_IPv4_UC, gobgp.RF_IPv6_UC} {
		err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: fam},
			func(nlri gobgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					if !p.Best || p.Withdrawal || !p.PeerAddress.IsValid() {
						continue // the router's own routes are not of interest
					}
					var rt route
					for _, a := range p.Attrs {
						switch a := a.(type) {
						case *gobgp.PathAttributeNextHop:
							rt.nexthop = a.Value
						case *gobgp.PathAttributeMpReachNLRI:
							rt.nexthop = a.Nexthop
						case *gobgp.PathAttributeCommunities:
							rt.communities = slices.Clone(a.Value)
						case *gobgp.PathAttributeMultiExitDisc:
							v := a.Value
							rt.med = &v
						}
					}
					pfx, err := netip.ParsePrefix(nlri.String())
					if err != nil {
						t.Errorf("router: nlri %s: %v", nlri, err)
						continue
					}
					out[pfx] = rt
				}
			})
		if err != nil {
			t.Fatalf("router: ListPath: %v", err)
		}
	}
	return out
}

// peer returns the router's view of a neighbor.
func (r *router) peer(t *testing.T, a netip.Addr) *api.Peer {
	t.Helper()
	var out *api.Peer
	if err := r.srv.ListPeer(t.Context(), &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) { out = p }); err != nil {
		t.Fatalf("router: ListPeer: %v", err)
	}
	return out
}

func (r *router) established(t *testing.T, a netip.Addr) bool {
	p := r.peer(t, a)
	return p != nil && p.GetState().GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED
}

// announce makes the router originate routes (to test what the speaker
// does with received ones).
func (r *router) announce(t *testing.T, prefixes []netip.Prefix) {
	t.Helper()
	paths := make([]*apiutil.Path, 0, len(prefixes))
	for _, p := range prefixes {
		ap, err := path(p, attrs{}, false)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, ap)
	}
	if _, err := r.srv.AddPath(apiutil.AddPathRequest{Paths: paths}); err != nil {
		t.Fatalf("router: AddPath: %v", err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still not %s: %s", waitFor, what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func speakerConfig(port int) Config {
	med := uint32(10)
	return Config{
		ASN:         speakerASN,
		RouterID:    netip.MustParseAddr("192.0.2.2"),
		Communities: []string{"64513:100", "no-export"},
		MED:         &med,
		Peers: []Peer{
			{Address: routerV4, ASN: routerASN, Port: uint16(port), SourceAddress: speakerV4, HoldTime: 9 * time.Second},
			{Address: loopV6, ASN: routerASN, Port: uint16(port)},
		},
	}
}

func startSpeaker(t *testing.T, cfg Config) *Speaker {
	t.Helper()
	s, err := New(testLogger(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	})
	return s
}

func wantRoutes(t *testing.T, r *router, want map[netip.Prefix]route) func() (bool, string) {
	return func() (bool, string) {
		got := r.routes(t)
		ok := len(got) == len(want)
		for p, w := range want {
			g, present := got[p]
			if !present || g.String() != w.String() {
				ok = false
			}
		}
		return ok, fmt.Sprintf("router holds %v, want %v", got, want)
	}
}

func u32(v uint32) *uint32 { return &v }

func TestSpeakerAgainstGobgpRouter(t *testing.T) {
	r := startRouter(t, speakerV4, loopV6)
	// Routes the router sends: held by gobgp, imported nowhere.
	received := prefixes("198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32")
	r.announce(t, received)
	cfg := speakerConfig(r.port)
	s := startSpeaker(t, cfg)
	ctx := t.Context()

	vip1, vip2, vip6 := netip.MustParsePrefix("203.0.113.10/32"), netip.MustParsePrefix("203.0.113.11/32"), netip.MustParsePrefix("2001:db8:113::10/128")
	if err := s.Announce(ctx, []netip.Prefix{vip1, vip2, vip6}); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	base := []uint32{64513<<16 | 100, communityNoExport}
	want := map[netip.Prefix]route{
		vip1: {nexthop: speakerV4, communities: base, med: u32(10)},
		vip2: {nexthop: speakerV4, communities: base, med: u32(10)},
		vip6: {nexthop: loopV6, communities: base, med: u32(10)},
	}
	eventually(t, "announced with next hop self, communities and MED", wantRoutes(t, r, want))

	eventually(t, "both sessions established in Status", func() (bool, string) {
		st := s.Status()
		ok := len(st.Peers) == 2
		for _, p := range st.Peers {
			// Since is set from the first second (Uptime may be 0).
			ok = ok && p.State == "established" && !p.Since.IsZero() && p.Uptime >= 0 && p.BFD == ""
		}
		// IPv4 prefixes go to the IPv4 peer, IPv6 to the IPv6 one.
		ok = ok && st.Peers[0].Announced == 2 && st.Peers[1].Announced == 1
		return ok, fmt.Sprintf("%+v", st)
	})
	if st := s.Status(); !slices.Equal(st.Announced, []netip.Prefix{vip1, vip2, vip6}) || st.Graceful {
		t.Errorf("Status: announced %v graceful %v", st.Announced, st.Graceful)
	}

	// Nothing received is imported: the speaker's RIB holds its own paths only.
	eventually(t, "the router's routes received", func() (bool, string) {
		var p *api.Peer
		s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: routerV4.String()}, func(ap *api.Peer) { p = ap })
		n := uint64(0)
		for _, af := range p.GetAfiSafis() {
			n += af.GetState().GetReceived()
		}
		return n == uint64(len(received)), fmt.Sprintf("received %d", n)
	})
	var rib []string
	s.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gobgp.RF_IPv4_UC}, func(nlri gobgp.NLRI, _ []*apiutil.Path) {
		rib = append(rib, nlri.String())
	})
	slices.Sort(rib)
	if !slices.Equal(rib, []string{"203.0.113.10/32", "203.0.113.11/32"}) {
		t.Errorf("speaker's RIB %v: received routes imported", rib)
	}

	// Idempotent: the same set changes nothing.
	if err := s.Announce(ctx, []netip.Prefix{vip6, vip2, vip1}); err != nil {
		t.Fatalf("Announce again: %v", err)
	}

	// Graceful shutdown: 65535:0 and the worst MED but one, and back.
	if err := s.SetGraceful(ctx, true); err != nil {
		t.Fatalf("SetGraceful(true): %v", err)
	}
	gs := append(slices.Clone(base), CommunityGracefulShutdown)
	eventually(t, "announced with GRACEFUL_SHUTDOWN", wantRoutes(t, r, map[netip.Prefix]route{
		vip1: {nexthop: speakerV4, communities: gs, med: u32(4294967294)},
		vip2: {nexthop: speakerV4, communities: gs, med: u32(4294967294)},
		vip6: {nexthop: loopV6, communities: gs, med: u32(4294967294)},
	}))
	if !s.Status().Graceful {
		t.Error("Status: not graceful")
	}
	if err := s.SetGraceful(ctx, false); err != nil {
		t.Fatalf("SetGraceful(false): %v", err)
	}
	eventually(t, "announced without GRACEFUL_SHUTDOWN", wantRoutes(t, r, want))

	// A smaller set withdraws the rest.
	if err := s.Announce(ctx, []netip.Prefix{vip2}); err != nil {
		t.Fatalf("Announce smaller: %v", err)
	}
	eventually(t, "withdrawn", wantRoutes(t, r, map[netip.Prefix]route{vip2: want[vip2]}))

	// New attributes are announced at once, the sessions kept.
	cfg2 := cloneConfig(cfg)
	cfg2.Communities, cfg2.MED = []string{"64513:200"}, nil
	if err := s.Reconfigure(ctx, cfg2); err != nil {
		t.Fatalf("Reconfigure attributes: %v", err)
	}
	eventually(t, "announced with the new attributes", wantRoutes(t, r, map[netip.Prefix]route{
		vip2: {nexthop: speakerV4, communities: []uint32{64513<<16 | 200}},
	}))

	// Removing a peer closes its session; the other stays.
	notifications := r.peer(t, speakerV4).GetState().GetMessages().GetReceived().GetNotification()
	cfg3 := cloneConfig(cfg2)
	cfg3.Peers = cfg3.Peers[:1]
	if err := s.Reconfigure(ctx, cfg3); err != nil {
		t.Fatalf("Reconfigure removing a peer: %v", err)
	}
	eventually(t, "the IPv6 session closed", func() (bool, string) {
		p := r.peer(t, loopV6)
		return p.GetState().GetSessionState() != api.PeerState_SESSION_STATE_ESTABLISHED, p.GetState().GetSessionState().String()
	})
	if n := r.peer(t, speakerV4).GetState().GetMessages().GetReceived().GetNotification(); n != notifications || !r.established(t, speakerV4) {
		t.Errorf("the IPv4 session was reset: %d notifications, was %d", n, notifications)
	}
	if st := s.Status(); len(st.Peers) != 1 || st.Peers[0].Address != routerV4 {
		t.Errorf("Status after removing a peer: %+v", st)
	}
	stopAndCheck(t, r, s)
}

// stopAndCheck stops the speaker: everything withdrawn, the session
// closed with a Cease.
func stopAndCheck(t *testing.T, r *router, s *Speaker) {
	t.Helper()
	stopCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := s.Stop(stopCtx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	eventually(t, "all routes gone and the session closed after Stop", func() (bool, string) {
		got := r.routes(t)
		ok := len(got) == 0 && !r.established(t, speakerV4)
		return ok, fmt.Sprintf("routes %v", got)
	})
	if n := r.peer(t, speakerV4).GetState().GetMessages().GetReceived().GetNotification(); n == 0 {
		t.Error("the router received no NOTIFICATION")
	}
	if err := s.Announce(t.Context(), prefixes("203.0.113.10/32")); err != ErrStopped {
		t.Errorf("Announce after Stop: %v", err)
	}
}

// TestReconfigureRestart: a new router id restarts the server; the
// prefixes are announced again. Not under the race detector: gobgp's
// StartBgp writes package-level variables (table.SelectionOptions,
// table.UseMultiplePaths, pkg/server/server.go:2680 in v4.8.0) that the
// other server in this process, the router, reads while it processes the
// session going down. dsrd runs one server at a time, stopped before the
// next starts.
func TestReconfigureRestart(t *testing.T) {
	if raceEnabled {
		t.Skip("gobgp v4.8.0's StartBgp writes package-level variables the router's gobgp in this process reads (see the comment)")
	}
	r := startRouter(t, speakerV4)
	cfg := speakerConfig(r.port)
	cfg.Peers = cfg.Peers[:1]
	s := startSpeaker(t, cfg)
	ctx := t.Context()
	vip := netip.MustParsePrefix("203.0.113.10/32")
	if err := s.Announce(ctx, []netip.Prefix{vip}); err != nil {
		t.Fatalf("Announce: %v", err)
	}
	want := map[netip.Prefix]route{vip: {nexthop: speakerV4, communities: []uint32{64513<<16 | 100, communityNoExport}, med: u32(10)}}
	eventually(t, "announced", wantRoutes(t, r, want))
	cfg2 := cloneConfig(cfg)
	cfg2.RouterID = netip.MustParseAddr("192.0.2.3")
	if err := s.Reconfigure(ctx, cfg2); err != nil {
		t.Fatalf("Reconfigure router id: %v", err)
	}
	eventually(t, "re-established with the new router id, routes back", func() (bool, string) {
		p := r.peer(t, speakerV4)
		ok, state := wantRoutes(t, r, want)()
		return ok && p.GetState().GetRouterId() == "192.0.2.3" && r.established(t, speakerV4), state + " router id " + p.GetState().GetRouterId()
	})
	stopAndCheck(t, r, s)
}

// TestMaxPrefix: a router sending more than MaxReceivedPrefixes routes has
// its session cut with a NOTIFICATION.
func TestMaxPrefix(t *testing.T) {
	r := startRouter(t, speakerV4)
	many := make([]netip.Prefix, 0, MaxReceivedPrefixes+1)
	for i := range MaxReceivedPrefixes + 1 {
		many = append(many, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 32))
	}
	r.announce(t, many)
	cfg := speakerConfig(r.port)
	cfg.Peers = cfg.Peers[:1]
	startSpeaker(t, cfg)
	eventually(t, "the session cut by the speaker", func() (bool, string) {
		p := r.peer(t, speakerV4)
		n := p.GetState().GetMessages().GetReceived().GetNotification()
		return n > 0, fmt.Sprintf("%s, %d notifications", p.GetState().GetSessionState(), n)
	})
}

func TestCallBoundedByContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	block := make(chan struct{})
	defer close(block)
	if err := call(ctx, func() error { <-block; return nil }); err != context.DeadlineExceeded {
		t.Errorf("call: %v, want the context's error", err)
	}
}
