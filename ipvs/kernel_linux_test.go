package ipvs

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

func TestMobyConversionRoundTrip(t *testing.T) {
	svcs := []Service{
		func() Service {
			s := NewService(tcp("192.0.2.1:80"), "rr")
			s.SetPersistence(600*time.Second, 24)
			return s
		}(),
		func() Service {
			s := NewService(udp("[2001:db8::1]:53"), "mh")
			s.Flags |= FlagMHPort | FlagOnePacket
			s.SetPersistence(300*time.Second, 64)
			return s
		}(),
		NewService(FWMarkKey(IPv6, 9), "wlc"),
		NewService(NewServiceKey(SCTP, ap("192.0.2.3:9")), "lc"),
	}
	for _, s := range svcs {
		s = s.normalized()
		got, err := fromMobyService(toMobyService(s))
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != s.Key || !got.sameConfig(s) || got.Netmask != s.Netmask {
			t.Errorf("%s: round trip gave %+v, want %+v", s.Key, got, s)
		}
	}
	d := NewDestination(addr("198.51.100.1"), 80, 65535)
	d.Forward, d.UpperThreshold, d.LowerThreshold = ForwardTunnel, 10, 5
	got, err := fromMobyDest(toMobyDest(d))
	if err != nil || got != d {
		t.Errorf("destination round trip: %+v, %v; want %+v", got, err, d)
	}
}

func TestIPv4NetmaskOnTheWire(t *testing.T) {
	s := NewService(tcp("192.0.2.1:80"), "rr")
	s.SetPersistence(time.Minute, 24)
	// The kernel reads the attribute as be32: the bytes must be ff ff ff 00.
	m := toMobyService(s.normalized()).Netmask
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], m)
	if b != [4]byte{0xff, 0xff, 0xff, 0} {
		t.Errorf("netmask bytes %x", b)
	}
	if prefixLen(0xffff0f00) != -1 || prefixLen(0) != 0 || prefixLen(0xffffffff) != 32 {
		t.Error("prefixLen")
	}
}

// TestOpenNetlinkWithoutIPVS runs where the kernel has no IPVS (the build
// machines): opening must fail with the clear message, not succeed
// silently as moby/ipvs does.
func TestOpenNetlinkWithoutIPVS(t *testing.T) {
	if Probe() == nil {
		t.Skip("this kernel has IPVS; the VM tests cover OpenNetlink")
	}
	_, err := OpenNetlink(context.Background(), "")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("OpenNetlink: %v, want ErrUnavailable", err)
	}
	if want := "IPVS is not available in this kernel: load the ip_vs module (modprobe ip_vs)"; err.Error() != want {
		t.Errorf("message %q", err)
	}
}
