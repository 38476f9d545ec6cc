package cli

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
)

func TestRealserverAgentConfig(t *testing.T) {
	vip := netip.MustParseAddr("203.0.113.10")
	got := RealserverAgentConfig(config.Realserver{
		VIPs:           []netip.Addr{vip},
		Interfaces:     []string{"eth0"},
		DataDir:        "/d",
		CleanupOnExit:  true,
		StatusAddress:  ":9797",
		ResyncInterval: config.Duration(time.Minute),
		SYNCookies:     true,
		Tunnel:         true,
		LogLevel:       "debug",
		LogFormat:      "json",
	})
	if !slices.Equal(got.VIPs, []netip.Addr{vip}) || !slices.Equal(got.Interfaces, []string{"eth0"}) || got.DataDir != "/d" ||
		!got.CleanupOnExit || got.StatusAddress != ":9797" || got.ResyncInterval != time.Minute || !got.SYNCookies || !got.Tunnel {
		t.Errorf("RealserverAgentConfig = %+v", got)
	}
}

// TestRealserverAgentConfigCoversTheFile fails when config.Realserver gains
// a field that RealserverAgentConfig neither translates nor knowingly
// leaves to the command.
func TestRealserverAgentConfigCoversTheFile(t *testing.T) {
	translated := []string{"VIPs", "Interfaces", "DataDir", "CleanupOnExit", "StatusAddress", "ResyncInterval", "SYNCookies", "Tunnel"}
	command := []string{"LogLevel", "LogFormat"}
	typ := reflect.TypeFor[config.Realserver]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !slices.Contains(translated, f.Name) && !slices.Contains(command, f.Name) {
			t.Errorf("config.Realserver.%s is not translated into realserver.Config nor used by the command", f.Name)
		}
	}
}

// The agent refuses what the file refuses, when it comes from a flag too.
func TestRealserverRefusesLoFromFlags(t *testing.T) {
	name := filepath.Join(t.TempDir(), "realserver.yaml")
	if err := os.WriteFile(name, []byte("vips: [203.0.113.10]\ninterfaces: [eth0]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "realserver", "--config", name, "--interface", "lo", "--data-dir", t.TempDir())
	if code != exitFailure || !strings.Contains(errOut, "lo cannot face the directors") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// A file listing lo among the interfaces is refused at its position.
func TestRealserverRefusesLoInFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "realserver.yaml")
	if err := os.WriteFile(name, []byte("vips: [203.0.113.10]\ninterfaces: [eth0, lo]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "realserver", "--config", name)
	if code != exitFailure || !strings.Contains(errOut, name+":2:20: interfaces[1]: lo cannot face the directors") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
