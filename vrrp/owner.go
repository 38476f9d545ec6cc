package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// Stable log keys.
const (
	keyVIP       = "vip"
	keyInterface = "interface"
	keyState     = "state"
	keyError     = "error"
)

// Owner adds the configured VIPs to their interfaces and announces them
// while it holds them, and removes them. It knows nothing of leadership:
// [Machine] decides when to call it. It is safe for concurrent use.
type Owner struct {
	kernel   Kernel
	announce AnnounceFunc
	log      *slog.Logger

	mu      sync.Mutex
	vips    []VIP // configured, normalized and sorted
	holding bool  // between Acquire and Release
	// held are the VIPs this Owner added (or found and adopted) while
	// holding, with their running announcements.
	held map[key]*announcer
}

// NewOwner returns an Owner of vips that changes addresses through k and
// sends announcements with announce. It touches nothing until Acquire,
// Release or ReleaseStale is called. A nil log discards.
func NewOwner(vips []VIP, k Kernel, announce AnnounceFunc, log *slog.Logger) (*Owner, error) {
	if k == nil || announce == nil {
		return nil, errors.New("vrrp owner needs a kernel and an announce function")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nv, err := normalizeVIPs(vips)
	if err != nil {
		return nil, fmt.Errorf("vips: %w", err)
	}
	o := &Owner{kernel: k, announce: announce, log: log, vips: nv, held: make(map[key]*announcer)}
	o.warnSettings(nv)
	return o, nil
}

func (o *Owner) warnSettings(vips []VIP) {
	for _, v := range vips {
		if v.Announce.Count > 1 && v.Announce.Interval <= minInterval {
			o.log.Warn("announce interval within the neighbour locktime: some announcements of the burst may be ignored",
				keyVIP, v.Address.String(), keyInterface, v.Interface, "interval", v.Announce.Interval, "locktime", minInterval)
		}
	}
}

// minInterval is Linux's default neighbour locktime (1 s): two updates of
// one neighbour closer than this may be ignored.
const minInterval = time.Second

// VIPs returns the configured VIPs, sorted by interface then address.
func (o *Owner) VIPs() []VIP {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.vips)
}

// Held returns the VIPs the Owner currently holds, sorted.
func (o *Owner) Held() []VIP {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]VIP, 0, len(o.held))
	for _, a := range o.held {
		out = append(out, a.vip)
	}
	slices.SortFunc(out, compareVIPs)
	return out
}

// Holding reports whether the Owner is between Acquire and Release.
func (o *Owner) Holding() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.holding
}

// Acquire adds every configured VIP missing from its interface and starts
// announcing it (a burst, then the refresh). It is idempotent: a VIP
// already held and present is left alone, one removed behind dsrd's back is
// added and announced again, so calling Acquire periodically repairs.
// It tries every VIP and returns the failures joined; the VIPs it did add
// are held (see Held). Announcements run until Release, until their VIP
// leaves the configuration (Update), or until ctx is done.
func (o *Owner) Acquire(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding = true
	return o.acquireLocked(ctx)
}

func (o *Owner) acquireLocked(ctx context.Context) error {
	present, listErrs := o.presentLocked(o.vips)
	var errs []error
	for _, v := range o.vips {
		k := v.key()
		a, held := o.held[k]
		log := o.log.With(keyVIP, v.Address.String(), keyInterface, v.Interface)
		if err, ok := listErrs[v.Interface]; ok {
			errs = append(errs, fmt.Errorf("acquire %s: %w", v, err))
			if held {
				a.stop()
				delete(o.held, k)
			}
			continue
		}
		if present[v.Interface][v.Prefix()] {
			if !held {
				// Left by an earlier run or added by hand: adopt it and
				// announce it, as the segment may point elsewhere.
				o.held[k] = startAnnouncer(ctx, o.announce, o.log, v, true)
				log.Info("vip acquired: already on its interface")
			}
			continue
		}
		if err := o.kernel.AddAddr(vipAddr(v)); err != nil {
			errs = append(errs, fmt.Errorf("acquire %s: %w", v, err))
			if held {
				a.stop()
				delete(o.held, k)
			}
			continue
		}
		if held {
			a.stop()
			log.Warn("vip had been removed from its interface by someone else: added again")
		} else {
			log.Info("vip acquired")
		}
		o.held[k] = startAnnouncer(ctx, o.announce, o.log, v, true)
	}
	return errors.Join(errs...)
}

// Release stops every announcement, then removes every configured VIP
// found on its interface, held or not (so it also does what ReleaseStale
// does). The Owner no longer holds anything afterwards, even when removing
// a VIP failed; the failures are returned joined.
func (o *Owner) Release(ctx context.Context) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.holding = false
	ours := make(map[key]bool, len(o.held))
	for k := range o.held {
		ours[k] = true
	}
	o.stopLocked(func(key) bool { return true })
	_, err := o.removeLocked(o.vips, ours)
	return err
}

// ReleaseStale removes the configured VIPs that are on their interface but
// not held by this Owner, and returns them: the startup cleanup of a
// director, and what a non-leader does periodically so it never answers
// for a VIP another director owns. Only configured VIPs, as /32 or /128,
// are ever removed: other addresses of the interfaces are not touched.
func (o *Owner) ReleaseStale(ctx context.Context) ([]VIP, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var stale []VIP
	for _, v := range o.vips {
		if _, held := o.held[v.key()]; !held {
			stale = append(stale, v)
		}
	}
	return o.removeLocked(stale, nil)
}

// Update replaces the configured VIPs (a configuration reload). While
// holding, it adds and announces the new VIPs before it removes the ones
// no longer configured, and restarts the refresh of a VIP whose announce
// settings changed (without a new burst). While not holding, it removes
// any configured VIP, old or new, found on its interface. Invalid vips
// change nothing; otherwise the failures are returned joined and Held
// tells what is actually held.
func (o *Owner) Update(ctx context.Context, vips []VIP) error {
	nv, err := normalizeVIPs(vips)
	if err != nil {
		return fmt.Errorf("vips: %w", err)
	}
	o.warnSettings(nv)
	o.mu.Lock()
	defer o.mu.Unlock()
	newKeys := make(map[key]VIP, len(nv))
	for _, v := range nv {
		newKeys[v.key()] = v
	}
	var gone []VIP
	for _, v := range o.vips {
		if _, ok := newKeys[v.key()]; !ok {
			gone = append(gone, v)
		}
	}
	o.vips = nv
	if !o.holding {
		_, errStale := o.removeLocked(nv, nil)
		_, errGone := o.removeLocked(gone, nil)
		return errors.Join(errStale, errGone)
	}
	for k, a := range o.held {
		if v, ok := newKeys[k]; ok && v.Announce != a.vip.Announce {
			a.stop()
			o.held[k] = startAnnouncer(ctx, o.announce, o.log, v, false)
		}
	}
	errAdd := o.acquireLocked(ctx) // add first
	goneKeys := make(map[key]bool, len(gone))
	for _, v := range gone {
		goneKeys[v.key()] = true
	}
	o.stopLocked(func(k key) bool { return goneKeys[k] })
	_, errDel := o.removeLocked(gone, goneKeys)
	return errors.Join(errAdd, errDel)
}

// stopLocked stops the announcements of the held VIPs that match and
// forgets them; all are cancelled first, then waited for.
func (o *Owner) stopLocked(match func(key) bool) {
	var stopping []*announcer
	for k, a := range o.held {
		if match(k) {
			a.cancel()
			stopping = append(stopping, a)
			delete(o.held, k)
		}
	}
	for _, a := range stopping {
		<-a.done
	}
}

// removeLocked deletes those of vips that are on their interface and
// returns the ones it removed. ours says which were held: their removal is
// logged as a release, the others' as the removal of a stale VIP.
func (o *Owner) removeLocked(vips []VIP, ours map[key]bool) ([]VIP, error) {
	present, listErrs := o.presentLocked(vips)
	var (
		removed []VIP
		errs    []error
	)
	for _, v := range vips {
		if err, ok := listErrs[v.Interface]; ok {
			if !errors.Is(err, ErrNoInterface) {
				errs = append(errs, fmt.Errorf("release %s: %w", v, err))
			}
			continue // a missing interface took its addresses with it
		}
		if !present[v.Interface][v.Prefix()] {
			continue
		}
		// No label: the address goes whatever its label, as the VIPs this
		// node adopted (left by hand or by another program) may carry none.
		if err := o.kernel.DelAddr(netkernel.Addr{Link: v.Interface, Prefix: v.Prefix()}); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", v, err))
			continue
		}
		removed = append(removed, v)
		log := o.log.With(keyVIP, v.Address.String(), keyInterface, v.Interface)
		if ours[v.key()] {
			log.Info("vip released")
		} else {
			log.Warn("removed a configured vip this node does not own")
		}
	}
	return removed, errors.Join(errs...)
}

// presentLocked lists the addresses of the interfaces of vips, once per
// interface; interfaces that could not be listed are in the error map.
func (o *Owner) presentLocked(vips []VIP) (map[string]map[netip.Prefix]bool, map[string]error) {
	present := make(map[string]map[netip.Prefix]bool)
	errs := make(map[string]error)
	for _, v := range vips {
		if _, ok := present[v.Interface]; ok {
			continue
		}
		if _, ok := errs[v.Interface]; ok {
			continue
		}
		addrs, err := o.kernel.Addrs(v.Interface)
		if err != nil {
			errs[v.Interface] = err
			continue
		}
		set := make(map[netip.Prefix]bool, len(addrs))
		for _, a := range addrs {
			set[a.Prefix] = true
		}
		present[v.Interface] = set
	}
	return present, errs
}
