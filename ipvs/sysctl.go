package ipvs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Settings is the part of a director's configuration that sets the
// kernel's IPVS behaviour rather than its table: the sysctls of
// DirectorSysctls and the connection timeouts of ApplyTimeouts. It has no
// defaults of its own: the zero value turns every sysctl off and leaves
// conn_reuse_mode and the timeouts to the kernel; the configuration file's
// defaults (internal/config) turn the sysctls on.
type Settings struct {
	// Timeouts are the connection timeouts; zero fields leave the kernel's.
	Timeouts Timeouts
	// SloppyTCP sets net.ipv4.vs.sloppy_tcp and sloppy_sctp.
	SloppyTCP bool
	// ExpireNodestConn sets net.ipv4.vs.expire_nodest_conn.
	ExpireNodestConn bool
	// ExpireQuiescentTemplate sets net.ipv4.vs.expire_quiescent_template.
	ExpireQuiescentTemplate bool
	// ConnReuseMode sets net.ipv4.vs.conn_reuse_mode (0, 1 or 2); nil
	// leaves the kernel's value.
	ConnReuseMode *int
}

// Sysctl is one kernel setting a director applies.
type Sysctl struct {
	// Family is the sysctl's directory, e.g. "net.ipv4.vs" (IPVS's
	// settings live there for IPv6 services too).
	Family string
	// Name is the setting within Family, e.g. "sloppy_tcp".
	Name string
	// Value is written as is.
	Value string
	// Why says what the value does for a DR director.
	Why string
}

// Key returns the full dotted name, e.g. "net.ipv4.vs.sloppy_tcp".
func (s Sysctl) Key() string { return s.Family + "." + s.Name }

// The settings a DR director needs, and why each is on; DirectorSysctls
// turns each on or off as Settings says. Not in the table:
//
//   - net.ipv4.ip_forward / net.ipv6.conf.all.forwarding: not needed. In
//     direct routing the VIP is local on the director, IPVS takes the packet
//     at LOCAL_IN and transmits it itself (ip_vs_dr_xmit) with the real's
//     MAC; nothing is routed through the forwarding path. Enabling it would
//     only make the director a router for everything else it receives.
//   - net.ipv4.vs.conn_reuse_mode is left at the kernel's value (1) unless
//     configured. 1 reschedules a new connection that reuses the source port
//     of an old one when the old one is in TIME_WAIT, which a DR director
//     never sees (it sees no replies); 2 also does so for FIN_WAIT, the last
//     state a DR director sees, which lets a busy client population reach
//     newly added or re-weighted reals instead of sticking to the old ones;
//     0 disables rescheduling: a reused port goes to the same real, even one
//     that is draining at weight 0. Rescheduling drops the SYN of the reused
//     connection when net.ipv4.vs.conntrack=1, costing the client a 1 s SYN
//     retransmit, which is why some deployments choose 0.
//   - net.ipv4.vs.conntrack stays 0: DR directors need no netfilter state.
var directorSysctls = []struct {
	Sysctl
	// on picks the Settings field that turns the sysctl on.
	on func(Settings) bool
}{
	{Sysctl{"net.ipv4.vs", "sloppy_tcp", "1",
		"accept a TCP flow mid-stream (no SYN seen): flows survive a failover to another director"},
		func(s Settings) bool { return s.SloppyTCP }},
	{Sysctl{"net.ipv4.vs", "sloppy_sctp", "1",
		"the same for SCTP associations (follows sloppy_tcp)"},
		func(s Settings) bool { return s.SloppyTCP }},
	{Sysctl{"net.ipv4.vs", "expire_nodest_conn", "1",
		"expire a connection at once when its real was deleted, instead of dropping its packets until it times out"},
		func(s Settings) bool { return s.ExpireNodestConn }},
	{Sysctl{"net.ipv4.vs", "expire_quiescent_template", "1",
		"expire the persistence templates of a weight-0 real, so persistent clients move on from a drained or failed real"},
		func(s Settings) bool { return s.ExpireQuiescentTemplate }},
}

// DirectorSysctls returns the sysctls to apply for s: every sysctl of the
// table, on ("1") or off ("0") as s says, plus conn_reuse_mode when s sets
// it. An off sysctl's Why says so before what on would do.
func DirectorSysctls(s Settings) []Sysctl {
	out := make([]Sysctl, 0, len(directorSysctls)+1)
	for _, d := range directorSysctls {
		sc := d.Sysctl
		if !d.on(s) {
			sc.Value = "0"
			sc.Why = "off (configured); on: " + sc.Why
		}
		out = append(out, sc)
	}
	if s.ConnReuseMode != nil {
		out = append(out, Sysctl{"net.ipv4.vs", "conn_reuse_mode", strconv.Itoa(*s.ConnReuseMode),
			"configured: port-reuse rescheduling (see DirectorSysctls' documentation)"})
	}
	return out
}

// SysctlWriter reads and writes kernel settings by dotted name.
type SysctlWriter interface {
	Get(name string) (string, error)
	Set(name, value string) error
}

// ProcSys reads and writes sysctls under a /proc/sys directory. The net.*
// settings are those of the network namespace of the thread that opens the
// file.
type ProcSys struct {
	// Root is the /proc/sys directory; empty means "/proc/sys".
	Root string
}

// path returns the file of a dotted name.
func (p ProcSys) path(name string) string {
	root := p.Root
	if root == "" {
		root = "/proc/sys"
	}
	return filepath.Join(root, filepath.FromSlash(strings.ReplaceAll(name, ".", "/")))
}

// Get returns the value of a setting, white space trimmed.
func (p ProcSys) Get(name string) (string, error) {
	b, err := os.ReadFile(p.path(name))
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", name, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Set writes a setting.
func (p ProcSys) Set(name, value string) error {
	f, err := os.OpenFile(p.path(name), os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("write sysctl %s: %w", name, err)
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// ApplySysctls writes each setting that differs from its current value and
// returns every failure together. It writes nothing that already holds
// the value.
func ApplySysctls(ctx context.Context, w SysctlWriter, list []Sysctl) error {
	var errs []error
	for _, s := range list {
		if err := ctx.Err(); err != nil {
			return err
		}
		cur, err := w.Get(s.Key())
		if err == nil && cur == s.Value {
			continue
		}
		if err := w.Set(s.Key(), s.Value); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
