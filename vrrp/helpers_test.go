package vrrp

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
)

// recorder is an AnnounceFunc that records when (relative to its start,
// in the synctest bubble's fake time) and what it was asked to send.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	sends []send
	fail  error
}

type send struct {
	at   time.Duration
	what string
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) announce(ctx context.Context, ifname string, addr netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends = append(r.sends, send{at: time.Since(r.start), what: ifname + " " + addr.String()})
	return r.fail
}

// take returns the sends recorded since the last take, as "1.5s eth0
// 203.0.113.10", in time order; sends at the same instant (from different
// VIPs' goroutines) are sorted by interface and address.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sends
	r.sends = nil
	slices.SortStableFunc(s, func(a, b send) int {
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return strings.Compare(a.what, b.what)
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = fmt.Sprintf("%v %s", x.at, x.what)
	}
	return out
}

func testLogger(t *testing.T) (*slog.Logger, *testutil.SyncBuffer) {
	t.Helper()
	buf := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", buf.String())
		}
	})
	return log, buf
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func vip(addr, ifname string, a Announce) VIP {
	return VIP{Address: netip.MustParseAddr(addr), Interface: ifname, Announce: a}
}

// once is an Announce with a single announcement and no refresh.
func once() Announce { return Announce{Count: 1, Refresh: RefreshOff} }

func wantOps(t *testing.T, k *FakeKernel, want ...string) {
	t.Helper()
	got := k.Calls()
	k.ResetCalls()
	if !slices.Equal(got, want) {
		t.Fatalf("kernel operations:\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func wantLines(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s:\n got:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// wantState compares the interfaces other than lo, one a line, sorted:
// "eth0 up 192.0.2.1/24 203.0.113.10/32".
func wantState(t *testing.T, k *FakeKernel, want string) {
	t.Helper()
	if got := kernelState(t, k); got != want {
		t.Fatalf("kernel state:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func kernelState(t *testing.T, k *FakeKernel) string {
	t.Helper()
	links, err := k.Links()
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(links, func(a, b netkernel.Link) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	for _, l := range links {
		if l.Loopback {
			continue
		}
		b.WriteString(l.Name)
		if l.Up {
			b.WriteString(" up")
		} else {
			b.WriteString(" down")
		}
		addrs, err := k.Addrs(l.Name)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(addrs, func(a, b netkernel.Addr) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
		for _, a := range addrs {
			b.WriteString(" " + a.Prefix.String())
		}
		b.WriteString("\n")
	}
	return b.String()
}

// setLink creates, changes or (with LinkMissing) deletes an interface as an
// operator would, and tells the watchers.
func setLink(k *FakeKernel, ifname string, status LinkStatus) {
	if status == LinkMissing {
		k.RemoveLink(ifname)
		return
	}
	up := status == LinkUp
	k.AddLink(netkernel.Link{Name: ifname, Up: up, Running: up})
}

// setLinkQuietly is setLink with the event lost, as a lost netlink
// notification: only a periodic check can catch it.
func setLinkQuietly(k *FakeKernel, ifname string, status LinkStatus) {
	k.LoseEvents(true)
	defer k.LoseEvents(false)
	setLink(k, ifname, status)
}
