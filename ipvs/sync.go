package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// SyncState is the role of an IPVS connection synchronisation daemon: the
// master sends the connections of its table to a multicast group, the
// backup receives them into its table. A namespace runs at most one of
// each, both at once if asked.
type SyncState uint8

// The sync daemon states, with the kernel's numbers (IP_VS_STATE_*).
const (
	SyncMaster SyncState = 1
	SyncBackup SyncState = 2
)

// String returns "master" or "backup".
func (s SyncState) String() string {
	switch s {
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("sync-state-%d", uint8(s))
}

// The kernel's defaults for a sync daemon's fields left zero
// (net/netfilter/ipvs/ip_vs_sync.c, start_sync_thread).
var (
	// DefaultSyncGroup is the IPv4 multicast group 224.0.0.81.
	DefaultSyncGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})
)

// The kernel's defaults and bounds of a sync daemon's numbers.
const (
	// DefaultSyncPort is the UDP port of the multicast group.
	DefaultSyncPort = 8848
	// DefaultSyncTTL is the multicast TTL.
	DefaultSyncTTL = 1
	// MinSyncMaxLenBackup is the smallest message size a backup takes;
	// a master takes any from 1.
	MinSyncMaxLenBackup = 1024
	// syncHeaderLen4 and syncHeaderLen6 are the IP and UDP headers of a
	// sync message: MaxLen is at most 65535 minus these.
	syncHeaderLen4 = 20 + 8
	syncHeaderLen6 = 40 + 8
)

// SyncDaemon is one IPVS connection synchronisation daemon, as started
// (IPVS_CMD_NEW_DAEMON) and as the kernel reports it (IPVS_CMD_GET_DAEMON).
// A zero MaxLen, Group, Port or TTL asks for the kernel's default; the
// kernel reports the value it uses.
type SyncDaemon struct {
	// State says whether this is the master or the backup daemon.
	State SyncState
	// Interface is the network interface whose multicast the daemon uses.
	Interface string
	// SyncID is the id the master puts in its messages and the backup
	// accepts (0 on a backup accepts every id).
	SyncID uint8
	// MaxLen is the largest sync message (UDP payload) in bytes; 0 lets
	// the kernel choose from the interface's MTU (the master 1500, the
	// backup max(MTU, 1500), minus the IP and UDP headers).
	MaxLen uint16
	// Group is the multicast group (IPv4 or IPv6); invalid: 224.0.0.81.
	Group netip.Addr
	// Port is the UDP port; 0: 8848.
	Port uint16
	// TTL is the multicast TTL (hop limit); 0: 1.
	TTL uint8
}

// String prints the daemon like ipvsadm -L --daemon does, in one line.
func (d SyncDaemon) String() string {
	g := "default"
	if d.Group.IsValid() {
		g = d.Group.String()
	}
	return fmt.Sprintf("%s sync daemon (mcast=%s, syncid=%d, maxlen=%d, group=%s, port=%d, ttl=%d)",
		d.State, d.Interface, d.SyncID, d.MaxLen, g, d.Port, d.TTL)
}

// headerLen is the IP and UDP header size of the daemon's messages.
func (d SyncDaemon) headerLen() int {
	if d.Group.Is6() && !d.Group.Is4In6() {
		return syncHeaderLen6
	}
	return syncHeaderLen4
}

// MaxSyncMaxLen returns the largest MaxLen for a group (65535 minus the
// IP and UDP headers of its family).
func MaxSyncMaxLen(group netip.Addr) int {
	return 65535 - SyncDaemon{Group: group}.headerLen()
}

// Validate checks what the kernel would refuse or silently change, so that
// a started daemon reads back as asked: the state, the interface name (as
// Linux's dev_valid_name), the group (multicast), and MaxLen within the
// range the kernel clamps it to.
func (d SyncDaemon) Validate() error {
	if d.State != SyncMaster && d.State != SyncBackup {
		return fmt.Errorf("sync daemon state %d is neither master (1) nor backup (2)", uint8(d.State))
	}
	if err := checkIfName(d.Interface); err != nil {
		return fmt.Errorf("sync daemon interface: %w", err)
	}
	if d.Group.IsValid() {
		if d.Group.Zone() != "" || d.Group.Is4In6() || !d.Group.IsMulticast() {
			return fmt.Errorf("sync daemon group %s is not a multicast address", d.Group)
		}
	}
	if d.MaxLen != 0 {
		lo := 1
		if d.State == SyncBackup {
			lo = MinSyncMaxLenBackup
		}
		if hi := MaxSyncMaxLen(d.Group); int(d.MaxLen) < lo || int(d.MaxLen) > hi {
			return fmt.Errorf("sync daemon maxlen %d is out of %d-%d", d.MaxLen, lo, hi)
		}
	}
	return nil
}

// checkIfName checks a network interface name as Linux's dev_valid_name.
func checkIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r\x00"):
		return fmt.Errorf("interface name %q contains '/', ':', NUL or white space", name)
	}
	return nil
}

// WithDefaults returns d with the kernel's defaults for its zero Group,
// Port and TTL (MaxLen depends on the interface and stays as it is).
func (d SyncDaemon) WithDefaults() SyncDaemon {
	if !d.Group.IsValid() {
		d.Group = DefaultSyncGroup
	}
	if d.Port == 0 {
		d.Port = DefaultSyncPort
	}
	if d.TTL == 0 {
		d.TTL = DefaultSyncTTL
	}
	return d
}

// Satisfies reports whether the running daemon got (as the kernel reports
// it) is what d asks for: every field equal once d's defaults are filled
// in, MaxLen only when d sets it.
func (d SyncDaemon) Satisfies(got SyncDaemon) bool {
	want := d.WithDefaults()
	if want.MaxLen == 0 {
		want.MaxLen = got.MaxLen
	}
	return want == got
}

// SyncDaemonKernel starts, stops and lists the IPVS sync daemons of one
// network namespace. Netlink and Fake implement it.
type SyncDaemonKernel interface {
	// SyncDaemons returns the running daemons, the master first.
	SyncDaemons(ctx context.Context) ([]SyncDaemon, error)
	// StartSyncDaemon starts d; syscall.EEXIST when one of its state runs.
	StartSyncDaemon(ctx context.Context, d SyncDaemon) error
	// StopSyncDaemon stops the daemon of state s; syscall.ESRCH when none
	// runs.
	StopSyncDaemon(ctx context.Context, s SyncState) error
}

// The call names of the sync daemon calls, used in errors.
const (
	callGetDaemons = "get sync daemons"
	callNewDaemon  = "start sync daemon"
	callDelDaemon  = "stop sync daemon"
)

// SyncAction is what ReconcileSync did to the daemon of one state.
type SyncAction string

// The outcomes of ReconcileSync for one state.
const (
	SyncKept      SyncAction = "kept"      // running as wanted, or not running and not wanted
	SyncStarted   SyncAction = "started"   // was not running
	SyncRestarted SyncAction = "restarted" // ran with other settings: stopped and started
	SyncStopped   SyncAction = "stopped"   // ran and is not wanted
)

// SyncResult is the outcome of ReconcileSync for one state.
type SyncResult struct {
	State  SyncState
	Action SyncAction
	// Running is the daemon running after the call, as the kernel
	// reported or was asked; nil when none runs.
	Running *SyncDaemon
}

// ReconcileSync makes the kernel's sync daemons those of want (at most one
// per state; a state absent from want is stopped): it starts a missing
// daemon, restarts one whose settings differ (the kernel cannot change a
// running one) and stops one not wanted. Every wanted daemon is validated
// first. It returns what it did per state (master first) and the first
// error, having still tried the other state.
func ReconcileSync(ctx context.Context, k SyncDaemonKernel, want []SyncDaemon) ([]SyncResult, error) {
	var wanted [3]*SyncDaemon
	for i := range want {
		d := want[i]
		if err := d.Validate(); err != nil {
			return nil, err
		}
		if wanted[d.State] != nil {
			return nil, fmt.Errorf("two %s sync daemons wanted", d.State)
		}
		wanted[d.State] = &d
	}
	got, err := k.SyncDaemons(ctx)
	if err != nil {
		return nil, err
	}
	var running [3]*SyncDaemon
	for i := range got {
		if s := got[i].State; s == SyncMaster || s == SyncBackup {
			running[s] = &got[i]
		}
	}
	var res []SyncResult
	var errs []error
	for _, s := range []SyncState{SyncMaster, SyncBackup} {
		w, r := wanted[s], running[s]
		out := SyncResult{State: s, Action: SyncKept, Running: r}
		switch {
		case w == nil && r == nil:
		case w == nil:
			if err := k.StopSyncDaemon(ctx, s); err != nil {
				errs = append(errs, err)
				break
			}
			out.Action, out.Running = SyncStopped, nil
		case r != nil && w.Satisfies(*r):
		default:
			if r != nil {
				if err := k.StopSyncDaemon(ctx, s); err != nil {
					errs = append(errs, err)
					break
				}
				out.Action, out.Running = SyncStopped, nil
			}
			if err := k.StartSyncDaemon(ctx, *w); err != nil {
				errs = append(errs, err)
				break
			}
			started := w.WithDefaults()
			out.Running = &started
			if r != nil {
				out.Action = SyncRestarted
			} else {
				out.Action = SyncStarted
			}
		}
		res = append(res, out)
	}
	return res, errors.Join(errs...)
}
