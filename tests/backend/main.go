// Command backend is the real server of the dsrd test lab: it answers on TCP,
// HTTP and UDP with its name, so that a test can tell which backend a load
// balanced connection reached.
//
//	backend --name rs1 --http :80 --tcp :9000 --udp :9000
//
// TCP: on connect it writes its name and a newline, then echoes every line the
// client sends (useful for long-lived connections). HTTP: GET / answers the
// name and a newline, with the client's address in the X-Client-Addr header;
// /healthz answers 200. UDP: every datagram is answered with the name and a
// newline. Each of --tcp, --http and --udp can be repeated or given a comma
// separated list. An address without a host (":80") listens on every address,
// IPv4 and IPv6. The program exits on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(1)
	}
}

// config is what the command line asks for.
type config struct {
	name      string
	tcp       []string
	http      []string
	udp       []string
	readyFile string
}

// listFlag is a flag that can be repeated and takes comma separated lists.
type listFlag struct{ values *[]string }

func (f listFlag) String() string {
	if f.values == nil {
		return ""
	}
	return strings.Join(*f.values, ",")
}

func (f listFlag) Set(s string) error {
	for _, v := range strings.Split(s, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			return fmt.Errorf("empty address in %q", s)
		}
		*f.values = append(*f.values, v)
	}
	return nil
}

// parseFlags reads the command line into a config.
func parseFlags(args []string, output io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.StringVar(&cfg.name, "name", "", "the name this backend answers with (required)")
	fs.Var(listFlag{&cfg.tcp}, "tcp", "TCP greeting and line echo on `ADDR` (repeatable, comma lists)")
	fs.Var(listFlag{&cfg.http}, "http", "HTTP on `ADDR` (repeatable, comma lists)")
	fs.Var(listFlag{&cfg.udp}, "udp", "UDP name replies on `ADDR` (repeatable, comma lists)")
	fs.StringVar(&cfg.readyFile, "ready-file", "", "write the bound addresses to `FILE` once every listener is up")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if cfg.name == "" {
		return config{}, errors.New("--name is required")
	}
	if len(cfg.tcp)+len(cfg.http)+len(cfg.udp) == 0 {
		return config{}, errors.New("nothing to listen on: give --tcp, --http or --udp")
	}
	return cfg, nil
}

// run parses args, listens and serves until ctx is done.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("name", cfg.name)
	srv, err := listen(cfg, log)
	if err != nil {
		return err
	}
	if cfg.readyFile != "" {
		if err := writeReadyFile(cfg.readyFile, srv.addrs()); err != nil {
			srv.close()
			return err
		}
	}
	return srv.serve(ctx)
}

// writeReadyFile writes one "proto address" line per listener, atomically, so
// that a reader that sees the file sees all of it.
func writeReadyFile(path string, addrs []string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write ready file: %w", err)
	}
	return nil
}
