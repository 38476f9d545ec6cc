package director

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
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
	return specOf(t, testDirector)
}

// specOf is the cluster spec of a director file.
func specOf(t *testing.T, doc string) raft.Spec {
	t.Helper()
	d, err := config.ParseDirector("director.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return clusterspec.FromDirector(d)
}

// testServiceKeys are the identities of the test files' services, by name.
var testServiceKeys = map[string]ipvs.ServiceKey{
	"web":    ipvs.MustParseServiceKey("tcp/203.0.113.10:80"),
	"sticky": ipvs.MustParseServiceKey("tcp/203.0.113.10:443"),
	"marked": ipvs.MustParseServiceKey("fwmark/4/7"),
	"any":    ipvs.MustParseServiceKey("tcp/203.0.113.10:80"),
	"owned":  ipvs.MustParseServiceKey("tcp/203.0.113.20:80"),
}

func key(svc string, addr string, port uint16) healthcheck.Key {
	return healthcheck.Key{Service: testServiceKeys[svc], Real: netip.AddrPortFrom(netip.MustParseAddr(addr), port)}
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
	admin := map[raft.RealRef]raft.Admin{{Service: ipvs.MustParseServiceKey("tcp/203.0.113.10:80"), Address: netip.MustParseAddr("192.0.2.21")}: raft.AdminDrained}
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

// adoptedWeb is a kernel that holds web's three reals at weight 77, as a
// restarted director finds them.
func adoptedWeb() ipvs.State {
	s := ipvs.NewService(web, "mh")
	for _, a := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
		s.Put(ipvs.NewDestination(netip.MustParseAddr(a), 80, 77))
	}
	return ipvs.State{web: s}
}

// A restarted director adopts its kernel entries: a real whose check has
// no verdict yet keeps the weight the kernel holds instead of dropping to
// the initial state's weight 0, so no traffic is lost during the rise.
func TestDesiredKeepsKernelWeightUntilFirstVerdict(t *testing.T) {
	spec := testSpec(t)
	actual := adoptedWeb()
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

// removeSpec is testSpec with on_down: remove on the web service.
func removeSpec(t *testing.T) raft.Spec {
	t.Helper()
	return specOf(t, strings.Replace(testDirector, "    scheduler: mh\n", "    scheduler: mh\n    on_down: remove\n", 1))
}

var disable21 = map[raft.RealRef]raft.Admin{{Service: ipvs.MustParseServiceKey("tcp/203.0.113.10:80"), Address: netip.MustParseAddr("192.0.2.21")}: raft.AdminDisabled}

// absent lists a service's absent destinations as "addr:port=reason".
func absent(st ipvs.State, k ipvs.ServiceKey) string {
	var parts []string
	for dk, a := range st[k].Absent {
		parts = append(parts, dk.String()+"="+a.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// A real kept out by its health (on_down remove) or by an operator
// (disable) is named absent with its reason, which the reconciler deletes
// at once; a real with weight 0 is no absence, and a real that left the
// configuration is simply not there (the reconciler drains it).
func TestDesiredNamesAbsentReals(t *testing.T) {
	spec := testSpec(t)
	h := health{
		key("web", "192.0.2.21", 80): up(5),
		key("web", "192.0.2.22", 80): down(5),
		key("web", "192.0.2.23", 80): up(5),
	}
	tests := []struct {
		name    string
		spec    raft.Spec
		admin   map[raft.RealRef]raft.Admin
		weights map[string]int
		absent  string
	}{
		{"down with weight0", spec, nil, map[string]int{"192.0.2.21:80": 100, "192.0.2.22:80": 0, "192.0.2.23:80": 100}, ""},
		{"down with remove", removeSpec(t), nil, map[string]int{"192.0.2.21:80": 100, "192.0.2.23:80": 100}, "192.0.2.22:80=down"},
		{"disabled", spec, disable21, map[string]int{"192.0.2.22:80": 0, "192.0.2.23:80": 100}, "192.0.2.21:80=disabled"},
		{"disabled and down with remove", removeSpec(t), disable21, map[string]int{"192.0.2.23:80": 100}, "192.0.2.21:80=disabled 192.0.2.22:80=down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, _, err := desiredState(tt.spec, h.view, tt.admin, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := weights(t, st, web); !equal(got, tt.weights) {
				t.Errorf("weights = %v, want %v", got, tt.weights)
			}
			if got := absent(st, web); got != tt.absent {
				t.Errorf("absent = %q, want %q", got, tt.absent)
			}
		})
	}
	t.Run("fwmark destinations on port 0", func(t *testing.T) {
		admin := map[raft.RealRef]raft.Admin{{Service: ipvs.MustParseServiceKey("fwmark/4/7"), Address: netip.MustParseAddr("192.0.2.21")}: raft.AdminDisabled}
		st, _, err := desiredState(spec, h.view, admin, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := absent(st, ipvs.FWMarkKey(ipvs.IPv4, 7)); got != "192.0.2.21:0=disabled" {
			t.Errorf("absent = %q, want 192.0.2.21:0=disabled", got)
		}
	})
}

// What the kernel does with each: on a fake kernel where every real has
// connections, a disabled real and a real down with on_down remove are
// deleted at the first apply, a real removed from the configuration is
// kept at weight 0 to drain.
func TestAbsentRealsDeletedRemovedRealsDrained(t *testing.T) {
	h := health{
		key("web", "192.0.2.21", 80): up(5),
		key("web", "192.0.2.22", 80): up(5),
		key("web", "192.0.2.23", 80): up(5),
	}
	shrunk := removeSpec(t)
	shrunk.Services[0].Reals = shrunk.Services[0].Reals[:2] // 192.0.2.23 leaves the file
	tests := []struct {
		name  string
		spec  raft.Spec
		admin map[raft.RealRef]raft.Admin
		down  bool // 192.0.2.22 fails its checks
		want  []string
	}{
		{"disabled", removeSpec(t), disable21, false, []string{"192.0.2.22:80=50", "192.0.2.23:80=100"}},
		{"down with on_down remove", removeSpec(t), nil, true, []string{"192.0.2.21:80=100", "192.0.2.23:80=100"}},
		{"removed from the configuration", shrunk, nil, false, []string{"192.0.2.21:80=100", "192.0.2.22:80=50", "192.0.2.23:80=0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			k := ipvs.NewFake()
			rec := ipvs.NewReconciler(k, nil)
			st, _, err := desiredState(removeSpec(t), h.view, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rec.Apply(ctx, st); err != nil {
				t.Fatal(err)
			}
			for _, a := range []string{"192.0.2.21", "192.0.2.22", "192.0.2.23"} {
				if err := k.SetConns(web, ipvs.DestKey{Addr: netip.MustParseAddr(a), Port: 80}, 4, 1); err != nil {
					t.Fatal(err)
				}
			}
			hh := maps.Clone(h)
			if tt.down {
				hh[key("web", "192.0.2.22", 80)] = down(5)
			}
			st, _, err = desiredState(tt.spec, hh.view, tt.admin, k.State())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := rec.Apply(ctx, st); err != nil {
				t.Fatal(err)
			}
			if got := weightsOf(k, web); !slices.Equal(got, tt.want) {
				t.Errorf("kernel = %v, want %v", got, tt.want)
			}
		})
	}
}

// A restarted director does not delete an adopted real for its check's
// initial state (down) under on_down remove: it keeps the kernel's entry
// until the check's first verdict, then deletes it if that is down.
func TestDesiredAdoptsRemovableRealUntilFirstVerdict(t *testing.T) {
	actual := adoptedWeb()
	h := health{
		key("web", "192.0.2.21", 80): down(1), // initial down, no verdict yet
		key("web", "192.0.2.22", 80): down(3), // fall reached: down
		key("web", "192.0.2.23", 80): up(2),
	}
	st, _, err := desiredState(removeSpec(t), h.view, disable21, actual)
	if err != nil {
		t.Fatal(err)
	}
	// Disabled is an operator's decision, not a pending check: out at once.
	if got, want := weights(t, st, web), map[string]int{"192.0.2.23:80": 100}; !equal(got, want) {
		t.Errorf("weights with 21 disabled = %v, want %v", got, want)
	}
	st, _, err = desiredState(removeSpec(t), h.view, nil, actual)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := weights(t, st, web), map[string]int{"192.0.2.21:80": 77, "192.0.2.23:80": 100}; !equal(got, want) {
		t.Errorf("weights = %v, want %v", got, want)
	}
	if got := absent(st, web); got != "192.0.2.22:80=down" {
		t.Errorf("absent = %q, want 192.0.2.22:80=down", got)
	}
	// A real the kernel lacks is not adopted: absent for its initial state.
	st, _, err = desiredState(removeSpec(t), h.view, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := absent(st, web); got != "192.0.2.21:80=down 192.0.2.22:80=down" {
		t.Errorf("absent without kernel entries = %q", got)
	}
}
