package vrrp

import "github.com/dsrd/dsrd/internal/netkernel"

// FakeKernel is the in-memory Kernel for tests: netkernel's fake, which
// keeps real state and records every change as an ip(8) command line.
type FakeKernel = netkernel.Fake

// NewFakeKernel returns a FakeKernel with lo and the named interfaces, up
// and without addresses.
func NewFakeKernel(ifnames ...string) *FakeKernel { return netkernel.NewFake(ifnames...) }
