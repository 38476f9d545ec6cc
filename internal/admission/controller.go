package admission

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
)

// Controller keeps the dsrd table in line with a director's configuration
// and knows which services' rules are in place, so that the director puts
// into IPVS only services that are protected as configured (fail closed).
// It is safe for concurrent use.
type Controller struct {
	k Kernel

	mu sync.Mutex
	// installed are the services whose rules the table holds, by name;
	// valid only when known. At start nothing is known of a table a
	// previous run left: the first Apply replaces it.
	installed map[string]Service
	known     bool
	lastErr   error
	// wanted is the configuration last asked for, by name.
	wanted map[string]Service
	// tops names the offender set of each installed service that has
	// one, by service name.
	tops map[string]string
}

// NewController returns a controller programming k.
func NewController(k Kernel) *Controller {
	return &Controller{k: k, installed: make(map[string]Service)}
}

// Apply puts cfg's rules in place, unless they are in place already. On
// failure the table keeps the rules it had, and Covers says which
// services they protect. A configuration without admission control
// removes the table.
func (c *Controller) Apply(ctx context.Context, cfg Config) error {
	want := make(map[string]Service)
	for _, s := range cfg.Services {
		if s.Active() {
			want[s.Name] = s
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wanted = want
	if c.known && reflect.DeepEqual(want, c.installed) {
		return nil
	}
	var err error
	tops := make(map[string]string)
	if len(want) == 0 {
		err = c.k.Delete(ctx)
	} else {
		var p *Plan
		p, err = Build(cfg)
		if err == nil {
			err = c.k.Replace(ctx, p)
		}
		if err == nil {
			for _, ps := range p.Services {
				if ps.Top != "" {
					tops[ps.Name] = ps.Top
				}
			}
		}
	}
	c.lastErr = err
	if err != nil {
		return err
	}
	c.installed, c.known, c.tops = want, true, tops
	return nil
}

// Covers reports whether s is protected as asked: it needs no admission
// control, or the table holds exactly its rules.
func (c *Controller) Covers(s Service) bool {
	if !s.Active() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	in, ok := c.installed[s.Name]
	return c.known && ok && reflect.DeepEqual(in, s)
}

// Err returns the error of the last Apply, nil when it succeeded.
func (c *Controller) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// Release removes the table: the services are no longer protected.
func (c *Controller) Release(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.k.Delete(ctx); err != nil {
		return err
	}
	c.installed, c.known, c.tops = make(map[string]Service), true, nil
	return nil
}

// ServiceStats is what the table counted for one service.
type ServiceStats struct {
	Name string
	// Dropped counts the packets dropped for each reason the service has
	// a rule for.
	Dropped map[Reason]uint64
	// MeterSources is how many sources (or source prefixes) the
	// per-source meter tracks; -1 without a per-source rate.
	MeterSources int
}

// Stats reads the counters and meter sizes of the installed services, by
// name.
func (c *Controller) Stats(ctx context.Context) ([]ServiceStats, error) {
	c.mu.Lock()
	installed := c.installed
	c.mu.Unlock()
	if len(installed) == 0 {
		return nil, nil
	}
	counters, err := c.k.Counters(ctx)
	if err != nil {
		return nil, err
	}
	byName := make(map[string]*ServiceStats)
	var out []ServiceStats
	names := make([]string, 0, len(installed))
	for n := range installed {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		out = append(out, ServiceStats{Name: n, Dropped: make(map[Reason]uint64), MeterSources: -1})
	}
	for i := range out {
		byName[out[i].Name] = &out[i]
	}
	for name, packets := range counters {
		svc, r, ok := ParseCounterName(name)
		if st := byName[svc]; ok && st != nil {
			st.Dropped[r] = packets
		}
	}
	var errs []error
	for i := range out {
		if installed[out[i].Name].SourceRate == nil {
			continue
		}
		n, err := c.k.SetSize(ctx, MeterName(out[i].Name))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[i].MeterSources = n
	}
	return out, errors.Join(errs...)
}

// Top reads the offender set of each installed service that has one and
// returns, by service name, its n sources with the most dropped packets,
// most first (ties by address). n is capped at MaxTop; n < 1 reads
// nothing. The error says which sets could not be read.
func (c *Controller) Top(ctx context.Context, n int) (map[string][]SourceCount, error) {
	n = min(n, MaxTop)
	c.mu.Lock()
	tops := c.tops
	c.mu.Unlock()
	if n < 1 || len(tops) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(tops))
	for svc := range tops {
		names = append(names, svc)
	}
	sort.Strings(names)
	out := make(map[string][]SourceCount, len(tops))
	var errs []error
	for _, svc := range names {
		srcs, err := c.k.Sources(ctx, tops[svc])
		if err != nil {
			errs = append(errs, fmt.Errorf("service %s: %w", svc, err))
			continue
		}
		out[svc] = topN(srcs, n)
	}
	return out, errors.Join(errs...)
}

// topN returns the n sources of srcs with the most packets, most first,
// ties by address; srcs is reordered.
func topN(srcs []SourceCount, n int) []SourceCount {
	slices.SortFunc(srcs, func(a, b SourceCount) int {
		if c := cmp.Compare(b.Packets, a.Packets); c != 0 {
			return c
		}
		return a.Source.Compare(b.Source)
	})
	return slices.Clip(srcs[:min(n, len(srcs))])
}

// ServiceStatus is one service's admission control as configured and as
// in place.
type ServiceStatus struct {
	Name string
	// InPlace: the table holds the service's rules as configured. When
	// false the director keeps the service out of IPVS.
	InPlace bool
	// Allow and Deny count the configured prefixes; SourceRate and
	// ServiceRate are the rates in nft's words, "" when none.
	Allow, Deny             int
	SourceRate, ServiceRate string
	// SourcePrefix is the prefix length (of the service's family) that
	// groups sources for SourceRate.
	SourcePrefix int
	// Dropped and MeterSources are as in ServiceStats (of the rules in
	// place, nil and -1 when none are).
	Dropped      map[Reason]uint64
	MeterSources int
}

// Status describes the admission control of every service that has some
// in the configuration last applied, by name, with the counters of the
// rules in place. The error says what could not be read.
func (c *Controller) Status(ctx context.Context) ([]ServiceStatus, error) {
	c.mu.Lock()
	wanted := c.wanted
	c.mu.Unlock()
	if len(wanted) == 0 {
		return nil, nil
	}
	stats, err := c.Stats(ctx)
	byName := make(map[string]ServiceStats, len(stats))
	for _, st := range stats {
		byName[st.Name] = st
	}
	names := make([]string, 0, len(wanted))
	for n := range wanted {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]ServiceStatus, 0, len(names))
	for _, n := range names {
		s := wanted[n]
		ss := ServiceStatus{Name: n, InPlace: c.Covers(s), Allow: len(s.Allow), Deny: len(s.Deny), MeterSources: -1}
		if r := s.SourceRate; r != nil {
			ss.SourceRate, ss.SourcePrefix = r.Rate.String(), r.PrefixV4
			if s.Family == 6 {
				ss.SourcePrefix = r.PrefixV6
			}
		}
		if r := s.ServiceRate; r != nil {
			ss.ServiceRate = r.String()
		}
		if st, ok := byName[n]; ok {
			ss.Dropped, ss.MeterSources = st.Dropped, st.MeterSources
		}
		out = append(out, ss)
	}
	return out, err
}
