package director

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/raft"
)

// The cluster sequences BGP drains through Raft: dir1 drains (dir2 still
// announces, so no VIP is orphaned) and withdraws after its drain_delay,
// announcing as leaving first; dir2's drain is refused while dir1 is
// drained, and both directors' status names dir1; dir1 restarted stays
// drained and never announces; dir2 undrains dir1 by name and dir1
// announces again.
func TestClusterSequencesBGPDrains(t *testing.T) {
	const anyVIP = "203.0.113.50"
	vip := netip.MustParseAddr(anyVIP)
	l := newLabOf(t, "", "wit", "dir1", "dir2")
	service := fmt.Sprintf("  - name: anycast\n    vip: %s\n    port: 80\n    protocol: tcp\n    scheduler: mh\n    health_check: %s\n    reals: [{address: 192.0.2.21}]\n", anyVIP, l.check())
	speakers := map[string]*fakeSpeaker{}
	start := func(n *labDirector) {
		t.Helper()
		sp := &fakeSpeaker{}
		speakers[n.id] = sp
		d := l.newDirector(n)
		d.opts.Speaker = sp
		l.run(n, d)
	}
	for _, id := range []string{"dir1", "dir2"} {
		n := l.dirs[id]
		n.vips.AddLink(netkernel.Link{Name: "lo", Index: 1, Up: true, Running: true, NoARP: true, Loopback: true})
		writeFile(t, n.conf, strings.Replace(l.directorFile(n, service), "vips:\n",
			"bgp:\n  asn: 64513\n  drain_delay: 300ms\n  peers: [{address: 192.0.2.1, asn: 64500}]\nvips:\n  - {address: "+anyVIP+", mode: bgp}\n", 1))
	}
	l.setHealth("192.0.2.21", true)
	l.startWitness()
	dir1, dir2 := l.dirs["dir1"], l.dirs["dir2"]
	start(dir1)
	start(dir2)
	announced := func(id string, want bool) {
		t.Helper()
		testutil.WaitFor(t, testTimeout, fmt.Sprintf("%s announcing = %v", id, want), func() (bool, string) {
			got, g := speakers[id].state()
			return slices.Equal(got, hostRoutes(vip)) == want && !(want && g), fmt.Sprint(got, g)
		})
	}
	announced("dir1", true)
	announced("dir2", true)

	c1, c2 := apiClient(t, dir1.sock), apiClient(t, dir2.sock)
	res, err := c1.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: true})
	if err != nil || !res.Changed || len(res.Orphaned) != 0 || res.Node != "dir1" {
		t.Fatalf("drain dir1 while dir2 announces: %+v, %v", res, err)
	}
	announced("dir1", false)
	if calls := speakers["dir1"].callsNow(); !slices.Contains(calls, "graceful") {
		t.Errorf("dir1's calls %v: it did not announce as leaving first", calls)
	}
	announced("dir2", true)

	_, err = c2.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: true})
	if !errors.Is(err, raft.ErrDrainBusy) || !strings.Contains(err.Error(), "dir1 is drained") {
		t.Errorf("drain dir2 while dir1 is drained: %v, want refused naming dir1", err)
	}
	if _, err := c2.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: true, Node: "dir1"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("dir2 draining dir1: %v, want refused (a director drains itself)", err)
	}
	for _, c := range []*api.Client{c1, c2} {
		testutil.WaitFor(t, testTimeout, "status names the drain", func() (bool, string) {
			st := status(t, c)
			return st.BGP != nil && len(st.BGP.Drains) == 1 && st.BGP.Drains[0].Node == "dir1" && st.BGP.Drains[0].By == "dir1", fmt.Sprintf("%+v", st.BGP)
		})
	}
	announced("dir2", true)

	// The record outlives a restart: dir1 comes back drained.
	l.stop(dir1)
	start(dir1)
	testutil.WaitFor(t, testTimeout, "dir1 restarted, withdrawn as drained", func() (bool, string) {
		st := status(t, c1)
		i := slices.IndexFunc(st.VIPs, func(v api.VIP) bool { return v.Address == vip })
		return i >= 0 && st.VIPs[i].Withdrawn == withdrawDrained, fmt.Sprintf("%+v", st.VIPs)
	})
	if calls, got := speakers["dir1"].callsNow(), first(speakers["dir1"].state()); slices.Contains(calls, "graceful") || len(got) != 0 {
		t.Errorf("dir1 restarted drained: calls %v, announced %v; want nothing announced", calls, got)
	}

	res, err = c2.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Node: "dir1"})
	if err != nil || !res.Changed || res.Draining {
		t.Fatalf("dir2 undrains dir1: %+v, %v", res, err)
	}
	announced("dir1", true)
	announced("dir2", true)
	if res, err := c2.DrainBGP(ctxTimeout(t), api.BGPDrainRequest{Drain: true}); err != nil || !res.Changed {
		t.Errorf("drain dir2 once dir1 is undrained: %+v, %v", res, err)
	}
	announced("dir2", false)
	announced("dir1", true)
}

func first[A, B any](a A, _ B) A { return a }
