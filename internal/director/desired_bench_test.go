package director

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// benchSpec is a cluster spec of n tcp services on one VIP, each with
// reals reals and a tcp check: the size of a large installation.
func benchSpec(b *testing.B, n, reals int) raft.Spec {
	b.Helper()
	var doc strings.Builder
	doc.WriteString("node: {id: dir1, interface: eth0}\ncluster: {bind: \"127.0.0.1:7946\", peers: [\"dir1@127.0.0.1:7946\"]}\nvips: [{address: 203.0.113.10}]\nservices:\n")
	for i := range n {
		fmt.Fprintf(&doc, "  - {name: s%d, vip: 203.0.113.10, port: %d, protocol: tcp, scheduler: wlc, health_check: {type: tcp}, reals: [", i, 1000+i)
		for j := range reals {
			if j > 0 {
				doc.WriteString(", ")
			}
			fmt.Fprintf(&doc, "{address: 10.%d.%d.%d}", 1+j/250, i%250, 1+j%250)
		}
		doc.WriteString("]}\n")
	}
	d, err := config.ParseDirector("director.yaml", []byte(doc.String()))
	if err != nil {
		b.Fatal(err)
	}
	return clusterspec.FromDirector(d)
}

// BenchmarkDesiredState measures one reconcile pass's computation of the
// desired IPVS state from an unchanged cluster spec (1,000 services x 10
// reals, every check up), the work every pass repeats: "translate" turns
// the replicated spec into this director's services on every pass (as
// sync did before the translation was cached), "cached" is what sync does
// now (the translation cached per generation).
func BenchmarkDesiredState(b *testing.B) {
	spec := benchSpec(b, 1000, 10)
	cc := raft.ClusterConfig{Generation: 1, Hash: "h", Spec: spec}
	upInput := func(k healthcheck.Key, p healthcheck.Params) (healthInput, bool) {
		return healthInput{State: healthcheck.StateUp, Settled: true}, true
	}
	admin := map[raft.RealRef]raft.Admin{}
	check := func(b *testing.B, st ipvs.State) {
		if len(st) != 1000 || len(st[ipvs.NewServiceKey(ipvs.TCP, netip.MustParseAddrPort("203.0.113.10:1000"))].Dests) != 10 {
			b.Fatalf("desired state has %d services", len(st))
		}
	}
	b.Run("translate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			st, _, err := desiredState(spec, upInput, admin, nil)
			if err != nil {
				b.Fatal(err)
			}
			check(b, st)
		}
	})
	b.Run("cached", func(b *testing.B) {
		var c specCache
		b.ReportAllocs()
		for b.Loop() {
			services, err := c.get(cc)
			if err != nil {
				b.Fatal(err)
			}
			st, _, _ := desiredOf(services, upInput, admin, nil, nil)
			check(b, st)
		}
	})
}
