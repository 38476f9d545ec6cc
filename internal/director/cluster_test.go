package director

import (
	"context"
	"errors"
	"fmt"
	"github.com/dsrd/dsrd/internal/admission"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/vrrp"
)

// The lab cluster of these tests: two directors and a witness on
// 127.0.0.1 with real TCP Raft and the peer protocol, the kernels faked.
var (
	labVIP     = netip.MustParseAddr("203.0.113.10")
	labWeb     = ipvs.NewServiceKey(ipvs.TCP, netip.AddrPortFrom(labVIP, 80))
	labExtra   = ipvs.NewServiceKey(ipvs.TCP, netip.AddrPortFrom(labVIP, 8080))
	labForeign = ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("198.51.100.99:443"))
)

// Raft timings of the lab: prompt elections that still leave room for the
// race detector on a loaded 2-core machine (hashicorp/raft randomises the
// timeouts between 1x and 2x). A leader lease of 200 ms made leaders step
// down under a load average of 12; the test's failovers are planned
// (leadership transfers), so longer timeouts cost it little time.
const labTimings = `  heartbeat_timeout: 500ms
  election_timeout: 500ms
  leader_lease_timeout: 500ms
  commit_timeout: 5ms
`

// labDirector is one director of the lab with its fake kernels, which
// outlive restarts of the director.
type labDirector struct {
	id, conf, data, sock string

	ipvs *ipvs.Fake
	vips *vrrp.FakeKernel
	ann  *announcements
	sys  *memSysctls
	adm  *admission.Fake
	// metrics, when set, are given to the director on every start.
	metrics *metrics.Set

	d      *Director
	cancel context.CancelFunc
	done   chan error
}

// labWitness is the witness of the lab.
type labWitness struct {
	id, conf, sock string
	metrics        *metrics.Set // given to the witness when set
	w              *Witness
	cancel         context.CancelFunc
	done           chan error
}

// lab is a running cluster.
type lab struct {
	t      *testing.T
	dir    string
	health string // the health checks' files: one per real that is up
	log    *slog.Logger
	peers  string
	ports  map[string]uint16
	dirs   map[string]*labDirector
	wit    *labWitness
}

// newLab writes the configurations of dir1, dir2 and wit (services given
// as YAML list items) and starts nothing.
func newLab(t *testing.T, services string) *lab {
	// The witness first among the peers: hashicorp/raft, left to choose a
	// transfer's target, takes the first of the most up-to-date voters.
	return newLabOf(t, services, "wit", "dir1", "dir2")
}

// newLabOf is newLab with the given members: directors dir1 and dir2,
// the witness wit.
func newLabOf(t *testing.T, services string, members ...string) *lab {
	l := &lab{t: t, dir: testutil.ShortTempDir(t), log: testutil.Logger(t), ports: map[string]uint16{}, dirs: map[string]*labDirector{}}
	l.health = joinPath(l.dir, "health")
	if err := os.Mkdir(l.health, 0o700); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, len(members))
	var peers []string
	for i, id := range members {
		l.ports[id] = ports[i]
		peers = append(peers, fmt.Sprintf("%s@127.0.0.1:%d", id, ports[i]))
	}
	l.peers = strings.Join(peers, ", ")
	for _, id := range members {
		if id == "wit" {
			l.wit = &labWitness{id: "wit", conf: joinPath(l.dir, "wit.yaml"), sock: joinPath(l.dir, "wit.sock")}
			writeFile(t, l.wit.conf, fmt.Sprintf("node: {id: wit, data_dir: %s, api_socket: %s}\ncluster:\n  bind: 127.0.0.1:%d\n  peers: [%s]\n%s",
				joinPath(l.dir, "wit"), l.wit.sock, l.ports["wit"], l.peers, labTimings))
			continue
		}
		n := &labDirector{
			id:   id,
			conf: joinPath(l.dir, id+".yaml"),
			data: joinPath(l.dir, id),
			sock: joinPath(l.dir, id+".sock"),
			ipvs: ipvs.NewFake(),
			vips: vrrp.NewFakeKernel("eth0"),
			ann:  &announcements{},
			sys:  newMemSysctls(),
			adm:  &admission.Fake{},
		}
		l.dirs[id] = n
		l.writeDirector(n, services)
	}
	t.Cleanup(l.stopAll)
	return l
}

// directorFile is a director's configuration file with these services.
func (l *lab) directorFile(n *labDirector, services string) string {
	return fmt.Sprintf(`node:
  id: %s
  interface: eth0
  data_dir: %s
  api_socket: %s
cluster:
  bind: 127.0.0.1:%d
  peers: [%s]
%svips:
  - address: %s
services:
%s`, n.id, n.data, n.sock, l.ports[n.id], l.peers, labTimings, labVIP, services)
}

// writeDirector writes a director's file.
func (l *lab) writeDirector(n *labDirector, services string) {
	writeFile(l.t, n.conf, l.directorFile(n, services))
}

// check is the health check of the lab's services: a real is up while
// its file exists in l.health. Interval and fall bound how fast a real
// is taken out (fall × interval): short, with a timeout that leaves room
// for a slow fork under the race detector.
func (l *lab) check() string {
	return fmt.Sprintf(`{type: exec, command: [/bin/sh, -c, 'test -e %s/"$DSRD_REAL_ADDRESS"'], interval: 400ms, timeout: 350ms, rise: 1, fall: 3}`, l.health)
}

// service is a tcp service of the lab VIP with the lab's check.
func (l *lab) service(name string, port int, reals ...string) string {
	return l.serviceWith(name, port, l.check(), reals...)
}

// serviceWith is a tcp service of the lab VIP with this check.
func (l *lab) serviceWith(name string, port int, check string, reals ...string) string {
	var rs []string
	for _, r := range reals {
		rs = append(rs, "{address: "+r+"}")
	}
	return fmt.Sprintf("  - name: %s\n    vip: %s\n    port: %d\n    protocol: tcp\n    scheduler: mh\n    health_check: %s\n    reals: [%s]\n",
		name, labVIP, port, check, strings.Join(rs, ", "))
}

// setHealth makes a real's check pass (up) or fail.
func (l *lab) setHealth(real string, up bool) {
	p := joinPath(l.health, real)
	if up {
		writeFile(l.t, p, "")
		return
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.t.Fatal(err)
	}
}

// start starts a director (again) on its data dir and fake kernels.
func (l *lab) start(n *labDirector) {
	l.t.Helper()
	l.run(n, l.newDirector(n))
}

// newDirector prepares a director on n's file and fake kernels; run runs it.
func (l *lab) newDirector(n *labDirector) *Director {
	t := l.t
	t.Helper()
	d, err := New(Options{
		ConfigPath: n.conf,
		Logger:     l.log,
		IPVS:       n.ipvs,
		Sysctls:    n.sys,
		Admission:  n.adm,
		VIPKernel:  n.vips,
		Announce:   n.ann.send,
		Metrics:    n.metrics,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// run runs d as n until stop, and waits until it is ready.
func (l *lab) run(n *labDirector, d *Director) {
	t := l.t
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }() // ends when ctx is cancelled (stop)
	n.d, n.cancel, n.done = d, cancel, done
	select {
	case <-d.Ready():
	case err := <-done:
		n.d = nil
		t.Fatalf("%s: run: %v", n.id, err)
	case <-time.After(testTimeout):
		t.Fatalf("%s: not ready after %s", n.id, testTimeout)
	}
}

// stop stops a director and waits for Run to return.
func (l *lab) stop(n *labDirector) {
	l.t.Helper()
	if n.d == nil {
		return
	}
	n.cancel()
	select {
	case err := <-n.done:
		if err != nil {
			l.t.Errorf("%s: run: %v", n.id, err)
		}
	case <-time.After(testTimeout):
		l.t.Errorf("%s: run did not return within %s of its cancellation; goroutines:\n%s", n.id, testTimeout, goroutines())
	}
	n.d = nil
}

// startWitness starts the witness.
func (l *lab) startWitness() {
	t := l.t
	t.Helper()
	w := NewWitness(loadWitness(t, l.wit.conf), l.log, l.wit.metrics)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }() // ends when ctx is cancelled
	l.wit.w, l.wit.cancel, l.wit.done = w, cancel, done
	select {
	case <-w.Ready():
	case err := <-done:
		l.wit.w = nil
		t.Fatalf("witness: run: %v", err)
	case <-time.After(testTimeout):
		t.Fatalf("witness: not ready after %s", testTimeout)
	}
}

// stopAll stops every running node.
func (l *lab) stopAll() {
	var wg sync.WaitGroup
	for _, n := range l.dirs {
		if n.d != nil {
			wg.Go(func() { l.stop(n) })
		}
	}
	if w := l.wit; w != nil && w.w != nil {
		wg.Go(func() {
			w.cancel()
			select {
			case <-w.done:
			case <-time.After(testTimeout):
				l.t.Errorf("witness: run did not return within %s", testTimeout)
			}
			w.w = nil
		})
	}
	wg.Wait()
}

// running returns the running directors.
func (l *lab) running() []*labDirector {
	var out []*labDirector
	for _, id := range []string{"dir1", "dir2"} {
		if n := l.dirs[id]; n != nil && n.d != nil {
			out = append(out, n)
		}
	}
	return out
}

// other returns the director that is not n.
func (l *lab) other(n *labDirector) *labDirector {
	if n.id == "dir1" {
		return l.dirs["dir2"]
	}
	return l.dirs["dir1"]
}

// waitVIPOwner waits until exactly one director holds the VIP, that it
// is the Raft leader with established leadership, and that no other
// director (running or not) holds it; it returns the owner.
func (l *lab) waitVIPOwner(not *labDirector) *labDirector {
	l.t.Helper()
	var owner *labDirector
	testutil.WaitFor(l.t, testTimeout, "one director, the leader, holding the VIP", func() (bool, string) {
		owner = nil
		var holders []string
		for _, id := range []string{"dir1", "dir2"} {
			n := l.dirs[id]
			if n != nil && holdsVIP(n.vips, labVIP) {
				holders = append(holders, id)
				owner = n
			}
		}
		if len(holders) != 1 || owner == not || owner.d == nil || !owner.d.node.IsLeader() {
			return false, fmt.Sprintf("holders %v", holders)
		}
		return true, ""
	})
	return owner
}

// waitWeights waits until every running director's IPVS holds the service
// with exactly these destinations ("addr:port=weight", sorted; none: no
// such service).
func (l *lab) waitWeights(key ipvs.ServiceKey, want ...string) {
	l.t.Helper()
	l.waitWeightsWithin(testTimeout, key, want...)
}

// waitWeightsWithin is waitWeights with a bound of its own.
func (l *lab) waitWeightsWithin(timeout time.Duration, key ipvs.ServiceKey, want ...string) {
	l.t.Helper()
	testutil.WaitFor(l.t, timeout, fmt.Sprintf("%s = %v on every director", key, want), func() (bool, string) {
		var saw []string
		ok := true
		for _, n := range l.running() {
			got := weightsOf(n.ipvs, key)
			saw = append(saw, fmt.Sprintf("%s: %v", n.id, got))
			if !slices.Equal(got, want) || (want == nil) != (got == nil) {
				ok = false
			}
		}
		return ok, strings.Join(saw, "; ")
	})
}

// witnessLeadership records how long each leadership of the witness
// lasted, until ctx ends.
type witnessLeadership struct {
	mu      sync.Mutex
	since   time.Time // zero while not leader
	longest time.Duration
	terms   int
}

func (l *lab) watchWitness(ctx context.Context) *witnessLeadership {
	wl := &witnessLeadership{}
	ch := l.wit.w.node.Leadership(ctx)
	go func() { // ends when ctx ends: the subscription is then closed
		for leader := range ch {
			wl.mu.Lock()
			switch {
			case leader && wl.since.IsZero():
				wl.since = time.Now()
				wl.terms++
			case !leader && !wl.since.IsZero():
				wl.longest = max(wl.longest, time.Since(wl.since))
				wl.since = time.Time{}
			}
			wl.mu.Unlock()
		}
	}()
	return wl
}

// longestTerm is the longest leadership of the witness so far, the
// current one included.
func (wl *witnessLeadership) longestTerm() (time.Duration, int) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	d := wl.longest
	if !wl.since.IsZero() {
		d = max(d, time.Since(wl.since))
	}
	return d, wl.terms
}

// transient reports whether a cluster write failed only because
// leadership was changing: the caller may try again.
func transient(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	for _, s := range []string{"not the raft leader", "leadership lost", "leadership transfer in progress", "no leader"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// retryTransient runs op until it succeeds, fails for another reason than
// a leadership change, or testTimeout passes.
func retryTransient(t *testing.T, op func() error) error {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		err := op()
		if !transient(err) || time.Now().After(deadline) {
			return err
		}
		t.Logf("retrying after a leadership change: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

// reload reloads a node's file through its API, again when the
// submission failed on a leadership change.
func reload(t *testing.T, c *api.Client) api.ReloadResult {
	t.Helper()
	var res api.ReloadResult
	err := retryTransient(t, func() error {
		var err error
		if res, err = c.Reload(ctxTimeout(t)); err != nil {
			return err
		}
		if !res.OK && len(res.Errors) == 1 && strings.HasPrefix(res.Errors[0], "submit to the cluster") {
			return errors.New(res.Errors[0])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// status returns a node's status through its API socket.
func status(t *testing.T, c *api.Client) api.Status {
	t.Helper()
	st, err := c.Status(ctxTimeout(t))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// serviceOf returns a service of a status by name.
func serviceOf(st api.Status, name string) (api.Service, bool) {
	for _, s := range st.Services {
		if s.Name == name {
			return s, true
		}
	}
	return api.Service{}, false
}

func TestClusterOfDirectors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Raft cluster on 127.0.0.1")
	}
	reals := []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"}
	l := newLab(t, "")
	for _, r := range reals {
		l.setHealth(r, true)
	}
	// web is the service under test; extra is removed from the
	// configuration while a director is down; foreign is another
	// program's, in both kernels from the start, never to be touched.
	extra := l.service("extra", 8080, "192.0.2.21")
	services := l.service("web", 80, reals...)
	for _, n := range l.dirs {
		l.writeDirector(n, services+extra)
		foreign := ipvs.NewService(labForeign, "wlc")
		foreign.Put(ipvs.NewDestination(netip.MustParseAddr("198.51.100.99"), 443, 5))
		n.ipvs.Seed(foreign)
	}
	all100 := []string{"192.0.2.21:80=100", "192.0.2.22:80=100", "192.0.2.23:80=100"}

	l.startWitness()
	wl := l.watchWitness(t.Context())
	l.start(l.dirs["dir1"])
	l.start(l.dirs["dir2"])

	// One director, the leader, holds the VIP and announced it; both
	// program the service with every real up.
	leader := l.waitVIPOwner(nil)
	follower := l.other(leader)
	testutil.WaitFor(t, testTimeout, "an announcement of the VIP by its owner", func() (bool, string) {
		return leader.ann.count(labVIP.String()) > 0, fmt.Sprint(leader.ann.calls)
	})
	if n := follower.ann.count(labVIP.String()); n != 0 {
		t.Errorf("%s (follower) announced the VIP %d times", follower.id, n)
	}
	l.waitWeights(labWeb, all100...)
	l.waitWeights(labExtra, "192.0.2.21:8080=100")
	fc := apiClient(t, follower.sock)
	testutil.WaitFor(t, testTimeout, "the follower's status: web up with 3 healthy reals, generation running", func() (bool, string) {
		st := status(t, fc)
		s, ok := serviceOf(st, "web")
		return ok && s.Up && s.Healthy == 3 && st.RunningGeneration == st.Generation && st.Generation > 0,
			fmt.Sprintf("%+v running %d generation %d", s, st.RunningGeneration, st.Generation)
	})

	t.Run("the start-up submission is the first reload", func(t *testing.T) {
		// Both directors submit the same file: the first one's changes
		// the (empty) cluster configuration, the second one's does not.
		changed := 0
		for _, n := range l.running() {
			c := apiClient(t, n.sock)
			var st api.Status
			testutil.WaitFor(t, testTimeout, n.id+"'s start-up submission recorded", func() (bool, string) {
				st = status(t, c)
				return !st.Reload.At.IsZero(), fmt.Sprintf("%+v", st.Reload)
			})
			if r := st.Reload; !r.OK || r.Generation != st.Generation || len(r.Errors) > 0 {
				t.Errorf("%s: last reload %+v, want ok at generation %d", n.id, r, st.Generation)
			}
			if st.Reload.Changed {
				changed++
			}
		}
		if changed != 1 {
			t.Errorf("%d start-up submissions changed the configuration, want 1", changed)
		}
	})

	t.Run("drain through the follower", func(t *testing.T) {
		var res api.AdminResult
		err := retryTransient(t, func() (err error) {
			res, err = fc.SetAdmin(ctxTimeout(t), api.AdminRequest{Service: "web", Real: netip.MustParseAddr("192.0.2.22"), State: "drained"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Changed || res.Previous != "enabled" {
			t.Errorf("drain = %+v, want changed from enabled", res)
		}
		l.waitWeights(labWeb, "192.0.2.21:80=100", "192.0.2.22:80=0", "192.0.2.23:80=100")
		if err := retryTransient(t, func() error {
			_, err := fc.SetAdmin(ctxTimeout(t), api.AdminRequest{Service: "tcp/203.0.113.10:80", Real: netip.MustParseAddr("192.0.2.22"), State: "enabled"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		l.waitWeights(labWeb, all100...)
	})

	t.Run("a real going down and back", func(t *testing.T) {
		// fall × interval is 500 ms; the bound leaves room for a slow
		// fork and scheduling under the race detector on a loaded host.
		const within = 5 * time.Second
		l.setHealth("192.0.2.23", false)
		l.waitWeightsWithin(within, labWeb, "192.0.2.21:80=100", "192.0.2.22:80=100", "192.0.2.23:80=0")
		testutil.WaitFor(t, testTimeout, "the follower's status: 2 healthy reals", func() (bool, string) {
			s, _ := serviceOf(status(t, fc), "web")
			return s.Healthy == 2, fmt.Sprintf("%+v", s)
		})
		l.setHealth("192.0.2.23", true)
		l.waitWeightsWithin(within, labWeb, all100...)
		testutil.WaitFor(t, testTimeout, "the follower's status: 3 healthy reals", func() (bool, string) {
			s, _ := serviceOf(status(t, fc), "web")
			return s.Healthy == 3, fmt.Sprintf("%+v", s)
		})
	})

	t.Run("reload", func(t *testing.T) {
		before := status(t, fc)
		// An invalid file: every error comes back, nothing changes.
		l.writeDirector(follower, services+extra+"  - name: web\n    vip: 203.0.113.10\n    port: 0x\n")
		res := reload(t, fc)
		if res.OK || len(res.Errors) == 0 || res.Generation != before.Generation {
			t.Fatalf("reload of an invalid file = %+v, want not ok with errors at generation %d", res, before.Generation)
		}
		for _, e := range res.Errors {
			if !strings.HasPrefix(e, follower.conf+":") || strings.Count(e, ":") < 3 {
				t.Errorf("error %q is not file:line:col: message", e)
			}
		}
		if st := status(t, fc); st.Generation != before.Generation || st.ConfigHash != before.ConfigHash || st.Reload.OK {
			t.Errorf("after the invalid reload: generation %d hash %s reload %+v, want generation %d hash %s and the failure",
				st.Generation, st.ConfigHash, st.Reload, before.Generation, before.ConfigHash)
		}
		l.waitWeights(labWeb, all100...)

		// A valid file with one more real reaches both directors.
		l.setHealth("192.0.2.24", true)
		services = l.service("web", 80, append(reals, "192.0.2.24")...)
		for _, n := range l.dirs {
			l.writeDirector(n, services+extra)
		}
		res = reload(t, fc)
		if !res.OK || !res.Changed || res.Generation != before.Generation+1 {
			t.Fatalf("reload = %+v, want ok, changed, generation %d", res, before.Generation+1)
		}
		all100 = append(all100, "192.0.2.24:80=100")
		l.waitWeights(labWeb, all100...)
		if st := status(t, fc); !st.Reload.OK || st.Reload.Generation != res.Generation || !st.Reload.Changed {
			t.Errorf("status's last reload = %+v, want %+v", st.Reload, res)
		}
	})

	t.Run("failover through the API", func(t *testing.T) {
		// Asked of the follower, named as the target: forwarded to the
		// leader, and not handed to the witness on the way.
		old := l.waitVIPOwner(nil)
		to := l.other(old)
		var res api.FailoverResult
		err := retryTransient(t, func() (err error) {
			res, err = apiClient(t, to.sock).Failover(ctxTimeout(t), to.id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if res.From != old.id {
			t.Errorf("failover = %+v, want from %s", res, old.id)
		}
		if owner := l.waitVIPOwner(old); owner != to {
			t.Errorf("the VIP went to %s, want %s", owner.id, to.id)
		}
		if holdsVIP(old.vips, labVIP) {
			t.Errorf("%s still holds the VIP after the failover to %s", old.id, to.id)
		}
	})

	t.Run("failover without a target goes to the other director", func(t *testing.T) {
		// raft alone picks the most up-to-date follower, often the
		// witness; dsrd asks the members and picks the director whose
		// interface is up. Three times, asked of either director.
		_, witTerms := wl.longestTerm()
		for i := range 3 {
			old := l.waitVIPOwner(nil)
			other := l.other(old)
			ask := []*labDirector{old, other}[i%2]
			var res api.FailoverResult
			err := retryTransient(t, func() (err error) {
				res, err = apiClient(t, ask.sock).Failover(ctxTimeout(t), "")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if res.From != old.id || res.To != other.id {
				t.Fatalf("failover %d asked of %s = %+v, want from %s to %s (not the witness)", i+1, ask.id, res, old.id, other.id)
			}
			if owner := l.waitVIPOwner(old); owner != other {
				t.Fatalf("failover %d: the VIP went to %s, want %s", i+1, owner.id, other.id)
			}
			if _, n := wl.longestTerm(); n != witTerms {
				t.Fatalf("failover %d: leadership went through the witness", i+1)
			}
		}
	})

	t.Run("the leader's VIP interface fails", func(t *testing.T) {
		// FAULT: the leader hands leadership to the director whose
		// interface is up, directly (not through the witness); when its
		// link returns it stays BACKUP and holds nothing.
		old := l.waitVIPOwner(nil)
		other := l.other(old)
		_, witTerms := wl.longestTerm()
		old.vips.AddLink(netkernel.Link{Name: "eth0"}) // down
		if owner := l.waitVIPOwner(old); owner != other {
			t.Fatalf("after %s's link went down the VIP is on %s, want %s", old.id, owner.id, other.id)
		}
		if _, n := wl.longestTerm(); n != witTerms {
			t.Errorf("leadership went through the witness (%d terms of it)", n-witTerms)
		}
		if holdsVIP(old.vips, labVIP) {
			t.Errorf("%s holds the VIP on a link that is down", old.id)
		}
		if st := status(t, apiClient(t, old.sock)); st.VRRPState != "FAULT" {
			t.Errorf("%s's VRRP state %q, want FAULT", old.id, st.VRRPState)
		}
		old.vips.AddLink(netkernel.Link{Name: "eth0", Up: true, Running: true})
		testutil.WaitFor(t, testTimeout, old.id+" back in BACKUP", func() (bool, string) {
			st := status(t, apiClient(t, old.sock))
			return st.VRRPState == "BACKUP", st.VRRPState
		})
		if owner := l.waitVIPOwner(nil); owner != other || holdsVIP(old.vips, labVIP) {
			t.Errorf("after %s's link returned the VIP is on %s (and on %s: %v), want only %s", old.id, owner.id, old.id, holdsVIP(old.vips, labVIP), other.id)
		}
	})

	t.Run("the leader stops", func(t *testing.T) {
		// A graceful stop hands leadership to the other director
		// directly, not through the witness.
		old := l.waitVIPOwner(nil)
		_, witTerms := wl.longestTerm()
		l.stop(old)
		if holdsVIP(old.vips, labVIP) {
			t.Fatalf("%s stopped and still holds the VIP", old.id)
		}
		l.waitVIPOwner(old)
		if _, n := wl.longestTerm(); n != witTerms {
			t.Errorf("leadership went through the witness (%d terms of it)", n-witTerms)
		}
		l.waitWeights(labWeb, all100...)
	})

	t.Run("a restart adopts without writing", func(t *testing.T) {
		var stopped *labDirector
		for _, n := range l.dirs {
			if n.d == nil {
				stopped = n
			}
		}
		if stopped == nil {
			t.Fatal("no stopped director")
		}
		stopped.ipvs.ResetCalls()
		l.start(stopped)
		c := apiClient(t, stopped.sock)
		testutil.WaitFor(t, testTimeout, "the restarted director to run the cluster's generation with every real checked", func() (bool, string) {
			st := status(t, c)
			s, _ := serviceOf(st, "web")
			return st.Generation > 0 && st.RunningGeneration == st.Generation && s.Healthy == len(all100),
				fmt.Sprintf("running %d generation %d web %+v", st.RunningGeneration, st.Generation, s)
		})
		l.waitWeights(labWeb, all100...)
		if w := stopped.ipvs.Writes(); w != 0 {
			t.Errorf("the restart made %d IPVS writes, want none: %v", w, stopped.ipvs.Calls())
		}
	})

	t.Run("a service removed while a director is down is deleted when it comes back", func(t *testing.T) {
		down := l.waitVIPOwner(nil)
		up := l.other(down)
		// extra has connections on the director going down: it drains
		// there before it is deleted.
		extraReal := ipvs.DestKey{Addr: netip.MustParseAddr("192.0.2.21"), Port: 8080}
		l.stop(down)
		if err := down.ipvs.SetConns(labExtra, extraReal, 3, 1); err != nil {
			t.Fatal(err)
		}
		for _, n := range l.dirs {
			l.writeDirector(n, services)
		}
		if res := reload(t, apiClient(t, up.sock)); !res.OK || !res.Changed {
			t.Fatalf("reload without extra = %+v", res)
		}
		l.waitWeights(labExtra) // gone from the running director
		down.ipvs.ResetCalls()
		l.start(down)
		testutil.WaitFor(t, testTimeout, "extra drained on the restarted director", func() (bool, string) {
			got := weightsOf(down.ipvs, labExtra)
			return slices.Equal(got, []string{"192.0.2.21:8080=0"}), fmt.Sprint(got)
		})
		if err := down.ipvs.SetConns(labExtra, extraReal, 0, 0); err != nil {
			t.Fatal(err)
		}
		l.waitWeights(labExtra) // deleted once its connections ended
		l.waitWeights(labWeb, all100...)
		for _, n := range l.dirs {
			if got := weightsOf(n.ipvs, labForeign); !slices.Equal(got, []string{"198.51.100.99:443=5"}) {
				t.Errorf("%s: foreign service = %v, want it untouched", n.id, got)
			}
			if w := n.ipvs.WritesTo(labForeign); w != 0 {
				t.Errorf("%s: %d writes to the foreign service", n.id, w)
			}
		}
		if w := down.ipvs.WritesTo(labWeb); w != 0 {
			t.Errorf("the restart made %d writes to web, want none: %v", w, down.ipvs.Calls())
		}
		testutil.WaitFor(t, testTimeout, "the owned file to hold web only, with a state index", func() (bool, string) {
			saved, err := loadOwned(down.data)
			if err != nil {
				t.Fatal(err)
			}
			return slices.Equal(saved.keys(), []ipvs.ServiceKey{labWeb}) && saved.index > 0, fmt.Sprint(saved.keys(), saved.index)
		})
	})

	t.Run("a restart with an unchanged file does not roll the cluster back", func(t *testing.T) {
		down := l.waitVIPOwner(nil)
		up := l.other(down)
		l.stop(down)
		// Only the running director's file gains a real: the stopped
		// director's file is now stale, and unchanged since it last ran.
		l.setHealth("192.0.2.25", true)
		l.writeDirector(up, l.service("web", 80, slices.Concat(reals, []string{"192.0.2.24", "192.0.2.25"})...))
		res := reload(t, apiClient(t, up.sock))
		if !res.OK || !res.Changed {
			t.Fatalf("reload on %s = %+v", up.id, res)
		}
		want := append(slices.Clone(all100), "192.0.2.25:80=100")
		l.waitWeights(labWeb, want...)
		l.start(down)
		c := apiClient(t, down.sock)
		testutil.WaitFor(t, testTimeout, "the restarted director to run the cluster's generation", func() (bool, string) {
			st := status(t, c)
			return st.RunningGeneration >= res.Generation, fmt.Sprintf("running %d", st.RunningGeneration)
		})
		l.waitWeights(labWeb, want...)
		if st := status(t, apiClient(t, up.sock)); st.Generation != res.Generation {
			t.Errorf("generation %d after %s restarted with its old file, want %d: the stale file was submitted", st.Generation, down.id, res.Generation)
		}
	})

	if d, terms := wl.longestTerm(); d > 5*time.Second {
		t.Errorf("the witness led for %s (%d terms), want it to hand over at once", d, terms)
	}
}
