//go:build linux

package netkernel

import (
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/dsrd/dsrd/internal/netnsutil"
	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// TestLinuxContract runs the contract against the kernel, each case in a
// network namespace of its own with lo up: the fake's starting state.
func TestLinuxContract(t *testing.T) {
	testContract(t, func(t *testing.T) (kernel, operator) {
		privileged.Require(t, privileged.NetNS("to create a network namespace per contract case"))
		ns, err := netnsutil.New()
		if err != nil {
			t.Fatalf("create netns: %v", err)
		}
		t.Cleanup(func() { ns.Close() })
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(h.Close)
		k, err := NewAt(ns)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		// The far ends of the veth pairs the operator creates (the lab's
		// kernels have no dummy driver) live in a second namespace.
		peer, err := netnsutil.New()
		if err != nil {
			t.Fatalf("create netns: %v", err)
		}
		t.Cleanup(func() { peer.Close() })
		ph, err := netlink.NewHandleAt(peer)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ph.Close)
		op := nsOperator{h: h, peer: peer, ph: ph, n: new(int)}
		lo, err := h.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			t.Fatal(err)
		}
		return k, op
	})
}

// nsOperator changes a namespace through its own netlink handle; its
// interfaces are veths whose peers, up, are in a second namespace.
type nsOperator struct {
	h    *netlink.Handle
	peer netns.NsHandle
	ph   *netlink.Handle
	n    *int
}

func (o nsOperator) link(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := o.h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

func (o nsOperator) addLink(t *testing.T, name string) {
	t.Helper()
	*o.n++
	peerName := fmt.Sprintf("peer%d", *o.n)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peerName, PeerNamespace: netlink.NsFd(int(o.peer))}
	if err := o.h.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s: %v", name, err)
	}
	p, err := o.ph.LinkByName(peerName)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.ph.LinkSetUp(p); err != nil {
		t.Fatal(err)
	}
}

func (o nsOperator) setDown(t *testing.T, name string) {
	t.Helper()
	if err := o.h.LinkSetDown(o.link(t, name)); err != nil {
		t.Fatal(err)
	}
}

func (o nsOperator) remove(t *testing.T, name string) {
	t.Helper()
	if err := o.h.LinkDel(o.link(t, name)); err != nil {
		t.Fatal(err)
	}
}
