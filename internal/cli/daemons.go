package cli

import (
	ucli "github.com/urfave/cli/v2"
)

// configFlag is the --config flag of a daemon, with its DSRD_CONFIG variable.
func configFlag(def string) *ucli.StringFlag {
	return &ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: def, Usage: "configuration file", EnvVars: []string{"DSRD_CONFIG"}}
}

func directorCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "director",
		Usage: "run a director: Raft member, IPVS programmer, health checker, VIP owner while leader",
		Flags: []ucli.Flag{configFlag("/etc/dsrd/director.yaml")},
		Action: func(*ucli.Context) error {
			return notImplemented("director")
		},
	}
}

func witnessCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "witness",
		Usage: "run a witness: a Raft voter that never owns VIPs nor touches IPVS (the third vote of an HA pair)",
		Flags: []ucli.Flag{configFlag("/etc/dsrd/witness.yaml")},
		Action: func(*ucli.Context) error {
			return notImplemented("witness")
		},
	}
}

func statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show the cluster, the VIP owner, services and reals with health, weight and connections",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print JSON for machines"},
			&ucli.StringFlag{Name: "socket", Value: "/run/dsrd/dsrd.sock", Usage: "the director's API socket", EnvVars: []string{"DSRD_API_SOCKET"}},
		},
		Action: func(*ucli.Context) error {
			return notImplemented("status")
		},
	}
}
