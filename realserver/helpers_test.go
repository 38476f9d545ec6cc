package realserver

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// testLogger logs through t.Log, so a failing test shows what the agent said.
func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	vip4  = netip.MustParseAddr("203.0.113.10")
	vip4b = netip.MustParseAddr("203.0.113.11")
	vip6  = netip.MustParseAddr("2001:db8::10")
)

// newFakeHost is a fake with lo and eth0 (up, ARP, 192.0.2.2/24,
// 2001:db8:1::2/64), a default route via eth0.
func newFakeHost() *netkernel.Fake {
	fk := netkernel.NewFake()
	fk.AddLink(Link{Name: "eth0", Up: true, Running: true})
	must(fk.AddAddr(Addr{Link: "eth0", Prefix: netip.MustParsePrefix("192.0.2.2/24")}))
	must(fk.AddAddr(Addr{Link: "eth0", Prefix: netip.MustParsePrefix("2001:db8:1::2/64"), Flags: netkernel.FlagNoDAD}))
	fk.SetRoute(netip.MustParsePrefix("0.0.0.0/0"), "eth0")
	return fk
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func newTestAgent(t *testing.T, k Kernel, cfg Config) *Agent {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.ResyncInterval == 0 {
		// Long enough that no test sees a resync it did not ask for.
		cfg.ResyncInterval = time.Hour
	}
	a, err := New(cfg, testLogger(t), WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// runAgent runs a in the background until the test ends and waits until it
// is ready.
func runAgent(t *testing.T, a *Agent) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var (
		once sync.Once
		err  error
		done = make(chan struct{})
	)
	go func() {
		err = a.Run(ctx)
		close(done)
	}()
	stop = func() error {
		once.Do(func() {
			cancel()
			<-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	select {
	case <-a.Ready():
	case <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("agent not ready after 5s")
	}
	return stop
}

func hasAddr(t *testing.T, k Kernel, link string, p netip.Prefix) bool {
	t.Helper()
	addrs, err := k.Addrs("")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.Link == link && a.Prefix == p {
			return true
		}
	}
	return false
}

func sysctl(t *testing.T, k Kernel, path string) string {
	t.Helper()
	v, err := k.Sysctl(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
