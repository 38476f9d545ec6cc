package vrrp

import (
	"errors"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func newTestOwner(t *testing.T, k Kernel, rec *recorder, vips ...VIP) *Owner {
	t.Helper()
	log, _ := testLogger(t)
	o, err := NewOwner(vips, k, rec.announce, log)
	if err != nil {
		t.Fatalf("NewOwner: %v", err)
	}
	return o
}

func TestOwnerAcquireRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		k.SetAddrs("eth0", pfx("192.0.2.1/24"))
		rec := newRecorder()
		o := newTestOwner(t, k, rec,
			vip("2001:db8::100", "eth0", once()),
			vip("203.0.113.10", "eth0", once()),
		)

		if err := o.Acquire(ctx); err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		synctest.Wait()
		wantOps(t, k,
			"ip addr add 203.0.113.10/32 dev eth0 label eth0:dsrd",
			"ip addr add 2001:db8::100/128 dev eth0 nodad preferred_lft 0",
		)
		wantState(t, k, "eth0 up 192.0.2.1/24 203.0.113.10/32 2001:db8::100/128\n")
		sends := rec.take()
		if len(sends) != 2 || !strings.Contains(strings.Join(sends, ","), "0s eth0 203.0.113.10") ||
			!strings.Contains(strings.Join(sends, ","), "0s eth0 2001:db8::100") {
			t.Fatalf("announcements after Acquire = %q, want one of each vip at 0s", sends)
		}
		if got := len(o.Held()); got != 2 || !o.Holding() {
			t.Fatalf("held %d vips, holding %v; want 2, true", got, o.Holding())
		}

		// Idempotent: nothing to do, nothing announced again.
		if err := o.Acquire(ctx); err != nil {
			t.Fatalf("second Acquire: %v", err)
		}
		synctest.Wait()
		wantOps(t, k)
		wantLines(t, "announcements after a second Acquire", rec.take())

		if err := o.Release(ctx); err != nil {
			t.Fatalf("Release: %v", err)
		}
		wantOps(t, k,
			"ip addr del 203.0.113.10/32 dev eth0",
			"ip addr del 2001:db8::100/128 dev eth0",
		)
		wantState(t, k, "eth0 up 192.0.2.1/24\n")
		if len(o.Held()) != 0 || o.Holding() {
			t.Fatalf("after Release: held %v, holding %v", o.Held(), o.Holding())
		}
		// Releasing twice does nothing.
		if err := o.Release(ctx); err != nil {
			t.Fatalf("second Release: %v", err)
		}
		wantOps(t, k)
	})
}

func TestOwnerAcquireRepairs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		rec := newRecorder()
		o := newTestOwner(t, k, rec, vip("203.0.113.10", "eth0", once()), vip("203.0.113.11", "eth0", once()))
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k.ResetCalls()
		rec.take()

		// Someone removes a VIP by hand; the next Acquire puts it back and
		// announces it again, and only it.
		k.SetAddrs("eth0", pfx("203.0.113.11/32"))
		time.Sleep(10 * time.Second)
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		wantOps(t, k, "ip addr add 203.0.113.10/32 dev eth0 label eth0:dsrd")
		wantLines(t, "announcements", rec.take(), "10s eth0 203.0.113.10")
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOwnerAdoptsPresentVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		k.SetAddrs("eth0", pfx("203.0.113.10/32"))
		rec := newRecorder()
		o := newTestOwner(t, k, rec, vip("203.0.113.10", "eth0", once()))
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// Already there: not added, but announced (the segment may still
		// point at the previous owner).
		wantOps(t, k)
		wantLines(t, "announcements", rec.take(), "0s eth0 203.0.113.10")
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
		// Deleted whatever its label: one added by hand has none of
		// dsrd's, and a delete naming eth0:dsrd would leave it in place.
		wantOps(t, k, "ip addr del 203.0.113.10/32 dev eth0")
		wantState(t, k, "eth0 up\n")
	})
}

func TestOwnerAcquirePartialFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		k.FailOn("ip addr add 203.0.113.11/32 dev eth0 label eth0:dsrd", syscall.EPERM)
		rec := newRecorder()
		o := newTestOwner(t, k, rec,
			vip("203.0.113.10", "eth0", once()),
			vip("203.0.113.11", "eth0", once()),
			vip("203.0.113.12", "eth9", once()),
		)
		err := o.Acquire(ctx)
		synctest.Wait()
		if !errors.Is(err, syscall.EPERM) || !errors.Is(err, ErrNoInterface) {
			t.Fatalf("Acquire error = %v, want EPERM and ErrNoInterface joined", err)
		}
		// It tried every VIP and holds the one it could add.
		wantOps(t, k,
			"ip addr add 203.0.113.10/32 dev eth0 label eth0:dsrd",
			"ip addr add 203.0.113.11/32 dev eth0 label eth0:dsrd",
		)
		held := o.Held()
		if len(held) != 1 || held[0].Address != netip.MustParseAddr("203.0.113.10") {
			t.Fatalf("held = %v, want only 203.0.113.10", held)
		}
		wantLines(t, "announcements", rec.take(), "0s eth0 203.0.113.10")
		if err := o.Release(ctx); err != nil {
			t.Fatalf("Release with a missing interface: %v", err)
		}
	})
}

func TestOwnerReleaseStaleOnlyConfigured(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		k.SetAddrs("eth0",
			pfx("192.0.2.1/24"),      // the interface's own address
			pfx("203.0.113.10/32"),   // a configured VIP left behind
			pfx("203.0.113.99/32"),   // not configured: someone else's
			pfx("203.0.113.11/24"),   // a configured VIP's address, but not as a /32: not ours
			pfx("2001:db8::100/128"), // a configured VIP left behind
			pfx("2001:db8::1/64"),
		)
		rec := newRecorder()
		o := newTestOwner(t, k, rec,
			vip("203.0.113.10", "eth0", once()),
			vip("203.0.113.11", "eth0", once()),
			vip("2001:db8::100", "eth0", once()),
			vip("203.0.113.20", "eth1", once()), // interface missing: nothing there
		)
		removed, err := o.ReleaseStale(ctx)
		if err != nil {
			t.Fatalf("ReleaseStale: %v", err)
		}
		if len(removed) != 2 {
			t.Fatalf("removed %v, want the two left-behind VIPs", removed)
		}
		wantOps(t, k,
			"ip addr del 203.0.113.10/32 dev eth0",
			"ip addr del 2001:db8::100/128 dev eth0",
		)
		wantState(t, k, "eth0 up 192.0.2.1/24 203.0.113.11/24 203.0.113.99/32 2001:db8::1/64\n")
		wantLines(t, "announcements", rec.take())
	})
}

func TestOwnerReleaseStaleKeepsHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		rec := newRecorder()
		o := newTestOwner(t, k, rec, vip("203.0.113.10", "eth0", once()))
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		k.ResetCalls()
		if removed, err := o.ReleaseStale(ctx); err != nil || len(removed) != 0 {
			t.Fatalf("ReleaseStale while holding = %v, %v; want nothing", removed, err)
		}
		wantOps(t, k)
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOwnerUpdateWhileHolding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0", "eth1")
		rec := newRecorder()
		keep := Announce{Count: 1, Refresh: 10 * time.Second}
		o := newTestOwner(t, k, rec,
			vip("203.0.113.10", "eth0", once()), // removed by the update
			vip("203.0.113.11", "eth0", keep),   // kept, refresh changed
			vip("203.0.113.13", "eth0", once()), // moved to eth1
		)
		if err := o.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		k.ResetCalls()
		rec.take()

		time.Sleep(5 * time.Second)
		err := o.Update(ctx, []VIP{
			vip("203.0.113.11", "eth0", Announce{Count: 1, Refresh: 20 * time.Second}),
			vip("203.0.113.12", "eth0", once()),
			vip("203.0.113.13", "eth1", once()),
		})
		if err != nil {
			t.Fatalf("Update: %v", err)
		}
		synctest.Wait()
		// New ones added (and announced) before the gone ones are removed.
		wantOps(t, k,
			"ip addr add 203.0.113.12/32 dev eth0 label eth0:dsrd",
			"ip addr add 203.0.113.13/32 dev eth1 label eth1:dsrd",
			"ip addr del 203.0.113.10/32 dev eth0",
			"ip addr del 203.0.113.13/32 dev eth0",
		)
		wantState(t, k, "eth0 up 203.0.113.11/32 203.0.113.12/32\neth1 up 203.0.113.13/32\n")
		// The kept VIP's refresh restarted with the new period and no new
		// burst; the new ones had their burst.
		time.Sleep(20 * time.Second)
		synctest.Wait()
		wantLines(t, "announcements", rec.take(),
			"5s eth0 203.0.113.12",
			"5s eth1 203.0.113.13",
			"25s eth0 203.0.113.11",
		)
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestOwnerUpdateWhileNotHolding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		k := NewFakeKernel("eth0")
		rec := newRecorder()
		o := newTestOwner(t, k, rec, vip("203.0.113.10", "eth0", once()))
		// Both an old and a new configured VIP were left on the interface.
		k.SetAddrs("eth0", pfx("192.0.2.1/24"), pfx("203.0.113.10/32"), pfx("203.0.113.12/32"))
		if err := o.Update(ctx, []VIP{vip("203.0.113.12", "eth0", once())}); err != nil {
			t.Fatalf("Update: %v", err)
		}
		synctest.Wait()
		wantOps(t, k,
			"ip addr del 203.0.113.12/32 dev eth0",
			"ip addr del 203.0.113.10/32 dev eth0",
		)
		wantLines(t, "announcements", rec.take())
		if o.Holding() {
			t.Fatal("Update while not holding started holding")
		}
	})
}

func TestOwnerUpdateInvalidChangesNothing(t *testing.T) {
	k := NewFakeKernel("eth0")
	o := newTestOwner(t, k, newRecorder(), vip("203.0.113.10", "eth0", once()))
	err := o.Update(t.Context(), []VIP{vip("203.0.113.10", "eth0", once()), vip("203.0.113.10", "eth1", once())})
	if err == nil || !strings.Contains(err.Error(), "configured twice") {
		t.Fatalf("Update with a duplicate = %v, want an error", err)
	}
	if v := o.VIPs(); len(v) != 1 || v[0].Interface != "eth0" {
		t.Fatalf("VIPs after a rejected update = %v", v)
	}
	wantOps(t, k)
}

func TestNewOwnerValidates(t *testing.T) {
	k := NewFakeKernel("eth0")
	tests := []struct {
		name string
		vips []VIP
		want string
	}{
		{"no address", []VIP{{Interface: "eth0"}}, "without an address"},
		{"no interface", []VIP{vip("203.0.113.10", "", once())}, "no interface"},
		{"duplicate", []VIP{vip("203.0.113.10", "eth0", once()), vip("203.0.113.10", "eth1", once())}, "configured twice"},
		{"multicast", []VIP{vip("ff02::1", "eth0", once())}, "multicast"},
		{"link-local", []VIP{vip("fe80::1", "eth0", once())}, "link-local"},
		{"ipv4 link-local", []VIP{vip("169.254.10.10", "eth0", once())}, "link-local"},
		{"broadcast", []VIP{vip("255.255.255.255", "eth0", once())}, "broadcast"},
		{"zone", []VIP{{Address: netip.MustParseAddr("2001:db8::1%eth0"), Interface: "eth0"}}, "zone"},
		{"negative count", []VIP{vip("203.0.113.10", "eth0", Announce{Count: -1})}, "negative announce count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewOwner(tt.vips, k, newRecorder().announce, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewOwner = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAnnounceDefaults(t *testing.T) {
	if DefaultInterval <= time.Second {
		t.Fatalf("DefaultInterval %v must exceed the 1 s neighbour locktime", DefaultInterval)
	}
	o := newTestOwner(t, NewFakeKernel("eth0"), newRecorder(),
		vip("::ffff:203.0.113.10", "eth0", Announce{}),
		vip("203.0.113.11", "eth0", Announce{Refresh: -5 * time.Second}),
	)
	v := o.VIPs()
	want := Announce{Count: DefaultCount, Interval: DefaultInterval, Refresh: DefaultRefresh}
	if v[0].Address != netip.MustParseAddr("203.0.113.10") || v[0].Announce != want {
		t.Fatalf("defaults: got %+v, want address unmapped and %+v", v[0], want)
	}
	if v[1].Announce.Refresh != RefreshOff {
		t.Fatalf("negative refresh = %v, want RefreshOff", v[1].Announce.Refresh)
	}
	if got := v[0].Prefix(); got != pfx("203.0.113.10/32") {
		t.Fatalf("Prefix = %v", got)
	}
	if got := vip("2001:db8::100", "eth0", once()).Prefix(); got != pfx("2001:db8::100/128") {
		t.Fatalf("Prefix = %v", got)
	}
}

func TestDSRDLabel(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"eth0", "eth0:dsrd"},
		{"enp1s0f1", "enp1s0f1:dsrd"},
		{"enp129s0f1np1", ""}, // 18 characters with the suffix: no label
	} {
		if got := dsrdLabel(tt.in); got != tt.want {
			t.Errorf("dsrdLabel(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
