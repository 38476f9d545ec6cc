//go:build vmtest

package ipvs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestVMSyncContract runs the sync daemon contract against the kernel.
func TestVMSyncContract(t *testing.T) {
	n := newVMNetns(t)
	k := n.open()
	testSyncContract(t, k, func(t *testing.T, name string, mtu int) {
		n.run("ip", "link", "add", name, "mtu", fmt.Sprint(mtu), "type", "dummy")
		n.run("ip", "link", "set", name, "up")
	})
	t.Logf("calls whose acknowledgement did not come in %v (verified by listing): %d", syncCallTimeout, k.UnackedSyncCalls())
}

// TestVMSyncPortByteOrder checks that the port attribute is host byte
// order: the backup daemon's kernel socket listens on the port asked, not
// on its bytes swapped.
func TestVMSyncPortByteOrder(t *testing.T) {
	ctx := context.Background()
	n := newVMNetns(t)
	k := n.open()
	const port = 8850 // 0x2292; swapped 0x9222 = 37410
	if err := k.StartSyncDaemon(ctx, SyncDaemon{State: SyncBackup, Interface: "lo", Port: port}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.StopSyncDaemon(ctx, SyncBackup) })
	udp := n.run("cat", "/proc/net/udp")
	if !strings.Contains(udp, fmt.Sprintf(":%04X ", port)) {
		t.Fatalf("no socket on port %d in /proc/net/udp:\n%s", port, udp)
	}
	if strings.Contains(udp, ":9222 ") {
		t.Fatalf("a socket on the swapped port:\n%s", udp)
	}
}

// TestVMSyncFailover is a director failover at the IPVS level, with rr
// scheduling (mh would map a flow to the same real on both directors, and
// sloppy_tcp would let the new one pick it up: both are off here). Two
// directors, two reals and a client share a bridge; the client routes the
// VIP through director 1, which holds long-lived connections; the route
// then moves to director 2 (what a VIP move does to the client). With
// sync (master on 1, backup on 2), every connection goes on; without, every
// one breaks (director 2 has no entry: its stack answers a reset).
func TestVMSyncFailover(t *testing.T) {
	t.Run("sync", func(t *testing.T) { testSyncFailover(t, true) })
	t.Run("nosync", func(t *testing.T) { testSyncFailover(t, false) })
}

// syncConns is how many long-lived connections cross the failover.
const syncConns = 20

// syncVIP is the VIP of the sync lab's service, tcp port 8080.
const syncVIP = "203.0.113.10"

// newSyncLab builds the sync tests' network: a bridge with a client c
// (192.0.2.1), directors d1 and d2 (.11, .12) and reals r1 and r2 (.21,
// .22), each with eth0 on it; the VIP on the lo of the directors and the
// reals, the client's route to it through d1; each real echoing every byte
// on VIP:8080; both directors with one rr service over both reals. It
// returns the namespaces and the directors' IPVS handles.
func newSyncLab(t *testing.T) (map[string]*vmNetns, []*Netlink) {
	ctx := context.Background()
	const vip = syncVIP
	sw := newVMNetns(t)
	sw.run("ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	sw.run("ip", "link", "set", "br0", "up")
	hosts := map[string]*vmNetns{}
	for i, h := range []struct{ name, addr string }{
		{"c", "192.0.2.1"}, {"d1", "192.0.2.11"}, {"d2", "192.0.2.12"}, {"r1", "192.0.2.21"}, {"r2", "192.0.2.22"},
	} {
		n := newVMNetns(t)
		port := fmt.Sprintf("p%d", i)
		sw.run("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.name)
		sw.run("ip", "link", "set", port, "master", "br0", "up")
		n.run("ip", "address", "add", h.addr+"/24", "dev", "eth0")
		n.run("ip", "link", "set", "eth0", "up")
		if h.name != "c" {
			n.run("ip", "address", "add", vip+"/32", "dev", "lo")
			n.run("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
		}
		hosts[h.name] = n
	}
	hosts["c"].run("ip", "route", "add", vip+"/32", "via", "192.0.2.11")

	// The reals echo every byte.
	for _, r := range []string{"r1", "r2"} {
		var ln net.Listener
		hosts[r].in(func() (err error) { ln, err = net.Listen("tcp", vip+":8080"); return err })
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); io.Copy(c, c) }()
			}
		}()
	}
	desired := state(svc(tcp(vip+":8080"), "rr", "192.0.2.21:8080", "192.0.2.22:8080"))
	var ks []*Netlink
	for _, d := range []string{"d1", "d2"} {
		k := hosts[d].open()
		if _, err := NewReconciler(k, nil).Apply(ctx, desired); err != nil {
			t.Fatal(err)
		}
		ks = append(ks, k)
	}
	return hosts, ks
}

func testSyncFailover(t *testing.T, withSync bool) {
	ctx := context.Background()
	const vip = syncVIP
	hosts, ks := newSyncLab(t)
	if withSync {
		for i, s := range []SyncState{SyncMaster, SyncBackup} {
			if err := ks[i].StartSyncDaemon(ctx, SyncDaemon{State: s, Interface: "eth0", SyncID: 1}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ks[i].StopSyncDaemon(ctx, s) })
		}
	}

	// echo sends one byte and waits for it, bounded.
	echo := func(c net.Conn) error {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte{'x'}); err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err := io.ReadFull(c, b)
		return err
	}
	var conns []net.Conn
	rx0, dgrams0 := syncTraffic(t, hosts["d2"])
	start := time.Now()
	hosts["c"].in(func() error {
		for range syncConns {
			c, err := net.DialTimeout("tcp", vip+":8080", 3*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	// A few packets each: the master syncs a connection from its third
	// packet (net.ipv4.vs.sync_threshold 3 50).
	for range 4 {
		for _, c := range conns {
			if err := echo(c); err != nil {
				t.Fatalf("before the failover: %v", err)
			}
		}
	}
	echoed := time.Now()
	onBackup := func() int {
		n := 0
		for _, l := range connLines(hosts["d2"]) {
			if strings.Contains(l, "ESTABLISHED") && strings.Contains(l, vip+":8080") {
				n++
			}
		}
		return n
	}
	if withSync {
		// The master sends a partly filled message after at most 2 s
		// (IPVS_SYNC_FLUSH_TIME); 20 s bounds the wait.
		deadline := time.Now().Add(20 * time.Second)
		for onBackup() < syncConns && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n := onBackup(); n < syncConns {
			t.Fatalf("%d of %d connections on the backup after 20 s", n, syncConns)
		}
		t.Logf("all %d connections on the backup %v after the first was opened, %v after the last had its 4th echo",
			syncConns, time.Since(start).Round(10*time.Millisecond), time.Since(echoed).Round(10*time.Millisecond))
		rx1, dgrams1 := syncTraffic(t, hosts["d2"])
		t.Logf("the backup received %d UDP datagrams for %d connections; its eth0 %d bytes meanwhile (ARP, ND and IGMP included)",
			dgrams1-dgrams0, syncConns, rx1-rx0)
	} else if n := onBackup(); n != 0 {
		t.Fatalf("%d connections on director 2 without sync", n)
	}

	// The failover: the client's next packets go to director 2.
	hosts["c"].run("ip", "route", "replace", vip+"/32", "via", "192.0.2.12")
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = echo(c) }()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	t.Logf("sync=%v: %d of %d connections survived the failover (first error: %v)", withSync, ok, len(conns), errors.Join(errs...))
	if withSync && ok != len(conns) {
		t.Errorf("with sync, %d of %d connections survived", ok, len(conns))
	}
	if !withSync && ok != 0 {
		t.Errorf("without sync, %d of %d connections survived: the test shows nothing", ok, len(conns))
	}
	// Director 2 served them: its reals' connection counters moved.
	if withSync {
		st, err := ReadState(ctx, ks[1], nil)
		if err != nil {
			t.Fatal(err)
		}
		var active uint32
		for _, d := range st[tcp(vip+":8080")].Dests {
			active += d.ActiveConns
		}
		if active < syncConns {
			t.Errorf("director 2 counts %d active connections, want %d", active, syncConns)
		}
	}
}

// syncTraffic returns the bytes eth0 received and the UDP datagrams
// delivered in the namespace: on the backup director before the failover,
// the sync messages and little else (the bridge has learnt the MACs; the
// client talks to director 1).
func syncTraffic(t *testing.T, n *vmNetns) (rxBytes, udpIn uint64) {
	t.Helper()
	for _, l := range strings.Split(n.run("cat", "/proc/net/dev"), "\n") {
		if name, rest, ok := strings.Cut(strings.TrimSpace(l), ":"); ok && name == "eth0" {
			fmt.Sscan(rest, &rxBytes)
		}
	}
	lines := strings.Split(n.run("cat", "/proc/net/snmp"), "\n")
	for i := 0; i+1 < len(lines); i++ {
		if strings.HasPrefix(lines[i], "Udp: InDatagrams") {
			fmt.Sscan(strings.TrimPrefix(lines[i+1], "Udp:"), &udpIn)
		}
	}
	return rxBytes, udpIn
}

// TestVMSyncTraffic measures what the master sends per connection: short
// connections (connect, one echo, close) through director 1, whose master
// daemon sends to the default group; a socket of the test on director 2,
// bound to the group and port beside the kernel's (the kernel's socket
// allows reuse), reads every message and counts the connection entries
// (version 1 format: an 8-byte header whose fifth byte is the number of
// entries). It prints bytes and messages per connection, and so per 1,000
// new connections a second.
func TestVMSyncTraffic(t *testing.T) {
	ctx := context.Background()
	hosts, ks := newSyncLab(t)
	for i, s := range []SyncState{SyncMaster, SyncBackup} {
		if err := ks[i].StartSyncDaemon(ctx, SyncDaemon{State: s, Interface: "eth0"}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ks[i].StopSyncDaemon(ctx, s) })
	}
	var pc *net.UDPConn
	hosts["d2"].in(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		pc, err = net.ListenMulticastUDP("udp4", ifi, &net.UDPAddr{IP: net.IP(DefaultSyncGroup.AsSlice()), Port: DefaultSyncPort})
		return err
	})
	defer pc.Close()
	type counts struct{ msgs, bytes, entries int }
	got := make(chan counts, 1)
	go func() {
		var c counts
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFromUDP(buf)
			if err != nil {
				got <- c
				return
			}
			c.msgs++
			c.bytes += n
			if n >= 8 {
				c.entries += int(buf[4])
			}
		}
	}()

	const conns = 500
	start := time.Now()
	hosts["c"].in(func() error {
		for i := range conns {
			c, err := net.DialTimeout("tcp", syncVIP+":8080", 3*time.Second)
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
			c.SetDeadline(time.Now().Add(3 * time.Second))
			b := []byte{'x'}
			if _, err := c.Write(b); err == nil {
				_, err = io.ReadFull(c, b)
			}
			c.Close()
			if err != nil {
				return fmt.Errorf("connection %d: %w", i, err)
			}
		}
		return nil
	})
	took := time.Since(start)
	// The last partly filled message leaves within the kernel's 2 s
	// flush time; the entries of closing connections follow their state
	// changes. 5 s bounds the wait.
	time.Sleep(5 * time.Second)
	pc.Close()
	c := <-got
	if c.msgs == 0 || c.entries < conns {
		t.Fatalf("%d messages with %d entries for %d connections", c.msgs, c.entries, conns)
	}
	rate := float64(conns) / took.Seconds()
	t.Logf("%d connections in %v (%.0f/s): %d sync messages, %d entries, %d bytes of UDP payload", conns, took.Round(time.Millisecond), rate, c.msgs, c.entries, c.bytes)
	perConn := float64(c.bytes+c.msgs*(20+8+14)) / conns
	t.Logf("per connection: %.2f entries, %.1f bytes with IP, UDP and Ethernet headers; at 1,000 new connections/s: %.1f KB/s, %.0f messages/s (at this rate's packing)",
		float64(c.entries)/conns, perConn, perConn, float64(c.msgs)/took.Seconds()*1000/rate)
}
