package raft

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	hraft "github.com/hashicorp/raft"
)

var updateSeeds = flag.Bool("update-fuzz-seeds", false, "rewrite the seed corpora under testdata/fuzz from real encodings")

// corpusEntry formats fuzz arguments as a go test corpus file.
func corpusEntry(vals ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range vals {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		default:
			panic(fmt.Sprintf("corpusEntry: %T", v))
		}
	}
	return b.Bytes()
}

// writeSeeds replaces the seed corpus of target with entries.
func writeSeeds(t *testing.T, target string, entries map[string][]any) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, vals := range entries {
		if err := os.WriteFile(filepath.Join(dir, name), corpusEntry(vals...), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// msgpackRPCs encodes requests as NetworkTransport sends them: each its
// type byte, then its msgpack body.
func msgpackRPCs(t *testing.T, reqs ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := codec.NewEncoder(&b, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	for _, r := range reqs {
		switch req := r.(type) {
		case []byte: // raw bytes: a snapshot's data
			b.Write(req)
			continue
		case *hraft.AppendEntriesRequest:
			b.WriteByte(rpcAppendEntries)
		case *hraft.RequestVoteRequest:
			b.WriteByte(rpcRequestVote)
		case *hraft.InstallSnapshotRequest:
			b.WriteByte(rpcInstallSnapshot)
		case *hraft.TimeoutNowRequest:
			b.WriteByte(rpcTimeoutNow)
		case *hraft.RequestPreVoteRequest:
			b.WriteByte(rpcRequestPreVote)
		default:
			t.Fatalf("msgpackRPCs: %T", r)
		}
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestFuzzSeeds rewrites the seed corpora of this package's fuzz targets
// with -update-fuzz-seeds; otherwise it checks that each target has one.
func TestFuzzSeeds(t *testing.T) {
	targets := []string{"FuzzFSMApply", "FuzzFSMRestore", "FuzzRaftRPC", "FuzzDecodeConfiguration",
		"FuzzCheckAppendEntries", "FuzzStreamFirstBytes"}
	if !*updateSeeds {
		for _, target := range targets {
			files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", target, "*"))
			if len(files) == 0 {
				t.Errorf("%s has no seed corpus: run go test -run TestFuzzSeeds -update-fuzz-seeds", target)
			}
		}
		return
	}

	enc := func(typ CommandType, body any) []byte {
		b, err := encodeCommand(typ, body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	setConfig := func(spec Spec, by string) []byte {
		hash, err := spec.Hash()
		if err != nil {
			t.Fatal(err)
		}
		return enc(CommandSetConfig, SetConfigCommand{Spec: spec, Hash: hash, Keys: spec.Keys(),
			SubmittedBy: by, SubmittedAt: time.Date(2026, 11, 2, 3, 4, 5, 6, time.UTC)})
	}
	writeSeeds(t, "FuzzFSMApply", map[string][]any{
		"set-config-new":         {setConfig(testSpec(2), "d2")},
		"set-config-same":        {setConfig(testSpec(1), "d1")},
		"set-config-no-hash":     {enc(CommandSetConfig, SetConfigCommand{Spec: testSpec(3)})},
		"set-admin-disable":      {enc(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.11"), State: AdminDisabled})},
		"set-admin-enable":       {enc(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: AdminEnabled})},
		"set-admin-unknown-real": {enc(CommandSetAdmin, SetAdminCommand{Ref: webRef("203.0.113.1"), State: AdminDrained})},
		"set-admin-bad-state":    {enc(CommandSetAdmin, SetAdminCommand{Ref: webRef("198.51.100.10"), State: "gone"})},
		"ignorable-unknown":      {[]byte("\x83{}")},
		"unknown":                {[]byte("\x7f{}")},
		"set-health":             {enc(CommandSetHealth, SetHealthCommand{Verdicts: []HealthVerdict{{Ref: webRef("198.51.100.10"), State: HealthUp}}})},
		"set-drain-busy":         {enc(CommandSetDrain, SetDrainCommand{Node: "d1", Drain: true, By: "d1"})},
		"set-drain-forced":       {enc(CommandSetDrain, SetDrainCommand{Node: "d1", Drain: true, Force: true, By: "d1"})},
		"set-undrain":            {enc(CommandSetDrain, SetDrainCommand{Node: "d2"})},
		"empty":                  {[]byte{}},
		"truncated":              {[]byte("\x01{\"spec\":")},
		"null-body":              {[]byte("\x02null")},
	})

	fsm := fuzzBaseFSM(t)
	writeSeeds(t, "FuzzFSMRestore", map[string][]any{
		"snapshot":       {snapshotImage(t, fsm)},
		"empty-snapshot": {snapshotImage(t, NewFSM(nil, testValidate))},
		"format-2":       {[]byte(`{"format":2,"admin":[]}`)},
		"bad-admin":      {[]byte(`{"format":1,"admin":[{"ref":{"service":"tcp/192.0.2.100:80","address":"198.51.100.10"},"state":"gone"}]}`)},
		"config-gen-0":   {[]byte(`{"format":1,"config":{"spec":{"services":[{}]},"generation":0},"admin":null}`)},
		"config-gen-1":   {[]byte(`{"format":1,"config":{"spec":{},"generation":1,"hash":"x"},"admin":null}`)},
		"not-json":       {[]byte("\x00\x01")},
	})

	hdr := hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("d1"), Addr: []byte("127.0.0.1:7001")}
	members := hraft.EncodeConfiguration(hraft.Configuration{Servers: []hraft.Server{
		{Suffrage: hraft.Voter, ID: "d1", Address: "127.0.0.1:7001"},
		{Suffrage: hraft.Voter, ID: "d2", Address: "127.0.0.1:7002"},
	}})
	cmd := setConfig(testSpec(2), "d1")
	appendReq := &hraft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, PrevLogEntry: 4, PrevLogTerm: 2, LeaderCommitIndex: 4,
		Entries: []*hraft.Log{
			{Index: 5, Term: 3, Type: hraft.LogCommand, Data: cmd, AppendedAt: time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)},
			{Index: 6, Term: 3, Type: hraft.LogConfiguration, Data: members},
			{Index: 7, Term: 3, Type: hraft.LogNoop},
		}}
	gapReq := &hraft.AppendEntriesRequest{RPCHeader: hdr, Term: 3, PrevLogEntry: 4,
		Entries: []*hraft.Log{{Index: 6, Term: 3, Type: hraft.LogNoop}}}
	snapData := []byte(`{"format":1,"admin":[]}`)
	snapReq := &hraft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: hraft.SnapshotVersionMax, Term: 3,
		LastLogIndex: 9, LastLogTerm: 3, Configuration: members, ConfigurationIndex: 6, Size: int64(len(snapData))}
	impostor := hdr
	impostor.ID = []byte("d2")
	writeSeeds(t, "FuzzRaftRPC", map[string][]any{
		"append-entries": {msgpackRPCs(t, appendReq)},
		"heartbeat":      {msgpackRPCs(t, &hraft.AppendEntriesRequest{RPCHeader: hdr, Term: 3})},
		"append-gap":     {msgpackRPCs(t, gapReq)},
		"request-vote": {msgpackRPCs(t, &hraft.RequestVoteRequest{RPCHeader: hdr, Term: 4, LastLogIndex: 9, LastLogTerm: 3},
			&hraft.RequestPreVoteRequest{RPCHeader: hdr, Term: 5, LastLogIndex: 9, LastLogTerm: 3})},
		"install-snapshot": {msgpackRPCs(t, snapReq, snapData, &hraft.TimeoutNowRequest{RPCHeader: hdr})},
		"timeout-now-d2":   {msgpackRPCs(t, &hraft.TimeoutNowRequest{RPCHeader: impostor})},
		"impostor":         {msgpackRPCs(t, &hraft.RequestVoteRequest{RPCHeader: impostor, Term: 4})},
		"unknown-type":     {[]byte("\x09\x80")},
	})

	writeSeeds(t, "FuzzDecodeConfiguration", map[string][]any{
		"members":   {members},
		"empty":     {hraft.EncodeConfiguration(hraft.Configuration{})},
		"bad-addr":  {hraft.EncodeConfiguration(hraft.Configuration{Servers: []hraft.Server{{ID: "d1", Address: "d1:7001"}}})},
		"suffrage":  {hraft.EncodeConfiguration(hraft.Configuration{Servers: []hraft.Server{{Suffrage: 7, ID: "d1", Address: "127.0.0.1:7001"}}})},
		"truncated": {members[:len(members)/2]},
	})

	writeSeeds(t, "FuzzCheckAppendEntries", map[string][]any{
		"contiguous": {uint64(3), uint64(4), []byte{0, 0, 0, 1, 0, 0, 5, 2, 0, 1, 2, 0}},
		"gap":        {uint64(3), uint64(4), []byte{0, 0, 0, 1, 1, 0, 0, 1}},
		"nil-entry":  {uint64(3), uint64(4), []byte{0, 0, 0xff, 0}},
		"bad-config": {uint64(3), uint64(0), []byte{0, 0, 5, 3, 0, 0, 5, 4}},
		"wrap":       {uint64(3), ^uint64(0), []byte{0, 0, 0, 1, 0, 0, 0, 1}},
		"heartbeat":  {uint64(3), uint64(0), []byte{}},
	})

	writeSeeds(t, "FuzzStreamFirstBytes", map[string][]any{
		"nothing":        {[]byte{}},
		"peer-http":      {append([]byte{PeerProtocolByte}, "GET /peer/v1/status HTTP/1.1\r\nHost: x\r\n\r\n"...)},
		"raft-heartbeat": {msgpackRPCs(t, &hraft.AppendEntriesRequest{RPCHeader: hdr, Term: 3})},
		"raft-partial":   {msgpackRPCs(t, appendReq)[:40]},
		"tls-hello":      {[]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")},
		"http":           {[]byte("GET / HTTP/1.0\r\n\r\n")},
	})
}
