// Package realserver is dsrd's backend agent. A direct-routing real server
// must accept packets addressed to the VIPs without ever answering ARP for
// them: the agent puts every VIP on lo (IPv4 /32 labelled lo:dsrd, IPv6
// /128 nodad), raises net.ipv4.conf.{all,<iface>}.arp_ignore to 1 and
// arp_announce to 2, repairs them (learning of changes from netlink, and
// by reading those sysctls every second: their changes raise no netlink
// event), and on request undoes exactly what it did and nothing else. Check diagnoses
// whether the host would accept DR traffic for each VIP and why not; the
// optional status endpoint serves that verdict to the directors' "agent"
// health check, and a drain file in the data dir makes it report
// "draining" before maintenance.
//
// Everything that touches the kernel goes through the Kernel interface:
// netkernel.Linux for real, netkernel.Fake for tests.
package realserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// Config is what the agent needs to know. It has no defaults (but for a
// status address's port): those of the configuration file live in
// internal/config, and internal/cli translates the file into a Config.
type Config struct {
	// VIPs are put on lo.
	VIPs []netip.Addr
	// Interfaces face the directors: ARP sysctls are set on them and Check
	// requires them up with an address. Empty means every non-lo interface
	// for Check, and only net.ipv4.conf.all for the sysctls.
	Interfaces []string
	// DataDir holds the state file (original sysctl values, IPv6 VIPs
	// added) and the drain file; required.
	DataDir string
	// CleanupOnExit removes the VIPs and restores the sysctls when Run ends.
	CleanupOnExit bool
	// StatusAddress is host:port of the status endpoint ("" is off; a
	// missing port is DefaultStatusPort).
	StatusAddress string
	// ResyncInterval re-applies everything periodically; required: sysctl
	// changes produce no netlink event, so it bounds how long a lowered
	// arp_ignore goes unrepaired.
	ResyncInterval time.Duration
	// SYNCookies keeps net.ipv4.tcp_syncookies at 1 or above (and
	// restores the original on cleanup, as for the ARP settings).
	SYNCookies bool
	// Tunnel readies the host for tunnel forwarding (docs/tunnel.md):
	// the decapsulating device of each VIP family loaded and up (tunl0,
	// ip6tnl0), rp_filter 0 on all and tunl0, kept so like the rest.
	Tunnel bool
}

// normalize validates and puts the VIPs in the form the agent adds them
// (IPv4-mapped addresses as IPv4).
func (c Config) normalize() (Config, error) {
	var errs []error
	seen := map[netip.Addr]bool{}
	vips := make([]netip.Addr, 0, len(c.VIPs))
	for _, v := range c.VIPs {
		v = v.Unmap()
		if err := CheckVIP(v); err != nil {
			errs = append(errs, fmt.Errorf("VIP: %w", err))
			continue
		}
		if seen[v] {
			errs = append(errs, fmt.Errorf("VIP %s listed twice", v))
			continue
		}
		seen[v] = true
		vips = append(vips, v)
	}
	c.VIPs = vips
	ifseen := map[string]bool{}
	for _, name := range c.Interfaces {
		if err := CheckInterface(name); err != nil {
			errs = append(errs, fmt.Errorf("interface: %w", err))
		} else if ifseen[name] {
			errs = append(errs, fmt.Errorf("interface %s listed twice", name))
		}
		ifseen[name] = true
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir: required"))
	}
	if c.ResyncInterval <= 0 {
		errs = append(errs, fmt.Errorf("resync interval %s: must be positive", c.ResyncInterval))
	}
	if c.StatusAddress != "" {
		addr, err := statusListenAddress(c.StatusAddress)
		if err != nil {
			errs = append(errs, err)
		}
		c.StatusAddress = addr
	}
	return c, errors.Join(errs...)
}

// Option configures New.
type Option func(*Agent)

// WithKernel makes the agent act on k instead of the current network
// namespace; the caller keeps ownership of k.
func WithKernel(k Kernel) Option { return func(a *Agent) { a.k = k } }

// Agent keeps a real server's DR setup in place. Its methods are safe for
// concurrent use; Run is meant to be called once.
type Agent struct {
	cfg Config
	log *slog.Logger
	k   Kernel
	// closeKernel releases a kernel New opened itself.
	closeKernel func() error
	// loadModule loads the tunnel modules (Modprobe by default).
	loadModule ModuleLoader

	ready     chan struct{}
	readyOnce sync.Once

	// applyMu serialises apply and cleanup, the only writers of st and
	// of the kernel; st is nil until first loaded.
	applyMu sync.Mutex
	st      *state

	statsMu sync.Mutex
	stats   Stats

	cacheMu     sync.Mutex
	cached      *statusCache
	cacheMaxAge time.Duration
}

// New validates cfg and returns an agent acting on the current network
// namespace (or on WithKernel's). It changes nothing: Run, Apply and
// Cleanup do. Close releases the kernel handle.
func New(cfg Config, log *slog.Logger, opts ...Option) (*Agent, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return nil, fmt.Errorf("realserver config: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg:         cfg,
		log:         log,
		ready:       make(chan struct{}),
		cacheMaxAge: statusCacheMaxAge,
		loadModule:  Modprobe,
	}
	for _, o := range opts {
		o(a)
	}
	if a.k == nil {
		lk, err := netkernel.New()
		if err != nil {
			return nil, err
		}
		a.k, a.closeKernel = lk, lk.Close
	}
	return a, nil
}

// Close releases what New opened. It does not undo anything: Cleanup does.
func (a *Agent) Close() error {
	if a.closeKernel != nil {
		return a.closeKernel()
	}
	return nil
}

// Config returns the configuration in effect, defaults applied.
func (a *Agent) Config() Config { return a.cfg }

// Ready is closed once Run's first apply has succeeded: every VIP is on lo
// and every sysctl set (the moment to tell systemd READY=1).
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Stats counts what the agent did, what it repaired in particular.
type Stats struct {
	// Applies counts reconciliations, Repairs the individual fixes (a VIP
	// re-added, a sysctl re-raised, lo brought up) made after the first
	// successful one, split in VIPRepairs, SysctlRepairs and LoRepairs.
	Applies       uint64 `json:"applies"`
	ApplyErrors   uint64 `json:"apply_errors"`
	Repairs       uint64 `json:"repairs"`
	VIPRepairs    uint64 `json:"vip_repairs"`
	SysctlRepairs uint64 `json:"sysctl_repairs"`
	LoRepairs     uint64 `json:"lo_repairs"`
	// TunnelRepairs counts decapsulating devices brought back up (or
	// their module loaded again) in tunnel mode.
	TunnelRepairs uint64 `json:"tunnel_repairs,omitempty"`
	// Resubscribes counts netlink subscriptions lost and re-opened.
	Resubscribes uint64 `json:"resubscribes"`
	// LastRepair is when the last repair happened and LastRepairWhat what
	// it fixed.
	LastRepair     time.Time `json:"last_repair,omitzero"`
	LastRepairWhat string    `json:"last_repair_what,omitempty"`
	// LastError is the last apply error, cleared by a successful apply.
	LastError string `json:"last_error,omitempty"`
}

// Stats returns a copy of the counters.
func (a *Agent) Stats() Stats {
	a.statsMu.Lock()
	defer a.statsMu.Unlock()
	return a.stats
}

// Changes is what one Apply changed.
type Changes struct {
	// LoBroughtUp says lo was down and the agent set it up.
	LoBroughtUp bool `json:"lo_brought_up,omitempty"`
	// AddedVIPs were put on lo; RemovedVIPs, added earlier by the agent,
	// are no longer configured and were removed.
	AddedVIPs   []netip.Prefix `json:"added_vips,omitempty"`
	RemovedVIPs []netip.Prefix `json:"removed_vips,omitempty"`
	// Sysctls were raised.
	Sysctls []SysctlChange `json:"sysctls,omitempty"`
	// ForeignVIPs were already on lo without the agent's mark: left alone,
	// neither adopted nor ever removed.
	ForeignVIPs []netip.Addr `json:"foreign_vips,omitempty"`
	// MissingInterfaces are configured interfaces that do not exist: their
	// sysctls are set when they appear.
	MissingInterfaces []string `json:"missing_interfaces,omitempty"`
	// LoadedModules were loaded and TunnelsUp brought up (tunnel mode).
	LoadedModules []string `json:"loaded_modules,omitempty"`
	TunnelsUp     []string `json:"tunnels_up,omitempty"`
}

// Changed reports whether the kernel was changed.
func (c Changes) Changed() bool {
	return c.LoBroughtUp || len(c.AddedVIPs) > 0 || len(c.RemovedVIPs) > 0 || len(c.Sysctls) > 0 ||
		len(c.LoadedModules) > 0 || len(c.TunnelsUp) > 0
}

// logAttrs describes the changes for slog.
func (c Changes) logAttrs() []any {
	var attrs []any
	if c.LoBroughtUp {
		attrs = append(attrs, slog.Bool("lo_brought_up", true))
	}
	if len(c.AddedVIPs) > 0 {
		attrs = append(attrs, slog.Any("added", c.AddedVIPs))
	}
	if len(c.RemovedVIPs) > 0 {
		attrs = append(attrs, slog.Any("removed", c.RemovedVIPs))
	}
	if len(c.LoadedModules) > 0 {
		attrs = append(attrs, slog.Any("loaded_modules", c.LoadedModules))
	}
	if len(c.TunnelsUp) > 0 {
		attrs = append(attrs, slog.Any("tunnels_up", c.TunnelsUp))
	}
	for _, s := range c.Sysctls {
		attrs = append(attrs, slog.String(s.Name, s.From+"->"+s.To))
	}
	return attrs
}

// loopback finds lo among links.
func loopback(links []Link) (Link, bool) {
	for _, l := range links {
		if l.Loopback {
			return l, true
		}
	}
	for _, l := range links {
		if l.Name == "lo" {
			return l, true
		}
	}
	return Link{}, false
}

// stateLocked returns the state, loading it on first use. Call with
// applyMu held.
func (a *Agent) stateLocked() (*state, error) {
	if a.st == nil {
		st, err := loadState(a.cfg.DataDir)
		if err != nil {
			return nil, err
		}
		a.st = st
	}
	return a.st, nil
}

// Apply reconciles once: lo up, every VIP on lo, every ARP sysctl at its
// minimum, VIPs the agent added but no longer configured removed. It
// returns what it changed, also when it fails part way.
func (a *Agent) Apply(ctx context.Context) (Changes, error) {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	ch, err := a.applyLocked(ctx)
	a.invalidateStatus()
	return ch, err
}

func (a *Agent) applyLocked(ctx context.Context) (Changes, error) {
	var ch Changes
	if err := ctx.Err(); err != nil {
		return ch, err
	}
	st, err := a.stateLocked()
	if err != nil {
		return ch, err
	}
	save := func() error { return saveState(a.cfg.DataDir, st) }

	links, err := a.k.Links()
	if err != nil {
		return ch, err
	}
	lo, ok := loopback(links)
	if !ok {
		return ch, errors.New("no loopback interface")
	}
	if !lo.Up {
		// lo down breaks every local address, the VIPs included (and IPv6
		// drops its addresses from lo): nothing on this host works until it
		// is back, so the agent brings it up rather than only complain.
		if err := a.k.SetLinkUp(lo.Name); err != nil {
			return ch, err
		}
		ch.LoBroughtUp = true
		a.log.Error("lo was down; brought it back up", slog.String("interface", lo.Name))
	}

	// The tunnel devices before the sysctls: tunl0's rp_filter exists
	// only once its module is loaded.
	ch.LoadedModules, ch.TunnelsUp, err = a.applyTunnels(ctx)
	if err != nil {
		return ch, err
	}

	// Sysctls first: a VIP on lo before arp_ignore is set would be
	// answered for on the segment, stealing it from the director.
	sc, missing, err := applySysctls(a.k, a.rules(), st, save)
	ch.Sysctls, ch.MissingInterfaces = sc, missing
	if err != nil {
		return ch, err
	}

	if err := ctx.Err(); err != nil {
		return ch, err
	}
	addrs, err := a.k.Addrs("")
	if err != nil {
		return ch, err
	}
	res, err := applyAddrs(a.k, lo.Name, a.cfg.VIPs, addrs, st, save)
	ch.AddedVIPs, ch.RemovedVIPs, ch.ForeignVIPs = res.added, res.removed, res.foreign
	return ch, err
}

// Cleanup undoes what the agent did: removes the VIPs it added to lo (IPv4
// ones with its label, IPv6 ones in its state file), configured or not, and
// puts back the original value of every sysctl it changed that still holds
// the agent's value. Addresses and values it did not set are left alone.
// The state file is removed once everything is undone.
func (a *Agent) Cleanup(ctx context.Context) error {
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	defer a.invalidateStatus()
	if err := ctx.Err(); err != nil {
		return err
	}
	st, err := a.stateLocked()
	if err != nil {
		return err
	}
	links, err := a.k.Links()
	if err != nil {
		return err
	}
	lo, ok := loopback(links)
	if !ok {
		return errors.New("no loopback interface")
	}
	addrs, err := a.k.Addrs("")
	if err != nil {
		return err
	}
	removed, aerr := removeOwnedAddrs(a.k, lo.Name, addrs, st)
	restored, kept, serr := restoreSysctls(a.k, st)
	werr := saveState(a.cfg.DataDir, st)
	a.log.Info("cleaned up",
		slog.Any("removed", removed),
		slog.Any("restored", restored),
		slog.Any("left_changed_by_others", kept))
	if err := errors.Join(aerr, serr, werr); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// Run keeps the setup in place until ctx ends. It subscribes to netlink
// address and link changes, applies once (Ready is closed after it; if it
// fails Run returns its error), then re-applies after every relevant change
// (within settleDelay), when the poll every sysctlPollInterval finds an ARP
// sysctl below its minimum, every ResyncInterval and after a failed apply,
// and serves the status endpoint when configured. When ctx ends it stops
// every goroutine it started and, with CleanupOnExit, cleans up. It returns
// nil after a clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	var ln net.Listener
	if a.cfg.StatusAddress != "" {
		var err error
		ln, err = net.Listen("tcp", a.cfg.StatusAddress)
		if err != nil {
			return fmt.Errorf("status endpoint: %w", err)
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	trigger := make(chan string, 1)
	subscribed := make(chan struct{})
	// Ends when runCtx is cancelled.
	wg.Go(func() { a.watch(runCtx, trigger, subscribed) })
	var srv *http.Server
	if ln != nil {
		srv = a.newStatusServer()
		// Ends when srv.Shutdown is called below.
		wg.Go(func() { a.serveStatus(srv, ln) })
		a.log.Info("status endpoint listening", slog.String("address", ln.Addr().String()))
	}

	err := a.loop(runCtx, trigger, subscribed)

	cancel()
	if srv != nil {
		shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), statusShutdownTimeout)
		if serr := srv.Shutdown(shutdownCtx); serr != nil {
			srv.Close()
		}
		stop()
	}
	wg.Wait()
	if a.cfg.CleanupOnExit {
		if cerr := a.Cleanup(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}
	return err
}

// settleDelay is how long the loop waits after an event before
// re-applying: one change arrives as a burst (lo going down is one link
// event and one address event per IPv6 address), 100 ms gathers it into
// one apply and keeps a repair well inside the one second target.
const settleDelay = 100 * time.Millisecond

// retryDelay spaces re-applies after a failed one.
const retryDelay = time.Second

// sysctlPollInterval is how often the loop reads the ARP sysctls it keeps,
// because no notification covers their changes: a write to /proc/sys
// sends no netlink event for them (devinet_conf_proc in net/ipv4/devinet.c
// announces RTM_NEWNETCONF only for rp_filter, proxy_arp and
// ignore_routes_with_linkdown, devinet_sysctl_forward for forwarding),
// and inotify on the /proc/sys file sees only writes made through the same
// procfs mount (checked on this project's hosts, kernel 6.18: a write
// through a second proc mount, as a container sharing the host's network
// namespace has, changes the value with no event). One second is the
// repair time `dsrd realserver --help` promises. A pass is 4 reads (all
// and one interface, each an open, read and close of /proc/sys):
// BenchmarkSysctlPoll measured 100-109 µs of CPU per pass (user and
// system; 117-340 µs of wall time on a shared 2-core build machine at load
// average 7-12), 200-208 µs when each read enters a network namespace as
// the tests' agents do: at one pass a second, about 0.01% of one core.
const sysctlPollInterval = time.Second

// loop is Run's reconcile loop; it ends when ctx ends (nil) or when the
// first apply fails (its error). Besides applying on triggers and on the
// resync, it polls the ARP sysctls every sysctlPollInterval and applies
// at once when one has drifted below its minimum.
func (a *Agent) loop(ctx context.Context, trigger <-chan string, subscribed <-chan struct{}) error {
	wait := time.NewTimer(subscribeWait)
	select {
	case <-subscribed:
	case <-wait.C:
		a.log.Error("no netlink subscription yet; starting without it, repairs wait for the resync",
			slog.Duration("waited", subscribeWait))
	case <-ctx.Done():
		wait.Stop()
		return nil
	}
	wait.Stop()
	if _, err := a.apply(ctx, "start", true); err != nil {
		return fmt.Errorf("first apply: %w", err)
	}
	// seen starts with the values the first apply left, read before Ready
	// so that any change made after Ready is compared with them; each poll
	// then records what it read.
	rules := a.rules()
	seen := map[string]string{}
	startWhy, startDrift := a.pollSysctls(rules, seen)
	poll := time.NewTicker(sysctlPollInterval)
	defer poll.Stop()
	a.readyOnce.Do(func() { close(a.ready) })

	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	next := time.NewTimer(0)
	if !next.Stop() {
		<-next.C
	}
	defer next.Stop()
	armed, reason := false, ""
	arm := func(d time.Duration, why string) {
		if !armed {
			next.Reset(d)
			armed, reason = true, why
		}
	}
	if startDrift {
		arm(0, startWhy)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case why := <-trigger:
			arm(settleDelay, why)
		case <-resync.C:
			arm(0, "resync")
		case <-poll.C:
			if why, drifted := a.pollSysctls(rules, seen); drifted {
				arm(0, why)
			}
		case <-next.C:
			armed = false
			if _, err := a.apply(ctx, reason, false); err != nil && ctx.Err() == nil {
				arm(retryDelay, "retry")
			}
		}
	}
}

// apply runs Apply for the loop: logs, counts and, after the first
// success, reports changes as repairs.
func (a *Agent) apply(ctx context.Context, reason string, first bool) (Changes, error) {
	ch, err := a.Apply(ctx)
	a.statsMu.Lock()
	a.stats.Applies++
	if err != nil {
		a.stats.ApplyErrors++
		a.stats.LastError = err.Error()
	} else {
		a.stats.LastError = ""
	}
	if !first && ch.Changed() {
		n := uint64(len(ch.AddedVIPs) + len(ch.Sysctls) + len(ch.TunnelsUp))
		a.stats.VIPRepairs += uint64(len(ch.AddedVIPs))
		a.stats.SysctlRepairs += uint64(len(ch.Sysctls))
		a.stats.TunnelRepairs += uint64(len(ch.TunnelsUp))
		if ch.LoBroughtUp {
			a.stats.LoRepairs++
			n++
		}
		a.stats.Repairs += n
		a.stats.LastRepair = time.Now()
		a.stats.LastRepairWhat = describeRepair(ch)
	}
	a.statsMu.Unlock()

	attrs := append([]any{slog.String("reason", reason)}, ch.logAttrs()...)
	switch {
	case err != nil:
		a.log.Error("apply failed", append(attrs, slog.Any("error", err))...)
	case first:
		a.log.Info("applied", attrs...)
	case ch.Changed():
		a.log.Warn("repaired", attrs...)
	default:
		a.log.Debug("in place", attrs...)
	}
	if len(ch.ForeignVIPs) > 0 && first {
		a.log.Warn("VIPs already on lo, not added by dsrd: left alone, never removed",
			slog.Any("vips", ch.ForeignVIPs))
	}
	if len(ch.MissingInterfaces) > 0 && (first || err != nil) {
		a.log.Warn("configured interfaces missing; their sysctls are set when they appear",
			slog.Any("interfaces", ch.MissingInterfaces))
	}
	return ch, err
}

// describeRepair summarises a repair in one line for Stats.
func describeRepair(ch Changes) string {
	var parts []string
	if ch.LoBroughtUp {
		parts = append(parts, "lo up")
	}
	for _, m := range ch.LoadedModules {
		parts = append(parts, "loaded "+m)
	}
	for _, d := range ch.TunnelsUp {
		parts = append(parts, d+" up")
	}
	for _, p := range ch.AddedVIPs {
		parts = append(parts, "added "+p.String())
	}
	for _, p := range ch.RemovedVIPs {
		parts = append(parts, "removed "+p.String())
	}
	for _, s := range ch.Sysctls {
		parts = append(parts, s.Name+"="+s.To)
	}
	return strings.Join(parts, ", ")
}
