package director

import (
	"sync"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
)

// progress is what the reconcile loop reached, for the next pass and for
// dsrd status: the kernel state the last apply left, the generation IPVS
// last converged on, the outcome of the last pass and the services'
// views. The loop writes it, status reads it; it owns its lock.
type progress struct {
	mu         sync.Mutex
	actual     ipvs.State // the kernel as last reached
	actualRead bool       // actual was read or reached at least once
	running    uint64     // generation IPVS last converged on
	views      []serviceView
	last       api.Reconcile
}

// kernel returns the kernel state the last pass reached, and whether
// there was one.
func (p *progress) kernel() (ipvs.State, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.actual, p.actualRead
}

// record notes the outcome of a pass that computed views and reached the
// kernel state reached: generation is the one IPVS converged on when
// applied (the apply succeeded); err is the pass's error, nil for none.
func (p *progress) record(now time.Time, views []serviceView, reached ipvs.State, generation uint64, applied bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.views = views
	p.actual, p.actualRead = reached, true
	if applied {
		p.running = generation
	}
	if err != nil {
		p.last = api.Reconcile{At: now, OK: false, Error: err.Error()}
		return
	}
	p.last = api.Reconcile{At: now, OK: true}
}

// status returns the generation IPVS runs, the last pass's outcome and
// the services' views.
func (p *progress) status() (running uint64, last api.Reconcile, views []serviceView) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, p.last, p.views
}
