// Package privileged is the one gate of the tests that need what an
// ordinary process lacks: capabilities, kernel features, the VM lab. It
// imports nothing of dsrd's, so that the tests of any package can use it.
//
// Require skips a test that lacks what it needs, saying what and why.
// Where such a test must run (CI, which runs the unit tests as root, and
// the VM lab) the environment sets DSRD_TEST_PRIVILEGED=require, and
// Require fails the test instead: there a skip is a broken machine, not a
// reason to say ok.
package privileged

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// EnvVar is the environment variable that turns Require's skips into
// failures when it is set to Required.
const (
	EnvVar   = "DSRD_TEST_PRIVILEGED"
	Required = "require"
)

// A Need is one thing a test needs of its process or its machine.
type Need struct {
	// What says what is needed and what for, as the skip message shows it:
	// "CAP_NET_ADMIN, to create veth pairs".
	What string
	// Missing says what is missing, or returns nil when the need is met.
	Missing func() error
}

// Require skips t, saying what it lacks, unless every need is met; with
// DSRD_TEST_PRIVILEGED=require in the environment it fails t instead. Any
// other non-empty value of DSRD_TEST_PRIVILEGED fails t as a mistake.
func Require(t testing.TB, needs ...Need) {
	t.Helper()
	mode := os.Getenv(EnvVar)
	if mode != "" && mode != Required {
		t.Fatalf("%s=%q: want %q or unset", EnvVar, mode, Required)
		return
	}
	if len(needs) == 0 {
		t.Fatalf("privileged.Require: no needs named")
		return
	}
	var lacks []string
	for _, n := range needs {
		if err := n.Missing(); err != nil {
			lacks = append(lacks, fmt.Sprintf("%s (%v)", n.What, err))
		}
	}
	if len(lacks) == 0 {
		return
	}
	msg := "needs " + strings.Join(lacks, "; and ")
	if mode == Required {
		t.Fatalf("%s=%s, but this test %s", EnvVar, Required, msg)
		return
	}
	t.Skipf("skipped: this test %s (where it must run, %s=%s makes this a failure)", msg, EnvVar, Required)
}

// A Cap is a Linux capability, by its number (linux/capability.h).
type Cap int

// The capabilities dsrd's tests need.
const (
	CapNetAdmin Cap = 12 // addresses, links, routes, sysctls of a namespace
	CapNetRaw   Cap = 13 // raw and packet sockets
	CapSysAdmin Cap = 21 // creating and entering network namespaces (setns, unshare)
)

// String is the capability's name, CAP_NET_ADMIN.
func (c Cap) String() string {
	switch c {
	case CapNetAdmin:
		return "CAP_NET_ADMIN"
	case CapNetRaw:
		return "CAP_NET_RAW"
	case CapSysAdmin:
		return "CAP_SYS_ADMIN"
	}
	return "capability " + strconv.Itoa(int(c))
}

// Caps is the need for the capabilities caps in the process's effective
// set, for why ("to create network namespaces and veth pairs").
func Caps(why string, caps ...Cap) Need {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = c.String()
	}
	return Need{
		What: strings.Join(names, " and ") + ", " + why,
		Missing: func() error {
			status, err := os.ReadFile("/proc/self/status")
			if err != nil {
				return fmt.Errorf("cannot read the process's capabilities: %w", err)
			}
			return missingCaps(string(status), caps)
		},
	}
}

// NetNS is the need of the tests that build hosts out of network
// namespaces and veth pairs: CAP_SYS_ADMIN to create the namespaces,
// CAP_NET_ADMIN to configure them.
func NetNS(why string) Need {
	return Caps(why, CapSysAdmin, CapNetAdmin)
}

// missingCaps says which of caps the effective set (the CapEff line of
// /proc/PID/status) lacks.
func missingCaps(status string, caps []Cap) error {
	var eff uint64
	found := false
	for line := range strings.Lines(status) {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return fmt.Errorf("CapEff: %w", err)
		}
		eff, found = v, true
		break
	}
	if !found {
		return errors.New("no CapEff in /proc/self/status")
	}
	var lacks []string
	for _, c := range caps {
		if c < 0 || c > 63 || eff&(1<<uint(c)) == 0 {
			lacks = append(lacks, c.String())
		}
	}
	if lacks != nil {
		return fmt.Errorf("the process lacks %s (euid %d)", strings.Join(lacks, ", "), os.Geteuid())
	}
	return nil
}
