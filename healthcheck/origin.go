package healthcheck

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// origin is where a check's packets start: the local address they are
// sent from and the firewall mark they carry.
type origin struct {
	// source is Spec.Source: the local address, when set.
	source netip.Addr
	// toward is Spec.SourceToward: without source, the local address is
	// the one the kernel would use to reach toward.
	toward netip.Addr
	// mark is Spec.Mark, set on every socket with SO_MARK; 0 sets none.
	mark uint32
}

// originOf returns the origin spec asks for.
func originOf(spec Spec) origin {
	return origin{source: spec.Source, toward: spec.SourceToward, mark: spec.Mark}
}

// local returns the address to bind a check of target to, nil to let the
// kernel choose. With toward set (a check through the VIP) it asks the
// kernel which source it would use to reach toward, with the check's mark,
// by connecting a UDP socket (which sends nothing): on the director that
// holds the VIP, the kernel's own choice for the VIP would be the VIP
// itself, an address the real answers to locally.
func (o origin) local(target netip.Addr) (net.IP, error) {
	if o.source.IsValid() || !o.toward.IsValid() {
		return localIP(o.source, target)
	}
	if o.toward.Unmap().Is4() != target.Unmap().Is4() {
		return nil, configError{fmt.Errorf("real %s and target %s are of different address families", o.toward, target)}
	}
	ip := o.toward.Unmap()
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	if err := o.setMark(fd); err != nil {
		return nil, err
	}
	if err := unix.Connect(fd, sockaddr(ip, 9)); err != nil {
		return nil, fmt.Errorf("source address toward %s: %w", ip, os.NewSyscallError("connect", err))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, os.NewSyscallError("getsockname", err)
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.IP(a.Addr[:]), nil
	case *unix.SockaddrInet6:
		return net.IP(a.Addr[:]), nil
	}
	return nil, fmt.Errorf("source address toward %s: socket name %T", ip, sa)
}

// setMark sets the check's firewall mark on fd (nothing without one).
func (o origin) setMark(fd int) error {
	if o.mark == 0 {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(o.mark)); err != nil {
		return os.NewSyscallError("setsockopt SO_MARK", err)
	}
	return nil
}

// control is a net.Dialer's Control: it sets the mark before connecting.
func (o origin) control(_, _ string, c syscall.RawConn) error {
	if o.mark == 0 {
		return nil
	}
	var err error
	if cerr := c.Control(func(fd uintptr) { err = o.setMark(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}
