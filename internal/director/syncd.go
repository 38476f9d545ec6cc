package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
)

// syncDaemons runs the IPVS connection sync daemons ipvs.sync asks for:
// the backup daemon on every director, the master on the one that owns
// the VIPs (the Raft leader) and on every director when a VIP is of mode
// bgp (each serves flows). Every reconcile pass compares them with the
// kernel's and starts, restarts or stops what differs, so a daemon that
// vanished or was changed by another program comes back (keepalived's
// issues 1138 and 1140: sync daemons that stop without a word). When the
// configuration does not enable sync, daemons this director did not start
// are left alone; those it started are stopped. The reconcile loop calls
// reconcile; status reads under mu.
type syncDaemons struct {
	log   *slog.Logger
	k     ipvs.SyncDaemonKernel // nil: the kernel backend cannot
	iface func() string         // node.interface, for a sync without one

	mu      sync.Mutex
	managed bool // this director started daemons it has not stopped since
	last    *api.IPVSSync

	// The reconcile loop asks (request) and run applies, on a goroutine
	// of its own: a daemon's stop waits for the kernel's RTNL lock, which
	// can take seconds, and must not hold IPVS back.
	wmu     sync.Mutex
	want    *config.IPVSSync
	master  bool
	asked   bool          // request was called at least once
	changed chan struct{} // capacity 1: a pending request
}

// Retry pacing of run after a failed pass.
const (
	syncRetryFirst = time.Second
	syncRetryMax   = 30 * time.Second
)

// request asks run to bring the daemons in line with x and master; the
// latest request wins. It never blocks.
func (s *syncDaemons) request(x *config.IPVSSync, master bool) {
	if s == nil {
		return
	}
	s.wmu.Lock()
	s.want, s.master, s.asked = x, master, true
	s.wmu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run applies the requests until ctx ends, retrying a failed pass with
// backoff (a new request is applied at once).
func (s *syncDaemons) run(ctx context.Context) {
	var again <-chan time.Time
	backoff := syncRetryFirst
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		case <-again:
		}
		s.wmu.Lock()
		x, master, asked := s.want, s.master, s.asked
		s.wmu.Unlock()
		if !asked {
			continue
		}
		if err := s.reconcile(ctx, x, master); err != nil && ctx.Err() == nil {
			s.log.Warn("ipvs sync daemons; retrying", "error", err, "retry_in", backoff)
			again = time.After(backoff)
			backoff = min(2*backoff, syncRetryMax)
			continue
		}
		again, backoff = nil, syncRetryFirst
	}
}

// syncWant is the daemons a director runs for x: none when x is nil or
// disabled, else the backup and, when master, the master.
func syncWant(x *config.IPVSSync, iface string, master bool) []ipvs.SyncDaemon {
	if x == nil || !x.Enabled {
		return nil
	}
	if x.Interface != "" {
		iface = x.Interface
	}
	d := ipvs.SyncDaemon{
		State: ipvs.SyncBackup, Interface: iface, SyncID: uint8(x.SyncID), MaxLen: uint16(x.MaxLen),
		Group: x.Group, Port: uint16(x.Port), TTL: uint8(x.TTL),
	}
	out := []ipvs.SyncDaemon{d}
	if master {
		d.State = ipvs.SyncMaster
		out = append([]ipvs.SyncDaemon{d}, out...)
	}
	return out
}

// newSyncDaemons returns the component; run must be started for request
// to take effect.
func newSyncDaemons(log *slog.Logger, k ipvs.SyncDaemonKernel, iface func() string) *syncDaemons {
	return &syncDaemons{log: log, k: k, iface: iface, changed: make(chan struct{}, 1)}
}

// reconcile brings the kernel's sync daemons in line with x. The
// configuration was validated (file and spec) by the same rules.
func (s *syncDaemons) reconcile(ctx context.Context, x *config.IPVSSync, master bool) error {
	if s == nil {
		return nil // a director not started by Run (tests)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	want := syncWant(x, s.iface(), master)
	if want == nil && !s.managed {
		s.last = nil
		return nil
	}
	if s.k == nil {
		err := errors.New("ipvs.sync is enabled but this kernel backend has no sync daemons")
		s.last = &api.IPVSSync{Master: master, Error: err.Error()}
		return err
	}
	res, err := ipvs.ReconcileSync(ctx, s.k, want)
	if want != nil {
		s.managed = true
	} else if err == nil {
		s.managed = false
	}
	st := &api.IPVSSync{Master: master}
	for _, r := range res {
		if r.Action != ipvs.SyncKept {
			s.log.Info("ipvs sync daemon", "state", r.State.String(), "action", string(r.Action))
		}
		if r.Running != nil {
			st.Daemons = append(st.Daemons, syncDaemonStatus(*r.Running))
		}
	}
	if err != nil {
		err = fmt.Errorf("ipvs sync daemons: %w", err)
		st.Error = err.Error()
	}
	if want == nil && err == nil {
		st = nil
	}
	s.last = st
	return err
}

// stop stops the daemons this director started (at shutdown).
func (s *syncDaemons) stop(ctx context.Context) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.managed || s.k == nil {
		return nil
	}
	_, err := ipvs.ReconcileSync(ctx, s.k, nil)
	if err == nil {
		s.managed = false
		s.last = nil
	}
	return err
}

// status is the last pass's outcome; nil when sync is off.
func (s *syncDaemons) status() *api.IPVSSync {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return nil
	}
	c := *s.last
	c.Daemons = append([]api.IPVSSyncDaemon(nil), s.last.Daemons...)
	return &c
}

// syncDaemonStatus converts a daemon for status.
func syncDaemonStatus(d ipvs.SyncDaemon) api.IPVSSyncDaemon {
	return api.IPVSSyncDaemon{State: d.State.String(), Interface: d.Interface, SyncID: int(d.SyncID), MaxLen: int(d.MaxLen),
		Group: d.Group, Port: int(d.Port), TTL: int(d.TTL)}
}
