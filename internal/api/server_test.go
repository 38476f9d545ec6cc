package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
)

// socketDir returns a short temporary directory for unix sockets.
func socketDir(t *testing.T) string { return testutil.ShortTempDir(t) }

// startServer serves b's local API on a socket in a fresh directory and
// returns a client of it.
func startServer(t *testing.T, b api.Backend, opts api.ServerOptions) *api.Client {
	t.Helper()
	path := filepath.Join(socketDir(t), "run", "dsrd.sock")
	ln, err := api.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, api.NewServer(b, testutil.Logger(t), opts).Serve)
	c := api.NewClient(path)
	t.Cleanup(c.Close)
	return c
}

func TestListenUnix(t *testing.T) {
	dir := filepath.Join(socketDir(t), "run")
	path := filepath.Join(dir, "dsrd.sock")
	ln, err := api.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{dir: fs.ModeDir | 0o700, path: fs.ModeSocket | 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
	}

	// A live socket is not taken over.
	live := ln
	go func() { // ends when live is closed
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := api.ListenUnix(path); err == nil || !strings.Contains(err.Error(), "another dsrd is running on "+path) {
		t.Fatalf("ListenUnix on a live socket: %v", err)
	}
	ln.Close()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file left after Close: %v", err)
	}

	// A stale socket, as a crashed process leaves it, is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("no stale socket: %v", err)
	}
	ln, err = api.ListenUnix(path)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	ln.Close()

	// A file that is not a socket is left alone.
	if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := api.ListenUnix(path); err == nil {
		t.Fatal("ListenUnix replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "keep me" {
		t.Error("the regular file was changed")
	}
}

func TestListenUnixRefusesAnUnsafeDirectory(t *testing.T) {
	me := uint32(os.Geteuid())
	for _, tc := range []struct {
		name   string
		mode   os.FileMode
		owners []uint32 // trusted owners; the directory is the test's
		want   []string // in the error
	}{
		{"others may write", 0o777, []uint32{me}, []string{"mode 0777", "writable by group or others", "chmod 0755"}},
		{"group may write", 0o770, []uint32{me}, []string{"mode 0770", "chmod 0755"}},
		{"sticky, as /tmp", os.ModeSticky | 0o777, []uint32{me}, []string{"mode 1777", "chmod 0755"}},
		{"another owner", 0o755, []uint32{me + 1}, []string{"(mode 0755)", fmt.Sprintf("owned by uid %d, not root", me), "chown root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(socketDir(t), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tc.mode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "dsrd.sock")
			ln, err := api.ListenUnixTrusting(path, tc.owners...)
			if err == nil {
				ln.Close()
				t.Fatalf("ListenUnix in a %v directory: no error", tc.mode)
			}
			for _, w := range append(tc.want, "api socket directory "+dir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a socket was created in the refused directory: %v", err)
			}
		})
	}
}

func TestListenUnixAcceptsASafeDirectory(t *testing.T) {
	me := uint32(os.Geteuid())
	// 0750 is what systemd's RuntimeDirectoryMode makes /run/dsrd.
	for _, mode := range []os.FileMode{0o700, 0o750, 0o755} {
		dir := filepath.Join(socketDir(t), "run")
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		ln, err := api.ListenUnixTrusting(filepath.Join(dir, "dsrd.sock"), 0, me)
		if err != nil {
			t.Fatalf("directory %v: %v", mode, err)
		}
		ln.Close()
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("directory %v changed: %v %v", mode, fi, err)
		}
	}
}

func TestClientSocketErrors(t *testing.T) {
	path := filepath.Join(socketDir(t), "dsrd.sock")
	_, err := api.NewClient(path).Status(t.Context())
	var se *api.SocketError
	if !errors.As(err, &se) || !errors.Is(err, api.ErrNotRunning) {
		t.Fatalf("no socket: %#v", err)
	}
	if want := "no dsrd director or witness is running here (no socket at " + path + ")"; err.Error() != want {
		t.Errorf("no socket: %q, want %q", err, want)
	}
	denied := &api.SocketError{Path: path, Err: &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("connect", syscall.EACCES)}}
	if want := "permission denied on " + path + ": run as root"; denied.Error() != want {
		t.Errorf("permission denied: %q, want %q", denied, want)
	}
	if !errors.Is(denied, fs.ErrPermission) || errors.Is(denied, api.ErrNotRunning) {
		t.Error("permission denied matches the wrong errors")
	}
}

func TestServerClient(t *testing.T) {
	b := apitest.NewBackend(apitest.SampleStatus())
	c := startServer(t, b, api.ServerOptions{})
	ctx := testutil.Context(t, testTimeout)

	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := apitest.SampleStatus(); !jsonEqual(t, st, want) {
		t.Errorf("status over the socket differs:\n got %+v\nwant %+v", st, want)
	}

	res, err := c.SetAdmin(ctx, api.AdminRequest{Service: "web", Real: netip.MustParseAddr("198.51.100.10"), State: "drained"})
	if err != nil {
		t.Fatal(err)
	}
	if res != (api.AdminResult{Service: "tcp/203.0.113.10:80", Previous: "enabled", Changed: true}) {
		t.Errorf("SetAdmin = %+v", res)
	}
	for name, tc := range map[string]struct {
		req    api.AdminRequest
		target error
		status int
	}{
		"unknown service": {api.AdminRequest{Service: "ftp", Real: netip.MustParseAddr("198.51.100.10"), State: "drained"}, api.ErrNotFound, 404},
		"unknown real":    {api.AdminRequest{Service: "web", Real: netip.MustParseAddr("198.51.100.99"), State: "drained"}, api.ErrNotFound, 404},
		"bad state":       {api.AdminRequest{Service: "web", Real: netip.MustParseAddr("198.51.100.10"), State: "off"}, api.ErrInvalid, 400},
		"no real":         {api.AdminRequest{Service: "web", State: "drained"}, api.ErrInvalid, 400},
	} {
		_, err := c.SetAdmin(ctx, tc.req)
		var ae *api.Error
		if !errors.Is(err, tc.target) || !errors.As(err, &ae) || ae.StatusCode != tc.status {
			t.Errorf("%s: %v", name, err)
		}
	}

	fo, err := c.Failover(ctx, "d2")
	if err != nil || fo != (api.FailoverResult{From: "d1", To: "d2"}) {
		t.Errorf("Failover = %+v, %v", fo, err)
	}
	if _, err := c.Failover(ctx, "d9"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Failover to a stranger: %v", err)
	}

	b.SetNextReload(api.ReloadResult{OK: false, Errors: []string{"/etc/dsrd/director.yaml:3:3: unknown key"}})
	rr, err := c.Reload(ctx)
	if err != nil || rr.OK || len(rr.Errors) != 1 || rr.Generation != 12 {
		t.Errorf("invalid reload = %+v, %v", rr, err)
	}
	b.SetNextReload(api.ReloadResult{OK: true, Changed: true})
	if rr, err := c.Reload(ctx); err != nil || !rr.OK || rr.Generation != 13 {
		t.Errorf("reload = %+v, %v", rr, err)
	}

	if err := c.Join(ctx, api.JoinRequest{ID: "d3", Address: "192.0.2.14:7946", Voter: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, api.JoinRequest{ID: "d4", Address: "nowhere"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("join with a bad address: %v", err)
	}
	ms, err := c.Members(ctx)
	if err != nil || len(ms) != 4 || ms[3] != (api.Member{ID: "d3", Address: "192.0.2.14:7946", Suffrage: "voter"}) {
		t.Errorf("members = %+v, %v", ms, err)
	}
	if err := c.Remove(ctx, "d3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "d3"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("remove of a stranger: %v", err)
	}

	// A backend that could not reach a leader: 409 naming it.
	b.FailWith(&raft.NotLeaderError{LeaderID: "d2", LeaderAddress: "192.0.2.12:7946"})
	err = c.Join(ctx, api.JoinRequest{ID: "d5", Address: "192.0.2.15:7946"})
	var ae *api.Error
	var nle *raft.NotLeaderError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || !errors.As(err, &nle) || nle.LeaderAddress != "192.0.2.12:7946" {
		t.Errorf("not leader: %#v", err)
	}
	b.FailWith(errors.New("boom"))
	if _, err := c.Members(ctx); !errors.As(err, &ae) || ae.StatusCode != 500 || err.Error() != "boom" {
		t.Errorf("failure: %v", err)
	}
}

// TestServerLimits checks the body limit and the answers to requests no
// route takes.
func TestServerLimits(t *testing.T) {
	srv := api.NewServer(apitest.NewBackend(apitest.SampleStatus()), testutil.Logger(t), api.ServerOptions{})
	h := srv.Handler()
	big := `{"service":"` + strings.Repeat("x", 2<<20) + `"}`
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/admin", big, 400},
		{"POST", "/v1/admin", `{"service":`, 400},
		{"POST", "/v1/admin", `{} {}`, 400},
		{"GET", "/v1/admin", "", 405},
		{"GET", "/v1/nothing", "", 404},
		{"POST", "/v1/failover", "", 200}, // no body: any target
	} {
		rec := newRecorder()
		h.ServeHTTP(rec, mustRequest(t, tc.method, tc.path, tc.body))
		if rec.status != tc.status {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, rec.status, tc.status, rec.body.String())
		}
	}
}

// TestStatusPeers checks that ?peers=1 asks every other member, in
// parallel and each within the peer timeout.
func TestStatusPeers(t *testing.T) {
	st := apitest.SampleStatus()
	st.Peers = nil
	d2 := apitest.NewBackend(api.Status{Node: "d2", Role: "director", RunningGeneration: 12, VRRPState: "BACKUP"})
	w1 := apitest.NewBackend(api.Status{Node: "w1", Role: "witness"})
	st.Members[1].Address = servePeer(t, api.NewPeerServer(notLeader{}, api.AllowAllPeers{}, d2, testutil.Logger(t)))
	st.Members[2].Address = servePeer(t, api.NewPeerServer(notLeader{}, api.AllowAllPeers{}, w1, testutil.Logger(t)))
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	st.Members = append(st.Members, api.Member{ID: "d3", Address: silent.Addr().String(), Suffrage: "nonvoter"})

	peers := tcpPeers()
	c := startServer(t, apitest.NewBackend(st), api.ServerOptions{Peers: &peers, PeerTimeout: 300 * time.Millisecond})
	got, err := c.StatusWithPeers(testutil.Context(t, testTimeout))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Peers) != 3 {
		t.Fatalf("peers = %+v", got.Peers)
	}
	if p := got.Peers[0]; p != (api.Peer{ID: "d2", Role: "director", RunningGeneration: 12, VRRPState: "BACKUP"}) {
		t.Errorf("d2 = %+v", p)
	}
	if p := got.Peers[1]; p != (api.Peer{ID: "w1", Role: "witness"}) {
		t.Errorf("w1 = %+v", p)
	}
	if p := got.Peers[2]; p.ID != "d3" || p.Error == "" {
		t.Errorf("silent d3 = %+v", p)
	}
	// Without ?peers=1, nobody is asked.
	if got, err := c.Status(testutil.Context(t, testTimeout)); err != nil || got.Peers != nil {
		t.Errorf("status without peers: %+v, %v", got.Peers, err)
	}
}

// TestPeerServerErrors checks the peer server's answers to bad requests.
func TestPeerServerErrors(t *testing.T) {
	addr := servePeer(t, api.NewPeerServer(notLeader{"192.0.2.12:7946"}, api.AllowAllPeers{}, apitest.NewBackend(api.Status{Node: "d1"}), testutil.Logger(t)))
	peers := tcpPeers()
	ctx := testutil.Context(t, testTimeout)
	var ae *api.Error
	_, err := peers.SetAdmin(ctx, addr, webRef, "off")
	if !errors.Is(err, api.ErrInvalid) || !errors.As(err, &ae) || ae.StatusCode != 400 {
		t.Errorf("bad state: %v", err)
	}
	err = peers.Join(ctx, addr, api.JoinRequest{ID: "d4", Address: "192.0.2.14"})
	if !errors.Is(err, api.ErrInvalid) {
		t.Errorf("join without a port: %v", err)
	}
	err = peers.Remove(ctx, addr, "d4")
	var nle *raft.NotLeaderError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusMisdirectedRequest || !errors.As(err, &nle) ||
		nle.LeaderAddress != "192.0.2.12:7946" || nle.LeaderID != "x" {
		t.Errorf("remove at a follower: %#v", err)
	}
	if err := peers.Failover(ctx, addr, ""); !errors.Is(err, raft.ErrNotLeader) {
		t.Errorf("failover at a follower: %v", err)
	}
	if st, err := peers.Status(ctx, addr); err != nil || st.Node != "d1" {
		t.Errorf("status: %+v, %v", st, err)
	}
	// A forwarder whose leader is unknown gives the local error back.
	fw := api.Forwarder{Local: notLeader{}, Peers: peers}
	if _, err := fw.SubmitConfig(ctx, testSpec(1), "d1"); !errors.As(err, &nle) || nle.LeaderAddress != "" {
		t.Errorf("forward without a leader: %v", err)
	}
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.body.Write(p)
}
func (r *recorder) WriteHeader(s int) { r.status = s }

func mustRequest(t *testing.T, method, path, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, "http://dsrd"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// topBackend is a backend with admission control: it returns, for the
// service web, more sources than asked for, and records each n.
type topBackend struct {
	*apitest.Backend
	mu   sync.Mutex
	asks []int
	err  error
}

func (b *topBackend) AdmissionTop(ctx context.Context, n int) (map[string][]api.TopSource, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asks = append(b.asks, n)
	var l []api.TopSource
	for i := range api.MaxTop + 5 {
		l = append(l, api.TopSource{Source: netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}), Packets: uint64(1000 - i), ExpiresIn: time.Minute})
	}
	return map[string][]api.TopSource{"web": l, "unknown": l}, b.err
}

// TestStatusTop: ?top=N adds each service's top dropped sources to its
// admission status, N capped at MaxTop; a bad N is refused; what the
// backend could not read goes to the service's error; a backend without
// admission control answers the status without them.
func TestStatusTop(t *testing.T) {
	b := &topBackend{Backend: apitest.NewBackend(apitest.SampleStatus())}
	c := startServer(t, b, api.ServerOptions{})
	ctx := testutil.Context(t, testTimeout)
	st, err := c.StatusTop(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	a := st.Services[0].Admission
	if st.Services[0].Name != "web" || a == nil || len(a.Top) != 2 || a.Top[0].Source != netip.MustParseAddr("192.0.2.100") ||
		a.Top[0].Packets != 1000 || a.Top[0].ExpiresIn != time.Minute || a.Error != "" {
		t.Fatalf("top 2: %+v", a)
	}
	if st, err = c.StatusTop(ctx, 1000); err != nil || len(st.Services[0].Admission.Top) != api.MaxTop {
		t.Fatalf("top 1000: %v, %+v", err, st.Services[0].Admission)
	}
	if st, err = c.Status(ctx); err != nil || st.Services[0].Admission.Top != nil {
		t.Fatalf("status without top: %v, %+v", err, st.Services[0].Admission)
	}
	b.mu.Lock()
	if want := []int{2, api.MaxTop}; !slices.Equal(b.asks, want) {
		t.Errorf("the backend was asked for %v, want %v", b.asks, want)
	}
	b.err = errors.New("read set top_web: boom")
	b.mu.Unlock()
	if st, err = c.StatusTop(ctx, 3); err != nil || !strings.Contains(st.Services[0].Admission.Error, "top sources: read set top_web: boom") {
		t.Fatalf("top with an error: %v, %+v", err, st.Services[0].Admission)
	}
	h := api.NewServer(b, testutil.Logger(t), api.ServerOptions{}).Handler()
	for _, q := range []string{"0", "-1", "x", "1e3", ""} {
		rec := newRecorder()
		h.ServeHTTP(rec, mustRequest(t, "GET", "/v1/status?top="+q, ""))
		want := 400
		if q == "" {
			want = 200
		}
		if rec.status != want {
			t.Errorf("?top=%s: %d, want %d (%s)", q, rec.status, want, rec.body.String())
		}
	}
	// A witness has no admission control.
	w := startServer(t, apitest.NewBackend(apitest.SampleStatus()), api.ServerOptions{})
	if st, err := w.StatusTop(ctx, 3); err != nil || st.Services[0].Admission.Top != nil || st.Services[0].Admission.Error != "" {
		t.Fatalf("top from a backend without it: %v, %+v", err, st.Services[0].Admission)
	}
}
