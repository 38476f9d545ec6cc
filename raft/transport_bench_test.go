package raft

import (
	"io"
	"net/netip"
	"strconv"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft/pki"
)

// BenchmarkRPC measures one Raft RPC round trip on loopback, from
// hashicorp/raft's NetworkTransport client to a server that answers at once:
// hashicorp/raft's own TCP transport (the baseline: no checks), dsrd's
// transport in plain TCP (framing, limits and the rules of the log), and
// dsrd's with mutual TLS and a member gate (identity, header and
// membership checks). Heartbeats and AppendEntries of 1 and 8 entries of
// 1 KiB. Run: go test -run '^$' -bench BenchmarkRPC -benchtime 2s ./raft
func BenchmarkRPC(b *testing.B) {
	for _, entries := range []int{0, 1, 8} {
		req := &hraft.AppendEntriesRequest{RPCHeader: header("c", "127.0.0.1:1"), Term: 1}
		for i := range entries {
			req.Entries = append(req.Entries, &hraft.Log{Index: uint64(i + 1), Term: 1, Type: hraft.LogCommand, Data: make([]byte, 1024)})
		}
		name := "heartbeat"
		if entries > 0 {
			name = "entries=" + strconv.Itoa(entries)
		}
		b.Run(name+"/hashicorp-tcp", func(b *testing.B) {
			srv, err := hraft.NewTCPTransport("127.0.0.1:0", nil, 3, 10*time.Second, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			benchRPC(b, srv.Consumer(), hraft.ServerAddress(srv.LocalAddr()), nil, req)
		})
		b.Run(name+"/dsrd-plain", func(b *testing.B) {
			srv := NewTransport(tlsLayer(b, nil), nil)
			defer srv.Close()
			benchRPC(b, srv.Consumer(), hraft.ServerAddress(srv.LocalAddr()), nil, req)
		})
		b.Run(name+"/dsrd-mtls", func(b *testing.B) {
			ca := testutil.NewCA(b, "cluster-ca")
			spt, err := NewPeerTLS(must(ca.Issue(b, "s")), ca.Pool())
			if err != nil {
				b.Fatal(err)
			}
			cpt, err := NewPeerTLS(must(ca.IssueAs(b, "c", pki.RoleDirector, netip.MustParseAddr("127.0.0.1"))), ca.Pool())
			if err != nil {
				b.Fatal(err)
			}
			layer := tlsLayer(b, spt)
			layer.SetAuthority(benchGate{})
			srv := NewTransport(layer, nil)
			defer srv.Close()
			benchRPC(b, srv.Consumer(), hraft.ServerAddress(srv.LocalAddr()), cpt, req)
		})
	}
}

// benchGate is a gate whose membership is one member, c at 127.0.0.1:1, as
// the node's view serves it from its cache.
type benchGate struct{}

func (benchGate) Admit(Peer) error { return nil }
func (benchGate) CheckRPC(p Peer, cmd any) error {
	return checkHeader(p, cmd.(hraft.WithRPCHeader).GetRPCHeader(), func(id string) (string, bool, bool) {
		return "127.0.0.1:1", id == "c", false
	})
}
func (benchGate) ExpectedID(string) string { return "s" }

// benchRPC answers every RPC of consumer and times b.N AppendEntries from
// a client transport with clientTLS (plain when nil).
func benchRPC(b *testing.B, consumer <-chan hraft.RPC, addr hraft.ServerAddress, clientTLS *PeerTLS, req *hraft.AppendEntriesRequest) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case rpc := <-consumer:
				rpc.Respond(&hraft.AppendEntriesResponse{Term: 1, Success: true}, nil)
			case <-done:
				return
			}
		}
	}()
	client := NewTransport(tlsLayer(b, clientTLS), nil)
	defer client.Close()
	var resp hraft.AppendEntriesResponse
	if err := client.AppendEntries("s", addr, req, &resp); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := client.AppendEntries("s", addr, req, &resp); err != nil {
			b.Fatal(err)
		}
	}
}
