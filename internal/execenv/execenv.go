// Package execenv is the environment of the programs dsrd runs on an
// operator's behalf (exec health checks, notify scripts). dsrd runs as
// root: such a program gets no variable of dsrd's but PATH, so whatever
// the daemon's environment holds (credentials a unit file set, proxies,
// locale, systemd's sockets) does not leak into it, and what it sees does
// not depend on how dsrd was started.
package execenv

import "os"

// DefaultPath is the PATH such a program gets when dsrd's own is unset.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Dir is the working directory such a program runs in: one that exists
// on every host and holds no state of dsrd's.
const Dir = "/"

// Minimal returns the environment of such a program: PATH (dsrd's, or
// DefaultPath when unset), then vars ("NAME=value", dsrd's own DSRD_*
// variables describing why it runs).
func Minimal(vars ...string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = DefaultPath
	}
	return append([]string{"PATH=" + path}, vars...)
}
