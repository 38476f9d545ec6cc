package bgp

import (
	"strings"
	"testing"
)

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		err  bool
	}{
		{"0:0", 0, false},
		{"64513:100", 64513<<16 | 100, false},
		{"65535:65535", 0xFFFFFFFF, false},
		{"65535:0", CommunityGracefulShutdown, false},
		{"no-export", 0xFFFFFF01, false},
		{"no-advertise", 0xFFFFFF02, false},
		{"no-export-subconfed", 0xFFFFFF03, false},
		{"no-peer", 0xFFFFFF04, false},
		{"blackhole", 0xFFFF029A, false},
		{"graceful-shutdown", 0xFFFF0000, false},
		{"00001:00002", 1<<16 | 2, false},
		{"", 0, true},
		{"1", 0, true},
		{"1:", 0, true},
		{":1", 0, true},
		{"1:2:3", 0, true},
		{"65536:0", 0, true},
		{"0:65536", 0, true},
		{"-1:0", 0, true},
		{"+1:0", 0, true},
		{" 1:0", 0, true},
		{"1:0 ", 0, true},
		{"NO-EXPORT", 0, true},
		{"000001:1", 0, true},
		{"１:1", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCommunity(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseCommunity(%q) = %#x, %v; want %#x, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	if _, err := parseConfigCommunity("65535:0"); err == nil {
		t.Error("parseConfigCommunity accepts GRACEFUL_SHUTDOWN")
	}
}

// FuzzParseCommunity: no input panics; what parses formats back to a
// string that parses to the same value.
func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"0:0", "64513:100", "65535:65535", "no-export", "blackhole", "graceful-shutdown", "1:", ":", "65536:0", "-0:0", "1:2:3", "00000:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseCommunity(s)
		if err != nil {
			if v != 0 {
				t.Fatalf("ParseCommunity(%q) = %#x with error %v", s, v, err)
			}
			return
		}
		back := formatCommunity(v)
		v2, err := ParseCommunity(back)
		if err != nil || v2 != v {
			t.Fatalf("ParseCommunity(%q) = %#x, formatted %q parses to %#x, %v", s, v, back, v2, err)
		}
		if _, known := wellKnownCommunities[s]; !known && strings.Count(s, ":") != 1 {
			t.Fatalf("ParseCommunity(%q) accepted a string without one colon", s)
		}
		cv, cerr := parseConfigCommunity(s)
		if (v == CommunityGracefulShutdown) != (cerr != nil) || (cerr == nil && cv != v) {
			t.Fatalf("parseConfigCommunity(%q) = %#x, %v", s, cv, cerr)
		}
	})
}
