package raft

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/dsrd/dsrd/internal/testutil"
)

// soloAddr is the address of the single-node clusters of these tests.
var soloAddr = netip.MustParseAddrPort("192.0.2.31:7000")

// newSolo returns a single-voter node on dir (not started); tune adjusts
// its Config.
func newSolo(t *testing.T, dir string, tune func(*Config)) *Node {
	t.Helper()
	_, tr := hraft.NewInmemTransport(hraft.ServerAddress(soloAddr.String()))
	cl := ClusterSettings{Bind: soloAddr}
	fastTimings(&cl)
	cfg := Config{ValidateSpec: testValidate, NodeID: "d1", DataDir: dir, Cluster: cl, Logger: testutil.Logger(t), Transport: tr}
	if tune != nil {
		tune(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startSolo starts a single-voter node on dir; the test closes it.
func startSolo(t *testing.T, dir string, tune func(*Config)) *Node {
	t.Helper()
	n := newSolo(t, dir, tune)
	if err := n.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// soloState starts a single-voter node on a new data dir, commits
// changes configuration changes (and a snapshot after them when snapshot
// is set), closes it and returns the data dir.
func soloState(t *testing.T, changes int, snapshot bool, tune func(*Config)) string {
	t.Helper()
	dir := t.TempDir()
	n := startSolo(t, dir, tune)
	if !n.bootstrapped {
		t.Fatal("a new data dir did not bootstrap")
	}
	lead := n.Leadership(t.Context())
	expectValue(t, lead, false)
	expectValue(t, lead, true)
	ctx := testutil.Context(t, testTimeout)
	for i := range changes {
		if _, err := n.SubmitConfig(ctx, testSpec(i+1), ""); err != nil {
			t.Fatal(err)
		}
	}
	if snapshot {
		if err := n.raft.Load().Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// raftFile is a path under dir's raft directory.
func raftFile(dir string, elem ...string) string {
	return filepath.Join(append([]string{dir, raftDirName}, elem...)...)
}

// storedState reads the term and last log index in dir's raft.db.
func storedState(t *testing.T, dir string) (term, last uint64) {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: raftFile(dir, raftDBName),
		BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: boltOpenTimeout}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if term, err = s.GetUint64(keyCurrentTerm); err != nil {
		t.Fatal(err)
	}
	if last, err = s.LastIndex(); err != nil {
		t.Fatal(err)
	}
	return term, last
}

// withStore runs fn on dir's raft.db.
func withStore(t *testing.T, dir string, fn func(*raftboltdb.BoltStore) error) {
	t.Helper()
	s, err := raftboltdb.NewBoltStore(raftFile(dir, raftDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := fn(s); err != nil {
		t.Fatal(err)
	}
}

// startFails starts a node on dir and checks that Start fails with a
// *StorageError naming path and the recovery, without bootstrapping; it
// returns the error.
func startFails(t *testing.T, dir, path string) *StorageError {
	t.Helper()
	n := newSolo(t, dir, nil)
	err := n.Start(t.Context())
	if err == nil {
		n.Close()
		t.Fatal("Start succeeded")
	}
	t.Logf("Start: %v", err)
	waitClosed(t, n.Done(), "node closed after a failed start")
	if n.bootstrapped {
		t.Error("the node bootstrapped")
	}
	if n.raft.Load() != nil {
		t.Error("raft started")
	}
	var se *StorageError
	if !errors.As(err, &se) {
		t.Fatalf("Start error %T is not a *StorageError", err)
	}
	msg := err.Error()
	for _, want := range []string{path, "move " + raftFile(dir) + " aside", `dsrd cluster remove d1`,
		`dsrd cluster join d1 192.0.2.31:7000`, `"Recovering a member"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not say %q", want)
		}
	}
	return se
}

func TestStorageNewAndRestart(t *testing.T) {
	dir := soloState(t, 2, false, nil)
	term, last := storedState(t, dir)

	n := startSolo(t, dir, nil)
	if n.bootstrapped {
		t.Error("a restarted node bootstrapped")
	}
	waitGeneration(t, n, 2)
	if st := n.Stats(); st.Term < term || st.LastLogIndex < last {
		t.Errorf("after restart term %d last index %d, before %d %d", st.Term, st.LastLogIndex, term, last)
	}
}

// TestStorageCorruptPage writes garbage over a page of raft.db: bbolt
// panics or faults on it; Start reports the file instead.
func TestStorageCorruptPage(t *testing.T) {
	for _, tt := range []struct {
		name string
		page func(tx *bbolt.Tx) uint64
	}{
		{"logs bucket page", func(tx *bbolt.Tx) uint64 { return uint64(tx.Bucket([]byte("logs")).Root()) }},
		{"root bucket page", func(tx *bbolt.Tx) uint64 {
			// The page of the bucket names, which raftboltdb.New
			// reads: the root of the current meta page.
			return rootPage(tx)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := soloState(t, 3, false, nil)
			path := raftFile(dir, raftDBName)
			db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			pageSize := db.Info().PageSize
			var page uint64
			if err := db.View(func(tx *bbolt.Tx) error { page = tt.page(tx); return nil }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if page < 2 {
				t.Fatalf("no data page found (%d)", page)
			}
			garbage := make([]byte, pageSize)
			rng := rand.New(rand.NewPCG(1, page))
			for i := range garbage {
				garbage[i] = byte(rng.Uint32())
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(garbage, int64(page)*int64(pageSize)); err != nil {
				t.Fatal(err)
			}
			f.Close()
			before := fileSum(t, path)

			se := startFails(t, dir, path)
			if !strings.Contains(se.Problem, "damaged") && !strings.Contains(se.Problem, "cannot be") {
				t.Errorf("problem %q", se.Problem)
			}
			if se.Lost {
				t.Error("damaged state reported as lost")
			}
			if fileSum(t, path) != before {
				t.Error("raft.db was written")
			}
		})
	}
}

// rootPage returns the root bucket's page: bbolt's meta page (0 or 1, the
// one of the higher transaction id) holds it after the 16-byte page header
// and four uint32 fields.
func rootPage(tx *bbolt.Tx) uint64 {
	var root, txid uint64
	for id := range 2 {
		b, err := os.ReadFile(tx.DB().Path())
		if err != nil {
			panic(err)
		}
		m := b[id*tx.DB().Info().PageSize:]
		if t := binary.LittleEndian.Uint64(m[64:]); t >= txid {
			root, txid = binary.LittleEndian.Uint64(m[32:]), t
		}
	}
	return root
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestStorageLost: a raft.db truncated to zero bytes, or deleted, while
// the raft directory shows the node has had state, is refused rather than
// bootstrapped at term 0; removing the raft directory is the explicit way
// to start afresh.
func TestStorageLost(t *testing.T) {
	for _, tt := range []struct {
		name     string
		snapshot bool
		lose     func(path string) error
	}{
		{"truncated with snapshots", true, func(p string) error { return os.Truncate(p, 0) }},
		{"truncated", false, func(p string) error { return os.Truncate(p, 0) }},
		{"removed", false, os.Remove},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := soloState(t, 1, tt.snapshot, nil)
			path := raftFile(dir, raftDBName)
			if err := tt.lose(path); err != nil {
				t.Fatal(err)
			}
			se := startFails(t, dir, path)
			if !se.Lost {
				t.Error("not reported as lost")
			}
			if !strings.Contains(se.Error(), "remove "+raftFile(dir)+" to start afresh") {
				t.Error("the error does not say how to start afresh")
			}
			fi, err := os.Stat(path)
			switch {
			case err == nil && fi.Size() != 0:
				t.Errorf("raft.db was initialised (%d bytes)", fi.Size())
			case err != nil && !errors.Is(err, os.ErrNotExist):
				t.Fatal(err)
			}

			// The conscious fresh start: the raft directory removed.
			if err := os.RemoveAll(raftFile(dir)); err != nil {
				t.Fatal(err)
			}
			if n := startSolo(t, dir, nil); !n.bootstrapped {
				t.Error("a removed raft directory did not start afresh")
			}
		})
	}
}

// TestStorageLogGap deletes log entries: Start reports the gap instead of
// hashicorp/raft panicking ("log not found") on every start.
func TestStorageLogGap(t *testing.T) {
	for _, tt := range []struct {
		name     string
		min, max uint64
		want     string
	}{
		{"middle entry", 4, 4, "log has a gap: entry 4 is missing"},
		{"first entries", 1, 2, "log has a gap: it starts at index 3 and no snapshot"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := soloState(t, 3, false, nil)
			term, last := storedState(t, dir)
			withStore(t, dir, func(s *raftboltdb.BoltStore) error { return s.DeleteRange(tt.min, tt.max) })
			se := startFails(t, dir, raftFile(dir, raftDBName))
			if !strings.Contains(se.Problem, tt.want) {
				t.Errorf("problem %q, want %q", se.Problem, tt.want)
			}
			if t2, l2 := storedState(t, dir); t2 != term || l2 != last {
				t.Errorf("term %d last %d after the failed start, before %d %d", t2, l2, term, last)
			}
		})
	}
}

// TestStorageLogGapAfterSnapshot: a log compacted after a snapshot must
// connect to it; with the snapshot, the node starts.
func TestStorageLogGapAfterSnapshot(t *testing.T) {
	compact := func(c *Config) { c.TrailingLogs = 1 }
	dir := soloState(t, 4, true, compact)
	withStore(t, dir, func(s *raftboltdb.BoltStore) error {
		first, err := s.FirstIndex()
		if err != nil {
			return err
		}
		if first <= 1 {
			return fmt.Errorf("log not compacted (first index %d)", first)
		}
		return nil
	})
	n := startSolo(t, dir, compact)
	waitGeneration(t, n, 4)
	n.Close()

	// Without its snapshots, the log starts after entries nothing holds.
	if err := os.RemoveAll(raftFile(dir, snapshotsDirName)); err != nil {
		t.Fatal(err)
	}
	se := startFails(t, dir, raftFile(dir, raftDBName))
	if !strings.Contains(se.Problem, "and no snapshot, so entries 1 to") {
		t.Errorf("problem %q", se.Problem)
	}
}

// TestNewRaftPanic: the last line, hashicorp/raft's own panic on a gap,
// is an error naming the raft directory.
func TestNewRaftPanic(t *testing.T) {
	dir := soloState(t, 3, false, nil)
	withStore(t, dir, func(s *raftboltdb.BoltStore) error { return s.DeleteRange(4, 4) })
	store, err := raftboltdb.NewBoltStore(raftFile(dir, raftDBName))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	snaps := hraft.NewInmemSnapshotStore()
	_, tr := hraft.NewInmemTransport("")
	n := newSolo(t, dir, nil)
	conf, err := n.raftConfig()
	if err != nil {
		t.Fatal(err)
	}
	conf.NotifyCh = nil
	r, err := newRaft(raftFile(dir), conf, NewFSM(nil, testValidate), store, store, snaps, tr)
	if err == nil {
		r.Shutdown()
		t.Fatal("newRaft started on a log with a gap")
	}
	var se *StorageError
	if !errors.As(err, &se) || se.Path != raftFile(dir) || !strings.Contains(err.Error(), "panic") {
		t.Errorf("newRaft: %v", err)
	}
}

// TestStorageBadSnapshot damages the only snapshot: Start gives the
// snapshot's own error, where hashicorp/raft says only "failed to load any
// existing snapshots" (or skips a snapshot whose meta.json is damaged).
func TestStorageBadSnapshot(t *testing.T) {
	for _, tt := range []struct {
		name   string
		damage func(t *testing.T, snap string)
		want   string
	}{
		{"state bit flip", func(t *testing.T, snap string) {
			p := filepath.Join(snap, "state.bin")
			b := readFile(t, p)
			b[len(b)/2] ^= 0x10
			writeFile(t, p, b)
		}, "state.bin: CRC mismatch"},
		{"meta garbage", func(t *testing.T, snap string) {
			writeFile(t, filepath.Join(snap, "meta.json"), []byte("{\"Version\":1,\"ID\":"))
		}, "meta.json: unexpected end of JSON input"},
		{"state that does not decode", func(t *testing.T, snap string) {
			// A state whose CRC matches (rewritten in meta.json), that
			// only the FSM's Restore refuses.
			state := []byte(`{"format":999}`)
			writeFile(t, filepath.Join(snap, "state.bin"), state)
			var meta map[string]any
			mp := filepath.Join(snap, "meta.json")
			if err := json.Unmarshal(readFile(t, mp), &meta); err != nil {
				t.Fatal(err)
			}
			h := crc64.New(crc64.MakeTable(crc64.ECMA))
			h.Write(state)
			meta["CRC"], meta["Size"] = h.Sum(nil), len(state)
			b, err := json.Marshal(meta)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, mp, b)
		}, "state.bin: snapshot format 999 not supported"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := soloState(t, 2, true, nil)
			term, last := storedState(t, dir)
			snapsDir := raftFile(dir, snapshotsDirName)
			entries, err := os.ReadDir(snapsDir)
			if err != nil || len(entries) != 1 {
				t.Fatalf("snapshots %v %v", entries, err)
			}
			snap := filepath.Join(snapsDir, entries[0].Name())
			tt.damage(t, snap)
			se := startFails(t, dir, snapsDir)
			msg := se.Error()
			if !strings.Contains(msg, snap+": ") || !strings.Contains(msg, tt.want) {
				t.Errorf("error does not give %s's own error %q", snap, tt.want)
			}
			if t2, l2 := storedState(t, dir); t2 != term || l2 != last {
				t.Errorf("term %d last %d after the failed start, before %d %d", t2, l2, term, last)
			}
		})
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkCheckLog10k measures checkLog on a 10,000-entry log of 1 KiB
// entries (fullLogCheck's comment quotes it).
func BenchmarkCheckLog10k(b *testing.B) {
	const entries = 10_000
	store := storeEntries(b, entries, bytes.Repeat([]byte("x"), 1024))
	for b.Loop() {
		if _, first, last, err := checkLog("raft.db", store, 0, testFail); err != nil || first != 1 || last != entries {
			b.Fatal(first, last, err)
		}
	}
}

// storeEntries writes entries 1 to n, of data, to a new store.
func storeEntries(t testing.TB, n uint64, data []byte) *raftboltdb.BoltStore {
	t.Helper()
	store, err := raftboltdb.NewBoltStore(filepath.Join(t.TempDir(), raftDBName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	batch := make([]*hraft.Log, 0, 1000)
	for i := uint64(1); i <= n; i++ {
		batch = append(batch, &hraft.Log{Index: i, Term: 1, Type: hraft.LogCommand, Data: data})
		if len(batch) == cap(batch) || i == n {
			if err := store.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return store
}

func testFail(path, problem string, err error) *StorageError {
	return &StorageError{Path: path, Problem: problem, Err: err}
}

// TestCheckLogLong: beyond fullLogCheck entries, the ends and the entry
// after the snapshot are read.
func TestCheckLogLong(t *testing.T) {
	const entries, snap = fullLogCheck + 50, 100
	store := storeEntries(t, entries, []byte("x"))
	if _, first, last, err := checkLog("raft.db", store, snap, testFail); err != nil || first != 1 || last != entries {
		t.Fatalf("checkLog = %d, %d, %v", first, last, err)
	}
	if err := store.DeleteRange(snap+1, snap+1); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := checkLog("raft.db", store, snap, testFail)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("entry %d is missing", snap+1)) {
		t.Errorf("checkLog with entry %d deleted: %v", snap+1, err)
	}
}
