package admission

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// kernelNS returns a throwaway network namespace for the kernel's
// nf_tables (the build machines' kernel has it; the VM lab tests the
// packets, TestAdmission in tests/e2e).
func kernelNS(t testing.TB) netns.NsHandle {
	t.Helper()
	privileged.Require(t, privileged.NetNS("to program nf_tables in a network namespace of its own"))
	ns, err := netnsutil.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// v6Prefixes returns n distinct, non-adjacent /64s of 2001:db8::/32.
func v6Prefixes(n int) []netip.Prefix {
	ps := make([]netip.Prefix, n)
	for i := range ps {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0x80 | byte(i>>23), byte(i >> 15), byte(i >> 7), byte(i<<1) & 0xfe}
		ps[i] = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	return ps
}

func tableNames(t *testing.T) []string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range ts {
		out = append(out, fmt.Sprintf("%d/%s", x.Family, x.Name))
	}
	slices.Sort(out)
	return out
}

// TestNFTKernel programs the kernel's nf_tables: the table goes in, is
// replaced (20,000 prefixes in one batch: 40 messages of elements, a
// batch of about 1.6 MB, eight times the default socket buffer), read and
// removed, and a
// foreign table stays through it all.
func TestNFTKernel(t *testing.T) {
	ns := kernelNS(t)
	ctx := context.Background()
	err := netnsutil.Run(ns, func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		foreign := c.AddTable(&nftables.Table{Name: "foreign", Family: nftables.TableFamilyIPv4})
		c.AddChain(&nftables.Chain{Name: "c", Table: foreign, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
		if err := c.Flush(); err != nil {
			return err
		}
		before := tableNames(t)

		var k NFT
		if err := k.Delete(ctx); err != nil {
			return fmt.Errorf("delete with no table: %w", err)
		}
		svc := Service{Name: "web", Family: 6, Protocol: "tcp", VIP: netip.MustParseAddr("2001:db8::10"), Port: 443,
			Allow:       []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")},
			Deny:        v6Prefixes(100),
			SourceRate:  &SourceRate{Rate: Rate{Count: 10, Per: time.Second, Burst: 5}, PrefixV4: 32, PrefixV6: 64},
			ServiceRate: &Rate{Count: 1000, Per: time.Second, Burst: 100}}
		p, err := Build(Config{Services: []Service{svc}})
		if err != nil {
			return err
		}
		if err := k.Replace(ctx, p); err != nil {
			return fmt.Errorf("first replace: %w", err)
		}
		counters, err := k.Counters(ctx)
		if err != nil {
			return err
		}
		if len(counters) != 4 {
			return fmt.Errorf("counters %v, want the service's four", counters)
		}
		if n, err := k.SetSize(ctx, MeterName("web")); err != nil || n != 0 {
			return fmt.Errorf("meter: %d, %v", n, err)
		}
		// More than one message's worth of elements and more than the
		// default socket buffer, in one batch.
		svc.Deny = v6Prefixes(20000)
		if p, err = Build(Config{Services: []Service{svc}}); err != nil {
			return err
		}
		start := time.Now()
		if err := k.Replace(ctx, p); err != nil {
			return fmt.Errorf("replace with 20,000 prefixes: %w", err)
		}
		t.Logf("replaced the table with 20,000 prefixes in %v", time.Since(start))
		els, err := c.GetSetElements(&nftables.Set{Table: table(), Name: "deny_web"})
		if err != nil {
			return err
		}
		if len(els) != 40000 { // a start and an end per prefix
			return fmt.Errorf("deny_web holds %d elements, want 40000", len(els))
		}
		if got := tableNames(t); !slices.Contains(got, "1/dsrd") || !slices.Contains(got, "2/foreign") {
			return fmt.Errorf("tables %v", got)
		}
		if err := k.Delete(ctx); err != nil {
			return err
		}
		if got := tableNames(t); !slices.Equal(got, before) {
			return fmt.Errorf("after delete: tables %v, want %v", got, before)
		}
		if c, err := k.Counters(ctx); err != nil || len(c) != 0 {
			return fmt.Errorf("counters with no table: %v, %v", c, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkNFTReplace measures replacing the table (over an existing one)
// with 10,000 and 100,000 IPv6 prefixes, on the machine's own kernel.
func BenchmarkNFTReplace(b *testing.B) {
	ns := kernelNS(b)
	for _, n := range []int{10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			p, err := Build(Config{Services: []Service{{Name: "b", Family: 6, Protocol: "tcp",
				VIP: netip.MustParseAddr("2001:db8::1"), Port: 80, Deny: v6Prefixes(n)}}})
			if err != nil {
				b.Fatal(err)
			}
			err = netnsutil.Run(ns, func() error {
				for b.Loop() {
					if err := (NFT{}).Replace(context.Background(), p); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestNFTKernelTop drops real packets (UDP over lo, inside the
// namespace) by deny and by a per-source rate, and reads the offender
// set back: the kernel dumps each element with its counter, which
// google/nftables decodes, and Sources reports the dropped packets per
// source.
func TestNFTKernelTop(t *testing.T) {
	ns := kernelNS(t)
	ctx := context.Background()
	vip := netip.MustParseAddr("192.0.2.1")
	denied := netip.MustParseAddr("192.0.2.66")
	limited := netip.MustParseAddr("192.0.2.77")
	err := netnsutil.Run(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		for _, a := range []netip.Addr{vip, denied, limited} {
			if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: netlink.NewIPNet(a.AsSlice())}); err != nil {
				return fmt.Errorf("address %s: %w", a, err)
			}
		}
		svc := Service{Name: "dns", Family: 4, Protocol: "udp", VIP: vip, Port: 5353,
			Deny:       []netip.Prefix{netip.PrefixFrom(denied, 32)},
			SourceRate: &SourceRate{Rate: Rate{Count: 1, Per: time.Minute, Burst: 5}, PrefixV4: 32, PrefixV6: 128}}
		p, err := Build(Config{Services: []Service{svc}})
		if err != nil {
			return err
		}
		var k NFT
		if err := k.Replace(ctx, p); err != nil {
			return err
		}
		defer k.Delete(ctx)
		send := func(src netip.Addr, n int) error {
			// Unconnected: the port unreachable of the packets let
			// through fails no later write.
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: src.AsSlice()})
			if err != nil {
				return err
			}
			defer c.Close()
			for range n {
				if _, err := c.WriteToUDP([]byte("x"), &net.UDPAddr{IP: vip.AsSlice(), Port: 5353}); err != nil {
					return err
				}
			}
			return nil
		}
		// The denied source: 7 dropped; the limited one: 5 through, 20
		// dropped.
		if err := send(denied, 7); err != nil {
			return err
		}
		if err := send(limited, 25); err != nil {
			return err
		}
		srcs, err := k.Sources(ctx, TopName("dns"))
		if err != nil {
			return err
		}
		want := map[netip.Addr]uint64{denied: 7, limited: 20}
		if len(srcs) != len(want) {
			return fmt.Errorf("offenders %+v, want %v", srcs, want)
		}
		for _, s := range srcs {
			if want[s.Source] != s.Packets || s.Expires <= 0 || s.Expires > TopTimeout {
				return fmt.Errorf("offenders %+v, want %v", srcs, want)
			}
		}
		t.Logf("offenders read back: %+v", srcs)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
