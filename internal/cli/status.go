package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/raft/pki"
)

func statusCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "status",
		Usage: "show the cluster, the VIP owner, services and reals with health, weight and connections",
		Description: "Asks the director or witness on this host (through its API socket) for its view: Raft state\n" +
			"and leader, VRRP state and VIPs held, the cluster configuration's generation and the one this\n" +
			"director's IPVS runs, the last reload and reconcile, the members with the generation each\n" +
			"runs, and per service its reals with admin state, health, weight (configured/IPVS) and\n" +
			"connections. Exit status: 0, or 1 when no daemon answers on the socket.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "json", Usage: "print the status as JSON for machines"},
			&ucli.IntFlag{Name: "top", Usage: fmt.Sprintf("with each service's admission control, its `N` sources dropped most (deny, not allowed, over their rate; at most %d)", api.MaxTop)},
			socketFlag(),
		},
		Action: statusRun,
	}
}

func statusRun(c *ucli.Context) error {
	if err := noArgs(c, "status"); err != nil {
		return err
	}
	top := c.Int("top")
	if top < 0 {
		return usage("status", "--top %d: want a number of sources, 1 to %d", top, api.MaxTop)
	}
	top = min(top, api.MaxTop)
	client, ctx, cancel := apiClient(c, statusTimeout)
	defer cancel()
	var st api.Status
	var err error
	if top > 0 {
		st, err = client.StatusTop(ctx, top)
	} else {
		st, err = client.StatusWithPeers(ctx)
	}
	if err != nil {
		return apiFailure("status", err)
	}
	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return fmt.Errorf("write status: %w", err)
		}
		return nil
	}
	if err := renderStatus(c.App.Writer, st, top > 0); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

// renderStatus writes st for people: the node and cluster first, then one
// table of reals per service; with top, the sources each service's
// admission control dropped most ("none" when it has none).
func renderStatus(w io.Writer, st api.Status, top bool) error {
	var buf bytes.Buffer
	if err := writeStatus(&buf, st, top); err != nil {
		return err
	}
	// Empty last columns leave the padding of the one before them.
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// writeStatus is renderStatus with the tables' trailing blanks.
func writeStatus(w io.Writer, st api.Status, top bool) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	director := st.Role != "witness"
	line := func(key, format string, args ...any) {
		fmt.Fprintf(tw, "%s\t%s\n", key, fmt.Sprintf(format, args...))
	}

	node := st.Node
	if st.Role != "" || st.Version != "" {
		node += " (" + joinNonEmpty(", ", st.Role, prefixed("dsrd ", st.Version)) + ")"
	}
	line("node", "%s", node)
	line("raft", "%s", raftLine(st.Raft))
	if c := st.Raft.TLS; c != nil {
		line("tls", "%s", certLine(c, time.Now()))
	}
	if director {
		line("vrrp", "%s", orDash(st.VRRPState))
		if len(st.VIPs) == 0 {
			line("vips", "-")
		}
		for i, v := range st.VIPs {
			key := ""
			if i == 0 {
				key = "vips"
			}
			held := "not held"
			if v.Held {
				held = "held"
			}
			if v.Mode != "" {
				ann := "announced"
				if !v.Announced {
					ann = "not announced: " + orDash(v.Withdrawn)
				}
				line(key, "%s on %s (%s): %s, %s", v.Address, orDash(v.Interface), v.Mode, held, ann)
				continue
			}
			line(key, "%s on %s: %s", v.Address, orDash(v.Interface), held)
		}
		if b := st.BGP; b != nil {
			bgpLines(line, b)
		}
	}
	gen := fmt.Sprint(st.Generation)
	if director {
		gen += fmt.Sprintf(" (running %d)", st.RunningGeneration)
	}
	line("generation", "%s", gen)
	if director && st.RunningGeneration != st.Generation {
		line("", "WARNING: this director's IPVS runs generation %d, the cluster's configuration is generation %d",
			st.RunningGeneration, st.Generation)
	}
	if st.ConfigHash != "" {
		line("config hash", "%s", st.ConfigHash)
	}
	if director {
		reloadLines(line, st.Reload)
		line("reconcile", "%s", outcome(st.Reconcile.At, st.Reconcile.OK, st.Reconcile.Error))
		if x := st.IPVS; x != nil {
			ipvsLines(line, x)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(st.Members) > 0 {
		fmt.Fprintln(w)
		if err := renderMembers(w, st); err != nil {
			return err
		}
	}
	for _, s := range st.Services {
		fmt.Fprintln(w)
		if err := renderService(w, s, top); err != nil {
			return err
		}
	}
	return nil
}

// certLine describes the node's cluster certificate and its expiry, with
// the warning pki.ExpiryWarningWindow asks for.
func certLine(c *api.CertStatus, now time.Time) string {
	left := c.NotAfter.Sub(now)
	s := fmt.Sprintf("%s %s, expires %s (%d days)", c.Role, c.NodeID, c.NotAfter.UTC().Format(time.DateOnly), int(left.Hours()/24))
	switch {
	case left <= 0:
		s += ": EXPIRED, peers refuse this node"
	case left < pki.ExpiryWarningWindow:
		s += ": RENEW SOON (dsrd tls cert issue)"
	}
	return s
}

// raftLine summarises the node's Raft state.
func raftLine(r api.Raft) string {
	parts := []string{orDash(r.State), fmt.Sprintf("term %d", r.Term)}
	switch {
	case r.LeaderID != "":
		parts = append(parts, fmt.Sprintf("leader %s (%s)", r.LeaderID, r.LeaderAddress))
	default:
		parts = append(parts, "NO LEADER")
	}
	parts = append(parts, fmt.Sprintf("commit %d, applied %d", r.CommitIndex, r.AppliedIndex))
	if !r.LastContact.IsZero() && !r.Leader {
		parts = append(parts, "last contact "+stamp(r.LastContact))
	}
	return strings.Join(parts, ", ")
}

// reloadFailure says what a failed reload means: an invalid file, or a
// valid one the cluster did not take (a try again); the running
// configuration stays either way. A director that has applied no cluster
// configuration yet (generation 0) names none.
func reloadFailure(r api.ReloadResult) string {
	running := "the running configuration stays"
	if r.Generation > 0 {
		running = fmt.Sprintf("the running configuration (generation %d) stays", r.Generation)
	}
	if r.NotSubmitted {
		return "the file is valid but the cluster did not take it (try again); " + running
	}
	return "the file is invalid; " + running
}

// reloadLines writes the last reload: its outcome and a failed one's errors.
func reloadLines(line func(key, format string, args ...any), r api.ReloadResult) {
	switch {
	case r.At.IsZero() && r.OK && len(r.Errors) == 0:
		line("last reload", "none")
	case r.OK:
		change := "unchanged"
		if r.Changed {
			change = "changed"
		}
		line("last reload", "ok at %s: generation %d, %s", stamp(r.At), r.Generation, change)
	default:
		line("last reload", "FAILED at %s: %s", stamp(r.At), reloadFailure(r))
		for _, e := range r.Errors {
			line("", "  %s", e)
		}
	}
}

// outcome formats the outcome of a step that ran at at.
func outcome(at time.Time, ok bool, err string) string {
	switch {
	case at.IsZero():
		return "not yet"
	case ok:
		return "ok at " + stamp(at)
	case err == "":
		return "FAILED at " + stamp(at)
	}
	return "FAILED at " + stamp(at) + ": " + err
}

// renderMembers writes the members with suffrage, the leader, and the
// generation each one's IPVS runs as it reported it.
func renderMembers(w io.Writer, st api.Status) error {
	peers := map[string]api.Peer{}
	for _, p := range st.Peers {
		peers[p.ID] = p
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tADDRESS\tSUFFRAGE\tLEADER\tRUNNING")
	for _, m := range st.Members {
		leader := ""
		if m.Leader {
			leader = "*"
		}
		var running string
		if m.ID == st.Node {
			running = runningOf(st.Role, st.RunningGeneration, st.VRRPState, "this node", st.Generation)
		} else if p, ok := peers[m.ID]; ok {
			if p.Error != "" {
				running = "unreachable: " + p.Error
			} else {
				running = runningOf(p.Role, p.RunningGeneration, p.VRRPState, "", st.Generation)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.ID, m.Address, m.Suffrage, leader, running)
	}
	return tw.Flush()
}

// runningOf formats a member's running generation with its role, VRRP
// state and note; a director behind the cluster generation gen is flagged.
func runningOf(role string, running uint64, vrrp, note string, gen uint64) string {
	if role == "witness" {
		return "- (" + joinNonEmpty(", ", role, note) + ")"
	}
	s := fmt.Sprint(running)
	if details := joinNonEmpty(", ", role, vrrp, note); details != "" {
		s += " (" + details + ")"
	}
	if running != gen {
		s += fmt.Sprintf(" BEHIND generation %d", gen)
	}
	return s
}

// renderService writes a service's line and the table of its reals, and
// with top the sources its admission control dropped most.
func renderService(w io.Writer, s api.Service, top bool) error {
	state := "UP"
	if !s.Up {
		state = "DOWN"
	}
	if s.Reason != "" {
		state += " (" + s.Reason + ")"
	}
	fmt.Fprintf(w, "service %s  %s  %s  %s  healthy %d, quorum %d\n", s.Name, s.Key, orDash(s.Scheduler), state, s.Healthy, s.Quorum)
	if a := s.Admission; a != nil {
		fmt.Fprintf(w, "  admission: %s\n", admissionLine(a))
		if top {
			if err := renderTop(w, a.Top); err != nil {
				return err
			}
		}
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  REAL\tADMIN\tHEALTH\tWEIGHT\tACTIVE\tINACTIVE")
	for _, r := range s.Reals {
		addr := netip.AddrPortFrom(r.Address, r.Port).String()
		if r.Port == 0 {
			addr = r.Address.String()
		}
		if r.Sorry {
			addr += " (sorry)"
		}
		if r.Tunnel {
			addr += " (tunnel)"
		}
		health := orDash(r.Health)
		if r.CheckThroughVIP {
			health += " via VIP"
		}
		if r.HealthReason != "" {
			health += " (" + r.HealthReason + ")"
		}
		ipvsWeight := "-"
		if r.IPVSWeight >= 0 {
			ipvsWeight = fmt.Sprint(r.IPVSWeight)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d/%s\t%d\t%d\n", addr, orDash(r.Admin), health, r.Weight, ipvsWeight, r.ActiveConns, r.InactiveConns)
	}
	return tw.Flush()
}

// renderTop writes the sources a service's admission control dropped
// most, as a table.
func renderTop(w io.Writer, top []api.TopSource) error {
	if len(top) == 0 {
		_, err := fmt.Fprintln(w, "  top dropped sources: none")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  TOP DROPPED SOURCE\tPACKETS\tFORGOTTEN IN")
	for _, s := range top {
		fmt.Fprintf(tw, "  %s\t%d\t%s\n", s.Source, s.Packets, s.ExpiresIn.Round(time.Second))
	}
	return tw.Flush()
}

// admissionLine describes a service's admission control on one line.
func admissionLine(a *api.Admission) string {
	state := "in place"
	if !a.InPlace {
		state = "NOT IN PLACE: the service is kept out of IPVS"
	}
	var parts []string
	if a.Allow > 0 {
		parts = append(parts, fmt.Sprintf("allow %d prefixes", a.Allow))
	}
	if a.Deny > 0 {
		parts = append(parts, fmt.Sprintf("deny %d prefixes", a.Deny))
	}
	if a.SourceRate != "" {
		p := fmt.Sprintf("per /%d source %s", a.SourcePrefix, a.SourceRate)
		if a.MeterSources >= 0 {
			p += fmt.Sprintf(" (%d sources tracked)", a.MeterSources)
		}
		parts = append(parts, p)
	}
	if a.ServiceRate != "" {
		parts = append(parts, "cap "+a.ServiceRate)
	}
	var dropped []string
	for _, r := range []string{"deny", "not_allowed", "rate", "cap"} {
		if n, ok := a.Dropped[r]; ok {
			dropped = append(dropped, fmt.Sprintf("%s %d", r, n))
		}
	}
	if len(dropped) > 0 {
		parts = append(parts, "dropped "+strings.Join(dropped, ", "))
	}
	if a.Error != "" {
		parts = append(parts, "error: "+a.Error)
	}
	return state + prefixed("; ", strings.Join(parts, "; "))
}

// stamp formats a time for people and goldens alike: UTC, to the second.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func joinNonEmpty(sep string, parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, sep)
}

// bgpLines prints a director's BGP speaker: one line per session.
// ipvsLines shows IPVS's connections and defences, with a warning while
// a defence acts.
func ipvsLines(line func(key, format string, args ...any), x *api.IPVSStatus) {
	parts := []string{fmt.Sprintf("%d connections", x.Connections)}
	var acting []string
	for _, d := range x.Defences {
		p := d.Name + " " + d.Mode
		if d.Active && d.Mode == "auto" {
			p += " (acting)"
			acting = append(acting, d.Name)
		}
		parts = append(parts, p)
	}
	line("ipvs", "%s", strings.Join(parts, ", "))
	if len(acting) > 0 {
		line("", "WARNING: IPVS defends itself (%s): free memory is below amemthresh (%s)",
			strings.Join(acting, ", "), bytesText(x.AMemThresh))
	}
	if y := x.Sync; y != nil {
		var ds []string
		for _, d := range y.Daemons {
			ds = append(ds, fmt.Sprintf("%s on %s (id %d, %s:%d, ttl %d, maxlen %d)", d.State, d.Interface, d.SyncID, d.Group, d.Port, d.TTL, d.MaxLen))
		}
		if len(ds) == 0 {
			ds = []string{"none running"}
		}
		line("sync", "%s", strings.Join(ds, "; "))
		if y.Error != "" {
			line("", "WARNING: %s", y.Error)
		}
	}
	if x.Error != "" {
		line("", "WARNING: %s", x.Error)
	}
}

// bytesText formats a size in MiB, or "unknown".
func bytesText(b uint64) string {
	if b == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d MiB", b>>20)
}

func bgpLines(line func(key, format string, args ...any), b *api.BGP) {
	if len(b.Peers) == 0 {
		line("bgp", "no peers")
	}
	for i, p := range b.Peers {
		key := ""
		if i == 0 {
			key = "bgp"
		}
		s := fmt.Sprintf("%s (AS %d): %s", p.Address, p.ASN, orDash(p.State))
		if !p.Since.IsZero() {
			s += fmt.Sprintf(" for %s", time.Since(p.Since).Round(time.Second))
		}
		if p.BFD != "" {
			s += ", bfd " + p.BFD
		}
		s += fmt.Sprintf(", %d announced", p.Announced)
		line(key, "%s", s)
	}
	if b.Graceful {
		line("", "announcing as leaving (graceful shutdown)")
	}
	if b.Detail != "" {
		line("", "%s", b.Detail)
	}
	if b.Error != "" {
		line("", "WARNING: %s", b.Error)
	}
	for _, d := range b.Drains {
		s := fmt.Sprintf("drained: %s since %s", d.Node, d.Since.UTC().Format(time.RFC3339))
		if d.By != "" && d.By != d.Node {
			s += " (by " + d.By + ")"
		}
		if d.Forced {
			s += ", forced"
		}
		line("", "%s", s)
	}
}
