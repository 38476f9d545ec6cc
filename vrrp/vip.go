package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Announcement defaults, used where a VIP leaves a setting at zero.
const (
	// DefaultCount is how many announcements make up the burst on takeover:
	// one can be lost on a busy segment or arrive while a switch port is
	// still learning, three cover that at a small cost.
	DefaultCount = 3
	// DefaultInterval spaces the burst. It must be over 1 s: Linux ignores a
	// second update of the same neighbour within its locktime
	// (net.ipv4.neigh.*.locktime, 1 s by default; recent kernels exempt a
	// recognised gratuitous ARP, older ones and other systems do not). The
	// extra half second absorbs timer and queueing jitter on both ends, so
	// two announcements never land inside one locktime window.
	DefaultInterval = 1500 * time.Millisecond
	// DefaultRefresh repeats one announcement this often while the VIP is
	// held, so a neighbour that missed the burst (a host that was down, a
	// flushed cache, a switch that aged out the MAC) converges within a
	// minute without waiting for its own ARP timeout.
	DefaultRefresh = time.Minute
	// RefreshOff disables the periodic refresh of a VIP.
	RefreshOff time.Duration = -1
)

// VIP is a virtual IP address this package adds to an interface and
// announces while the node owns it.
type VIP struct {
	// Address is the VIP: it is added as a /32 (IPv4) or /128 (IPv6).
	Address netip.Addr
	// Interface is the name of the link the VIP is added to and announced on.
	Interface string
	// Announce configures the announcements of this VIP.
	Announce Announce
}

// Announce configures how a new owner of a VIP tells its L2 segment.
type Announce struct {
	// Count is how many announcements make up the burst on takeover; zero
	// means DefaultCount.
	Count int
	// Interval spaces the burst; zero means DefaultInterval.
	Interval time.Duration
	// Refresh repeats one announcement this often after the burst while the
	// VIP is held; zero means DefaultRefresh, RefreshOff (any negative
	// value) disables the refresh.
	Refresh time.Duration
}

// withDefaults returns a with its zero settings replaced by the defaults.
func (a Announce) withDefaults() Announce {
	if a.Count == 0 {
		a.Count = DefaultCount
	}
	if a.Interval == 0 {
		a.Interval = DefaultInterval
	}
	if a.Refresh == 0 {
		a.Refresh = DefaultRefresh
	}
	if a.Refresh < 0 {
		a.Refresh = RefreshOff
	}
	return a
}

// Prefix returns the host prefix the VIP is added as: /32 or /128.
func (v VIP) Prefix() netip.Prefix {
	return netip.PrefixFrom(v.Address, v.Address.BitLen())
}

// String formats the VIP as "address dev interface".
func (v VIP) String() string { return v.Address.String() + " dev " + v.Interface }

// key identifies a VIP: the same address moved to another interface is a
// different VIP (removed from one, added to the other).
type key struct {
	addr      netip.Addr
	ifaceName string
}

func (v VIP) key() key { return key{addr: v.Address, ifaceName: v.Interface} }

// normalizeVIPs validates vips, applies the defaults and returns them sorted
// by interface then address (the order every operation follows, so that
// what is done is deterministic).
// CheckVIP says why a is not an address a director can own as a VIP, or
// returns nil when it is one: a unicast address reachable beyond its own
// link, without a zone; not unspecified, multicast, loopback, link-local
// or the IPv4 broadcast address. An IPv4-mapped IPv6 address is judged as
// its IPv4 address. NewOwner applies it, and so does the configuration's
// validation (dsrd config check, reloads), so that a file it accepts is
// one the directors take.
func CheckVIP(a netip.Addr) error {
	a = a.Unmap()
	switch {
	case !a.IsValid():
		return errors.New("no address")
	case a.Zone() != "":
		return fmt.Errorf("%s has a zone: a VIP cannot have one", a)
	case a.IsUnspecified():
		return fmt.Errorf("%s is the unspecified address", a)
	case a.IsMulticast():
		return fmt.Errorf("%s is a multicast address", a)
	case a.IsLoopback():
		return fmt.Errorf("%s is a loopback address", a)
	case a.IsLinkLocalUnicast():
		return fmt.Errorf("%s is a link-local address: not usable as a VIP", a)
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("%s is the broadcast address", a)
	}
	return nil
}

func normalizeVIPs(vips []VIP) ([]VIP, error) {
	var errs []error
	out := make([]VIP, 0, len(vips))
	seen := make(map[netip.Addr]bool, len(vips))
	for _, v := range vips {
		v.Address = v.Address.Unmap()
		switch {
		case !v.Address.IsValid():
			errs = append(errs, errors.New("vip without an address"))
			continue
		case CheckVIP(v.Address) != nil:
			// "vip 169.254.10.10 is a link-local address: ..."
			errs = append(errs, fmt.Errorf("vip %w", CheckVIP(v.Address)))
			continue
		case v.Interface == "":
			errs = append(errs, fmt.Errorf("vip %s: no interface", v.Address))
			continue
		case seen[v.Address]:
			errs = append(errs, fmt.Errorf("vip %s: configured twice", v.Address))
			continue
		case v.Announce.Count < 0:
			errs = append(errs, fmt.Errorf("vip %s: negative announce count %d", v.Address, v.Announce.Count))
			continue
		case v.Announce.Interval < 0:
			errs = append(errs, fmt.Errorf("vip %s: negative announce interval %s", v.Address, v.Announce.Interval))
			continue
		}
		seen[v.Address] = true
		v.Announce = v.Announce.withDefaults()
		out = append(out, v)
	}
	slices.SortFunc(out, compareVIPs)
	return out, errors.Join(errs...)
}

func compareVIPs(a, b VIP) int {
	if c := strings.Compare(a.Interface, b.Interface); c != 0 {
		return c
	}
	return a.Address.Compare(b.Address)
}

// vipList formats VIP addresses space-separated, as DSRD_VIPS carries them.
func vipList(vips []VIP) string {
	s := make([]string, len(vips))
	for i, v := range vips {
		s[i] = v.Address.String()
	}
	return strings.Join(s, " ")
}
