package raft

import (
	"net/netip"
	"testing"
)

// The sync settings are a rule-2 field (docs/wire.md): they need no newer
// command, and a set-config of an older type keeps them.
func TestSpecSyncIsRule2(t *testing.T) {
	s := Spec{IPVS: IPVSSettings{Sync: &SyncSettings{Enabled: true, SyncID: 7, Group: netip.MustParseAddr("239.255.88.48")}}}
	if v := s.Version(); v != 1 {
		t.Errorf("Version %d, want 1", v)
	}
	if s.needsV3() {
		t.Error("sync needs set-config-v3")
	}
	for name, got := range map[string]Spec{"v1": s.asVersion1(), "v2": s.asVersion2()} {
		if got.IPVS.Sync == nil || *got.IPVS.Sync != *s.IPVS.Sync {
			t.Errorf("%s: sync %+v, want %+v", name, got.IPVS.Sync, s.IPVS.Sync)
		}
	}
}
