package lab

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseBIRDEstablished(t *testing.T) {
	out := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     08:03:43.002  
kernel4    Kernel     master4    up     08:03:43.002  
bfd1       BFD        ---        up     08:03:43.002  
dir1       BGP        ---        up     08:03:44.512  Established   
dir2       BGP        ---        start  08:03:44.512  Active        Socket: Connection refused
dir3       BGP        ---        up     08:03:44.630  Established   
dir1v6     BGP        ---        start  08:03:44.512  Connect       
`
	if got := ParseBIRDEstablished(out); got != 2 {
		t.Errorf("ParseBIRDEstablished = %d, want 2", got)
	}
}

func TestParseFRREstablished(t *testing.T) {
	out := `{
  "192.0.2.11": {"remoteAs": 64513, "bgpState": "Established"},
  "192.0.2.12": {"remoteAs": 64513, "bgpState": "Active"},
  "2001:db8::11": {"remoteAs": 64513, "bgpState": "Established"},
  "DSRD4": {"bgpState": "Established"}
}`
	got, err := ParseFRREstablished(out)
	if err != nil || got != 2 {
		t.Errorf("ParseFRREstablished = %d, %v; want 2, nil", got, err)
	}
	if _, err := ParseFRREstablished("% no such command"); err == nil {
		t.Error("ParseFRREstablished accepted text that is no JSON")
	}
}

func TestParseRouteGet(t *testing.T) {
	out := `203.0.113.10 from 198.51.100.10 via 192.0.2.12 dev eth0 table main 
    cache iif eth1 
203.0.113.10 from 198.51.100.10 via 192.0.2.11 dev eth0 table main 
    cache iif eth1 
2001:db8:113::10 from 2001:db8:100::10 via fe80::ff:fe00:13 dev eth0 proto bgp src 2001:db8::1 metric 20 iif eth1 pref medium
`
	got, err := ParseRouteGet(out, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{
		netip.MustParseAddr("192.0.2.12"),
		netip.MustParseAddr("192.0.2.11"),
		netip.MustParseAddr("fe80::ff:fe00:13"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("ParseRouteGet = %v, want %v", got, want)
	}
	hs, err := NextHopDirectors(got)
	if err != nil || !slices.Equal(hs, []Host{Dir2, Dir1, Dir3}) {
		t.Errorf("NextHopDirectors = %v, %v; want [dir2 dir1 dir3]", hs, err)
	}
	if _, err := ParseRouteGet(out, 4); err == nil {
		t.Error("ParseRouteGet accepted 3 answers for 4 flows")
	}
	if _, err := ParseRouteGet("local 203.0.113.10 dev lo table local src 203.0.113.10\n", 1); err == nil {
		t.Error("ParseRouteGet accepted an answer without a gateway")
	}
}

func TestDirectorAt(t *testing.T) {
	for _, tt := range []struct {
		addr string
		host Host
		ok   bool
	}{
		{"192.0.2.11", Dir1, true},
		{"2001:db8::12", Dir2, true},
		{"fe80::ff:fe00:13", Dir3, true},
		{"fe80::ff:fe00:13%eth0", Dir3, true},
		{"192.0.2.21", "", false},
		{"192.0.2.1", "", false},
	} {
		h, ok := DirectorAt(netip.MustParseAddr(tt.addr))
		if h != tt.host || ok != tt.ok {
			t.Errorf("DirectorAt(%s) = %q, %v; want %q, %v", tt.addr, h, ok, tt.host, tt.ok)
		}
	}
	if _, err := NextHopDirectors([]netip.Addr{netip.MustParseAddr("192.0.2.1")}); err == nil {
		t.Error("NextHopDirectors accepted the router's own address")
	}
}

func TestFlows(t *testing.T) {
	fs := Flows("udp", RemoteIPv4, netip.MustParseAddrPort("203.0.113.10:9000"), 40000, 3)
	if len(fs) != 3 || fs[0].SPort != 40000 || fs[2].SPort != 40002 || fs[1].DPort != 9000 || fs[1].Src != RemoteIPv4 {
		t.Errorf("Flows = %+v", fs)
	}
}
