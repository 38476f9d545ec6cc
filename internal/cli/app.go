// Package cli defines dsrd's command line: every command, its flags and the
// environment variables that stand in for them, and the wiring from a parsed
// command to the package that does the work. Precedence is flags, then
// DSRD_* environment variables, then the configuration file.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/version"
)

// Exit codes shared by every command.
const (
	exitOK      = 0
	exitFailure = 1 // the command ran and found a problem (bad config, broken setup)
	exitUsage   = 2 // wrong invocation
)

// NewApp returns the dsrd command line application writing to stdout and
// stderr.
func NewApp(stdout, stderr io.Writer) *ucli.App {
	return &ucli.App{
		Name:                 "dsrd",
		Usage:                "direct-server-return load balancing on Linux IPVS, with Raft-coordinated directors",
		Version:              version.String(),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideVersion:          true,
		ExitErrHandler:       func(*ucli.Context, error) {}, // Run reports errors and picks the code
		Commands: []*ucli.Command{
			directorCmd(),
			witnessCmd(),
			realserverCommand(),
			configCommand(),
			statusCommand(),
			drainCommand(),
			enableCommand(),
			disableCommand(),
			failoverCommand(),
			bgpCommand(),
			reloadCommand(),
			clusterCommand(),
			tlsCommand(),
			versionCommand(),
		},
	}
}

// Run runs the application with args (args[0] is the program name) and
// returns the process exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := NewApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	var ec ucli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "dsrd: %v\n", err)
	if isUsageError(err) {
		return exitUsage
	}
	return exitFailure
}

// isUsageError reports whether err comes from flag parsing rather than from
// a command's work; urfave/cli does not type these errors.
func isUsageError(err error) bool {
	msg := err.Error()
	for _, p := range []string{"flag provided but not defined", "flag needs an argument", "invalid value", "Required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func versionCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "version",
		Usage: "print dsrd's version, commit and Go version",
		Action: func(c *ucli.Context) error {
			fmt.Fprintln(c.App.Writer, version.String())
			return nil
		},
	}
}
