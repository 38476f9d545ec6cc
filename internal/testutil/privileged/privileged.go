// Package privileged gates tests that need root. It imports nothing of
// dsrd's, so that the tests of packages internal/config imports
// (realserver, internal/netnsutil) can use it where they cannot use
// internal/testutil, which imports internal/config.
package privileged

import (
	"os"
	"testing"
)

// Require skips t unless the test runs as root, saying what it needs root
// for (needs: "CAP_NET_ADMIN, to create network namespaces"). CI and the
// VM lab run the tests as root, so there they never skip; a root without
// the capabilities named fails them loudly instead.
func Require(t testing.TB, needs string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipped: needs root with %s (run as root; CI and the VM lab do)", needs)
	}
}
