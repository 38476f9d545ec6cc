package netnsutil

import (
	"errors"
	"net"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// current returns the network namespace of a locked thread of this
// process (all of them share one unless a thread was left behind).
func current(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ns, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func TestRunWithoutNamespaceRunsDirectly(t *testing.T) {
	want := errors.New("from f")
	ran := false
	if err := Run(netns.None(), func() error { ran = true; return want }); !errors.Is(err, want) {
		t.Errorf("Run = %v, want f's error", err)
	}
	if !ran {
		t.Error("f did not run")
	}
}

func TestNewAndRun(t *testing.T) {
	privileged.Require(t, privileged.NetNS("to create network namespaces"))
	host := current(t)
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ns.Equal(host) {
		t.Fatal("New returned the current namespace")
	}
	if now := current(t); !now.Equal(host) {
		t.Fatalf("New moved a thread to %s, was %s", now, host)
	}

	var inside netns.NsHandle
	var ifaces []net.Interface
	want := errors.New("from f")
	err = Run(ns, func() error {
		var err error
		if inside, err = netns.Get(); err != nil {
			return err
		}
		if ifaces, err = net.Interfaces(); err != nil {
			return err
		}
		return want
	})
	if !errors.Is(err, want) {
		t.Fatalf("Run = %v, want f's error", err)
	}
	defer inside.Close()
	if !inside.Equal(ns) {
		t.Errorf("f ran in %s, want %s", inside, ns)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Errorf("interfaces in the new namespace: %v, want only lo", ifaces)
	}
	if now := current(t); !now.Equal(host) {
		t.Errorf("after Run a thread is in %s, want %s", now, host)
	}

	// Many Runs at once leave every thread of the process where it was: a
	// thread put back into the pool outside the host namespace would show
	// up in a later goroutine.
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			if err := Run(ns, func() error { return nil }); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for range 32 {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			now, err := netns.Get()
			if err != nil {
				t.Error(err)
				return
			}
			defer now.Close()
			if !now.Equal(host) {
				t.Errorf("a thread is in %s, want %s", now, host)
			}
		})
	}
	wg.Wait()
}

// A handle that is not a network namespace fails to enter, and f does
// not run.
func TestRunBadHandle(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ran := false
	err = Run(netns.NsHandle(f.Fd()), func() error { ran = true; return nil })
	if err == nil || ran {
		t.Errorf("Run on /dev/null = %v (f ran: %v), want an error and f not run", err, ran)
	}
}
