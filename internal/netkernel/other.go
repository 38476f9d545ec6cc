//go:build !linux

package netkernel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
)

// errUnsupported is what every method returns off Linux.
var errUnsupported = fmt.Errorf("network kernel on %s: %w", runtime.GOOS, errors.ErrUnsupported)

// Linux is the kernel of a Linux network namespace; off Linux it only
// fails.
type Linux struct{}

// New fails: dsrd drives Linux only.
func New() (*Linux, error) { return nil, errUnsupported }

// Close does nothing.
func (*Linux) Close() error { return nil }

// Run fails.
func (*Linux) Run(func() error) error { return errUnsupported }

// Links fails.
func (*Linux) Links() ([]Link, error) { return nil, errUnsupported }

// LinkByName fails.
func (*Linux) LinkByName(string) (Link, error) { return Link{}, errUnsupported }

// Interface fails.
func (*Linux) Interface(string) (*net.Interface, error) { return nil, errUnsupported }

// SetLinkUp fails.
func (*Linux) SetLinkUp(string) error { return errUnsupported }

// Addrs fails.
func (*Linux) Addrs(string) ([]Addr, error) { return nil, errUnsupported }

// AddAddr fails.
func (*Linux) AddAddr(Addr) error { return errUnsupported }

// DelAddr fails.
func (*Linux) DelAddr(Addr) error { return errUnsupported }

// Sysctl fails.
func (*Linux) Sysctl(string) (string, error) { return "", errUnsupported }

// SetSysctl fails.
func (*Linux) SetSysctl(string, string) error { return errUnsupported }

// RouteInterface fails.
func (*Linux) RouteInterface(netip.Addr) (string, error) { return "", errUnsupported }

// Watch fails.
func (*Linux) Watch(context.Context, chan<- Event) error { return errUnsupported }
