package realserver

import (
	"errors"
	"fmt"
	"github.com/dsrd/dsrd/vrrp"
	"net/netip"
	"strings"
)

// The rules for the agent's input, exported so that whoever reads a
// configuration for it (internal/config) applies the same ones and
// accepts nothing New refuses.

// ErrLoopbackInterface is CheckInterface's error for lo.
var ErrLoopbackInterface = errors.New("lo cannot face the directors: the VIPs go on lo; list the interfaces facing the directors")

// CheckInterface reports why name cannot be one of Config.Interfaces, or
// nil when it can: a Linux interface name (1 to 15 bytes, not . or ..,
// no '/', ':' or white space) that is not a sysctl directory of its own
// (all, default) and not lo (ErrLoopbackInterface).
func CheckInterface(name string) error {
	switch {
	case name == "":
		return errors.New("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("%q is not an interface name", name)
	case strings.ContainsAny(name, "/: \t\n\v\f\r"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	case name == "all" || name == "default":
		return fmt.Errorf("interface name %q is reserved: net.ipv4.conf.%s is not an interface", name, name)
	case name == "lo":
		return ErrLoopbackInterface
	}
	return nil
}

// CheckVIP reports why a cannot be one of Config.VIPs, or nil when it can:
// the addresses a director can own as a VIP (vrrp.CheckVIP: one rule for
// both ends of direct routing). An IPv4-mapped IPv6 address is judged, and
// put on lo, as its IPv4 address.
func CheckVIP(a netip.Addr) error {
	if !a.IsValid() {
		return errors.New("invalid VIP")
	}
	return vrrp.CheckVIP(a)
}
