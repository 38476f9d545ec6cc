package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Session constants.
const (
	// connectRetry is how long gobgp waits before it dials an unreachable
	// router again, in seconds: short, so a router that comes back gets
	// the routes within seconds; a refused connection costs nothing.
	connectRetry = 5
	// MaxReceivedPrefixes is how many routes a router may send before the
	// session is cut (Cease, maximum number of prefixes reached): the
	// speaker imports none of them, but gobgp holds what it received.
	MaxReceivedPrefixes = 100
	// statusTimeout bounds the query behind Status, which takes no context.
	statusTimeout = 2 * time.Second
	// importPolicy names the import policy: local routes only.
	importPolicy = "dsrd-local-only"
)

// ErrStopped is returned by the methods of a stopped Speaker.
var ErrStopped = errors.New("bgp speaker stopped")

// ErrNotStarted is returned by Announce and SetGraceful before Start.
var ErrNotStarted = errors.New("bgp speaker not started")

// Speaker announces a set of VIP host routes to the configured routers.
// Its methods are safe for concurrent use; they run one at a time.
type Speaker struct {
	log *slog.Logger

	// op serialises the methods that change state (Start, Announce,
	// SetGraceful, Reconfigure, Stop).
	op sync.Mutex

	// mu guards the fields below, which Status reads without waiting for
	// an operation in progress.
	mu          sync.Mutex
	cfg         Config
	communities []uint32
	srv         *server.BgpServer // nil before Start and after Stop
	started     bool
	stopped     bool
	announced   map[netip.Prefix]struct{}
	graceful    bool
	// unwatch ends each running server's session watch (watchSessions).
	unwatch map[*server.BgpServer]func()
}

// New returns a Speaker for cfg, which it validates. Nothing runs until
// Start.
func New(log *slog.Logger, cfg Config) (*Speaker, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	comms, err := cfg.check()
	if err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	return &Speaker{
		log:         log,
		cfg:         cloneConfig(cfg),
		communities: comms,
		announced:   map[netip.Prefix]struct{}{},
		unwatch:     map[*server.BgpServer]func(){},
	}, nil
}

// check validates the configuration and returns its communities.
func (c Config) check() ([]uint32, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	comms := make([]uint32, 0, len(c.Communities))
	for _, s := range c.Communities {
		v, err := parseConfigCommunity(s)
		if err != nil { // Validate saw it: cannot happen
			return nil, err
		}
		if !slices.Contains(comms, v) {
			comms = append(comms, v)
		}
	}
	return comms, nil
}

func cloneConfig(c Config) Config {
	c.Communities = slices.Clone(c.Communities)
	if c.MED != nil {
		m := *c.MED
		c.MED = &m
	}
	c.Peers = slices.Clone(c.Peers)
	for i := range c.Peers {
		if b := c.Peers[i].BFD; b != nil {
			bb := *b
			c.Peers[i].BFD = &bb
		}
	}
	return c
}

// call runs f, a gobgp call, and returns its error, or ctx's when ctx ends
// first. gobgp's management calls do not honour a context (most take
// none): f then goes on in its goroutine until gobgp answers or its
// server stops, which fails every waiting call.
func call(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start starts the embedded BGP server, which never listens (it dials out
// to each router), and adds the peers. It returns without waiting for the
// sessions: gobgp dials again every few seconds until a router answers.
func (s *Speaker) Start(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	started, stopped, cfg := s.started, s.stopped, s.cfg
	s.mu.Unlock()
	switch {
	case stopped:
		return ErrStopped
	case started:
		return errors.New("bgp speaker already started")
	}
	srv, err := s.startServer(ctx, cfg)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.srv, s.started = srv, true
	s.mu.Unlock()
	s.log.Info("bgp speaker started", "asn", cfg.ASN, "router_id", cfg.RouterID, "peers", len(cfg.Peers))
	return nil
}

// startServer starts a gobgp server for cfg with its peers and no paths;
// on failure nothing is left running.
func (s *Speaker) startServer(ctx context.Context, cfg Config) (*server.BgpServer, error) {
	glog, lvl := gobgpLogger(s.log)
	srv := server.NewBgpServer(server.LoggerOption(glog, lvl))
	// Serve ends when the server stops (StopBgp, in stopServer).
	go srv.Serve()
	err := call(ctx, func() error {
		return srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn:      cfg.ASN,
			RouterId: cfg.RouterID.String(),
			// -1: no listener; dsrd dials out and a router cannot
			// open a session to it.
			ListenPort: -1,
		}})
	})
	if err != nil {
		s.stopServer(ctx, srv)
		return nil, fmt.Errorf("bgp: start: %w", err)
	}
	// Nothing a router sends is imported: only the local paths matter.
	// gobgp runs its own paths through the import policy too, so the
	// policy accepts local routes and rejects every other.
	err = call(ctx, func() error {
		return srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
			Name: importPolicy,
			Statements: []*api.Statement{{
				Name:       importPolicy + "-local",
				Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
				Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
			}},
		}})
	})
	if err == nil {
		err = call(ctx, func() error {
			return srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
				Name:          "global",
				Direction:     api.PolicyDirection_POLICY_DIRECTION_IMPORT,
				Policies:      []*api.Policy{{Name: importPolicy}},
				DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
			}})
		})
	}
	if err != nil {
		s.stopServer(ctx, srv)
		return nil, fmt.Errorf("bgp: set the import policy: %w", err)
	}
	if err := s.watchSessions(srv); err != nil {
		s.stopServer(ctx, srv)
		return nil, fmt.Errorf("bgp: watch the sessions: %w", err)
	}
	for _, p := range cfg.Peers {
		if err := addPeer(ctx, srv, p); err != nil {
			s.stopServer(ctx, srv)
			return nil, err
		}
	}
	return srv, nil
}

// renewTimeout bounds the renewal of a peer (watchSessions).
const renewTimeout = 5 * time.Second

// watchSessions works around gobgp v4.8.0, whose BFD can end a session
// the moment it is established: a BFD session that expires (or that the
// router signals down) resets its peer with ResetPeer, which leaves a
// Cease NOTIFICATION in the peer's one-slot channel that only an
// established session reads. When the router ends the session first (its
// BFD timed out, it sent a Cease and dropped its BFD session: ours
// expires a detection time later), that NOTIFICATION waits and ends the
// next session as soon as it is established ("BFD is down"), a second
// outage for one failure (seen in the lab: the next session cut 46 ms
// after it came up, the director out of the route for seconds more).
// So when a session with BFD leaves Established, the peer is deleted and
// added again: a new peer has a new FSM, with nothing pending, and a new
// BFD session, with no expiry to come. Its session was down anyway. The
// watch and its goroutine end when the server is stopped (stopServer).
func (s *Speaker) watchSessions(srv *server.BgpServer) error {
	ctx, cancel := context.WithCancel(context.Background())
	downs := make(chan netip.Addr, 16)
	// gobgp calls OnPeerUpdate from one goroutine, in order.
	established := map[netip.Addr]bool{}
	err := srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type != apiutil.PEER_EVENT_STATE {
				return
			}
			a := ev.Peer.State.NeighborAddress.Unmap()
			up := ev.Peer.State.SessionState == gobgp.BGP_FSM_ESTABLISHED
			// A peer deleted (Reconfigure, Stop) is not renewed.
			deleted := ev.Peer.State.DisconnectReason == api.PeerState_DISCONNECT_REASON_DECONFIGURED
			if established[a] && !up && !deleted {
				select {
				case downs <- a:
				default: // a renewal is pending for so many: the next down will do
				}
			}
			established[a] = up
		},
	}, server.WatchPeer())
	if err != nil {
		cancel()
		return err
	}
	s.mu.Lock()
	s.unwatch[srv] = cancel
	s.mu.Unlock()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case a := <-downs:
				s.renewPeer(ctx, srv, a)
			}
		}
	}()
	return nil
}

// renewPeer deletes the BFD peer a of srv and adds it again
// (watchSessions), unless srv is no longer the speaker's server or a is
// no longer a peer with BFD.
func (s *Speaker) renewPeer(ctx context.Context, srv *server.BgpServer, a netip.Addr) {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	cur, cfg := s.srv, s.cfg
	s.mu.Unlock()
	if ctx.Err() != nil || cur != srv {
		return
	}
	i := slices.IndexFunc(cfg.Peers, func(p Peer) bool { return p.Address.Unmap() == a })
	if i < 0 || cfg.Peers[i].BFD == nil {
		return
	}
	p := cfg.Peers[i]
	cctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	if err := deletePeer(cctx, srv, p.Address); err != nil {
		s.log.Warn("bgp: peer not renewed after its session ended", "peer", p.Address, "err", err)
		return
	}
	if err := addPeer(cctx, srv, p); err != nil {
		// The peer is gone from gobgp until the next reconfiguration
		// or restart: say so loudly.
		s.log.Error("bgp: peer deleted but not added again after its session ended: no session with it until the speaker is reconfigured or restarted", "peer", p.Address, "err", err)
		return
	}
	s.log.Debug("bgp: peer renewed after its session ended", "peer", p.Address)
}

// stopServer stops a gobgp server: every session ends with a Cease
// NOTIFICATION (peer de-configured), then BFD stops; its session watch
// ends.
func (s *Speaker) stopServer(ctx context.Context, srv *server.BgpServer) {
	s.mu.Lock()
	unwatch := s.unwatch[srv]
	delete(s.unwatch, srv)
	s.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	if err := call(ctx, func() error { srv.Stop(); return nil }); err != nil {
		s.log.Warn("bgp: stopping the server", "err", err)
	}
}

func family(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// apiPeer is gobgp's configuration of a peer. The peer negotiates only
// its own address family, so IPv4 routes go to IPv4 routers and IPv6
// routes to IPv6 routers.
func apiPeer(p Peer) *api.Peer {
	fam := family(p.Address)
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      connectRetry,
			HoldTime:          uint64(p.holdTime() / time.Second),
			KeepaliveInterval: uint64(p.keepaliveTime() / time.Second),
		}},
		Transport: &api.Transport{
			RemotePort: uint32(p.port()),
		},
		AfiSafis: []*api.AfiSafi{{
			Config: &api.AfiSafiConfig{Family: fam, Enabled: true},
			PrefixLimits: &api.PrefixLimit{
				Family:      fam,
				MaxPrefixes: MaxReceivedPrefixes,
			},
		}},
	}
	if p.SourceAddress.IsValid() {
		ap.Transport.LocalAddress = p.SourceAddress.String()
	}
	if p.EBGPMultihop != 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihop)}
	}
	if b := p.BFD; b != nil {
		ap.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: uint32(b.MinTx / time.Microsecond),
			RequiredMinimumReceive:   uint32(b.MinRx / time.Microsecond),
			DetectionMultiplier:      uint32(b.Multiplier),
		}
	}
	return ap
}

func addPeer(ctx context.Context, srv *server.BgpServer, p Peer) error {
	err := call(ctx, func() error {
		return srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)})
	})
	if err != nil {
		return fmt.Errorf("bgp: add peer %s: %w", p.Address, err)
	}
	return nil
}

func deletePeer(ctx context.Context, srv *server.BgpServer, a netip.Addr) error {
	err := call(ctx, func() error {
		return srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()})
	})
	if err != nil {
		return fmt.Errorf("bgp: delete peer %s: %w", a, err)
	}
	return nil
}

// attrs are the path attributes of an announcement, next hop aside.
type attrs struct {
	communities []uint32
	med         *uint32
}

// currentAttrs returns the attributes to announce with now. Callers hold mu.
func (s *Speaker) currentAttrs() attrs {
	a := attrs{communities: slices.Clone(s.communities), med: s.cfg.MED}
	if s.graceful {
		a.communities = append(a.communities, CommunityGracefulShutdown)
		med := GracefulShutdownMED
		a.med = &med
	}
	return a
}

// path builds gobgp's path for a host route. The next hop is unspecified:
// gobgp puts the session's local address in its place (next-hop self),
// for iBGP and eBGP alike.
func path(p netip.Prefix, a attrs, withdraw bool) (*apiutil.Path, error) {
	nlri, err := gobgp.NewIPAddrPrefix(p)
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", p, err)
	}
	pattrs := []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := gobgp.RF_IPv4_UC
	if p.Addr().Is4() {
		nh, err := gobgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: next hop: %w", p, err)
		}
		pattrs = append(pattrs, nh)
	} else {
		fam = gobgp.RF_IPv6_UC
		mp, err := gobgp.NewPathAttributeMpReachNLRI(fam, []gobgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("prefix %s: next hop: %w", p, err)
		}
		pattrs = append(pattrs, mp)
	}
	if len(a.communities) > 0 {
		pattrs = append(pattrs, gobgp.NewPathAttributeCommunities(slices.Clone(a.communities)))
	}
	if a.med != nil {
		pattrs = append(pattrs, gobgp.NewPathAttributeMultiExitDisc(*a.med))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: pattrs, Withdrawal: withdraw}, nil
}

// addPaths announces (or replaces) the prefixes with the attributes.
func addPaths(ctx context.Context, srv *server.BgpServer, prefixes []netip.Prefix, a attrs) error {
	if len(prefixes) == 0 {
		return nil
	}
	paths := make([]*apiutil.Path, 0, len(prefixes))
	for _, p := range prefixes {
		ap, err := path(p, a, false)
		if err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
		paths = append(paths, ap)
	}
	err := call(ctx, func() error {
		_, err := srv.AddPath(apiutil.AddPathRequest{Paths: paths})
		return err
	})
	if err != nil {
		return fmt.Errorf("bgp: announce %s: %w", joinPrefixes(prefixes), err)
	}
	return nil
}

// deletePaths withdraws the prefixes.
func deletePaths(ctx context.Context, srv *server.BgpServer, prefixes []netip.Prefix) error {
	if len(prefixes) == 0 {
		return nil
	}
	paths := make([]*apiutil.Path, 0, len(prefixes))
	for _, p := range prefixes {
		ap, err := path(p, attrs{}, true)
		if err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
		paths = append(paths, ap)
	}
	err := call(ctx, func() error {
		return srv.DeletePath(apiutil.DeletePathRequest{Paths: paths})
	})
	if err != nil {
		return fmt.Errorf("bgp: withdraw %s: %w", joinPrefixes(prefixes), err)
	}
	return nil
}

func joinPrefixes(ps []netip.Prefix) string {
	ss := make([]string, len(ps))
	for i, p := range ps {
		ss[i] = p.String()
	}
	return strings.Join(ss, ",")
}

// running returns the server, or why there is none.
func (s *Speaker) running() (*server.BgpServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return nil, ErrStopped
	case !s.started:
		return nil, ErrNotStarted
	}
	return s.srv, nil
}

// Announce makes prefixes, host routes (/32, /128), the full set the
// speaker announces: new ones are announced, missing ones withdrawn, the
// others left alone. IPv4 prefixes go to the IPv4 peers, IPv6 prefixes to
// the IPv6 peers. On an error the set announced is what gobgp accepted;
// calling again with the same set retries the rest.
func (s *Speaker) Announce(ctx context.Context, prefixes []netip.Prefix) error {
	desired, err := checkPrefixes(prefixes)
	if err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	srv, err := s.running()
	if err != nil {
		return err
	}
	s.mu.Lock()
	add, withdraw := diffPrefixes(s.announced, desired)
	a := s.currentAttrs()
	s.mu.Unlock()

	// Announce before withdrawing: a set that changes never passes
	// through fewer routes than it needs.
	if err := addPaths(ctx, srv, add, a); err != nil {
		return err
	}
	s.mu.Lock()
	for _, p := range add {
		s.announced[p] = struct{}{}
	}
	s.mu.Unlock()
	if err := deletePaths(ctx, srv, withdraw); err != nil {
		return err
	}
	s.mu.Lock()
	for _, p := range withdraw {
		delete(s.announced, p)
	}
	s.mu.Unlock()
	if len(add)+len(withdraw) > 0 {
		s.log.Info("bgp announcements", "announced", joinPrefixes(add), "withdrawn", joinPrefixes(withdraw))
	}
	return nil
}

// SetGraceful turns the graceful shutdown of the announcements on or off:
// on, every prefix is announced again with the GRACEFUL_SHUTDOWN community
// 65535:0 (RFC 8326) and the MED 4294967294, so the routers prefer the
// other directors before this one withdraws; off, with the configured
// attributes again. Prefixes announced later carry the same.
func (s *Speaker) SetGraceful(ctx context.Context, on bool) error {
	s.op.Lock()
	defer s.op.Unlock()
	srv, err := s.running()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.graceful == on {
		s.mu.Unlock()
		return nil
	}
	was := s.graceful
	s.graceful = on
	a := s.currentAttrs()
	prefixes := sortedPrefixes(s.announced)
	s.mu.Unlock()
	if err := addPaths(ctx, srv, prefixes, a); err != nil {
		// Some may carry the new attributes: the state stays the new one
		// only if all do.
		s.mu.Lock()
		s.graceful = was
		s.mu.Unlock()
		return err
	}
	s.log.Info("bgp graceful shutdown", "on", on, "prefixes", len(prefixes))
	return nil
}

// Reconfigure applies a new configuration. Peers added are dialled, peers
// removed are closed (Cease), peers changed are closed and dialled again
// with the new settings, the others keep their sessions; new communities
// or MED are announced at once. A new ASN or router id restarts the
// server: every session starts again. The announced prefixes are kept.
func (s *Speaker) Reconfigure(ctx context.Context, cfg Config) error {
	comms, err := cfg.check()
	if err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	cfg = cloneConfig(cfg)
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return ErrStopped
	}
	old, srv, started := s.cfg, s.srv, s.started
	attrsChanged := !slices.Equal(comms, s.communities) || !equalMED(cfg.MED, old.MED)
	if !started {
		s.cfg, s.communities = cfg, comms
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()

	if cfg.ASN != old.ASN || cfg.RouterID != old.RouterID {
		return s.restart(ctx, srv, cfg, comms)
	}

	oldPeers := make(map[netip.Addr]Peer, len(old.Peers))
	for _, p := range old.Peers {
		oldPeers[p.Address] = p
	}
	newPeers := make(map[netip.Addr]bool, len(cfg.Peers))
	// Peers are deleted and added one by one, and the configuration
	// recorded is the one reached, so a failure leaves a state the next
	// Reconfigure corrects.
	reached := cloneConfig(old)
	setReached := func() {
		s.mu.Lock()
		s.cfg = reached
		s.mu.Unlock()
	}
	for _, p := range cfg.Peers {
		newPeers[p.Address] = true
	}
	for _, p := range old.Peers {
		if newPeers[p.Address] {
			continue
		}
		if err := deletePeer(ctx, srv, p.Address); err != nil {
			setReached()
			return err
		}
		reached.Peers = slices.DeleteFunc(reached.Peers, func(q Peer) bool { return q.Address == p.Address })
		s.log.Info("bgp peer removed", "peer", p.Address)
	}
	for _, p := range cfg.Peers {
		o, had := oldPeers[p.Address]
		if had && equalPeer(o, p) {
			continue
		}
		if had {
			if err := deletePeer(ctx, srv, p.Address); err != nil {
				setReached()
				return err
			}
			reached.Peers = slices.DeleteFunc(reached.Peers, func(q Peer) bool { return q.Address == p.Address })
		}
		if err := addPeer(ctx, srv, p); err != nil {
			setReached()
			return err
		}
		reached.Peers = append(reached.Peers, p)
		s.log.Info("bgp peer configured", "peer", p.Address, "asn", p.ASN, "changed", had)
	}
	s.mu.Lock()
	s.cfg, s.communities = cfg, comms
	a := s.currentAttrs()
	prefixes := sortedPrefixes(s.announced)
	s.mu.Unlock()
	if attrsChanged {
		if err := addPaths(ctx, srv, prefixes, a); err != nil {
			return err
		}
	}
	return nil
}

// restart replaces the server by one for cfg and announces the prefixes
// on it again. gobgp servers cannot be started twice (Serve ends for
// good), hence a new one. gobgp's StartBgp writes package-level route
// selection options (the same defaults every time) that the stopped
// server's last goroutines may still read: a benign race the race
// detector can see (TestReconfigureRestart).
func (s *Speaker) restart(ctx context.Context, old *server.BgpServer, cfg Config, comms []uint32) error {
	s.log.Info("bgp speaker restarting", "asn", cfg.ASN, "router_id", cfg.RouterID)
	s.stopServer(ctx, old)
	s.mu.Lock()
	s.srv = nil
	s.mu.Unlock()
	srv, err := s.startServer(ctx, cfg)
	if err != nil {
		// No server runs: mark the speaker not started, so that Start
		// can be tried again.
		s.mu.Lock()
		s.started = false
		s.cfg, s.communities = cfg, comms
		s.mu.Unlock()
		return err
	}
	s.mu.Lock()
	s.srv, s.cfg, s.communities = srv, cfg, comms
	a := s.currentAttrs()
	prefixes := sortedPrefixes(s.announced)
	s.mu.Unlock()
	return addPaths(ctx, srv, prefixes, a)
}

func equalMED(a, b *uint32) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func equalPeer(a, b Peer) bool {
	ab, bb := a.BFD, b.BFD
	a.BFD, b.BFD = nil, nil
	if a != b {
		return false
	}
	if ab == nil || bb == nil {
		return ab == bb
	}
	return *ab == *bb
}

// Stop withdraws every prefix and closes every session with a Cease
// NOTIFICATION, within ctx. A stopped Speaker cannot be started again.
func (s *Speaker) Stop(ctx context.Context) error {
	s.op.Lock()
	defer s.op.Unlock()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	srv := s.srv
	prefixes := sortedPrefixes(s.announced)
	s.stopped, s.srv = true, nil
	s.announced = map[netip.Prefix]struct{}{}
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	// The withdrawals go out first; the Cease that follows ends the
	// sessions, which withdraws whatever a router still holds anyway.
	werr := deletePaths(ctx, srv, prefixes)
	s.mu.Lock()
	unwatch := s.unwatch[srv]
	delete(s.unwatch, srv)
	s.mu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	serr := call(ctx, func() error { srv.Stop(); return nil })
	if serr != nil {
		serr = fmt.Errorf("bgp: stop: %w", serr)
	}
	s.log.Info("bgp speaker stopped", "withdrawn", len(prefixes))
	return errors.Join(werr, serr)
}

// Status is the speaker's state.
type Status struct {
	// Peers are the configured routers and their sessions.
	Peers []PeerStatus
	// Announced are the prefixes the speaker announces, sorted.
	Announced []netip.Prefix
	// Graceful is true while the announcements carry GRACEFUL_SHUTDOWN.
	Graceful bool
}

// PeerStatus is one router's session.
type PeerStatus struct {
	// Address is the router's address.
	Address netip.Addr
	// ASN is the router's AS number.
	ASN uint32
	// State is the BGP session state: "idle", "connect", "active",
	// "opensent", "openconfirm", "established", or "unknown" when gobgp
	// could not be asked.
	State string
	// Since is when the session was established (zero when it is not),
	// to the second, as gobgp keeps it; Uptime is how long ago that was.
	// A session established less than a second ago has a Since and a
	// zero Uptime.
	Since  time.Time
	Uptime time.Duration
	// BFD is the BFD session state, "up" or "down"; "" without BFD.
	BFD string
	// Announced is how many prefixes the router is sent.
	Announced int
}

// Status returns the speaker's state; it asks gobgp for the sessions, for
// at most a couple of seconds.
func (s *Speaker) Status() Status {
	s.mu.Lock()
	cfg, srv := s.cfg, s.srv
	st := Status{Announced: sortedPrefixes(s.announced), Graceful: s.graceful}
	s.mu.Unlock()

	live := map[string]*api.Peer{}
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
		var mu sync.Mutex
		err := call(ctx, func() error {
			return srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
				if p.GetState() == nil {
					return
				}
				mu.Lock()
				live[p.GetState().GetNeighborAddress()] = p
				mu.Unlock()
			})
		})
		cancel()
		if err != nil {
			s.log.Debug("bgp status", "err", err)
		}
		mu.Lock()
		defer mu.Unlock()
	}
	for _, p := range cfg.Peers {
		ps := PeerStatus{Address: p.Address, ASN: p.ASN, State: "unknown"}
		if srv == nil {
			ps.State = "idle"
		}
		if p.BFD != nil {
			ps.BFD = "down"
		}
		if lp, ok := live[p.Address.String()]; ok {
			ps.State = sessionState(lp.GetState().GetSessionState())
			if ps.State == "established" {
				if up := lp.GetTimers().GetState().GetUptime(); up != nil && up.GetSeconds() > 0 {
					ps.Since = up.AsTime()
					ps.Uptime = max(time.Since(ps.Since), 0).Truncate(time.Second)
				}
			}
			if p.BFD != nil && lp.GetState().GetBfdState().GetSessionState() == api.BfdSessionState_BFD_SESSION_STATE_UP {
				ps.BFD = "up"
			}
			for _, af := range lp.GetAfiSafis() {
				ps.Announced += int(af.GetState().GetAdvertised())
			}
		}
		st.Peers = append(st.Peers, ps)
	}
	return st
}

func sessionState(st api.PeerState_SessionState) string {
	switch st {
	case api.PeerState_SESSION_STATE_IDLE:
		return "idle"
	case api.PeerState_SESSION_STATE_CONNECT:
		return "connect"
	case api.PeerState_SESSION_STATE_ACTIVE:
		return "active"
	case api.PeerState_SESSION_STATE_OPENSENT:
		return "opensent"
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return "established"
	}
	return "unknown"
}
