// Package systemd speaks the sd_notify protocol, so Type=notify units learn
// when a dsrd daemon is ready and when it stops.
package systemd

import (
	"fmt"
	"net"
	"os"
)

// Notify sends state (e.g. "READY=1") to the socket systemd names in
// NOTIFY_SOCKET. Without one (not started by systemd) it does nothing and
// returns nil.
func Notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q: %w", state, err)
	}
	return nil
}

// UnderJournal reports whether stderr goes to the systemd journal, where
// the journal adds its own timestamps.
func UnderJournal() bool { return os.Getenv("JOURNAL_STREAM") != "" }
