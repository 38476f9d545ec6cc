//go:build vmbench

package admissionbench

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/admission"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

var (
	// vip4 is the flooded service's VIP: [vip4]:9000 over rs1 and rs2,
	// whose backends greet on 9000.
	vip4            = netip.MustParseAddr("203.0.113.30")
	floodPort       = uint16(9000)
	floodSourceRate = admission.SourceRate{Rate: admission.Rate{Count: 10, Per: time.Second, Burst: 20}, PrefixV4: 32, PrefixV6: 64}
)

const (
	// floodSources is how many spoofed sources a flood comes from, as in
	// TestAdmissionFlood (tests/e2e).
	floodSources = 4
	// dialTimeout bounds one attempt of the legitimate client: it leaves
	// room for one SYN retransmission (1 s), so a dropped first SYN shows
	// as latency, two as a failure.
	dialTimeout = 2 * time.Second
	// clientPeriod is the legitimate client's period between attempts:
	// 8 a second, under its own per-source rate (10/s), so that with the
	// rules a client that behaves is never dropped by them (one faster
	// than its rate is, by design: TestAdmissionFlood saw it).
	clientPeriod = 125 * time.Millisecond
	// maxClientAttempts bounds the client's attempts in one flood.
	maxClientAttempts = 2000
	// ipvsStatsLag is how long IPVS's service counters may lag on
	// netlink: the kernel's estimator folds the per-CPU counters into
	// what it reports every 2 s (kernel 6.1).
	ipvsStatsLag = 2500 * time.Millisecond
	// settle is the pause between floods, for the reals' SYN queues and
	// the VM's softirq backlog to drain.
	settle = 5 * time.Second
)

// cpuTicks is the VM's CPU time by kind, from the first line of
// /proc/stat, in USER_HZ ticks (1/100 s), all CPUs together.
type cpuTicks struct {
	user, system, irq, softirq, total uint64
}

func readCPU() (cpuTicks, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTicks{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTicks{}, fmt.Errorf("read /proc/stat: %w", sc.Err())
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 8 || fields[0] != "cpu" {
		return cpuTicks{}, fmt.Errorf("/proc/stat: unexpected first line %q", sc.Text())
	}
	var v []uint64
	for _, s := range fields[1:] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTicks{}, fmt.Errorf("/proc/stat: %w", err)
		}
		v = append(v, n)
	}
	// user nice system idle iowait irq softirq steal ...
	c := cpuTicks{user: v[0] + v[1], system: v[2], irq: v[5], softirq: v[6]}
	for _, n := range v[:min(len(v), 8)] {
		c.total += n
	}
	return c, nil
}

func (c cpuTicks) sub(d cpuTicks) cpuTicks {
	return cpuTicks{c.user - d.user, c.system - d.system, c.irq - d.irq, c.softirq - d.softirq, c.total - d.total}
}

// kernel is the time the kernel spent: system, irq and softirq.
func (c cpuTicks) kernel() time.Duration {
	return time.Duration(c.system+c.irq+c.softirq) * 10 * time.Millisecond
}

// floodRun is one flood and what the legitimate client saw during it.
type floodRun struct {
	rules          bool
	sent           int
	took           time.Duration
	attempts, ok   int
	latency        []time.Duration // connect times of the attempts served
	cpu            cpuTicks
	entries        int    // IPVS connection entries from the flood's sources, at its end
	forwarded      uint64 // packets IPVS forwarded to the reals during the flood
	droppedByRules uint64
}

// TestAdmissionFloodBench (issue 15, item 7): the same bounded SYN flood
// from spoofed sources against [vip4]:9000 on dir1, with and without the
// service's admission rules (a per-source rate of 10/s, burst 20, as in
// TestAdmissionFlood), while a legitimate client connects 8 times a second.
// It prints the client's success rate and connect latency, and the
// kernel CPU time of the VM over each flood, as a table; it asserts
// nothing about speed.
func TestAdmissionFloodBench(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	ctx := context.Background()
	syns := envInt("DSRD_BENCH_FLOOD_SYNS", 20000)
	// Each flood's sources are 192.0.2.100 up, four a flood: at most 38
	// floods, 19 rounds.
	rounds := min(envInt("DSRD_BENCH_FLOOD_ROUNDS", 4), 19)

	lab.MustIPBatch(t, lab.Dir1, "addr add "+vip4.String()+"/32 dev eth0")
	for _, h := range []lab.Host{lab.RS1, lab.RS2} {
		lab.MustIPBatch(t, h, "addr add "+vip4.String()+"/32 dev lo")
		for _, dev := range []string{"all", "eth0"} {
			for name, value := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
				if err := lab.WriteSysctl(h, "net.ipv4.conf."+dev+"."+name, value); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	k, err := ipvs.OpenNetlink(ctx, "/run/netns/"+string(lab.Dir1))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	key := ipvs.NewServiceKey(ipvs.TCP, netip.AddrPortFrom(vip4, floodPort))
	s := ipvs.NewService(key, "rr")
	for _, h := range []lab.Host{lab.RS1, lab.RS2} {
		s.Put(ipvs.NewDestination(h.IPv4(), floodPort, 1))
	}
	if _, err := ipvs.NewReconciler(k, slog.New(slog.DiscardHandler)).Apply(ctx, ipvs.State{key: s}); err != nil {
		t.Fatal(err)
	}
	svc := admission.Service{Name: "web", Family: 4, Protocol: "tcp", VIP: vip4, Port: floodPort, SourceRate: &floodSourceRate}
	plan, err := admission.Build(admission.Config{Services: []admission.Service{svc}})
	if err != nil {
		t.Fatal(err)
	}
	forwarded := func() uint64 {
		st, err := ipvs.ReadState(ctx, k, func(ipvs.ServiceKey) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		return uint64(st[key].Stats.PacketsIn)
	}
	web := netip.AddrPortFrom(vip4, floodPort)

	flood := func(n int, rules bool) floodRun {
		if rules {
			inDir1(t, func() error { return admission.NFT{}.Replace(ctx, plan) })
		} else {
			inDir1(t, func() error { return admission.NFT{}.Delete(ctx) })
		}
		// Each flood has sources of its own, so that its IPVS entries
		// are told from those an earlier flood left.
		var srcs []netip.Addr
		for i := range floodSources {
			srcs = append(srcs, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + n*floodSources + i)}))
		}
		run := floodRun{rules: rules}
		fwd0 := forwarded()
		cpu0, err := readCPU()
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			sent int
			err  error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() { // ends after syns sends
			sent, err := lab.SYNFlood(srcs, web, syns)
			done <- result{sent, err}
		}()
		var res result
		tick := time.NewTicker(clientPeriod)
		defer tick.Stop()
	client:
		for run.attempts < maxClientAttempts {
			run.attempts++
			if lat, ok := attemptGreeting(t, web); ok {
				run.ok++
				run.latency = append(run.latency, lat)
			}
			select {
			case res = <-done:
				break client
			case <-tick.C:
			}
		}
		if run.attempts == maxClientAttempts {
			res = <-done
		}
		run.took = time.Since(start)
		cpu1, err := readCPU()
		if err != nil {
			t.Fatal(err)
		}
		if res.err != nil {
			t.Fatal(res.err)
		}
		run.sent, run.cpu = res.sent, cpu1.sub(cpu0)
		conns, err := lab.IPVSConns(ctx, lab.Dir1)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range conns {
			if h, _, err := net.SplitHostPort(c.Source); err == nil && slices.Contains(srcs, netip.MustParseAddr(h)) {
				run.entries++
			}
		}
		// IPVS's traffic counters reach netlink through its estimator,
		// every 2 s.
		time.Sleep(ipvsStatsLag)
		run.forwarded = forwarded() - fwd0
		if rules {
			inDir1(t, func() error {
				c, err := admission.NFT{}.Counters(ctx)
				run.droppedByRules = c[admission.CounterName("web", admission.ReasonRate)]
				return err
			})
		}
		return run
	}

	attemptGreeting(t, web) // warm up: neighbour entries, caches
	var runs []floodRun
	n := 0
	for r := range rounds {
		// ABBA: each mode goes first in every other round, so that
		// neither always meets what the other left (the reals' SYN
		// queues, neighbour entries for the spoofed sources).
		order := []bool{false, true}
		if r%2 == 1 {
			order = []bool{true, false}
		}
		for _, rules := range order {
			runs = append(runs, flood(n, rules))
			n++
			time.Sleep(settle)
		}
	}
	inDir1(t, func() error { return admission.NFT{}.Delete(ctx) })
	printFloodTable(runs, syns, rounds)
}

// attemptGreeting connects from the client's own address to addr and
// reads the backend's greeting, within dialTimeout; it returns the
// connect time and whether the greeting came.
func attemptGreeting(t *testing.T, addr netip.AddrPort) (time.Duration, bool) {
	t.Helper()
	var lat time.Duration
	ok := false
	err := lab.Do(lab.Client, func() error {
		d := net.Dialer{Timeout: dialTimeout}
		start := time.Now()
		c, err := d.Dial("tcp", addr.String())
		if err != nil {
			return nil
		}
		lat = time.Since(start)
		defer c.Close()
		if tc, isTCP := c.(*net.TCPConn); isTCP {
			tc.SetLinger(0)
		}
		c.SetDeadline(start.Add(dialTimeout))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		ok = n > 0
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lat, ok
}

func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// printFloodTable sums the runs of each mode and prints them side by
// side, with the ratio of with to without.
func printFloodTable(runs []floodRun, syns, rounds int) {
	type sum struct {
		sent, attempts, ok, entries int
		took                        time.Duration
		latency                     []time.Duration
		cpu                         cpuTicks
		forwarded, dropped          uint64
	}
	var by [2]sum // 0 without, 1 with
	for n, r := range runs {
		i := 0
		if r.rules {
			i = 1
		}
		b := &by[i]
		b.sent += r.sent
		b.attempts += r.attempts
		b.ok += r.ok
		b.entries += r.entries
		b.took += r.took
		b.latency = append(b.latency, r.latency...)
		b.cpu.user += r.cpu.user
		b.cpu.system += r.cpu.system
		b.cpu.irq += r.cpu.irq
		b.cpu.softirq += r.cpu.softirq
		b.cpu.total += r.cpu.total
		b.forwarded += r.forwarded
		b.dropped += r.droppedByRules
		fmt.Printf("flood %d (rules %-5v): %d SYNs in %v; client %d/%d; connect p50 %v p90 %v max %v; kernel CPU %v (sys %d, softirq %d, irq %d ticks; user %d; of %d); IPVS forwarded %d packets, %d entries from the flood; rules dropped %d\n",
			n, r.rules, r.sent, r.took.Round(time.Millisecond), r.ok, r.attempts,
			percentile(r.latency, 50).Round(time.Microsecond), percentile(r.latency, 90).Round(time.Microsecond), slices.Max(append([]time.Duration{0}, r.latency...)).Round(time.Microsecond),
			r.cpu.kernel(), r.cpu.system, r.cpu.softirq, r.cpu.irq, r.cpu.user, r.cpu.total, r.forwarded, r.entries, r.droppedByRules)
	}
	ratio := func(with, without float64) string {
		if without == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3fx", with/without)
	}
	rate := func(b sum) float64 {
		if b.attempts == 0 {
			return 0
		}
		return 100 * float64(b.ok) / float64(b.attempts)
	}
	perSYN := func(b sum) time.Duration {
		if b.sent == 0 {
			return 0
		}
		return b.cpu.kernel() / time.Duration(b.sent)
	}
	w, o := by[1], by[0]
	fmt.Printf("\nSYN flood: %d rounds (ABBA) of %d spoofed SYNs from %d sources per flood against [%s]:%d, without and with a per-source rate of %s per /32; the legitimate client connects every %v (timeout %v)\n",
		rounds, syns, floodSources, vip4, floodPort, floodSourceRate.Rate, clientPeriod, dialTimeout)
	fmt.Printf("%-44s %-16s %-16s %s\n", "", "without rules", "with rules", "with/without")
	row := func(name, a, b, r string) { fmt.Printf("%-44s %-16s %-16s %s\n", name, a, b, r) }
	row("SYNs sent", fmt.Sprint(o.sent), fmt.Sprint(w.sent), ratio(float64(w.sent), float64(o.sent)))
	row("flood time", o.took.Round(time.Millisecond).String(), w.took.Round(time.Millisecond).String(), ratio(float64(w.took), float64(o.took)))
	row("client served", fmt.Sprintf("%d/%d (%.1f %%)", o.ok, o.attempts, rate(o)), fmt.Sprintf("%d/%d (%.1f %%)", w.ok, w.attempts, rate(w)), ratio(rate(w), rate(o)))
	for _, p := range []int{50, 90, 99} {
		a, b := percentile(o.latency, p), percentile(w.latency, p)
		row(fmt.Sprintf("client connect p%d", p), a.Round(time.Microsecond).String(), b.Round(time.Microsecond).String(), ratio(float64(b), float64(a)))
	}
	row("VM kernel CPU (system+irq+softirq)", o.cpu.kernel().String(), w.cpu.kernel().String(), ratio(float64(w.cpu.kernel()), float64(o.cpu.kernel())))
	row("  of which softirq", (time.Duration(o.cpu.softirq) * 10 * time.Millisecond).String(), (time.Duration(w.cpu.softirq) * 10 * time.Millisecond).String(), ratio(float64(w.cpu.softirq), float64(o.cpu.softirq)))
	row("VM kernel CPU per SYN sent", perSYN(o).String(), perSYN(w).String(), ratio(float64(perSYN(w)), float64(perSYN(o))))
	row("VM CPU busy (of all CPUs' time)", fmt.Sprintf("%.0f %%", busy(o.cpu)), fmt.Sprintf("%.0f %%", busy(w.cpu)), "")
	row("packets IPVS forwarded to the reals", fmt.Sprint(o.forwarded), fmt.Sprint(w.forwarded), ratio(float64(w.forwarded), float64(o.forwarded)))
	row("IPVS entries from the flood (at its end)", fmt.Sprint(o.entries), fmt.Sprint(w.entries), ratio(float64(w.entries), float64(o.entries)))
	row("SYNs dropped by the rate rule", "-", fmt.Sprint(w.dropped), "")
	fmt.Println()
}

// busy is the share of the CPUs' time that was not idle (user, system,
// irq, softirq).
func busy(c cpuTicks) float64 {
	if c.total == 0 {
		return 0
	}
	return 100 * float64(c.user+c.system+c.irq+c.softirq) / float64(c.total)
}
