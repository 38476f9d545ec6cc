package clusterspec

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
)

func TestFromDirectorDropsNodeLocalInterfaces(t *testing.T) {
	vip := func(iface string) config.VIP {
		return config.VIP{Address: netip.MustParseAddr("203.0.113.10"), Interface: iface}
	}
	other := config.VIP{Address: netip.MustParseAddr("203.0.113.11"), Interface: "bond1"}
	d1 := &config.Director{Node: config.Node{ID: "dir1", Interface: "eth0"}, VIPs: []config.VIP{vip("eth0"), other}}
	d2 := &config.Director{Node: config.Node{ID: "dir2", Interface: "eno1"}, VIPs: []config.VIP{vip("eno1"), other}}
	s1, s2 := FromDirector(d1), FromDirector(d2)
	h1, err := s1.Hash()
	if err != nil {
		t.Fatal(err)
	}
	h2, err := s2.Hash()
	if err != nil {
		t.Fatal(err)
	}
	if h1 != h2 {
		t.Errorf("same file on directors with different NIC names hashes differently: %s vs %s", h1, h2)
	}
	if s1.VIPs[0].Interface != "" {
		t.Errorf("node-local interface kept: %q", s1.VIPs[0].Interface)
	}
	if s1.VIPs[1].Interface != "bond1" {
		t.Errorf("explicit interface lost: %q", s1.VIPs[1].Interface)
	}
	if d1.VIPs[0].Interface != "eth0" {
		t.Error("FromDirector changed the director's own configuration")
	}
}

func TestFromDirectorSyncInterface(t *testing.T) {
	d := &config.Director{Node: config.Node{ID: "dir1", Interface: "eth0"},
		IPVS: config.IPVS{Sync: &config.IPVSSync{Enabled: true, Interface: "eth0", SyncID: 3}}}
	if s := FromDirector(d); s.IPVS.Sync == nil || s.IPVS.Sync.Interface != "" || s.IPVS.Sync.SyncID != 3 {
		t.Errorf("node.interface as sync interface: spec %+v", s.IPVS.Sync)
	}
	if d.IPVS.Sync.Interface != "eth0" {
		t.Error("FromDirector changed the director's own configuration")
	}
	d.IPVS.Sync.Interface = "bond1"
	if s := FromDirector(d); s.IPVS.Sync.Interface != "bond1" {
		t.Errorf("explicit sync interface lost: %+v", s.IPVS.Sync)
	}
	// Without ipvs.sync, the spec encodes as before: no Sync key.
	b, err := json.Marshal(FromDirector(&config.Director{}).IPVS)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "Sync") {
		t.Errorf("Sync encoded when unset: %s", b)
	}
}

// TestRoundTrip fills every field of the file's replicated types, then
// translates them to the spec and back: nothing is lost, and the spec's
// JSON is the file types' JSON, key for key (their frozen tags are the
// same format). A field added to one side and not the other fails here.
func TestRoundTrip(t *testing.T) {
	var in struct {
		IPVS     config.IPVS
		VIPs     []config.VIP
		Services []config.Service
	}
	testutil.Fill(&in)
	spec := FromConfig(in.IPVS, in.VIPs, in.Services)
	if got := IPVS(spec); !reflect.DeepEqual(got, in.IPVS) {
		t.Errorf("ipvs: got %+v, want %+v", got, in.IPVS)
	}
	if got := VIPs(spec); !reflect.DeepEqual(got, in.VIPs) {
		t.Errorf("vips: got %+v, want %+v", got, in.VIPs)
	}
	if got := Services(spec); !reflect.DeepEqual(got, in.Services) {
		t.Errorf("services: got %+v, want %+v", got, in.Services)
	}
	want, err := json.Marshal(map[string]any{"ipvs": in.IPVS, "vips": in.VIPs, "services": in.Services})
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(map[string]any{"ipvs": spec.IPVS, "vips": spec.VIPs, "services": spec.Services})
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("the spec's encoding differs from the file types':\n got %s\nwant %s", got, want)
	}
	for i := range in.Services {
		if spec.Services[i].Key() != in.Services[i].Key() {
			t.Errorf("service %d: key %q, the file's %q", i, spec.Services[i].Key(), in.Services[i].Key())
		}
	}
}

// TestValidateIsTheFilesRules: a spec the file's rules refuse is refused,
// with the file's messages; an example file's spec passes.
func TestValidateIsTheFilesRules(t *testing.T) {
	d, err := config.LoadDirector("../../packaging/examples/director.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec := FromDirector(d)
	if err := Validate(spec); err != nil {
		t.Fatalf("the packaged example refused: %v", err)
	}
	spec.VIPs[0].Address = netip.MustParseAddr("224.0.0.1")
	spec.Services[0].HealthCheck = &raft.HealthCheck{Type: "tcp", Interval: raft.Duration(time.Nanosecond), Timeout: raft.Duration(time.Nanosecond), Rise: 1, Fall: 1, Initial: "down"}
	err = Validate(spec)
	for _, want := range []string{"vips[0].address: 224.0.0.1 is a multicast address", "services[0].health_check.interval: 1ns is too short"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want it to say %q", err, want)
		}
	}
}

// TestForwardingOnTheWire: a forwarding method that is the one a service
// or real would inherit travels as nothing (a file that spells out dr
// replicates as one that does not, in a command older members read);
// tunnel, and dr on a real of a tunnel service, travel as written; the
// spec translates back to the same effective method per real.
func TestForwardingOnTheWire(t *testing.T) {
	real := func(a string, f config.Forwarding) config.Real {
		return config.Real{Address: netip.MustParseAddr(a), Forwarding: f}
	}
	services := []config.Service{
		{Name: "explicit-dr", Forwarding: config.ForwardDR, Reals: []config.Real{real("192.0.2.1", config.ForwardDR), real("192.0.2.2", "")}},
		{Name: "tunnel", Forwarding: config.ForwardTunnel, Reals: []config.Real{real("198.51.100.1", config.ForwardTunnel), real("192.0.2.3", config.ForwardDR), real("198.51.100.2", "")}},
		{Name: "one-real", Reals: []config.Real{real("198.51.100.3", config.ForwardTunnel)}},
	}
	spec := FromConfig(config.IPVS{}, nil, services)
	type got struct{ svc, reals string }
	want := []got{{"", ",,"}, {"tunnel", ",dr,,"}, {"", "tunnel,"}}
	for i, s := range spec.Services {
		g := got{svc: s.Forwarding}
		for _, r := range s.Reals {
			g.reals += r.Forwarding + ","
		}
		if g != want[i] {
			t.Errorf("service %s on the wire: %+v, want %+v", s.Name, g, want[i])
		}
	}
	back := Services(spec)
	for i := range services {
		for j := range services[i].Reals {
			w, g := services[i].RealForwarding(&services[i].Reals[j]), back[i].RealForwarding(&back[i].Reals[j])
			if w != g {
				t.Errorf("%s real %d: %s after the wire, %s in the file", services[i].Name, j, g, w)
			}
		}
	}
	plain := FromConfig(config.IPVS{}, nil, services[:1])
	if plain.Version() != 1 {
		t.Errorf("a file spelling out dr needs command version %d, want 1", plain.Version())
	}
	if spec.Version() != 4 {
		t.Errorf("a tunnel service needs command version %d, want 4", spec.Version())
	}
}
