// Command healthcheck benchmarks the health check scheduler: thousands of TCP
// checks against loopback listeners, reporting the CPU share of one core,
// peak RSS and check-start jitter, with baseline rows that separate the
// scheduler's cost from the checker's.
//
// The target listeners run in a child process (this program re-executed
// with -serve), so their accept loops are not counted; the kernel's
// loopback work of each handshake mostly is, as it runs in the connecting
// process's system calls.
//
//	go run ./tests/bench/healthcheck -checks 10000 -interval 1s -duration 60s
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/ipvs"
)

func main() {
	var (
		serve       = flag.Bool("serve", false, "internal: run the target listeners and print their ports")
		checks      = flag.Int("checks", 10000, "number of checks")
		targets     = flag.Int("targets", 100, "number of loopback listeners the checks are spread over")
		interval    = flag.Duration("interval", time.Second, "check interval")
		timeout     = flag.Duration("timeout", time.Second, "check timeout")
		duration    = flag.Duration("duration", 60*time.Second, "measured duration of the tcp checker row")
		baseline    = flag.Duration("baseline", 20*time.Second, "measured duration of each baseline row")
		warmup      = flag.Duration("warmup", 2*time.Second, "unmeasured time before each row (covers the start-up spread)")
		concurrency = flag.Int("concurrency", healthcheck.DefaultConcurrency, "scheduler concurrency")
		only        = flag.String("rows", "ticker,noop,floor,dial,tcp", "rows to run, comma-separated: ticker, noop, floor, dial, tcp")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the measured rows to this file")
	)
	flag.Parse()
	log.SetFlags(0)
	raiseNoFile()
	if *serve {
		serveTargets(*targets)
		return
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	child, addrs, err := startTargets(*targets)
	if err != nil {
		log.Fatalf("starting the targets: %v", err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()

	cfg := benchConfig{
		checks: *checks, interval: *interval, timeout: *timeout,
		warmup: *warmup, concurrency: *concurrency, addrs: addrs,
		measured: &struct{ wall, cpu time.Duration }{},
	}
	rate := float64(*checks) / interval.Seconds()
	fmt.Printf("%d checks every %s (%.0f/s) over %d loopback listeners, concurrency %d, GOMAXPROCS %d, %d CPUs, %s\n\n",
		*checks, *interval, rate, len(addrs), *concurrency, runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())

	noop := healthcheck.CheckerFunc(func(context.Context, healthcheck.Target) healthcheck.Result {
		return healthcheck.Result{Up: true}
	})
	tcp, err := healthcheck.NewChecker(healthcheck.Spec{Params: healthcheck.Params{Timeout: *timeout}, Probe: healthcheck.TCP{}}, healthcheck.BuildOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	load0 := loadAvg()
	var rows []row
	for _, name := range strings.Split(*only, ",") {
		switch name {
		case "ticker":
			rows = append(rows, cfg.tickerRow(ctx, "1 ms ticker, no work (environment noise)", *baseline))
		case "noop":
			rows = append(rows, cfg.schedulerRow(ctx, "scheduler + no-op checker", noop, *baseline))
		case "floor":
			rows = append(rows, cfg.syscallLoopRow(ctx, "kernel floor: blocking socket/connect/close loop", *baseline))
		case "dial":
			rows = append(rows, cfg.dialLoopRow(ctx, "bare net.Dial loop (no scheduler)", *baseline))
		case "tcp":
			rows = append(rows, cfg.schedulerRow(ctx, "scheduler + tcp checker", tcp, *duration))
		default:
			log.Fatalf("unknown row %q", name)
		}
	}
	childCPU := processCPU(child.Process.Pid)
	printTable(os.Stdout, rows)
	fmt.Printf("\ntarget listeners (child process, not counted above): %s CPU in total\n", childCPU.Round(time.Millisecond))
	fmt.Printf("load average before: %s, after: %s (other processes compete for the same CPUs)\n", load0, loadAvg())
}

// benchConfig is what every row shares.
type benchConfig struct {
	checks      int
	interval    time.Duration
	timeout     time.Duration
	warmup      time.Duration
	concurrency int
	addrs       []netip.AddrPort
	// measured is where paced leaves the wall and CPU time it measured.
	measured *struct{ wall, cpu time.Duration }
}

// row is one line of the result table.
type row struct {
	name     string
	wall     time.Duration
	runs     uint64
	failed   uint64
	cpu      time.Duration
	maxRSS   int64 // KiB
	jitter   *histogram
	failures map[string]int
}

// schedulerRow runs the scheduler with checker for d after the warm-up.
func (b benchConfig) schedulerRow(ctx context.Context, name string, checker healthcheck.Checker, d time.Duration) row {
	var (
		measuring atomic.Bool
		runs      atomic.Uint64
		failed    atomic.Uint64
		jitter    = &histogram{}
		mu        sync.Mutex
		failures  = map[string]int{}
	)
	s := healthcheck.NewScheduler(healthcheck.SchedulerOptions{
		Concurrency: b.concurrency,
		OnRun: func(r healthcheck.Run) {
			if !measuring.Load() {
				return
			}
			runs.Add(1)
			jitter.record(r.Started.Sub(r.Scheduled))
			if !r.Result.Up {
				failed.Add(1)
				mu.Lock()
				failures[r.Result.Reason.String()]++
				mu.Unlock()
			}
		},
	})
	checks := make([]healthcheck.Check, b.checks)
	for i := range checks {
		addr := b.addrs[i%len(b.addrs)]
		svc := i / len(b.addrs)
		key := healthcheck.Key{Service: ipvs.FWMarkKey(ipvs.IPv4, uint32(1+svc)), Real: addr}
		checks[i] = healthcheck.Check{
			Key:     key,
			Target:  healthcheck.Target{Service: fmt.Sprintf("svc%04d", svc), Real: addr, Addr: addr},
			Type:    healthcheck.TypeTCP,
			Checker: checker,
			Params: healthcheck.Params{Interval: b.interval, Timeout: b.timeout, Rise: 2, Fall: 3,
				Initial: healthcheck.StateDown},
			Fingerprint: "bench",
		}
	}
	s.Update(checks)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(runCtx) }()

	sleep(ctx, b.warmup)
	measuring.Store(true)
	start, ru0 := time.Now(), rusage()
	sleep(ctx, d)
	wall, ru1 := time.Since(start), rusage()
	measuring.Store(false)
	cancel()
	<-done
	return row{name: name, wall: wall, runs: runs.Load(), failed: failed.Load(),
		cpu: cpuOf(ru1) - cpuOf(ru0), maxRSS: ru1.Maxrss, jitter: jitter, failures: failures}
}

// syscallLoopRow connects to the targets at the same rate from one thread
// with blocking system calls only (socket, connect, SO_LINGER 0, close): on
// loopback the kernel runs both ends of the handshake and the reset in
// these calls, so this is about the least a TCP connect check can cost here.
func (b benchConfig) syscallLoopRow(ctx context.Context, name string, d time.Duration) row {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var runs, failed uint64
	failures := map[string]int{}
	linger := syscall.Linger{Onoff: 1, Linger: 0}
	connect := func(addr netip.AddrPort) error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer func() { _ = syscall.Close(fd) }()
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Addr: addr.Addr().As4(), Port: int(addr.Port())}); err != nil {
			return err
		}
		return syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &linger)
	}
	b.paced(ctx, d, func(addr netip.AddrPort) {
		runs++
		if err := connect(addr); err != nil {
			failed++
			failures[err.Error()]++
		}
	}, func() { runs, failed = 0, 0 })
	return b.loopRow(name, runs, failed, failures)
}

// paced calls probe for b.checks targets per interval, in bursts every
// millisecond from this goroutine, for the warm-up (then reset is called)
// and d; the measured CPU and wall time are kept for loopRow.
func (b benchConfig) paced(ctx context.Context, d time.Duration, probe func(netip.AddrPort), reset func()) {
	perTick := float64(b.checks) / float64(b.interval/time.Millisecond)
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	var (
		owed float64
		i    int
	)
	until := func(end time.Time) {
		for time.Now().Before(end) && ctx.Err() == nil {
			<-ticker.C
			for owed += perTick; owed >= 1; owed-- {
				probe(b.addrs[i%len(b.addrs)])
				i++
			}
		}
	}
	until(time.Now().Add(b.warmup))
	reset()
	start, ru0 := time.Now(), rusage()
	until(start.Add(d))
	b.measured.wall, b.measured.cpu = time.Since(start), cpuOf(rusage())-cpuOf(ru0)
}

// loopRow makes the row of a paced loop.
func (b benchConfig) loopRow(name string, runs, failed uint64, failures map[string]int) row {
	return row{name: name, wall: b.measured.wall, runs: runs, failed: failed,
		cpu: b.measured.cpu, maxRSS: rusage().Maxrss, failures: failures}
}

// dialLoopRow connects to the targets at the same rate from one goroutine,
// in bursts every millisecond, closing each connection with a reset like
// the tcp checker: the cost of the connections alone.
func (b benchConfig) dialLoopRow(ctx context.Context, name string, d time.Duration) row {
	dialer := net.Dialer{KeepAlive: -1, Timeout: b.timeout}
	var runs, failed uint64
	failures := map[string]int{}
	b.paced(ctx, d, func(addr netip.AddrPort) {
		runs++
		c, err := dialer.Dial("tcp", addr.String())
		if err != nil {
			failed++
			failures[err.Error()]++
			return
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close()
	}, func() { runs, failed = 0, 0 })
	return b.loopRow(name, runs, failed, failures)
}

// tickerRow measures how late a goroutine waiting on a 1 ms ticker wakes
// up: the jitter the machine itself adds, with no checks at all. Every
// millisecond counts as one sample, ticks the ticker dropped while the
// process was not running included, so that a stall weighs as much as it
// does on checks due every 100 µs.
func (b benchConfig) tickerRow(ctx context.Context, name string, d time.Duration) row {
	jitter := &histogram{}
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	sleep(ctx, b.warmup)
	start, ru0 := time.Now(), rusage()
	due := start.Add(time.Millisecond)
	for time.Since(start) < d && ctx.Err() == nil {
		<-ticker.C
		now := time.Now()
		for ; !due.After(now); due = due.Add(time.Millisecond) {
			jitter.record(now.Sub(due))
		}
	}
	wall, ru1 := time.Since(start), rusage()
	return row{name: name, wall: wall, cpu: cpuOf(ru1) - cpuOf(ru0), maxRSS: ru1.Maxrss, jitter: jitter}
}

// printTable writes the rows as a Markdown table.
func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| row | measured | checks run | checks/s | failed | CPU (% of one core) | CPU per check | peak RSS | start jitter p50 | p99 | max |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		p50, p99, pmax := "-", "-", "-"
		if r.jitter != nil && r.jitter.count() > 0 {
			p50 = fmtDur(r.jitter.quantile(0.50))
			p99 = fmtDur(r.jitter.quantile(0.99))
			pmax = fmtDur(r.jitter.max())
		}
		perCheck := "-"
		if r.runs > 0 {
			perCheck = fmtDur(r.cpu / time.Duration(r.runs))
		}
		fmt.Fprintf(w, "| %s | %s | %d | %.0f | %d | %.1f%% | %s | %.1f MiB | %s | %s | %s |\n",
			r.name, r.wall.Round(time.Millisecond), r.runs, float64(r.runs)/r.wall.Seconds(), r.failed,
			100*r.cpu.Seconds()/r.wall.Seconds(), perCheck, float64(r.maxRSS)/1024, p50, p99, pmax)
	}
	for _, r := range rows {
		if len(r.failures) > 0 {
			fmt.Fprintf(w, "\n%s failures: %v\n", r.name, r.failures)
		}
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return d.String()
	case d < time.Millisecond:
		return d.Round(100 * time.Nanosecond).String()
	}
	return d.Round(10 * time.Microsecond).String()
}

// startTargets runs this program with -serve and reads the listeners'
// addresses from its standard output.
func startTargets(n int) (*exec.Cmd, []netip.AddrPort, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("finding myself: %w", err)
	}
	cmd := exec.Command(self, "-serve", "-targets", strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("stdout pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s -serve: %w", self, err)
	}
	sc := bufio.NewScanner(out)
	var addrs []netip.AddrPort
	for len(addrs) < n && sc.Scan() {
		ap, err := netip.ParseAddrPort(strings.TrimSpace(sc.Text()))
		if err != nil {
			return nil, nil, fmt.Errorf("target address %q: %w", sc.Text(), err)
		}
		addrs = append(addrs, ap)
	}
	if len(addrs) < n {
		return nil, nil, fmt.Errorf("got %d of %d target addresses: %v", len(addrs), n, sc.Err())
	}
	return cmd, addrs, nil
}

// serveTargets listens on n loopback ports, prints their addresses and
// accepts and closes connections until killed.
func serveTargets(n int) {
	var wg sync.WaitGroup
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			log.Fatalf("listen: %v", err)
		}
		fmt.Println(ln.Addr())
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue
					}
					if strings.Contains(err.Error(), "too many open files") {
						time.Sleep(time.Millisecond)
						continue
					}
					return
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
}

// raiseNoFile raises the open files limit to its hard maximum.
func raiseNoFile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Fatalf("getrlimit: %v", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Fatalf("setrlimit: %v", err)
	}
}

func rusage() syscall.Rusage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatalf("getrusage: %v", err)
	}
	return ru
}

func cpuOf(ru syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processCPU returns the user and system CPU time of process pid so far.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields[0] is the state (field 3): utime and stime are fields 14, 15.
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// sleep waits for d or ctx.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// histogram is a lock-free log-linear histogram of durations with 16
// sub-buckets per power of two (quantiles within about 6%).
type histogram struct {
	buckets [1024]atomic.Uint64
	n       atomic.Uint64
	maxNs   atomic.Int64
}

const subBits = 4

func bucketOf(v uint64) int {
	if v < 2<<subBits {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (2 << subBits) + (shift-1)<<subBits + int(v>>shift) - (1 << subBits)
}

func bucketValue(i int) uint64 {
	if i < 2<<subBits {
		return uint64(i)
	}
	i -= 2 << subBits
	shift := i>>subBits + 1
	mant := uint64(i&(1<<subBits-1)) + 1<<subBits
	return mant<<shift + (1<<shift)/2 // the bucket's middle
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.buckets[bucketOf(uint64(v))].Add(1)
	h.n.Add(1)
	for {
		m := h.maxNs.Load()
		if v <= m || h.maxNs.CompareAndSwap(m, v) {
			return
		}
	}
}

func (h *histogram) count() uint64 { return h.n.Load() }

func (h *histogram) max() time.Duration { return time.Duration(h.maxNs.Load()) }

func (h *histogram) quantile(q float64) time.Duration {
	want := uint64(q * float64(h.n.Load()))
	var seen uint64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen > want {
			return time.Duration(bucketValue(i))
		}
	}
	return h.max()
}
