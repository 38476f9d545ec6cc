package director

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

const testDirector = `
node: {id: dir1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: ["dir1@127.0.0.1:7946"]}
vips: [{address: 203.0.113.10}]
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    protocol: tcp
    scheduler: mh
    scheduler_flags: [mh-port]
    health_check: {type: tcp, rise: 2, fall: 3}
    reals:
      - {address: 192.0.2.21}
      - {address: 192.0.2.22, weight: 50}
      - {address: 192.0.2.23}
  - name: sticky
    vip: 203.0.113.10
    port: 443
    protocol: tcp
    scheduler: wlc
    persistence: {timeout: 5m}
    reals: [{address: 192.0.2.21}]
  - name: marked
    fwmark: 7
    vip: 203.0.113.10
    scheduler: rr
    health_check: {type: none}
    reals: [{address: 192.0.2.21}]
`

func testSpec(t *testing.T) raft.Spec {
	t.Helper()
	d, err := config.ParseDirector("director.yaml", []byte(testDirector))
	if err != nil {
		t.Fatal(err)
	}
	return clusterspec.FromDirector(d)
}

func key(svc string, addr string, port uint16) healthcheck.Key {
	return healthcheck.Key{Service: svc, Real: netip.AddrPortFrom(netip.MustParseAddr(addr), port)}
}

// health is a fixed health view.
type health map[healthcheck.Key]healthcheck.Status

func (h health) view(k healthcheck.Key, p healthcheck.Params) (healthInput, bool) {
	s, ok := h[k]
	return inputOf(s, p), ok
}

func up(runs uint64) healthcheck.Status {
	return healthcheck.Status{State: healthcheck.StateUp, Runs: runs, Last: healthcheck.Result{Up: true}}
}

func down(runs uint64) healthcheck.Status {
	return healthcheck.Status{State: healthcheck.StateDown, Runs: runs}
}

func weights(t *testing.T, st ipvs.State, k ipvs.ServiceKey) map[string]int {
	t.Helper()
	s, ok := st[k]
	if !ok {
		t.Fatalf("no service %s in %v", k, st)
	}
	out := map[string]int{}
	for dk, d := range s.Dests {
		out[dk.String()] = d.Weight
	}
	return out
}

var web = ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.10:80"))

func TestDesiredWeightsFollowHealthAndAdmin(t *testing.T) {
	spec := testSpec(t)
	h := health{
		key("web", "192.0.2.21", 80): up(5),
		key("web", "192.0.2.22", 80): up(5),
		key("web", "192.0.2.23", 80): down(5),
	}
	admin := map[raft.RealRef]raft.Admin{{Service: "tcp/203.0.113.10:80", Address: netip.MustParseAddr("192.0.2.21")}: raft.AdminDrained}
	st, views, err := desiredState(spec, h.view, admin, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"192.0.2.21:80": 0, "192.0.2.22:80": 50, "192.0.2.23:80": 0}
	if got := weights(t, st, web); !equal(got, want) {
		t.Errorf("weights = %v, want %v", got, want)
	}
	if s := st[web]; s.Scheduler != "mh" || s.Flags&ipvs.FlagMHPort == 0 {
		t.Errorf("web = scheduler %q flags %v, want mh with mh-port", s.Scheduler, s.Flags)
	}
	if len(views) != 3 || !views[0].Desired.Status.Up || views[0].Desired.Status.Healthy != 1 {
		t.Errorf("web view = %+v", views[0].Desired.Status)
	}
}

func TestDesiredPersistenceAndFWMark(t *testing.T) {
	st, _, err := desiredState(testSpec(t), health{}.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sticky := st[ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.10:443"))]
	if !sticky.Persistent() || sticky.Timeout != 5*time.Minute || sticky.Netmask != 32 {
		t.Errorf("sticky = persistent %v timeout %v netmask %d", sticky.Persistent(), sticky.Timeout, sticky.Netmask)
	}
	marked := ipvs.FWMarkKey(ipvs.IPv4, 7)
	if got := weights(t, st, marked); !equal(got, map[string]int{"192.0.2.21:0": 100}) {
		t.Errorf("fwmark service destinations = %v (an unchecked real is up, port 0)", got)
	}
}

// A restarted director adopts its kernel entries: a real whose check has
// no verdict yet keeps the weight the kernel holds instead of dropping to
// the initial state's weight 0, so no traffic is lost during the rise.
func TestDesiredKeepsKernelWeightUntilFirstVerdict(t *testing.T) {
	spec := testSpec(t)
	actual := ipvs.State{}
	s := ipvs.NewService(web, "mh")
	for _, a := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
		s.Put(ipvs.NewDestination(netip.MustParseAddr(a), 80, 77))
	}
	actual.Put(s)
	h := health{
		key("web", "192.0.2.21", 80): down(1), // initial down, one run: no verdict yet
		key("web", "192.0.2.22", 80): down(3), // fall reached: a verdict
		key("web", "192.0.2.23", 80): up(2),   // rose: a verdict
	}
	st, _, err := desiredState(spec, h.view, nil, actual)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"192.0.2.21:80": 77, "192.0.2.22:80": 0, "192.0.2.23:80": 100}
	if got := weights(t, st, web); !equal(got, want) {
		t.Errorf("weights = %v, want %v", got, want)
	}
	// Without the kernel entry there is nothing to keep: initial down.
	st, _, err = desiredState(spec, h.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if w := weights(t, st, web)["192.0.2.21:80"]; w != 0 {
		t.Errorf("new real without verdict has weight %d, want 0", w)
	}
}

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
