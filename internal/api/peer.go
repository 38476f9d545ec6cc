package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
)

// Peer protocol limits.
const (
	// maxPeerBody bounds a peer request: a spec of a thousand services
	// with their reals is about 1 MiB of JSON.
	maxPeerBody = 16 << 20
	// peerOpTimeout bounds the raft operation a peer request asks for
	// (enqueue and commit; a membership change may wait for a catch-up).
	peerOpTimeout = 20 * time.Second
	// peerWriteTimeout bounds writing an answer, the operation included.
	peerWriteTimeout = peerOpTimeout + 5*time.Second
	// DefaultPeerTimeout bounds a PeerClient call whose ctx has no
	// deadline: a little more than the server's own bound.
	DefaultPeerTimeout = peerOpTimeout + 10*time.Second
)

// Cluster is the Raft node whose writes the peer protocol serves; every
// write succeeds only on the leader, others return a *raft.NotLeaderError.
// *raft.Node satisfies it, and so does Forwarder.
type Cluster interface {
	SubmitConfig(ctx context.Context, spec raft.Spec, submittedBy string) (raft.SetConfigResult, error)
	SetAdmin(ctx context.Context, ref raft.RealRef, state raft.Admin) (raft.SetAdminResult, error)
	SetDrain(ctx context.Context, cmd raft.SetDrainCommand) (raft.SetDrainResult, error)
	AddVoter(ctx context.Context, id, address string) error
	AddNonvoter(ctx context.Context, id, address string) error
	RemoveServer(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, to ...string) error
}

var _ Cluster = (*raft.Node)(nil)

// PeerConfigRequest is the body of POST /peer/v1/config.
type PeerConfigRequest struct {
	Spec        raft.Spec `json:"spec"`
	SubmittedBy string    `json:"submitted_by"`
}

// PeerConfigResult is the answer of POST /peer/v1/config.
type PeerConfigResult struct {
	Generation uint64 `json:"generation"`
	Changed    bool   `json:"changed"`
}

// PeerAdminRequest is the body of POST /peer/v1/admin.
type PeerAdminRequest struct {
	Ref   raft.RealRef `json:"ref"`
	State raft.Admin   `json:"state"`
}

// PeerAdminResult is the answer of POST /peer/v1/admin.
type PeerAdminResult struct {
	Previous raft.Admin `json:"previous"`
	Changed  bool       `json:"changed"`
}

// PeerDrainRequest is the body of POST /peer/v1/drain: drain or undrain
// director Node's BGP announcements.
type PeerDrainRequest struct {
	Node  string `json:"node"`
	Drain bool   `json:"drain"`
	Force bool   `json:"force,omitempty"`
	// By names the asking member; the connection's proven identity
	// replaces it when there is one.
	By string `json:"by,omitempty"`
}

// PeerDrainResult is the answer of POST /peer/v1/drain.
type PeerDrainResult struct {
	Changed bool `json:"changed"`
}

// FailoverRequest is the body of POST /v1/failover and POST
// /peer/v1/failover: the member to hand leadership to, any when empty.
type FailoverRequest struct {
	To string `json:"to,omitempty"`
}

// LeaderGoneRequest is the body of POST /peer/v1/leader-gone: Leader, the
// node sending it, led the cluster and its daemon has died (sent by dsrd
// director release-vips, which systemd runs after the daemon exits).
type LeaderGoneRequest struct {
	Leader string `json:"leader"`
}

// LeaderGoneHandler is a Backend that can act on POST /peer/v1/leader-gone
// (a director: it checks the leader is really gone, then stands for
// election at once). A backend without it (a witness) answers 404.
type LeaderGoneHandler interface {
	LeaderGone(ctx context.Context, leader string) error
}

// HealthViewRequest is the body of POST /peer/v1/health-view: a director's
// own view of every real it checks, sent to the leader, which aggregates
// the directors' views into the cluster's verdicts (raft.HealthVerdict).
// Node is the sender, taken from the connection's certificate when it
// proved one; Generation is the configuration generation the view is of.
type HealthViewRequest struct {
	Node       string     `json:"node"`
	Generation uint64     `json:"generation"`
	Reals      []RealView `json:"reals"`
}

// RealView is one director's view of one real: its check state, and the
// reason of the last result (a healthcheck.Reason name). A real whose
// check has not reached its first verdict is not listed.
type RealView struct {
	Ref    raft.RealRef `json:"ref"`
	State  raft.Health  `json:"state"`
	Reason string       `json:"reason,omitempty"`
}

// MaxHealthViewReals bounds a health view: more reals than any
// configuration a peer request can carry.
const MaxHealthViewReals = 1 << 17

// HealthViewHandler is a Backend that takes directors' health views (a
// director: the leader aggregates them; a follower answers 421 with the
// leader). A backend without it (a witness) answers 404.
type HealthViewHandler interface {
	HealthView(ctx context.Context, from string, req HealthViewRequest) error
}

// PeerAuthorizer decides what a peer protocol request may do from the
// identity its connection proved (raft.Peer): read the node's status
// (write false), or change the cluster (write true). *raft.Node is one.
type PeerAuthorizer interface {
	AuthorizePeer(p raft.Peer, write bool) error
}

// AllowAllPeers authorises every request, a request without a proven
// Peer included. It is for tests that serve the handler directly; a
// daemon's peer server authorises with its raft.Node.
type AllowAllPeers struct{}

// AuthorizePeer implements PeerAuthorizer.
func (AllowAllPeers) AuthorizePeer(raft.Peer, bool) error { return nil }

var _ PeerAuthorizer = (*raft.Node)(nil)

// PeerServer serves the peer protocol: the cluster writes a follower
// forwards to the leader, and the node's status for dsrd status. It runs on
// the Raft port's peer listener (raft.Node.PeerListener), behind the
// cluster's mutual TLS when configured. Every request is authorised by the
// identity its connection proved, by route: members read the status and
// may ask for a failover; only directors write the configuration, admin
// states and membership; leader-gone comes from the leader it names.
// Writes on a node that is not the leader answer 421 Misdirected Request
// naming the leader.
type PeerServer struct {
	c    Cluster
	auth PeerAuthorizer
	b    Backend
	log  *slog.Logger
	mux  *http.ServeMux
}

// NewPeerServer returns the peer server of cluster c, the local Raft node
// (never a Forwarder: the peer server must not forward again), authorised
// by auth (the same node; nil refuses every request), and of backend b,
// whose Status it serves. A nil log discards.
func NewPeerServer(c Cluster, auth PeerAuthorizer, b Backend, log *slog.Logger) *PeerServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &PeerServer{c: c, auth: auth, b: b, log: log.With("component", "peer-api"), mux: http.NewServeMux()}
	const ok, noContent = http.StatusOK, http.StatusNoContent
	s.mux.HandleFunc("POST /peer/v1/config",
		s.allow(true, handle(s.fail, maxPeerBody, peerOpTimeout, nil, s.config, ok)))
	s.mux.HandleFunc("POST /peer/v1/admin",
		s.allow(true, handle(s.fail, maxPeerBody, peerOpTimeout, validPeerAdmin, s.admin, ok)))
	s.mux.HandleFunc("POST /peer/v1/drain",
		s.allow(true, handle(s.fail, maxPeerBody, peerOpTimeout, validPeerDrain, s.drain, ok)))
	s.mux.HandleFunc("POST /peer/v1/members",
		s.allow(true, handle(s.fail, maxPeerBody, peerOpTimeout, ValidJoin, s.join, noContent)))
	s.mux.HandleFunc("DELETE /peer/v1/members/{id}",
		s.allow(true, handle(s.fail, noBody, peerOpTimeout, nil, s.remove, noContent)))
	s.mux.HandleFunc("POST /peer/v1/failover",
		s.allow(false, handle(s.fail, maxPeerBody, peerOpTimeout, nil, s.failover, noContent)))
	s.mux.HandleFunc("GET /peer/v1/status",
		s.allow(false, handle(s.fail, noBody, statusTimeout, nil, s.status, ok)))
	s.mux.HandleFunc("POST /peer/v1/leader-gone",
		s.allow(false, handle(s.fail, maxPeerBody, peerOpTimeout, validLeaderGone, s.leaderGone, noContent)))
	s.mux.HandleFunc("POST /peer/v1/health-view",
		s.allow(true, handle(s.fail, maxPeerBody, peerOpTimeout, ValidHealthView, s.healthView, noContent)))
	return s
}

// allow wraps h with the route's authorisation: the request's proven Peer
// may read (write false) or change the cluster (write true).
func (s *PeerServer) allow(write bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth == nil {
			s.fail(w, r, fmt.Errorf("%w: the peer server has no authoriser", ErrForbidden))
			return
		}
		p, _ := raft.PeerFrom(r.Context())
		if err := s.auth.AuthorizePeer(p, write); err != nil {
			s.log.Warn("peer request refused", "peer", p.String(), "method", r.Method, "path", r.URL.Path, "error", err)
			s.fail(w, r, fmt.Errorf("%w: %w", ErrForbidden, err))
			return
		}
		h(w, r)
	}
}

// Handler returns the server's HTTP handler (tests serve it directly).
func (s *PeerServer) Handler() http.Handler { return s.mux }

// Serve serves the peer protocol on ln until ctx ends or ln is closed (both
// return nil), then stops the server, letting requests in flight finish
// for a few seconds. ln is closed when Serve returns.
func (s *PeerServer) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, s.mux, peerWriteTimeout, raft.PeerConnContext, s.log)
}

func (s *PeerServer) fail(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, s.log, r, err, http.StatusMisdirectedRequest)
}

// config submits a spec in the name of the connection's proven identity
// when it has one: the submitter is who the connection proved, not what
// the body says.
func (s *PeerServer) config(ctx context.Context, r *http.Request, req PeerConfigRequest) (PeerConfigResult, error) {
	by := req.SubmittedBy
	if p, ok := raft.PeerFrom(r.Context()); ok && p.Authenticated {
		by = p.Identity.NodeID
	}
	res, err := s.c.SubmitConfig(ctx, req.Spec, by)
	return PeerConfigResult(res), err
}

func (s *PeerServer) admin(ctx context.Context, _ *http.Request, req PeerAdminRequest) (PeerAdminResult, error) {
	res, err := s.c.SetAdmin(ctx, req.Ref, req.State)
	return PeerAdminResult(res), err
}

// drain asks for a drain in the name of the connection's proven identity
// when it has one.
func (s *PeerServer) drain(ctx context.Context, r *http.Request, req PeerDrainRequest) (PeerDrainResult, error) {
	by := req.By
	if p, ok := raft.PeerFrom(r.Context()); ok && p.Authenticated {
		by = p.Identity.NodeID
	}
	res, err := s.c.SetDrain(ctx, raft.SetDrainCommand{Node: req.Node, Drain: req.Drain, Force: req.Force, By: by})
	return PeerDrainResult(res), err
}

func (s *PeerServer) join(ctx context.Context, _ *http.Request, req JoinRequest) (struct{}, error) {
	if req.Voter {
		return struct{}{}, s.c.AddVoter(ctx, req.ID, req.Address)
	}
	return struct{}{}, s.c.AddNonvoter(ctx, req.ID, req.Address)
}

func (s *PeerServer) remove(ctx context.Context, r *http.Request, _ struct{}) (struct{}, error) {
	return struct{}{}, s.c.RemoveServer(ctx, r.PathValue("id"))
}

func (s *PeerServer) failover(ctx context.Context, _ *http.Request, req FailoverRequest) (struct{}, error) {
	var to []string
	if req.To != "" {
		to = []string{req.To}
	}
	return struct{}{}, s.c.TransferLeadership(ctx, to...)
}

// leaderGone hands a leader-gone to the backend. Only the leader itself
// (its release-vips, with its certificate) may say it is gone: a request
// naming another leader than the connection proved is refused before the
// backend is asked whether it handles leader-gone at all.
func (s *PeerServer) leaderGone(ctx context.Context, r *http.Request, req LeaderGoneRequest) (struct{}, error) {
	if p, ok := raft.PeerFrom(r.Context()); ok && p.Authenticated && p.Identity.NodeID != req.Leader {
		return struct{}{}, fmt.Errorf("%w: %s may not say that %s is gone", ErrForbidden, p, req.Leader)
	}
	h, ok := s.b.(LeaderGoneHandler)
	if !ok {
		return struct{}{}, fmt.Errorf("%w: this node does not stand for election on request", ErrNotFound)
	}
	return struct{}{}, h.LeaderGone(ctx, req.Leader)
}

// healthView hands a director's view to the backend, in the name of the
// identity the connection proved when it proved one.
func (s *PeerServer) healthView(ctx context.Context, r *http.Request, req HealthViewRequest) (struct{}, error) {
	from := req.Node
	if p, ok := raft.PeerFrom(r.Context()); ok && p.Authenticated {
		from = p.Identity.NodeID
	}
	h, ok := s.b.(HealthViewHandler)
	if !ok {
		return struct{}{}, fmt.Errorf("%w: this node does not aggregate health views", ErrNotFound)
	}
	return struct{}{}, h.HealthView(ctx, from, req)
}

func (s *PeerServer) status(ctx context.Context, _ *http.Request, _ struct{}) (Status, error) {
	return s.b.Status(ctx)
}

// validLeaderGone checks that a leader-gone names a leader (ErrInvalid).
func validLeaderGone(req LeaderGoneRequest) error {
	if req.Leader == "" {
		return fmt.Errorf("%w: leader-gone names no leader", ErrInvalid)
	}
	return nil
}

// validPeerAdmin checks an admin request's reference and state (ErrInvalid).
func validPeerAdmin(req PeerAdminRequest) error {
	if req.Ref.Service == (ipvs.ServiceKey{}) {
		return fmt.Errorf("%w: no service", ErrInvalid)
	}
	if !req.Ref.Address.IsValid() {
		return fmt.Errorf("%w: no real address", ErrInvalid)
	}
	if _, err := raft.ParseAdmin(string(req.State)); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// validPeerDrain checks a drain request's node IDs (ErrInvalid).
func validPeerDrain(req PeerDrainRequest) error {
	if err := pki.CheckNodeID(req.Node); err != nil {
		return fmt.Errorf("%w: node %q %v", ErrInvalid, req.Node, err)
	}
	if req.By != "" {
		if err := pki.CheckNodeID(req.By); err != nil {
			return fmt.Errorf("%w: by %q %v", ErrInvalid, req.By, err)
		}
	}
	return nil
}

// ValidHealthView checks a health view's size and each real's reference,
// state and reason (ErrInvalid).
func ValidHealthView(req HealthViewRequest) error {
	if len(req.Reals) > MaxHealthViewReals {
		return fmt.Errorf("%w: %d reals in a health view, at most %d", ErrInvalid, len(req.Reals), MaxHealthViewReals)
	}
	for _, v := range req.Reals {
		if v.Ref.Service == (ipvs.ServiceKey{}) || !v.Ref.Address.IsValid() {
			return fmt.Errorf("%w: a real without a service or address", ErrInvalid)
		}
		if v.State != raft.HealthUp && v.State != raft.HealthDown {
			return fmt.Errorf("%w: real %s: state %q is not up or down", ErrInvalid, v.Ref, v.State)
		}
		if len(v.Reason) > raft.MaxHealthReason {
			return fmt.Errorf("%w: real %s: reason of %d bytes, at most %d", ErrInvalid, v.Ref, len(v.Reason), raft.MaxHealthReason)
		}
	}
	return nil
}

// ValidJoin checks a join request by the rules of a Raft configuration
// (raft.CheckMember): a node id and the ip:port of its Raft port
// (ErrInvalid otherwise).
func ValidJoin(req JoinRequest) error {
	if req.ID == "" {
		return fmt.Errorf("%w: no member id", ErrInvalid)
	}
	if err := raft.CheckMember(req.ID, req.Address); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// PeerClient calls other members' peer servers. Dial connects to a
// member's peer protocol: raft.Node.DialPeer, which brings the cluster's
// mutual TLS. Each call dials anew and is bounded by ctx (by
// DefaultPeerTimeout when ctx has no deadline). Errors of the remote side
// come back as *Error: a 421 matches raft.ErrNotLeader and is a
// *raft.NotLeaderError naming the leader (errors.As).
type PeerClient struct {
	Dial func(ctx context.Context, address string) (net.Conn, error)
}

// do runs one request against the peer server at address.
func (c PeerClient) do(ctx context.Context, address, method, path string, in, out any) error {
	if c.Dial == nil {
		return errors.New("peer client without a dial function")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultPeerTimeout)
		defer cancel()
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.Dial(ctx, address)
		},
		// One call, one connection: nothing idles after the call.
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	base := (&url.URL{Scheme: "http", Host: address}).String()
	if err := roundTrip(ctx, hc, base, method, path, in, out); err != nil {
		return fmt.Errorf("peer %s: %w", address, err)
	}
	return nil
}

// SubmitConfig asks the leader at address to replicate spec.
func (c PeerClient) SubmitConfig(ctx context.Context, address string, spec raft.Spec, submittedBy string) (raft.SetConfigResult, error) {
	var res PeerConfigResult
	err := c.do(ctx, address, http.MethodPost, "/peer/v1/config", PeerConfigRequest{Spec: spec, SubmittedBy: submittedBy}, &res)
	return raft.SetConfigResult(res), err
}

// SetAdmin asks the leader at address to replicate a real's admin state.
func (c PeerClient) SetAdmin(ctx context.Context, address string, ref raft.RealRef, state raft.Admin) (raft.SetAdminResult, error) {
	var res PeerAdminResult
	err := c.do(ctx, address, http.MethodPost, "/peer/v1/admin", PeerAdminRequest{Ref: ref, State: state}, &res)
	return raft.SetAdminResult(res), err
}

// SetDrain asks the leader at address to drain or undrain a director.
func (c PeerClient) SetDrain(ctx context.Context, address string, cmd raft.SetDrainCommand) (raft.SetDrainResult, error) {
	var res PeerDrainResult
	err := c.do(ctx, address, http.MethodPost, "/peer/v1/drain", PeerDrainRequest{Node: cmd.Node, Drain: cmd.Drain, Force: cmd.Force, By: cmd.By}, &res)
	return raft.SetDrainResult(res), err
}

// Join asks the leader at address to add a member.
func (c PeerClient) Join(ctx context.Context, address string, req JoinRequest) error {
	return c.do(ctx, address, http.MethodPost, "/peer/v1/members", req, nil)
}

// Remove asks the leader at address to remove member id.
func (c PeerClient) Remove(ctx context.Context, address, id string) error {
	return c.do(ctx, address, http.MethodDelete, "/peer/v1/members/"+url.PathEscape(id), nil, nil)
}

// Failover asks the leader at address to hand leadership over, to member
// to when set.
func (c PeerClient) Failover(ctx context.Context, address, to string) error {
	return c.do(ctx, address, http.MethodPost, "/peer/v1/failover", FailoverRequest{To: to}, nil)
}

// LeaderGone tells the member at address that leader, which led the
// cluster, has died; nil when the member took it and stands for election.
func (c PeerClient) LeaderGone(ctx context.Context, address, leader string) error {
	return c.do(ctx, address, http.MethodPost, "/peer/v1/leader-gone", LeaderGoneRequest{Leader: leader}, nil)
}

// HealthView sends this director's health view to the leader at address.
func (c PeerClient) HealthView(ctx context.Context, address string, req HealthViewRequest) error {
	return c.do(ctx, address, http.MethodPost, "/peer/v1/health-view", req, nil)
}

// Status asks the member at address for its own status.
func (c PeerClient) Status(ctx context.Context, address string) (Status, error) {
	var st Status
	err := c.do(ctx, address, http.MethodGet, "/peer/v1/status", nil, &st)
	return st, err
}

// Forwarder performs cluster writes at the leader: on Local when it leads,
// otherwise over the peer protocol at the leader Local names, once more at
// the leader a 421 names when leadership moved in between. It satisfies
// Cluster, so a backend can use it wherever it would write to its node:
//
//	fw := api.Forwarder{Local: node, Peers: api.PeerClient{Dial: node.DialPeer}}
//	res, err := fw.SubmitConfig(ctx, spec, node.ID())
//
// When no leader is known (an election is running) the *raft.NotLeaderError
// of Local comes back; errors of the leader come back as for PeerClient.
type Forwarder struct {
	Local Cluster
	Peers PeerClient
}

var _ Cluster = Forwarder{}

// SubmitConfig replicates spec through the leader.
func (f Forwarder) SubmitConfig(ctx context.Context, spec raft.Spec, submittedBy string) (raft.SetConfigResult, error) {
	return forward(ctx,
		func(ctx context.Context) (raft.SetConfigResult, error) {
			return f.Local.SubmitConfig(ctx, spec, submittedBy)
		},
		func(ctx context.Context, addr string) (raft.SetConfigResult, error) {
			return f.Peers.SubmitConfig(ctx, addr, spec, submittedBy)
		})
}

// SetAdmin replicates a real's admin state through the leader.
func (f Forwarder) SetAdmin(ctx context.Context, ref raft.RealRef, state raft.Admin) (raft.SetAdminResult, error) {
	return forward(ctx,
		func(ctx context.Context) (raft.SetAdminResult, error) { return f.Local.SetAdmin(ctx, ref, state) },
		func(ctx context.Context, addr string) (raft.SetAdminResult, error) {
			return f.Peers.SetAdmin(ctx, addr, ref, state)
		})
}

// SetDrain drains or undrains a director through the leader.
func (f Forwarder) SetDrain(ctx context.Context, cmd raft.SetDrainCommand) (raft.SetDrainResult, error) {
	return forward(ctx,
		func(ctx context.Context) (raft.SetDrainResult, error) { return f.Local.SetDrain(ctx, cmd) },
		func(ctx context.Context, addr string) (raft.SetDrainResult, error) {
			return f.Peers.SetDrain(ctx, addr, cmd)
		})
}

// AddVoter adds a voter through the leader.
func (f Forwarder) AddVoter(ctx context.Context, id, address string) error {
	return f.join(ctx, JoinRequest{ID: id, Address: address, Voter: true})
}

// AddNonvoter adds a non-voting member through the leader.
func (f Forwarder) AddNonvoter(ctx context.Context, id, address string) error {
	return f.join(ctx, JoinRequest{ID: id, Address: address, Voter: false})
}

func (f Forwarder) join(ctx context.Context, req JoinRequest) error {
	_, err := forward(ctx,
		func(ctx context.Context) (struct{}, error) {
			if req.Voter {
				return struct{}{}, f.Local.AddVoter(ctx, req.ID, req.Address)
			}
			return struct{}{}, f.Local.AddNonvoter(ctx, req.ID, req.Address)
		},
		func(ctx context.Context, addr string) (struct{}, error) {
			return struct{}{}, f.Peers.Join(ctx, addr, req)
		})
	return err
}

// RemoveServer removes a member through the leader.
func (f Forwarder) RemoveServer(ctx context.Context, id string) error {
	_, err := forward(ctx,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, f.Local.RemoveServer(ctx, id) },
		func(ctx context.Context, addr string) (struct{}, error) {
			return struct{}{}, f.Peers.Remove(ctx, addr, id)
		})
	return err
}

// TransferLeadership asks the leader to hand leadership over.
func (f Forwarder) TransferLeadership(ctx context.Context, to ...string) error {
	target := ""
	if len(to) > 0 {
		target = to[0]
	}
	_, err := forward(ctx,
		func(ctx context.Context) (struct{}, error) { return struct{}{}, f.Local.TransferLeadership(ctx, to...) },
		func(ctx context.Context, addr string) (struct{}, error) {
			return struct{}{}, f.Peers.Failover(ctx, addr, target)
		})
	return err
}

// forward runs local; when it names another leader, remote at that leader,
// and once more at the next leader when that one answers 421.
func forward[T any](ctx context.Context, local func(context.Context) (T, error), remote func(context.Context, string) (T, error)) (T, error) {
	v, err := local(ctx)
	addr, ok := leaderOf(err)
	if !ok {
		return v, err
	}
	v, err = remote(ctx, addr)
	if next, ok := leaderOf(err); ok && next != addr {
		v, err = remote(ctx, next)
	}
	return v, err
}

// leaderOf returns the leader address a not-leader error names.
func leaderOf(err error) (string, bool) {
	var nle *raft.NotLeaderError
	if errors.As(err, &nle) && nle.LeaderAddress != "" {
		return nle.LeaderAddress, true
	}
	return "", false
}
