package raft

// Fuzz targets for every input of this package that comes from the network
// or from disk: log entries (FSM.Apply), snapshots (FSM.Restore), raft RPCs
// on an inbound connection (Transport.serveConn), the first bytes of a
// connection to the Raft port (StreamLayer), and the two checks raft's
// panics hide behind (decodeConfiguration, checkAppendEntries). None may
// panic or stop a node but as the FSM's contract says.
//
// Seed corpora are under testdata/fuzz/<Target>; TestFuzzSeeds rewrites
// them from real encodings with -update-fuzz-seeds.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"reflect"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// fuzzWait bounds every wait of a fuzz iteration: generous, as two fuzz
// workers share two cores with the coordinator.
const fuzzWait = 10 * time.Second

// fuzzBaseFSM returns an FSM holding testSpec(1) at index 1 and r10
// drained at index 2, as a follower's FSM holds a cluster's state.
func fuzzBaseFSM(t *testing.T) *FSM {
	a := &applier{t: t, fsm: NewFSM(nil, testValidate)}
	if _, ok := a.setConfig(testSpec(1), "d1").(SetConfigResult); !ok {
		t.Fatal("base configuration refused")
	}
	if _, ok := a.cmd(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: AdminDrained}).(SetAdminResult); !ok {
		t.Fatal("base admin state refused")
	}
	if _, ok := a.cmd(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{{Ref: webRef("198.51.100.11"), State: HealthDown, Reason: "refused"}}}).(SetHealthResult); !ok {
		t.Fatal("base health verdict refused")
	}
	if _, ok := a.cmd(CommandSetDrain, SetDrainCommand{Node: "d2", Drain: true, By: "d1", At: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)}).(SetDrainResult); !ok {
		t.Fatal("base drain refused")
	}
	return a.fsm
}

// checkRestorable asserts that f's state survives a snapshot and a restore
// into a new FSM, and that a configuration it holds is one Apply accepts.
func checkRestorable(t *testing.T, f *FSM) {
	t.Helper()
	st := f.State()
	if c := st.Config; c.Generation > 0 {
		if err := checkSetConfig(&SetConfigCommand{Spec: c.Spec, Hash: c.Hash, Keys: c.Keys, SubmittedBy: c.SubmittedBy}, testValidate); err != nil {
			t.Fatalf("fsm holds a configuration Apply would refuse: %v", err)
		}
	}
	img := snapshotImage(t, f)
	g := NewFSM(nil, testValidate)
	if err := g.Restore(io.NopCloser(bytes.NewReader(img))); err != nil {
		t.Fatalf("restoring the fsm's own snapshot: %v\n%s", err, img)
	}
	if got := g.State(); !reflect.DeepEqual(got, st) {
		t.Fatalf("snapshot round trip changed the state:\n got %+v\nwant %+v", got, st)
	}
}

// FuzzFSMApply applies arbitrary bytes as a command entry to an FSM that
// holds a configuration and an admin state. An entry is applied, rejected
// with the state unchanged, or (an unknown command type without
// IgnoreUnknownFlag, and only that) stops the FSM.
func FuzzFSMApply(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := fuzzBaseFSM(t)
		before := fsm.State()
		res := fsm.Apply(&hraft.Log{Index: 3, Term: 1, Type: hraft.LogCommand, Data: data})
		after := fsm.State()

		mustStop := len(data) > 0 && CommandType(data[0]).Version() == 0 &&
			CommandType(data[0])&IgnoreUnknownFlag == 0
		stopped := fsm.Err() != nil
		if stopped != mustStop {
			t.Fatalf("fsm stopped = %v (%v) for type byte %#x; only an unknown, non-ignorable type stops it",
				stopped, fsm.Err(), data[0])
		}
		if stopped {
			if err, ok := res.(error); !ok || !errors.Is(err, ErrUnknownCommand) {
				t.Fatalf("fsm stopped with result %#v, want an ErrUnknownCommand", res)
			}
			if !closed(fsm.Failed()) {
				t.Fatal("fsm stopped without closing Failed()")
			}
		}
		switch r := res.(type) {
		case error:
			if !reflect.DeepEqual(after, before) {
				t.Fatalf("entry rejected (%v) but the state changed:\n got %+v\nwant %+v", r, after, before)
			}
			return
		case nil:
			if !reflect.DeepEqual(after, before) {
				t.Fatalf("ignored entry changed the state:\n got %+v\nwant %+v", after, before)
			}
		case SetConfigResult, SetAdminResult, SetHealthResult, SetDrainResult:
		default:
			t.Fatalf("Apply returned %T %#v", res, res)
		}
		checkRestorable(t, fsm)
	})
}

// FuzzFSMRestore restores arbitrary bytes as a snapshot (from disk at
// start, or streamed by a leader's InstallSnapshot). A refused snapshot
// keeps the previous state; an accepted one is a state Apply could have
// reached, and snapshots again to itself.
func FuzzFSMRestore(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := fuzzBaseFSM(t)
		before := fsm.State()
		if err := fsm.Restore(io.NopCloser(bytes.NewReader(data))); err != nil {
			if after := fsm.State(); !reflect.DeepEqual(after, before) {
				t.Fatalf("snapshot refused (%v) but the state changed:\n got %+v\nwant %+v", err, after, before)
			}
			if fsm.Err() != nil {
				t.Fatalf("a refused snapshot stopped the fsm: %v", fsm.Err())
			}
			return
		}
		if fsm.Err() != nil {
			t.Fatalf("fsm stopped by a snapshot it accepted: %v", fsm.Err())
		}
		checkRestorable(t, fsm)
	})
}

// fuzzMembers is the membership fuzzAuthority checks headers against.
var fuzzMembers = map[string]string{"d1": "127.0.0.1:7001", "d2": "127.0.0.1:7002"}

// fuzzAuthority is an Authority over a fixed membership with d1 leading:
// the header checks of a node that knows a configuration, without a Node.
type fuzzAuthority struct{}

func (fuzzAuthority) Admit(Peer) error { return nil }

func (fuzzAuthority) CheckRPC(p Peer, cmd any) error {
	wh, ok := cmd.(hraft.WithRPCHeader)
	if !ok {
		return refuse(RefusedMalformed, "raft rpc %T has no header", cmd)
	}
	hdr := wh.GetRPCHeader()
	err := checkHeader(p, hdr, func(id string) (string, bool, bool) {
		addr, ok := fuzzMembers[id]
		return addr, ok, false
	})
	if err != nil {
		return err
	}
	if _, ok := cmd.(*hraft.TimeoutNowRequest); ok && string(hdr.ID) != "d1" {
		return &refusal{reason: RefusedStaleTransfer, msg: ErrStaleTimeoutNow.Error()}
	}
	return nil
}

func (fuzzAuthority) ExpectedID(address string) string {
	for id, a := range fuzzMembers {
		if a == address {
			return id
		}
	}
	return ""
}

// fuzzTransport returns a Transport on a plain StreamLayer on 127.0.0.1
// whose RPCs are answered at once with an empty response of their type
// (a snapshot's data read first), as raft would answer them. Everything
// ends when the fuzz target's process is done with it.
func fuzzTransport(f *testing.F) *Transport {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	layer, err := NewStreamLayer(ln, netip.AddrPort{}, nil, nil)
	if err != nil {
		f.Fatal(err)
	}
	tr := NewTransport(layer, nil)
	done := make(chan struct{})
	go func() { // ends when done is closed
		for {
			select {
			case rpc := <-tr.Consumer():
				if rpc.Reader != nil {
					_, _ = io.Copy(io.Discard, rpc.Reader)
				}
				rpc.Respond(emptyResponse(rpc.Command), nil)
			case <-done:
				return
			}
		}
	}()
	f.Cleanup(func() {
		tr.Close()
		close(done)
	})
	return tr
}

// FuzzRaftRPC serves arbitrary bytes as an inbound raft connection: the
// first byte is the RPC type, the rest the msgpack requests (and a
// snapshot's data), checked by an Authority over a fixed membership. The
// server must not panic, must read what the peer sends, and must return
// promptly once the peer closes.
func FuzzRaftRPC(f *testing.F) {
	tr := fuzzTransport(f)
	tr.layer.SetAuthority(fuzzAuthority{})
	peer := Peer{Remote: netip.MustParseAddrPort("127.0.0.1:7001")}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return // serveConn starts with the connection's first byte
		}
		srv, cli := net.Pipe()
		served := make(chan struct{})
		go func() { // ends when serveConn returns
			defer close(served)
			tr.serveConn(srv, peer, data[0])
		}()
		go func() { _, _ = io.Copy(io.Discard, cli) }() // ends when cli is closed
		wrote := make(chan struct{})
		go func() { // ends when the server has read everything or closed
			defer close(wrote)
			_, _ = cli.Write(data[1:])
		}()
		select {
		case <-wrote:
		case <-time.After(fuzzWait):
			t.Fatalf("server stopped reading an rpc stream of %d bytes", len(data))
		}
		cli.Close()
		select {
		case <-served:
		case <-time.After(fuzzWait):
			t.Fatal("serveConn did not return after the peer closed")
		}
	})
}

// FuzzDecodeConfiguration decodes arbitrary bytes as a Raft configuration
// (a configuration entry, or an InstallSnapshot's). It must not panic, and
// what it accepts is a configuration hashicorp/raft encodes and decodes
// again to the same.
func FuzzDecodeConfiguration(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeConfiguration(data)
		if err != nil {
			return
		}
		again, err := decodeConfiguration(hraft.EncodeConfiguration(c))
		if err != nil {
			t.Fatalf("accepted configuration does not decode once encoded again: %v", err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("configuration round trip: got %+v, want %+v", again, c)
		}
	})
}

// fuzzEntries builds the entries of an AppendEntries from layout, four
// bytes an entry: an index skew (0: contiguous), a term step, a type (0xff:
// a nil entry) and a data kind (see fuzzEntryData).
func fuzzEntries(prev, term uint64, layout []byte) []*hraft.Log {
	var out []*hraft.Log
	index, lastTerm := prev+1, min(term, 1)
	for i := 0; i+4 <= len(layout) && len(out) < 100; i += 4 {
		skew, step, typ, kind := layout[i], layout[i+1], layout[i+2], layout[i+3]
		if typ == 0xff {
			out = append(out, nil)
			index++
			continue
		}
		e := &hraft.Log{
			Index: index + uint64(int64(int8(skew))),
			Term:  lastTerm + uint64(step%4) - uint64(step>>7), // mostly not decreasing
			Type:  hraft.LogType(typ % 8),
			Data:  fuzzEntryData(kind),
		}
		out = append(out, e)
		index++
		lastTerm = e.Term
	}
	return out
}

// fuzzEntryData returns an entry's data by kind: none, a command, a valid
// configuration, bytes that do not decode as one, or more than
// MaxEntrySize.
func fuzzEntryData(kind byte) []byte {
	switch kind % 6 {
	case 0:
		return nil
	case 1:
		return []byte{byte(CommandSetAdmin), '{', '}'}
	case 2:
		return hraft.EncodeConfiguration(hraft.Configuration{Servers: []hraft.Server{
			{Suffrage: hraft.Voter, ID: "d1", Address: "127.0.0.1:7001"},
			{Suffrage: hraft.Nonvoter, ID: "w1", Address: "127.0.0.1:7003"},
		}})
	case 3:
		return []byte{0x81, 0xa7, 'S', 'e', 'r', 'v', 'e', 'r', 's', 0xc1}
	case 4:
		return hraft.EncodeConfiguration(hraft.Configuration{Servers: []hraft.Server{
			{Suffrage: hraft.Voter, ID: "d1", Address: "127.0.0.1:7001"},
			{Suffrage: hraft.Voter, ID: "d1", Address: "127.0.0.1:7002"},
		}})
	}
	return make([]byte, MaxEntrySize+1)
}

// FuzzCheckAppendEntries checks AppendEntries built from fuzz input: what
// checkAppendEntries accepts keeps every rule of the log hashicorp/raft
// assumes, and what it refuses is an ErrRefused.
func FuzzCheckAppendEntries(f *testing.F) {
	f.Fuzz(func(t *testing.T, term, prev uint64, layout []byte) {
		req := &hraft.AppendEntriesRequest{Term: term, PrevLogEntry: prev, Entries: fuzzEntries(prev, term, layout)}
		if err := checkAppendEntries(req); err != nil {
			if !errors.Is(err, ErrRefused) || reasonOf(err, "") == "" {
				t.Fatalf("refusal %v is not a counted ErrRefused", err)
			}
			return
		}
		var lastTerm uint64
		for i, e := range req.Entries {
			if e == nil {
				t.Fatalf("entry %d is nil", i)
			}
			if want := prev + 1 + uint64(i); e.Index != want {
				t.Fatalf("entry %d has index %d after %d: not contiguous", i, e.Index, prev)
			}
			if e.Term == 0 || e.Term > term || e.Term < lastTerm {
				t.Fatalf("entry %d has term %d after %d in a term %d request", i, e.Term, lastTerm, term)
			}
			lastTerm = e.Term
			switch e.Type {
			case hraft.LogCommand:
				if len(e.Data) == 0 || len(e.Data) > MaxEntrySize {
					t.Fatalf("command entry %d of %d bytes accepted", i, len(e.Data))
				}
			case hraft.LogNoop, hraft.LogBarrier:
			case hraft.LogConfiguration:
				if _, err := decodeConfiguration(e.Data); err != nil {
					t.Fatalf("configuration entry %d accepted: %v", i, err)
				}
				// What raft does with it next: it must not panic.
				_ = hraft.DecodeConfiguration(e.Data)
			default:
				t.Fatalf("entry %d of type %s accepted", i, e.Type)
			}
		}
	})
}

// FuzzStreamFirstBytes writes arbitrary bytes on a plain TCP connection to
// the Raft port, then closes it. The port must keep serving: a peer
// protocol dial right after reaches the peer listener, and no connection
// stays open once its peer has gone.
func FuzzStreamFirstBytes(f *testing.F) {
	tr := fuzzTransport(f)
	layer := tr.layer
	addr := layer.Addr().String()
	// What the peer listener's connections carried, each read to its end.
	got := make(chan string, 16)
	ln := layer.PeerListener()
	go func() { // ends when the layer is closed (fuzzTransport's cleanup)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // ends when the peer closes or after fuzzWait
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(fuzzWait))
				b, _ := io.ReadAll(io.LimitReader(c, 1<<20))
				select {
				case got <- string(b):
				default: // nobody waits for a fuzz input's connection
				}
			}()
		}
	}()
	var n int
	f.Fuzz(func(t *testing.T, data []byte) {
		n++
		c, err := net.DialTimeout("tcp", addr, fuzzWait)
		if err != nil {
			t.Fatalf("dial the raft port: %v", err)
		}
		_ = c.SetWriteDeadline(time.Now().Add(fuzzWait))
		_, _ = c.Write(data)
		c.Close()

		ctx, cancel := context.WithTimeout(context.Background(), fuzzWait)
		defer cancel()
		pc, err := layer.DialPeer(ctx, addr)
		if err != nil {
			t.Fatalf("peer dial after %q: %v", data, err)
		}
		probe := fmt.Sprintf("probe %d\n", n)
		_, err = pc.Write([]byte(probe))
		pc.Close()
		if err != nil {
			t.Fatalf("peer write after %q: %v", data, err)
		}
		for {
			select {
			case s := <-got:
				if s != probe {
					continue // the fuzz input's own peer connection
				}
			case <-ctx.Done():
				t.Fatalf("peer connection after %q did not reach the peer listener", data)
			}
			break
		}
		testutil.WaitFor(t, fuzzWait, "raft port connections to close", func() (bool, string) {
			st := layer.Stats()
			return st.Conns == 0, fmt.Sprintf("%d open after %q", st.Conns, data)
		})
	})
}
