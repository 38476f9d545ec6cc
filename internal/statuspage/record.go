package statuspage

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/metrics"
)

// Bounds of what the page keeps in memory.
const (
	// historyLen is the samples kept per real: at SampleInterval, the
	// last five minutes.
	historyLen = 60
	// maxReals bounds the reals with a history; past it the rest get
	// none (a configuration that large is read in dsrd status).
	maxReals = 10_000
	// maxEvents bounds the events kept, newest first.
	maxEvents = 200
	// maxEventText bounds one event's text (a reload's errors).
	maxEventText = 512
)

// Event is one thing that happened, as the page lists it.
type Event struct {
	At time.Time `json:"at"`
	// Kind is leader, vip, reload, real, service or node.
	Kind string `json:"kind"`
	// Warn marks what an operator should look at.
	Warn bool   `json:"warn,omitempty"`
	Text string `json:"text"`
}

// Sample is one real's state at one moment.
type Sample struct {
	At time.Time `json:"at"`
	// Active and Inactive are IPVS's connection counters.
	Active   uint32 `json:"active"`
	Inactive uint32 `json:"inactive"`
	// Rate is new connections per second since the previous sample.
	Rate float64 `json:"rate"`
}

// realKey names a real across samples: its service's key and address:port.
type realKey struct {
	Service string
	Real    netip.AddrPort
}

// String formats the key as the JSON and the page's data attributes do.
func (k realKey) String() string { return k.Service + "/" + k.Real.String() }

// recorder keeps the history of each real and the events found by comparing
// each snapshot with the one before.
type recorder struct {
	mu      sync.Mutex
	last    *api.Status
	conns   map[realKey]uint64 // connections_total at the last sample
	lastAt  time.Time
	history map[realKey][]Sample
	events  []Event // newest first
}

func newRecorder() *recorder {
	return &recorder{conns: map[realKey]uint64{}, history: map[realKey][]Sample{}}
}

// record takes one snapshot taken at now.
func (r *recorder) record(now time.Time, snap metrics.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := snap.Status
	if r.last == nil {
		r.add(Event{At: now, Kind: "node", Text: fmt.Sprintf("%s (%s) watched from here on", st.Node, st.Role)})
	} else {
		for _, e := range diff(r.last, &st) {
			e.At = now
			r.add(e)
		}
	}
	r.last = &st

	seen := map[realKey]bool{}
	elapsed := now.Sub(r.lastAt).Seconds()
	for _, svc := range st.Services {
		for _, rs := range svc.Reals {
			k := realKey{Service: svc.Key, Real: netip.AddrPortFrom(rs.Address, rs.Port)}
			if seen[k] {
				continue
			}
			if _, ok := r.history[k]; !ok && len(r.history) >= maxReals {
				continue
			}
			seen[k] = true
			s := Sample{At: now, Active: rs.ActiveConns, Inactive: rs.InactiveConns}
			if stats, ok := snap.Traffic[metrics.RealID{Service: svc.Key, Real: k.Real}]; ok {
				total := uint64(stats.Conns)
				if prev, had := r.conns[k]; had && elapsed > 0 {
					if total < prev { // the kernel's 32-bit counter wrapped
						total += 1 << 32
					}
					s.Rate = float64(total-prev) / elapsed
				}
				r.conns[k] = uint64(stats.Conns)
			}
			h := append(r.history[k], s)
			if len(h) > historyLen {
				h = slices.Clone(h[len(h)-historyLen:])
			}
			r.history[k] = h
		}
	}
	for k := range r.history {
		if !seen[k] {
			delete(r.history, k)
			delete(r.conns, k)
		}
	}
	r.lastAt = now
}

// add keeps an event, dropping the oldest past maxEvents.
func (r *recorder) add(e Event) {
	if len(e.Text) > maxEventText {
		e.Text = e.Text[:maxEventText] + "…"
	}
	r.events = append([]Event{e}, r.events...)
	if len(r.events) > maxEvents {
		r.events = r.events[:maxEvents]
	}
}

// view returns copies of the history and the events.
func (r *recorder) view() (map[string][]Sample, []Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := make(map[string][]Sample, len(r.history))
	for k, v := range r.history {
		h[k.String()] = slices.Clone(v)
	}
	return h, slices.Clone(r.events)
}

// diff lists what changed from a to b that an operator wants to see.
func diff(a, b *api.Status) []Event {
	var out []Event
	ev := func(kind string, warn bool, format string, args ...any) {
		out = append(out, Event{Kind: kind, Warn: warn, Text: fmt.Sprintf(format, args...)})
	}
	if a.Raft.LeaderID != b.Raft.LeaderID {
		switch {
		case b.Raft.LeaderID == "":
			ev("leader", true, "no leader (was %s)", a.Raft.LeaderID)
		case a.Raft.LeaderID == "":
			ev("leader", false, "leader %s, term %d", b.Raft.LeaderID, b.Raft.Term)
		default:
			ev("leader", true, "leader %s, term %d (was %s)", b.Raft.LeaderID, b.Raft.Term, a.Raft.LeaderID)
		}
	}
	vips := map[string]api.VIP{}
	for _, v := range a.VIPs {
		vips[v.Address.String()+"%"+v.Interface] = v
	}
	for _, v := range b.VIPs {
		old, had := vips[v.Address.String()+"%"+v.Interface]
		switch {
		case v.Mode != "" && had && old.Announced != v.Announced && v.Announced:
			ev("vip", false, "%s announced over BGP", v.Address)
		case v.Mode != "" && had && old.Announced != v.Announced:
			ev("vip", true, "%s withdrawn: %s", v.Address, orDash(v.Withdrawn))
		case v.Mode == "" && had && old.Held != v.Held && v.Held:
			ev("vip", false, "%s taken on %s", v.Address, v.Interface)
		case v.Mode == "" && had && old.Held != v.Held:
			ev("vip", false, "%s released from %s", v.Address, v.Interface)
		}
	}
	if !b.Reload.At.IsZero() && !b.Reload.At.Equal(a.Reload.At) {
		if b.Reload.OK {
			change := "unchanged"
			if b.Reload.Changed {
				change = "changed"
			}
			ev("reload", false, "reload accepted: generation %d, %s", b.Reload.Generation, change)
		} else if b.Reload.NotSubmitted {
			ev("reload", true, "reload not taken by the cluster (the file is valid), the running configuration stays: %s", strings.Join(b.Reload.Errors, "; "))
		} else {
			ev("reload", true, "reload rejected, the running configuration stays: %s", strings.Join(b.Reload.Errors, "; "))
		}
	}
	type realState struct{ health, admin string }
	reals := map[string]realState{}
	up := map[string]bool{}
	for _, s := range a.Services {
		up[s.Key] = s.Up
		for _, r := range s.Reals {
			reals[s.Key+"/"+netip.AddrPortFrom(r.Address, r.Port).String()] = realState{r.Health, r.Admin}
		}
	}
	for _, s := range b.Services {
		if was, had := up[s.Key]; had && was != s.Up {
			if s.Up {
				ev("service", false, "service %s up: %d of %d reals healthy (quorum %d)", s.Name, s.Healthy, len(s.Reals), s.Quorum)
			} else {
				ev("service", true, "service %s below its quorum: %d healthy, quorum %d", s.Name, s.Healthy, s.Quorum)
			}
		}
		for _, r := range s.Reals {
			id := netip.AddrPortFrom(r.Address, r.Port).String()
			old, had := reals[s.Key+"/"+id]
			if !had {
				continue
			}
			if old.health != r.Health {
				switch r.Health {
				case "down":
					ev("real", true, "%s %s down: %s", s.Name, id, orDash(r.HealthReason))
				default:
					ev("real", false, "%s %s %s", s.Name, id, r.Health)
				}
			}
			if old.admin != r.Admin {
				ev("real", false, "%s %s %s by the operator", s.Name, id, r.Admin)
			}
		}
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
