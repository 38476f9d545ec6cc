package lab

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// CommandTimeout bounds each command a Must* helper runs. Under TCG a
// dynamically linked program takes 50 to 150 ms just to start; a command that
// takes 30 s is hung.
const CommandTimeout = 30 * time.Second

// Run runs a program and returns its standard output. The error, if any, has
// the command line and its standard error.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	return RunInput(ctx, nil, name, args...)
}

// RunInput is Run with stdin as the program's standard input.
func RunInput(ctx context.Context, stdin io.Reader, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", cmdline(name, args), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// InNS runs a program inside h's network namespace (ip netns exec).
func InNS(ctx context.Context, h Host, name string, args ...string) (string, error) {
	return Run(ctx, "ip", append([]string{"netns", "exec", string(h), name}, args...)...)
}

// IP runs "ip -n h ARGS", cheaper than InNS(h, "ip", ...).
func IP(ctx context.Context, h Host, args ...string) (string, error) {
	return Run(ctx, "ip", append([]string{"-n", string(h)}, args...)...)
}

// IPBatch runs the "ip" commands of lines, one per line, in h's network
// namespace with a single ip process.
func IPBatch(ctx context.Context, h Host, lines ...string) error {
	_, err := RunInput(ctx, strings.NewReader(strings.Join(lines, "\n")+"\n"), "ip", "-n", string(h), "-batch", "-")
	return err
}

// MustIP is IP that fails the test on error.
func MustIP(t testing.TB, h Host, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	out, err := IP(ctx, h, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// MustIPBatch is IPBatch that fails the test on error.
func MustIPBatch(t testing.TB, h Host, lines ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	if err := IPBatch(ctx, h, lines...); err != nil {
		t.Fatal(err)
	}
}

// MustInNS is InNS that fails the test on error.
func MustInNS(t testing.TB, h Host, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	out, err := InNS(ctx, h, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cmdline renders a command for error messages.
func cmdline(name string, args []string) string {
	parts := make([]string, 0, len(args)+1)
	for _, s := range append([]string{name}, args...) {
		if s == "" || strings.ContainsAny(s, " \t\n'\"\\$") {
			s = fmt.Sprintf("%q", s)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}
