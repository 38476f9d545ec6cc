package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dsrd/dsrd/internal/cli"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/realserver"
)

// realserverFiles are the realserver inputs config accepts: the valid test
// files, the fuzz seeds and the shipped example.
func realserverFiles(t testing.TB) []string {
	t.Helper()
	var files []string
	for _, glob := range []string{"testdata/valid/realserver*.yaml", "testdata/fuzz/seed_realserver*.yaml", "../../packaging/examples/realserver.yaml"} {
		files = append(files, mustGlob(t, glob)...)
	}
	return files
}

// acceptedEdges are realserver files at the edges of what config accepts.
var acceptedEdges = map[string]string{
	"ipv6 only":         "vips: [\"2001:db8::10\"]\n",
	"many vips":         "vips: [203.0.113.10, 198.51.100.10, 192.0.2.10, \"2001:db8::1\", \"2001:db8:ffff::1\"]\n",
	"interface names":   "vips: [203.0.113.10]\ninterfaces: [eth0, bond0.100, br-lan_1, abcdefghijklmno, eth0@if12]\n",
	"status any host":   "vips: [203.0.113.10]\nstatus_address: \":9797\"\n",
	"status ipv6":       "vips: [203.0.113.10]\nstatus_address: \"[2001:db8::1]:9797\"\n",
	"status name":       "vips: [203.0.113.10]\nstatus_address: \"localhost:65535\"\n",
	"shortest resync":   "vips: [203.0.113.10]\nresync_interval: 1ns\n",
	"root data dir":     "vips: [203.0.113.10]\ndata_dir: /\n",
	"cleanup and debug": "vips: [203.0.113.10]\ncleanup_on_exit: true\nlog_level: debug\nlog_format: json\n",
}

// constructs fails t unless the agent accepts cfg: realserver.New with a
// fake kernel validates without touching anything.
func constructs(t *testing.T, name string, cfg *config.Realserver) {
	t.Helper()
	a, err := realserver.New(cli.RealserverAgentConfig(*cfg), nil, realserver.WithKernel(netkernel.NewFake()))
	if err != nil {
		t.Fatalf("%s: config accepts it, realserver.New refuses it: %v", name, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRealserverAcceptImpliesConstruct: every realserver file config
// accepts builds an agent, so that no rule lives in one place only.
func TestRealserverAcceptImpliesConstruct(t *testing.T) {
	for _, file := range realserverFiles(t) {
		t.Run(filepath.Base(file), func(t *testing.T) {
			cfg, err := config.LoadRealserver(file)
			if err != nil {
				t.Fatalf("a valid file is refused: %v", err)
			}
			constructs(t, file, cfg)
		})
	}
	for name, data := range acceptedEdges {
		t.Run(name, func(t *testing.T) {
			cfg, err := config.ParseRealserver("realserver.yaml", []byte(data))
			if err != nil {
				t.Fatalf("config refuses an input meant to be valid: %v", err)
			}
			constructs(t, name, cfg)
		})
	}
}

// FuzzRealserverAcceptImpliesConstruct checks the same property on
// arbitrary input: whatever config accepts as a realserver file, the agent
// accepts too.
func FuzzRealserverAcceptImpliesConstruct(f *testing.F) {
	for _, file := range append(realserverFiles(f), mustGlob(f, "testdata/errors/realserver_*.yaml")...) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, data := range acceptedEdges {
		f.Add([]byte(data))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.ParseRealserver("fuzz.yaml", data)
		if err != nil {
			return
		}
		constructs(t, "fuzz.yaml", cfg)
	})
}

// mustGlob returns the files matching glob, failing when there are none.
func mustGlob(t testing.TB, glob string) []string {
	t.Helper()
	m, err := filepath.Glob(glob)
	if err != nil || len(m) == 0 {
		t.Fatalf("no files match %s: %v", glob, err)
	}
	return m
}
