package raft

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil"
)

// TestFSMDrains: one director drained at a time unless forced; draining a
// drained director or undraining one that is not is no change; a bad
// entry changes nothing; undrain frees the slot.
func TestFSMDrains(t *testing.T) {
	a := &applier{t: t, fsm: NewFSM(testutil.Logger(t), testValidate)}
	a.setConfig(testSpec(1), "d1")
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

	w := a.fsm.Watch()
	if res := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d1", Drain: true, By: "d2", At: at}); res != (SetDrainResult{Changed: true}) {
		t.Fatalf("drain d1 = %#v", res)
	}
	if !closed(w) {
		t.Error("a drain did not wake the watchers")
	}
	want := map[string]Drain{"d1": {Node: "d1", Since: at, By: "d2"}}
	if got := a.fsm.State().Drains; !reflect.DeepEqual(got, want) {
		t.Errorf("drains %v, want %v", got, want)
	}
	index := a.fsm.State().Index

	w = a.fsm.Watch()
	if res := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d1", Drain: true, At: at.Add(time.Minute)}); res != (SetDrainResult{}) {
		t.Errorf("drain d1 again = %#v, want no change", res)
	}
	if closed(w) || a.fsm.State().Index != index || a.fsm.State().Drains["d1"].Since != at {
		t.Error("draining a drained director changed the state")
	}

	res := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d2", Drain: true, At: at})
	var busy *DrainBusyError
	if err, ok := res.(error); !ok || !errors.As(err, &busy) || !errors.Is(err, ErrDrainBusy) || busy.Drained.Node != "d1" {
		t.Fatalf("a second drain = %#v, want a DrainBusyError naming d1", res)
	}
	if _, ok := a.fsm.State().Drains["d2"]; ok || a.fsm.State().Index != index {
		t.Error("a refused drain changed the state")
	}

	if res := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d2", Drain: true, Force: true, At: at}); res != (SetDrainResult{Changed: true}) {
		t.Fatalf("forced second drain = %#v", res)
	}
	if d := a.fsm.State().Drains["d2"]; !d.Forced {
		t.Errorf("forced drain recorded as %+v", d)
	}

	for _, n := range []string{"d1", "d2"} {
		if res := a.cmd(CommandSetDrain, SetDrainCommand{Node: n, At: at}); res != (SetDrainResult{Changed: true}) {
			t.Errorf("undrain %s = %#v", n, res)
		}
	}
	if res := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d1", At: at}); res != (SetDrainResult{}) {
		t.Errorf("undrain of an undrained director = %#v, want no change", res)
	}
	if res := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d2", Drain: true, At: at}); res != (SetDrainResult{Changed: true}) {
		t.Errorf("drain once the others are undrained = %#v", res)
	}

	for name, body := range map[string]string{
		"no node":     `{"drain":true}`,
		"bad node":    `{"node":"../etc","drain":true}`,
		"bad by":      `{"node":"d3","drain":true,"by":"a b"}`,
		"not json":    `{"node":`,
		"wrong shape": `[1]`,
		"bad time":    `{"node":"d3","drain":true,"at":"yesterday"}`,
	} {
		before := a.fsm.State()
		if _, ok := a.raw(append([]byte{byte(CommandSetDrain)}, body...)).(error); !ok {
			t.Errorf("%s: accepted", name)
		}
		if a.fsm.Err() != nil || !reflect.DeepEqual(a.fsm.State(), before) {
			t.Errorf("%s: a rejected entry changed the state or stopped the fsm (%v)", name, a.fsm.Err())
		}
	}
}

// TestFSMDrainSnapshot: drain records survive a snapshot; a snapshot
// without them is what version 2 wrote; bad records are refused.
func TestFSMDrainSnapshot(t *testing.T) {
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
	if b := persistOf(); bytes.Contains(b, []byte(`"drains"`)) {
		t.Errorf("a snapshot without drains names them: %s", b)
	}
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	a.cmd(CommandSetDrain, SetDrainCommand{Node: "d2", Drain: true, By: "d1", At: at})
	a.cmd(CommandSetDrain, SetDrainCommand{Node: "d1", Drain: true, Force: true, At: at})
	b := persistOf()
	restored := NewFSM(testutil.Logger(t), testValidate)
	if err := restored.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
		t.Fatal(err)
	}
	if got, want := restored.State().Drains, a.fsm.State().Drains; !reflect.DeepEqual(got, want) {
		t.Errorf("restored drains %v, want %v", got, want)
	}

	var file map[string]any
	if err := json.Unmarshal(b, &file); err != nil {
		t.Fatal(err)
	}
	for name, drains := range map[string][]Drain{
		"bad node": {{Node: "a/b"}},
		"twice":    {{Node: "d1"}, {Node: "d1"}},
		"too many": make([]Drain, MaxDrains+1),
	} {
		file["drains"] = drains
		bad, _ := json.Marshal(file)
		if err := NewFSM(testutil.Logger(t), testValidate).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
			t.Errorf("%s: restored", name)
		}
	}
}
