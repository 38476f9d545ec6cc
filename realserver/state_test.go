package realserver

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	st, err := loadState(dir)
	if err != nil || !st.empty() {
		t.Fatalf("missing file: %+v, %v", st, err)
	}
	st.Sysctls["net.ipv4.conf.all.arp_ignore"] = savedSysctl{Original: "0", Set: "1"}
	st.addAddr(vipPrefix(vip6))
	st.addAddr(vipPrefix(vip6))
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	got, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Addresses) != 1 || got.Addresses[0] != netip.MustParsePrefix("2001:db8::10/128") ||
		got.Sysctls["net.ipv4.conf.all.arp_ignore"].Original != "0" {
		t.Errorf("round trip: %+v", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	// Empty state removes the file.
	if err := saveState(dir, newState()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); !os.IsNotExist(err) {
		t.Errorf("empty state left a file: %v", err)
	}
}

// A corrupt state file is never silently replaced: it holds the originals.
func TestStateCorrupt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil || !strings.Contains(err.Error(), "parse state") {
		t.Errorf("loadState = %v", err)
	}
	fk := newFakeHost()
	a := newTestAgent(t, fk, Config{VIPs: []netip.Addr{vip4}, DataDir: dir})
	if _, err := a.Apply(t.Context()); err == nil {
		t.Error("apply went ahead with a corrupt state file")
	}
	if len(fk.Calls()) != 2 { // the two addresses newFakeHost adds
		t.Errorf("changed the kernel: %v", fk.Calls())
	}
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(`{"version":7}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir); err == nil || !strings.Contains(err.Error(), "version 7") {
		t.Errorf("loadState = %v", err)
	}
}

// The state file keys sysctls by /proc/sys path, as earlier versions wrote
// and read it, while the agent names them as sysctl(8) does: a file of an
// earlier version loads, and a saved file reads the same to it.
func TestStateFileSysctlKeys(t *testing.T) {
	dir := t.TempDir()
	const earlier = `{"version":1,"sysctls":{"net/ipv4/conf/eth0.100/arp_ignore":{"original":"0","set":"1"}}}`
	if err := os.WriteFile(filepath.Join(dir, stateFile), []byte(earlier), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Sysctls["net.ipv4.conf.eth0/100.arp_ignore"]; got != (savedSysctl{Original: "0", Set: "1"}) {
		t.Fatalf("loaded %+v", st.Sysctls)
	}
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"net/ipv4/conf/eth0.100/arp_ignore"`) {
		t.Fatalf("saved file does not key by /proc/sys path:\n%s", b)
	}
}
