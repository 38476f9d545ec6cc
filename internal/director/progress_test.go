package director

import (
	"errors"
	"testing"
	"time"

	"github.com/dsrd/dsrd/ipvs"
)

// A failed apply keeps the generation IPVS last converged on, and the
// kernel state it reached is the next pass's starting point either way.
func TestProgressRecord(t *testing.T) {
	var p progress
	if _, ok := p.kernel(); ok {
		t.Error("kernel read before any pass")
	}
	at := time.Unix(100, 0)
	reached := ipvs.State{}
	reached.Put(ipvs.NewService(web, "wlc"))
	p.record(at, []serviceView{{serviceSpec: &serviceSpec{Key: web}}}, reached, 3, true, nil)
	if running, last, views := p.status(); running != 3 || !last.OK || !last.At.Equal(at) || len(views) != 1 {
		t.Errorf("after a good pass: running %d, last %+v, %d views", running, last, len(views))
	}

	p.record(at.Add(time.Second), nil, ipvs.State{}, 4, false, errors.New("apply: no"))
	running, last, views := p.status()
	if running != 3 || last.OK || last.Error != "apply: no" || len(views) != 0 {
		t.Errorf("after a failed apply: running %d, last %+v, %d views; want 3, the error, none", running, last, len(views))
	}
	if k, ok := p.kernel(); !ok || len(k) != 0 {
		t.Errorf("kernel = %v, %v, want the state the failed apply reached", k, ok)
	}
	// A pass whose apply succeeded but whose spec could not be followed.
	p.record(at, nil, reached, 4, true, errors.New("update vips: no"))
	if running, last, _ := p.status(); running != 4 || last.OK {
		t.Errorf("apply ok, vips failed: running %d, last %+v; want 4, not ok", running, last)
	}
}
