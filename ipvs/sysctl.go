package ipvs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	// DropEntry, DropPacket and SecureTCP are IPVS's defences against a
	// connection table that eats the memory (a SYN flood): the zero value
	// leaves the kernel's setting.
	DropEntry, DropPacket, SecureTCP Defence
	// AMemThresh is the available memory below which the auto defences
	// act, in bytes (net.ipv4.vs.amemthresh, which counts pages: see
	// PageSize); 0 leaves the kernel's (1024 pages).
	AMemThresh int64
	// PageSize converts AMemThresh to pages; 0 means os.Getpagesize().
	PageSize int
}

// Defence is the mode of one of IPVS's defences (drop_entry, drop_packet,
// secure_tcp).
type Defence string

// The defence modes.
const (
	// DefenceOff never acts (the kernel's default, 0).
	DefenceOff Defence = "off"
	// DefenceAuto acts while the available memory is below amemthresh:
	// the kernel writes 1 (armed) or 2 (acting) to the sysctl itself,
	// once a second.
	DefenceAuto Defence = "auto"
	// DefenceAlways always acts (3).
	DefenceAlways Defence = "always"
)

// ParseDefence validates a defence mode's name.
func ParseDefence(s string) (Defence, error) {
	switch d := Defence(s); d {
	case DefenceOff, DefenceAuto, DefenceAlways:
		return d, nil
	}
	return "", fmt.Errorf("unknown defence mode %q (want off, auto or always)", s)
}

// DefenceSysctls are the names of the defence sysctls, in
// net.ipv4.vs, in the order DirectorSysctls lists them.
var DefenceSysctls = []string{"drop_entry", "drop_packet", "secure_tcp"}

// DefenceActive reports whether a defence sysctl's value means the
// defence acts now: 2 (auto, memory below amemthresh) or 3 (always).
func DefenceActive(value string) bool { return value == "2" || value == "3" }

// defenceSysctl is the sysctl of defence name in mode d; ok is false for
// the zero mode (the kernel's value stays).
func defenceSysctl(name string, d Defence) (Sysctl, bool) {
	why := map[string]string{
		"drop_entry":  "drop random half-open (SYN_RECV) entries from the connection table to win back memory",
		"drop_packet": "drop a share of the packets before they reach IPVS, more the less memory is left",
		"secure_tcp":  "use the stricter TCP state table, with shorter timeouts for half-open connections",
	}[name]
	switch d {
	case DefenceOff:
		return Sysctl{Family: "net.ipv4.vs", Name: name, Value: "0", Why: "off (configured); auto or always: " + why}, true
	case DefenceAuto:
		return Sysctl{Family: "net.ipv4.vs", Name: name, Value: "1", Also: []string{"2"},
			Why: "auto (configured): while the available memory is below amemthresh, " + why}, true
	case DefenceAlways:
		return Sysctl{Family: "net.ipv4.vs", Name: name, Value: "3", Why: "always (configured): " + why}, true
	}
	return Sysctl{}, false
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
	// Also are other values that count as Value: the kernel moves an auto
	// defence between 1 (armed) and 2 (acting) by itself, and writing 1
	// over its 2 would disarm it for a second.
	Also []string
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
	{Sysctl{Family: "net.ipv4.vs", Name: "sloppy_tcp", Value: "1",
		Why: "accept a TCP flow mid-stream (no SYN seen): flows survive a failover to another director"},
		func(s Settings) bool { return s.SloppyTCP }},
	{Sysctl{Family: "net.ipv4.vs", Name: "sloppy_sctp", Value: "1",
		Why: "the same for SCTP associations (follows sloppy_tcp)"},
		func(s Settings) bool { return s.SloppyTCP }},
	{Sysctl{Family: "net.ipv4.vs", Name: "expire_nodest_conn", Value: "1",
		Why: "expire a connection at once when its real was deleted, instead of dropping its packets until it times out"},
		func(s Settings) bool { return s.ExpireNodestConn }},
	{Sysctl{Family: "net.ipv4.vs", Name: "expire_quiescent_template", Value: "1",
		Why: "expire the persistence templates of a weight-0 real, so persistent clients move on from a drained or failed real"},
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
		out = append(out, Sysctl{Family: "net.ipv4.vs", Name: "conn_reuse_mode", Value: strconv.Itoa(*s.ConnReuseMode),
			Why: "configured: port-reuse rescheduling (see DirectorSysctls' documentation)"})
	}
	for i, d := range []Defence{s.DropEntry, s.DropPacket, s.SecureTCP} {
		if sc, ok := defenceSysctl(DefenceSysctls[i], d); ok {
			out = append(out, sc)
		}
	}
	if s.AMemThresh > 0 {
		page := int64(s.PageSize)
		if page <= 0 {
			page = int64(os.Getpagesize())
		}
		pages := max(1, (s.AMemThresh+page-1)/page)
		out = append(out, Sysctl{Family: "net.ipv4.vs", Name: "amemthresh", Value: strconv.FormatInt(pages, 10),
			Why: fmt.Sprintf("configured: the auto defences act below %d MiB of available memory (%d pages of %d bytes)", s.AMemThresh>>20, pages, page)})
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
		if err == nil && (cur == s.Value || slices.Contains(s.Also, cur)) {
			continue
		}
		if err := w.Set(s.Key(), s.Value); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
