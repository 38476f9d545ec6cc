package director

import (
	"context"
	"errors"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/vrrp"
)

// transferAskTimeout bounds the wait for the other members' state before a
// leadership transfer: a member whose host is down may not answer at all,
// and the witness hands leadership over during a failover.
const transferAskTimeout = 300 * time.Millisecond

// errNoDirector is returned by a planned failover when no other director
// can take the VIPs.
var errNoDirector = errors.New("no other director is ready to take the VIPs (all down, unreachable as directors, or in FAULT): see dsrd status")

// statusAsker asks the member at address for its own status (the peer
// protocol's GET /peer/v1/status: api.PeerClient.Status).
type statusAsker func(ctx context.Context, address string) (api.Status, error)

// transferPlan sorts the voters a leadership transfer may go to.
//
// hashicorp/raft, given no target, picks the most up-to-date follower,
// which may be the witness (it hands leadership on again: a second
// election, and maybe back to the node that wanted to let go) or a director
// whose VIP interface is down (it gives leadership up again at once). dsrd
// asks first.
type transferPlan struct {
	// Healthy are directors whose VIP interface is up (VRRP BACKUP or
	// MASTER): they can take the VIPs at once.
	Healthy []string
	// Unknown are voters that did not answer in time, or answered as a
	// director with no VRRP state yet.
	Unknown []string
	// Fault are directors in FAULT: they would give leadership up again.
	Fault []string
}

// planTransfer asks every voter of members but leader (the node handing
// leadership over) for its role and VRRP state, each within
// transferAskTimeout, and sorts them. Witnesses are left out: they cannot
// hold VIPs. It returns as soon as a healthy director answered (the first
// target is then known; voters that have not answered yet count as
// unknown), else when every voter answered or the time is up. Each tier
// keeps the members' order.
func planTransfer(ctx context.Context, members []raft.Member, leader string, ask statusAsker) transferPlan {
	type answer struct {
		i  int
		st api.Status
		ok bool
	}
	ctx, cancel := context.WithTimeout(ctx, transferAskTimeout)
	defer cancel() // the askers still running end with it
	var voters []raft.Member
	for _, m := range members {
		if m.ID != leader && m.Suffrage == raft.SuffrageVoter {
			voters = append(voters, m)
		}
	}
	answers := make(chan answer, len(voters)) // never blocks an asker
	for i, m := range voters {
		go func() {
			st, err := ask(ctx, m.Address)
			answers <- answer{i: i, st: st, ok: err == nil && st.Node == m.ID}
		}()
	}
	const (
		pending = iota
		unknown
		healthy
		fault
		witness
	)
	tier := make([]int, len(voters))
	sawHealthy := false
wait:
	for range voters {
		select {
		case a := <-answers:
			tier[a.i] = unknown
			if !a.ok {
				break
			}
			switch {
			case a.st.Role == "witness":
				tier[a.i] = witness
			case a.st.VRRPState == vrrp.StateBackup.String() || a.st.VRRPState == vrrp.StateMaster.String():
				tier[a.i] = healthy
				sawHealthy = true
			case a.st.VRRPState == vrrp.StateFault.String():
				tier[a.i] = fault
			}
			if sawHealthy {
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}
	var p transferPlan
	for i, m := range voters {
		switch tier[i] {
		case healthy:
			p.Healthy = append(p.Healthy, m.ID)
		case unknown, pending:
			p.Unknown = append(p.Unknown, m.ID)
		case fault:
			p.Fault = append(p.Fault, m.ID)
		}
	}
	return p
}

// peerStatus is the statusAsker of a node's peer client.
func peerStatus(c *api.PeerClient) statusAsker {
	return func(ctx context.Context, address string) (api.Status, error) { return c.Status(ctx, address) }
}

// transferTargets returns the directors a leader handing leadership over
// should try, best first, for a planned failover or a fault: healthy
// directors, then voters of unknown state; never a director in FAULT nor
// a witness. Empty when no member list can be read or no voter qualifies.
func transferTargets(ctx context.Context, n *raft.Node, leader string, ask statusAsker) []string {
	members, err := n.Members(ctx)
	if err != nil {
		return nil
	}
	p := planTransfer(ctx, members, leader, ask)
	return append(p.Healthy, p.Unknown...)
}
