package netnsutil

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run runs f on an OS thread inside the network namespace ns and returns
// f's error. Sockets and files f opens belong to ns for good; goroutines f
// starts do not run in ns. The caller's own thread never changes
// namespace. When ns is not open (netns.None()), f runs directly, in the
// caller's namespace.
//
// An error entering ns is returned without running f. An error putting the
// thread back after f is joined to f's error; the thread is then discarded.
func Run(ns netns.NsHandle, f func() error) error {
	if !ns.IsOpen() {
		return f()
	}
	return onThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return f()
	})
}

// New creates a network namespace and returns a handle to it, without
// moving the caller's thread: the namespace is created from a throwaway
// locked thread that is put back afterwards. The namespace lives as long as
// a handle to it (or a process inside it) does; the caller closes the
// handle.
func New() (netns.NsHandle, error) {
	ns := netns.None()
	err := onThread(func() error {
		var err error
		ns, err = netns.New() // creates the namespace and moves this thread into it
		if err != nil {
			return fmt.Errorf("create network namespace: %w", err)
		}
		return nil
	})
	if err != nil {
		if ns.IsOpen() {
			ns.Close()
		}
		return netns.None(), err
	}
	return ns, nil
}

// onThread runs f on a new goroutine locked to its OS thread and puts the
// thread back into the network namespace it started in once f returns,
// whatever f did to it. The goroutine ends before onThread returns.
func onThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The goroutine owns its thread until it ends. If the thread cannot
		// be put back into its namespace it stays locked: the runtime then
		// ends the thread with the goroutine instead of reusing it for other
		// goroutines in the wrong namespace.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore network namespace (thread discarded): %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
