package director

import (
	"maps"
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/ipvs"
)

const tunnelDirector = `
node: {id: dir1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: ["dir1@127.0.0.1:7946"]}
vips: [{address: 203.0.113.10}]
services:
  - name: web
    vip: 203.0.113.10
    port: 80
    protocol: tcp
    scheduler: rr
    forwarding: tunnel
    sorry_server: 198.51.100.99
    health_check: {type: tcp, rise: 1, fall: 1}
    reals:
      - {address: 198.51.100.21}
      - {address: 192.0.2.22, forwarding: dr}
  - name: sticky
    vip: 203.0.113.10
    port: 443
    protocol: tcp
    scheduler: wlc
    reals:
      - {address: 192.0.2.21}
      - {address: 198.51.100.21, forwarding: tunnel}
`

// forwards maps each destination of service k to its forwarding method.
func forwards(t *testing.T, st ipvs.State, k ipvs.ServiceKey) map[string]ipvs.Forward {
	t.Helper()
	s, ok := st[k]
	if !ok {
		t.Fatalf("no service %s in %v", k, st)
	}
	out := map[string]ipvs.Forward{}
	for dk, d := range s.Dests {
		out[dk.String()] = d.Forward
	}
	return out
}

// TestDesiredForwarding: each real is programmed with its own forwarding
// method, else its service's, else direct routing; the sorry server with
// its service's; and a real whose method changes is updated in place, not
// deleted and re-added (its connections stay).
func TestDesiredForwarding(t *testing.T) {
	spec := specOf(t, tunnelDirector)
	sticky := ipvs.MustParseServiceKey("tcp/203.0.113.10:443")
	h := health{
		key("web", "198.51.100.21", 80):                                       up(5),
		key("web", "192.0.2.22", 80):                                          up(5),
		{Service: sticky, Real: netip.MustParseAddrPort("192.0.2.21:443")}:    up(5),
		{Service: sticky, Real: netip.MustParseAddrPort("198.51.100.21:443")}: up(5),
	}
	st, _, err := desiredState(spec, h.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := forwards(t, st, web), map[string]ipvs.Forward{"198.51.100.21:80": ipvs.ForwardTunnel, "192.0.2.22:80": ipvs.ForwardDR}; !maps.Equal(got, want) {
		t.Errorf("web forwards %v, want %v", got, want)
	}
	if got, want := forwards(t, st, sticky), map[string]ipvs.Forward{"192.0.2.21:443": ipvs.ForwardDR, "198.51.100.21:443": ipvs.ForwardTunnel}; !maps.Equal(got, want) {
		t.Errorf("sticky forwards %v, want %v", got, want)
	}

	allDown := health{
		key("web", "198.51.100.21", 80): down(5),
		key("web", "192.0.2.22", 80):    down(5),
	}
	st, _, err = desiredState(spec, allDown.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := forwards(t, st, web)["198.51.100.99:80"]; got != ipvs.ForwardTunnel {
		t.Errorf("sorry server of a tunnel service forwards by %v (all: %v)", got, forwards(t, st, web))
	}

	// The kernel holds web's reals by direct routing (the file said dr
	// before): the change is an update of each real that changed.
	actual := ipvs.NewService(web, "rr")
	for _, a := range []string{"198.51.100.21", "192.0.2.22"} {
		actual.Put(ipvs.NewDestination(netip.MustParseAddr(a), 80, 100))
	}
	st, _, err = desiredState(spec, h.view, nil, ipvs.State{web: actual})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, op := range ipvs.Diff(ipvs.State{web: actual}, ipvs.State{web: st[web]}, func(ipvs.ServiceKey) bool { return true }) {
		ops = append(ops, op.String())
	}
	if got, want := strings.Join(ops, "\n"), "-e -t 203.0.113.10:80 -r 198.51.100.21:80 -i -w 100 --tun-type ipip"; got != want {
		t.Errorf("from dr to tunnel:\n%s\nwant\n%s", got, want)
	}
}

// TestStatusShowsTunnel: dsrd status marks the reals (and the sorry
// server) that IPVS reaches by tunnel.
func TestStatusShowsTunnel(t *testing.T) {
	spec := specOf(t, tunnelDirector)
	allDown := health{
		key("web", "198.51.100.21", 80): down(5),
		key("web", "192.0.2.22", 80):    down(5),
	}
	st, views, err := desiredState(spec, allDown.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sched := healthcheck.NewScheduler(healthcheck.SchedulerOptions{})
	got := map[string]bool{}
	for _, r := range serviceStatus(views[0], st[web], nil, sched).Reals {
		got[netip.AddrPortFrom(r.Address, r.Port).String()] = r.Tunnel
	}
	want := map[string]bool{"198.51.100.21:80": true, "192.0.2.22:80": false, "198.51.100.99:80": true}
	if !maps.Equal(got, want) {
		t.Errorf("status tunnel marks %v, want %v", got, want)
	}
}
