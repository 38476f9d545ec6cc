package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/api"
)

// Bounds of the commands that talk to the local API. The daemon bounds its
// own work below these (see package api), so a timeout here means that it
// did not answer at all.
const (
	// statusTimeout covers the node's status and its members' answers.
	statusTimeout = 15 * time.Second
	// writeTimeout covers a write through Raft, forwarded to the leader
	// when need be, and a leadership transfer.
	writeTimeout = 60 * time.Second
)

// socketFlag is the --socket flag of the commands that talk to a daemon.
func socketFlag() *ucli.StringFlag {
	return &ucli.StringFlag{Name: "socket", Value: api.DefaultSocket, Usage: "the API socket of the director or witness on this host", EnvVars: []string{"DSRD_API_SOCKET"}}
}

// apiClient returns a client of the socket the flags name and a context
// bounded by timeout.
func apiClient(c *ucli.Context, timeout time.Duration) (*api.Client, context.Context, context.CancelFunc) {
	client := api.NewClient(c.String("socket"))
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	return client, ctx, func() {
		cancel()
		client.Close()
	}
}

// apiFailure is the exit of a command whose request failed: exit 1 with the
// daemon's message (or why the daemon could not be reached).
func apiFailure(cmd string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return ucli.Exit(fmt.Sprintf("dsrd %s: no answer in time; the outcome is unknown: %v", cmd, err), exitFailure)
	}
	return ucli.Exit(fmt.Sprintf("dsrd %s: %v", cmd, err), exitFailure)
}

// positional returns the command's arguments and applies the flags given
// after them: urfave/cli v2 stops parsing flags at the first argument, and
// operators type `dsrd cluster join d3 192.0.2.13:7946 --nonvoter`. "--"
// ends the flags.
func positional(c *ucli.Context) ([]string, error) {
	in := c.Args().Slice()
	var args []string
	for i := 0; i < len(in); i++ {
		a := in[i]
		if a == "--" {
			args = append(args, in[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			args = append(args, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := lookupFlag(c.Command.Flags, name)
		if f == nil {
			return nil, fmt.Errorf("flag provided but not defined: -%s", name)
		}
		if _, isBool := f.(*ucli.BoolFlag); isBool {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 == len(in) {
				return nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			value = in[i]
		}
		if err := c.Set(name, value); err != nil {
			return nil, fmt.Errorf("invalid value %q for flag -%s: %w", value, name, err)
		}
	}
	return args, nil
}

// lookupFlag finds the flag called name among flags.
func lookupFlag(flags []ucli.Flag, name string) ucli.Flag {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

// noArgs applies the flags of a command that takes no arguments, and
// refuses arguments.
func noArgs(c *ucli.Context, cmd string) error {
	args, err := positional(c)
	if err != nil {
		return usage(cmd, "%v", err)
	}
	if len(args) > 0 {
		return usage(cmd, "unexpected argument %q", args[0])
	}
	return nil
}

// usage is the exit of a wrong invocation.
func usage(cmd, format string, args ...any) error {
	return ucli.Exit(fmt.Sprintf("dsrd %s: %s", cmd, fmt.Sprintf(format, args...)), exitUsage)
}

// adminCommand is drain, enable or disable: it sets a real's admin state.
func adminCommand(name, state, summary, description string) *ucli.Command {
	return &ucli.Command{
		Name:        name,
		Usage:       summary,
		ArgsUsage:   "SERVICE REAL",
		Description: description + "\nSERVICE is a service's name or key (tcp/203.0.113.10:80), REAL a real server's IP address.",
		Flags:       []ucli.Flag{socketFlag()},
		Action: func(c *ucli.Context) error {
			args, err := positional(c)
			if err != nil {
				return usage(name, "%v", err)
			}
			if len(args) != 2 {
				return usage(name, "want SERVICE REAL")
			}
			service, realArg := args[0], args[1]
			real, err := parseReal(realArg)
			if err != nil {
				return usage(name, "REAL %q: want an IP address", realArg)
			}
			client, ctx, cancel := apiClient(c, writeTimeout)
			defer cancel()
			res, err := client.SetAdmin(ctx, api.AdminRequest{Service: service, Real: real, State: state})
			if err != nil {
				return apiFailure(name, err)
			}
			label := service
			if res.Service != "" && res.Service != service {
				label += " (" + res.Service + ")"
			}
			if res.Changed {
				fmt.Fprintf(c.App.Writer, "%s %s: %s -> %s\n", label, real, res.Previous, state)
			} else {
				fmt.Fprintf(c.App.Writer, "%s %s: already %s\n", label, real, state)
			}
			return nil
		},
	}
}

// parseReal accepts an IP address, or IP:port (the port is the service's in
// DR mode, so it is dropped).
func parseReal(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr(), nil
}

func drainCommand() *ucli.Command {
	return adminCommand("drain", "drained", "drain a real server: weight 0, established connections continue",
		"Sets the real's weight to 0 in IPVS on every director: it takes no new connections and keeps its\n"+
			"established ones. The state goes through Raft, so it holds across restarts and failovers,\n"+
			"until dsrd enable.")
}

func enableCommand() *ucli.Command {
	return adminCommand("enable", "enabled", "enable a real server again after drain or disable",
		"Gives the real its configured weight back on every director (when its health checks pass).")
}

func disableCommand() *ucli.Command {
	return adminCommand("disable", "disabled", "disable a real server: remove it from IPVS on every director",
		"Removes the real from IPVS on every director; unlike drain, its established connections are not\n"+
			"kept. The state goes through Raft, so it holds across restarts and failovers, until dsrd enable.")
}

func failoverCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "failover",
		Usage: "hand Raft leadership, and with it the VIPs, to another director",
		Description: "Asks the leader to hand leadership over: to the member --to names, or to the most up-to-date\n" +
			"voter. The new leader takes the VIPs; established flows continue (mh scheduling, sloppy_tcp).",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "to", Usage: "the member `ID` to hand leadership to (default: the most up-to-date voter)"},
			socketFlag(),
		},
		Action: func(c *ucli.Context) error {
			if err := noArgs(c, "failover"); err != nil {
				return err
			}
			client, ctx, cancel := apiClient(c, writeTimeout)
			defer cancel()
			res, err := client.Failover(ctx, c.String("to"))
			if err != nil {
				return apiFailure("failover", err)
			}
			fmt.Fprintf(c.App.Writer, "leadership moved from %s to %s\n", orDash(res.From), orDash(res.To))
			return nil
		},
	}
}

func reloadCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "reload",
		Usage: "make the director re-read its configuration file (as SIGHUP does)",
		Description: "The director checks the file completely first: when it is invalid, every error is printed as\n" +
			"file:line:col: message, nothing changes (the running configuration stays) and the exit status\n" +
			"is 1. A valid file is submitted to the cluster through the leader.",
		Flags: []ucli.Flag{socketFlag()},
		Action: func(c *ucli.Context) error {
			if err := noArgs(c, "reload"); err != nil {
				return err
			}
			client, ctx, cancel := apiClient(c, writeTimeout)
			defer cancel()
			res, err := client.Reload(ctx)
			if err != nil {
				return apiFailure("reload", err)
			}
			if !res.OK {
				for _, e := range res.Errors {
					fmt.Fprintln(c.App.ErrWriter, e)
				}
				return ucli.Exit("dsrd reload: "+reloadFailure(res), exitFailure)
			}
			if res.Changed {
				fmt.Fprintf(c.App.Writer, "reloaded: the configuration changed, now generation %d\n", res.Generation)
			} else {
				fmt.Fprintf(c.App.Writer, "reloaded: no change (generation %d)\n", res.Generation)
			}
			return nil
		},
	}
}

func clusterCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "cluster",
		Usage: "list, add and remove the members of the Raft cluster",
		Subcommands: []*ucli.Command{
			{
				Name:        "members",
				Usage:       "list the members with their address, suffrage and the leader",
				Description: "Prints the Raft configuration as the node on this host knows it.",
				Flags:       []ucli.Flag{socketFlag()},
				Action:      clusterMembers,
			},
			{
				Name:      "join",
				Usage:     "add a member to the cluster (a voter unless --nonvoter)",
				ArgsUsage: "ID ADDRESS",
				Description: "Adds the node ID, reachable on its Raft port at ADDRESS (ip:port), through the leader.\n" +
					"Start the new node first, with no Raft state and set to join rather than bootstrap.",
				Flags: []ucli.Flag{
					&ucli.BoolFlag{Name: "nonvoter", Usage: "add a member that replicates the log without voting"},
					socketFlag(),
				},
				Action: clusterJoin,
			},
			{
				Name:        "remove",
				Usage:       "remove a member from the cluster",
				ArgsUsage:   "ID",
				Description: "Removes the node ID from the Raft configuration, through the leader.",
				Flags:       []ucli.Flag{socketFlag()},
				Action:      clusterRemove,
			},
		},
	}
}

func clusterMembers(c *ucli.Context) error {
	if err := noArgs(c, "cluster members"); err != nil {
		return err
	}
	client, ctx, cancel := apiClient(c, statusTimeout)
	defer cancel()
	ms, err := client.Members(ctx)
	if err != nil {
		return apiFailure("cluster members", err)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tSUFFRAGE\tLEADER")
	for _, m := range ms {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.Address, m.Suffrage, leader)
	}
	return tw.Flush()
}

func clusterJoin(c *ucli.Context) error {
	args, err := positional(c)
	if err != nil {
		return usage("cluster join", "%v", err)
	}
	if len(args) != 2 {
		return usage("cluster join", "want ID ADDRESS")
	}
	req := api.JoinRequest{ID: args[0], Address: args[1], Voter: !c.Bool("nonvoter")}
	if err := api.ValidJoin(req); err != nil {
		return usage("cluster join", "%v", err)
	}
	client, ctx, cancel := apiClient(c, writeTimeout)
	defer cancel()
	if err := client.Join(ctx, req); err != nil {
		return apiFailure("cluster join", err)
	}
	kind := "a voter"
	if !req.Voter {
		kind = "a nonvoter"
	}
	fmt.Fprintf(c.App.Writer, "%s (%s) joined as %s\n", req.ID, req.Address, kind)
	return nil
}

func clusterRemove(c *ucli.Context) error {
	args, err := positional(c)
	if err != nil {
		return usage("cluster remove", "%v", err)
	}
	if len(args) != 1 || args[0] == "" {
		return usage("cluster remove", "want ID")
	}
	id := args[0]
	client, ctx, cancel := apiClient(c, writeTimeout)
	defer cancel()
	if err := client.Remove(ctx, id); err != nil {
		return apiFailure("cluster remove", err)
	}
	fmt.Fprintf(c.App.Writer, "%s removed\n", id)
	return nil
}

func bgpCommand() *ucli.Command {
	drain := func(name string, on bool) func(c *ucli.Context) error {
		return func(c *ucli.Context) error {
			if err := noArgs(c, "bgp "+name); err != nil {
				return err
			}
			client, ctx, cancel := apiClient(c, writeTimeout)
			defer cancel()
			res, err := client.DrainBGP(ctx, api.BGPDrainRequest{Drain: on, Force: c.Bool("force"), Node: c.String("node")})
			if err != nil {
				return apiFailure("bgp "+name, err)
			}
			who := "this director"
			if res.Node != "" {
				who = res.Node
			}
			switch {
			case !res.Draining && !res.Changed:
				fmt.Fprintf(c.App.Writer, "%s was not drained\n", who)
			case !res.Draining:
				fmt.Fprintf(c.App.Writer, "undrained: %s announces its bgp VIPs again (as the rules allow)\n", who)
			case !res.Changed:
				fmt.Fprintf(c.App.Writer, "%s is drained already\n", who)
			default:
				fmt.Fprintf(c.App.Writer, "drained: %s announces as leaving for %s, then withdraws, until dsrd bgp undrain (restarts keep it drained)\n", who, res.DrainDelay)
				for _, v := range res.Orphaned {
					fmt.Fprintf(c.App.ErrWriter, "warning: no other director announces %s\n", v)
				}
			}
			return nil
		}
	}
	return &ucli.Command{
		Name:  "bgp",
		Usage: "drain or undrain a director's BGP announcements",
		Subcommands: []*ucli.Command{
			{
				Name:  "drain",
				Usage: "announce this director's bgp VIPs as leaving (GRACEFUL_SHUTDOWN) for bgp.drain_delay, then withdraw them",
				Description: "For maintenance: routers that honour the community move the flows to the other directors\n" +
					"while this one still forwards; then its routes are withdrawn. The cluster records the drain\n" +
					"through Raft (it lasts across restarts, until dsrd bgp undrain) and drains one director at a\n" +
					"time. Refused while another director is drained, or when a VIP would be left with no other\n" +
					"director announcing it, unless --force.",
				Flags:  []ucli.Flag{&ucli.BoolFlag{Name: "force", Usage: "drain even when another director is drained or a VIP would have no announcer left"}, socketFlag()},
				Action: drain("drain", true),
			},
			{
				Name:  "undrain",
				Usage: "announce a drained director's bgp VIPs again",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "node", Usage: "undrain this member (default: this director), e.g. one that is gone"},
					socketFlag(),
				},
				Action: drain("undrain", false),
			},
		},
	}
}
