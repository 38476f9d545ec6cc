package bgp

import (
	"net/netip"
	"slices"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func set(ps []netip.Prefix) map[netip.Prefix]struct{} {
	m := map[netip.Prefix]struct{}{}
	for _, p := range ps {
		m[p] = struct{}{}
	}
	return m
}

func TestDiffPrefixes(t *testing.T) {
	tests := []struct {
		name                  string
		announced, desired    []netip.Prefix
		wantAdd, wantWithdraw []netip.Prefix
	}{
		{"empty", nil, nil, nil, nil},
		{"first", nil, prefixes("203.0.113.10/32", "2001:db8:113::10/128"), prefixes("203.0.113.10/32", "2001:db8:113::10/128"), nil},
		{"same", prefixes("203.0.113.10/32"), prefixes("203.0.113.10/32"), nil, nil},
		{"smaller", prefixes("203.0.113.10/32", "203.0.113.11/32"), prefixes("203.0.113.11/32"), nil, prefixes("203.0.113.10/32")},
		{"swap", prefixes("203.0.113.10/32", "2001:db8:113::10/128"), prefixes("203.0.113.11/32", "2001:db8:113::10/128"), prefixes("203.0.113.11/32"), prefixes("203.0.113.10/32")},
		{"none", prefixes("203.0.113.12/32", "203.0.113.10/32"), nil, nil, prefixes("203.0.113.10/32", "203.0.113.12/32")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			add, withdraw := diffPrefixes(set(tt.announced), set(tt.desired))
			if !slices.Equal(add, tt.wantAdd) || !slices.Equal(withdraw, tt.wantWithdraw) {
				t.Errorf("add %v withdraw %v; want add %v withdraw %v", add, withdraw, tt.wantAdd, tt.wantWithdraw)
			}
		})
	}
}

func TestCheckPrefixes(t *testing.T) {
	good := prefixes("203.0.113.10/32", "2001:db8:113::10/128", "203.0.113.10/32")
	s, err := checkPrefixes(good)
	if err != nil || len(s) != 2 {
		t.Fatalf("checkPrefixes(%v) = %v, %v", good, s, err)
	}
	for _, bad := range []netip.Prefix{
		{},
		netip.MustParsePrefix("203.0.113.0/24"),
		netip.MustParsePrefix("2001:db8:113::/64"),
		netip.MustParsePrefix("::ffff:203.0.113.10/128"),
		netip.MustParsePrefix("0.0.0.0/32"),
		netip.MustParsePrefix("224.0.0.1/32"),
		netip.MustParsePrefix("fe80::1/128"),
		netip.MustParsePrefix("127.0.0.1/32"),
	} {
		if _, err := checkPrefixes([]netip.Prefix{bad}); err == nil {
			t.Errorf("checkPrefixes(%v) accepted", bad)
		}
	}
}

// fakeServer-free checks of Announce's bookkeeping before Start.
func TestAnnounceNotStarted(t *testing.T) {
	s, err := New(nil, validConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(t.Context(), prefixes("203.0.113.10/32")); err != ErrNotStarted {
		t.Errorf("Announce before Start: %v", err)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Errorf("Stop before Start: %v", err)
	}
	if err := s.Start(t.Context()); err != ErrStopped {
		t.Errorf("Start after Stop: %v", err)
	}
	st := s.Status()
	if len(st.Peers) != 2 || st.Peers[0].State != "idle" || st.Peers[1].BFD != "down" {
		t.Errorf("Status %+v", st)
	}
}
