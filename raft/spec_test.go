package raft

import (
	"net/netip"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
)

func TestSpecFromDirectorDropsNodeLocalInterfaces(t *testing.T) {
	vip := func(iface string) config.VIP {
		return config.VIP{Address: netip.MustParseAddr("203.0.113.10"), Interface: iface}
	}
	other := config.VIP{Address: netip.MustParseAddr("203.0.113.11"), Interface: "bond1"}
	d1 := &config.Director{Node: config.Node{ID: "dir1", Interface: "eth0"}, VIPs: []config.VIP{vip("eth0"), other}}
	d2 := &config.Director{Node: config.Node{ID: "dir2", Interface: "eno1"}, VIPs: []config.VIP{vip("eno1"), other}}
	s1, s2 := SpecFromDirector(d1), SpecFromDirector(d2)
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
		t.Error("SpecFromDirector changed the director's own configuration")
	}
}
