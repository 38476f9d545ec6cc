package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultSocket is where a director or witness serves its local API.
const DefaultSocket = "/run/dsrd/dsrd.sock"

// Local API limits.
const (
	// maxRequestBody bounds a local API request: they are all small.
	maxRequestBody = 1 << 20
	// statusTimeout bounds collecting a node's status.
	statusTimeout = 10 * time.Second
	// DefaultPeerStatusTimeout bounds each member's answer to
	// GET /v1/status?peers=1: a member that does not answer within it is
	// reported as unreachable rather than holding dsrd status up.
	DefaultPeerStatusTimeout = 2 * time.Second
	// opTimeout bounds a write of the local API: a reload that submits a
	// configuration, a leadership transfer (hashicorp/raft tries for an
	// election timeout per target), a membership change.
	opTimeout = 45 * time.Second
	// writeTimeout bounds writing an answer, the operation included.
	writeTimeout = opTimeout + 5*time.Second
	// probeTimeout bounds the connect by which ListenUnix tells a live
	// socket from a stale one.
	probeTimeout = time.Second
)

// ServerOptions tunes a Server.
type ServerOptions struct {
	// Peers asks the other members for their running state on
	// GET /v1/status?peers=1; without it Status.Peers stays empty.
	Peers *PeerClient
	// PeerTimeout bounds each member's answer (DefaultPeerStatusTimeout
	// when zero).
	PeerTimeout time.Duration
}

// Server serves the local API of a director or witness, HTTP and JSON on a
// root-only unix socket (ListenUnix):
//
//	GET    /v1/status          Status; ?peers=1 adds each member's running generation,
//	                           ?top=N each service's N sources dropped most (N capped at MaxTop)
//	POST   /v1/admin           AdminRequest -> AdminResult
//	POST   /v1/failover        FailoverRequest -> FailoverResult
//	POST   /v1/reload          ReloadResult (200 also when the file is invalid, or valid
//	                           but not taken by the cluster: not_submitted)
//	GET    /v1/members         []Member
//	POST   /v1/members         JoinRequest -> 204
//	DELETE /v1/members/{id}    204
//
// Errors are an ErrorResponse: 400 for a bad request, 404 for an unknown
// service, real or member, 409 when no leader could be reached (or an
// admin command reached a director that has applied no configuration yet), 504 when
// the outcome is unknown, 500 otherwise.
type Server struct {
	b    Backend
	log  *slog.Logger
	opts ServerOptions
	mux  *http.ServeMux
}

// NewServer returns the local API server of b. A nil log discards.
func NewServer(b Backend, log *slog.Logger, opts ServerOptions) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.PeerTimeout <= 0 {
		opts.PeerTimeout = DefaultPeerStatusTimeout
	}
	s := &Server{b: b, log: log.With("component", "api"), opts: opts, mux: http.NewServeMux()}
	const ok, noContent = http.StatusOK, http.StatusNoContent
	s.mux.HandleFunc("GET /v1/status", handle(s.fail, noBody, statusTimeout, nil, s.status, ok))
	s.mux.HandleFunc("POST /v1/admin", handle(s.fail, maxRequestBody, opTimeout, ValidAdmin, s.admin, ok))
	s.mux.HandleFunc("POST /v1/failover", handle(s.fail, maxRequestBody, opTimeout, nil, s.failover, ok))
	s.mux.HandleFunc("POST /v1/reload", handle(s.fail, noBody, opTimeout, nil, s.reload, ok))
	s.mux.HandleFunc("POST /v1/bgp/drain", handle(s.fail, maxRequestBody, opTimeout, nil, s.bgpDrain, ok))
	s.mux.HandleFunc("GET /v1/members", handle(s.fail, noBody, statusTimeout, nil, s.members, ok))
	s.mux.HandleFunc("POST /v1/members", handle(s.fail, maxRequestBody, opTimeout, ValidJoin, s.join, noContent))
	s.mux.HandleFunc("DELETE /v1/members/{id}", handle(s.fail, noBody, opTimeout, nil, s.remove, noContent))
	return s
}

// Handler returns the server's HTTP handler (tests serve it directly).
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves the API on ln until ctx ends or ln is closed (both return
// nil), letting requests in flight finish for a few seconds. ln is closed
// when Serve returns, which removes a unix socket's file.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return serveHTTP(ctx, ln, s.mux, writeTimeout, nil, s.log)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	writeError(w, s.log, r, err, http.StatusConflict)
}

// status is the node's status, with the other members' running state
// when asked for (?peers=1) and a PeerClient is configured.
func (s *Server) status(ctx context.Context, r *http.Request, _ struct{}) (Status, error) {
	top, err := topParam(r.URL.Query().Get("top"))
	if err != nil {
		return Status{}, err
	}
	st, err := s.b.Status(ctx)
	if err != nil {
		return Status{}, err
	}
	if t, ok := s.b.(AdmissionTopper); ok && top > 0 {
		addTop(ctx, &st, t, top)
	}
	if r.URL.Query().Get("peers") == "1" && s.opts.Peers != nil {
		st.Peers = s.peers(ctx, st)
	}
	return st, nil
}

// topParam reads ?top=N: 0 when absent, N capped at MaxTop.
func topParam(v string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: top %q: want a number of sources, 1 to %d", ErrInvalid, v, MaxTop)
	}
	return min(n, MaxTop), nil
}

// addTop puts each service's top offending sources in its admission
// status; what could not be read goes to the services' Error.
func addTop(ctx context.Context, st *Status, t AdmissionTopper, n int) {
	top, err := t.AdmissionTop(ctx, n)
	// Copies: the backend may keep what Status returned.
	st.Services = slices.Clone(st.Services)
	for i := range st.Services {
		if st.Services[i].Admission == nil {
			continue
		}
		a := *st.Services[i].Admission
		st.Services[i].Admission = &a
		a.Top = top[st.Services[i].Name]
		if len(a.Top) > n {
			a.Top = a.Top[:n]
		}
		if err != nil {
			a.Error = joinNonEmpty("; ", a.Error, "top sources: "+err.Error())
		}
	}
}

// joinNonEmpty joins the strings that are not empty with sep.
func joinNonEmpty(sep string, ss ...string) string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, sep)
}

// peers asks every other member for its status at once, each within the
// peer timeout; the goroutines end with their call, before peers returns.
func (s *Server) peers(ctx context.Context, st Status) []Peer {
	var others []Member
	for _, m := range st.Members {
		if m.ID != st.Node {
			others = append(others, m)
		}
	}
	out := make([]Peer, len(others))
	var wg sync.WaitGroup
	for i, m := range others {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.opts.PeerTimeout)
			defer cancel()
			ps, err := s.opts.Peers.Status(pctx, m.Address)
			if err != nil {
				out[i] = Peer{ID: m.ID, Error: err.Error()}
				return
			}
			out[i] = Peer{ID: m.ID, Role: ps.Role, RunningGeneration: ps.RunningGeneration, VRRPState: ps.VRRPState}
			if ps.Node != m.ID {
				out[i].Error = fmt.Sprintf("%s answers as %q", m.Address, ps.Node)
			}
		})
	}
	wg.Wait()
	return out
}

func (s *Server) admin(ctx context.Context, _ *http.Request, req AdminRequest) (AdminResult, error) {
	return s.b.SetAdmin(ctx, req)
}

func (s *Server) failover(ctx context.Context, _ *http.Request, req FailoverRequest) (FailoverResult, error) {
	return s.b.Failover(ctx, req.To)
}

func (s *Server) bgpDrain(ctx context.Context, _ *http.Request, req BGPDrainRequest) (BGPDrainResult, error) {
	d, ok := s.b.(BGPDrainer)
	if !ok {
		return BGPDrainResult{}, fmt.Errorf("%w: this node announces nothing over BGP", ErrNotFound)
	}
	return d.DrainBGP(ctx, req)
}

func (s *Server) reload(ctx context.Context, _ *http.Request, _ struct{}) (ReloadResult, error) {
	return s.b.Reload(ctx)
}

// members lists the members, as an empty list rather than null.
func (s *Server) members(ctx context.Context, _ *http.Request, _ struct{}) ([]Member, error) {
	ms, err := s.b.Members(ctx)
	if err == nil && ms == nil {
		ms = []Member{}
	}
	return ms, err
}

func (s *Server) join(ctx context.Context, _ *http.Request, req JoinRequest) (struct{}, error) {
	return struct{}{}, s.b.Join(ctx, req)
}

func (s *Server) remove(ctx context.Context, r *http.Request, _ struct{}) (struct{}, error) {
	return struct{}{}, s.b.Remove(ctx, r.PathValue("id"))
}

// ValidAdmin checks an admin request: a service, a real address and a known
// state (ErrInvalid otherwise).
func ValidAdmin(req AdminRequest) error {
	if req.Service == "" {
		return fmt.Errorf("%w: no service", ErrInvalid)
	}
	if !req.Real.IsValid() {
		return fmt.Errorf("%w: no real address", ErrInvalid)
	}
	switch req.State {
	case "enabled", "drained", "disabled":
		return nil
	}
	return fmt.Errorf("%w: unknown admin state %q (want enabled, drained or disabled)", ErrInvalid, req.State)
}

// ListenUnix listens on the unix socket path for the local API, root-only:
// the directory is created 0700 when missing, the socket is made 0600
// before anything is served on it. An existing directory must be owned by
// root (or by the user dsrd runs as) and writable by no one else: whoever
// can write there can put their own socket in dsrd's place, so ListenUnix
// refuses such a directory. A socket file left by a process that died is
// replaced; when something answers on it, ListenUnix fails: another dsrd is
// running there. Closing the listener removes the socket file.
func ListenUnix(path string) (net.Listener, error) {
	// Root, and the user dsrd runs as: the same in production; a witness
	// or a test run by another user trusts its own directories.
	return listenUnix(path, []uint32{0, uint32(os.Geteuid())})
}

// listenUnix is ListenUnix trusting directories owned by owners.
func listenUnix(path string, owners []uint32) (net.Listener, error) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create api socket directory: %w", err)
		}
		// MkdirAll's mode is subject to the umask: set it exactly.
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create api socket directory: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("api socket directory: %w", err)
	default:
		if err := checkSocketDir(dir, fi, owners); err != nil {
			return nil, err
		}
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The socket file is created with the umask's mode; nothing is served
	// before it is 0600, and the directory, which no one else may write
	// to, keeps others from swapping it in the moment in between.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("restrict api socket %s: %w", path, err)
	}
	return ln, nil
}

// checkSocketDir refuses an existing socket directory that someone other
// than owners could write to: one owned by another user, or writable by
// group or others (even sticky, as /tmp is: another user may take the
// socket's name before dsrd does).
func checkSocketDir(dir string, fi fs.FileInfo, owners []uint32) error {
	if !fi.IsDir() {
		return fmt.Errorf("api socket directory %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("api socket directory %s: owner unknown", dir)
	}
	mode := st.Mode & 0o7777 // as ls and chmod show it, sticky bit included
	if !slices.Contains(owners, st.Uid) {
		return fmt.Errorf("api socket directory %s (mode %04o) is owned by uid %d, not root: its owner could replace dsrd's socket; chown root %s, or set node.api_socket in a root-owned directory",
			dir, mode, st.Uid, dir)
	}
	if mode&0o022 != 0 {
		return fmt.Errorf("api socket directory %s (owner uid %d) has mode %04o, writable by group or others: they could replace dsrd's socket; chmod 0755 %s (or 0700), or set node.api_socket in another directory",
			dir, st.Uid, mode, dir)
	}
	return nil
}

// removeStale removes a socket file at path that nothing answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("api socket %s: a file that is not a socket is in the way", path)
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("another dsrd is running on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("api socket %s: cannot tell whether another dsrd uses it: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale api socket %s: %w", path, err)
	}
	return nil
}
