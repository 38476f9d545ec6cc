package lab

import (
	"net"
	"net/netip"
	"reflect"
	"testing"
)

func TestHostAddressPlan(t *testing.T) {
	tests := []struct {
		host       Host
		ipv4, ipv6 string
		mac        string
	}{
		{Client, "192.0.2.10", "2001:db8::10", "02:00:00:00:00:10"},
		{Dir1, "192.0.2.11", "2001:db8::11", "02:00:00:00:00:11"},
		{Dir3, "192.0.2.13", "2001:db8::13", "02:00:00:00:00:13"},
		{RS1, "192.0.2.21", "2001:db8::21", "02:00:00:00:00:21"},
		{RS3, "192.0.2.23", "2001:db8::23", "02:00:00:00:00:23"},
	}
	for _, tt := range tests {
		if got := tt.host.IPv4().String(); got != tt.ipv4 {
			t.Errorf("%s.IPv4() = %s, want %s", tt.host, got, tt.ipv4)
		}
		if got := tt.host.IPv6().String(); got != tt.ipv6 {
			t.Errorf("%s.IPv6() = %s, want %s", tt.host, got, tt.ipv6)
		}
		if got := tt.host.MAC(); got != tt.mac {
			t.Errorf("%s.MAC() = %s, want %s", tt.host, got, tt.mac)
		}
	}
	if n := len(Hosts()); n != 7 {
		t.Errorf("len(Hosts()) = %d, want 7", n)
	}
}

func TestRequireSkipsOutsideTheLab(t *testing.T) {
	// Not required, and not the lab: without DSRD_REPO no machine is.
	t.Setenv("DSRD_TEST_PRIVILEGED", "")
	t.Setenv("DSRD_REPO", "")
	var skipped bool
	t.Run("inner", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		Require(t)
	})
	if !skipped {
		t.Error("Require did not skip outside the lab")
	}
}

func TestParseIPVSConns(t *testing.T) {
	out := `IPVS connection entries
pro expire state       source             virtual            destination
TCP 01:57  FIN_WAIT    192.0.2.10:49128   203.0.113.10:80    192.0.2.21:80
TCP 01:59  FIN_WAIT    [2001:db8::10]:45462 [2001:db8:113::10]:80 [2001:db8::21]:80
`
	got, err := ParseIPVSConns(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []IPVSConn{
		{"TCP", "FIN_WAIT", "192.0.2.10:49128", "203.0.113.10:80", "192.0.2.21:80"},
		{"TCP", "FIN_WAIT", "[2001:db8::10]:45462", "[2001:db8:113::10]:80", "[2001:db8::21]:80"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseIPVSConns = %+v, want %+v", got, want)
	}
	if _, err := ParseIPVSConns("IPVS connection entries\nthis is not a connection\n"); err == nil {
		t.Error("ParseIPVSConns accepted garbage")
	}
}

func TestParseIPVSStats(t *testing.T) {
	out := `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  203.0.113.10:80                     4       24        0     1584        0
  -> 192.0.2.21:80                       2       12        0      792        0
  -> 192.0.2.22:80                       2       12        0      792        0
TCP  [2001:db8:113::10]:80               1        7        0      594        0
  -> [2001:db8::21]:80                   0        0        0        0        0
`
	got, err := ParseIPVSStats(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]IPVSServiceStats{
		"TCP 203.0.113.10:80": {
			IPVSStats: IPVSStats{Conns: 4, InPkts: 24, InBytes: 1584},
			Dests: map[string]IPVSStats{
				"192.0.2.21:80": {Conns: 2, InPkts: 12, InBytes: 792},
				"192.0.2.22:80": {Conns: 2, InPkts: 12, InBytes: 792},
			},
		},
		"TCP [2001:db8:113::10]:80": {
			IPVSStats: IPVSStats{Conns: 1, InPkts: 7, InBytes: 594},
			Dests:     map[string]IPVSStats{"[2001:db8::21]:80": {}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseIPVSStats = %+v, want %+v", got, want)
	}
	if _, err := ParseIPVSStats("  -> 192.0.2.21:80 1 2 3 4 5\n"); err == nil {
		t.Error("ParseIPVSStats accepted a destination without a service")
	}
}

func TestParseNeighbours(t *testing.T) {
	out := `[{"dst":"203.0.113.10","dev":"eth0","lladdr":"02:00:00:00:00:11","state":["REACHABLE"]}]`
	got, err := ParseNeighbours(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []Neighbour{{Dst: "203.0.113.10", Dev: "eth0", LLAddr: "02:00:00:00:00:11", State: []string{"REACHABLE"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseNeighbours = %+v, want %+v", got, want)
	}
	if got, err := ParseNeighbours("\n"); err != nil || got != nil {
		t.Errorf("ParseNeighbours(empty) = %v, %v; want nil, nil", got, err)
	}
}

func TestARPPackets(t *testing.T) {
	mac, _ := net.ParseMAC(Client.MAC())
	vip := netip.MustParseAddr("203.0.113.10")
	req := ARPRequest(mac, Client.IPv4(), vip)
	if len(req) != 28 {
		t.Fatalf("len(request) = %d, want 28", len(req))
	}
	if _, ok := ARPReplyFrom(req, vip); ok {
		t.Error("a request was taken for a reply")
	}
	// A reply is a request with the operation set to 2 and the sender
	// fields filled with the answering host's.
	reply := ARPRequest(net.HardwareAddr{2, 0, 0, 0, 0, 0x11}, vip, Client.IPv4())
	reply[7] = 2
	if got, ok := ARPReplyFrom(reply, vip); !ok || got != "02:00:00:00:00:11" {
		t.Errorf("ARPReplyFrom(reply) = %q, %v; want 02:00:00:00:00:11, true", got, ok)
	}
	if _, ok := ARPReplyFrom(reply, netip.MustParseAddr("203.0.113.11")); ok {
		t.Error("a reply for another address was accepted")
	}
	if _, ok := ARPReplyFrom(reply[:20], vip); ok {
		t.Error("a truncated reply was accepted")
	}
}
