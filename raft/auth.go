package raft

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/raft/pki"
)

// Peer is who is at the other end of an inbound connection to the Raft
// port, as the connection proves it: with mutual TLS, the identity its
// verified certificate carries (node id and role) and the certificate's IP
// addresses; on a plain TCP port (a loopback cluster, or cluster.insecure)
// nothing but the remote address. A field the sender writes (a Raft RPC
// header, a request body) never makes a Peer: it is checked against one.
type Peer struct {
	// Authenticated is true when the connection presented a certificate
	// of the cluster CA carrying a dsrd identity.
	Authenticated bool
	// Identity is the certificate's node id and role; zero when not
	// Authenticated.
	Identity pki.Identity
	// IPs are the certificate's IP addresses (SANs).
	IPs []netip.Addr
	// Remote is the connection's remote address.
	Remote netip.AddrPort
}

// String names the peer for logs: its identity and remote address.
func (p Peer) String() string {
	if !p.Authenticated {
		return "unauthenticated " + p.Remote.String()
	}
	return p.Identity.String() + " at " + p.Remote.String()
}

// ErrRefused is matched (errors.Is) by every refusal of the Raft port's
// gate: a connection or request whose proven identity may not do what it
// asks.
var ErrRefused = errors.New("refused")

// refusal is an error of the gate: ErrRefused with the reason counted in
// the transport's statistics.
type refusal struct {
	reason string // a RefusedReason* value
	msg    string
}

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrRefused }

// refuse returns a refusal for reason.
func refuse(reason, format string, args ...any) error {
	return &refusal{reason: reason, msg: "refused: " + fmt.Sprintf(format, args...)}
}

// reasonOf returns the counted reason of a refusal, or fallback.
func reasonOf(err error, fallback string) string {
	var r *refusal
	if errors.As(err, &r) {
		return r.reason
	}
	return fallback
}

// The reasons a connection or an RPC is refused, as counted in
// TransportStats.Refused and exported as the reason label of
// dsrd_raft_refused_total.
const (
	// RefusedConnLimit: the Raft port holds its maximum of connections.
	RefusedConnLimit = "conn_limit"
	// RefusedSourceLimit: the source address holds its maximum.
	RefusedSourceLimit = "source_limit"
	// RefusedHandshakeLimit: too many TLS handshakes in progress.
	RefusedHandshakeLimit = "handshake_limit"
	// RefusedHandshake: the TLS handshake failed or timed out (no
	// certificate, another CA, a plaintext client, a silent one).
	RefusedHandshake = "handshake"
	// RefusedIdentity: the certificate carries no valid dsrd identity.
	RefusedIdentity = "identity"
	// RefusedNotMember: the certificate's node is not in the Raft
	// configuration.
	RefusedNotMember = "not_member"
	// RefusedImpersonation: a Raft RPC header names another node or
	// address than the connection's certificate and membership.
	RefusedImpersonation = "impersonation"
	// RefusedRole: the identity's role may not make this request (a
	// witness writing the configuration).
	RefusedRole = "role"
	// RefusedStaleTransfer: a TimeoutNow not from the leader this node
	// follows.
	RefusedStaleTransfer = "stale_transfer"
	// RefusedMalformed: an RPC or entry that breaks the rules of the log
	// (a gap in its indices, an undecodable configuration, an unknown
	// type) or does not decode.
	RefusedMalformed = "malformed"
	// RefusedTooLarge: an RPC, entry or snapshot above its size limit.
	RefusedTooLarge = "too_large"
	// RefusedIdle: a connection that sent no first byte in time, or an
	// RPC that did not arrive whole in time. (A member's connection idle
	// between RPCs is closed without counting: routine.)
	RefusedIdle = "timeout"
)

// peerKey is the context key of the Peer of a peer protocol request.
type peerKey struct{}

// WithPeer returns ctx carrying p.
func WithPeer(ctx context.Context, p Peer) context.Context {
	return context.WithValue(ctx, peerKey{}, p)
}

// PeerFrom returns the Peer of a peer protocol request's context; ok is
// false when the request did not come through the Raft port (a handler
// called directly).
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// PeerConnContext is the http.Server ConnContext of the peer protocol: it
// puts the Peer of a connection from PeerListener into its requests'
// contexts (PeerFrom).
func PeerConnContext(ctx context.Context, c net.Conn) context.Context {
	if pc, ok := c.(*peerConn); ok {
		return WithPeer(ctx, pc.peer)
	}
	return ctx
}

// peerConn is a peer protocol connection with the Peer it was proven to be.
type peerConn struct {
	net.Conn
	peer Peer
}

// Authority is the Raft port's gate: it decides from a connection's proven
// Peer what it may do. A Node is one (Node.authority); a StreamLayer without
// one admits every handshaken connection and checks nothing (the layer of a
// program that runs no node, such as dsrd director release-vips, dials only).
type Authority interface {
	// Admit decides whether a connection that passed the handshake may
	// stay: for an authenticated peer, whether its node is a member.
	Admit(p Peer) error
	// CheckRPC decides whether a Raft RPC decoded from p's connection may
	// reach raft.
	CheckRPC(p Peer, cmd any) error
	// ExpectedID returns the node id of the member at address ("" when no
	// member has it), which a dialed peer's certificate must name.
	ExpectedID(address string) string
}

// RPC limits, enforced on every inbound RPC and by the leader on what it
// appends.
const (
	// MaxEntrySize bounds one log entry's data: a specification of
	// thousands of services is a few MiB of JSON; the peer protocol
	// accepts at most as much in a request body.
	MaxEntrySize = 16 << 20
	// maxAppendEntries is hashicorp/raft's MaxAppendEntries for dsrd: at
	// most this many entries in one AppendEntries.
	maxAppendEntries = 8
	// MaxRPCSize bounds one encoded RPC (an AppendEntries of
	// maxAppendEntries entries of MaxEntrySize, and their framing).
	MaxRPCSize = maxAppendEntries*MaxEntrySize + 1<<20
	// MaxSnapshotSize bounds the snapshot an InstallSnapshot streams.
	MaxSnapshotSize = 256 << 20
)

// checkHeader checks a Raft RPC's self-asserted sender against what the
// connection proves: an authenticated connection's header must name the
// certificate's node, and, once the node knows a configuration, a member
// at the address the configuration gives it. Without TLS the header is all
// there is, and it must still name a member at its address.
func checkHeader(p Peer, hdr hraft.RPCHeader, memberAddr func(id string) (addr string, ok, empty bool)) error {
	id, addr := string(hdr.ID), string(hdr.Addr)
	if id == "" {
		return refuse(RefusedMalformed, "raft rpc from %s names no sender", p)
	}
	if p.Authenticated && id != p.Identity.NodeID {
		return refuse(RefusedImpersonation, "raft rpc from %s claims to come from %q", p, id)
	}
	want, ok, empty := memberAddr(id)
	switch {
	case empty:
		// A node that knows no configuration yet (it waits to be added):
		// no member list to check against. The certificate's addresses
		// bind the claimed address when it carries any.
		if p.Authenticated && len(p.IPs) > 0 {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil || !containsAddr(p.IPs, ap.Addr()) {
				return refuse(RefusedImpersonation, "raft rpc from %s claims address %q, not one of its certificate's", p, addr)
			}
		}
		return nil
	case !ok:
		return refuse(RefusedNotMember, "raft rpc from %s: %q is not a member of the cluster", p, id)
	case addr != want:
		return refuse(RefusedImpersonation, "raft rpc from %s claims address %q; member %s is at %s", p, addr, id, want)
	}
	return nil
}

// containsAddr reports whether addrs holds a (IPv4-mapped forms unmapped).
func containsAddr(addrs []netip.Addr, a netip.Addr) bool {
	a = a.Unmap()
	for _, x := range addrs {
		if x.Unmap() == a {
			return true
		}
	}
	return false
}

// checkAppendEntries checks the entries of an AppendEntries against the
// rules of a Raft log that hashicorp/raft assumes and panics on when they
// are broken: indices contiguous from PrevLogEntry+1, terms not above the
// request's and never decreasing, known entry types, configurations that
// decode into valid members, and sizes within the limits.
func checkAppendEntries(req *hraft.AppendEntriesRequest) error {
	if len(req.Entries) > maxAppendEntries*8 {
		return refuse(RefusedTooLarge, "append entries with %d entries", len(req.Entries))
	}
	if req.PrevLogEntry > math.MaxUint64-uint64(len(req.Entries))-1 {
		return refuse(RefusedMalformed, "append entries: %d entries after index %d overflow the log's indices", len(req.Entries), req.PrevLogEntry)
	}
	next := req.PrevLogEntry + 1
	var lastTerm uint64
	for i, e := range req.Entries {
		if e == nil {
			return refuse(RefusedMalformed, "append entries: entry %d is empty", i)
		}
		if e.Index != next {
			return refuse(RefusedMalformed, "append entries: entry %d has index %d, want %d (no gaps after %d)", i, e.Index, next, req.PrevLogEntry)
		}
		next++
		if e.Term > req.Term || e.Term < lastTerm || e.Term == 0 {
			return refuse(RefusedMalformed, "append entries: entry %d (index %d) has term %d in a term %d request", i, e.Index, e.Term, req.Term)
		}
		lastTerm = e.Term
		if len(e.Data) > MaxEntrySize || len(e.Extensions) > 1<<10 {
			return refuse(RefusedTooLarge, "append entries: entry %d (index %d) is %d bytes, limit %d", i, e.Index, len(e.Data), MaxEntrySize)
		}
		switch e.Type {
		case hraft.LogCommand:
			if len(e.Data) == 0 {
				return refuse(RefusedMalformed, "append entries: command entry %d (index %d) is empty", i, e.Index)
			}
		case hraft.LogNoop, hraft.LogBarrier:
		case hraft.LogConfiguration:
			if _, err := decodeConfiguration(e.Data); err != nil {
				return refuse(RefusedMalformed, "append entries: configuration entry %d (index %d): %v", i, e.Index, err)
			}
		default:
			return refuse(RefusedMalformed, "append entries: entry %d (index %d) has type %s", i, e.Index, e.Type)
		}
	}
	return nil
}

// checkInstallSnapshot checks an InstallSnapshot's size and configuration.
func checkInstallSnapshot(req *hraft.InstallSnapshotRequest) error {
	if req.Size < 0 || req.Size > MaxSnapshotSize {
		return refuse(RefusedTooLarge, "install snapshot of %d bytes, limit %d", req.Size, MaxSnapshotSize)
	}
	if req.LastLogIndex == 0 || req.LastLogTerm == 0 || req.LastLogTerm > req.Term {
		return refuse(RefusedMalformed, "install snapshot at index %d term %d in a term %d request", req.LastLogIndex, req.LastLogTerm, req.Term)
	}
	if _, err := decodeConfiguration(req.Configuration); err != nil {
		return refuse(RefusedMalformed, "install snapshot: configuration: %v", err)
	}
	return nil
}

// decodeConfiguration decodes a Raft configuration as hashicorp/raft
// will, turning its panic on bad bytes into an error, and checks each
// server: a valid node id, an ip:port address, a known suffrage, no
// duplicates.
func decodeConfiguration(b []byte) (c hraft.Configuration, err error) {
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("does not decode: %v", r)
			}
		}()
		c = hraft.DecodeConfiguration(b)
	}()
	if err != nil {
		return hraft.Configuration{}, err
	}
	ids := make(map[hraft.ServerID]bool, len(c.Servers))
	for _, s := range c.Servers {
		if err := pki.CheckNodeID(string(s.ID)); err != nil {
			return c, fmt.Errorf("server id %q %w", s.ID, err)
		}
		if ids[s.ID] {
			return c, fmt.Errorf("server %q listed twice", s.ID)
		}
		ids[s.ID] = true
		if _, err := validMemberAddress(string(s.Address)); err != nil {
			return c, fmt.Errorf("server %s: %w", s.ID, err)
		}
		switch s.Suffrage {
		case hraft.Voter, hraft.Nonvoter, hraft.Staging:
		default:
			return c, fmt.Errorf("server %s has suffrage %d", s.ID, s.Suffrage)
		}
	}
	return c, nil
}

// validMemberAddress checks the Raft address of a member: an IP and a
// port a peer can be dialed at.
func validMemberAddress(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, fmt.Errorf("address %q: want ip:port", s)
	}
	a := ap.Addr()
	if a.IsUnspecified() || a.IsMulticast() || ap.Port() == 0 || a.Zone() != "" {
		return ap, fmt.Errorf("address %s is not one a member can be reached at", s)
	}
	return ap, nil
}

// CheckMember checks a member's id and Raft address by the rules Raft
// configurations are held to (a join request, a configuration entry).
func CheckMember(id, address string) error {
	if err := pki.CheckNodeID(id); err != nil {
		return fmt.Errorf("member id %q %w", id, err)
	}
	if _, err := validMemberAddress(address); err != nil {
		return fmt.Errorf("member %s: %w", id, err)
	}
	return nil
}
