package ipvs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/dsrd/dsrd/internal/netnsutil"
)

// DefaultBatchSize is how many write operations Netlink.WriteBatch sends in
// one sendmsg. A batch is bounded by the socket's send buffer (about 200 KiB
// by default; an operation is about 120 bytes) and by the error replies it
// may bring back, which must fit in the receive buffer (1 MiB is asked for,
// an error reply is under 1 KiB of buffer).
const DefaultBatchSize = 256

// WithBatchSize sets how many writes WriteBatch sends in one round trip; 1
// sends them one by one through moby/ipvs.
func WithBatchSize(n int) NetlinkOption {
	return func(k *Netlink) { k.batchSize = max(n, 1) }
}

// The IPVS generic netlink commands and attributes (linux/ip_vs.h), for the
// batched writes moby/ipvs cannot do.
const (
	ipvsCmdNewService = 1
	ipvsCmdSetService = 2
	ipvsCmdDelService = 3
	ipvsCmdNewDest    = 5
	ipvsCmdSetDest    = 6
	ipvsCmdDelDest    = 7

	ipvsCmdAttrService = 1
	ipvsCmdAttrDest    = 2

	ipvsSvcAttrAF        = 1
	ipvsSvcAttrProtocol  = 2
	ipvsSvcAttrAddr      = 3
	ipvsSvcAttrPort      = 4
	ipvsSvcAttrFWMark    = 5
	ipvsSvcAttrSchedName = 6
	ipvsSvcAttrFlags     = 7
	ipvsSvcAttrTimeout   = 8
	ipvsSvcAttrNetmask   = 9

	ipvsDestAttrAddr      = 1
	ipvsDestAttrPort      = 2
	ipvsDestAttrFwdMethod = 3
	ipvsDestAttrWeight    = 4
	ipvsDestAttrUThresh   = 5
	ipvsDestAttrLThresh   = 6
	ipvsDestAttrAF        = 11
)

// batchWriter sends IPVS write requests many to a message batch on a
// netlink socket of its own. Every request but the last goes without
// NLM_F_ACK: the kernel then answers only the ones that fail, and the
// acknowledgement of the last one, queued after every earlier answer,
// says the batch is done. A batch of n operations costs one sendmsg and
// 1 + (failures) recvmsg, instead of n round trips.
type batchWriter struct {
	fd     int
	family uint16
	seq    uint32
	buf    []byte
}

// openBatchWriter opens a generic netlink socket in the namespace ns.
func openBatchWriter(ns netns.NsHandle) (*batchWriter, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("look up the IPVS netlink family: %w", err)
	}
	fd, err := socketIn(ns)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	// Best effort: more room for error replies (FORCE needs CAP_NET_ADMIN),
	// and error replies without a copy of the request.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 1<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	return &batchWriter{fd: fd, family: fam.ID, buf: make([]byte, 64<<10)}, nil
}

// socketIn creates a generic netlink socket in ns: a socket belongs to the
// namespace of the thread that creates it.
func socketIn(ns netns.NsHandle) (int, error) {
	fd := -1
	err := netnsutil.Run(ns, func() error {
		var err error
		if fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC); err != nil {
			return fmt.Errorf("open netlink socket: %w", err)
		}
		return nil
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

// close releases the socket.
func (w *batchWriter) close() { unix.Close(w.fd) }

// write sends ops as one batch and waits for its end until deadline. It
// returns each operation's errno (nil for success), or an error when the
// outcome of the batch is unknown (the socket should then be closed: late
// answers would be stale).
func (w *batchWriter) write(ops []Op, deadline time.Time) ([]error, error) {
	var msg bytes.Buffer
	first := w.seq + 1
	for i, op := range ops {
		flags := 0
		if i == len(ops)-1 {
			flags = unix.NLM_F_ACK
		}
		req := nl.NewNetlinkRequest(int(w.family), flags)
		req.Seq = first + uint32(i)
		req.AddData(genlHeader(opCmd(op.Kind)))
		req.AddData(serviceAttr(op.Service, op.Kind == OpAddService || op.Kind == OpUpdateService))
		if op.Kind.isDest() {
			req.AddData(destAttr(op.Dest, op.Service.Key.Family))
		}
		msg.Write(req.Serialize())
	}
	w.seq += uint32(len(ops))
	last := w.seq
	if err := setTimeout(w.fd, unix.SO_SNDTIMEO, deadline); err != nil {
		return nil, err
	}
	if err := unix.Sendto(w.fd, msg.Bytes(), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send %d requests: %w", len(ops), err)
	}
	errs := make([]error, len(ops))
	for {
		if err := setTimeout(w.fd, unix.SO_RCVTIMEO, deadline); err != nil {
			return nil, err
		}
		n, _, err := unix.Recvfrom(w.fd, w.buf, 0)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue // interrupted, or timed out: setTimeout sees the deadline
		}
		if err != nil {
			return nil, fmt.Errorf("receive answers: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(w.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse answers: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < first || m.Header.Seq > last || len(m.Data) < 4 {
				continue // stale or unexpected
			}
			if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
				errs[m.Header.Seq-first] = syscall.Errno(-e)
			}
			if m.Header.Seq == last {
				return errs, nil
			}
		}
	}
}

// setTimeout bounds the socket's next blocking call by deadline.
func setTimeout(fd, opt int, deadline time.Time) error {
	d := time.Until(deadline)
	if d <= 0 {
		return context.DeadlineExceeded
	}
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if tv.Sec == 0 && tv.Usec == 0 {
		tv.Usec = 1 // 0 would mean no timeout at all
	}
	return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv)
}

// opCmd is the generic netlink command of an operation.
func opCmd(k OpKind) uint8 {
	switch k {
	case OpAddService:
		return ipvsCmdNewService
	case OpUpdateService:
		return ipvsCmdSetService
	case OpDelService:
		return ipvsCmdDelService
	case OpAddDest:
		return ipvsCmdNewDest
	case OpUpdateDest:
		return ipvsCmdSetDest
	}
	return ipvsCmdDelDest
}

// genlHeader is a generic netlink message header.
type genlHeader uint8

// Len is the header's size.
func (genlHeader) Len() int { return 4 }

// Serialize writes command, version 1 and two reserved bytes.
func (h genlHeader) Serialize() []byte { return []byte{byte(h), 1, 0, 0} }

// serviceAttr encodes the service: its key, and with full its attributes
// (as moby/ipvs encodes them; see toMobyService for the netmask).
func serviceAttr(s Service, full bool) *nl.RtAttr {
	k := s.Key
	ms := toMobyService(s)
	a := nl.NewRtAttr(ipvsCmdAttrService, nil)
	a.AddRtAttr(ipvsSvcAttrAF, nl.Uint16Attr(ms.AddressFamily))
	if k.IsFWMark() {
		a.AddRtAttr(ipvsSvcAttrFWMark, nl.Uint32Attr(k.FWMark))
	} else {
		a.AddRtAttr(ipvsSvcAttrProtocol, nl.Uint16Attr(uint16(k.Protocol)))
		a.AddRtAttr(ipvsSvcAttrAddr, k.Addr.AsSlice())
		a.AddRtAttr(ipvsSvcAttrPort, binary.BigEndian.AppendUint16(nil, k.Port))
	}
	if full {
		a.AddRtAttr(ipvsSvcAttrSchedName, nl.ZeroTerminated(ms.SchedName))
		flags := make([]byte, 8) // struct ip_vs_flags { flags, mask }
		binary.NativeEndian.PutUint32(flags, ms.Flags)
		binary.NativeEndian.PutUint32(flags[4:], 0xffffffff)
		a.AddRtAttr(ipvsSvcAttrFlags, flags)
		a.AddRtAttr(ipvsSvcAttrTimeout, nl.Uint32Attr(ms.Timeout))
		a.AddRtAttr(ipvsSvcAttrNetmask, nl.Uint32Attr(ms.Netmask))
	}
	return a
}

// destAttr encodes a destination as moby/ipvs does, plus its family.
func destAttr(d Destination, f Family) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsCmdAttrDest, nil)
	a.AddRtAttr(ipvsDestAttrAddr, net.IP(d.Key.Addr.AsSlice()))
	a.AddRtAttr(ipvsDestAttrPort, binary.BigEndian.AppendUint16(nil, d.Key.Port))
	a.AddRtAttr(ipvsDestAttrFwdMethod, nl.Uint32Attr(d.Forward.kernelValue()))
	a.AddRtAttr(ipvsDestAttrWeight, nl.Uint32Attr(uint32(d.Weight)))
	a.AddRtAttr(ipvsDestAttrUThresh, nl.Uint32Attr(d.UpperThreshold))
	a.AddRtAttr(ipvsDestAttrLThresh, nl.Uint32Attr(d.LowerThreshold))
	a.AddRtAttr(ipvsDestAttrAF, nl.Uint16Attr(kernelAF(f)))
	return a
}

// WriteBatch performs the write operations in order, many to a round trip,
// and returns one error per operation (nil for success), wrapped like the
// single calls' errors. Operations after a batch whose outcome is unknown
// (a timeout) fail without being sent.
func (n *Netlink) WriteBatch(ctx context.Context, ops []Op) []error {
	errs := make([]error, len(ops))
	if n.batchSize <= 1 {
		for i, op := range ops {
			errs[i] = n.writeOne(ctx, op)
		}
		return errs
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	fail := func(from int, err error) {
		for i := from; i < len(ops); i++ {
			if errs[i] == nil {
				errs[i] = opError(ops[i], err)
			}
		}
	}
	if n.closed {
		fail(0, errClosed)
		return errs
	}
	// Destinations of another family are refused here (see
	// checkDestFamily); the others are sent.
	send := make([]int, 0, len(ops))
	for i, op := range ops {
		if op.Kind.isDest() {
			if err := checkDestFamily(op.Service.Key, op.Dest); err != nil {
				errs[i] = opError(op, err)
				continue
			}
		}
		send = append(send, i)
	}
	for start := 0; start < len(send); start += n.batchSize {
		chunk := send[start:min(start+n.batchSize, len(send))]
		if err := ctx.Err(); err != nil {
			fail(chunk[0], err)
			return errs
		}
		if n.w == nil {
			w, err := openBatchWriter(n.ns)
			if err != nil {
				fail(chunk[0], err)
				return errs
			}
			n.w = w
		}
		deadline := time.Now().Add(n.callTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		batch := make([]Op, len(chunk))
		for j, i := range chunk {
			batch[j] = ops[i]
		}
		res, err := n.w.write(batch, deadline)
		if err != nil {
			n.w.close()
			n.w = nil
			fail(chunk[0], fmt.Errorf("batch of %d: %w", len(batch), err))
			return errs
		}
		for j, i := range chunk {
			errs[i] = opError(ops[i], res[j])
		}
	}
	return errs
}

// writeOne performs one write operation through moby/ipvs.
func (n *Netlink) writeOne(ctx context.Context, op Op) error {
	k := op.Service.Key
	switch op.Kind {
	case OpAddService:
		return n.NewService(ctx, op.Service)
	case OpUpdateService:
		return n.UpdateService(ctx, op.Service)
	case OpDelService:
		return n.DelService(ctx, k)
	case OpAddDest:
		return n.NewDestination(ctx, k, op.Dest)
	case OpUpdateDest:
		return n.UpdateDestination(ctx, k, op.Dest)
	}
	return n.DelDestination(ctx, k, op.Dest.Key)
}

var _ BatchWriter = (*Netlink)(nil)
