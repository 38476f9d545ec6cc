package admission

import (
	"context"
	"errors"
	"slices"
	"sync"
)

// Fake is an in-memory Kernel for tests: it keeps the last plan put in
// place, and fails when told to.
type Fake struct {
	mu sync.Mutex
	// plan is the table in place; nil when there is none.
	plan *Plan
	// counters are what Counters returns for the table's counters.
	counters map[string]uint64
	// meters are what SetSize returns.
	meters map[string]int
	// sources are what Sources returns, by set.
	sources map[string][]SourceCount
	// err, when set, fails every Replace.
	err error
	// replaced counts successful Replace calls.
	replaced int
}

// Fail makes every later Replace fail with err (nil: succeed).
func (f *Fake) Fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// Table returns the table in place as nft text, "" when there is none.
func (f *Fake) Table() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.plan == nil {
		return ""
	}
	return f.plan.String()
}

// Replaced returns how many times the table was replaced.
func (f *Fake) Replaced() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.replaced
}

// Count sets a counter's packets and a meter's size (meter "" for none).
func (f *Fake) Count(counter string, packets uint64, meter string, size int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counters == nil {
		f.counters, f.meters = make(map[string]uint64), make(map[string]int)
	}
	f.counters[counter] = packets
	if meter != "" {
		f.meters[meter] = size
	}
}

// Offend sets what Sources returns for an offender set.
func (f *Fake) Offend(set string, srcs ...SourceCount) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.sources == nil {
		f.sources = make(map[string][]SourceCount)
	}
	f.sources[set] = slices.Clone(srcs)
}

// Replace implements Kernel.
func (f *Fake) Replace(ctx context.Context, p *Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.plan = p
	f.replaced++
	return nil
}

// Delete implements Kernel.
func (f *Fake) Delete(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.plan = nil
	return nil
}

// Counters implements Kernel: the plan's counters, at the values Count set.
func (f *Fake) Counters(ctx context.Context) (map[string]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]uint64)
	if f.plan == nil {
		return out, nil
	}
	for _, c := range f.plan.Counters {
		out[c] = f.counters[c]
	}
	return out, nil
}

// SetSize implements Kernel.
func (f *Fake) SetSize(ctx context.Context, name string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.plan == nil {
		return 0, errors.New("no table")
	}
	for _, s := range f.plan.Sets {
		if s.Set.Name == name {
			return f.meters[name], nil
		}
	}
	return 0, errors.New("no such set")
}

// Sources implements Kernel: what Offend set, when the set is in the
// table; the kernel's set holds at most TopSize, and so does this.
func (f *Fake) Sources(ctx context.Context, name string) ([]SourceCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.plan == nil {
		return nil, errors.New("no table")
	}
	for _, s := range f.plan.Sets {
		if s.Set.Name == name {
			srcs := f.sources[name]
			return slices.Clone(srcs[:min(len(srcs), TopSize)]), nil
		}
	}
	return nil, errors.New("no such set")
}

var _ Kernel = (*Fake)(nil)
