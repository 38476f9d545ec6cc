// Command dsrd is the direct-server-return load-balancer manager: directors
// that program IPVS and own the VIPs through Raft, witnesses, and the
// realserver agent. See dsrd --help.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dsrd/dsrd/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
