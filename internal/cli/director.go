package cli

import (
	"context"
	"errors"
	"fmt"
	"github.com/dsrd/dsrd/internal/admission"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/director"
	"github.com/dsrd/dsrd/internal/logging"
	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/internal/statuspage"
	"github.com/dsrd/dsrd/internal/systemd"
)

// nodeFlags override the node and cluster sections of a director's or
// witness's file.
func nodeFlags(defaultConfig string) []ucli.Flag {
	return []ucli.Flag{
		configFlag(defaultConfig),
		&ucli.StringFlag{Name: "node-id", Usage: "this node's id in the cluster", EnvVars: []string{"DSRD_NODE_ID"}},
		&ucli.StringFlag{Name: "data-dir", Usage: "where Raft state and snapshots are kept", EnvVars: []string{"DSRD_DATA_DIR"}},
		&ucli.StringFlag{Name: "api-socket", Usage: "the local API's unix socket", EnvVars: []string{"DSRD_API_SOCKET"}},
		&ucli.StringFlag{Name: "bind", Usage: "ip:port Raft listens on", EnvVars: []string{"DSRD_BIND"}},
		&ucli.StringFlag{Name: "advertise", Usage: "ip:port peers reach this node on (default: --bind)", EnvVars: []string{"DSRD_ADVERTISE"}},
		&ucli.StringSliceFlag{Name: "peer", Usage: "a voter as id@ip:port (repeatable; replaces the file's peers)", EnvVars: []string{"DSRD_PEERS"}},
		&ucli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", EnvVars: []string{"DSRD_LOG_LEVEL"}},
		&ucli.StringFlag{Name: "log-format", Usage: "text or json", EnvVars: []string{"DSRD_LOG_FORMAT"}},
		&ucli.StringFlag{Name: "metrics-address", Usage: "host:port of the Prometheus endpoint (default: off)", EnvVars: []string{"DSRD_METRICS_ADDRESS"}},
	}
}

func directorCmd() *ucli.Command {
	return &ucli.Command{
		Name:  "director",
		Usage: "run a director: Raft member, IPVS programmer, health checker, VIP owner while leader",
		Description: "Joins the cluster of directors, programs this host's IPVS from the cluster configuration and\n" +
			"its own health checks, and holds and announces the VIPs while it is the Raft leader.\n" +
			"SIGHUP (or dsrd reload) re-reads the file; an invalid file is rejected and nothing changes.",
		Flags: append(nodeFlags("/etc/dsrd/director.yaml"),
			&ucli.StringFlag{Name: "interface", Usage: "the interface VIPs live on", EnvVars: []string{"DSRD_INTERFACE"}},
		),
		Action: directorRun,
		Subcommands: []*ucli.Command{{
			Name:  "release-vips",
			Usage: "remove this director's VIPs from its interfaces (systemd ExecStopPost: a crashed director must not keep answering ARP for them), then tell another director the leader is gone so that it stands for election at once",
			Flags: append(nodeFlags("/etc/dsrd/director.yaml"),
				&ucli.StringFlag{Name: "interface", Usage: "the interface VIPs live on", EnvVars: []string{"DSRD_INTERFACE"}},
			),
			Action: directorReleaseVIPs,
		}, {
			Name: "release-admission",
			Usage: "remove the admission control table (nftables table inet dsrd) that a stopped director leaves in place; " +
				"the services it protected are then open to every source until a director starts again",
			Action: directorReleaseAdmission,
		}},
	}
}

// directorReleaseAdmission removes the dsrd nftables table. A stopping
// director leaves it in place (docs/admission.md): this is the way to lift
// admission control for good, for instance once a director is taken out of
// service.
func directorReleaseAdmission(c *ucli.Context) error {
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	if err := (admission.NFT{}).Delete(ctx); err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd director release-admission: %v", err), exitFailure)
	}
	fmt.Fprintf(c.App.Writer, "removed table inet %s (if it was there)\n", admission.TableName)
	return nil
}

func directorReleaseVIPs(c *ucli.Context) error {
	var flagErr error
	cfg, err := director.Load(c.String("config"), func(cfg *config.Director) {
		flagErr = overrideNode(c, &cfg.Node, &cfg.Cluster)
	})
	if flagErr != nil {
		return ucli.Exit("dsrd director release-vips: "+flagErr.Error(), exitUsage)
	}
	if err != nil {
		return loadError("director release-vips", err)
	}
	log, err := daemonLogger(c, cfg.Node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	released, err := director.ReleaseVIPs(ctx, cfg, log)
	for _, v := range released {
		fmt.Fprintf(c.App.Writer, "released %s from %s\n", v.Address, v.Interface)
	}
	if err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd director release-vips: %v", err), exitFailure)
	}
	if len(released) > 0 {
		// This director held VIPs: it led. Tell another director, so
		// that the cluster need not wait for Raft's timers; failing
		// that, they will.
		if to, err := director.HintLeaderGone(ctx, cfg, log); err == nil {
			fmt.Fprintf(c.App.Writer, "told %s the leader is gone: it stands for election at once\n", to)
		} else {
			log.Warn("no director took the leader-gone hint: the cluster fails over by Raft's timers", "error", err)
		}
	}
	return nil
}

func witnessCmd() *ucli.Command {
	return &ucli.Command{
		Name:  "witness",
		Usage: "run a witness: a Raft voter that never owns VIPs nor touches IPVS (the third vote of an HA pair)",
		Description: "A witness votes in elections so that two directors survive the loss of either; elected\n" +
			"leader itself, it hands leadership to a director at once.",
		Flags:  nodeFlags("/etc/dsrd/witness.yaml"),
		Action: witnessRun,
	}
}

// overrideNode applies the node flags over a loaded file. Errors in flag
// values are reported at parse time by parsePeers and parseAddrPort.
func overrideNode(c *ucli.Context, n *config.Node, cl *config.Cluster) error {
	set := func(name string, dst *string) {
		if c.IsSet(name) {
			*dst = c.String(name)
		}
	}
	set("node-id", &n.ID)
	set("data-dir", &n.DataDir)
	set("api-socket", &n.APISocket)
	set("log-level", &n.LogLevel)
	set("log-format", &n.LogFormat)
	set("metrics-address", &n.MetricsAddress)
	if c.Command.Name == "director" {
		set("interface", &n.Interface)
	}
	for _, f := range []struct {
		name string
		dst  *netip.AddrPort
	}{{"bind", &cl.Bind}, {"advertise", &cl.Advertise}} {
		if !c.IsSet(f.name) {
			continue
		}
		ap, err := netip.ParseAddrPort(c.String(f.name))
		if err != nil {
			return fmt.Errorf("--%s %q: want ip:port", f.name, c.String(f.name))
		}
		*f.dst = ap
		if f.name == "bind" && !c.IsSet("advertise") {
			cl.Advertise = ap
		}
	}
	if c.IsSet("peer") {
		cl.Peers = nil
		for _, s := range c.StringSlice("peer") {
			p, err := config.ParsePeer(s)
			if err != nil {
				return fmt.Errorf("--peer: %w", err)
			}
			cl.Peers = append(cl.Peers, p)
		}
	}
	return nil
}

// daemonLogger builds the logger from the node's settings.
func daemonLogger(c *ucli.Context, n config.Node) (*slog.Logger, error) {
	log, err := logging.New(c.App.ErrWriter, n.LogLevel, n.LogFormat, systemd.UnderJournal())
	if err != nil {
		return nil, ucli.Exit("dsrd: "+err.Error(), exitUsage)
	}
	return log, nil
}

// loadError turns a configuration load error into the CLI's exit.
func loadError(cmd string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return ucli.Exit(fmt.Sprintf("dsrd %s: %v: give --config FILE", cmd, err), exitUsage)
	}
	return ucli.Exit(err.Error(), exitFailure)
}

func directorRun(c *ucli.Context) error {
	// SIGHUP's default action ends the process: catch it before anything
	// else, so a reload sent while the director starts is held (and done
	// once it is ready, see Director.Reload) rather than fatal.
	hup, stopHUP := notifyHUP()
	defer stopHUP()
	var flagErr error
	override := func(cfg *config.Director) {
		if err := overrideNode(c, &cfg.Node, &cfg.Cluster); err != nil {
			flagErr = err
		}
		for i := range cfg.VIPs {
			if c.IsSet("interface") && cfg.VIPs[i].Interface == "" {
				cfg.VIPs[i].Interface = cfg.Node.Interface
			}
		}
	}
	cfg, err := director.Load(c.String("config"), override)
	if flagErr != nil {
		return ucli.Exit("dsrd director: "+flagErr.Error(), exitUsage)
	}
	if err != nil {
		return loadError("director", err)
	}
	log, err := daemonLogger(c, cfg.Node)
	if err != nil {
		return err
	}
	m := newMetrics(cfg.Node.MetricsAddress, metrics.RoleDirector)
	d, err := director.New(director.Options{ConfigPath: c.String("config"), Override: override, Logger: log, Metrics: m,
		Stopping: func(atMost time.Duration) { extendStop(log, atMost) }})
	if err != nil {
		return loadError("director", err)
	}
	ctx := c.Context
	stopMetrics, err := startMetrics(ctx, cfg.Node.MetricsAddress, m, log)
	if err != nil {
		return ucli.Exit("dsrd director: "+err.Error(), exitFailure)
	}
	defer stopMetrics()
	go reloadOnHUP(ctx, log, hup, d.Reload) // ends when ctx ends
	return runDaemon(ctx, log, "director", d.Run, d.Ready())
}

func witnessRun(c *ucli.Context) error {
	cfg, err := config.LoadWitness(c.String("config"))
	if err != nil {
		return loadError("witness", err)
	}
	if err := overrideNode(c, &cfg.Node, &cfg.Cluster); err != nil {
		return ucli.Exit("dsrd witness: "+err.Error(), exitUsage)
	}
	if err := cfg.Validate(); err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd witness: %s with command-line overrides: %v", c.String("config"), err), exitFailure)
	}
	log, err := daemonLogger(c, cfg.Node)
	if err != nil {
		return err
	}
	m := newMetrics(cfg.Node.MetricsAddress, metrics.RoleWitness)
	w := director.NewWitness(cfg, log, m)
	stopMetrics, err := startMetrics(c.Context, cfg.Node.MetricsAddress, m, log)
	if err != nil {
		return ucli.Exit("dsrd witness: "+err.Error(), exitFailure)
	}
	defer stopMetrics()
	return runDaemon(c.Context, log, "witness", w.Run, w.Ready())
}

// newMetrics returns the metrics of a daemon whose endpoint is at addr;
// nil (metrics off) when addr is empty.
func newMetrics(addr string, role metrics.Role) *metrics.Set {
	if addr == "" {
		return nil
	}
	return metrics.New(role)
}

// startMetrics opens the metrics endpoint on addr and serves m there
// until ctx ends or stop is called; stop then waits for the endpoint to
// shut down (bounded). With addr empty it opens nothing. It fails when
// addr cannot be bound.
func startMetrics(ctx context.Context, addr string, m *metrics.Set, log *slog.Logger) (stop func(), err error) {
	if addr == "" || m == nil {
		return func() {}, nil
	}
	ln, err := metrics.Listen(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	page := statuspage.New(m.Snapshot, log.With("component", "status-page"))
	m.ServePage(page.Handler())
	var wg sync.WaitGroup
	wg.Go(func() { page.Run(ctx) }) // ends when ctx ends
	wg.Go(func() {                  // ends when ctx ends: Serve shuts the server down
		if err := m.Serve(ctx, ln, log); err != nil {
			log.Error("metrics endpoint stopped", "error", err)
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// runDaemon runs a daemon, tells systemd when it is ready and when it
// stops, and turns its error into the exit.
func runDaemon(ctx context.Context, log *slog.Logger, name string, run func(context.Context) error, ready <-chan struct{}) error {
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	select {
	case <-ready:
		if err := systemd.Notify("READY=1"); err != nil {
			log.Warn("telling systemd we are ready", "error", err)
		}
		log.Info(name + " ready")
	case err := <-done:
		if err == nil {
			return nil
		}
		return ucli.Exit(fmt.Sprintf("dsrd %s: %v", name, err), exitFailure)
	}
	var err error
	select {
	case err = <-done:
		_ = systemd.Notify("STOPPING=1")
	case <-ctx.Done():
		// The stop begins now (SIGTERM), not when it ends: systemd shows
		// the unit as deactivating while the daemon drains.
		_ = systemd.Notify("STOPPING=1")
		err = <-done
	}
	if err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd %s: %v", name, err), exitFailure)
	}
	return nil
}

// stopMargin is added to a stop's announced length: the rest of the
// shutdown (IPVS left as it is, Raft closed, sockets) after the drain.
const stopMargin = 10 * time.Second

// extendStop tells systemd the stop under way takes up to atMost more (plus
// stopMargin), so that a drain_delay longer than TimeoutStopSec= is not
// killed half way; outside systemd it does nothing.
func extendStop(log *slog.Logger, atMost time.Duration) {
	us := (atMost + stopMargin).Microseconds()
	if err := systemd.Notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", us)); err != nil {
		log.Warn("telling systemd how long the stop takes", "error", err)
	}
}

// notifyHUP starts catching SIGHUP; stop restores its default action.
// The channel holds one signal: HUPs that arrive while one waits for its
// reload ask for the same re-read.
func notifyHUP() (hup <-chan os.Signal, stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

// reloadOnHUP reloads on every signal received on hup until ctx ends.
func reloadOnHUP(ctx context.Context, log *slog.Logger, hup <-chan os.Signal, reload func(context.Context) (api.ReloadResult, error)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		_ = systemd.Notify("RELOADING=1")
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := reload(rctx)
		cancel()
		switch {
		case err != nil:
			log.Error("reload failed; the running configuration stays", "error", err)
		case !res.OK && res.NotSubmitted:
			log.Error("reload: the file is valid but the cluster did not take it; the running configuration stays", "error", strings.Join(res.Errors, "; "))
		case !res.OK:
			log.Error("reload rejected an invalid file; the running configuration stays", "errors", strings.Join(res.Errors, "; "))
		default:
			log.Info("reloaded", "generation", res.Generation, "changed", res.Changed)
		}
		_ = systemd.Notify("READY=1")
	}
}
