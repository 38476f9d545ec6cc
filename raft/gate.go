package raft

import (
	"context"
	"fmt"
	"sync"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/dsrd/dsrd/raft/pki"
)

// Membership view timings.
const (
	// membersMaxAge: the node's view of the Raft configuration, which the
	// gate checks peers against, is read again when older than this, so
	// that a removed member is refused within about this long.
	membersMaxAge = 2 * time.Second
	// membersMissInterval bounds how often a peer the view does not know
	// makes the node read the configuration again (a newly added member
	// is admitted at once; a stranger knocking repeatedly costs one read
	// per interval).
	membersMissInterval = 250 * time.Millisecond
	// membersReadTimeout bounds one read of the configuration.
	membersReadTimeout = 2 * time.Second
)

// memberView is the node's cached view of the Raft configuration, which
// the gate checks every connection and RPC against. The first lookup reads
// the configuration itself (bounded by membersReadTimeout); later ones use
// the view and, when it is older than membersMaxAge, start one background
// read at a time. A miss waits for a read (at most one every
// membersMissInterval; a stranger knocking more often is refused without
// one) without holding the lock. So a known member's check never waits
// on raft's main loop once the view exists, and a member just added is
// admitted at once.
type memberView struct {
	read func(ctx context.Context) (map[string]string, error)

	mu       sync.Mutex
	addrs    map[string]string // member id -> raft address
	byAddr   map[string]string // raft address -> member id
	at       time.Time         // when addrs was read; zero: never
	tried    time.Time         // the last read started
	missed   time.Time         // the last read a miss started
	inFlight bool              // a background read runs
	readDone chan struct{}     // closed when the running read ends
}

// lookup returns the address of member id; empty is true when the node
// knows no configuration (yet). A miss waits for a read of the
// configuration (one at a time, at most every membersMissInterval; the
// lock is not held while waiting, so members' checks go on), so that a
// member just added is admitted at once.
func (v *memberView) lookup(id string) (addr string, ok, empty bool) {
	v.mu.Lock()
	v.ensureLocked()
	addr, ok = v.addrs[id]
	var wait <-chan struct{}
	switch {
	case !ok:
		wait = v.refreshLocked(true)
	case time.Since(v.at) > membersMaxAge:
		v.refreshLocked(false)
	}
	if wait != nil {
		v.mu.Unlock()
		<-wait
		v.mu.Lock()
		addr, ok = v.addrs[id]
	}
	empty = len(v.addrs) == 0
	v.mu.Unlock()
	return addr, ok, empty
}

// idAt returns the member whose raft address is address, "" when none.
func (v *memberView) idAt(address string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ensureLocked()
	id, ok := v.byAddr[address]
	if !ok || time.Since(v.at) > membersMaxAge {
		v.refreshLocked(!ok)
	}
	return id
}

// ensureLocked reads the configuration synchronously while the view has
// never been read, at most every membersMissInterval (raft may not run
// yet). v.mu is held.
func (v *memberView) ensureLocked() {
	if !v.at.IsZero() || time.Since(v.tried) < membersMissInterval {
		return
	}
	v.tried = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), membersReadTimeout)
	defer cancel()
	if addrs, err := v.read(ctx); err == nil {
		v.setLocked(addrs)
	}
}

// refreshLocked starts a background read unless one runs or, for a miss,
// one started less than membersMissInterval ago; it returns the channel
// closed when the running read ends, nil when none runs. v.mu is held.
func (v *memberView) refreshLocked(miss bool) <-chan struct{} {
	if v.inFlight {
		return v.readDone
	}
	if miss {
		if time.Since(v.missed) < membersMissInterval {
			return nil
		}
		v.missed = time.Now()
	}
	v.inFlight, v.tried = true, time.Now()
	done := make(chan struct{})
	v.readDone = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), membersReadTimeout)
		defer cancel()
		addrs, err := v.read(ctx)
		v.mu.Lock()
		defer v.mu.Unlock()
		v.inFlight = false
		if err == nil {
			v.setLocked(addrs)
		}
	}()
	return done
}

// setLocked installs a configuration read. v.mu is held.
func (v *memberView) setLocked(addrs map[string]string) {
	v.addrs, v.at = addrs, time.Now()
	v.byAddr = make(map[string]string, len(addrs))
	for id, a := range addrs {
		v.byAddr[a] = id
	}
}

// readMembers reads the latest Raft configuration (committed or not: a
// server being added must be reachable at once) as id -> address.
func (n *Node) readMembers(ctx context.Context) (map[string]string, error) {
	members, err := n.Members(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(members))
	for _, m := range members {
		out[m.ID] = m.Address
	}
	return out, nil
}

// nodeAuthority is a Node's Authority: it admits the members of the Raft
// configuration, by the identity of their certificates.
type nodeAuthority struct {
	n *Node
}

// Admit implements Authority. Without TLS (a loopback or insecure
// cluster) there is no identity to admit by: every connection stays and
// its RPCs are checked by their headers. With TLS, a node that knows a
// configuration admits its members only; a node that knows none yet (it
// waits to be added, or has not started raft) admits any identity of the
// cluster CA: it holds no state to protect, and the CA is the cluster's
// own.
func (a nodeAuthority) Admit(p Peer) error {
	if !p.Authenticated {
		if a.n.tlsOn() {
			return refuse(RefusedIdentity, "%s: not authenticated", p)
		}
		return nil
	}
	_, ok, empty := a.n.members.lookup(p.Identity.NodeID)
	if ok || empty {
		return nil
	}
	return refuse(RefusedNotMember, "%s is not a member of the cluster", p)
}

// CheckRPC implements Authority: the header must be the connection's
// (checkHeader), and a TimeoutNow must come from the leader this node
// follows.
func (a nodeAuthority) CheckRPC(p Peer, cmd any) error {
	wh, ok := cmd.(hraft.WithRPCHeader)
	if !ok {
		return refuse(RefusedMalformed, "raft rpc %T from %s has no header", cmd, p)
	}
	hdr := wh.GetRPCHeader()
	if err := checkHeader(p, hdr, a.n.members.lookup); err != nil {
		return err
	}
	if _, ok := cmd.(*hraft.TimeoutNowRequest); ok {
		from := hraft.ServerID(hdr.ID)
		if leader := a.n.leaderID(); leader == "" || from != leader {
			a.n.log.Warn("refused a leadership transfer request that does not come from the current leader",
				"from", p.String(), "leader", string(leader))
			return &refusal{reason: RefusedStaleTransfer, msg: ErrStaleTimeoutNow.Error()}
		}
	}
	return nil
}

// ExpectedID implements Authority.
func (a nodeAuthority) ExpectedID(address string) string { return a.n.members.idAt(address) }

// AuthorizePeer decides whether a peer protocol request from p may do what
// it asks: read (status) when write is false, change the cluster (its
// configuration, admin states, membership) when write is true. Without
// TLS every peer may (the port obeys anyone who reaches it: a loopback
// cluster, or cluster.insecure). With TLS, p must be a member of the
// cluster (or this node must know none yet), and only a director may
// write: a witness votes and reads, it never changes the cluster.
func (n *Node) AuthorizePeer(p Peer, write bool) error {
	if !p.Authenticated {
		if n.tlsOn() {
			return refuse(RefusedIdentity, "%s: not authenticated", p)
		}
		return nil
	}
	if _, ok, empty := n.members.lookup(p.Identity.NodeID); !ok && !empty {
		return refuse(RefusedNotMember, "%s is not a member of the cluster", p)
	}
	if write && p.Identity.Role != pki.RoleDirector {
		return refuse(RefusedRole, "%s may not change the cluster: only a director may", p)
	}
	return nil
}

// tlsOn reports whether the node's transport runs mutual TLS.
func (n *Node) tlsOn() bool {
	l := n.streamLayer()
	return l != nil && l.tls != nil
}

// TransportStats returns the Raft port's connection count and refusals;
// zero when the node has no TCP transport.
func (n *Node) TransportStats() TransportStats {
	l := n.streamLayer()
	if l == nil {
		return TransportStats{}
	}
	return l.Stats()
}

// checkOwnIdentity checks that the node's own certificate names it, with
// the role it runs as.
func checkOwnIdentity(t *PeerTLS, nodeID string, role pki.Role) error {
	id := t.Identity()
	if id.NodeID != nodeID {
		return fmt.Errorf("cluster tls certificate is for node %q, this node is %q: issue one with dsrd tls cert issue --id %s", id.NodeID, nodeID, nodeID)
	}
	if role != "" && id.Role != role {
		return fmt.Errorf("cluster tls certificate of %s has role %s, this node runs as %s", id.NodeID, id.Role, role)
	}
	return nil
}

// CertInfo describes the node's own certificate: its identity and end of
// validity; ok is false without TLS.
func (n *Node) CertInfo() (id pki.Identity, notAfter time.Time, ok bool) {
	l := n.streamLayer()
	if l == nil || l.tls == nil {
		return pki.Identity{}, time.Time{}, false
	}
	return l.tls.Identity(), l.tls.Certificate().NotAfter, true
}

// certCheckInterval is how often a node looks at its certificate's expiry.
const certCheckInterval = 24 * time.Hour

// watchCert warns when the node's certificate is within
// pki.ExpiryWarningWindow of its end (or past it), at start and then daily.
// It ends when the node begins to close.
func (n *Node) watchCert(t *PeerTLS) {
	check := func() {
		left := time.Until(t.Certificate().NotAfter)
		switch {
		case left <= 0:
			n.log.Error("cluster tls certificate has expired: peers refuse this node; issue a new one (dsrd tls cert issue) and restart",
				"not_after", t.Certificate().NotAfter)
		case left < pki.ExpiryWarningWindow:
			n.log.Warn("cluster tls certificate expires soon: issue a new one (dsrd tls cert issue) and restart",
				"not_after", t.Certificate().NotAfter, "days_left", int(left.Hours()/24))
		}
	}
	check()
	tick := time.NewTicker(certCheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			check()
		case <-n.stopping:
			return
		}
	}
}
