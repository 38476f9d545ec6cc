package director

import (
	"sync"

	"github.com/dsrd/dsrd/healthcheck"
)

// healthInputs records the health inputs each desired computation read,
// so that a check's run can tell whether it changed what the last
// computation used. It owns one lock, held across reading a check's status
// and recording it (view), and across reading a status and comparing it
// (changed): a run either lands before a computation reads its check, or
// is compared with what that computation recorded.
type healthInputs struct {
	status func(healthcheck.Key) (healthcheck.Status, bool) // the checks' statuses

	mu    sync.Mutex
	used  map[healthcheck.Key]usedInput
	epoch uint64 // the computation in progress or last done
}

// usedInput is a health input as a desired computation used it.
type usedInput struct {
	in     healthInput
	params healthcheck.Params
	epoch  uint64
}

// newHealthInputs returns an empty record over the checks' statuses.
func newHealthInputs(status func(healthcheck.Key) (healthcheck.Status, bool)) *healthInputs {
	return &healthInputs{status: status, used: map[healthcheck.Key]usedInput{}}
}

// begin starts a desired computation: the inputs view returns until the
// matching end are recorded under the epoch it returns.
func (h *healthInputs) begin() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.epoch++
	return h.epoch
}

// end finishes the computation of epoch: the recorded inputs it did not
// read (checks no longer configured) are forgotten.
func (h *healthInputs) end(epoch uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, u := range h.used {
		if u.epoch < epoch {
			delete(h.used, k)
		}
	}
}

// view is the healthView of the checks: the input of check k with
// parameters p, recorded atomically with reading it.
func (h *healthInputs) view(k healthcheck.Key, p healthcheck.Params) (healthInput, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.status(k)
	if !ok {
		delete(h.used, k)
		return healthInput{}, false
	}
	in := inputOf(s, p)
	h.used[k] = usedInput{in: in, params: p, epoch: h.epoch}
	return in, true
}

// changed reports whether check k's input now differs from the one the
// last computation used (or that computation did not read it), with the
// check's status.
func (h *healthInputs) changed(k healthcheck.Key) (healthcheck.Status, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	u, known := h.used[k]
	s, ok := h.status(k)
	return s, !known || !ok || inputOf(s, u.params) != u.in
}
