//go:build vmtest

package ipvs

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestVMSyncContract runs the sync daemon contract against the kernel.
func TestVMSyncContract(t *testing.T) {
	n := newVMNetns(t)
	testSyncContract(t, n.open(), func(t *testing.T, name string, mtu int) {
		n.run("ip", "link", "add", name, "mtu", fmt.Sprint(mtu), "type", "dummy")
		n.run("ip", "link", "set", name, "up")
	})
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
