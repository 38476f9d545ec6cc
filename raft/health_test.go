package raft

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/testutil"
)

// TestFSMHealthVerdicts: verdicts are kept for reals of the configuration
// only, an unchanged verdict is no change, an empty state forgets, a bad
// entry changes nothing, and a new configuration forgets the verdicts of
// the reals it dropped.
func TestFSMHealthVerdicts(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	a.setConfig(testSpec(1), "d1")
	down := HealthVerdict{Ref: webRef("198.51.100.10"), State: HealthDown, Reason: "connection refused"}
	stranger := HealthVerdict{Ref: webRef("198.51.100.99"), State: HealthDown}

	w := a.fsm.Watch()
	res := a.cmd(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{down, stranger}})
	if res != (SetHealthResult{Changed: 1}) {
		t.Fatalf("set health = %#v", res)
	}
	if !closed(w) {
		t.Error("a verdict did not wake the watchers")
	}
	if got := a.fsm.State().Health; !reflect.DeepEqual(got, map[RealRef]HealthVerdict{down.Ref: down}) {
		t.Errorf("health %v: want only the configured real's verdict", got)
	}
	index := a.fsm.State().Index

	w = a.fsm.Watch()
	if res := a.cmd(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{down}}); res != (SetHealthResult{}) {
		t.Errorf("the same verdict again = %#v, want no change", res)
	}
	if closed(w) || a.fsm.State().Index != index {
		t.Error("an unchanged verdict changed the state")
	}

	for name, body := range map[string]string{
		"unknown state": `{"verdicts":[{"ref":{"service":"tcp/192.0.2.100:80","address":"198.51.100.11"},"state":"sideways"}]}`,
		"long reason":   `{"verdicts":[{"ref":{"service":"tcp/192.0.2.100:80","address":"198.51.100.11"},"state":"down","reason":"` + strings.Repeat("x", MaxHealthReason+1) + `"}]}`,
		"not json":      `{"verdicts":`,
		"not a verdict": `{"verdicts":[7]}`,
		"bad ref":       `{"verdicts":[{"ref":{"service":"x","address":"nope"},"state":"down"}]}`,
	} {
		before := a.fsm.State()
		if _, ok := a.raw(append([]byte{byte(CommandSetHealth)}, body...)).(error); !ok {
			t.Errorf("%s: accepted", name)
		}
		if a.fsm.Err() != nil || !reflect.DeepEqual(a.fsm.State(), before) {
			t.Errorf("%s: a rejected entry changed the state or stopped the fsm (%v)", name, a.fsm.Err())
		}
	}

	if res := a.cmd(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{{Ref: down.Ref}}}); res != (SetHealthResult{Changed: 1}) {
		t.Errorf("forget = %#v", res)
	}
	if got := a.fsm.State().Health; len(got) != 0 {
		t.Errorf("forgotten verdict kept: %v", got)
	}

	a.cmd(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{down, {Ref: webRef("198.51.100.11"), State: HealthUp}}})
	spec := testSpec(1)
	spec.Services[0].Reals = spec.Services[0].Reals[1:]
	a.setConfig(spec, "d1")
	if got := a.fsm.State().Health; len(got) != 1 || got[webRef("198.51.100.11")].State != HealthUp {
		t.Errorf("after the real left the configuration: %v", got)
	}
}

// TestFSMHealthSnapshot: verdicts survive a snapshot; a snapshot without
// them is what version 1 wrote; a snapshot with a verdict for no real of
// its configuration is refused.
func TestFSMHealthSnapshot(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	a.setConfig(testSpec(1), "d1")
	persistOf := func() []byte {
		snap, err := a.fsm.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		sink := &bufSink{}
		if err := snap.Persist(sink); err != nil {
			t.Fatal(err)
		}
		return sink.Bytes()
	}
	if b := persistOf(); bytes.Contains(b, []byte(`"health"`)) {
		t.Errorf("a snapshot without verdicts names them: %s", b)
	}
	a.cmd(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{
		{Ref: webRef("198.51.100.11"), State: HealthUp},
		{Ref: webRef("198.51.100.10"), State: HealthDown, Reason: "draining"},
	}})
	b := persistOf()
	restored := NewFSM(testutil.Logger(t), testValidate)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.State().Health, a.fsm.State().Health; !reflect.DeepEqual(got, want) {
		t.Errorf("restored health %v, want %v", got, want)
	}

	var file map[string]any
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	file["health"] = []HealthVerdict{{Ref: webRef("198.51.100.99"), State: HealthDown}}
	bad, _ := json.Marshal(file)
	if err := NewFSM(testutil.Logger(t), testValidate).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Error("a snapshot verdict for no configured real restored")
	}
	file["health"] = []HealthVerdict{{Ref: webRef("198.51.100.10"), State: "maybe"}}
	bad, _ = json.Marshal(file)
	if err := NewFSM(testutil.Logger(t), testValidate).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Error("a snapshot verdict with an unknown state restored")
	}
}
