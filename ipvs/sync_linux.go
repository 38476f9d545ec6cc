package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The IPVS generic netlink sync daemon commands and attributes
// (linux/ip_vs.h); moby/ipvs defines but does not send them.
const (
	ipvsCmdNewDaemon = 9
	ipvsCmdDelDaemon = 10
	ipvsCmdGetDaemon = 11

	ipvsCmdAttrDaemon = 3

	ipvsDaemonAttrState       = 1 // u32
	ipvsDaemonAttrMcastIfn    = 2 // NUL-terminated string
	ipvsDaemonAttrSyncID      = 3 // u32 (the kernel keeps 8 bits)
	ipvsDaemonAttrSyncMaxLen  = 4 // u16, host order (kernel 4.3+)
	ipvsDaemonAttrMcastGroup  = 5 // in_addr (kernel 4.3+)
	ipvsDaemonAttrMcastGroup6 = 6 // in6_addr (kernel 4.3+)
	ipvsDaemonAttrMcastPort   = 7 // u16, host order (kernel 4.3+)
	ipvsDaemonAttrMcastTTL    = 8 // u8 (kernel 4.3+)

	// maxSyncDaemonReplies bounds a GET_DAEMON dump: the kernel sends at
	// most one message per state.
	maxSyncDaemonReplies = 8
)

// SyncDaemons returns the running sync daemons, the master first.
func (n *Netlink) SyncDaemons(ctx context.Context) ([]SyncDaemon, error) {
	var out []SyncDaemon
	err := n.genl(ctx, func(w *batchWriter, deadline time.Time) error {
		msgs, err := w.request(ipvsCmdGetDaemon, nil, true, deadline)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, m := range msgs {
			d, err := parseSyncDaemon(m)
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", callGetDaemons, err)
	}
	if len(out) == 2 && out[0].State > out[1].State {
		out[0], out[1] = out[1], out[0]
	}
	return out, nil
}

// StartSyncDaemon starts d, validated first.
func (n *Netlink) StartSyncDaemon(ctx context.Context, d SyncDaemon) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%s: %w", callNewDaemon, err)
	}
	err := n.genl(ctx, func(w *batchWriter, deadline time.Time) error {
		_, err := w.request(ipvsCmdNewDaemon, syncDaemonAttr(d), false, deadline)
		return err
	})
	err = n.verifyUnacked(ctx, err, func(ds []SyncDaemon) bool {
		return slices.ContainsFunc(ds, func(g SyncDaemon) bool { return g.State == d.State && d.Satisfies(g) })
	})
	return syncCallError(callNewDaemon, d.State, d.Interface, err)
}

// StopSyncDaemon stops the daemon of state s.
func (n *Netlink) StopSyncDaemon(ctx context.Context, s SyncState) error {
	err := n.genl(ctx, func(w *batchWriter, deadline time.Time) error {
		a := nl.NewRtAttr(ipvsCmdAttrDaemon|unix.NLA_F_NESTED, nil)
		a.AddRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(s)))
		_, err := w.request(ipvsCmdDelDaemon, a, false, deadline)
		return err
	})
	err = n.verifyUnacked(ctx, err, func(ds []SyncDaemon) bool {
		return !slices.ContainsFunc(ds, func(g SyncDaemon) bool { return g.State == s })
	})
	return syncCallError(callDelDaemon, s, "", err)
}

// verifyUnacked handles a start or stop whose acknowledgement did not
// come within the call's bound: in the VM lab the kernel had finished a
// stop (its thread gone) while the call still waited for the answer, now
// and then (cause unknown). It lists the daemons on a new socket and takes
// the call as done when done reports the kernel in the state asked for,
// counting it (UnackedSyncCalls); else it returns err.
func (n *Netlink) verifyUnacked(ctx context.Context, err error, done func([]SyncDaemon) bool) error {
	if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return err
	}
	ds, lerr := n.SyncDaemons(ctx)
	if lerr != nil || !done(ds) {
		return err
	}
	n.unacked.Add(1)
	n.log.Warn("ipvs sync daemon call not acknowledged in time, but the kernel did it", "daemons", len(ds))
	return nil
}

// UnackedSyncCalls returns how many sync daemon starts and stops were
// taken as done by listing the daemons after their acknowledgement did not
// come in time.
func (n *Netlink) UnackedSyncCalls() int64 { return n.unacked.Load() }

// syncCallError wraps the error of a sync daemon call with a hint for the
// errnos whose cause is known.
func syncCallError(call string, s SyncState, ifname string, err error) error {
	if err == nil {
		return nil
	}
	what := s.String()
	if ifname != "" {
		what += " on " + ifname
	}
	switch {
	case errors.Is(err, syscall.ENODEV):
		return fmt.Errorf("%s %s: %w (no such interface in the namespace)", call, what, err)
	case call == callNewDaemon && errors.Is(err, syscall.EINVAL):
		return fmt.Errorf("%s %s: %w (a group that is not multicast, or services with destinations of the other family)", call, what, err)
	}
	return fmt.Errorf("%s %s: %w", call, what, err)
}

// syncCallTimeout bounds one sync daemon call when the context has no
// earlier deadline. Starting and stopping a daemon takes the RTNL lock and
// waits for kernel threads, so the bound is above the service calls'; a
// call that overruns it is checked by listing the daemons
// (verifyUnacked).
const syncCallTimeout = 10 * time.Second

// genl runs f on the sync daemon calls' generic netlink socket, under
// their lock and the call's deadline (the longer of syncCallTimeout and
// the handle's call timeout). A socket whose exchange failed is closed:
// late answers would be stale.
func (n *Netlink) genl(ctx context.Context, f func(w *batchWriter, deadline time.Time) error) error {
	n.smu.Lock() // held throughout: Close waits for it before closing ns
	defer n.smu.Unlock()
	n.mu.Lock()
	closed, ns, timeout := n.closed, n.ns, max(n.callTimeout, syncCallTimeout)
	n.mu.Unlock()
	if closed {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.sw == nil {
		w, err := openBatchWriter(ns)
		if err != nil {
			return err
		}
		n.sw = w
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	err := f(n.sw, deadline)
	var ke *kernelError
	if err != nil && !errors.As(err, &ke) {
		n.sw.close()
		n.sw = nil
	}
	return err
}

// kernelError is the errno the kernel answered a request with: the
// exchange itself went well.
type kernelError struct{ errno syscall.Errno }

// Error returns the errno's text.
func (e *kernelError) Error() string { return e.errno.Error() }

// Unwrap returns the errno.
func (e *kernelError) Unwrap() error { return e.errno }

// request sends one request (with attr when not nil) and returns the
// attributes (after the generic netlink header) of the messages the kernel
// answers with: a dump's messages, none for an acknowledged request. The
// kernel's errno is returned as a *kernelError; any other error means
// the exchange failed.
func (w *batchWriter) request(cmd uint8, attr *nl.RtAttr, dump bool, deadline time.Time) ([][]byte, error) {
	flags := unix.NLM_F_ACK
	if dump {
		flags = unix.NLM_F_DUMP
	}
	req := nl.NewNetlinkRequest(int(w.family), flags)
	w.seq++
	req.Seq = w.seq
	req.AddData(genlHeader(cmd))
	if attr != nil {
		req.AddData(attr)
	}
	if err := setTimeout(w.fd, unix.SO_SNDTIMEO, deadline); err != nil {
		return nil, err
	}
	if err := unix.Sendto(w.fd, req.Serialize(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send request: %w", err)
	}
	var out [][]byte
	for {
		if err := setTimeout(w.fd, unix.SO_RCVTIMEO, deadline); err != nil {
			return nil, err
		}
		n, _, err := unix.Recvfrom(w.fd, w.buf, 0)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // interrupted, or timed out: setTimeout sees the deadline
		}
		if err != nil {
			return nil, fmt.Errorf("receive answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != w.seq {
				continue // stale
			}
			switch m.Header.Type {
			case unix.NLMSG_ERROR, unix.NLMSG_DONE:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("short netlink message of type %d", m.Header.Type)
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e < 0 {
					return nil, &kernelError{syscall.Errno(-e)}
				}
				return out, nil
			case w.family:
				if len(m.Data) < 4 {
					return nil, errors.New("short generic netlink message")
				}
				if len(out) == maxSyncDaemonReplies {
					return nil, fmt.Errorf("more than %d answers", maxSyncDaemonReplies)
				}
				out = append(out, m.Data[4:])
				if !dump {
					continue
				}
			}
		}
	}
}

// syncDaemonAttr encodes d as the IPVS_CMD_ATTR_DAEMON nest of a
// NEW_DAEMON request. Zero fields are left out: the kernel fills in its
// defaults.
func syncDaemonAttr(d SyncDaemon) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrDaemon|unix.NLA_F_NESTED, nil)
	a.AddRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(d.State)))
	a.AddRtAttr(ipvsDaemonAttrMcastIfn, nl.ZeroTerminated(d.Interface))
	a.AddRtAttr(ipvsDaemonAttrSyncID, nl.Uint32Attr(uint32(d.SyncID)))
	if d.MaxLen != 0 {
		a.AddRtAttr(ipvsDaemonAttrSyncMaxLen, nl.Uint16Attr(d.MaxLen))
	}
	if d.Group.IsValid() {
		if d.Group.Is4() {
			a.AddRtAttr(ipvsDaemonAttrMcastGroup, d.Group.AsSlice())
		} else {
			a.AddRtAttr(ipvsDaemonAttrMcastGroup6, d.Group.AsSlice())
		}
	}
	if d.Port != 0 {
		a.AddRtAttr(ipvsDaemonAttrMcastPort, nl.Uint16Attr(d.Port))
	}
	if d.TTL != 0 {
		a.AddRtAttr(ipvsDaemonAttrMcastTTL, []byte{d.TTL})
	}
	return a
}

// parseAttrs splits netlink attributes into type (flags cleared) and value;
// a later attribute of a type replaces an earlier one. It never reads
// outside b.
func parseAttrs(b []byte) (map[uint16][]byte, error) {
	m := map[uint16][]byte{}
	for len(b) > 0 {
		if len(b) < unix.SizeofNlAttr {
			return nil, fmt.Errorf("truncated attribute header (%d bytes)", len(b))
		}
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofNlAttr || l > len(b) {
			return nil, fmt.Errorf("attribute %d of length %d in %d bytes", t, l, len(b))
		}
		m[t] = b[unix.SizeofNlAttr:l]
		b = b[min(nlaAlign(l), len(b)):]
	}
	return m, nil
}

// nlaAlign rounds an attribute length up to 4 bytes.
func nlaAlign(l int) int { return (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1) }

// parseSyncDaemon parses the attributes of a GET_DAEMON answer (after the
// generic netlink header): an IPVS_CMD_ATTR_DAEMON nest. The state, the
// interface and the sync id are required; the kernel 4.3+ attributes are
// read when present. Every value's size is checked.
func parseSyncDaemon(b []byte) (SyncDaemon, error) {
	top, err := parseAttrs(b)
	if err != nil {
		return SyncDaemon{}, fmt.Errorf("sync daemon answer: %w", err)
	}
	nest, ok := top[ipvsCmdAttrDaemon]
	if !ok {
		return SyncDaemon{}, errors.New("sync daemon answer without a daemon attribute")
	}
	a, err := parseAttrs(nest)
	if err != nil {
		return SyncDaemon{}, fmt.Errorf("sync daemon attribute: %w", err)
	}
	var d SyncDaemon
	u := func(t uint16, size int, name string, required bool) ([]byte, error) {
		v, ok := a[t]
		switch {
		case !ok && required:
			return nil, fmt.Errorf("sync daemon without %s", name)
		case !ok:
			return nil, nil
		case len(v) < size:
			return nil, fmt.Errorf("sync daemon %s of %d bytes, want %d", name, len(v), size)
		}
		return v, nil
	}
	v, err := u(ipvsDaemonAttrState, 4, "state", true)
	if err != nil {
		return SyncDaemon{}, err
	}
	switch s := binary.NativeEndian.Uint32(v); s {
	case uint32(SyncMaster), uint32(SyncBackup):
		d.State = SyncState(s)
	default:
		return SyncDaemon{}, fmt.Errorf("sync daemon of unknown state %d", s)
	}
	v, err = u(ipvsDaemonAttrMcastIfn, 1, "interface", true)
	if err != nil {
		return SyncDaemon{}, err
	}
	if i := indexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	d.Interface = string(v)
	if err := checkIfName(d.Interface); err != nil {
		return SyncDaemon{}, fmt.Errorf("sync daemon interface: %w", err)
	}
	if v, err = u(ipvsDaemonAttrSyncID, 4, "sync id", true); err != nil {
		return SyncDaemon{}, err
	}
	id := binary.NativeEndian.Uint32(v)
	if id > 255 {
		return SyncDaemon{}, fmt.Errorf("sync daemon sync id %d is out of 0-255", id)
	}
	d.SyncID = uint8(id)
	if v, err = u(ipvsDaemonAttrSyncMaxLen, 2, "maxlen", false); err != nil {
		return SyncDaemon{}, err
	} else if v != nil {
		d.MaxLen = binary.NativeEndian.Uint16(v)
	}
	if v, err = u(ipvsDaemonAttrMcastPort, 2, "port", false); err != nil {
		return SyncDaemon{}, err
	} else if v != nil {
		d.Port = binary.NativeEndian.Uint16(v)
	}
	if v, err = u(ipvsDaemonAttrMcastTTL, 1, "ttl", false); err != nil {
		return SyncDaemon{}, err
	} else if v != nil {
		d.TTL = v[0]
	}
	if v, err = u(ipvsDaemonAttrMcastGroup6, 16, "IPv6 group", false); err != nil {
		return SyncDaemon{}, err
	} else if v != nil {
		d.Group = netip.AddrFrom16([16]byte(v[:16]))
	}
	if v, err = u(ipvsDaemonAttrMcastGroup, 4, "IPv4 group", false); err != nil {
		return SyncDaemon{}, err
	} else if v != nil {
		d.Group = netip.AddrFrom4([4]byte(v[:4]))
	}
	return d, nil
}

// indexByte returns the index of the first c in b, or -1.
func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

var _ SyncDaemonKernel = (*Netlink)(nil)
