package raft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft/pki"
)

// ClusterConfig is the replicated cluster configuration: the spec last
// submitted, with its generation. The zero value (generation 0) means no
// configuration was ever submitted.
type ClusterConfig struct {
	Spec `json:"spec"`
	// Generation counts the changes of the configuration; a submission
	// with the current hash leaves it unchanged.
	Generation uint64 `json:"generation"`
	// Hash is the content hash of Spec (Spec.Hash).
	Hash string `json:"hash"`
	// Keys are the service keys, Keys[i] being Services[i].Key() as the
	// submitter computed it; admin states refer to them.
	Keys []ipvs.ServiceKey `json:"keys"`
	// SubmittedBy names the node that submitted it.
	SubmittedBy string `json:"submitted_by"`
	// SubmittedAt is the submitting leader's clock at submission.
	SubmittedAt time.Time `json:"submitted_at"`
	// Index is the Raft log index of the submission.
	Index uint64 `json:"index"`
}

// State is a consistent view of the whole FSM state.
type State struct {
	Config ClusterConfig
	// Admin holds the reals whose admin state is not AdminEnabled.
	Admin map[RealRef]Admin
	// Health holds the cluster's verdicts on reals (SetHealthCommand);
	// a real without one is judged by each director's own checks.
	Health map[RealRef]HealthVerdict
	// Drains holds the drained directors by node ID (SetDrainCommand).
	Drains map[string]Drain
	// Index is the Raft log index of the last change of the state (a new
	// generation or an admin state change); it only grows, so a reader can
	// tell a state replayed from the log at start from a later one. 0 for
	// an empty state, and the configuration's Index after restoring a
	// snapshot of a dsrd that did not record it.
	Index uint64
}

// FSM is the replicated state machine of the director cluster: the cluster
// configuration and the admin state of reals. It implements hraft.FSM.
//
// Concurrency follows hashicorp/raft's contract: Apply, Snapshot and Restore
// are called from raft's FSM goroutine; FSMSnapshot.Persist runs
// concurrently with later Applies; readers (Config, Admin, State, Watch) may
// be called from any goroutine. Apply and Restore change the state under the
// write lock readers take. The installed configuration is never modified in
// place, and readers get decoded copies, so nothing a reader holds aliases
// the FSM's state.
type FSM struct {
	log      *slog.Logger
	validate SpecValidator

	mu      sync.RWMutex
	cfg     ClusterConfig // never modified in place once installed
	cfgJSON []byte        // encoding of cfg, nil before the first config
	admin   map[RealRef]Admin
	health  map[RealRef]HealthVerdict
	drains  map[string]Drain
	index   uint64        // log index of the last change (State.Index)
	changed chan struct{} // closed and replaced on every change
	failed  chan struct{} // closed when err is set
	err     error         // set once: the FSM refuses to go on
}

// NewFSM returns an empty FSM whose configurations are checked by
// validate (nil refuses every non-empty spec).
func NewFSM(logger *slog.Logger, validate SpecValidator) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{
		log:      logger,
		validate: validate,
		admin:    map[RealRef]Admin{},
		health:   map[RealRef]HealthVerdict{},
		drains:   map[string]Drain{},
		changed:  make(chan struct{}),
		failed:   make(chan struct{}),
	}
}

// Apply applies one committed log entry. It returns a SetConfigResult, a
// SetAdminResult, nil (an ignorable unknown command) or an error.
//
// An entry that does not decode or fails validation (a spec the file's
// rules refuse, an admin state for no real) is rejected: the error is the
// entry's result, the state does not change, and the node goes on. Every
// node rejects it alike, as the checks depend on the entry's bytes and the
// state only; a leader validates before it appends, so a rejected entry
// comes from a buggy or hostile member, which mutual TLS keeps out.
//
// A command type this binary does not know, without IgnoreUnknownFlag, is
// different: skipping it would let this node's state silently diverge from
// nodes that understand it. Consul panics in that case; dsrd fails stop
// instead: the FSM records the error, refuses every later Apply and
// Snapshot (so no snapshot can ever claim the entry was applied), and
// closes Failed(), on which the Node shuts Raft down and reports the error
// through Done()/Err(). Unlike a panic, that lets the director release its
// VIPs and exit cleanly; like a panic, the node stays stopped at that entry
// on every restart until it runs a binary that knows the command. A leader
// never appends a command some member cannot apply: see CommandVersion.
func (f *FSM) Apply(l *hraft.Log) any {
	if l.Type != hraft.LogCommand {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return fmt.Errorf("fsm stopped: %w", f.err)
	}
	t, body, err := decodeCommand(l.Data)
	if err != nil {
		return f.reject(l.Index, fmt.Errorf("log index %d: %w", l.Index, err))
	}
	switch t {
	case CommandSetConfig, CommandSetConfigV2, CommandSetConfigV3:
		return f.applySetConfig(l.Index, t, body)
	case CommandSetAdmin:
		return f.applySetAdmin(l.Index, body)
	case CommandSetHealth:
		return f.applySetHealth(l.Index, body)
	case CommandSetDrain:
		return f.applySetDrain(l.Index, body)
	}
	if t&IgnoreUnknownFlag != 0 {
		f.log.Warn("ignoring unknown raft command flagged ignorable",
			"type", uint8(t), "index", l.Index)
		return nil
	}
	return f.failLocked(fmt.Errorf("%w %d at log index %d: this binary is older than the cluster's",
		ErrUnknownCommand, uint8(t), l.Index))
}

func (f *FSM) applySetConfig(index uint64, t CommandType, body []byte) any {
	var cmd SetConfigCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		return f.reject(index, fmt.Errorf("decode %s command at log index %d: %w", t, index, err))
	}
	// A command means what the binaries of its version read in it:
	// fields they do not know are dropped, so every member applies it
	// alike.
	switch t {
	case CommandSetConfig:
		cmd.Spec = cmd.Spec.asVersion1()
	case CommandSetConfigV2:
		cmd.Spec = cmd.Spec.asVersion2()
	}
	if err := checkSetConfig(&cmd, f.validate); err != nil {
		return f.reject(index, fmt.Errorf("%s command at log index %d: %w", t, index, err))
	}
	if cmd.Hash == f.cfg.Hash {
		return SetConfigResult{Generation: f.cfg.Generation, Changed: false}
	}
	next := ClusterConfig{
		Spec:        cmd.Spec,
		Generation:  f.cfg.Generation + 1,
		Hash:        cmd.Hash,
		Keys:        cmd.Keys,
		SubmittedBy: cmd.SubmittedBy,
		SubmittedAt: cmd.SubmittedAt,
		Index:       index,
	}
	enc, err := json.Marshal(next)
	if err != nil {
		return f.failLocked(fmt.Errorf("encode configuration at log index %d: %w", index, err))
	}
	f.cfg, f.cfgJSON, f.index = next, enc, index
	// Admin state belongs to reals of the configuration: forget the reals
	// it no longer has, so that a real re-added later starts enabled.
	for ref := range f.admin {
		if !hasReal(&next, ref) {
			delete(f.admin, ref)
		}
	}
	f.pruneHealthLocked(&next)
	f.notifyLocked()
	f.log.Info("cluster configuration changed", "generation", next.Generation,
		"hash", next.Hash, "submitted_by", next.SubmittedBy, "index", index)
	return SetConfigResult{Generation: next.Generation, Changed: true}
}

func (f *FSM) applySetAdmin(index uint64, body []byte) any {
	var cmd SetAdminCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		return f.reject(index, fmt.Errorf("decode %s command at log index %d: %w", CommandSetAdmin, index, err))
	}
	if _, err := ParseAdmin(string(cmd.State)); err != nil {
		return f.reject(index, err)
	}
	if !hasReal(&f.cfg, cmd.Ref) {
		return fmt.Errorf("%w: %s", ErrUnknownReal, cmd.Ref)
	}
	prev, ok := f.admin[cmd.Ref]
	if !ok {
		prev = AdminEnabled
	}
	if prev == cmd.State {
		return SetAdminResult{Previous: prev, Changed: false}
	}
	if cmd.State == AdminEnabled {
		delete(f.admin, cmd.Ref)
	} else {
		f.admin[cmd.Ref] = cmd.State
	}
	f.index = index
	f.notifyLocked()
	f.log.Info("admin state changed", "real", cmd.Ref.String(), "from", prev, "to", cmd.State, "index", index)
	return SetAdminResult{Previous: prev, Changed: true}
}

// reject refuses an entry that does not decode or fails validation: the
// entry's result is the error, the state does not change, and the node
// goes on. Every node rejects it alike: the check is a function of the
// entry's bytes alone.
func (f *FSM) reject(index uint64, err error) error {
	f.log.Warn("raft entry rejected, state unchanged", "index", index, "error", err)
	return err
}

// checkSetConfig checks a SetConfigCommand as Apply needs it: a hash, one
// key per service and no key twice, a valid spec and submitter.
func checkSetConfig(cmd *SetConfigCommand, validate SpecValidator) error {
	if !validHash(cmd.Hash) {
		return fmt.Errorf("hash %q is not sha256:<64 hex digits>", cmd.Hash)
	}
	if len(cmd.Keys) != len(cmd.Spec.Services) {
		return fmt.Errorf("%d service keys for %d services", len(cmd.Keys), len(cmd.Spec.Services))
	}
	seen := make(map[ipvs.ServiceKey]bool, len(cmd.Keys))
	for _, k := range cmd.Keys {
		if k == (ipvs.ServiceKey{}) || seen[k] {
			return fmt.Errorf("service key %q empty or listed twice", k)
		}
		seen[k] = true
	}
	if cmd.SubmittedBy != "" {
		if err := pki.CheckNodeID(cmd.SubmittedBy); err != nil {
			return fmt.Errorf("submitted_by %q %w", cmd.SubmittedBy, err)
		}
	}
	return validateSpec(validate, cmd.Spec)
}

// validHash reports whether h is "sha256:" and 64 lower-case hex digits.
func validHash(h string) bool {
	hex, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// hasReal reports whether cfg has a service with key ref.Service and a
// real at ref.Address.
func hasReal(cfg *ClusterConfig, ref RealRef) bool {
	for i, key := range cfg.Keys {
		if key != ref.Service || i >= len(cfg.Services) {
			continue
		}
		for _, r := range cfg.Services[i].Reals {
			if r.Address == ref.Address {
				return true
			}
		}
	}
	return false
}

// failLocked stops the FSM for good; f.mu is held.
func (f *FSM) failLocked(err error) error {
	if f.err == nil {
		f.err = err
		close(f.failed)
		f.log.Error("raft state machine stopped: refusing to apply entries it cannot understand", "error", err)
	}
	return err
}

// notifyLocked wakes the watchers; f.mu is held for writing.
func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Failed is closed when the FSM stops on a command it cannot understand;
// Err then says why.
func (f *FSM) Failed() <-chan struct{} { return f.failed }

// Err returns why the FSM stopped, or nil.
func (f *FSM) Err() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.err
}

// Watch returns a channel that is closed at the next change of the state
// (a new configuration generation, an admin state change, a restore).
// Changes coalesce: a watcher that was slow sees one wake-up and reads the
// latest state. Take the channel before reading the state so that no change
// is missed:
//
//	for {
//		ch := fsm.Watch()
//		reconcile(fsm.State())
//		select { case <-ch: case <-ctx.Done(): return }
//	}
func (f *FSM) Watch() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// Config returns a copy of the current cluster configuration.
func (f *FSM) Config() ClusterConfig {
	f.mu.RLock()
	b := f.cfgJSON
	f.mu.RUnlock()
	return f.decodeConfig(b)
}

// Generation returns the current configuration's generation and hash
// without copying the configuration.
func (f *FSM) Generation() (uint64, string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cfg.Generation, f.cfg.Hash
}

// Admin returns a copy of the admin states that are not AdminEnabled.
func (f *FSM) Admin() map[RealRef]Admin {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return cloneAdmin(f.admin)
}

// State returns a copy of the configuration and admin states, taken
// together.
func (f *FSM) State() State {
	f.mu.RLock()
	b := f.cfgJSON
	admin := cloneAdmin(f.admin)
	health := cloneHealth(f.health)
	drains := cloneDrains(f.drains)
	index := f.index
	f.mu.RUnlock()
	return State{Config: f.decodeConfig(b), Admin: admin, Health: health, Drains: drains, Index: index}
}

func (f *FSM) decodeConfig(b []byte) ClusterConfig {
	var c ClusterConfig
	if b == nil {
		return c
	}
	if err := json.Unmarshal(b, &c); err != nil {
		// b was produced by json.Marshal of the same type.
		f.log.Error("decode cluster configuration copy", "error", err)
	}
	return c
}

func cloneAdmin(m map[RealRef]Admin) map[RealRef]Admin {
	out := make(map[RealRef]Admin, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// snapshotFormat is the version of the snapshot encoding.
const snapshotFormat = 1

// snapshotFile is the JSON document a snapshot holds.
type snapshotFile struct {
	Format int             `json:"format"`
	Config json.RawMessage `json:"config,omitempty"`
	Admin  []adminEntry    `json:"admin"`
	// Index is State.Index; absent from the snapshots of earlier versions
	// (readers of the same format ignore it).
	Index uint64 `json:"index,omitempty"`
	// Health are the verdicts (command version 2); absent when there are
	// none, so a snapshot without verdicts is what version 1 wrote.
	Health []HealthVerdict `json:"health,omitempty"`
	// Drains are the drained directors (command version 3); absent when
	// there are none, so a snapshot without drains is what version 2
	// wrote.
	Drains []Drain `json:"drains,omitempty"`
}

type adminEntry struct {
	Ref   RealRef `json:"ref"`
	State Admin   `json:"state"`
}

// Snapshot captures the state for hashicorp/raft; Persist then writes it
// while Apply goes on.
func (f *FSM) Snapshot() (hraft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.err != nil {
		// A snapshot now would claim that the entry the FSM could not
		// understand was applied.
		return nil, fmt.Errorf("fsm stopped: %w", f.err)
	}
	entries := make([]adminEntry, 0, len(f.admin))
	for ref, st := range f.admin {
		entries = append(entries, adminEntry{Ref: ref, State: st})
	}
	slices.SortFunc(entries, func(a, b adminEntry) int {
		if c := strings.Compare(a.Ref.Service.String(), b.Ref.Service.String()); c != 0 {
			return c
		}
		return a.Ref.Address.Compare(b.Ref.Address)
	})
	// cfgJSON is never modified once installed: sharing it is safe.
	file := snapshotFile{Format: snapshotFormat, Config: f.cfgJSON, Admin: entries, Index: f.index}
	if len(f.health) > 0 {
		file.Health = sortedVerdicts(f.health)
	}
	if len(f.drains) > 0 {
		file.Drains = sortedDrains(f.drains)
	}
	return &fsmSnapshot{file: file}, nil
}

// Restore replaces the state with a snapshot's, under the lock readers
// take, and wakes the watchers.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var file snapshotFile
	if err := json.NewDecoder(io.LimitReader(rc, MaxSnapshotSize)).Decode(&file); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if file.Format != snapshotFormat {
		return fmt.Errorf("snapshot format %d not supported (want %d)", file.Format, snapshotFormat)
	}
	var cfg ClusterConfig
	var cfgJSON []byte
	if raw := bytes.TrimSpace(file.Config); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("decode snapshot configuration: %w", err)
		}
		if cfg.Generation == 0 {
			return errors.New("snapshot configuration has generation 0: a configuration is only ever installed with a generation")
		}
		if err := checkSetConfig(&SetConfigCommand{Spec: cfg.Spec, Hash: cfg.Hash, Keys: cfg.Keys, SubmittedBy: cfg.SubmittedBy}, f.validate); err != nil {
			return fmt.Errorf("snapshot configuration (generation %d): %w", cfg.Generation, err)
		}
		enc, err := json.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("encode snapshot configuration: %w", err)
		}
		cfgJSON = enc
	}
	admin := make(map[RealRef]Admin, len(file.Admin))
	for _, e := range file.Admin {
		if _, err := ParseAdmin(string(e.State)); err != nil {
			return fmt.Errorf("snapshot admin state of %s: %w", e.Ref, err)
		}
		if !hasReal(&cfg, e.Ref) {
			// Apply never keeps an admin state for a real the
			// configuration lacks (applySetConfig drops them).
			return fmt.Errorf("snapshot admin state of %s: no such real in the snapshot's configuration", e.Ref)
		}
		if e.State != AdminEnabled {
			admin[e.Ref] = e.State
		}
	}
	health, err := restoreHealth(file.Health, &cfg)
	if err != nil {
		return err
	}
	drains, err := restoreDrains(file.Drains)
	if err != nil {
		return err
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return fmt.Errorf("fsm stopped: %w", f.err)
	}
	f.cfg, f.cfgJSON, f.admin, f.health, f.drains = cfg, cfgJSON, admin, health, drains
	f.index = max(file.Index, cfg.Index)
	f.notifyLocked()
	f.log.Info("state restored from snapshot", "generation", cfg.Generation, "admin_entries", len(admin))
	return nil
}

// fsmSnapshot is a point-in-time copy of the FSM state.
type fsmSnapshot struct {
	file snapshotFile
}

// Persist writes the snapshot as JSON to sink.
func (s *fsmSnapshot) Persist(sink hraft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.file); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot: %w", err)
	}
	return nil
}

// Release implements hraft.FSMSnapshot; the copy holds no resources.
func (s *fsmSnapshot) Release() {}

var _ hraft.FSM = (*FSM)(nil)
