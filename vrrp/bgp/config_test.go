package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	med := uint32(10)
	return Config{
		ASN:         64513,
		RouterID:    netip.MustParseAddr("192.0.2.2"),
		Communities: []string{"64513:100", "no-export"},
		MED:         &med,
		Peers: []Peer{
			{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64512},
			{
				Address: netip.MustParseAddr("2001:db8::1"), ASN: 64513, Port: 1179,
				Password: "secret", HoldTime: 30 * time.Second, KeepaliveTime: 10 * time.Second,
				SourceAddress: netip.MustParseAddr("2001:db8::2"),
				BFD:           &BFD{MinRx: 300 * time.Millisecond, MinTx: 300 * time.Millisecond, Multiplier: 3},
			},
		},
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name  string
		edit  func(c *Config)
		field string
		want  string // in the message
	}{
		{"asn zero", func(c *Config) { c.ASN = 0 }, "asn", "required"},
		{"asn AS_TRANS", func(c *Config) { c.ASN = 23456 }, "asn", "AS_TRANS"},
		{"asn max", func(c *Config) { c.ASN = 4294967295 }, "", ""},
		{"router id missing", func(c *Config) { c.RouterID = netip.Addr{} }, "router_id", "required"},
		{"router id IPv6", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::2") }, "router_id", "not an IPv4"},
		{"router id mapped", func(c *Config) { c.RouterID = netip.MustParseAddr("::ffff:192.0.2.2") }, "router_id", "not an IPv4"},
		{"router id unspecified", func(c *Config) { c.RouterID = netip.MustParseAddr("0.0.0.0") }, "router_id", "unicast"},
		{"router id broadcast", func(c *Config) { c.RouterID = netip.MustParseAddr("255.255.255.255") }, "router_id", "unicast"},
		{"community bad", func(c *Config) { c.Communities = []string{"1:2", "x"} }, "communities[1]", "asn:value"},
		{"community range", func(c *Config) { c.Communities = []string{"65536:1"} }, "communities[0]", "0 to 65535"},
		{"community graceful name", func(c *Config) { c.Communities = []string{"graceful-shutdown"} }, "communities[0]", "GRACEFUL_SHUTDOWN"},
		{"community graceful number", func(c *Config) { c.Communities = []string{"65535:0"} }, "communities[0]", "GRACEFUL_SHUTDOWN"},
		{"community well-known", func(c *Config) {
			c.Communities = []string{"no-export", "no-advertise", "no-export-subconfed", "no-peer", "blackhole"}
		}, "", ""},
		{"no peers", func(c *Config) { c.Peers = nil }, "peers", "at least one"},
		{"peer address missing", func(c *Config) { c.Peers[1].Address = netip.Addr{} }, "peers[1].address", "required"},
		{"peer duplicate", func(c *Config) { c.Peers[1].Address = c.Peers[0].Address; c.Peers[1].SourceAddress = netip.Addr{} }, "peers[1].address", "peers[0]"},
		{"peer link-local v6", func(c *Config) {
			c.Peers[1].Address = netip.MustParseAddr("fe80::1")
			c.Peers[1].SourceAddress = netip.Addr{}
		}, "peers[1].address", "link-local"},
		{"peer link-local v4", func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("169.254.0.1") }, "peers[0].address", "link-local"},
		{"peer zoned", func(c *Config) { c.Peers[1].Address = netip.MustParseAddr("2001:db8::1%eth0") }, "peers[1].address", "zone"},
		{"peer unspecified", func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("0.0.0.0") }, "peers[0].address", "unspecified"},
		{"peer multicast", func(c *Config) {
			c.Peers[1].Address = netip.MustParseAddr("ff02::1")
			c.Peers[1].SourceAddress = netip.Addr{}
		}, "peers[1].address", "unicast"},
		{"peer mapped", func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("::ffff:192.0.2.1") }, "peers[0].address", "IPv4-mapped"},
		{"peer asn zero", func(c *Config) { c.Peers[0].ASN = 0 }, "peers[0].asn", "required"},
		{"peer asn trans", func(c *Config) { c.Peers[0].ASN = 23456 }, "peers[0].asn", "AS_TRANS"},
		{"password long", func(c *Config) { c.Peers[0].Password = strings.Repeat("x", 81) }, "peers[0].password", "at most 80"},
		{"password 80", func(c *Config) { c.Peers[0].Password = strings.Repeat("x", 80) }, "", ""},
		{"hold fraction", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, "peers[0].hold_time", "whole seconds"},
		{"hold short", func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, "peers[0].hold_time", "3s to 65535s"},
		{"hold long", func(c *Config) { c.Peers[0].HoldTime = 65536 * time.Second }, "peers[0].hold_time", "3s to 65535s"},
		{"hold negative", func(c *Config) { c.Peers[0].HoldTime = -3 * time.Second }, "peers[0].hold_time", "3s to 65535s"},
		{"hold 3s", func(c *Config) { c.Peers[0].HoldTime = 3 * time.Second }, "", ""},
		{"keepalive fraction", func(c *Config) { c.Peers[1].KeepaliveTime = 1500 * time.Millisecond }, "peers[1].keepalive_time", "whole seconds"},
		{"keepalive negative", func(c *Config) { c.Peers[1].KeepaliveTime = -time.Second }, "peers[1].keepalive_time", "whole seconds"},
		{"keepalive not below hold", func(c *Config) { c.Peers[1].KeepaliveTime = 30 * time.Second }, "peers[1].keepalive_time", "below the hold time"},
		{"keepalive not below default hold", func(c *Config) { c.Peers[0].KeepaliveTime = 9 * time.Second }, "peers[0].keepalive_time", "below the hold time 9s"},
		{"source family", func(c *Config) { c.Peers[1].SourceAddress = netip.MustParseAddr("192.0.2.2") }, "peers[1].source_address", "family"},
		{"source link-local", func(c *Config) { c.Peers[1].SourceAddress = netip.MustParseAddr("fe80::2") }, "peers[1].source_address", "link-local"},
		{"source unspecified", func(c *Config) { c.Peers[1].SourceAddress = netip.MustParseAddr("::") }, "peers[1].source_address", "unspecified"},
		{"multihop ibgp", func(c *Config) { c.Peers[1].EBGPMultihop = 2; c.Peers[1].BFD = nil }, "peers[1].ebgp_multihop", "only for eBGP"},
		{"multihop ebgp", func(c *Config) { c.Peers[0].EBGPMultihop = 2 }, "", ""},
		{"multihop with bfd", func(c *Config) {
			c.Peers[0].EBGPMultihop = 2
			c.Peers[0].BFD = &BFD{MinRx: time.Second, MinTx: time.Second, Multiplier: 3}
		}, "peers[0].bfd", "single-hop"},
		{"bfd min_rx short", func(c *Config) { c.Peers[1].BFD.MinRx = 49 * time.Millisecond }, "peers[1].bfd.min_rx", "50ms to 10s"},
		{"bfd min_rx long", func(c *Config) { c.Peers[1].BFD.MinRx = 11 * time.Second }, "peers[1].bfd.min_rx", "50ms to 10s"},
		{"bfd min_tx short", func(c *Config) { c.Peers[1].BFD.MinTx = 0 }, "peers[1].bfd.min_tx", "50ms to 10s"},
		{"bfd min_tx sub-microsecond", func(c *Config) { c.Peers[1].BFD.MinTx = 100*time.Millisecond + 1 }, "peers[1].bfd.min_tx", "microsecond"},
		{"bfd multiplier", func(c *Config) { c.Peers[1].BFD.Multiplier = 0 }, "peers[1].bfd.multiplier", "1 to 255"},
		{"bfd bounds", func(c *Config) {
			*c.Peers[1].BFD = BFD{MinRx: 50 * time.Millisecond, MinTx: 10 * time.Second, Multiplier: 255}
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := cloneConfig(validConfig())
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Validate: %v (%T), want a *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("field %q, want %q (%v)", fe.Field, tt.field, err)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("error %q, want %q: ...%q...", err, tt.field, tt.want)
			}
			if errors.Unwrap(err) != fe.Err {
				t.Errorf("Unwrap does not return Err")
			}
			if _, nerr := New(nil, c); !errors.As(nerr, &fe) {
				t.Errorf("New: %v, want the *FieldError", nerr)
			}
		})
	}
}

func TestPeerDefaults(t *testing.T) {
	p := Peer{}
	if p.port() != DefaultPort || p.holdTime() != DefaultHoldTime || p.keepaliveTime() != 3*time.Second {
		t.Errorf("defaults: port %d hold %s keepalive %s", p.port(), p.holdTime(), p.keepaliveTime())
	}
	p = Peer{Port: 1179, HoldTime: 10 * time.Second}
	if p.port() != 1179 || p.keepaliveTime() != 3*time.Second {
		t.Errorf("port %d keepalive %s", p.port(), p.keepaliveTime())
	}
	ap := apiPeer(validConfig().Peers[1])
	if ap.Bfd.RequiredMinimumReceive != 300000 || ap.Bfd.DesiredMinimumTxInterval != 300000 || ap.Bfd.DetectionMultiplier != 3 {
		t.Errorf("bfd %v", ap.Bfd)
	}
	if ap.Timers.Config.HoldTime != 30 || ap.Timers.Config.KeepaliveInterval != 10 || ap.Timers.Config.ConnectRetry != connectRetry {
		t.Errorf("timers %v", ap.Timers.Config)
	}
	if ap.Transport.RemotePort != 1179 || ap.Transport.LocalAddress != "2001:db8::2" || ap.Conf.AuthPassword != "secret" {
		t.Errorf("transport %v conf %v", ap.Transport, ap.Conf)
	}
	if len(ap.AfiSafis) != 1 || ap.AfiSafis[0].PrefixLimits.MaxPrefixes != MaxReceivedPrefixes || ap.AfiSafis[0].Config.Family.Afi.String() != "AFI_IP6" {
		t.Errorf("afi-safis %v", ap.AfiSafis)
	}
}

// FuzzValidate: no configuration panics Validate, New or the translation
// to gobgp's peers; what Validate accepts, New accepts, with the rules'
// guarantees holding.
func FuzzValidate(f *testing.F) {
	f.Add(uint32(64513), []byte{192, 0, 2, 2}, "64513:100", []byte{192, 0, 2, 1}, uint32(64512), uint16(0), "", int64(0), int64(0), []byte{}, uint8(0), int64(300e6), int64(300e6), uint8(3))
	f.Add(uint32(64513), []byte{192, 0, 2, 2}, "no-export", []byte{0x20, 1, 0xd, 0xb8, 15: 1}, uint32(64513), uint16(1179), "k", int64(30e9), int64(10e9), []byte{0x20, 1, 0xd, 0xb8, 15: 2}, uint8(0), int64(0), int64(0), uint8(0))
	f.Fuzz(func(t *testing.T, asn uint32, rid []byte, community string, addr []byte, peerASN uint32, port uint16, password string,
		hold, keepalive int64, src []byte, multihop uint8, minRx, minTx int64, mult uint8) {
		ridAddr, _ := netip.AddrFromSlice(rid)
		peerAddr, _ := netip.AddrFromSlice(addr)
		srcAddr, _ := netip.AddrFromSlice(src)
		p := Peer{
			Address: peerAddr, ASN: peerASN, Port: port, Password: password,
			HoldTime: time.Duration(hold), KeepaliveTime: time.Duration(keepalive),
			SourceAddress: srcAddr, EBGPMultihop: multihop,
		}
		if minRx != 0 || minTx != 0 || mult != 0 {
			p.BFD = &BFD{MinRx: time.Duration(minRx), MinTx: time.Duration(minTx), Multiplier: mult}
		}
		c := Config{ASN: asn, RouterID: ridAddr, Communities: []string{community}, Peers: []Peer{p}}
		err := c.Validate()
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field == "" {
				t.Fatalf("Validate: %v is not a *FieldError with a field", err)
			}
			return
		}
		if _, err := New(nil, c); err != nil {
			t.Fatalf("Validate accepts, New refuses: %v", err)
		}
		ap := apiPeer(p)
		h, ka := ap.Timers.Config.HoldTime, ap.Timers.Config.KeepaliveInterval
		if h < 3 || h > 65535 || ka >= h || ka == 0 {
			t.Fatalf("hold %d keepalive %d from %v", h, ka, p)
		}
		if v, _ := ParseCommunity(community); v == CommunityGracefulShutdown {
			t.Fatalf("GRACEFUL_SHUTDOWN accepted: %q", community)
		}
		if ap.Bfd != nil && (ap.Bfd.RequiredMinimumReceive < 50000 || ap.Bfd.DesiredMinimumTxInterval > 10000000) {
			t.Fatalf("bfd %v", ap.Bfd)
		}
	})
}
