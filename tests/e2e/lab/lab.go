// Package lab drives the dsrd VM lab from Go tests: the standard network of
// tests/vm/topology (a bridge and one network namespace per host), commands
// and sockets inside those namespaces, and readings of the kernel's IPVS and
// neighbour tables.
//
// The tests that use it run inside the VM that tests/vm/run boots (see
// tests/vm/README.md); Require skips them anywhere else.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// Host is one network namespace of the standard lab, named after it.
type Host string

// The hosts of the standard lab, as tests/vm/topology creates them.
const (
	Client Host = "client"
	Dir1   Host = "dir1"
	Dir2   Host = "dir2"
	Dir3   Host = "dir3"
	RS1    Host = "rs1"
	RS2    Host = "rs2"
	RS3    Host = "rs3"
)

// Hosts lists every host of the standard lab.
func Hosts() []Host { return []Host{Client, Dir1, Dir2, Dir3, RS1, RS2, RS3} }

// Backends lists the hosts that run the backend program.
func Backends() []Host { return []Host{RS1, RS2, RS3} }

// part is the host part of h's addresses and MAC: 10 for the client, 11 to 13
// for the directors, 21 to 23 for the real servers.
func (h Host) part() int {
	switch h {
	case Client:
		return 10
	case Dir1, Dir2, Dir3:
		return 11 + int(h[3]-'1')
	case RS1, RS2, RS3:
		return 21 + int(h[2]-'1')
	}
	panic(fmt.Sprintf("lab: %q is not a host of the standard lab", string(h)))
}

// IPv4 is h's address on the segment, 192.0.2.NN.
func (h Host) IPv4() netip.Addr {
	return netip.AddrFrom4([4]byte{192, 0, 2, byte(h.part())})
}

// IPv6 is h's address on the segment, 2001:db8::NN (NN written as in IPv4).
func (h Host) IPv6() netip.Addr {
	return netip.MustParseAddr("2001:db8::" + strconv.Itoa(h.part()))
}

// MAC is the address of h's eth0, 02:00:00:00:00:NN (NN written as in IPv4).
func (h Host) MAC() string {
	return "02:00:00:00:00:" + strconv.Itoa(h.part())
}

// Require gates a test on the VM lab (root, kernel IPVS, the repository):
// it skips the test anywhere else, and fails it when the lab is broken,
// since tests/vm/run sets DSRD_TEST_PRIVILEGED=require (see privileged).
func Require(t testing.TB) {
	t.Helper()
	privileged.Require(t, privileged.Need{
		What:    "the VM lab (root, kernel IPVS, DSRD_REPO), which tests/vm/e2e boots",
		Missing: check,
	})
}

// check says what keeps this machine from being a usable lab.
func check() error {
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		return fmt.Errorf("the kernel has no IPVS: %w", err)
	}
	if _, err := Repo(); err != nil {
		return err
	}
	return nil
}

// Repo is the repository's root: DSRD_REPO, which tests/vm/run sets in the VM.
func Repo() (string, error) {
	repo := os.Getenv("DSRD_REPO")
	if repo == "" {
		return "", errors.New("DSRD_REPO is not set")
	}
	if _, err := os.Stat(filepath.Join(repo, "tests", "vm", "topology")); err != nil {
		return "", fmt.Errorf("DSRD_REPO=%s is not the repository: %w", repo, err)
	}
	return repo, nil
}

// topologyTimeout bounds one tests/vm/topology call; "up" takes about a second
// under TCG and starting the backends a few, so this only catches a hang.
const topologyTimeout = 60 * time.Second

// Topology runs tests/vm/topology with args.
func Topology(ctx context.Context, args ...string) error {
	repo, err := Repo()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, topologyTimeout)
	defer cancel()
	if _, err := Run(ctx, filepath.Join(repo, "tests", "vm", "topology"), args...); err != nil {
		return err
	}
	return nil
}

// Up gives the test a fresh standard lab (whatever an earlier test left is
// removed) and removes it when the test ends.
func Up(t testing.TB) {
	t.Helper()
	if err := Topology(context.Background(), "reset"); err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := Topology(context.Background(), "down"); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
}

// StartBackends starts the backend program in rs1..rs3 (HTTP on :80, TCP and
// UDP on :9000 unless args say otherwise) and stops it when the test ends.
func StartBackends(t testing.TB, args ...string) {
	t.Helper()
	if err := Topology(context.Background(), append([]string{"backends", "start"}, args...)...); err != nil {
		t.Fatalf("start backends: %v", err)
	}
	t.Cleanup(func() {
		if err := Topology(context.Background(), "backends", "stop"); err != nil {
			t.Errorf("stop backends: %v", err)
		}
	})
}
