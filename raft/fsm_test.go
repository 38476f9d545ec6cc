package raft

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
)

// applier applies commands to an FSM directly, numbering the log entries.
type applier struct {
	t     *testing.T
	fsm   *FSM
	index uint64
}

func (a *applier) raw(data []byte) any {
	a.index++
	return a.fsm.Apply(&hraft.Log{Index: a.index, Term: 1, Type: hraft.LogCommand, Data: data})
}

func (a *applier) cmd(typ CommandType, body any) any {
	a.t.Helper()
	data, err := encodeCommand(typ, body)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.raw(data)
}

func (a *applier) setConfig(spec Spec, by string) any {
	a.t.Helper()
	hash, err := spec.Hash()
	if err != nil {
		a.t.Fatal(err)
	}
	return a.cmd(spec.setConfigType(), SetConfigCommand{Spec: spec, Hash: hash, Keys: spec.Keys(),
		SubmittedBy: by, SubmittedAt: time.Date(2026, 11, 2, 3, 4, 5, 6, time.UTC)})
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestFSMSetConfigGenerations(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	if got := a.fsm.Config(); got.Generation != 0 || got.Services != nil {
		t.Fatalf("empty fsm config = %+v", got)
	}

	w := a.fsm.Watch()
	res := a.setConfig(testSpec(1), "d1")
	if want := (SetConfigResult{Generation: 1, Changed: true}); res != want {
		t.Fatalf("first submission = %#v, want %#v", res, want)
	}
	if !closed(w) {
		t.Fatal("watch not woken by a new configuration")
	}
	cfg := a.fsm.Config()
	if cfg.Generation != 1 || cfg.SubmittedBy != "d1" || cfg.Index != 1 || len(cfg.Services) != 1 {
		t.Fatalf("config after first submission = %+v", cfg)
	}
	if !cfg.SubmittedAt.Equal(time.Date(2026, 11, 2, 3, 4, 5, 6, time.UTC)) {
		t.Errorf("SubmittedAt = %v", cfg.SubmittedAt)
	}
	if !reflect.DeepEqual(cfg.Spec, testSpec(1)) {
		t.Errorf("spec changed through the fsm:\n got %+v\nwant %+v", cfg.Spec, testSpec(1))
	}

	// The same file from another director: no-op, no wake-up.
	w = a.fsm.Watch()
	res = a.setConfig(testSpec(1), "d2")
	if want := (SetConfigResult{Generation: 1, Changed: false}); res != want {
		t.Fatalf("same submission = %#v, want %#v", res, want)
	}
	if closed(w) {
		t.Error("watch woken by a no-op submission")
	}
	if got := a.fsm.Config(); got.SubmittedBy != "d1" || got.Index != 1 {
		t.Errorf("no-op submission changed the config: %+v", got)
	}

	res = a.setConfig(testSpec(2), "d2")
	if want := (SetConfigResult{Generation: 2, Changed: true}); res != want {
		t.Fatalf("changed submission = %#v, want %#v", res, want)
	}
	if !closed(w) {
		t.Error("watch not woken by a changed configuration")
	}
	if g, h := a.fsm.Generation(); g != 2 || !strings.HasPrefix(h, "sha256:") {
		t.Errorf("Generation() = %d, %q", g, h)
	}

	// Readers get copies: changing one does not change the FSM.
	cfg = a.fsm.Config()
	*cfg.Services[0].Reals[0].Weight = 99
	cfg.Services[0].Name = "changed"
	if again := a.fsm.Config(); *again.Services[0].Reals[0].Weight != 2 || again.Services[0].Name != "web" {
		t.Error("Config() returned state shared with the fsm")
	}

	// A command without hash or with keys that do not match is refused,
	// deterministically, without stopping the FSM.
	if err, ok := a.cmd(CommandSetConfig, SetConfigCommand{Spec: testSpec(3)}).(error); !ok {
		t.Error("set-config without hash accepted")
	} else if errors.Is(err, ErrUnknownCommand) {
		t.Errorf("unexpected error kind %v", err)
	}
	if err, ok := a.cmd(CommandSetConfig, SetConfigCommand{Spec: testSpec(3), Hash: "x"}).(error); !ok {
		t.Errorf("set-config without keys accepted: %v", err)
	}
	if a.fsm.Err() != nil || closed(a.fsm.Failed()) {
		t.Fatalf("fsm failed on a refused command: %v", a.fsm.Err())
	}
}

func TestFSMSetAdmin(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	a.setConfig(testSpec(1), "d1")
	r10, r11 := webRef("198.51.100.10"), webRef("198.51.100.11")

	tests := []struct {
		name    string
		ref     RealRef
		state   Admin
		want    SetAdminResult
		wantErr error
		admin   map[RealRef]Admin
	}{
		{"drain", r10, AdminDrained, SetAdminResult{AdminEnabled, true}, nil, map[RealRef]Admin{r10: AdminDrained}},
		{"drain again", r10, AdminDrained, SetAdminResult{AdminDrained, false}, nil, map[RealRef]Admin{r10: AdminDrained}},
		{"disable other", r11, AdminDisabled, SetAdminResult{AdminEnabled, true}, nil,
			map[RealRef]Admin{r10: AdminDrained, r11: AdminDisabled}},
		{"enable removes the entry", r10, AdminEnabled, SetAdminResult{AdminDrained, true}, nil,
			map[RealRef]Admin{r11: AdminDisabled}},
		{"unknown real", webRef("198.51.100.99"), AdminDrained, SetAdminResult{}, ErrUnknownReal,
			map[RealRef]Admin{r11: AdminDisabled}},
		{"unknown service", RealRef{Service: ipvs.MustParseServiceKey("udp/192.0.2.100:53"), Address: r10.Address}, AdminDrained,
			SetAdminResult{}, ErrUnknownReal, map[RealRef]Admin{r11: AdminDisabled}},
		{"bad state", r10, Admin("sleepy"), SetAdminResult{}, errors.New("any"),
			map[RealRef]Admin{r11: AdminDisabled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := a.fsm.Watch()
			resp := a.cmd(CommandSetAdmin, SetAdminCommand{Ref: tt.ref, State: tt.state})
			if tt.wantErr != nil {
				err, ok := resp.(error)
				if !ok {
					t.Fatalf("response %#v, want error", resp)
				}
				if tt.wantErr == ErrUnknownReal && !errors.Is(err, ErrUnknownReal) {
					t.Fatalf("error %v, want ErrUnknownReal", err)
				}
			} else if resp != tt.want {
				t.Fatalf("response %#v, want %#v", resp, tt.want)
			}
			if got := a.fsm.Admin(); !reflect.DeepEqual(got, tt.admin) {
				t.Errorf("admin = %v, want %v", got, tt.admin)
			}
			if changed := tt.wantErr == nil && tt.want.Changed; closed(w) != changed {
				t.Errorf("watch woken = %v, want %v", closed(w), changed)
			}
		})
	}
	if a.fsm.Err() != nil {
		t.Fatalf("fsm failed: %v", a.fsm.Err())
	}

	// A configuration without a real forgets its admin state.
	spec := testSpec(1)
	spec.Services[0].Reals = spec.Services[0].Reals[:1] // keeps .10, drops .11
	a.cmd(CommandSetAdmin, SetAdminCommand{Ref: r10, State: AdminDrained})
	a.setConfig(spec, "d1")
	if got, want := a.fsm.Admin(), map[RealRef]Admin{r10: AdminDrained}; !reflect.DeepEqual(got, want) {
		t.Errorf("admin after removing a real = %v, want %v", got, want)
	}
	st := a.fsm.State()
	if st.Config.Generation != 2 || len(st.Admin) != 1 {
		t.Errorf("State() = %+v", st)
	}
}

func TestFSMUnknownCommands(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		fatal  bool
		reject bool
	}{
		{"unknown without flag", append([]byte{0x7f}, `{}`...), true, false},
		{"unknown with flag", append([]byte{byte(IgnoreUnknownFlag | 0x05)}, `{"x":1}`...), false, false},
		{"known type, corrupt body", append([]byte{byte(CommandSetConfig)}, `{"spec":`...), false, true},
		{"known type, wrong body type", append([]byte{byte(CommandSetAdmin)}, `[1,2]`...), false, true},
		{"empty entry", nil, false, true},
		{"invalid spec", append([]byte{byte(CommandSetConfig)}, `{"spec":{"vips":[{"address":"224.0.0.1"}]},"hash":"sha256:`+strings.Repeat("0", 64)+`","keys":[]}`...), false, true},
		{"bad hash", append([]byte{byte(CommandSetConfig)}, `{"spec":{},"hash":"x","keys":[]}`...), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
			a.setConfig(testSpec(1), "d1")
			before := a.fsm.State()

			resp := a.raw(tt.data)
			if tt.reject {
				if _, ok := resp.(error); !ok {
					t.Fatalf("response %#v, want an error", resp)
				}
				if a.fsm.Err() != nil || closed(a.fsm.Failed()) {
					t.Fatal("a rejected entry stopped the fsm")
				}
				if !reflect.DeepEqual(a.fsm.State(), before) {
					t.Error("a rejected entry changed the state")
				}
				if res := a.setConfig(testSpec(2), "d1"); res != (SetConfigResult{2, true}) {
					t.Fatalf("apply after a rejected entry = %#v", res)
				}
				return
			}
			if !tt.fatal {
				if resp != nil {
					t.Fatalf("ignorable command: response %#v, want nil", resp)
				}
				if a.fsm.Err() != nil || closed(a.fsm.Failed()) {
					t.Fatal("ignorable command stopped the fsm")
				}
				if res := a.setConfig(testSpec(2), "d1"); res != (SetConfigResult{2, true}) {
					t.Fatalf("apply after ignorable command = %#v", res)
				}
				return
			}
			err, ok := resp.(error)
			if !ok {
				t.Fatalf("response %#v, want error", resp)
			}
			if tt.data != nil && tt.data[0] == 0x7f && !errors.Is(err, ErrUnknownCommand) {
				t.Errorf("error %v, want ErrUnknownCommand", err)
			}
			if !closed(a.fsm.Failed()) || a.fsm.Err() == nil {
				t.Fatal("fsm did not stop")
			}
			// Nothing later is applied, and no snapshot can skip the entry.
			if _, ok := a.setConfig(testSpec(2), "d1").(error); !ok {
				t.Error("stopped fsm applied a later command")
			}
			if !reflect.DeepEqual(a.fsm.State(), before) {
				t.Error("state changed after the fsm stopped")
			}
			if _, err := a.fsm.Snapshot(); err == nil {
				t.Error("stopped fsm took a snapshot")
			}
		})
	}
}

func TestCommandTypeString(t *testing.T) {
	for typ, want := range map[CommandType]string{
		CommandSetConfig:      "set-config",
		CommandSetAdmin:       "set-admin",
		CommandSetConfigV2:    "set-config-v2",
		CommandSetHealth:      "set-health",
		CommandSetDrain:       "set-drain",
		CommandSetConfigV3:    "set-config-v3",
		9:                     "unknown(9)",
		IgnoreUnknownFlag | 9: "unknown-ignorable(9)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint8(typ), got, want)
		}
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	a.setConfig(testSpec(1), "d1")
	a.setConfig(testSpec(5), "d2")
	a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.11"), State: AdminDisabled})
	a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: AdminDrained})
	want := a.fsm.State()

	snap, err := a.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Persist runs concurrently with Apply: a later change must not leak
	// into the snapshot.
	a.setConfig(testSpec(6), "d3")
	sink := &bufSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}

	restored := NewFSM(testutil.Logger(t), testValidate)
	w := restored.Watch()
	if err := restored.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if !closed(w) {
		t.Error("restore did not wake the watchers")
	}
	got := restored.State()
	if !got.Config.SubmittedAt.Equal(want.Config.SubmittedAt) {
		t.Errorf("SubmittedAt %v, want %v", got.Config.SubmittedAt, want.Config.SubmittedAt)
	}
	got.Config.SubmittedAt, want.Config.SubmittedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("restored state:\n got %+v\nwant %+v", got, want)
	}
	// The restored FSM goes on from the restored generation.
	ra := &applier{t: t, fsm: restored, index: 10}
	if res := ra.setConfig(testSpec(5), "d1"); res != (SetConfigResult{2, false}) {
		t.Errorf("same config after restore = %#v", res)
	}
	if res := ra.setConfig(testSpec(7), "d1"); res != (SetConfigResult{3, true}) {
		t.Errorf("new config after restore = %#v", res)
	}

	// An empty FSM's snapshot restores to an empty state.
	empty, err := NewFSM(nil, testValidate).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink = &bufSink{}
	if err := empty.Persist(sink); err != nil {
		t.Fatal(err)
	}
	if err := restored.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatal(err)
	}
	if st := restored.State(); st.Config.Generation != 0 || len(st.Admin) != 0 || st.Config.Services != nil {
		t.Errorf("state after restoring an empty snapshot: %+v", st)
	}

	// Unknown formats and garbage are refused.
	for _, bad := range []string{`{"format":2}`, `not json`} {
		if err := restored.Restore(io.NopCloser(strings.NewReader(bad))); err == nil {
			t.Errorf("Restore(%q) succeeded", bad)
		}
	}
}

// TestFSMConcurrentReaders runs readers against Apply and Restore; the race
// detector checks that Restore takes the readers' lock and that nothing a
// reader gets aliases the FSM's state.
func TestFSMConcurrentReaders(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	a.setConfig(testSpec(1), "d1")
	image := snapshotImage(t, a.fsm)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := a.fsm.Watch()
				st := a.fsm.State()
				cfg := a.fsm.Config()
				adm := a.fsm.Admin()
				a.fsm.Generation()
				// Mutating the copies must not race with the FSM.
				if len(cfg.Services) > 0 {
					cfg.Services[0].Reals[0].Address = netip.MustParseAddr("203.0.113.1")
					*cfg.Services[0].Reals[0].Weight = -1
				}
				adm[webRef("203.0.113.1")] = AdminDisabled
				st.Admin[webRef("203.0.113.2")] = AdminDisabled
				_ = w
			}
		}()
	}
	for i := range 200 {
		if i%10 == 0 {
			if err := a.fsm.Restore(io.NopCloser(strings.NewReader(string(image)))); err != nil {
				t.Fatal(err)
			}
			continue
		}
		a.setConfig(testSpec(i), "d1")
		a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: AdminDrained})
		if s, err := a.fsm.Snapshot(); err == nil {
			_ = s.Persist(&bufSink{})
		}
	}
	close(stop)
	wg.Wait()
}

// TestSpecRoundTrip fills every exported field of the spec types with
// non-zero values and checks that the replication encoding keeps them all:
// a field the config package adds later that does not survive JSON fails
// here rather than vanish from followers.
func TestSpecRoundTrip(t *testing.T) {
	var spec Spec
	testutil.Fill(&spec)
	if len(spec.Services) == 0 || spec.Services[0].HealthCheck == nil || !spec.VIPs[0].Address.IsValid() {
		t.Fatalf("filler did not fill the spec: %+v", spec)
	}

	// Through a log entry: the FSM would refuse the filler's values (they
	// are not a valid configuration), so decode the entry as Apply does.
	data, err := encodeCommand(CommandSetConfig, SetConfigCommand{Spec: spec, Hash: "sha256:x", Keys: spec.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	_, body, err := decodeCommand(data)
	if err != nil {
		t.Fatal(err)
	}
	var cmd SetConfigCommand
	if err := json.Unmarshal(body, &cmd); err != nil {
		t.Fatal(err)
	}
	got := cmd.Spec
	if !reflect.DeepEqual(got, spec) {
		t.Errorf("spec did not round-trip:\n got %+v\nwant %+v", got, spec)
	}
	// Through a snapshot's configuration too.
	enc, err := json.Marshal(ClusterConfig{Spec: spec, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	var cc ClusterConfig
	if err := json.Unmarshal(enc, &cc); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cc.Spec, spec) {
		t.Errorf("spec did not round-trip through a snapshot:\n got %+v\nwant %+v", cc.Spec, spec)
	}
	// The hash is stable for equal specs and changes with the content.
	h1, _ := spec.Hash()
	h2, _ := got.Hash()
	if h1 != h2 {
		t.Errorf("hash of the round-tripped spec %s != %s", h2, h1)
	}
	got.Services[0].Port++
	if h3, _ := got.Hash(); h3 == h1 {
		t.Error("hash did not change with the content")
	}
}

// State.Index is the log index of the last change, so that a reader can
// tell a state replayed at start from a later one; no-op commands leave
// it, snapshots keep it.
func TestFSMStateIndex(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	if i := a.fsm.State().Index; i != 0 {
		t.Fatalf("empty state has index %d", i)
	}
	a.setConfig(testSpec(1), "d1")                                                             // 1
	a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: AdminDrained}) // 2
	a.setConfig(testSpec(1), "d2")                                                             // 3: same hash
	a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: AdminDrained}) // 4: unchanged
	a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.99"), State: AdminDrained}) // 5: refused
	if i := a.fsm.State().Index; i != 2 {
		t.Errorf("index = %d, want 2 (the admin change; no-ops and refusals leave it)", i)
	}
	image := string(snapshotImage(t, a.fsm))
	restored := NewFSM(testutil.Logger(t), testValidate)
	if err := restored.Restore(io.NopCloser(strings.NewReader(image))); err != nil {
		t.Fatal(err)
	}
	if i := restored.State().Index; i != 2 {
		t.Errorf("restored index = %d, want 2", i)
	}
	// A snapshot of a version that did not record the index restores the
	// configuration's index, a lower bound.
	old := strings.Replace(image, `,"index":2`, "", 1)
	if old == image {
		t.Fatalf("no index in the snapshot %s", old)
	}
	if err := restored.Restore(io.NopCloser(strings.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	if i := restored.State().Index; i != 1 {
		t.Errorf("index restored from an older snapshot = %d, want the configuration's 1", i)
	}
}

// TestRestoreRefusesInconsistentSnapshots: a snapshot Apply could never
// have produced (a configuration without a generation, an admin state for
// a real the configuration lacks) is refused and the state kept.
func TestRestoreRefusesInconsistentSnapshots(t *testing.T) {
	for name, snap := range map[string]string{
		"configuration at generation 0": `{"format":1,"config":{"spec":{"services":[{"name":"x"}]},"generation":0,"hash":"junk"},"admin":null}`,
		"admin state of no real":        `{"format":1,"admin":[{"ref":{"service":"nope","address":"192.0.2.1"},"state":"drained"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
			a.setConfig(testSpec(1), "d1")
			before := a.fsm.State()
			if err := a.fsm.Restore(io.NopCloser(strings.NewReader(snap))); err == nil {
				t.Fatal("restored")
			}
			if !reflect.DeepEqual(a.fsm.State(), before) {
				t.Error("a refused snapshot changed the state")
			}
		})
	}
}

// TestAppendEntriesIndexOverflow: entries after the largest index are
// refused rather than wrap to 0.
func TestAppendEntriesIndexOverflow(t *testing.T) {
	req := &hraft.AppendEntriesRequest{Term: 1, PrevLogEntry: math.MaxUint64,
		Entries: []*hraft.Log{{Index: 0, Term: 1, Type: hraft.LogNoop}}}
	if err := checkAppendEntries(req); !errors.Is(err, ErrRefused) {
		t.Fatalf("checkAppendEntries = %v, want a refusal", err)
	}
}

// TestFSMVIPModeNeedsVersion2: a VIP's mode travels in a version 2
// set-config; in a version 1 command it means what a version 1 binary
// reads there, nothing, so members of both versions apply the same state.
func TestFSMVIPModeNeedsVersion2(t *testing.T) {
	spec := testSpec(1)
	if spec.Version() != 1 || spec.setConfigType() != CommandSetConfig {
		t.Fatalf("a spec without modes: version %d, type %s", spec.Version(), spec.setConfigType())
	}
	spec.VIPs[0].Mode = VIPModeBGP
	if spec.Version() != 2 || spec.setConfigType() != CommandSetConfigV2 {
		t.Fatalf("a spec with a bgp VIP: version %d, type %s", spec.Version(), spec.setConfigType())
	}
	hash, err := spec.Hash()
	if err != nil {
		t.Fatal(err)
	}
	cmd := SetConfigCommand{Spec: spec, Hash: hash, Keys: spec.Keys()}

	v1 := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	if res, ok := v1.cmd(CommandSetConfig, cmd).(SetConfigResult); !ok || !res.Changed {
		t.Fatalf("version 1 command: %#v", res)
	}
	if got := v1.fsm.State().Config.Spec.VIPs[0].Mode; got != "" {
		t.Errorf("a version 1 command kept the VIP mode %q an older member drops", got)
	}
	if spec.VIPs[0].Mode != VIPModeBGP {
		t.Error("applying changed the caller's spec")
	}

	v2 := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	if res, ok := v2.cmd(CommandSetConfigV2, cmd).(SetConfigResult); !ok || !res.Changed {
		t.Fatalf("version 2 command: %#v", res)
	}
	if got := v2.fsm.State().Config.Spec.VIPs[0].Mode; got != VIPModeBGP {
		t.Errorf("a version 2 command lost the VIP mode: %q", got)
	}
	if CommandSetConfigV2.Version() != 2 || CommandVersion < 2 {
		t.Error("set-config-v2 is command version 2")
	}
}

// TestFSMSetConfigV3Fields: a field of command version 4 (a health check's
// PROXY protocol header) travels in set-config-v3; in a version 1 or 2
// command it means what those binaries read there, nothing, so members of
// every version apply the same state.
func TestFSMSetConfigV3Fields(t *testing.T) {
	spec := testSpec(1)
	spec.VIPs[0].Mode = VIPModeBGP
	if spec.Version() != 2 {
		t.Fatalf("a spec with a bgp VIP: version %d", spec.Version())
	}
	spec.Services[0].HealthCheck.ProxyProtocol = "v2"
	spec.Services[0].Reals[1].HealthCheck = &HealthCheck{Type: "tcp", Interval: Duration(time.Second),
		Timeout: Duration(time.Second), Rise: 1, Fall: 1, Initial: "down", Port: 80, ProxyProtocol: "v1", ThroughVIP: true}
	if spec.Version() != 4 || spec.setConfigType() != CommandSetConfigV3 {
		t.Fatalf("a spec with a PROXY protocol check: version %d, type %s", spec.Version(), spec.setConfigType())
	}
	only := spec
	only.VIPs = []VIP{{Address: spec.VIPs[0].Address}}
	only.Services = append([]Service(nil), spec.Services...)
	only.Services[0].HealthCheck = &HealthCheck{Type: "http", ProxyProtocol: "v1"}
	only.Services[0].Reals = nil
	if only.Version() != 4 {
		t.Fatalf("the proxy protocol alone: version %d", only.Version())
	}
	only.Services[0].HealthCheck = &HealthCheck{Type: "http", ThroughVIP: true}
	if only.Version() != 4 {
		t.Fatalf("a check through the VIP alone: version %d", only.Version())
	}
	hash, err := spec.Hash()
	if err != nil {
		t.Fatal(err)
	}
	cmd := SetConfigCommand{Spec: spec, Hash: hash, Keys: spec.Keys()}
	for _, tc := range []struct {
		typ       CommandType
		mode      string
		svc, real string
	}{
		{CommandSetConfig, "", "", ""},
		{CommandSetConfigV2, VIPModeBGP, "", ""},
		{CommandSetConfigV3, VIPModeBGP, "v2", "v1"},
	} {
		a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
		if res, ok := a.cmd(tc.typ, cmd).(SetConfigResult); !ok || !res.Changed {
			t.Fatalf("%s: %#v", tc.typ, res)
		}
		got := a.fsm.State().Config.Spec
		if through := got.Services[0].Reals[1].HealthCheck.ThroughVIP; through != (tc.real != "") {
			t.Errorf("%s applied through_vip %v", tc.typ, through)
		}
		if got.VIPs[0].Mode != tc.mode || got.Services[0].HealthCheck.ProxyProtocol != tc.svc ||
			got.Services[0].Reals[1].HealthCheck.ProxyProtocol != tc.real {
			t.Errorf("%s applied mode %q, proxy protocols %q and %q; want %q, %q, %q", tc.typ, got.VIPs[0].Mode,
				got.Services[0].HealthCheck.ProxyProtocol, got.Services[0].Reals[1].HealthCheck.ProxyProtocol, tc.mode, tc.svc, tc.real)
		}
	}
	if spec.Services[0].HealthCheck.ProxyProtocol != "v2" || spec.Services[0].Reals[1].HealthCheck.ProxyProtocol != "v1" ||
		!spec.Services[0].Reals[1].HealthCheck.ThroughVIP {
		t.Error("applying changed the caller's spec")
	}
}
