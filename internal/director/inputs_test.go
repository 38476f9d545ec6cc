package director

import (
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
)

// A check's input is changed when it differs from what the last
// computation read, when that computation did not read it, and when the
// check is gone; a computation forgets the checks it no longer reads.
func TestHealthInputsChanged(t *testing.T) {
	statuses := health{}
	h := newHealthInputs(func(k healthcheck.Key) (healthcheck.Status, bool) { s, ok := statuses[k]; return s, ok })
	a, b := key("web", "192.0.2.21", 80), key("web", "192.0.2.22", 80)
	p := healthcheck.Params{Rise: 2, Fall: 3, Initial: healthcheck.StateDown}
	statuses[a], statuses[b] = up(5), down(1)

	if _, changed := h.changed(a); !changed {
		t.Error("a check no computation read: not changed")
	}
	e := h.begin()
	if in, ok := h.view(a, p); !ok || in.State != healthcheck.StateUp || !in.Settled {
		t.Errorf("view(a) = %+v, %v, want up and settled", in, ok)
	}
	if in, ok := h.view(b, p); !ok || in.State != healthcheck.StateDown || in.Settled {
		t.Errorf("view(b) = %+v, %v, want down, no verdict yet", in, ok)
	}
	h.end(e)
	for _, k := range []healthcheck.Key{a, b} {
		if _, changed := h.changed(k); changed {
			t.Errorf("%s changed though its status did not", k)
		}
	}

	// Another run of b without a change of state, but its first verdict.
	statuses[b] = down(3)
	if _, changed := h.changed(b); !changed {
		t.Error("b's first verdict: not changed")
	}
	// A reason without a change of state.
	s := up(6)
	s.Last.Reason = healthcheck.ReasonDraining
	statuses[a] = s
	if _, changed := h.changed(a); !changed {
		t.Error("a's drain answer: not changed")
	}

	// The next computation reads a only: b is forgotten, and a check
	// that disappears is changed.
	e = h.begin()
	h.view(a, p)
	h.end(e)
	if _, changed := h.changed(b); !changed {
		t.Error("b, no longer read: not changed")
	}
	delete(statuses, a)
	if _, changed := h.changed(a); !changed {
		t.Error("a, gone: not changed")
	}
	if _, ok := h.view(a, p); ok {
		t.Error("view of a gone check: ok")
	}
}
