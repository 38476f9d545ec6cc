package cli

import (
	"errors"
	"fmt"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/config"
)

func configCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "config",
		Usage: "work with configuration files",
		Subcommands: []*ucli.Command{{
			Name:      "check",
			Usage:     "validate configuration files; print FILE: ok, or every error as file:line:col: message",
			ArgsUsage: "FILE [FILE...]",
			Description: "Checks each file completely and reports every error it finds, not just the first.\n" +
				"The kind of file (director, witness, realserver) is detected from its keys unless --kind is given.\n" +
				"Exit status: 0 when every file is valid, 1 when any is not, 2 on usage errors.",
			Flags: []ucli.Flag{
				&ucli.StringFlag{Name: "kind", Usage: "director, witness or realserver (default: detect from the file)", EnvVars: []string{"DSRD_CONFIG_KIND"}},
			},
			Action: configCheck,
		}, configImportCommand()},
	}
}

func configCheck(c *ucli.Context) error {
	if c.NArg() == 0 {
		return ucli.Exit("dsrd config check: name at least one FILE", exitUsage)
	}
	kind := config.Kind(c.String("kind"))
	switch kind {
	case "", config.KindDirector, config.KindWitness, config.KindRealserver:
	default:
		return ucli.Exit(fmt.Sprintf("dsrd config check: --kind %q: want director, witness or realserver", kind), exitUsage)
	}
	failed := false
	for _, name := range c.Args().Slice() {
		data, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "%s: %v\n", name, errors.Unwrap(err))
			failed = true
			continue
		}
		warns, err := config.CheckWarnings(name, data, kind)
		for _, w := range warns {
			// A warning is not an error: the file is accepted as
			// written, and the line says how dsrd reads it.
			w.Msg = "warning: " + w.Msg
			fmt.Fprintln(c.App.ErrWriter, w.Error())
		}
		if err != nil {
			fmt.Fprintln(c.App.ErrWriter, err)
			failed = true
			continue
		}
		fmt.Fprintf(c.App.Writer, "%s: ok\n", name)
	}
	if failed {
		return ucli.Exit("", exitFailure)
	}
	return nil
}
