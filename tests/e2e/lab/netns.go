package lab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread that has entered h's network namespace. Sockets f
// opens belong to that namespace for their whole life, whichever goroutine
// uses them afterwards. f must not start goroutines that open sockets.
//
// The thread is never switched back: it stays locked and exits with its
// goroutine, so no goroutine ever runs in a namespace it did not ask for.
func Do(h Host, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		fd, err := unix.Open(filepath.Join("/run/netns", string(h)), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open network namespace %s: %w", h, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", h, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// Dial connects from h. The address must be a literal IP and port: a name
// lookup could run on another thread, in another namespace.
func Dial(ctx context.Context, h Host, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(h, func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, h, err)
	}
	return c, nil
}

// HTTPClient returns a client whose every request opens a new connection from
// h (no keep-alive, so that each request is a new flow for the load balancer)
// and takes at most timeout.
func HTTPClient(h Host, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			Proxy:             nil,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return Dial(ctx, h, network, addr)
			},
		},
	}
}

// WriteSysctl sets a sysctl in h's network namespace; name is dotted
// ("net.ipv4.conf.all.arp_ignore").
func WriteSysctl(h Host, name, value string) error {
	path := sysctlPath(name)
	return Do(h, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", name, value, h, err)
		}
		return nil
	})
}

// ReadSysctl reads a sysctl in h's network namespace.
func ReadSysctl(h Host, name string) (string, error) {
	var v string
	err := Do(h, func() error {
		b, err := os.ReadFile(sysctlPath(name))
		if err != nil {
			return fmt.Errorf("sysctl %s in %s: %w", name, h, err)
		}
		v = strings.TrimSpace(string(b))
		return nil
	})
	return v, err
}

// sysctlPath maps "net.ipv4.conf.all.arp_ignore" to its /proc/sys file.
func sysctlPath(name string) string {
	return filepath.Join("/proc/sys", strings.ReplaceAll(name, ".", "/"))
}
