package raft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	hraft "github.com/hashicorp/raft"
)

// The RPC types of hashicorp/raft's network protocol (net_transport.go in
// v1.7.3): the first byte of every request on a raft connection.
const (
	rpcAppendEntries uint8 = iota
	rpcRequestVote
	rpcInstallSnapshot
	rpcTimeoutNow
	rpcRequestPreVote
)

// Transport is dsrd's Raft transport over a StreamLayer. Outbound, it is
// hashicorp/raft's NetworkTransport (its pooled connections, its wire
// format). Inbound, dsrd serves the same wire format itself instead of
// NetworkTransport's handler, because that handler cannot say which
// connection an RPC came from, and every RPC must be checked against the
// identity its connection proved:
//
//   - the header's sender must be the certificate's node, and a member at
//     the address the configuration gives it (a node may not speak for
//     another, nor a stranger at all);
//   - a TimeoutNow must come from the leader this node follows;
//   - AppendEntries must keep the log's rules (no index gaps, configuration
//     entries that decode), which hashicorp/raft assumes and panics on;
//   - an RPC must arrive whole within the RPC timeout once it has started,
//     be within MaxRPCSize (MaxSnapshotSize for a snapshot's data), and a
//     connection may stay idle between RPCs for rpcIdleTimeout only.
//
// A refused RPC is answered with the refusal (the sender logs why) and,
// but for a stale TimeoutNow, its connection is closed. The Authority that
// decides is the node's (StreamLayer.SetAuthority).
//
// Goroutines: one per inbound raft connection (the StreamLayer's), which
// ends when the connection fails, times out or is refused, or when the
// transport is closed.
type Transport struct {
	*hraft.NetworkTransport
	layer *StreamLayer
	log   *slog.Logger

	consumer chan hraft.RPC
	shutdown chan struct{}
	once     sync.Once

	hbMu sync.Mutex
	hbFn func(hraft.RPC)
}

// Layer returns the transport's stream layer.
func (t *Transport) Layer() *StreamLayer { return t.layer }

// NewTransport returns the transport over layer and registers it as the
// layer's raft server. The transport owns layer: closing it closes the
// layer.
func NewTransport(layer *StreamLayer, logger *slog.Logger) *Transport {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	nt := hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
		// 1 turns pipelined replication off. hashicorp/raft v1.7.3's
		// pipeline can deadlock after a follower answers Success=false
		// (routine after a leader change): the sender parks on the
		// pipeline's in-progress channel while its decoder parks on the
		// done channel nobody reads, so the follower gets heartbeats but
		// never another entry, and Raft's Shutdown waits for the stuck
		// replication goroutine forever (seen in internal/director's
		// cluster test: a director whose Run never returned; also
		// grafana/pyroscope#5518, hashicorp/raft#612). dsrd replicates a
		// few small entries: synchronous AppendEntries cost nothing here.
		MaxRPCsInFlight: 1,
		Logger:          newHCLogger(logger, "raft-net"),
	})
	t := &Transport{
		NetworkTransport: nt,
		layer:            layer,
		log:              logger.With("component", "raft-server"),
		consumer:         make(chan hraft.RPC),
		shutdown:         make(chan struct{}),
	}
	layer.rpcServer.Store(t)
	return t
}

// Consumer implements hraft.Transport: the RPCs of inbound connections
// that passed the checks.
func (t *Transport) Consumer() <-chan hraft.RPC { return t.consumer }

// SetHeartbeatHandler implements hraft.Transport: heartbeats go to fn
// without waiting for raft's main loop, as NetworkTransport does.
func (t *Transport) SetHeartbeatHandler(fn func(hraft.RPC)) {
	t.hbMu.Lock()
	t.hbFn = fn
	t.hbMu.Unlock()
}

// Close implements hraft.WithClose: it stops serving inbound RPCs and
// closes the NetworkTransport and the layer. Safe to call more than once.
func (t *Transport) Close() error {
	t.once.Do(func() { close(t.shutdown) })
	return t.NetworkTransport.Close()
}

// inject hands rpc to raft as if it had arrived from the network, without
// any check: for requests this node makes of itself (ElectNow).
func (t *Transport) inject(ctx context.Context, rpc hraft.RPC) error {
	select {
	case t.consumer <- rpc:
		return nil
	case <-t.shutdown:
		return hraft.ErrTransportShutdown
	case <-ctx.Done():
		return ctx.Err()
	}
}

// budgetReader reads from r at most n bytes until refilled: the bound of
// one RPC, whatever the decoder would read.
type budgetReader struct {
	r io.Reader
	n int64
}

// errTooLarge is the read error past an RPC's size limit.
var errTooLarge = errors.New("rpc exceeds its size limit")

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	return n, err
}

// serveConn serves the raft RPCs of one inbound connection from p; first
// is the connection's first byte, already read. It closes conn.
func (t *Transport) serveConn(conn net.Conn, p Peer, first byte) {
	defer conn.Close()
	lim := t.layer.lim
	budget := &budgetReader{r: conn}
	r := bufio.NewReaderSize(budget, 64<<10)
	w := bufio.NewWriter(conn)
	dec := codec.NewDecoder(r, &codec.MsgpackHandle{})
	// The encoding NetworkTransport reads (its msgpackUseNewTimeFormat
	// false: times as before go-msgpack v2).
	enc := codec.NewEncoder(w, &codec.MsgpackHandle{BasicHandle: codec.BasicHandle{TimeNotBuiltin: true}})
	typ, haveType := first, true
	for {
		if !haveType {
			budget.n = 1
			if err := conn.SetReadDeadline(time.Now().Add(lim.idle)); err != nil {
				return
			}
			b, err := r.ReadByte()
			if err != nil {
				// A connection idle past its deadline between RPCs is
				// routine (raft pools connections it may not use for a
				// while; the dialing side redials): closed, not refused.
				if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
					t.log.Debug("idle raft connection closed", "peer", p.String(), "idle", lim.idle)
				}
				return
			}
			typ = b
		}
		haveType = false
		if err := conn.SetReadDeadline(time.Now().Add(lim.rpc)); err != nil {
			return
		}
		budget.n = lim.maxRPC + int64(r.Buffered())
		if !t.serveRPC(conn, p, typ, r, budget, dec, enc, w) {
			return
		}
	}
}

// closing reports whether the transport is shutting down.
func (t *Transport) closing() bool {
	select {
	case <-t.shutdown:
		return true
	default:
		return false
	}
}

// serveRPC decodes, checks, delivers and answers one RPC of type typ; false
// when the connection must be closed.
func (t *Transport) serveRPC(conn net.Conn, p Peer, typ byte, r *bufio.Reader, budget *budgetReader,
	dec *codec.Decoder, enc *codec.Encoder, w *bufio.Writer) bool {
	cmd, err := decodeRPC(typ, dec)
	if err != nil {
		reason := RefusedMalformed
		// The decoder does not always wrap its reader's error: an
		// exhausted budget says it.
		if errors.Is(err, errTooLarge) || budget.n <= 0 {
			reason = RefusedTooLarge
		} else if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			reason = RefusedIdle
		}
		if !t.closing() {
			t.layer.count(reason, conn.RemoteAddr(), fmt.Errorf("raft rpc type %d from %s: %w", typ, p, err))
		}
		return false
	}
	if err := t.check(p, cmd); err != nil {
		t.layer.count(reasonOf(err, RefusedMalformed), conn.RemoteAddr(), err)
		_ = t.answer(conn, enc, w, hraft.RPCResponse{Response: emptyResponse(cmd), Error: err})
		return reasonOf(err, "") == RefusedStaleTransfer
	}

	respCh := make(chan hraft.RPCResponse, 1)
	rpc := hraft.RPC{Command: cmd, RespChan: respCh}
	if req, ok := cmd.(*hraft.InstallSnapshotRequest); ok {
		// The snapshot's data follows the request; its deadline grows
		// with its size as the sender's does (hashicorp/raft: the timeout
		// per 256 KiB).
		budget.n = req.Size + int64(r.Buffered())
		scale := max(time.Duration(req.Size/(256<<10)), 1)
		if err := conn.SetReadDeadline(time.Now().Add(t.layer.lim.rpc * scale)); err != nil {
			return false
		}
		rpc.Reader = io.LimitReader(r, req.Size)
	}

	delivered := false
	if isHeartbeat(cmd) {
		t.hbMu.Lock()
		fn := t.hbFn
		t.hbMu.Unlock()
		if fn != nil {
			fn(rpc)
			delivered = true
		}
	}
	if !delivered {
		select {
		case t.consumer <- rpc:
		case <-t.shutdown:
			return false
		}
	}
	select {
	case resp := <-respCh:
		return t.answer(conn, enc, w, resp) == nil
	case <-t.shutdown:
		return false
	}
}

// check applies the rules of the log and the node's Authority to an RPC.
func (t *Transport) check(p Peer, cmd any) error {
	switch c := cmd.(type) {
	case *hraft.AppendEntriesRequest:
		if err := checkAppendEntries(c); err != nil {
			return err
		}
	case *hraft.InstallSnapshotRequest:
		if err := checkInstallSnapshot(c); err != nil {
			return err
		}
	}
	if g := t.layer.gate(); g != nil {
		return g.CheckRPC(p, cmd)
	}
	return nil
}

// answer writes an RPC's response as NetworkTransport reads it: the error
// string, then the response, within the RPC timeout.
func (t *Transport) answer(conn net.Conn, enc *codec.Encoder, w *bufio.Writer, resp hraft.RPCResponse) error {
	if err := conn.SetWriteDeadline(time.Now().Add(t.layer.lim.rpc)); err != nil {
		return err
	}
	msg := ""
	if resp.Error != nil {
		msg = resp.Error.Error()
	}
	if err := enc.Encode(msg); err != nil {
		return err
	}
	if err := enc.Encode(resp.Response); err != nil {
		return err
	}
	return w.Flush()
}

// decodeRPC decodes the request of RPC type typ.
func decodeRPC(typ byte, dec *codec.Decoder) (any, error) {
	var cmd any
	switch typ {
	case rpcAppendEntries:
		cmd = &hraft.AppendEntriesRequest{}
	case rpcRequestVote:
		cmd = &hraft.RequestVoteRequest{}
	case rpcRequestPreVote:
		cmd = &hraft.RequestPreVoteRequest{}
	case rpcInstallSnapshot:
		cmd = &hraft.InstallSnapshotRequest{}
	case rpcTimeoutNow:
		cmd = &hraft.TimeoutNowRequest{}
	default:
		return nil, fmt.Errorf("unknown rpc type %d", typ)
	}
	if err := safeDecode(dec, cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// safeDecode decodes v, turning a decoder panic on hostile bytes into an
// error.
func safeDecode(dec *codec.Decoder, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decode: %v", r)
		}
	}()
	return dec.Decode(v)
}

// isHeartbeat tells a heartbeat as NetworkTransport does: an
// AppendEntries with a term and a leader, and nothing else.
func isHeartbeat(cmd any) bool {
	req, ok := cmd.(*hraft.AppendEntriesRequest)
	if !ok {
		return false
	}
	leader := req.RPCHeader.Addr
	if len(leader) == 0 {
		leader = req.Leader //nolint:staticcheck // what older senders fill in
	}
	return req.Term != 0 && leader != nil && req.PrevLogEntry == 0 && req.PrevLogTerm == 0 &&
		len(req.Entries) == 0 && req.LeaderCommitIndex == 0
}

// emptyResponse returns a zero response of the type that answers cmd:
// hashicorp/raft reads the response's type even when the answer is an
// error.
func emptyResponse(cmd any) any {
	switch cmd.(type) {
	case *hraft.AppendEntriesRequest:
		return &hraft.AppendEntriesResponse{}
	case *hraft.RequestVoteRequest:
		return &hraft.RequestVoteResponse{}
	case *hraft.RequestPreVoteRequest:
		return &hraft.RequestPreVoteResponse{}
	case *hraft.InstallSnapshotRequest:
		return &hraft.InstallSnapshotResponse{}
	case *hraft.TimeoutNowRequest:
		return &hraft.TimeoutNowResponse{}
	}
	return nil
}

var (
	_ hraft.Transport   = (*Transport)(nil)
	_ hraft.WithClose   = (*Transport)(nil)
	_ hraft.WithPreVote = (*Transport)(nil)
)
