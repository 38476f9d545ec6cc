package vrrp

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
)

// The burst and the refresh follow the configured schedule, in the
// bubble's fake time: sends at 0, Interval, 2*Interval, then every Refresh
// after the burst, and none after Release.
func TestAnnounceSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		rec := newRecorder()
		a := Announce{Count: 3, Interval: 1500 * time.Millisecond, Refresh: 10 * time.Second}
		o := newTestOwner(t, k, rec, vip("203.0.113.10", "eth0", a), vip("2001:db8::100", "eth0", a))
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(35 * time.Second)
		synctest.Wait()
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
		wantLines(t, "announcements", rec.take(),
			"0s eth0 2001:db8::100", "0s eth0 203.0.113.10",
			"1.5s eth0 2001:db8::100", "1.5s eth0 203.0.113.10",
			"3s eth0 2001:db8::100", "3s eth0 203.0.113.10",
			"13s eth0 2001:db8::100", "13s eth0 203.0.113.10",
			"23s eth0 2001:db8::100", "23s eth0 203.0.113.10",
			"33s eth0 2001:db8::100", "33s eth0 203.0.113.10",
		)
		// Release stopped the refresh.
		time.Sleep(time.Hour)
		synctest.Wait()
		wantLines(t, "announcements after Release", rec.take())
	})
}

// Release in the middle of a burst stops it at once.
func TestAnnounceReleaseStopsBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		rec := newRecorder()
		o := newTestOwner(t, NewFakeKernel("eth0"), rec,
			vip("203.0.113.10", "eth0", Announce{Count: 5, Interval: 2 * time.Second}))
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		wantLines(t, "announcements", rec.take(), "0s eth0 203.0.113.10", "2s eth0 203.0.113.10")
	})
}

// A failing send is logged with the VIP and interface and does not stop
// the burst or the refresh.
func TestAnnounceFailureContinues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		log, buf := testLogger(t)
		rec := newRecorder()
		rec.fail = errors.New("boom")
		vp := vip("203.0.113.10", "eth0", Announce{Count: 2, Interval: 2 * time.Second, Refresh: 5 * time.Second}.withDefaults())
		a := startAnnouncer(ctx, rec.announce, log, vp, true)
		time.Sleep(8 * time.Second)
		synctest.Wait()
		// Cancelling the context also ends the announcer.
		cancel()
		<-a.done
		wantLines(t, "announcements", rec.take(), "0s eth0 203.0.113.10", "2s eth0 203.0.113.10", "7s eth0 203.0.113.10")
		if got := strings.Count(buf.String(), `msg="announcement failed" vip=203.0.113.10 interface=eth0`); got != 3 {
			t.Fatalf("%d failure logs, want 3:\n%s", got, buf.String())
		}
	})
}

func TestGARPPackets(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	ip := netip.MustParseAddr("192.0.2.100")
	ps, err := garpPackets(mac, ip)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("%d packets, want request and reply", len(ps))
	}
	req, rep := ps[0], ps[1]
	zero := net.HardwareAddr{0, 0, 0, 0, 0, 0}
	if req.Operation != arp.OperationRequest || req.SenderIP != ip || req.TargetIP != ip ||
		!bytes.Equal(req.SenderHardwareAddr, mac) || !bytes.Equal(req.TargetHardwareAddr, zero) {
		t.Errorf("request form = %+v", req)
	}
	if rep.Operation != arp.OperationReply || rep.SenderIP != ip || rep.TargetIP != ip ||
		!bytes.Equal(rep.SenderHardwareAddr, mac) || !bytes.Equal(rep.TargetHardwareAddr, mac) {
		t.Errorf("reply form = %+v", rep)
	}
	// On the wire (RFC 826): htype 1, ptype 0x0800, hlen 6, plen 4, op.
	b, _ := req.MarshalBinary()
	if want := []byte{0, 1, 8, 0, 6, 4, 0, 1}; !bytes.Equal(b[:8], want) {
		t.Errorf("request header % x, want % x", b[:8], want)
	}
	if _, err := garpPackets(mac, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("garpPackets accepted an IPv6 address")
	}
}

func TestUnsolicitedNA(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	ip := netip.MustParseAddr("2001:db8::100")
	b, err := ndp.MarshalMessage(unsolicitedNA(mac, ip))
	if err != nil {
		t.Fatal(err)
	}
	// ICMPv6 type 136; flags: R=0x80 S=0x40 O=0x20.
	if b[0] != 136 {
		t.Fatalf("type %d, want 136", b[0])
	}
	if flags := b[4]; flags != 0x20 {
		t.Errorf("flags %#x, want override only (0x20)", flags)
	}
	if got, _ := netip.AddrFromSlice(b[8:24]); got != ip {
		t.Errorf("target %v, want %v", got, ip)
	}
	// Target link-layer address option: type 2, length 1 (8 bytes), MAC.
	if want := append([]byte{2, 1}, mac...); !bytes.Equal(b[24:32], want) {
		t.Errorf("option % x, want % x", b[24:32], want)
	}
}
