package ipvs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// allOn turns on every sysctl of the table, as the configuration file's
// defaults do.
var allOn = Settings{SloppyTCP: true, ExpireNodestConn: true, ExpireQuiescentTemplate: true}

// mapSysctl is a SysctlWriter over a map that counts writes.
type mapSysctl struct {
	vals   map[string]string
	writes []string
	fail   string
}

func (m *mapSysctl) Get(name string) (string, error) {
	v, ok := m.vals[name]
	if !ok {
		return "", os.ErrNotExist
	}
	return v, nil
}

func (m *mapSysctl) Set(name, value string) error {
	if name == m.fail {
		return errors.New("read-only")
	}
	m.writes = append(m.writes, name+"="+value)
	m.vals[name] = value
	return nil
}

func TestDirectorSysctlsOn(t *testing.T) {
	got := map[string]string{}
	for _, s := range DirectorSysctls(allOn) {
		if s.Why == "" {
			t.Errorf("%s has no reason", s.Key())
		}
		got[s.Key()] = s.Value
	}
	want := map[string]string{
		"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.sloppy_sctp": "1",
		"net.ipv4.vs.expire_nodest_conn": "1", "net.ipv4.vs.expire_quiescent_template": "1",
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}

func TestDirectorSysctlsOff(t *testing.T) {
	for _, s := range DirectorSysctls(Settings{}) {
		if s.Value != "0" || !strings.HasPrefix(s.Why, "off") {
			t.Errorf("zero Settings: %s=%s (%s), want 0 and a reason saying off", s.Key(), s.Value, s.Why)
		}
	}
}

func TestDirectorSysctlsOverrides(t *testing.T) {
	mode := 2
	got := map[string]string{}
	for _, s := range DirectorSysctls(Settings{ExpireNodestConn: true, ConnReuseMode: &mode}) {
		if s.Why == "" {
			t.Errorf("%s has no reason", s.Key())
		}
		got[s.Key()] = s.Value
	}
	want := map[string]string{
		"net.ipv4.vs.sloppy_tcp": "0", "net.ipv4.vs.sloppy_sctp": "0",
		"net.ipv4.vs.expire_nodest_conn": "1", "net.ipv4.vs.expire_quiescent_template": "0",
		"net.ipv4.vs.conn_reuse_mode": "2",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
}

func TestApplySysctlsWritesOnlyChanges(t *testing.T) {
	m := &mapSysctl{vals: map[string]string{
		"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.sloppy_sctp": "0",
		"net.ipv4.vs.expire_nodest_conn": "0", "net.ipv4.vs.expire_quiescent_template": "1",
	}, fail: "net.ipv4.vs.expire_nodest_conn"}
	err := ApplySysctls(context.Background(), m, DirectorSysctls(allOn))
	if err == nil {
		t.Error("a failed write was not reported")
	}
	if len(m.writes) != 1 || m.writes[0] != "net.ipv4.vs.sloppy_sctp=1" {
		t.Errorf("writes %v", m.writes)
	}
}

func TestProcSys(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "net", "ipv4", "vs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sloppy_tcp"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := ProcSys{Root: root}
	if v, err := p.Get("net.ipv4.vs.sloppy_tcp"); err != nil || v != "0" {
		t.Fatalf("get: %q, %v", v, err)
	}
	if err := p.Set("net.ipv4.vs.sloppy_tcp", "1"); err != nil {
		t.Fatal(err)
	}
	if v, _ := p.Get("net.ipv4.vs.sloppy_tcp"); v != "1" {
		t.Errorf("after set: %q", v)
	}
	if err := p.Set("net.ipv4.vs.nosuch", "1"); err == nil {
		t.Error("set of a missing sysctl succeeded")
	}
}

// The defences: each mode's value, the kernel's own 1/2 toggling of an
// auto defence left alone, amemthresh in pages of the given size, and
// the zero value leaving the kernel's settings.
func TestDefenceSysctls(t *testing.T) {
	s := allOn
	s.DropEntry, s.DropPacket, s.SecureTCP = DefenceAuto, DefenceOff, DefenceAlways
	s.AMemThresh, s.PageSize = 256<<20, 4096
	got := map[string]string{}
	for _, sc := range DirectorSysctls(s) {
		if sc.Why == "" {
			t.Errorf("%s has no reason", sc.Key())
		}
		got[sc.Key()] = sc.Value
	}
	for k, v := range map[string]string{
		"net.ipv4.vs.drop_entry": "1", "net.ipv4.vs.drop_packet": "0", "net.ipv4.vs.secure_tcp": "3",
		"net.ipv4.vs.amemthresh": "65536",
	} {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	for _, sc := range DirectorSysctls(allOn) {
		if sc.Name == "amemthresh" || slices.Contains(DefenceSysctls, sc.Name) {
			t.Errorf("zero defences set %s=%s; want the kernel's left alone", sc.Key(), sc.Value)
		}
	}

	// The kernel says 2: an auto defence acting. Applying auto again must
	// not write 1 over it; applying always must.
	m := &mapSysctl{vals: map[string]string{
		"net.ipv4.vs.sloppy_tcp": "1", "net.ipv4.vs.sloppy_sctp": "1",
		"net.ipv4.vs.expire_nodest_conn": "1", "net.ipv4.vs.expire_quiescent_template": "1",
		"net.ipv4.vs.drop_entry": "2", "net.ipv4.vs.drop_packet": "0", "net.ipv4.vs.secure_tcp": "2",
		"net.ipv4.vs.amemthresh": "65536",
	}}
	if err := ApplySysctls(context.Background(), m, DirectorSysctls(s)); err != nil {
		t.Fatal(err)
	}
	if want := []string{"net.ipv4.vs.secure_tcp=3"}; !slices.Equal(m.writes, want) {
		t.Errorf("writes %v, want %v (drop_entry's 2 is auto acting)", m.writes, want)
	}
	if !DefenceActive("2") || !DefenceActive("3") || DefenceActive("1") || DefenceActive("0") {
		t.Error("DefenceActive: 2 and 3 act, 0 and 1 do not")
	}
	for _, in := range []string{"off", "auto", "always"} {
		if d, err := ParseDefence(in); err != nil || string(d) != in {
			t.Errorf("ParseDefence(%q) = %q, %v", in, d, err)
		}
	}
	if _, err := ParseDefence("1"); err == nil {
		t.Error("ParseDefence accepted a number")
	}
}
