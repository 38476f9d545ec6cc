package raft

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// Storage checks at start.
const (
	// raftDBName is the bolt file under the raft directory that holds the
	// log and the stable store (term, vote).
	raftDBName = "raft.db"
	// snapshotsDirName is hashicorp/raft's FileSnapshotStore directory
	// under the raft directory.
	snapshotsDirName = "snapshots"
	// fullLogCheck is the longest log whose every entry is read and
	// decoded at start; a longer one has its ends and the first entry
	// after the snapshot read (hraft.NewRaft then reads the rest, and a
	// gap it finds there is caught by newRaft's recover). Reading a
	// 10,000-entry log of 1 KiB entries takes 45 to 90 ms on the build
	// machine's two shared cores (450 ms under -race; see
	// BenchmarkCheckLog10k): one bolt read transaction and one msgpack
	// decode per entry. dsrd's log holds configuration and admin changes
	// only, and hashicorp/raft keeps TrailingLogs (10,240) entries after a
	// snapshot, taken once SnapshotThreshold (8,192) more have come: with
	// the defaults the log stays under 18,432 entries, read in full in
	// under 0.2 s.
	fullLogCheck = 20_000
	// docRecovery is where the recovery procedure is documented.
	docRecovery = `docs/operations.md, "Recovering a member"`
)

// Stable-store keys hashicorp/raft writes (its own are unexported).
var (
	keyCurrentTerm  = []byte("CurrentTerm")
	keyLastVoteTerm = []byte("LastVoteTerm")
	keyLastVoteCand = []byte("LastVoteCand")
)

// StorageError is returned by Node.Start when the Raft storage in the data
// dir cannot be used: a file bbolt cannot read, a log with a gap, a
// snapshot that does not load, or Raft state that is gone while the data
// dir shows this node has had some. The node then neither bootstraps nor
// starts Raft; the message names the file and how to recover this member
// (docs/operations.md, "Recovering a member").
type StorageError struct {
	// Path is the file or directory at fault.
	Path string
	// Problem says what is wrong with it.
	Problem string
	// Err is the underlying error, nil when Problem says it all.
	Err error
	// RaftDir is the node's raft directory (data_dir/raft), the unit the
	// recovery moves aside.
	RaftDir string
	// NodeID and Address are the node's Raft server ID and the address
	// its peers reach it on, for the cluster commands of the recovery
	// (Address may be empty).
	NodeID, Address string
	// Lost is true when the state is gone (rather than damaged): a node
	// that never was a cluster member may then start afresh.
	Lost bool
}

// Error implements error.
func (e *StorageError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "raft storage %s: %s", e.Path, e.Problem)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	addr := e.Address
	if addr == "" {
		addr = "ADDRESS"
	}
	fmt.Fprintf(&b, "; to recover this member, stop dsrd here, move %s aside, "+
		"run \"dsrd cluster remove %s\" on a running member, start dsrd here again, "+
		"then run \"dsrd cluster join %s %s\" on a running member", e.RaftDir, e.NodeID, e.NodeID, addr)
	if e.Lost {
		fmt.Fprintf(&b, "; if this node never was a cluster member, remove %s to start afresh", e.RaftDir)
	}
	fmt.Fprintf(&b, " (%s)", docRecovery)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *StorageError) Unwrap() error { return e.Err }

// storageConfig says where openStorage finds a node's Raft storage.
type storageConfig struct {
	dataDir string
	nodeID  string
	address string // advertised Raft address, "" when unknown
	log     *slog.Logger
	hlog    hclog.Logger
	// validate checks the configuration of a snapshot being checked.
	validate SpecValidator
}

// advertised returns the address cl's peers reach this node on, "" when
// the configuration does not say (a wildcard bind without advertise).
func advertised(cl ClusterSettings) string {
	switch {
	case cl.Advertise.IsValid():
		return cl.Advertise.String()
	case cl.Bind.IsValid() && !cl.Bind.Addr().IsUnspecified():
		return cl.Bind.String()
	}
	return ""
}

// storage is a node's Raft storage, opened and checked.
type storage struct {
	dir   string // data_dir/raft
	store *raftboltdb.BoltStore
	logs  *hraft.LogCache
	snaps *hraft.FileSnapshotStore
}

// openStorage opens the bolt store (log and stable store), its log cache
// and the snapshot store of the data dir, after checking that
// hashicorp/raft can start from them: a *StorageError when it cannot (see
// checkNotLost, checkReadable, checkSnapshots, checkLog), never a panic.
// The caller closes st.store.
func openStorage(c storageConfig) (st *storage, err error) {
	dir := filepath.Join(c.dataDir, raftDirName)
	dbPath := filepath.Join(dir, raftDBName)
	fail := func(path, problem string, err error) *StorageError {
		return &StorageError{Path: path, Problem: problem, Err: err, RaftDir: dir, NodeID: c.nodeID, Address: c.address}
	}
	began := time.Now()

	if err := checkNotLost(dir, dbPath, fail); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	if err := checkReadable(dbPath, fail); err != nil {
		return nil, err
	}

	var store *raftboltdb.BoltStore
	err = recoverPanic(func() (err error) {
		store, err = raftboltdb.New(raftboltdb.Options{
			Path:        dbPath,
			BoltOptions: &bbolt.Options{Timeout: boltOpenTimeout},
		})
		return err
	})
	if err != nil {
		return nil, openError(dbPath, err, fail)
	}
	defer func() {
		if err != nil {
			_ = store.Close()
		}
	}()
	logs, err := hraft.NewLogCache(logCacheSize, store)
	if err != nil {
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := hraft.NewFileSnapshotStoreWithLogger(dir, retainSnapshots, c.hlog.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("raft snapshot store: %w", err)
	}

	snap, err := checkSnapshots(filepath.Join(dir, snapshotsDirName), snaps, c.validate, fail)
	if err != nil {
		return nil, err
	}
	var first, last, term uint64
	err = recoverPanic(func() (err error) {
		term, first, last, err = checkLog(dbPath, store, snap, fail)
		return err
	})
	if err != nil {
		var se *StorageError
		if errors.As(err, &se) {
			return nil, err
		}
		return nil, fail(dbPath, "cannot be read", err)
	}
	c.log.Info("raft storage checked", "dir", dir, "term", term, "first_index", first,
		"last_index", last, "snapshot_index", snap, "took", time.Since(began).Round(time.Microsecond))
	return &storage{dir: dir, store: store, logs: logs, snaps: snaps}, nil
}

// checkNotLost refuses to start afresh on Raft state that has been lost.
//
// bbolt turns a missing or zero-length raft.db into a new, empty store,
// and hashicorp/raft would then bootstrap (or wait to join) at term 0: the
// node forgets its term and its vote and can vote twice in one term. So
// before anything is opened, a raft.db of zero bytes, or a missing raft.db
// in a raft directory that holds anything else (snapshots/, which
// hashicorp/raft creates beside raft.db on the first start), is refused.
// A data dir without a raft directory, or with an empty one (a start
// that failed before creating raft.db), is new.
//
// The director's own files in the data dir (ipvs-owned.json,
// submitted-config-hash) also show that the node has been a member, but
// they are deliberately no evidence here: the raft directory is the unit
// an operator moves aside to start a member afresh, and those files must
// survive that (the director would otherwise forget the IPVS services it
// owns, and resubmit its file over the cluster's newer configuration).
func checkNotLost(dir, dbPath string, fail func(string, string, error) *StorageError) error {
	fi, err := os.Stat(dbPath)
	switch {
	case err == nil && fi.Size() > 0:
		return nil
	case err == nil:
		e := fail(dbPath, "is empty (0 bytes): this node's term and vote are lost, "+
			"and starting afresh on it could vote twice in a term or start a second cluster", nil)
		e.Lost = true
		return e
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("raft storage: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("raft storage: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	e := fail(dbPath, fmt.Sprintf("is missing but %s holds %s: this node's term and vote are lost, "+
		"and starting afresh could vote twice in a term or start a second cluster", dir, strings.Join(names, ", ")), nil)
	e.Lost = true
	return e
}

// checkReadable reads every page of raft.db that a bucket reaches, in a
// read-only bbolt handle that is closed whatever happens: bbolt panics on a
// damaged page (invalid page type, page id above the high water mark) or
// faults on an offset past its mapping, and a handle that raftboltdb.New
// opened before such a panic could not be closed. The cost is one read of
// the file.
func checkReadable(dbPath string, fail func(string, string, error) *StorageError) error {
	if _, err := os.Stat(dbPath); errors.Is(err, fs.ErrNotExist) {
		return nil // a new store
	}
	var db *bbolt.DB
	err := recoverPanic(func() (err error) {
		db, err = bbolt.Open(dbPath, 0o600, &bbolt.Options{Timeout: boltOpenTimeout, ReadOnly: true})
		return err
	})
	if err != nil {
		return openError(dbPath, err, fail)
	}
	defer db.Close()
	err = recoverPanic(func() error {
		return db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(name []byte, b *bbolt.Bucket) error {
				return walkBucket(b)
			})
		})
	})
	if err != nil {
		return fail(dbPath, "is damaged", err)
	}
	return nil
}

// walkBucket reads every key and value of b and of its nested buckets.
func walkBucket(b *bbolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				return walkBucket(nb)
			}
		}
		return nil
	})
}

// openError is the error of a failed open of raft.db.
func openError(dbPath string, err error, fail func(string, string, error) *StorageError) error {
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("open %s: locked by another process (is another dsrd using this data dir?): %w", dbPath, err)
	}
	return fail(dbPath, "cannot be opened", err)
}

// checkSnapshots opens every snapshot in dir and restores it into a
// scratch FSM, as hashicorp/raft will at start; it returns the index of
// the snapshot raft will restore (0 when there is none).
//
// hashicorp/raft skips a snapshot whose meta.json does not decode (its List
// leaves it out with a warning) and, at start, falls back to older
// snapshots when one fails, ending in "failed to load any existing
// snapshots" without the snapshots' own errors. Worse, skipping a snapshot
// that is newer than the end of the log makes the node forget entries it
// has acknowledged. So here every snapshot directory must load: a damaged
// one is an error that gives every damaged snapshot's own error.
func checkSnapshots(dir string, snaps *hraft.FileSnapshotStore, validate SpecValidator, fail func(string, string, error) *StorageError) (uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("raft snapshot store: %w", err)
	}
	var bad []error
	var n int
	for _, e := range entries {
		// FileSnapshotStore writes a snapshot into ID.tmp and renames it
		// when complete; a leftover .tmp is an interrupted snapshot that
		// hashicorp/raft ignores.
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		n++
		if err := recoverPanic(func() error { return restoreScratch(dir, snaps, e.Name(), validate) }); err != nil {
			bad = append(bad, fmt.Errorf("%s: %w", filepath.Join(dir, e.Name()), err))
		}
	}
	if len(bad) > 0 {
		problem := fmt.Sprintf("%d of %d snapshots do not load", len(bad), n)
		return 0, fail(dir, problem, errors.Join(bad...))
	}
	var list []*hraft.SnapshotMeta
	if err := recoverPanic(func() (err error) { list, err = snaps.List(); return err }); err != nil {
		return 0, fail(dir, "cannot be listed", err)
	}
	if len(list) == 0 {
		return 0, nil
	}
	return list[0].Index, nil
}

// restoreScratch reads snapshot id's meta.json, opens the snapshot
// (FileSnapshotStore.Open checks state.bin's CRC against the meta) and
// restores it into a new FSM.
func restoreScratch(dir string, snaps *hraft.FileSnapshotStore, id string, validate SpecValidator) error {
	// FileSnapshotStore's own errors do not say which file is at fault.
	b, err := os.ReadFile(filepath.Join(dir, id, "meta.json"))
	if err != nil {
		return err
	}
	var meta hraft.SnapshotMeta
	if err := json.Unmarshal(b, &meta); err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	if meta.Version < hraft.SnapshotVersionMin || meta.Version > hraft.SnapshotVersionMax {
		return fmt.Errorf("meta.json: snapshot version %d not supported", meta.Version)
	}
	_, rc, err := snaps.Open(id)
	if err != nil {
		return fmt.Errorf("state.bin: %w", err)
	}
	if err := NewFSM(nil, validate).Restore(rc); err != nil { // Restore closes rc
		return fmt.Errorf("state.bin: %w", err)
	}
	return nil
}

// checkLog reads the stable store and checks that the log is what
// hashicorp/raft needs to start: NewRaft reads the last entry, then every
// entry from the one after the restored snapshot (snap) to the last, and
// panics on one that is missing ("log not found"). So the log must start
// at or before snap+1 (when it reaches past snap) and hold every index
// from its first to its last; every entry is read and decoded when the
// log holds at most fullLogCheck entries, its ends and snap+1 otherwise.
// It returns the current term and the log's first and last index.
func checkLog(dbPath string, store *raftboltdb.BoltStore, snap uint64, fail func(string, string, error) *StorageError) (term, first, last uint64, err error) {
	term, err = store.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, 0, 0, fail(dbPath, "current term cannot be read", err)
	}
	if _, err := store.GetUint64(keyLastVoteTerm); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, 0, 0, fail(dbPath, "last vote cannot be read", err)
	}
	if _, err := store.Get(keyLastVoteCand); err != nil && !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, 0, 0, fail(dbPath, "last vote cannot be read", err)
	}
	if first, err = store.FirstIndex(); err != nil {
		return 0, 0, 0, fail(dbPath, "first log index cannot be read", err)
	}
	if last, err = store.LastIndex(); err != nil {
		return 0, 0, 0, fail(dbPath, "last log index cannot be read", err)
	}
	if last == 0 {
		return term, first, last, nil
	}
	if last >= snap+1 && first > snap+1 {
		what := "no snapshot"
		if snap > 0 {
			what = fmt.Sprintf("the snapshot ends at index %d", snap)
		}
		return 0, 0, 0, fail(dbPath, fmt.Sprintf("log has a gap: it starts at index %d and %s, "+
			"so entries %d to %d are missing", first, what, snap+1, first-1), nil)
	}
	read := func(i uint64) error {
		var l hraft.Log
		if err := store.GetLog(i, &l); err != nil {
			if errors.Is(err, hraft.ErrLogNotFound) {
				return fail(dbPath, fmt.Sprintf("log has a gap: entry %d is missing between %d and %d", i, first, last), nil)
			}
			return fail(dbPath, fmt.Sprintf("log entry %d cannot be read", i), err)
		}
		if l.Index != i {
			return fail(dbPath, fmt.Sprintf("log entry %d holds index %d", i, l.Index), nil)
		}
		return nil
	}
	if last-first < fullLogCheck {
		for i := first; i <= last; i++ {
			if err := read(i); err != nil {
				return 0, 0, 0, err
			}
		}
		return term, first, last, nil
	}
	ends := []uint64{first, last}
	if snap+1 > first && snap+1 < last {
		ends = append(ends, snap+1)
	}
	for _, i := range ends {
		if err := read(i); err != nil {
			return 0, 0, 0, err
		}
	}
	return term, first, last, nil
}

// newRaft is hraft.NewRaft with a panic turned into an error that names
// the raft directory: NewRaft panics on a log entry it cannot read, which
// openStorage's checks should already have reported; this is the last line.
func newRaft(dir string, conf *hraft.Config, fsm hraft.FSM, logs hraft.LogStore, stable hraft.StableStore,
	snaps hraft.SnapshotStore, trans hraft.Transport) (r *hraft.Raft, err error) {
	err = recoverPanic(func() (err error) {
		r, err = hraft.NewRaft(conf, fsm, logs, stable, snaps, trans)
		return err
	})
	var p *panicError
	if errors.As(err, &p) {
		return nil, &StorageError{Path: dir, Problem: "hashicorp/raft cannot start from it", Err: err,
			RaftDir: dir, NodeID: string(conf.LocalID), Address: string(trans.LocalAddr())}
	}
	return r, err
}

// panicError is a recovered panic.
type panicError struct {
	value any
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v", p.value) }

// Unwrap returns the panic's value when it is an error (a runtime.Error
// from a fault, an error hashicorp/raft panicked with).
func (p *panicError) Unwrap() error {
	err, _ := p.value.(error)
	return err
}

// recoverPanic runs fn and turns a panic in it into a *panicError. Faults
// on bad addresses (bbolt reads its mmap through unchecked offsets) become
// panics too while fn runs, instead of crashing the process; that holds for
// fn's goroutine only (debug.SetPanicOnFault), where all the reads of
// these checks and of hraft.NewRaft's start happen.
func recoverPanic(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v}
		}
	}()
	return fn()
}
