package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/vrrp"
)

// A leader killed under systemd (SIGKILL, a crash, the OOM killer) runs
// `dsrd director release-vips` as its unit's ExecStopPost. That command,
// once the VIPs are off the dead director's interface, tells the other
// directors the leader is gone (HintLeaderGone); one of them checks it is
// true and stands for election at once (Director.LeaderGone). The cluster
// then fails over in an election's round trip instead of a heartbeat
// timeout or two. Anything short of that (a host that lost power, a cut
// cable) still fails over by Raft's timers.

// Bounds of the leader-gone hint.
const (
	// leaderProbeTimeout bounds the check that the leader's Raft port
	// refuses connections.
	leaderProbeTimeout = 300 * time.Millisecond
	// hintTimeout bounds the whole hint in release-vips, which systemd
	// waits for before it restarts the daemon.
	hintTimeout = 2 * time.Second
)

// errLeaderAlive is LeaderGone's answer when the leader still accepts
// connections on its Raft port: nothing is done.
var errLeaderAlive = errors.New("the leader's raft port still accepts connections: not standing for election")

// LeaderGone implements api.LeaderGoneHandler. It stands for election at
// once when leader is the leader this director follows, its Raft port
// refuses connections (the process is gone, the host is up: the case
// release-vips reports) and this director's VIP interface is up; otherwise
// it refuses and Raft's timers decide as usual.
func (d *Director) LeaderGone(ctx context.Context, leader string) error {
	if d.node == nil {
		return fmt.Errorf("leader gone: %w", raft.ErrNotStarted)
	}
	if got := d.node.LeaderID(); got != leader {
		return fmt.Errorf("%w: leader gone: this director follows %q, not %q", api.ErrInvalid, got, leader)
	}
	if d.machine.State() == vrrp.StateFault {
		return fmt.Errorf("leader gone: this director's VIP interface is down: not standing for election")
	}
	if err := leaderRefuses(ctx, d.node.LeaderAddress()); err != nil {
		return fmt.Errorf("leader gone: %w", err)
	}
	d.log.Warn("the leader's daemon is gone (its release-vips said so, its raft port refuses connections): standing for election at once", "leader", leader)
	return d.node.ElectNow(ctx, leader)
}

// leaderRefuses returns nil when a TCP connection to address is refused
// (nothing listens: the daemon is gone), errLeaderAlive when one is
// accepted, and the dial's error otherwise (no answer says nothing).
func leaderRefuses(ctx context.Context, address string) error {
	if address == "" {
		return errors.New("no leader address known")
	}
	d := net.Dialer{Timeout: leaderProbeTimeout}
	c, err := d.DialContext(ctx, "tcp", address)
	if err == nil {
		c.Close()
		return errLeaderAlive
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("probe the leader's raft port %s: %w", address, err)
}

// HintLeaderGone tells the other directors of cfg's cluster, one after
// the other in the peers' order, that this director (which led, and whose
// daemon has died) is gone, until one takes it; it returns that one's ID,
// "" when none did (the witness never does). It is what release-vips runs
// after removing VIPs this director held.
func HintLeaderGone(ctx context.Context, cfg *config.Director, log *slog.Logger) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, hintTimeout)
	defer cancel()
	peerTLS, err := raft.LoadPeerTLS(clusterspec.TLS(cfg.Cluster.TLS))
	if err != nil {
		return "", err
	}
	// Each peer must prove it is the member cluster.peers names at its
	// address.
	ids := make(map[string]string, len(cfg.Cluster.Peers))
	for _, p := range cfg.Cluster.Peers {
		ids[p.Address.String()] = p.ID
	}
	c := api.PeerClient{Dial: func(ctx context.Context, address string) (net.Conn, error) {
		return raft.DialPeer(ctx, address, ids[address], peerTLS)
	}}
	var errs []error
	for _, p := range cfg.Cluster.Peers {
		if p.ID == cfg.Node.ID {
			continue
		}
		err := c.LeaderGone(ctx, p.Address.String(), cfg.Node.ID)
		if err == nil {
			log.Info("told a director the leader is gone: it stands for election at once", "director", p.ID)
			return p.ID, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.ID, err))
	}
	return "", errors.Join(errs...)
}
