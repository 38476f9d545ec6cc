package director

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
)

func TestOwnedFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	got, err := loadOwned(dir)
	if err != nil || got.index != 0 || len(got.services) != 0 {
		t.Fatalf("no file: %+v, %v; want an empty record", got, err)
	}
	want := owned{index: 42, services: []ipvs.Service{
		{Key: ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.10:80")), DrainTimeout: 5 * time.Minute},
		{Key: ipvs.NewServiceKey(ipvs.UDP, netip.MustParseAddrPort("[2001:db8::10]:53")), DrainTimeout: 30 * time.Second},
		{Key: ipvs.FWMarkKey(ipvs.IPv4, 7)},
		{Key: ipvs.FWMarkKey(ipvs.IPv6, 8), DrainTimeout: time.Second},
	}}
	sub := filepath.Join(dir, "not-yet") // created on the first save
	for range 2 {                        // the second save replaces the first
		if err := saveOwned(sub, want); err != nil {
			t.Fatal(err)
		}
	}
	got, err = loadOwned(sub)
	if err != nil {
		t.Fatal(err)
	}
	if !got.equal(want) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}
	entries, err := os.ReadDir(sub)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != ownedFileName {
		t.Errorf("data dir holds %v, want only %s (no temporary file left)", entries, ownedFileName)
	}
	b, err := os.ReadFile(filepath.Join(sub, ownedFileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"format": 1`, `"index": 42`, `"protocol": "tcp"`, `"address": "203.0.113.10"`, `"fwmark": 7`, `"drain_timeout": "5m0s"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("file lacks %s:\n%s", s, b)
		}
	}
}

func TestOwnedFileRejectsWhatItCannotTrust(t *testing.T) {
	for _, bad := range []string{
		`not json`,
		`{"format": 2, "index": 1, "services": []}`,
		`{"format": 1, "index": 1, "services": [], "extra": true}`,
		`{"format": 1, "index": 1, "services": [{"family": "ipv5", "fwmark": 1, "drain_timeout": "0s"}]}`,
		`{"format": 1, "index": 1, "services": [{"family": "ipv4", "protocol": "tcp", "address": "2001:db8::1", "port": 80, "drain_timeout": "0s"}]}`,
		`{"format": 1, "index": 1, "services": [{"family": "ipv4", "protocol": "icmp", "address": "192.0.2.1", "port": 80, "drain_timeout": "0s"}]}`,
		`{"format": 1, "index": 1, "services": [{"family": "ipv4", "protocol": "tcp", "address": "192.0.2.1", "drain_timeout": "0s"}]}`,
		`{"format": 1, "index": 1, "services": [{"family": "ipv4", "fwmark": 1, "drain_timeout": "soon"}]}`,
	} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, ownedFileName), bad)
		if got, err := loadOwned(dir); err == nil {
			t.Errorf("loadOwned(%s) = %+v, want an error", bad, got)
		}
	}
}

// The saver writes only what changed: the owned services keep desired's
// drain timeouts, else the recorded ones; the index moves only with a
// successful apply.
func TestOwnedSaver(t *testing.T) {
	dir := t.TempDir()
	gone := ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.10:81"))
	s := ownedSaver{log: testutil.Logger(t), dataDir: dir, saved: owned{index: 3, services: []ipvs.Service{{Key: gone, DrainTimeout: time.Minute}}}}
	desired := ipvs.State{}
	svc := ipvs.NewService(web, "wlc")
	svc.DrainTimeout = 2 * time.Second
	desired.Put(svc)

	s.save([]ipvs.ServiceKey{web, gone}, desired, 9, false) // apply failed
	want := owned{index: 3, services: []ipvs.Service{{Key: web, DrainTimeout: 2 * time.Second}, {Key: gone, DrainTimeout: time.Minute}}}
	if got, err := loadOwned(dir); err != nil || !got.equal(want) {
		t.Fatalf("after a failed apply: %+v, %v; want %+v", got, err, want)
	}
	s.save([]ipvs.ServiceKey{web}, desired, 9, true)
	want = owned{index: 9, services: []ipvs.Service{{Key: web, DrainTimeout: 2 * time.Second}}}
	if got, err := loadOwned(dir); err != nil || !got.equal(want) {
		t.Fatalf("after an apply: %+v, %v; want %+v", got, err, want)
	}
	// Nothing changed: nothing written (a removed file stays removed).
	if err := os.Remove(filepath.Join(dir, ownedFileName)); err != nil {
		t.Fatal(err)
	}
	s.save([]ipvs.ServiceKey{web}, desired, 9, true)
	if _, err := os.Stat(filepath.Join(dir, ownedFileName)); !os.IsNotExist(err) {
		t.Errorf("an unchanged record was written again: %v", err)
	}
	// An owned service neither desired nor recorded: the default timeout.
	other := ipvs.FWMarkKey(ipvs.IPv4, 7)
	if got := ownedRecordOf(s.saved, []ipvs.ServiceKey{other}, desired, 10, true); got.services[0].DrainTimeout != config.DefaultDrainTimeout {
		t.Errorf("drain timeout %v, want the default", got.services[0].DrainTimeout)
	}
}
