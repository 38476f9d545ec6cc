package director

import (
	"net/netip"
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// A director file with one bgp VIP and one arp VIP, a service on each.
const testAnycastDirector = `
node: {id: dir1, interface: eth0}
cluster: {bind: "192.0.2.11:7946", peers: ["dir1@192.0.2.11:7946"], insecure: true}
bgp: {asn: 64512, peers: [{address: 192.0.2.1, asn: 64500}]}
vips:
  - {address: 203.0.113.10, mode: bgp}
  - {address: 203.0.113.20}
services:
  - name: any
    vip: 203.0.113.10
    port: 80
    protocol: tcp
    scheduler: mh
    health_check: {type: tcp, rise: 1, fall: 1}
    reals: [{address: 192.0.2.21}, {address: 192.0.2.22}]
  - name: owned
    vip: 203.0.113.20
    port: 80
    protocol: tcp
    scheduler: rr
    health_check: {type: tcp, rise: 1, fall: 1}
    reals: [{address: 192.0.2.21}, {address: 192.0.2.22}]
`

func TestDesiredBGPServicesFollowTheClusterVerdicts(t *testing.T) {
	spec := specOf(t, testAnycastDirector)
	h := health{
		key("any", "192.0.2.21", 80):   down(3), // this director cannot reach .21
		key("any", "192.0.2.22", 80):   up(3),
		key("owned", "192.0.2.21", 80): down(3),
		key("owned", "192.0.2.22", 80): up(3),
	}
	ref := func(svc, addr string) raft.RealRef {
		return raft.RealRef{Service: ipvs.MustParseServiceKey(svc), Address: netip.MustParseAddr(addr)}
	}
	verdicts := map[raft.RealRef]raft.HealthVerdict{
		// The cluster sees .21 up and .22 down: outvoted on both.
		ref("tcp/203.0.113.10:80", "192.0.2.21"): {Ref: ref("tcp/203.0.113.10:80", "192.0.2.21"), State: raft.HealthUp, Reason: "ok"},
		ref("tcp/203.0.113.10:80", "192.0.2.22"): {Ref: ref("tcp/203.0.113.10:80", "192.0.2.22"), State: raft.HealthDown, Reason: "refused"},
		// A verdict on an arp service's real is not followed: only the
		// VIP's owner forwards, its own checks decide.
		ref("tcp/203.0.113.20:80", "192.0.2.21"): {Ref: ref("tcp/203.0.113.20:80", "192.0.2.21"), State: raft.HealthUp},
	}
	st, views, own, err := desiredStateWith(spec, h.view, nil, verdicts, nil)
	if err != nil {
		t.Fatal(err)
	}
	anyKey := web
	if got, want := weights(t, st, anyKey), map[string]int{"192.0.2.21:80": 100, "192.0.2.22:80": 0}; !equal(got, want) {
		t.Errorf("bgp service weights = %v, want the verdicts' %v", got, want)
	}
	// The down real keeps mh's table share it had at its configured
	// weight: added at 100, then set to 0 (ipvs.Destination.LastWeight).
	for dk, d := range st[anyKey].Dests {
		if d.Weight == 0 && d.LastWeight != 100 {
			t.Errorf("%s at weight 0 has LastWeight %d, want its configured 100", dk, d.LastWeight)
		}
		if d.Weight != 0 && d.LastWeight != 0 {
			t.Errorf("%s at weight %d has LastWeight %d, want none", dk, d.Weight, d.LastWeight)
		}
	}
	ownedKey := ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.20:80"))
	if got, want := weights(t, st, ownedKey), map[string]int{"192.0.2.21:80": 0, "192.0.2.22:80": 100}; !equal(got, want) {
		t.Errorf("arp service weights = %v, want the own checks' %v", got, want)
	}
	// The own view is this director's checks, not the verdicts, and only
	// the bgp service's reals.
	wantOwn := []api.RealView{
		{Ref: ref("tcp/203.0.113.10:80", "192.0.2.21"), State: raft.HealthDown, Reason: healthcheck.ReasonOK.String()},
		{Ref: ref("tcp/203.0.113.10:80", "192.0.2.22"), State: raft.HealthUp, Reason: healthcheck.ReasonOK.String()},
	}
	if len(own) != len(wantOwn) {
		t.Fatalf("own view = %+v, want %+v", own, wantOwn)
	}
	for i := range own {
		if own[i].Ref != wantOwn[i].Ref || own[i].State != wantOwn[i].State {
			t.Errorf("own[%d] = %+v, want %+v", i, own[i], wantOwn[i])
		}
	}

	for _, v := range views {
		if want := v.Config.Name == "any"; v.Disagrees != want {
			t.Errorf("service %s: disagrees = %v, want %v (own down, cluster up on 192.0.2.21)", v.Config.Name, v.Disagrees, want)
		}
	}

	// Without verdicts (a cluster with a member too old for them, or
	// before the first aggregation), every real follows the own checks.
	st, _, _, err = desiredStateWith(spec, h.view, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := weights(t, st, anyKey), map[string]int{"192.0.2.21:80": 0, "192.0.2.22:80": 100}; !equal(got, want) {
		t.Errorf("without verdicts: weights = %v, want %v", got, want)
	}
}

func TestDesiredUnsettledRealsAreNotInTheOwnView(t *testing.T) {
	spec := specOf(t, testAnycastDirector)
	h := health{
		key("any", "192.0.2.21", 80): {State: healthcheck.StateUnknown},
		key("any", "192.0.2.22", 80): up(3),
	}
	_, _, own, err := desiredStateWith(spec, h.view, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 1 || own[0].Ref.Address != netip.MustParseAddr("192.0.2.22") {
		t.Errorf("own view = %+v, want only the settled 192.0.2.22", own)
	}
}
