package director

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
)

// submitCluster is what submitting a configuration needs of the cluster.
type submitCluster interface {
	// Config is the configuration the cluster runs.
	Config() raft.ClusterConfig
	// SubmitConfig proposes spec through the leader.
	SubmitConfig(ctx context.Context, spec raft.Spec) (raft.SetConfigResult, error)
}

// submitter owns the director's file as last loaded and the outcome of
// the last reload (dsrd status's "last reload"), under its own lock, and
// submits files to the cluster: the file loaded at start until the
// cluster runs it, and each reload's.
type submitter struct {
	log *slog.Logger

	mu       sync.Mutex
	file     *config.Director // the file as last loaded successfully
	loadedAt time.Time        // when file was loaded
	result   api.ReloadResult // the last reload's outcome
	reloaded bool             // reload was called: the start-up submission records nothing
}

// newSubmitter starts from the file loaded at start. Until a reload, or
// the start-up submission, the last reload is "none".
func newSubmitter(log *slog.Logger, file *config.Director, loadedAt time.Time) *submitter {
	return &submitter{log: log, file: file, loadedAt: loadedAt, result: api.ReloadResult{OK: true}}
}

// current returns the file as last loaded successfully.
func (s *submitter) current() *config.Director {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.file
}

// last returns the outcome of the last reload.
func (s *submitter) last() api.ReloadResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.result
}

// untilAccepted proposes cfg, the file as loaded at start, to the cluster
// until the cluster runs it: at start the leader may not be known yet, so
// it retries with backoff. It stops early when a reload has loaded a newer
// file, and does nothing when cfg is the file this director last
// submitted (see submittedFileName). Its outcome is the first "last
// reload", recorded as reload records its own, unless a reload came first.
func (s *submitter) untilAccepted(ctx context.Context, c submitCluster, cfg *config.Director) {
	spec := clusterspec.FromDirector(cfg)
	if hash, err := spec.Hash(); err == nil {
		last, err := loadSubmitted(cfg.Node.DataDir)
		if err != nil {
			s.log.Warn("submitting the file at start", "error", err)
		}
		if last != "" && last == hash {
			s.log.Info("configuration file unchanged since this director last submitted it: following the cluster's configuration", "hash", hash)
			return
		}
	}
	backoff := retryFirst
	for {
		if s.current() != cfg {
			return // a reload submitted a newer file
		}
		res, err := s.submit(ctx, c, spec)
		if err == nil {
			s.log.Info("configuration submitted", "generation", res.Generation, "changed", res.Changed)
			s.mu.Lock()
			if !s.reloaded {
				s.result = api.ReloadResult{At: s.loadedAt, OK: true, Generation: res.Generation, Changed: res.Changed}
			}
			s.mu.Unlock()
			return
		}
		s.log.Debug("configuration not submitted yet", "error", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// submit sends spec to the leader unless the cluster already runs it, and
// records its hash as the last submitted in the current file's data dir.
func (s *submitter) submit(ctx context.Context, c submitCluster, spec raft.Spec) (raft.SetConfigResult, error) {
	hash, err := spec.Hash()
	if err != nil {
		return raft.SetConfigResult{}, err
	}
	if cur := c.Config(); cur.Hash == hash {
		if err := saveSubmitted(s.current().Node.DataDir, hash); err != nil {
			s.log.Warn("configuration already running", "error", err)
		}
		return raft.SetConfigResult{Generation: cur.Generation}, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := c.SubmitConfig(sctx, spec)
	if err != nil {
		return res, err
	}
	if err := saveSubmitted(s.current().Node.DataDir, hash); err != nil {
		s.log.Warn("configuration submitted", "error", err)
	}
	return res, nil
}

// reload loads the file again (load) and submits it. An invalid file is
// rejected with all its errors and the running configuration stays; a
// valid one becomes the current file once the cluster has accepted it.
// The outcome is also the last reload's.
func (s *submitter) reload(ctx context.Context, c submitCluster, load func() (*config.Director, error)) api.ReloadResult {
	now := time.Now()
	s.mu.Lock()
	s.reloaded = true // the start-up submission records nothing over this
	s.mu.Unlock()
	cfg, err := load()
	if err != nil {
		res := api.ReloadResult{At: now, OK: false, Errors: errorLines(err), Generation: c.Config().Generation}
		s.record(res, nil)
		s.log.Error("reload rejected: the running configuration stays", "errors", len(res.Errors))
		return res
	}
	sub, err := s.submit(ctx, c, clusterspec.FromDirector(cfg))
	if err != nil {
		res := api.ReloadResult{At: now, OK: false, NotSubmitted: true, Errors: []string{fmt.Sprintf("submit to the cluster: %v", err)}, Generation: c.Config().Generation}
		s.record(res, nil)
		s.log.Error("reload: the file is valid but the cluster did not take it; the running configuration stays", "error", err)
		return res
	}
	res := api.ReloadResult{At: now, OK: true, Generation: sub.Generation, Changed: sub.Changed}
	s.record(res, cfg)
	return res
}

// record sets the last reload's outcome and, when cfg is not nil, the
// current file (loaded at res.At).
func (s *submitter) record(res api.ReloadResult, cfg *config.Director) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.result = res
	if cfg != nil {
		s.file, s.loadedAt = cfg, res.At
	}
}

// raftSubmit submits through the Raft node: to the leader, forwarded
// when this node does not lead.
type raftSubmit struct {
	node *raft.Node
	fw   api.Forwarder
}

// Config is the configuration the cluster runs, as this node knows it.
func (r raftSubmit) Config() raft.ClusterConfig { return r.node.Config() }

// SubmitConfig proposes spec through the leader, submitted by this node.
func (r raftSubmit) SubmitConfig(ctx context.Context, spec raft.Spec) (raft.SetConfigResult, error) {
	return r.fw.SubmitConfig(ctx, spec, r.node.ID())
}
