package director

import (
	"strconv"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/ipvs"
)

const throughVIPDirector = `
node: {id: dir1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: ["dir1@127.0.0.1:7946"]}
vips: [{address: 203.0.113.10}, {address: "2001:db8:113::10"}]
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    protocol: tcp
    health_check: {type: http, path: /healthz, through_vip: true}
    reals:
      - {address: 192.0.2.21}
      - {address: 192.0.2.22, health_check: {type: tcp, port: 8080}}
      - {address: 192.0.2.23, weight: 0}
  - name: web6
    vip: "2001:db8:113::10"
    port: 80
    protocol: tcp
    reals:
      - {address: "2001:db8::21", health_check: {type: tcp, through_vip: true}}
  - name: marked
    fwmark: 7
    vip: 203.0.113.10
    health_check: {type: tcp, port: 443, through_vip: true}
    reals: [{address: 192.0.2.21}]
`

// Checks through the VIP: each such real has a mark of dsrd's range, an
// IPVS fwmark service in the VIP's family with the real as its only
// destination (weight 1 whatever its configured weight and health), and
// a check addressed to the VIP with that mark, sent from the director's
// address toward the real. Reals without through_vip keep their plain
// checks and get no service.
func TestThroughVIPDesiredState(t *testing.T) {
	spec := specOf(t, throughVIPDirector)
	services := clusterspec.Services(spec)
	marks := checkMarks(services)
	if len(marks) != 4 {
		t.Fatalf("marks = %v, want 4 (web .21 and .23, web6, marked)", marks)
	}
	seen := map[uint32]bool{}
	for k, m := range marks {
		if m < checkMarkBase || m >= checkMarkBase+checkMarkSpan || seen[m] {
			t.Errorf("mark %#x of %s outside dsrd's range or taken twice", m, k)
		}
		seen[m] = true
	}
	st, views, err := desiredState(spec, health{}.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(views) != 3 {
		t.Errorf("%d service views, want 3: the check services are not services of the configuration", len(views))
	}
	checked := 0
	for k, s := range st {
		if k.FWMark < checkMarkBase {
			continue
		}
		checked++
		if len(s.Dests) != 1 || s.Scheduler != "rr" {
			t.Errorf("check service %s: %+v, want rr with one destination", k, s)
		}
		for dk, d := range s.Dests {
			if d.Weight != 1 || d.Forward != ipvs.ForwardDR || dk.Port != 0 {
				t.Errorf("check service %s destination %s: weight %d forward %v", k, dk, d.Weight, d.Forward)
			}
			if (dk.Addr.Is6()) != (k.Family == ipvs.IPv6) {
				t.Errorf("check service %s in the other family than its real %s", k, dk)
			}
		}
	}
	if checked != 4 {
		t.Errorf("%d check services in the desired state, want 4: %v", checked, st)
	}

	hs := healthServices(services)
	for _, svc := range hs {
		for _, r := range svc.Reals {
			k := healthcheck.RealKey(svc, r)
			m, through := marks[k]
			c := r.Check
			switch {
			case through && (c.Mark != m || c.SourceToward != r.Address || !c.Address.IsValid()):
				t.Errorf("%s: check %+v, want mark %#x toward the real", k, c, m)
			case through && c.Address.Unmap().Is4() != r.Address.Is4():
				t.Errorf("%s: check addressed to %s", k, c.Address)
			case !through && c != nil && (c.Mark != 0 || c.SourceToward.IsValid()):
				t.Errorf("%s: a plain check got %+v", k, c)
			}
			if through {
				if tgt := healthcheck.TargetFor(svc, r); !strings.HasPrefix(tgt.Addr.String(), "203.0.113.10:") && !strings.HasPrefix(tgt.Addr.String(), "[2001:db8:113::10]:") {
					t.Errorf("%s: target %s, want the VIP", k, tgt.Addr)
				}
			}
		}
	}
	if !needsCheckSysctls(services) {
		t.Error("IPv4 checks through the VIP without accept_local")
	}
	if needsCheckSysctls(services[1:2]) {
		t.Error("accept_local for IPv6 checks only")
	}
}

// A real keeps its mark when the configuration around it changes, and a
// configured fwmark service's mark is never given to a check.
func TestCheckMarksAreStable(t *testing.T) {
	before := checkMarks(clusterspec.Services(specOf(t, throughVIPDirector)))
	grown := throughVIPDirector + `  - name: more
    vip: 203.0.113.10
    port: 81
    protocol: tcp
    health_check: {type: tcp, through_vip: true}
    reals: [{address: 192.0.2.24}, {address: 192.0.2.25}]
`
	after := checkMarks(clusterspec.Services(specOf(t, grown)))
	for k, m := range before {
		if after[k] != m {
			t.Errorf("%s: mark %#x became %#x when another service was added", k, m, after[k])
		}
	}
	if len(after) != len(before)+2 {
		t.Errorf("%d marks after adding two reals to %d", len(after), len(before))
	}
	// Take the mark one real would get for a configured fwmark service.
	var m uint32
	for _, m = range before {
		break
	}
	taken := strings.Replace(throughVIPDirector, "fwmark: 7", "fwmark: "+strconv.FormatUint(uint64(m), 10), 1)
	got := checkMarks(clusterspec.Services(specOf(t, taken)))
	for k2, m2 := range got {
		if m2 == m {
			t.Errorf("%s got mark %#x, the fwmark of a configured service", k2, m2)
		}
	}
}
