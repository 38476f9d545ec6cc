package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// DefaultCallTimeout bounds one netlink call when the context has no
// earlier deadline. The kernel answers an IPVS request synchronously, in
// microseconds; a call that takes seconds is stuck (moby/ipvs retries a
// timed-out receive forever), and a resync retries it later anyway.
const DefaultCallTimeout = 5 * time.Second

// Netlink is the kernel backend: IPVS of one network namespace over one
// github.com/moby/ipvs handle. It is safe for concurrent use (calls are
// serialised: one handle is not safe for concurrent use). Every call is
// bounded by its context and by the call timeout: a call that overruns
// closes the handle, which unblocks it, and the next call opens a new one.
type Netlink struct {
	log         *slog.Logger
	callTimeout time.Duration

	mu     sync.Mutex
	ns     netns.NsHandle // the namespace, kept open for reopening
	path   string         // /proc/self/fd/N of ns, what ipvs.New opens
	h      *ipvs.Handle   // nil after a timeout until the next call
	w      *batchWriter   // batched writes; nil until used or after a timeout
	closed bool

	// smu guards sw, the socket of the sync daemon calls: those wait for
	// the RTNL lock and for kernel threads, so they have a socket, a lock
	// and a bound of their own (syncCallTimeout) and never hold up the
	// service calls.
	smu sync.Mutex
	sw  *batchWriter
	// unacked counts sync daemon calls verified by a listing after their
	// acknowledgement did not come (verifyUnacked).
	unacked atomic.Int64

	batchSize int
}

// NetlinkOption configures OpenNetlink.
type NetlinkOption func(*Netlink)

// WithCallTimeout sets the bound of one netlink call (DefaultCallTimeout).
func WithCallTimeout(d time.Duration) NetlinkOption {
	return func(n *Netlink) { n.callTimeout = d }
}

// WithNetlinkLogger sets the logger of handle reopen events.
func WithNetlinkLogger(l *slog.Logger) NetlinkOption {
	return func(n *Netlink) { n.log = l }
}

// Probe reports whether the running kernel has IPVS: its generic netlink
// family "IPVS" exists once the ip_vs module is loaded. It returns
// ErrUnavailable when it does not. (moby/ipvs itself silently does nothing
// on such a kernel.)
func Probe() error {
	if _, err := netlink.GenlFamilyGet("IPVS"); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return ErrUnavailable
		}
		return fmt.Errorf("probe the IPVS generic netlink family: %w", err)
	}
	return nil
}

// OpenNetlink opens IPVS in the network namespace at nsPath (a file such as
// /run/netns/NAME or /proc/PID/ns/net), or in the calling thread's
// namespace when nsPath is empty. It fails with ErrUnavailable when the
// kernel has no IPVS, and checks that a request really reaches IPVS.
func OpenNetlink(ctx context.Context, nsPath string, opts ...NetlinkOption) (*Netlink, error) {
	if err := Probe(); err != nil {
		return nil, err
	}
	n := &Netlink{log: slog.New(slog.DiscardHandler), callTimeout: DefaultCallTimeout, batchSize: DefaultBatchSize}
	for _, o := range opts {
		o(n)
	}
	var err error
	if nsPath == "" {
		n.ns, err = netns.Get()
	} else {
		n.ns, err = netns.GetFromPath(nsPath)
	}
	if err != nil {
		return nil, fmt.Errorf("open network namespace %q: %w", nsPath, err)
	}
	n.path = fmt.Sprintf("/proc/self/fd/%d", int(n.ns))
	// A request that IPVS answers proves the family ID moby/ipvs resolved
	// (once per process) is right: with a wrong one every call "succeeds".
	t, err := n.Timeouts(ctx)
	if err == nil && t.TCP == 0 {
		err = errors.New("IPVS answered with no TCP timeout")
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return n, nil
}

// Close releases the handle and the namespace. Calls after Close fail.
func (n *Netlink) Close() error {
	n.smu.Lock() // before mu, as genl takes them
	defer n.smu.Unlock()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
	if n.w != nil {
		n.w.close()
		n.w = nil
	}
	if n.sw != nil {
		n.sw.close()
		n.sw = nil
	}
	return n.ns.Close()
}

// do runs f on the handle, opening it if needed, bounded by ctx and the
// call timeout. moby/ipvs cannot cancel a call, so an overrun closes the
// socket (which makes the blocked receive return) and drops the handle.
func (n *Netlink) do(ctx context.Context, f func(h *ipvs.Handle) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.h == nil {
		h, err := ipvs.New(n.path)
		if err != nil {
			return fmt.Errorf("open netlink handle: %w", err)
		}
		n.h = h
	}
	cctx, cancel := context.WithTimeout(ctx, n.callTimeout)
	defer cancel()
	h := n.h
	stop := context.AfterFunc(cctx, h.Close)
	err := panicToError(func() error { return f(h) })
	if !stop() {
		n.h = nil
		n.log.Warn("ipvs netlink call overran its deadline: handle closed, reopened on the next call", "err", cctx.Err())
		return fmt.Errorf("netlink call abandoned: %w", cctx.Err())
	}
	return err
}

// panicToError runs f and turns a panic into an error: moby/ipvs indexes
// replies without checking their count.
func panicToError(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("moby/ipvs: unexpected reply: %v", r)
		}
	}()
	return f()
}

// GetServices returns every service of the namespace with nil Dests.
func (n *Netlink) GetServices(ctx context.Context) ([]Service, error) {
	var ms []*ipvs.Service
	err := n.do(ctx, func(h *ipvs.Handle) (err error) {
		ms, err = h.GetServices()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", callGetServices, err)
	}
	out := make([]Service, 0, len(ms))
	for _, m := range ms {
		s, err := fromMobyService(m)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", callGetServices, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// GetDestinations returns the destinations of the service k.
func (n *Netlink) GetDestinations(ctx context.Context, k ServiceKey) ([]Destination, error) {
	var md []*ipvs.Destination
	ms := toMobyService(Service{Key: k})
	err := n.do(ctx, func(h *ipvs.Handle) (err error) {
		md, err = h.GetDestinations(ms)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", callGetDests, k, err)
	}
	out := make([]Destination, 0, len(md))
	for _, m := range md {
		d, err := fromMobyDest(m)
		if err != nil {
			return nil, fmt.Errorf("%s of %s: %w", callGetDests, k, err)
		}
		out = append(out, d)
	}
	return out, nil
}

// NewService creates s.
func (n *Netlink) NewService(ctx context.Context, s Service) error {
	ms := toMobyService(s)
	return serviceCallError(callNewService, s, n.do(ctx, func(h *ipvs.Handle) error { return h.NewService(ms) }))
}

// UpdateService changes the existing service s.
func (n *Netlink) UpdateService(ctx context.Context, s Service) error {
	ms := toMobyService(s)
	return serviceCallError(callSetService, s, n.do(ctx, func(h *ipvs.Handle) error { return h.UpdateService(ms) }))
}

// DelService deletes the service k.
func (n *Netlink) DelService(ctx context.Context, k ServiceKey) error {
	ms := toMobyService(Service{Key: k})
	return serviceCallError(callDelService, Service{Key: k}, n.do(ctx, func(h *ipvs.Handle) error { return h.DelService(ms) }))
}

// NewDestination adds d to service k.
func (n *Netlink) NewDestination(ctx context.Context, k ServiceKey, d Destination) error {
	if err := checkDestFamily(k, d); err != nil {
		return destCallError(callNewDest, k, d.Key, err)
	}
	ms, md := toMobyService(Service{Key: k}), toMobyDest(d)
	return destCallError(callNewDest, k, d.Key, n.do(ctx, func(h *ipvs.Handle) error { return h.NewDestination(ms, md) }))
}

// UpdateDestination changes the existing destination d of service k.
func (n *Netlink) UpdateDestination(ctx context.Context, k ServiceKey, d Destination) error {
	if err := checkDestFamily(k, d); err != nil {
		return destCallError(callSetDest, k, d.Key, err)
	}
	ms, md := toMobyService(Service{Key: k}), toMobyDest(d)
	return destCallError(callSetDest, k, d.Key, n.do(ctx, func(h *ipvs.Handle) error { return h.UpdateDestination(ms, md) }))
}

// DelDestination deletes destination d of service k.
func (n *Netlink) DelDestination(ctx context.Context, k ServiceKey, d DestKey) error {
	ms, md := toMobyService(Service{Key: k}), toMobyDest(Destination{Key: d})
	return destCallError(callDelDest, k, d, n.do(ctx, func(h *ipvs.Handle) error { return h.DelDestination(ms, md) }))
}

// checkDestFamily refuses a destination of another family than its service
// with EINVAL, as the kernel does for all but tunnels: moby/ipvs does not
// send the destination's family, and the kernel would take the first bytes
// of an IPv6 address for an IPv4 one.
func checkDestFamily(k ServiceKey, d Destination) error {
	if FamilyOf(d.Key.Addr) != k.Family {
		return syscall.EINVAL
	}
	return nil
}

// Timeouts returns the kernel's connection timeouts.
func (n *Netlink) Timeouts(ctx context.Context) (Timeouts, error) {
	var c *ipvs.Config
	err := n.do(ctx, func(h *ipvs.Handle) (err error) {
		c, err = h.GetConfig()
		return err
	})
	if err != nil {
		return Timeouts{}, fmt.Errorf("%s: %w", callGetTimeouts, err)
	}
	return Timeouts{TCP: c.TimeoutTCP, TCPFin: c.TimeoutTCPFin, UDP: c.TimeoutUDP}, nil
}

// SetTimeouts sets the non-zero timeouts, rounded up to whole seconds.
func (n *Netlink) SetTimeouts(ctx context.Context, t Timeouts) error {
	c := &ipvs.Config{TimeoutTCP: ceilSeconds(t.TCP), TimeoutTCPFin: ceilSeconds(t.TCPFin), TimeoutUDP: ceilSeconds(t.UDP)}
	if err := n.do(ctx, func(h *ipvs.Handle) error { return h.SetConfig(c) }); err != nil {
		return fmt.Errorf("%s: %w", callSetTimeouts, err)
	}
	return nil
}

// The kernel's address family numbers.
const (
	afInet  = syscall.AF_INET
	afInet6 = syscall.AF_INET6
)

// kernelAF returns the kernel's number of a family.
func kernelAF(f Family) uint16 {
	if f == IPv6 {
		return afInet6
	}
	return afInet
}

// familyFromAF maps a kernel address family number.
func familyFromAF(af uint16) (Family, error) {
	switch af {
	case afInet:
		return IPv4, nil
	case afInet6:
		return IPv6, nil
	}
	return 0, fmt.Errorf("unknown address family %d", af)
}

// toMobyService converts s (Dests ignored). The IPv4 netmask travels as the
// mask's bytes in network order read as a host-order uint32 (moby/ipvs
// writes host order, the kernel reads be32); the IPv6 one as a prefix length.
func toMobyService(s Service) *ipvs.Service {
	k := s.Key
	ms := &ipvs.Service{
		AddressFamily: kernelAF(k.Family),
		SchedName:     s.Scheduler,
		Flags:         uint32(s.Flags &^ FlagHashed),
		Timeout:       uint32(ceilSeconds(s.Timeout) / time.Second),
	}
	nm := s.Netmask
	if nm <= 0 || (k.Family == IPv4 && nm > 32) {
		nm = k.Family.bits()
	}
	if k.Family == IPv4 {
		m := net.CIDRMask(nm, 32)
		ms.Netmask = binary.NativeEndian.Uint32(m)
	} else {
		ms.Netmask = uint32(nm)
	}
	if k.IsFWMark() {
		ms.FWMark = k.FWMark
	} else {
		ms.Protocol = uint16(k.Protocol)
		ms.Address = net.IP(k.Addr.AsSlice())
		ms.Port = k.Port
	}
	return ms
}

// fromMobyService converts a service read from the kernel.
func fromMobyService(m *ipvs.Service) (Service, error) {
	f, err := familyFromAF(m.AddressFamily)
	if err != nil {
		return Service{}, err
	}
	var k ServiceKey
	if m.FWMark != 0 {
		k = FWMarkKey(f, m.FWMark)
	} else {
		a, ok := netip.AddrFromSlice(m.Address)
		if !ok {
			return Service{}, fmt.Errorf("service with invalid address %v", m.Address)
		}
		k = NewServiceKey(Protocol(m.Protocol), netip.AddrPortFrom(a, m.Port))
	}
	s := Service{
		Key:       k,
		Scheduler: m.SchedName,
		Flags:     Flags(m.Flags),
		Timeout:   time.Duration(m.Timeout) * time.Second,
		Stats:     statsFromMoby(m.Stats),
	}
	if f == IPv4 {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], m.Netmask)
		s.Netmask = prefixLen(binary.BigEndian.Uint32(b[:]))
	} else {
		s.Netmask = int(m.Netmask)
	}
	return s, nil
}

// prefixLen returns the prefix length of an IPv4 mask, -1 when the mask is
// not a prefix.
func prefixLen(m uint32) int {
	ones := bits.LeadingZeros32(^m)
	if m<<ones != 0 {
		return -1
	}
	return ones
}

// toMobyDest converts d.
func toMobyDest(d Destination) *ipvs.Destination {
	return &ipvs.Destination{
		Address:         net.IP(d.Key.Addr.AsSlice()),
		Port:            d.Key.Port,
		Weight:          d.Weight,
		ConnectionFlags: d.Forward.kernelValue(),
		AddressFamily:   kernelAF(FamilyOf(d.Key.Addr)),
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}
}

// fromMobyDest converts a destination read from the kernel.
func fromMobyDest(m *ipvs.Destination) (Destination, error) {
	a, ok := netip.AddrFromSlice(m.Address)
	if !ok {
		return Destination{}, fmt.Errorf("destination with invalid address %v", m.Address)
	}
	return Destination{
		Key:            DestKey{Addr: a.Unmap(), Port: m.Port},
		Weight:         m.Weight,
		Forward:        forwardFromKernel(m.ConnectionFlags),
		UpperThreshold: m.UpperThreshold,
		LowerThreshold: m.LowerThreshold,
		ActiveConns:    uint32(m.ActiveConnections),
		InactiveConns:  uint32(m.InactiveConnections),
		Stats:          statsFromMoby(ipvs.SvcStats(m.Stats)),
	}, nil
}

// statsFromMoby converts moby/ipvs's counters.
func statsFromMoby(m ipvs.SvcStats) Stats {
	return Stats{
		Conns: m.Connections, PacketsIn: m.PacketsIn, PacketsOut: m.PacketsOut,
		BytesIn: m.BytesIn, BytesOut: m.BytesOut, CPS: m.CPS,
		PPSIn: m.PPSIn, PPSOut: m.PPSOut, BPSIn: m.BPSIn, BPSOut: m.BPSOut,
	}
}

var (
	_ Kernel        = (*Netlink)(nil)
	_ TimeoutSetter = (*Netlink)(nil)
)
