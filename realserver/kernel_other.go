//go:build !linux

package realserver

import (
	"errors"
	"fmt"
	"runtime"
)

// LinuxKernel is the Kernel of a Linux network namespace; it exists only on
// Linux.
type LinuxKernel struct{ Kernel }

// LinuxKernelOption configures NewLinuxKernel.
type LinuxKernelOption func(*LinuxKernel)

// NewLinuxKernel fails: the agent drives Linux only.
func NewLinuxKernel(...LinuxKernelOption) (*LinuxKernel, error) {
	return nil, fmt.Errorf("realserver agent on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// Close does nothing.
func (k *LinuxKernel) Close() error { return nil }
