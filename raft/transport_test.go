package raft

import (
	"errors"
	"net/netip"
	"testing"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/internal/testutil"
)

// The transport replicates without pipelining: hashicorp/raft v1.7.3's
// pipeline can deadlock after a rejected AppendEntries (see NewTransport),
// and NewRaft falls back to synchronous AppendEntries when the transport
// answers ErrPipelineReplicationNotSupported.
func TestTransportDoesNotPipeline(t *testing.T) {
	layer, err := Listen(netip.MustParseAddrPort("127.0.0.1:0"), netip.AddrPort{}, nil, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTransport(layer, testutil.Logger(t))
	defer tr.Close()
	p, err := tr.AppendEntriesPipeline("peer", hraft.ServerAddress(layer.Addr().String()))
	if !errors.Is(err, hraft.ErrPipelineReplicationNotSupported) {
		if p != nil {
			p.Close()
		}
		t.Fatalf("AppendEntriesPipeline = %v, want ErrPipelineReplicationNotSupported", err)
	}
}
