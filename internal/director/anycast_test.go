package director

import (
	"net/netip"
	"reflect"
	"testing"
	"time"
)

func TestDecideAnycast(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr("203.0.113.10")
	b := netip.MustParseAddr("2001:db8::10")
	c := netip.MustParseAddr("203.0.113.9")
	ready := func() anycastInput {
		return anycastInput{
			Now:        t0,
			VIPs:       []anycastVIP{{Address: a, Serving: true}, {Address: b, Serving: true}, {Address: c, Serving: false}},
			Generation: 7, Applied: 7, GenerationSeen: t0.Add(-time.Minute),
			Connected: true, PartitionHold: 15 * time.Second,
		}
	}
	all := func(cause string) map[netip.Addr]string {
		return map[netip.Addr]string{a: cause, b: cause, c: cause}
	}
	for _, tc := range []struct {
		name     string
		change   func(*anycastInput)
		announce []string
		withdraw map[netip.Addr]string
		graceful bool
	}{
		{"ready: every serving VIP, sorted, as host routes", func(*anycastInput) {},
			[]string{"203.0.113.10/32", "2001:db8::10/128"}, map[netip.Addr]string{c: withdrawNoQuorum}, false},
		{"nothing applied yet", func(in *anycastInput) { in.Applied = 0 },
			nil, all(withdrawStarting), false},
		{"a new generation not applied yet, within the grace", func(in *anycastInput) {
			in.Generation, in.GenerationSeen = 8, t0.Add(-convergeGrace+time.Millisecond)
		}, []string{"203.0.113.10/32", "2001:db8::10/128"}, map[netip.Addr]string{c: withdrawNoQuorum}, false},
		{"a new generation not applied for the grace", func(in *anycastInput) {
			in.Generation, in.GenerationSeen = 8, t0.Add(-convergeGrace)
		}, nil, all(withdrawNotConverged), false},
		{"cut off, within partition_hold", func(in *anycastInput) {
			in.Connected, in.DisconnectedSince = false, t0.Add(-15*time.Second+time.Millisecond)
		}, []string{"203.0.113.10/32", "2001:db8::10/128"}, map[netip.Addr]string{c: withdrawNoQuorum}, false},
		{"cut off for partition_hold", func(in *anycastInput) {
			in.Connected, in.DisconnectedSince = false, t0.Add(-15*time.Second)
		}, nil, all(withdrawPartitioned), false},
		{"partition_hold 0 withdraws at once", func(in *anycastInput) {
			in.Connected, in.DisconnectedSince, in.PartitionHold = false, t0, 0
		}, nil, all(withdrawPartitioned), false},
		{"draining: graceful phase", func(in *anycastInput) {
			in.Draining, in.DrainUntil = true, t0.Add(time.Second)
		}, []string{"203.0.113.10/32", "2001:db8::10/128"}, map[netip.Addr]string{c: withdrawNoQuorum}, true},
		{"drained", func(in *anycastInput) {
			in.Draining, in.DrainUntil = true, t0
		}, nil, all(withdrawDrained), false},
		{"own checks contradict the cluster's verdict on a real of b", func(in *anycastInput) {
			in.VIPs[1].Disagrees, in.VIPs[1].DisagreesSince = true, t0.Add(-disagreeGrace)
		}, []string{"203.0.113.10/32"}, map[netip.Addr]string{b: withdrawDisagrees, c: withdrawNoQuorum}, false},
		{"own checks contradict the verdict for less than the grace", func(in *anycastInput) {
			in.VIPs[1].Disagrees, in.VIPs[1].DisagreesSince = true, t0.Add(-disagreeGrace+time.Millisecond)
		}, []string{"203.0.113.10/32", "2001:db8::10/128"}, map[netip.Addr]string{c: withdrawNoQuorum}, false},
		{"draining with nothing to announce is not graceful", func(in *anycastInput) {
			in.Draining, in.DrainUntil = true, t0.Add(time.Second)
			in.VIPs = []anycastVIP{{Address: c}}
		}, nil, map[netip.Addr]string{c: withdrawNoQuorum}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ready()
			tc.change(&in)
			got := decideAnycast(in)
			var ann []string
			for _, p := range got.Announce {
				ann = append(ann, p.String())
			}
			if !reflect.DeepEqual(ann, tc.announce) {
				t.Errorf("announce %v, want %v", ann, tc.announce)
			}
			if !reflect.DeepEqual(got.Withdrawn, tc.withdraw) {
				t.Errorf("withdrawn %v, want %v", got.Withdrawn, tc.withdraw)
			}
			if got.Graceful != tc.graceful {
				t.Errorf("graceful %v, want %v", got.Graceful, tc.graceful)
			}
			for _, cause := range got.Withdrawn {
				if cause != withdrawNoQuorum && cause != withdrawDisagrees && got.Detail == "" {
					t.Errorf("a director-wide withdrawal (%s) without a detail for the log", cause)
				}
			}
		})
	}
}
