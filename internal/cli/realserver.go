package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/logging"
	"github.com/dsrd/dsrd/internal/systemd"
	"github.com/dsrd/dsrd/realserver"
)

const defaultRealserverConfig = "/etc/dsrd/realserver.yaml"

// realserverFlags are shared by the agent and its subcommands, so that
// `dsrd realserver check --vip ...` works without a file too.
func realserverFlags() []ucli.Flag {
	return []ucli.Flag{
		configFlag(defaultRealserverConfig),
		&ucli.StringSliceFlag{Name: "vip", Usage: "a VIP to put on lo (repeatable; replaces the file's vips)", EnvVars: []string{"DSRD_VIPS"}},
		&ucli.StringSliceFlag{Name: "interface", Usage: "an interface facing the directors (repeatable; replaces the file's interfaces)", EnvVars: []string{"DSRD_INTERFACES"}},
		&ucli.StringFlag{Name: "data-dir", Usage: "where original sysctl values and the drain flag are kept (default " + config.DefaultRealserverDataDir + ")", EnvVars: []string{"DSRD_DATA_DIR"}},
		&ucli.StringFlag{Name: "status-address", Usage: "host:port of the status endpoint for directors' agent checks (default off)", EnvVars: []string{"DSRD_STATUS_ADDRESS"}},
		&ucli.BoolFlag{Name: "tunnel", Usage: "also decapsulate tunnel forwarding (IP-in-IP): load ipip/ip6_tunnel, keep tunl0/ip6tnl0 up and rp_filter 0 on all and tunl0 (docs/tunnel.md)", EnvVars: []string{"DSRD_TUNNEL"}},
		&ucli.BoolFlag{Name: "cleanup-on-exit", Usage: "remove the VIPs and restore the sysctls when stopping", EnvVars: []string{"DSRD_CLEANUP_ON_EXIT"}},
		&ucli.DurationFlag{Name: "resync-interval", Usage: "re-apply everything this often even without a change event (a safety net: changes are repaired within a second)", EnvVars: []string{"DSRD_RESYNC_INTERVAL"}},
		&ucli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", EnvVars: []string{"DSRD_LOG_LEVEL"}},
		&ucli.StringFlag{Name: "log-format", Usage: "text or json", EnvVars: []string{"DSRD_LOG_FORMAT"}},
	}
}

func realserverCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "realserver",
		Usage: "run the backend agent: VIPs on lo, ARP sysctls, kept in place and repaired",
		Description: "Puts each VIP on lo (IPv4 /32, IPv6 /128 nodad), sets arp_ignore=1 and arp_announce=2 on all\n" +
			"and on the interfaces facing the directors, and repairs both within a second when something\n" +
			"undoes them: the VIPs and lo from netlink events, the sysctls (whose changes raise no netlink event)\n" +
			"by reading them every second. Without a configuration file, --vip (and --interface) are enough.\n" +
			"With --tunnel it also decapsulates the directors' IP-in-IP (forwarding: tunnel): ipip/ip6_tunnel\n" +
			"loaded, tunl0/ip6tnl0 up, rp_filter 0 on all and tunl0 (docs/tunnel.md).",
		Flags:  realserverFlags(),
		Action: realserverRun,
		Subcommands: []*ucli.Command{
			{
				Name:  "check",
				Usage: "diagnose this backend's DR setup; exit 0 only when every VIP would accept DR traffic",
				Flags: append(realserverFlags(),
					&ucli.BoolFlag{Name: "json", Usage: "print JSON for machines"},
					&ucli.StringSliceFlag{Name: "source", Usage: "a client address whose reverse path to check (repeatable)"},
				),
				Action: realserverCheck,
			},
			{
				Name:   "cleanup",
				Usage:  "remove the VIPs the agent added and restore the sysctls it changed",
				Flags:  realserverFlags(),
				Action: realserverCleanup,
			},
			{
				Name:   "drain",
				Usage:  "make the status endpoint report draining, so directors set this backend's weight to 0",
				Flags:  realserverFlags(),
				Action: func(c *ucli.Context) error { return realserverDrain(c, true) },
			},
			{
				Name:   "undrain",
				Usage:  "end a drain: the status endpoint reports ok again when the setup is",
				Flags:  realserverFlags(),
				Action: func(c *ucli.Context) error { return realserverDrain(c, false) },
			},
		},
	}
}

// loadRealserver reads the configuration file, or builds one from flags
// alone when the default file does not exist and --vip is given, then
// applies flags and DSRD_* variables over it.
func loadRealserver(c *ucli.Context) (config.Realserver, error) {
	path := c.String("config")
	cfg, err := config.LoadRealserver(path)
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist) && !c.IsSet("config") && c.IsSet("vip"):
		cfg = &config.Realserver{
			DataDir:        config.DefaultRealserverDataDir,
			LogLevel:       config.DefaultLogLevel,
			LogFormat:      config.DefaultLogFormat,
			ResyncInterval: config.Duration(config.DefaultResyncInterval),
		}
	case errors.Is(err, fs.ErrNotExist):
		return config.Realserver{}, ucli.Exit(fmt.Sprintf("dsrd realserver: %s does not exist: give --config FILE, or --vip ADDR for a file-less setup", path), exitUsage)
	default:
		return config.Realserver{}, ucli.Exit(err.Error(), exitFailure)
	}
	if c.IsSet("vip") {
		cfg.VIPs = cfg.VIPs[:0]
		for _, s := range c.StringSlice("vip") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return config.Realserver{}, ucli.Exit(fmt.Sprintf("dsrd realserver: --vip %q: not an IP address", s), exitUsage)
			}
			cfg.VIPs = append(cfg.VIPs, a)
		}
	}
	if c.IsSet("interface") {
		cfg.Interfaces = c.StringSlice("interface")
	}
	if c.IsSet("data-dir") {
		cfg.DataDir = c.String("data-dir")
	}
	if c.IsSet("status-address") {
		cfg.StatusAddress = c.String("status-address")
	}
	if c.IsSet("tunnel") {
		cfg.Tunnel = c.Bool("tunnel")
	}
	if c.IsSet("cleanup-on-exit") {
		cfg.CleanupOnExit = c.Bool("cleanup-on-exit")
	}
	if c.IsSet("resync-interval") {
		cfg.ResyncInterval = config.Duration(c.Duration("resync-interval"))
	}
	if c.IsSet("log-level") {
		cfg.LogLevel = c.String("log-level")
	}
	if c.IsSet("log-format") {
		cfg.LogFormat = c.String("log-format")
	}
	return *cfg, nil
}

// RealserverAgentConfig translates a realserver configuration, defaults
// applied, into the agent's own input; the log settings are the command's.
// internal/config's tests use it to check that every file config accepts
// builds an agent.
func RealserverAgentConfig(c config.Realserver) realserver.Config {
	return realserver.Config{
		VIPs:           c.VIPs,
		Interfaces:     c.Interfaces,
		DataDir:        c.DataDir,
		CleanupOnExit:  c.CleanupOnExit,
		StatusAddress:  c.StatusAddress,
		ResyncInterval: c.ResyncInterval.D(),
		SYNCookies:     c.SYNCookies,
		Tunnel:         c.Tunnel,
	}
}

// newAgent loads the configuration and builds the agent and its logger.
func newAgent(c *ucli.Context) (*realserver.Agent, *slog.Logger, config.Realserver, error) {
	cfg, err := loadRealserver(c)
	if err != nil {
		return nil, nil, cfg, err
	}
	log, err := logging.New(c.App.ErrWriter, cfg.LogLevel, cfg.LogFormat, systemd.UnderJournal())
	if err != nil {
		return nil, nil, cfg, ucli.Exit("dsrd realserver: "+err.Error(), exitUsage)
	}
	agent, err := realserver.New(RealserverAgentConfig(cfg), log)
	if err != nil {
		return nil, nil, cfg, ucli.Exit("dsrd realserver: "+err.Error(), exitFailure)
	}
	return agent, log, cfg, nil
}

func realserverRun(c *ucli.Context) error {
	agent, log, _, err := newAgent(c)
	if err != nil {
		return err
	}
	defer agent.Close()
	ctx := c.Context
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	select {
	case <-agent.Ready():
		if err := systemd.Notify("READY=1"); err != nil {
			log.Warn("telling systemd we are ready", "error", err)
		}
		log.Info("realserver agent ready")
	case err := <-done:
		return ucli.Exit(fmt.Sprintf("dsrd realserver: %v", err), exitFailure)
	}
	err = <-done
	_ = systemd.Notify("STOPPING=1")
	if err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd realserver: %v", err), exitFailure)
	}
	return nil
}

func realserverCheck(c *ucli.Context) error {
	agent, _, _, err := newAgent(c)
	if err != nil {
		return err
	}
	defer agent.Close()
	var opts realserver.CheckOptions
	for _, s := range c.StringSlice("source") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return ucli.Exit(fmt.Sprintf("dsrd realserver check: --source %q: not an IP address", s), exitUsage)
		}
		opts.Sources = append(opts.Sources, a)
	}
	ctx, cancel := context.WithTimeout(c.Context, 10*time.Second)
	defer cancel()
	report, err := agent.Check(ctx, opts)
	if err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd realserver check: %v", err), exitUsage)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	} else if err := report.Table(c.App.Writer); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if !report.OK() {
		return ucli.Exit("", exitFailure)
	}
	return nil
}

func realserverCleanup(c *ucli.Context) error {
	agent, _, _, err := newAgent(c)
	if err != nil {
		return err
	}
	defer agent.Close()
	ctx, cancel := context.WithTimeout(c.Context, 30*time.Second)
	defer cancel()
	if err := agent.Cleanup(ctx); err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd realserver cleanup: %v", err), exitFailure)
	}
	return nil
}

func realserverDrain(c *ucli.Context, on bool) error {
	cfg, err := loadRealserver(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd realserver: %v", err), exitFailure)
	}
	if err := realserver.SetDrain(cfg.DataDir, on); err != nil {
		return ucli.Exit(fmt.Sprintf("dsrd realserver: %v", err), exitFailure)
	}
	state := "draining: directors' agent checks now see 503"
	if !on {
		state = "not draining"
	}
	fmt.Fprintln(c.App.Writer, state)
	return nil
}
