package director

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/raft"
)

// fakeConfigs is a configSource whose configuration a test sets.
type fakeConfigs struct {
	mu      sync.Mutex
	cc      raft.ClusterConfig
	changed chan struct{}
}

func newFakeConfigs() *fakeConfigs { return &fakeConfigs{changed: make(chan struct{})} }

func (f *fakeConfigs) Config() raft.ClusterConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cc
}

func (f *fakeConfigs) Watch() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *fakeConfigs) set(cc raft.ClusterConfig) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cc = cc
	close(f.changed)
	f.changed = make(chan struct{})
}

// TestAdminThroughARestartedDirector is the soak's "no service web in
// cluster generation 0": a drain sent to a director that had just started
// was refused as if web did not exist. The director now waits for its
// first configuration, and says it cannot know yet rather than "not found".
func TestAdminThroughARestartedDirector(t *testing.T) {
	t.Run("the configuration arrives", func(t *testing.T) {
		src := newFakeConfigs()
		go func() {
			time.Sleep(50 * time.Millisecond)
			src.set(raft.ClusterConfig{Generation: 1})
			src.set(raft.ClusterConfig{Generation: 2})
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cc, err := appliedConfig(ctx, src)
		if err != nil || cc.Generation == 0 {
			t.Fatalf("appliedConfig = generation %d, %v; want the first configuration", cc.Generation, err)
		}
	})
	t.Run("it does not arrive in time", func(t *testing.T) {
		src := newFakeConfigs()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := appliedConfig(ctx, src)
		if !errors.Is(err, api.ErrConflict) || errors.Is(err, api.ErrNotFound) {
			t.Fatalf("appliedConfig = %v; want a conflict (try again), not \"not found\"", err)
		}
	})
	t.Run("a configuration held already", func(t *testing.T) {
		src := newFakeConfigs()
		src.set(raft.ClusterConfig{Generation: 7})
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no wait at all
		if cc, err := appliedConfig(ctx, src); err != nil || cc.Generation != 7 {
			t.Fatalf("appliedConfig = generation %d, %v; want 7 at once", cc.Generation, err)
		}
	})
}
