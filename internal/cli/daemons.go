package cli

import (
	ucli "github.com/urfave/cli/v2"
)

// configFlag is the --config flag of a daemon, with its DSRD_CONFIG variable.
func configFlag(def string) *ucli.StringFlag {
	return &ucli.StringFlag{Name: "config", Aliases: []string{"c"}, Value: def, Usage: "configuration file", EnvVars: []string{"DSRD_CONFIG"}}
}
