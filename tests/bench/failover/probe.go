package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// probeHTTP makes one HTTP/1.0 GET / on a new TCP connection, all of it
// bounded by timeout, and returns the backend's name (the first line of the
// body). HTTP/1.0 without keep-alive: the server closes, so reading to EOF
// ends the exchange.
func probeHTTP(target string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp4", target)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return "", err
	}
	host, _, _ := net.SplitHostPort(target)
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := io.ReadAll(io.LimitReader(c, 8192))
	if err != nil {
		return "", err
	}
	status, rest, _ := bytes.Cut(resp, []byte("\r\n"))
	if f := strings.Fields(string(status)); len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") || f[1] != "200" {
		return "", fmt.Errorf("bad answer %q", status)
	}
	_, body, ok := bytes.Cut(rest, []byte("\r\n\r\n"))
	if !ok {
		return "", errors.New("no body")
	}
	name, _, _ := bytes.Cut(body, []byte("\n"))
	if len(name) == 0 {
		return "", errors.New("empty body")
	}
	return string(name), nil
}

// probeTCP completes one TCP handshake with target, bounded by timeout, and
// resets the connection at once (SO_LINGER 0): no HTTP work for the backend,
// no TIME_WAIT on the client, and IPVS sees the connection end.
func probeTCP(target string, timeout time.Duration) (string, error) {
	c, err := net.DialTimeout("tcp4", target, timeout)
	if err != nil {
		return "", err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	return "tcp", c.Close()
}

// errClass is a one-word reason for a failed probe, for the logs.
func errClass(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "unreachable"
	}
	return "error"
}

func spreadCmd(args []string) error {
	fs := flag.NewFlagSet("spread", flag.ExitOnError)
	n := fs.Int("n", 30, "number of requests")
	target := fs.String("target", "203.0.113.10:80", "HTTP service to ask")
	timeout := fs.Duration("timeout", 2*time.Second, "bound of each request")
	_ = fs.Parse(args)
	counts := map[string]int{}
	failed := 0
	for i := 0; i < *n; i++ {
		name, err := probeHTTP(*target, *timeout)
		if err != nil {
			failed++
			continue
		}
		counts[name]++
	}
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Printf("%s %d\n", k, counts[k])
	}
	fmt.Printf("failed %d\n", failed)
	return nil
}

// record is one line of a log, written in the order results arrive.
type record string

func monitorCmd(args []string) error {
	fs := flag.NewFlagSet("monitor", flag.ExitOnError)
	out := fs.String("out", "", "directory for probes.log, vip.log and summary (required)")
	target := fs.String("target", "203.0.113.10:80", "HTTP service to probe")
	interval := fs.Duration("interval", 10*time.Millisecond, "time between probe starts")
	timeout := fs.Duration("timeout", 300*time.Millisecond, "bound of each probe")
	kind := fs.String("probe", "http", "http: GET / on a new connection; tcp: a TCP handshake only")
	vip := fs.String("vip", "203.0.113.10", "the VIP to look for on the directors")
	vipNS := fs.String("vip-ns", "dir1,dir2", "namespaces whose eth0 may hold the VIP (empty: no VIP watch)")
	vipPoll := fs.Duration("vip-poll", 500*time.Millisecond, "time between the polls that cross-check the VIP notifications")
	startPaused := fs.Bool("paused", false, "start with the probes paused (SIGUSR2 starts them)")
	maxRun := fs.Duration("max", 30*time.Minute, "stop by itself after this long (a bound, should the caller die)")
	_ = fs.Parse(args)
	if *out == "" {
		return errors.New("-out is required")
	}
	// One P: under TCG the scheduler's idle spinning on a second P costs
	// more than anything this program does.
	runtime.GOMAXPROCS(1)
	probeOnce := probeHTTP
	switch *kind {
	case "http":
	case "tcp":
		probeOnce = probeTCP
	default:
		return fmt.Errorf("-probe %q: want http or tcp", *kind)
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var watchers []*vipWatcher
	if *vipNS != "" {
		for _, ns := range strings.Split(*vipNS, ",") {
			w, err := newVIPWatcher(ns, "eth0", *vip)
			if err != nil {
				return err
			}
			defer w.close()
			watchers = append(watchers, w)
		}
	}

	probes, err := newLog(filepath.Join(*out, "probes.log"))
	if err != nil {
		return err
	}
	vips, err := newLog(filepath.Join(*out, "vip.log"))
	if err != nil {
		return err
	}

	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-sig:
		case <-time.After(*maxRun):
		}
		close(stop)
	}()

	var (
		wg               sync.WaitGroup
		nProbes, nFailed atomic.Int64
		paused           atomic.Bool
	)
	paused.Store(*startPaused)
	// SIGUSR1 pauses the probes, SIGUSR2 resumes them: between two
	// measurements the probes' load (a third of a CPU under TCG) would
	// only slow down the daemons the benchmark restarts.
	pause := make(chan os.Signal, 4)
	signal.Notify(pause, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range pause {
			paused.Store(s == syscall.SIGUSR1)
		}
	}()
	// Probes: one started every interval, whatever the others do, so that
	// the first success after an outage is seen within one interval.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(*interval)
		defer t.Stop()
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if paused.Load() {
				continue
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				start := time.Now()
				name, err := probeOnce(*target, *timeout)
				end := time.Now()
				nProbes.Add(1)
				if err != nil {
					nFailed.Add(1)
					probes.write(record(fmt.Sprintf("P %d %d 0 %s", start.UnixNano(), end.UnixNano(), errClass(err))))
					return
				}
				probes.write(record(fmt.Sprintf("P %d %d 1 %s", start.UnixNano(), end.UnixNano(), name)))
			}()
		}
	}()

	// The VIP's holders, logged when they change. Two holders at once is
	// a split brain.
	vs := &vipState{watchers: watchers, log: vips}
	var vipErr error
	if len(watchers) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vipErr = vs.run(stop, *vipPoll)
		}()
	}

	wg.Wait()
	signal.Stop(pause)
	probes.close()
	vips.close()
	summary := fmt.Sprintf("probes=%d failed=%d vip_changes=%d split_brain=%d split_brain_ms=%d vip_resyncs=%d vip_unconfirmed_overlaps=%d\n",
		nProbes.Load(), nFailed.Load(), vs.changes, vs.both, vs.bothFor.Milliseconds(), vs.resyncs, vs.transient)
	if err := os.WriteFile(filepath.Join(*out, "summary"), []byte(summary), 0o644); err != nil {
		return err
	}
	return vipErr
}

// lineLog writes records from many goroutines to a file, flushed every
// 50 ms so that a reader (failover event) sees them soon.
type lineLog struct {
	ch   chan record
	done chan struct{}
}

func newLog(path string) (*lineLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	l := &lineLog{ch: make(chan record, 4096), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case r, ok := <-l.ch:
				if !ok {
					return
				}
				w.WriteString(string(r))
				w.WriteByte('\n')
			case <-t.C:
				w.Flush()
			}
		}
	}()
	return l, nil
}

func (l *lineLog) write(r record) { l.ch <- r }

func (l *lineLog) close() {
	close(l.ch)
	<-l.done
}
