package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// errNotOwner makes failover kill exit with status 3.
var errNotOwner = errors.New("not the owner")

// killCmd is a crash as systemd sees it: SIGKILL to the daemon's processes,
// then at once the unit's ExecStopPost command (the release command, the
// arguments after --), run in the director's network namespace.
//
// On real hardware systemd starts ExecStopPost within milliseconds of the
// crash. Under TCG starting a program takes 0.1 to 1 s, which is not slow
// timers but slow emulation: the daemons' timers run in real time, so a
// release started only after the kill would lose races it wins on real
// hardware (a new leader would hold the VIP while the dead one still did).
// So with -input FILE the release command is started before the kill, with
// every "{}" in its arguments replaced by a FIFO, from which it reads FILE's
// content (its configuration): it starts up, opens the FIFO and waits; the
// kill then writes FILE into the FIFO and the command does its work at once.
// Its start-up is paid before the kill; everything it does after reading
// its input is measured.
func killCmd(args []string) error {
	fs := flag.NewFlagSet("kill", flag.ExitOnError)
	pids := fs.String("pid", "", "PID,... to SIGKILL, in this order; -PGID for a whole process group (required)")
	ns := fs.String("netns", "", "network namespace of the release command")
	input := fs.String("input", "", "start the release command before the kill; it reads this file's content from the FIFO named {} in its arguments")
	timeout := fs.Duration("timeout", 20*time.Second, "bound of the release command")
	logPath := fs.String("log", "", "append the release command's output to this file (default: stderr)")
	owner := fs.String("owner", "", "NS: kill only if NS's eth0 holds -vip right before the kill; else exit 3")
	vip := fs.String("vip", "203.0.113.10", "the VIP -owner looks for")
	_ = fs.Parse(args)
	release := fs.Args()
	if *pids == "" {
		return errors.New("-pid is required")
	}
	if len(release) > 0 && *ns == "" {
		return errors.New("a release command needs -netns")
	}
	if *input != "" && len(release) == 0 {
		return errors.New("-input needs a release command")
	}
	var list []int
	for _, p := range strings.Split(*pids, ",") {
		n, err := strconv.Atoi(p)
		if err != nil || n == 0 || n == 1 || n == -1 {
			return fmt.Errorf("bad pid %q", p)
		}
		list = append(list, n)
	}

	var (
		cmd    *exec.Cmd
		done   chan error
		feed   *os.File
		data   []byte
		rstart time.Time
	)
	if len(release) > 0 {
		var fifo string
		if *input != "" {
			var err error
			if data, err = os.ReadFile(*input); err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "failover-kill-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			fifo = filepath.Join(dir, "input")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				return err
			}
			for i, a := range release {
				release[i] = strings.ReplaceAll(a, "{}", fifo)
			}
		}
		cmd = exec.Command(release[0], release[1:]...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if *logPath != "" {
			f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			cmd.Stdout, cmd.Stderr = f, f
		}
		if *input != "" {
			rstart = time.Now()
			if err := startIn(*ns, cmd); err != nil {
				return err
			}
			done = make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			if feed, err = openWriter(fifo, done, *timeout); err != nil {
				_ = cmd.Process.Kill()
				return fmt.Errorf("%s: %w", strings.Join(release, " "), err)
			}
			// The command now returns from open and blocks in read: let
			// it get there, and the machine settle from its start.
			time.Sleep(300 * time.Millisecond)
		}
	}

	if *owner != "" {
		w, err := newVIPWatcher(*owner, "eth0", *vip)
		if err != nil {
			return err
		}
		held, err := w.held()
		w.close()
		if err != nil {
			return err
		}
		if !held {
			if cmd != nil && cmd.Process != nil {
				_ = cmd.Process.Kill()
			}
			return fmt.Errorf("%s does not hold %s (any more): nothing killed: %w", *owner, *vip, errNotOwner)
		}
	}
	killed := time.Now()
	for _, p := range list {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil {
			return fmt.Errorf("kill %d: %w", p, err)
		}
	}
	if cmd == nil {
		fmt.Printf("killed=%d\n", killed.UnixNano())
		return nil
	}
	if feed != nil {
		_, err := feed.Write(data)
		feed.Close()
		if err != nil {
			_ = cmd.Process.Kill()
			return fmt.Errorf("feed the release command: %w", err)
		}
	} else {
		if err := startIn(*ns, cmd); err != nil {
			return err
		}
		done = make(chan error, 1)
		go func() { done <- cmd.Wait() }()
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(*timeout):
		_ = cmd.Process.Kill()
		err = fmt.Errorf("still running after %s", *timeout)
	}
	released := time.Now()
	fmt.Printf("killed=%d released=%d", killed.UnixNano(), released.UnixNano())
	if !rstart.IsZero() {
		fmt.Printf(" prestart_ms=%.0f", float64(killed.Sub(rstart))/1e6)
	}
	fmt.Println()
	if err != nil {
		return fmt.Errorf("%s: %w", strings.Join(release, " "), err)
	}
	return nil
}

// openWriter opens the FIFO for writing once its reader has opened it (a
// non-blocking open fails with ENXIO until then), unless the reader ends
// first or time runs out.
func openWriter(fifo string, done <-chan error, timeout time.Duration) (*os.File, error) {
	deadline := time.Now().Add(timeout)
	for {
		fd, err := syscall.Open(fifo, syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if err == nil {
			return os.NewFile(uintptr(fd), fifo), nil
		}
		if !errors.Is(err, syscall.ENXIO) {
			return nil, err
		}
		select {
		case err := <-done:
			return nil, fmt.Errorf("ended before reading its input: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("did not open its input within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startIn starts cmd in the network namespace ns: the child of a fork
// inherits the namespaces of the thread that forks, so the fork happens on
// a locked thread moved into ns. The thread is never moved back: it ends
// with the goroutine.
func startIn(ns string, cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(ns)
		if err != nil {
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter %s: %w", ns, err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}
