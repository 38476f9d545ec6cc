package clusterspec

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
)

// updateWire rewrites the golden files of the current wire version. Only
// ever together with a new version directory: see docs/wire.md.
var updateWire = flag.Bool("update-wire", false, "rewrite raft/testdata/wire/"+wireVersion+"/*.golden")

// wireDir holds the golden files: raft's, whose format they pin.
var wireDir = filepath.Join("..", "..", "raft", "testdata", "wire")

// wireVersion is the directory of the golden files this binary writes.
const wireVersion = "v5"

// wireVersions returns the golden directories of every wire version.
func wireVersions(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(wireDir, "v*"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no wire versions: %v", err)
	}
	return dirs
}

// specFile returns the director file a version's goldens encode: its own
// spec.yaml (a version that added fields uses them), else the first
// version's testdata/wire/spec.yaml.
func specFile(dir string) string {
	if p := filepath.Join(dir, "spec.yaml"); fileExists(p) {
		return p
	}
	return filepath.Join(wireDir, "spec.yaml")
}

// dirVersion is the wire version a golden directory holds ("v3": 3).
func dirVersion(t *testing.T, dir string) int {
	t.Helper()
	v, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "v"))
	if err != nil {
		t.Fatalf("golden directory %s is not vN", dir)
	}
	return v
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// wireState is what the golden files of the version in dir hold, built
// from its spec file (specFile) by the current binary: a set-config entry
// (of the command type the spec needs), a set-admin entry, and the
// snapshot of the state both make.
func wireState(t *testing.T, dir string) (spec raft.Spec, entries map[string][]byte, snapshot []byte) {
	t.Helper()
	d, err := config.LoadDirector(specFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	spec = FromDirector(d)
	hash, err := spec.Hash()
	if err != nil {
		t.Fatal(err)
	}
	typ := raft.CommandSetConfig
	switch v := spec.Version(); {
	case v >= 4:
		typ = raft.CommandSetConfigV3
	case v >= 2:
		typ = raft.CommandSetConfigV2
	}
	setConfig, err := entry(typ, raft.SetConfigCommand{
		Spec: spec, Hash: hash, Keys: spec.Keys(), SubmittedBy: "dir1",
		SubmittedAt: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		t.Fatal(err)
	}
	setAdmin, err := entry(raft.CommandSetAdmin, raft.SetAdminCommand{
		Ref: raft.RealRef{Service: spec.Services[0].Key(), Address: spec.Services[0].Reals[1].Address}, State: raft.AdminDrained,
	})
	if err != nil {
		t.Fatal(err)
	}
	entries = map[string][]byte{"set-config": setConfig, "set-admin": setAdmin}
	fsm := raft.NewFSM(testutil.Logger(t), Validate)
	if res, ok := apply(fsm, 1, setConfig).(raft.SetConfigResult); !ok || !res.Changed {
		t.Fatalf("apply set-config: %#v", res)
	}
	if res, ok := apply(fsm, 2, setAdmin).(raft.SetAdminResult); !ok || !res.Changed {
		t.Fatalf("apply set-admin: %#v", res)
	}
	version := dirVersion(t, dir)
	if version >= 2 {
		// Version 2 added health verdicts.
		setHealth, err := entry(raft.CommandSetHealth, raft.SetHealthCommand{Verdicts: []raft.HealthVerdict{
			{Ref: raft.RealRef{Service: spec.Services[0].Key(), Address: spec.Services[0].Reals[0].Address}, State: raft.HealthDown, Reason: "connection refused"},
			{Ref: raft.RealRef{Service: spec.Services[0].Key(), Address: spec.Services[0].Reals[1].Address}, State: raft.HealthUp},
		}})
		if err != nil {
			t.Fatal(err)
		}
		entries["set-health"] = setHealth
		if res, ok := apply(fsm, 3, setHealth).(raft.SetHealthResult); !ok || res.Changed != 2 {
			t.Fatalf("apply set-health: %#v", res)
		}
	}
	if version >= 3 {
		// Version 3 added drains of directors.
		setDrain, err := entry(raft.CommandSetDrain, raft.SetDrainCommand{
			Node: "dir2", Drain: true, By: "dir1", At: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC),
		})
		if err != nil {
			t.Fatal(err)
		}
		entries["set-drain"] = setDrain
		if res, ok := apply(fsm, 4, setDrain).(raft.SetDrainResult); !ok || !res.Changed {
			t.Fatalf("apply set-drain: %#v", res)
		}
	}
	return spec, entries, persist(t, fsm)
}

// entry encodes a log entry as the node does: the type byte, then JSON.
func entry(t raft.CommandType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	return append([]byte{byte(t)}, b...), err
}

// apply applies data as the committed entry at index.
func apply(fsm *raft.FSM, index uint64, data []byte) any {
	return fsm.Apply(&hraft.Log{Index: index, Term: 1, Type: hraft.LogCommand, Data: data})
}

// persist returns what a snapshot of fsm persists now.
func persist(t *testing.T, fsm *raft.FSM) []byte {
	t.Helper()
	snap, err := fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &sink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.Bytes()
}

// sink is an in-memory snapshot sink.
type sink struct{ bytes.Buffer }

func (*sink) ID() string    { return "test" }
func (*sink) Cancel() error { return nil }
func (*sink) Close() error  { return nil }

// TestWireGolden: the current binary encodes the log entries and the
// snapshot byte for byte as the golden files of every wire version say,
// each from its own spec file. A renamed field, a changed json tag or a
// changed encoding fails here: it would change what older members read and
// the spec's hash.
func TestWireGolden(t *testing.T) {
	for _, dir := range wireVersions(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) { checkGolden(t, dir) })
	}
}

func checkGolden(t *testing.T, dir string) {
	_, entries, snapshot := wireState(t, dir)
	files := map[string][]byte{"snapshot": snapshot}
	for k, v := range entries {
		files[k] = v
	}
	for name, got := range files {
		path := filepath.Join(dir, name+".golden")
		if *updateWire && filepath.Base(dir) == wireVersion {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the encoding changed from %s; the replicated format is frozen (docs/wire.md)\n got %s\nwant %s", name, path, got, want)
		}
	}
}

// TestWireCompatibility: every golden file of every wire version decodes
// into the state the spec describes, through Apply (entries) and Restore
// (snapshot): a binary must read what any earlier release wrote.
func TestWireCompatibility(t *testing.T) {
	for _, dir := range wireVersions(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			spec, _, _ := wireState(t, dir)
			read := func(name string) []byte {
				b, err := os.ReadFile(filepath.Join(dir, name+".golden"))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			fsm := raft.NewFSM(testutil.Logger(t), Validate)
			if res, ok := apply(fsm, 1, read("set-config")).(raft.SetConfigResult); !ok || !res.Changed {
				t.Fatalf("set-config: %#v", res)
			}
			if res, ok := apply(fsm, 2, read("set-admin")).(raft.SetAdminResult); !ok || !res.Changed {
				t.Fatalf("set-admin: %#v", res)
			}
			if fileExists(filepath.Join(dir, "set-health.golden")) {
				if res, ok := apply(fsm, 3, read("set-health")).(raft.SetHealthResult); !ok || res.Changed == 0 {
					t.Fatalf("set-health: %#v", res)
				}
			}
			if fileExists(filepath.Join(dir, "set-drain.golden")) {
				if res, ok := apply(fsm, 4, read("set-drain")).(raft.SetDrainResult); !ok || !res.Changed {
					t.Fatalf("set-drain: %#v", res)
				}
			}
			applied := fsm.State()
			if !reflect.DeepEqual(applied.Config.Spec, spec) {
				t.Errorf("the entries decode to another spec:\n got %+v\nwant %+v", applied.Config.Spec, spec)
			}
			restored := raft.NewFSM(testutil.Logger(t), Validate)
			if err := restored.Restore(io.NopCloser(bytes.NewReader(read("snapshot")))); err != nil {
				t.Fatal(err)
			}
			if got := restored.State(); !reflect.DeepEqual(got, applied) {
				t.Errorf("the snapshot restores another state:\n got %+v\nwant %+v", got, applied)
			}
		})
	}
}
