package realserver

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// arpSetting is one per-interface ARP sysctl a real server needs and the
// minimum value that makes DR work.
type arpSetting struct {
	// Name is the entry under net.ipv4.conf.<iface>.
	Name string
	// Min is the value the agent sets; a higher value is stricter and is
	// left alone.
	Min int
	// Why says what breaks without it.
	Why string
}

// arpSettings is the table of ARP sysctls the agent keeps on net.ipv4.conf.all
// and on every director-facing interface. The kernel uses the maximum of
// conf/all and conf/<iface> for both (Documentation/networking/ip-sysctl.rst),
// so all alone would do; setting the interfaces too keeps them right if
// someone lowers all. IPv6 needs nothing: Linux answers a neighbour
// solicitation only for addresses on the interface it arrived on, and a VIP
// on lo is not.
func arpSettings() []arpSetting {
	return []arpSetting{
		{
			Name: "arp_ignore", Min: 1,
			Why: "answer ARP only for addresses configured on the interface the request came in on: " +
				"never for the VIP on lo, which the director alone must answer for",
		},
		{
			Name: "arp_announce", Min: 2,
			Why: "use the best local address of the target's subnet as ARP source, never the VIP: " +
				"otherwise the host's ARP requests teach neighbours that the VIP is at its MAC",
		},
	}
}

// sysctlRule is one sysctl the agent keeps at Min or above.
type sysctlRule struct {
	// Name is the sysctl's dotted name (net.ipv4.conf.all.arp_ignore).
	Name string
	// Iface is the interface of a per-interface entry, "all" for the global one.
	Iface string
	// Min is the value the agent sets and the least it accepts; with
	// AtMost, the most it accepts (rp_filter in tunnel mode must stay 0).
	Min    int
	AtMost bool
	Why    string
}

// holds reports whether v satisfies the rule.
func (r sysctlRule) holds(v int) bool {
	if r.AtMost {
		return v <= r.Min
	}
	return v >= r.Min
}

// sysctlRules expands arpSettings for all and each director-facing interface.
func sysctlRules(ifaces []string) []sysctlRule {
	var rules []sysctlRule
	for _, iface := range append([]string{"all"}, ifaces...) {
		for _, s := range arpSettings() {
			rules = append(rules, sysctlRule{Name: netkernel.ConfSysctl(iface, s.Name), Iface: iface, Min: s.Min, Why: s.Why})
		}
	}
	return rules
}

// synCookies is the rule the agent keeps when asked to (Config.SYNCookies):
// SYN cookies on (1: sent when the SYN backlog overflows).
var synCookies = sysctlRule{Name: "net.ipv4.tcp_syncookies", Iface: "all", Min: 1,
	Why: "answer with SYN cookies when the SYN backlog overflows: in DR the director forwards a SYN flood to this host, and without them its backlog fills and clients are refused"}

// rules are the sysctls this agent keeps: the ARP settings, and SYN
// cookies when asked.
func (a *Agent) rules() []sysctlRule {
	r := sysctlRules(a.cfg.Interfaces)
	if a.cfg.SYNCookies {
		r = append(r, synCookies)
	}
	if a.cfg.Tunnel {
		r = append(r, tunnelRules(a.cfg.VIPs)...)
	}
	return r
}

// SysctlChange is one sysctl the agent wrote or restored.
type SysctlChange struct {
	// Name is the sysctl(8) name (net.ipv4.conf.all.arp_ignore).
	Name string `json:"name"`
	From string `json:"from"`
	To   string `json:"to"`
}

// String formats the change for logs ("net.ipv4.conf.all.arp_ignore 0->1").
func (c SysctlChange) String() string { return c.Name + " " + c.From + "->" + c.To }

// readInt reads a sysctl holding an integer.
func readInt(k Kernel, name string) (int, error) {
	s, err := k.Sysctl(name)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: not an integer: %q", name, s)
	}
	return v, nil
}

// applySysctls raises every rule's sysctl to its minimum (lowers an
// AtMost rule's to its maximum). Before the first
// change of a sysctl, its current value is recorded in st and st is saved
// through save: the original is on disk before the kernel changes. Rules of
// interfaces that do not exist are returned in missing, not as errors: the
// interface may appear later (a link event triggers a new apply).
func applySysctls(k Kernel, rules []sysctlRule, st *state, save func() error) (changed []SysctlChange, missing []string, err error) {
	for _, r := range rules {
		cur, err := k.Sysctl(r.Name)
		if errors.Is(err, fs.ErrNotExist) && r.Iface != "all" {
			if len(missing) == 0 || missing[len(missing)-1] != r.Iface {
				missing = append(missing, r.Iface)
			}
			continue
		}
		if err != nil {
			return changed, missing, err
		}
		v, err := strconv.Atoi(cur)
		if err != nil {
			return changed, missing, fmt.Errorf("sysctl %s: not an integer: %q", r.Name, cur)
		}
		if r.holds(v) {
			continue
		}
		want := strconv.Itoa(r.Min)
		if _, ok := st.Sysctls[r.Name]; !ok {
			st.Sysctls[r.Name] = savedSysctl{Original: cur, Set: want}
			if err := save(); err != nil {
				delete(st.Sysctls, r.Name)
				return changed, missing, fmt.Errorf("record original %s=%s: %w", r.Name, cur, err)
			}
		}
		if err := k.SetSysctl(r.Name, want); err != nil {
			return changed, missing, err
		}
		changed = append(changed, SysctlChange{Name: r.Name, From: cur, To: want})
	}
	return changed, missing, nil
}

// restoreSysctls puts back the original value of every sysctl recorded in
// st whose current value is still the one the agent set, and forgets it.
// A value someone changed since is left as it is (the agent undoes only its
// own changes); an entry of an interface that is gone is forgotten. Entries
// that fail to restore stay in st.
func restoreSysctls(k Kernel, st *state) (restored []SysctlChange, kept []string, err error) {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(st.Sysctls)) {
		saved := st.Sysctls[name]
		cur, rerr := k.Sysctl(name)
		switch {
		case errors.Is(rerr, fs.ErrNotExist):
			delete(st.Sysctls, name)
			continue
		case rerr != nil:
			errs = append(errs, rerr)
			continue
		}
		if cur != saved.Set {
			kept = append(kept, fmt.Sprintf("%s=%s", name, cur))
			delete(st.Sysctls, name)
			continue
		}
		if cur != saved.Original {
			if werr := k.SetSysctl(name, saved.Original); werr != nil {
				errs = append(errs, werr)
				continue
			}
		}
		restored = append(restored, SysctlChange{Name: name, From: cur, To: saved.Original})
		delete(st.Sysctls, name)
	}
	return restored, kept, errors.Join(errs...)
}

// pollSysctls reads every rule's sysctl and reports whether one does not
// hold, with a reason naming them for the apply it calls for. seen
// holds the value each sysctl had at the previous pass (or after the
// repair that pass asked for); a drift is logged at warn with that old
// value and the new one. Entries that do not exist (an interface not
// there yet) are skipped: the link event of its arrival triggers the
// apply that sets them. A read that fails otherwise is logged and left to
// the resync: the apply would fail the same way.
func (a *Agent) pollSysctls(rules []sysctlRule, seen map[string]string) (reason string, drifted bool) {
	var names []string
	for _, r := range rules {
		cur, err := a.k.Sysctl(r.Name)
		var v int
		if err == nil {
			v, err = strconv.Atoi(cur)
		}
		switch {
		case errors.Is(err, fs.ErrNotExist) && r.Iface != "all":
			delete(seen, r.Name)
		case err != nil:
			a.log.Debug("sysctl poll: read failed", slog.String("sysctl", r.Name), slog.Any("error", err))
		case !r.holds(v):
			name := r.Name
			if r.AtMost {
				a.log.Warn("sysctl drifted above the value the tunnel needs; repairing",
					slog.String("sysctl", name), slog.String("old", seen[r.Name]),
					slog.String("new", cur), slog.Int("max", r.Min))
			} else {
				a.log.Warn("sysctl drifted below the value DR needs; repairing",
					slog.String("sysctl", name), slog.String("old", seen[r.Name]),
					slog.String("new", cur), slog.Int("min", r.Min))
			}
			names = append(names, name+"="+cur)
			// The apply this asks for writes Min: the next pass compares
			// with it, so a drift that comes back is logged again.
			seen[r.Name] = strconv.Itoa(r.Min)
		default:
			seen[r.Name] = cur
		}
	}
	if len(names) == 0 {
		return "", false
	}
	return "sysctl drifted: " + strings.Join(names, ", "), true
}
