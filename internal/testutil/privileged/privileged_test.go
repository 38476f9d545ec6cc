package privileged

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fakeTB records what Require asks of its test. Unlike a real test, its
// Skipf and Fatalf return, which Require must cope with.
type fakeTB struct {
	testing.TB
	skipped, fatal []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skipped = append(f.skipped, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = append(f.fatal, fmt.Sprintf(format, args...))
}

var (
	met   = Need{What: "nothing at all", Missing: func() error { return nil }}
	unmet = Need{What: "CAP_NET_ADMIN, to create veth pairs", Missing: func() error { return errors.New("the process lacks CAP_NET_ADMIN") }}
	other = Need{What: "kernel IPVS, which the VM lab has", Missing: func() error { return errors.New("no /proc/net/ip_vs") }}
)

func TestRequire(t *testing.T) {
	for _, tt := range []struct {
		name  string
		env   string
		needs []Need
		// skip and fatal: substrings of the one message wanted, "" for none.
		skip, fatal []string
	}{
		{name: "met", needs: []Need{met}},
		{name: "met, required", env: "require", needs: []Need{met, met}},
		{
			name:  "unmet skips, saying what and why",
			needs: []Need{met, unmet},
			skip:  []string{"CAP_NET_ADMIN, to create veth pairs", "the process lacks CAP_NET_ADMIN", "DSRD_TEST_PRIVILEGED=require"},
		},
		{
			name:  "every unmet need is named",
			needs: []Need{unmet, other},
			skip:  []string{"to create veth pairs", "kernel IPVS, which the VM lab has (no /proc/net/ip_vs)"},
		},
		{
			name:  "unmet, required, fails",
			env:   "require",
			needs: []Need{unmet},
			fatal: []string{"DSRD_TEST_PRIVILEGED=require", "CAP_NET_ADMIN, to create veth pairs", "the process lacks CAP_NET_ADMIN"},
		},
		{name: "a mistaken value fails", env: "1", needs: []Need{met}, fatal: []string{`DSRD_TEST_PRIVILEGED="1"`}},
		{name: "no needs fails", needs: nil, fatal: []string{"no needs"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvVar, tt.env)
			f := &fakeTB{TB: t}
			Require(f, tt.needs...)
			check := func(kind string, got []string, want []string) {
				t.Helper()
				if want == nil {
					if len(got) != 0 {
						t.Errorf("%s %q, want none", kind, got)
					}
					return
				}
				if len(got) != 1 {
					t.Fatalf("%s %q, want one", kind, got)
				}
				for _, w := range want {
					if !strings.Contains(got[0], w) {
						t.Errorf("%s %q, want it to say %q", kind, got[0], w)
					}
				}
			}
			check("skipped", f.skipped, tt.skip)
			check("failed", f.fatal, tt.fatal)
		})
	}
}

func TestMissingCaps(t *testing.T) {
	// CapEff 0x3000: CAP_NET_ADMIN (12) and CAP_NET_RAW (13), not CAP_SYS_ADMIN (21).
	status := "Name:\tgo\nCapInh:\t0000000000000000\nCapPrm:\t0000000000003000\nCapEff:\t0000000000003000\n"
	if err := missingCaps(status, []Cap{CapNetAdmin, CapNetRaw}); err != nil {
		t.Errorf("NET_ADMIN and NET_RAW held: %v", err)
	}
	err := missingCaps(status, []Cap{CapNetAdmin, CapSysAdmin})
	if err == nil || !strings.Contains(err.Error(), "CAP_SYS_ADMIN") || strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("SYS_ADMIN not held: %v, want it named alone", err)
	}
	if err := missingCaps("Name:\tgo\n", []Cap{CapNetRaw}); err == nil {
		t.Error("a status without CapEff was taken for one with every capability")
	}
	if err := missingCaps("CapEff:\tzz\n", []Cap{CapNetRaw}); err == nil {
		t.Error("a malformed CapEff was accepted")
	}
}

func TestCapsNamesItsNeed(t *testing.T) {
	n := NetNS("to create network namespaces")
	if want := "CAP_SYS_ADMIN and CAP_NET_ADMIN, to create network namespaces"; n.What != want {
		t.Errorf("What = %q, want %q", n.What, want)
	}
}
