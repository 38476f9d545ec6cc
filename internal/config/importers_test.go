package config_test

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// ownTheirInput are the domain packages that own their input types and
// must not depend on this package (README.md, "Code map"); the edge
// (internal/director, internal/clusterspec, internal/cli) translates.
var ownTheirInput = []string{"./healthcheck", "./ipvs", "./raft", "./realserver", "./vrrp", "./vrrp/bgp"}

const configPath = "github.com/dsrd/dsrd/internal/config"

// TestDomainPackagesDoNotImportConfig asks go list for the dependencies of
// those packages, their tests included (VM tests too), and fails if this
// package is among them.
func TestDomainPackagesDoNotImportConfig(t *testing.T) {
	for _, args := range [][]string{
		{"list", "-deps"},
		{"list", "-deps", "-test", "-tags", "vmtest"},
	} {
		cmd := exec.Command("go", append(args, ownTheirInput...)...)
		cmd.Dir = "../.."
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		// One package a line, a test variant followed by " [pkg.test]".
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) < len(ownTheirInput) {
			t.Fatalf("go %s listed only %q", strings.Join(args, " "), lines)
		}
		for _, line := range lines {
			if pkg, _, _ := strings.Cut(line, " "); pkg == configPath {
				t.Errorf("go %s %s: %s is among the dependencies", strings.Join(args, " "), strings.Join(ownTheirInput, " "), configPath)
			}
		}
	}
}
