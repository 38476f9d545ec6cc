package ipvs

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestServiceKey(t *testing.T) {
	tests := []struct {
		k    ServiceKey
		want string
	}{
		{NewServiceKey(TCP, ap("192.0.2.1:80")), "tcp/192.0.2.1:80"},
		{NewServiceKey(UDP, ap("[::ffff:192.0.2.1]:53")), "udp/192.0.2.1:53"},
		{NewServiceKey(SCTP, ap("[2001:db8::1]:9")), "sctp/[2001:db8::1]:9"},
		{FWMarkKey(IPv4, 7), "fwmark/4/7"},
		{FWMarkKey(IPv6, 8), "fwmark/6/8"},
	}
	for _, tt := range tests {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("%#v: %q, want %q", tt.k, got, tt.want)
		}
		if got, err := ParseServiceKey(tt.want); err != nil || got != tt.k {
			t.Errorf("ParseServiceKey(%q) = %#v, %v; want %#v", tt.want, got, err, tt.k)
		}
		b, err := json.Marshal(map[ServiceKey]ServiceKey{tt.k: tt.k})
		if want := `{"` + tt.want + `":"` + tt.want + `"}`; err != nil || string(b) != want {
			t.Errorf("JSON of %s: %s, %v; want %s", tt.want, b, err, want)
		}
		var back map[ServiceKey]ServiceKey
		if err := json.Unmarshal(b, &back); err != nil || back[tt.k] != tt.k {
			t.Errorf("JSON round trip of %s: %v, %v", tt.want, back, err)
		}
	}
	if NewServiceKey(TCP, ap("[::ffff:192.0.2.1]:80")) != tcp("192.0.2.1:80") {
		t.Error("an IPv4-mapped address makes another key")
	}
	for _, bad := range []string{"", "tcp", "tcp 192.0.2.1:80", "TCP/192.0.2.1:80", "icmp/192.0.2.1:80", "tcp/192.0.2.1",
		"tcp/[::ffff:192.0.2.1]:80", "tcp/192.0.2.01:80", "fwmark/7", "fwmark/0/7", "fwmark/4/0", "fwmark/4/07", "fwmark/4/x", "fwmark/4/4294967296"} {
		if k, err := ParseServiceKey(bad); err == nil {
			t.Errorf("ParseServiceKey(%q) = %v, want an error", bad, k)
		}
	}
}

func TestServiceKeyOf(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.10")
	for _, tt := range []struct {
		proto  string
		vip    netip.Addr
		port   uint16
		fwmark uint32
		fam    int
		want   string
	}{
		{"tcp", a, 80, 0, 4, "tcp/203.0.113.10:80"},
		{"udp", netip.MustParseAddr("2001:db8::53"), 53, 0, 6, "udp/[2001:db8::53]:53"},
		{"", a, 0, 4, 4, "fwmark/4/4"},
		{"", netip.Addr{}, 0, 1, 6, "fwmark/6/1"},
	} {
		k, err := ServiceKeyOf(tt.proto, tt.vip, tt.port, tt.fwmark, tt.fam)
		if err != nil || k.String() != tt.want {
			t.Errorf("ServiceKeyOf(%q, %v, %d, %d, %d) = %v, %v; want %s", tt.proto, tt.vip, tt.port, tt.fwmark, tt.fam, k, err, tt.want)
		}
	}
	for _, bad := range [][]any{{"icmp", a, uint16(80), uint32(0), 4}, {"tcp", netip.Addr{}, uint16(80), uint32(0), 4}, {"", a, uint16(0), uint32(3), 0}} {
		if k, err := ServiceKeyOf(bad[0].(string), bad[1].(netip.Addr), bad[2].(uint16), bad[3].(uint32), bad[4].(int)); err == nil {
			t.Errorf("ServiceKeyOf(%v) = %v, want an error", bad, k)
		}
	}
}

// FuzzParseServiceKey: a key that parses prints as it was read.
func FuzzParseServiceKey(f *testing.F) {
	for _, s := range []string{"tcp/192.0.2.1:80", "udp/[2001:db8::1]:53", "fwmark/4/7", "fwmark/6/8", "sctp/[::ffff:1.2.3.4]:9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseServiceKey(s)
		if err != nil {
			return
		}
		if k.String() != s {
			t.Errorf("ParseServiceKey(%q) prints %q", s, k.String())
		}
	})
}

func TestParseProtocol(t *testing.T) {
	for s, want := range map[string]Protocol{"tcp": TCP, "UDP": UDP, "sctp": SCTP} {
		if got, err := ParseProtocol(s); err != nil || got != want {
			t.Errorf("%q: %v, %v", s, got, err)
		}
	}
	if _, err := ParseProtocol("icmp"); err == nil {
		t.Error("icmp parsed")
	}
}

func TestParseSchedFlags(t *testing.T) {
	tests := []struct {
		sched string
		names []string
		want  Flags
		err   bool
	}{
		{"sh", []string{"sh-fallback", "sh-port"}, FlagSHFallback | FlagSHPort, false},
		{"mh", []string{"mh-port"}, FlagMHPort, false},
		{"MH", []string{"MH-Fallback"}, FlagMHFallback, false},
		{"rr", []string{"flag-3"}, FlagSched3, false},
		{"mh", []string{"sh-port"}, 0, true},
		{"rr", []string{"mh-port"}, 0, true},
		{"mh", nil, 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSchedFlags(tt.sched, tt.names)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s %v: %v, %v", tt.sched, tt.names, got, err)
		}
	}
}

func TestNormalized(t *testing.T) {
	s := NewService(tcp("192.0.2.1:80"), " WRR ")
	s.Flags = FlagHashed | FlagOnePacket
	s.Timeout, s.Netmask = 5*time.Second, 24 // not persistent: dropped
	n := s.normalized()
	if n.Scheduler != "wrr" || n.Flags != FlagOnePacket || n.Timeout != 0 || n.Netmask != 32 {
		t.Errorf("normalized %+v", n)
	}
	if NewService(tcp("192.0.2.1:80"), "").normalized().Scheduler != DefaultScheduler {
		t.Error("no default scheduler")
	}
	p := NewService(tcp("[2001:db8::1]:80"), "rr")
	p.SetPersistence(2500*time.Millisecond, 0)
	if n := p.normalized(); n.Timeout != 3*time.Second || n.Netmask != 128 {
		t.Errorf("normalized %+v", n)
	}
	p.SetPersistence(0, 64)
	if p.Persistent() || p.Timeout != 0 {
		t.Error("a zero timeout left the service persistent")
	}
}

func TestValidate(t *testing.T) {
	ok := svc(tcp("192.0.2.1:80"), "rr", "198.51.100.1:80")
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	fw := svc(FWMarkKey(IPv6, 3), "rr", "[2001:db8::1]:0")
	if err := fw.Validate(); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*Service)) Service {
		s := ok.Clone()
		f(&s)
		return s
	}
	put := func(d Destination) func(*Service) { return func(s *Service) { s.Put(d) } }
	tests := []struct {
		name string
		s    Service
		want string
	}{
		{"port 0 without persistence", svc(tcp("192.0.2.1:0"), "rr"), "needs persistence"},
		{"v6 real in v4 service", mod(put(NewDestination(addr("2001:db8::1"), 80, 1))), "is not ipv4"},
		{"port remap in DR", mod(put(NewDestination(addr("198.51.100.2"), 8080, 1))), "cannot change the port"},
		{"weight too big", mod(put(NewDestination(addr("198.51.100.2"), 80, 70000))), "out of range 0-65535"},
		{"thresholds", mod(put(Destination{Key: DestKey{addr("198.51.100.2"), 80}, LowerThreshold: 5})), "lower threshold 5 above upper threshold 0"},
		{"persistence too short", mod(func(s *Service) { s.SetPersistence(time.Millisecond, 0) }), "under 1s"},
		{"netmask too long", mod(func(s *Service) { s.SetPersistence(time.Minute, 33) }), "/33 out of range"},
		{"no address", Service{Key: ServiceKey{Family: IPv4, Protocol: TCP, Port: 80}}, "no virtual address"},
		{"bad protocol", Service{Key: ServiceKey{Family: IPv4, Protocol: 1, Addr: addr("192.0.2.1"), Port: 80}}, "unsupported protocol"},
		{"wrong family", Service{Key: ServiceKey{Family: IPv6, Protocol: TCP, Addr: addr("192.0.2.1"), Port: 80}}, "is not ipv6"},
		{"fwmark with port", Service{Key: ServiceKey{Family: IPv4, FWMark: 1, Port: 80}}, "fwmark service has no"},
		{"bad scheduler", svc(tcp("192.0.2.1:80"), "r r"), "invalid scheduler"},
	}
	for _, tt := range tests {
		err := tt.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestFlagsAndForwardStrings(t *testing.T) {
	if got := (FlagPersistent | FlagHashed | FlagSched2 | 0x100).String(); got != "persistent,hashed,flag-2,0x100" {
		t.Errorf("flags %q", got)
	}
	for f, want := range map[Forward]string{ForwardDR: "Route", ForwardMasq: "Masq", ForwardTunnel: "Tunnel", ForwardLocal: "Local", ForwardBypass: "Bypass"} {
		if f.String() != want || forwardFromKernel(f.kernelValue()) != f {
			t.Errorf("forward %d: %q, kernel round trip %v", f, f.String(), forwardFromKernel(f.kernelValue()))
		}
	}
	if netmaskString(20) != "255.255.240.0" || netmaskString(0) != "0.0.0.0" {
		t.Error("netmaskString")
	}
}
