package director

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
)

// fakeCluster runs the configurations submitted to it, failing the first
// fail submissions (no leader yet).
type fakeCluster struct {
	mu        sync.Mutex
	cc        raft.ClusterConfig
	fail      int
	submitted int
}

func (f *fakeCluster) Config() raft.ClusterConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cc
}

func (f *fakeCluster) SubmitConfig(_ context.Context, spec raft.Spec) (raft.SetConfigResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted++
	if f.fail > 0 {
		f.fail--
		return raft.SetConfigResult{}, errors.New("no leader")
	}
	hash, err := spec.Hash()
	if err != nil {
		return raft.SetConfigResult{}, err
	}
	f.cc.Generation++
	f.cc.Hash = hash
	return raft.SetConfigResult{Generation: f.cc.Generation, Changed: true}, nil
}

func (f *fakeCluster) submissions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.submitted
}

// submitterFile is a director file with its data dir in dir, serving
// port.
func submitterFile(t *testing.T, dir string, port int) *config.Director {
	t.Helper()
	doc := fmt.Sprintf(`
node: {id: dir1, interface: eth0, data_dir: %q}
cluster: {bind: "127.0.0.1:7946", peers: ["dir1@127.0.0.1:7946"]}
vips: [{address: 203.0.113.10}]
services: [{name: web, vip: 203.0.113.10, port: %d, protocol: tcp, reals: [{address: 192.0.2.21}]}]
`, dir, port)
	d, err := config.ParseDirector("director.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The file loaded at start is submitted until the cluster accepts it,
// and recorded as the first reload; a director restarting with the file
// it last submitted does not submit it again.
func TestSubmitterUntilAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		cfg := submitterFile(t, dir, 80)
		loaded := time.Now()
		s := newSubmitter(testutil.Logger(t), cfg, loaded)
		if r := s.last(); !r.OK || !r.At.IsZero() {
			t.Errorf("before any submission: %+v, want none", r)
		}
		c := &fakeCluster{fail: 2}
		s.untilAccepted(t.Context(), c, cfg) // retries with backoff: synctest's clock
		if n := c.submissions(); n != 3 {
			t.Errorf("%d submissions, want 3 (two refused)", n)
		}
		if r := s.last(); !r.OK || !r.At.Equal(loaded) || r.Generation != 1 || !r.Changed {
			t.Errorf("last reload %+v, want the start-up submission's", r)
		}

		// Restarted with the same file: nothing submitted.
		s = newSubmitter(testutil.Logger(t), cfg, time.Now())
		c2 := &fakeCluster{}
		s.untilAccepted(t.Context(), c2, cfg)
		if n := c2.submissions(); n != 0 {
			t.Errorf("unchanged file: %d submissions, want none", n)
		}
	})
}

// A reload loads, submits and records; the start-up submission that
// succeeds after a reload neither overrides its outcome nor goes on.
func TestSubmitterReload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		first := submitterFile(t, dir, 80)
		s := newSubmitter(testutil.Logger(t), first, time.Now())
		c := &fakeCluster{fail: 1000}
		done := make(chan struct{})
		go func() { defer close(done); s.untilAccepted(t.Context(), c, first) }()
		synctest.Wait() // refused once, waiting to retry

		// An invalid file: rejected, the running one stays.
		res := s.reload(t.Context(), c, func() (*config.Director, error) { return nil, errors.New("director.yaml:3:1: bad") })
		if res.OK || len(res.Errors) != 1 || s.current() != first || s.last().OK {
			t.Errorf("invalid file: %+v, current changed %v", res, s.current() != first)
		}
		// The cluster refuses: rejected too.
		second := submitterFile(t, dir, 81)
		res = s.reload(t.Context(), c, func() (*config.Director, error) { return second, nil })
		if res.OK || !res.NotSubmitted || s.current() != first {
			t.Errorf("refused submission: %+v, want not OK, not submitted", res)
		}
		// Accepted: the new file is current, and the start-up
		// submission, superseded, stops.
		c.mu.Lock()
		c.fail = 0
		c.mu.Unlock()
		res = s.reload(t.Context(), c, func() (*config.Director, error) { return second, nil })
		if !res.OK || res.Generation != 1 || s.current() != second {
			t.Errorf("accepted: %+v, current is the new file %v", res, s.current() == second)
		}
		<-done
		if r := s.last(); !r.OK || !r.At.Equal(res.At) || r.Generation != res.Generation {
			t.Errorf("last reload %+v, want the reload's %+v", r, res)
		}
		if got, err := loadSubmitted(dir); err != nil || got != c.Config().Hash {
			t.Errorf("recorded hash %q, %v; want %q", got, err, c.Config().Hash)
		}
	})
}

// A spec the cluster already runs is not submitted again, but recorded.
func TestSubmitterSubmitRunning(t *testing.T) {
	dir := t.TempDir()
	cfg := submitterFile(t, dir, 80)
	spec := clusterspec.FromDirector(cfg)
	hash, err := spec.Hash()
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeCluster{cc: raft.ClusterConfig{Generation: 4, Hash: hash}}
	s := newSubmitter(testutil.Logger(t), cfg, time.Now())
	res, err := s.submit(t.Context(), c, spec)
	if err != nil || res.Generation != 4 || res.Changed || c.submissions() != 0 {
		t.Errorf("submit = %+v, %v after %d submissions; want generation 4 unchanged, none sent", res, err, c.submissions())
	}
	if got, _ := loadSubmitted(dir); got != hash {
		t.Errorf("recorded hash %q, want %q", got, hash)
	}
}
