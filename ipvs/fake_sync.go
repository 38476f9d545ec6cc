package ipvs

import (
	"context"
	"fmt"
	"syscall"
)

// FakeInterface is a network interface of a Fake's namespace, as the sync
// daemons see it.
type FakeInterface struct {
	// MTU sets the backup daemon's default message size.
	MTU int
}

// SetInterface adds or replaces an interface of the fake namespace (it has
// "lo", MTU 65536, from the start).
func (f *Fake) SetInterface(name string, i FakeInterface) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ifaces[name] = i
}

// DelInterface removes an interface; running daemons keep running, as in
// the kernel (they hold the device's index, not its name).
func (f *Fake) DelInterface(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ifaces, name)
}

// SyncDaemons returns the running daemons, the master first.
func (f *Fake) SyncDaemons(ctx context.Context) ([]SyncDaemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "SyncDaemons"}); err != nil {
		return nil, fmt.Errorf("%s: %w", callGetDaemons, err)
	}
	var out []SyncDaemon
	for _, d := range f.daemons {
		if d != nil {
			out = append(out, *d)
		}
	}
	return out, nil
}

// StartSyncDaemon starts d with the kernel's rules: EINVAL for a state
// that is neither master nor backup, a group that is not multicast, or
// services with destinations of the other family; ENODEV for an unknown
// interface; EEXIST when a daemon of the state runs. (A master starts on
// an interface without an address: Linux 6.1 does.) The
// zero fields get the kernel's defaults, MaxLen from the interface's MTU
// (master: 1500, backup: the MTU within 1500-65535; minus the IP and UDP
// headers), a set MaxLen is clamped to the kernel's bounds.
func (f *Fake) StartSyncDaemon(ctx context.Context, d SyncDaemon) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%s: %w", callNewDaemon, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "StartSyncDaemon", Write: true}); err != nil {
		return syncCallError(callNewDaemon, d.State, d.Interface, err)
	}
	if err := f.startSync(d); err != nil {
		return syncCallError(callNewDaemon, d.State, d.Interface, err)
	}
	return nil
}

// startSync applies the kernel's rules; f.mu is held.
func (f *Fake) startSync(d SyncDaemon) error {
	if f.mixedFamilies() {
		return syscall.EINVAL
	}
	d = d.WithDefaults()
	ifc, ok := f.ifaces[d.Interface]
	if !ok {
		return syscall.ENODEV
	}
	hlen := d.headerLen()
	if d.MaxLen == 0 {
		mtu := 1500
		if d.State == SyncBackup {
			mtu = min(max(ifc.MTU, 1500), 65535)
		}
		d.MaxLen = uint16(mtu - hlen)
	}
	if f.daemons[d.State] != nil {
		return syscall.EEXIST
	}
	f.daemons[d.State] = &d
	return nil
}

// mixedFamilies reports whether a service has a destination of the other
// family (a tunnel): the sync protocol cannot carry those.
func (f *Fake) mixedFamilies() bool {
	for _, s := range f.st {
		for k := range s.Dests {
			if FamilyOf(k.Addr) != s.Key.Family {
				return true
			}
		}
	}
	return false
}

// StopSyncDaemon stops the daemon of state s: ESRCH when none runs, EINVAL
// for an unknown state.
func (f *Fake) StopSyncDaemon(ctx context.Context, s SyncState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(ctx, Call{Method: "StopSyncDaemon", Write: true}); err != nil {
		return syncCallError(callDelDaemon, s, "", err)
	}
	switch {
	case s != SyncMaster && s != SyncBackup:
		return syncCallError(callDelDaemon, s, "", syscall.EINVAL)
	case f.daemons[s] == nil:
		return syncCallError(callDelDaemon, s, "", syscall.ESRCH)
	}
	f.daemons[s] = nil
	return nil
}

var _ SyncDaemonKernel = (*Fake)(nil)
