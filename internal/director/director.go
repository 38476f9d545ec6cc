// Package director composes a dsrd director: the Raft member, the health
// checks, the IPVS reconciler and the VIP owner. It is a reconcile loop:
// the cluster configuration and admin state (from Raft) plus this
// director's own health view give the desired IPVS state, which every
// director programs into its own kernel, leader or not, so a standby is
// warm before it takes over; leadership alone decides who holds the VIPs.
package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/admission"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
	"github.com/dsrd/dsrd/raft/pki"
	"github.com/dsrd/dsrd/vrrp"
)

// Options are what a director needs beyond its configuration file. The
// kernel-facing fields are for tests; nil means the real kernel.
type Options struct {
	// ConfigPath is the director's file, re-read on Reload.
	ConfigPath string
	// Override applies command-line flags over a freshly loaded file.
	Override func(*config.Director)
	Logger   *slog.Logger

	// IPVS programs the services; the kernel's IPVS when nil.
	IPVS ipvs.Kernel
	// Sysctls writes the director's IPVS sysctls; /proc/sys when nil.
	Sysctls ipvs.SysctlWriter
	// VIPKernel and Announce own and announce VIPs; netlink and real
	// gratuitous ARP / NA when nil.
	VIPKernel vrrp.Kernel
	Announce  vrrp.AnnounceFunc
	// Admission programs admission control (the dsrd nftables table);
	// the kernel's nf_tables when nil.
	Admission admission.Kernel
	// Metrics receives the director's events and reads its state when
	// scraped; nil when metrics are off.
	Metrics *metrics.Set
	// Speaker announces the bgp VIPs when the file has a bgp section; an
	// embedded gobgp (vrrp/bgp) when nil.
	Speaker bgpSpeaker
	// Stopping, when set, is told how long the stop that begins will take
	// at most: a bgp director announces as leaving for drain_delay before
	// it withdraws (the command sets systemd's EXTEND_TIMEOUT_USEC, so a
	// drain_delay longer than TimeoutStopSec= is not cut short).
	Stopping func(atMost time.Duration)
}

// Director is a running director. Its methods implement api.Backend.
//
// It composes collaborators that each own their state and, where more than
// one goroutine reaches it, their one lock: healthInputs (the health
// inputs a desired computation read, for the checks' OnRun), submitter
// (the loaded file and the last reload, for Reload, the start-up
// submission and status), progress (what the reconcile loop reached, for
// status). The reconcile loop's own state (loopState: the catch-up hold,
// the owned-file saver, the translated spec, the spec follower) takes no
// lock: only the loop touches it. The other fields are set by New or Run
// before the goroutines that read them start, and not changed after.
type Director struct {
	opts Options
	log  *slog.Logger

	node   *raft.Node
	fw     api.Forwarder // cluster writes, forwarded to the leader
	peers  *api.PeerClient
	ready  chan struct{}
	rec    *ipvs.Reconciler
	kernel ipvs.Kernel
	// adm keeps the dsrd nftables table in line with the configuration.
	adm     *admission.Controller
	sysctls ipvs.SysctlWriter
	checks  *healthcheck.Scheduler
	machine *vrrp.Machine
	owner   *vrrp.Owner
	// verdicts sends this director's view of the bgp services' reals to
	// the leader and, on the leader, replicates the cluster's verdicts.
	verdicts *verdicts
	// lo holds the bgp VIPs; anycast announces them when this director
	// has a bgp section (nil otherwise).
	lo      *loVIPs
	anycast *anycaster
	// speaker is the BGP speaker (nil without a bgp section);
	// speakerStatus reports its sessions.
	speaker       bgpSpeaker
	speakerStatus func() []api.BGPPeer

	healthChanged chan struct{} // capacity 1: a pending "recompute"

	// syncd runs the IPVS sync daemons; leading (set by
	// followLeadership) makes this director their master in mode arp.
	syncd   *syncDaemons
	leading atomic.Bool

	// inputs are the health inputs the last desired computation used;
	// checkRan compares each run's outcome with them.
	inputs *healthInputs

	// sub owns the file as last loaded and the last reload's outcome.
	sub *submitter
	// progress is what the reconcile loop reached.
	progress progress

	// loop is touched by the reconcile loop only (and Run before it
	// starts): no lock.
	loop loopState
}

// loopState is the reconcile loop's own state.
type loopState struct {
	hold   catchUp      // IPVS held at start while Raft replays older states
	owned  ownedSaver   // the owned file
	specs  specCache    // the cluster configuration, translated
	follow specFollower // the checks, VIPs and sysctls follow it
	// anycastApplied is the generation last followed in full (IPVS and
	// the VIPs on lo), for the anycaster.
	anycastApplied uint64
	// admission is the admission control of the configuration.
	admission admissionState
}

// Load reads, overrides and validates the director's file.
func Load(path string, override func(*config.Director)) (*config.Director, error) {
	cfg, err := config.LoadDirector(path)
	if err != nil {
		return nil, err
	}
	if override != nil {
		override(cfg)
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("%s with command-line overrides: %w", path, err)
		}
	}
	return cfg, nil
}

// New loads the configuration and prepares a director; Run starts it.
func New(opts Options) (*Director, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := Load(opts.ConfigPath, opts.Override)
	if err != nil {
		return nil, err
	}
	d := &Director{
		opts:          opts,
		log:           opts.Logger,
		sub:           newSubmitter(opts.Logger, cfg, time.Now()),
		healthChanged: make(chan struct{}, 1),
		ready:         make(chan struct{}),
	}
	ak := opts.Admission
	if ak == nil {
		ak = admission.NFT{}
	}
	d.adm = admission.NewController(ak)
	opts.Metrics.Watch(d.metricsSnapshot)
	return d, nil
}

// Run runs the director until ctx ends: it opens IPVS, starts Raft, the
// health checks and the VIP state machine, and reconciles. On return the
// VIPs are released and Raft is shut down (leadership handed over first);
// IPVS entries stay, so a restart adopts them without a blip.
func (d *Director) Run(ctx context.Context) error {
	cfg := d.sub.current()
	log := d.log.With("node", cfg.Node.ID)

	// The API socket first: another dsrd answering there is fatal before
	// anything is touched.
	apiLn, err := api.ListenUnix(cfg.Node.APISocket)
	if err != nil {
		return err
	}
	defer apiLn.Close()

	// IPVS next: a director without IPVS must not join the cluster and
	// win an election it cannot serve.
	if d.opts.IPVS == nil {
		if err := ipvs.Probe(); err != nil {
			return err
		}
		k, err := ipvs.OpenNetlink(ctx, "", ipvs.WithNetlinkLogger(log))
		if err != nil {
			return fmt.Errorf("open ipvs: %w", err)
		}
		defer k.Close()
		d.kernel = k
	} else {
		d.kernel = d.opts.IPVS
	}
	sk, _ := d.kernel.(ipvs.SyncDaemonKernel)
	d.syncd = newSyncDaemons(log, sk, func() string { return d.sub.current().Node.Interface })
	defer func() {
		// After the reconcile loop: a stopped director neither sends nor
		// receives connections (its successor's backup keeps them).
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		if err := d.syncd.stop(sctx); err != nil {
			log.Warn("ipvs sync daemons not stopped", "error", err)
		}
	}()
	d.sysctls = d.opts.Sysctls
	if d.sysctls == nil {
		d.sysctls = ipvs.ProcSys{}
	}
	// The services owned before the restart: one removed from the
	// configuration meanwhile is drained and deleted, not left behind as
	// foreign. A file that cannot be read costs only that.
	saved, err := loadOwned(cfg.Node.DataDir)
	if err != nil {
		log.Error("owned ipvs services unknown: services removed from the configuration while this director was down stay in ipvs", "error", err)
	}
	d.loop.hold = catchUp{log: d.log, started: time.Now(), below: saved.index}
	d.loop.owned = ownedSaver{log: d.log, dataDir: cfg.Node.DataDir, saved: saved}
	// The rebuild guard turns expire_nodest_conn off while destinations
	// are re-added in the canonical order, so their connections survive
	// (ipvs.WithRebuildGuard); the sysctls are applied by the same loop.
	recOpts := []ipvs.Option{ipvs.WithOwnedServices(saved.services), ipvs.WithRebuildGuard(d.sysctls)}
	if m := d.opts.Metrics; m != nil {
		recOpts = append(recOpts, ipvs.WithOnWrite(m.IPVSWrite))
	}
	d.rec = ipvs.NewReconciler(d.kernel, log, recOpts...)

	// VIP ownership: the machine starts in BACKUP and removes configured
	// VIPs this node still holds (a crash while leader leaves them).
	vk, announce := d.opts.VIPKernel, d.opts.Announce
	if vk == nil {
		lx, err := vrrp.NewLinux()
		if err != nil {
			return fmt.Errorf("open netlink for vips: %w", err)
		}
		defer lx.Close()
		vk = lx
		if announce == nil {
			announce = lx.Announce
		}
	}
	owner, err := vrrp.NewOwner(vipsOf(cfg.VIPs, cfg.Node.Interface), vk, announce, log)
	if err != nil {
		return fmt.Errorf("vips: %w", err)
	}
	d.owner = owner
	d.lo = &loVIPs{k: vk}
	defer func() {
		if err := d.lo.release(); err != nil {
			log.Warn("bgp vips not released from lo", "error", err)
		}
	}()
	d.machine = vrrp.NewMachine(owner, vrrp.MachineOptions{Notify: notifyOf(cfg.Node.Notify), Confirm: d.confirmLeadership})

	d.checks = healthcheck.NewScheduler(healthcheck.SchedulerOptions{
		Logger: log,
		OnRun:  d.checkRan,
	})
	d.inputs = newHealthInputs(d.checks.Status)
	d.loop.follow = specFollower{
		log: d.log, checks: d.checks, vips: d.machine, lo: d.lo, sysctls: d.sysctls, kernel: d.kernel, metrics: d.opts.Metrics,
		iface: func() string { return d.sub.current().Node.Interface },
	}

	node, err := raft.New(raft.Config{NodeID: cfg.Node.ID, DataDir: cfg.Node.DataDir, Cluster: clusterspec.Settings(cfg.Cluster), Role: pki.RoleDirector, ValidateSpec: clusterspec.Validate, MemberVersions: memberVersions(func() *api.PeerClient { return d.peers }), Logger: log})
	if err != nil {
		return err
	}
	d.node = node
	d.peers = &api.PeerClient{Dial: node.DialPeer}
	d.fw = api.Forwarder{Local: node, Peers: *d.peers}
	d.verdicts = newVerdicts(node, d.peers.HealthView, log)

	var wg sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
	}()
	spawn := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("component stopped", "component", name, "error", err)
			}
		}()
	}
	// The machine runs until runCtx ends, then releases the VIPs.
	spawn("vrrp", func(ctx context.Context) error { d.machine.Run(ctx); return nil })
	spawn("healthcheck", d.checks.Run)

	if err := node.Start(ctx); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		// A leader that stops hands over to the other director when one
		// can take the VIPs (not to the witness, which would hand on).
		var targets []string
		if node.IsLeader() {
			targets = transferTargets(sctx, node, node.ID(), peerStatus(d.peers))
		}
		if err := node.Shutdown(sctx, targets...); err != nil {
			log.Warn("raft shutdown", "error", err)
		}
	}()

	spawn("leadership", d.followLeadership)
	spawn("sync-daemons", func(ctx context.Context) error { d.syncd.run(ctx); return nil })
	spawn("verdicts", func(ctx context.Context) error { d.verdicts.run(ctx); return nil })
	spawn("faults", d.handleFaults)
	spawn("submit", func(ctx context.Context) error { d.sub.untilAccepted(ctx, raftSubmit{node, d.fw}, cfg); return nil })
	spawn("api", func(ctx context.Context) error {
		return api.NewServer(d, log, api.ServerOptions{Peers: d.peers}).Serve(ctx, apiLn)
	})
	spawn("peer", func(ctx context.Context) error {
		return api.NewPeerServer(node, node, d, log).Serve(ctx, node.PeerListener())
	})
	// The BGP speaker last: its deferred stop runs first, so a stopping
	// director announces itself as leaving and withdraws while IPVS and
	// the VIPs on lo still forward what the routers send.
	stopSpeaker, err := d.startSpeaker(runCtx, cfg, func() bool { return node.LeaderID() != "" }, log)
	if err != nil {
		return err
	}
	defer stopSpeaker()
	close(d.ready)

	// The reconcile loop runs here, so its end is Run's end; the deferred
	// calls then stop the components and hand leadership over before the
	// machine releases the VIPs.
	return d.reconcileLoop(runCtx)
}

// Ready is closed once the director has joined Raft and serves its API.
func (d *Director) Ready() <-chan struct{} { return d.ready }

// poke asks the reconcile loop to recompute, without blocking.
func (d *Director) poke() {
	select {
	case d.healthChanged <- struct{}{}:
	default:
	}
}

// notifyOf converts node.notify to the VIP state machine's scripts.
func notifyOf(n config.Notify) vrrp.NotifyScripts {
	return vrrp.NotifyScripts{
		Master:  n.Master,
		Backup:  n.Backup,
		Fault:   n.Fault,
		Any:     n.Any,
		Timeout: n.Timeout.D(),
	}
}

// vipsOf converts configured arp VIPs to the owner's, putting those
// without an interface (see raft.SpecFromDirector) on this node's
// interface; bgp VIPs are not the owner's.
func vipsOf(vips []config.VIP, nodeInterface string) []vrrp.VIP {
	out := make([]vrrp.VIP, 0, len(vips))
	for _, v := range vips {
		if v.Mode == config.ModeBGP {
			continue // held on lo by every director (anycast_vips.go)
		}
		iface := v.Interface
		if iface == "" {
			iface = nodeInterface
		}
		a := vrrp.Announce{Count: v.Announce.Count, Interval: v.Announce.Interval.D()}
		if v.Announce.Refresh != nil {
			if r := v.Announce.Refresh.D(); r == 0 {
				a.Refresh = vrrp.RefreshOff
			} else {
				a.Refresh = r
			}
		}
		out = append(out, vrrp.VIP{Address: v.Address, Interface: iface, Announce: a})
	}
	return out
}

// ReleaseVIPs removes the file's VIPs from this host's interfaces, for
// systemd's ExecStopPost: a director that crashed (SIGKILL, a panic) leaves
// its VIPs on the interface, where the kernel keeps answering ARP for them
// while another director owns them. Only exact /32 and /128 addresses of
// configured VIPs are removed. VIPs added to the cluster by another
// director's file since this one was written are not known here; the next
// start of this director removes those (it starts as BACKUP).
func ReleaseVIPs(ctx context.Context, cfg *config.Director, log *slog.Logger) ([]vrrp.VIP, error) {
	lx, err := vrrp.NewLinux()
	if err != nil {
		return nil, fmt.Errorf("open netlink for vips: %w", err)
	}
	defer lx.Close()
	owner, err := vrrp.NewOwner(vipsOf(cfg.VIPs, cfg.Node.Interface), lx, lx.Announce, log)
	if err != nil {
		return nil, fmt.Errorf("vips: %w", err)
	}
	released, err := owner.ReleaseStale(ctx)
	if err != nil {
		return released, err
	}
	// The bgp VIPs this director held on lo (a crash leaves them).
	var errs []error
	for _, v := range cfg.VIPs {
		if v.Mode != config.ModeBGP {
			continue
		}
		p := netip.PrefixFrom(v.Address, v.Address.BitLen())
		addrs, err := lx.Addrs(config.BGPInterface)
		if err != nil {
			errs = append(errs, err)
			break
		}
		if !slices.ContainsFunc(addrs, func(a netkernel.Addr) bool { return a.Prefix == p }) {
			continue
		}
		if err := lx.DelAddr(netkernel.Addr{Link: config.BGPInterface, Prefix: p}); err != nil {
			errs = append(errs, fmt.Errorf("release bgp vip %s from %s: %w", v.Address, config.BGPInterface, err))
			continue
		}
		released = append(released, vrrp.VIP{Address: v.Address, Interface: config.BGPInterface})
	}
	return released, errors.Join(errs...)
}
