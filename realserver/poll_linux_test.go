//go:build linux

package realserver

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// On the host's kernel: arp_ignore lowered on the director-facing
// interface comes back through the poll, long before the resync (an hour
// here). The time is logged, not bounded tightly: the machine is shared.
func TestLinuxRepairSysctlDrift(t *testing.T) {
	rs, _ := realServer(t)
	a := newTestAgent(t, rs.k, Config{VIPs: []netip.Addr{vip4}, Interfaces: []string{"eth0"}, ResyncInterval: time.Hour})
	runAgent(t, a)
	const path = "net.ipv4.conf.eth0.arp_ignore"
	rs.set(t, path, "0")
	drifted := time.Now()
	// A bound far under the resync interval, loose for a loaded machine.
	// The agent counts the repair after it wrote the value: wait for both.
	testutil.WaitFor(t, 20*time.Second, "eth0 arp_ignore back to 1, and counted", func() (bool, string) {
		v := sysctl(t, rs.k, path)
		return v == "1" && a.Stats().SysctlRepairs > 0, "arp_ignore=" + v
	})
	took := time.Since(drifted)
	t.Logf("arp_ignore repaired %s after it was lowered (poll every %s, resync every %s)",
		took, sysctlPollInterval, a.Config().ResyncInterval)
	if took >= a.Config().ResyncInterval {
		t.Errorf("repaired after %s: by the resync, not the poll", took)
	}
	if s := a.Stats(); s.SysctlRepairs != 1 || s.LastRepairWhat != "net.ipv4.conf.eth0.arp_ignore=1" {
		t.Errorf("stats = %+v", s)
	}
}

// BenchmarkSysctlPoll measures one poll pass on the current namespace's
// /proc/sys: all and one interface (lo stands for it: every host has it),
// 4 reads, the case of a real server with one director-facing interface.
// The netns case is how the tests run the agent (each read enters the
// namespace on a locked thread); it needs root.
func BenchmarkSysctlPoll(b *testing.B) {
	run := func(b *testing.B, k *netkernel.Linux) {
		a, err := New(Config{VIPs: []netip.Addr{vip4}, DataDir: b.TempDir()}, nil, WithKernel(k))
		if err != nil {
			b.Fatal(err)
		}
		rules := sysctlRules([]string{"lo"})
		seen := map[string]string{}
		before := cpuTime(b)
		for b.Loop() {
			a.pollSysctls(rules, seen)
		}
		cpu := cpuTime(b) - before
		if len(seen) != len(rules) {
			b.Fatalf("read %d of %d sysctls: %v", len(seen), len(rules), seen)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(rules)), "ns/sysctl")
		// ns/op is wall time, which on a loaded machine includes waiting
		// for a core; this is the CPU the process spent (user and system).
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
	b.Run("current", func(b *testing.B) {
		k, err := netkernel.New()
		if err != nil {
			b.Fatal(err)
		}
		defer k.Close()
		run(b, k)
	})
	b.Run("netns", func(b *testing.B) {
		privileged.Require(b, privileged.NetNS("to create a network namespace"))
		ns, err := netnsutil.New()
		if err != nil {
			b.Fatal(err)
		}
		defer ns.Close()
		k, err := netkernel.NewAt(ns)
		if err != nil {
			b.Fatal(err)
		}
		defer k.Close()
		run(b, k)
	})
}

// cpuTime is the user and system CPU time the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
