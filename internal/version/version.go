// Package version holds the build's version, stamped by the linker
// (make build sets -X for Version and Commit).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set with -ldflags "-X ...". They stay "dev" and
// "unknown" in a plain go build, where String falls back to the module's
// build information.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String describes the build on one line: version, commit and Go version.
func String() string {
	v, c := Version, Commit
	if info, ok := debug.ReadBuildInfo(); ok && c == "unknown" {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				c = s.Value[:12]
			}
		}
	}
	return fmt.Sprintf("dsrd %s (commit %s, %s %s/%s)", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
