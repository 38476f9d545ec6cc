//go:build vmbench

// Package admissionbench measures admission control in the VM lab (make
// bench-admission; docs/benchmarks.md, "Admission control"): the time to
// replace the dsrd nftables table with 10,000 and 100,000 prefixes, and
// the cost of the rules on the SYN path, as the time of a TCP connection
// attempt through IPVS with the table against without it, in the same
// run. It prints a table; it asserts nothing about speed.
package admissionbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/admission"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

var (
	vip6 = netip.MustParseAddr("2001:db8:113::30")
	// port has no listener on the reals: each attempt is a SYN through
	// the director and the real's reset straight back, so the director's
	// share of the round trip is as large as it gets.
	port uint16 = 9001
)

// prefixes returns n distinct, non-adjacent IPv6 /64s inside
// 2001:db8::/32 that do not hold the lab's addresses.
func prefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range n {
		a := [16]byte{0x20, 0x01, 0x0d, 0xb8, 0x80 | byte(i>>23), byte(i >> 15), byte(i >> 7), byte(i<<1) & 0xfe}
		out[i] = netip.PrefixFrom(netip.AddrFrom16(a), 64)
	}
	return out
}

func service(n int) admission.Service {
	return admission.Service{Name: "bench", Family: 6, Protocol: "tcp", VIP: vip6, Port: port,
		Deny:       prefixes(n),
		SourceRate: &admission.SourceRate{Rate: admission.Rate{Count: 1000000, Per: time.Second, Burst: 1000000}, PrefixV4: 32, PrefixV6: 128}}
}

func inDir1(t *testing.T, f func() error) {
	t.Helper()
	if err := lab.Do(lab.Dir1, f); err != nil {
		t.Fatal(err)
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestAdmissionBench(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	ctx := context.Background()
	rounds := envInt("DSRD_BENCH_ROUNDS", 5)
	attempts := envInt("DSRD_BENCH_ATTEMPTS", 1000)

	fmt.Printf("\nadmission control: replace the table (median of %d, each over the previous table)\n", rounds)
	fmt.Printf("%-10s %-8s %-12s %-12s %-12s\n", "prefixes", "family", "build", "replace", "max replace")
	for _, n := range []int{10000, 100000} {
		var builds, replaces []time.Duration
		for range rounds + 1 {
			start := time.Now()
			p, err := admission.Build(admission.Config{Services: []admission.Service{service(n)}})
			if err != nil {
				t.Fatal(err)
			}
			built := time.Now()
			inDir1(t, func() error { return admission.NFT{}.Replace(ctx, p) })
			builds, replaces = append(builds, built.Sub(start)), append(replaces, time.Since(built))
		}
		// The first replace creates the table; the others replace it.
		builds, replaces = builds[1:], replaces[1:]
		fmt.Printf("%-10d %-8s %-12s %-12s %-12s\n", n, "ipv6", median(builds).Round(time.Millisecond),
			median(replaces).Round(time.Millisecond), slices.Max(replaces).Round(time.Millisecond))
	}

	// The SYN path: IPVS on dir1 for [vip6]:9001 over rs1 and rs2.
	lab.MustIPBatch(t, lab.Dir1, "addr add "+vip6.String()+"/128 dev eth0 nodad")
	for _, h := range []lab.Host{lab.RS1, lab.RS2} {
		lab.MustIPBatch(t, h, "addr add "+vip6.String()+"/128 dev lo")
	}
	k, err := ipvs.OpenNetlink(ctx, "/run/netns/"+string(lab.Dir1))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	key := ipvs.NewServiceKey(ipvs.TCP, netip.AddrPortFrom(vip6, port))
	s := ipvs.NewService(key, "rr")
	for _, h := range []lab.Host{lab.RS1, lab.RS2} {
		s.Put(ipvs.NewDestination(h.IPv6(), port, 1))
	}
	if _, err := ipvs.NewReconciler(k, slog.New(slog.DiscardHandler)).Apply(ctx, ipvs.State{key: s}); err != nil {
		t.Fatal(err)
	}
	p, err := admission.Build(admission.Config{Services: []admission.Service{service(10000)}})
	if err != nil {
		t.Fatal(err)
	}
	denyOnly := service(10000)
	denyOnly.SourceRate = nil
	pDeny, err := admission.Build(admission.Config{Services: []admission.Service{denyOnly}})
	if err != nil {
		t.Fatal(err)
	}
	attempt := func() time.Duration {
		var took time.Duration
		err := lab.Do(lab.Client, func() error {
			d := net.Dialer{Timeout: 2 * time.Second}
			start := time.Now()
			for range attempts {
				c, err := d.Dial("tcp", netip.AddrPortFrom(vip6, port).String())
				if err == nil {
					c.Close()
					return errors.New("a connection was accepted on the benchmark's closed port")
				}
				if !errors.Is(err, syscall.ECONNREFUSED) {
					return fmt.Errorf("attempt: %w", err)
				}
			}
			took = time.Since(start)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return took / time.Duration(attempts)
	}
	var with, withDeny, without []time.Duration
	attempt() // warm up: neighbour entries, caches
	for range rounds {
		inDir1(t, func() error { return admission.NFT{}.Delete(ctx) })
		without = append(without, attempt())
		inDir1(t, func() error { return admission.NFT{}.Replace(ctx, pDeny) })
		withDeny = append(withDeny, attempt())
		inDir1(t, func() error { return admission.NFT{}.Replace(ctx, p) })
		with = append(with, attempt())
	}
	var dropped uint64
	inDir1(t, func() error {
		c, err := admission.NFT{}.Counters(ctx)
		for _, v := range c {
			dropped += v
		}
		return err
	})
	if dropped != 0 {
		t.Fatalf("the rules dropped %d packets: the measurement is not of the accepting path", dropped)
	}
	inDir1(t, func() error { return admission.NFT{}.Delete(ctx) })
	fmt.Printf("\nSYN path: a TCP attempt through IPVS (SYN, the real's reset), median of %d rounds of %d\n", rounds, attempts)
	fmt.Printf("%-40s %-12s %s\n", "table", "per attempt", "ratio to none")
	fmt.Printf("%-40s %-12s\n", "none", median(without).Round(time.Microsecond))
	fmt.Printf("%-40s %-12s %.3fx\n", "10,000 deny prefixes", median(withDeny).Round(time.Microsecond), float64(median(withDeny))/float64(median(without)))
	fmt.Printf("%-40s %-12s %.3fx\n\n", "10,000 deny prefixes + per-source meter", median(with).Round(time.Microsecond), float64(median(with))/float64(median(without)))
}
