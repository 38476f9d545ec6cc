package admission

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Kernel programs the dsrd table. NFT is the real one; Fake keeps the
// table in memory for tests.
type Kernel interface {
	// Replace puts plan's table in place of the current one, if any, in
	// one transaction: packets meet either the old rules or the new.
	Replace(ctx context.Context, plan *Plan) error
	// Delete removes the table; nil when there is none.
	Delete(ctx context.Context) error
	// Counters returns the packets counted by each named counter of the
	// table; empty when there is no table.
	Counters(ctx context.Context) (map[string]uint64, error)
	// SetSize returns how many elements the named set holds now.
	SetSize(ctx context.Context, name string) (int, error)
	// Sources returns the elements of the named offender set: each
	// source with the packets its element counted.
	Sources(ctx context.Context, name string) ([]SourceCount, error)
}

// SourceCount is one source of an offender set and the packets dropped
// from it since it entered the set.
type SourceCount struct {
	Source  netip.Addr
	Packets uint64
	// Expires is how long the source stays in the set unless it sends
	// again (0 when the kernel did not say).
	Expires time.Duration
}

// ErrNoNFTables is returned when the kernel has no nf_tables.
var ErrNoNFTables = errors.New("the kernel has no nf_tables (load the nf_tables module: modprobe nf_tables)")

// maxElementsPerMessage bounds the elements of one set-element message:
// the element list is one netlink attribute, whose length is 16 bits, and
// 1024 IPv6 interval elements take about 40 KiB.
const maxElementsPerMessage = 1024

// NFT is the kernel's nf_tables over netlink (github.com/google/nftables).
type NFT struct{}

// table is the dsrd table as nftables names it.
func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// conn opens a netlink connection whose socket buffers hold a batch of
// about batchBytes.
func conn(batchBytes int) (*nftables.Conn, error) {
	buf := max(batchBytes+1<<20, 4<<20)
	c, err := nftables.New(nftables.WithSockOptions(func(nc *netlink.Conn) error {
		rc, err := nc.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			// A netlink send fails with EMSGSIZE past the send buffer;
			// FORCE passes net.core.wmem_max (CAP_NET_ADMIN, as
			// every nftables change needs).
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, buf)
			if serr == nil {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
			}
		}); err != nil {
			return err
		}
		return serr
	}))
	if err != nil {
		return nil, kernelErr(err)
	}
	return c, nil
}

// kernelErr names the missing module when the error says nf_tables (or
// nfnetlink) is not there.
func kernelErr(err error) error {
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.EPROTONOSUPPORT) || errors.Is(err, syscall.EAFNOSUPPORT) {
		return fmt.Errorf("%w: %w", ErrNoNFTables, err)
	}
	return err
}

// Replace sends, in one batch: add the table (so that the delete cannot
// fail when there is none), delete it, add it again with every counter,
// set, chain and rule. The kernel commits the batch as one transaction.
func (NFT) Replace(ctx context.Context, p *Plan) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n := 0
	for _, s := range p.Sets {
		n += len(s.Elements)
	}
	c, err := conn(n * 48)
	if err != nil {
		return err
	}
	t := p.Table
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	for _, name := range p.Counters {
		c.AddObj(&nftables.CounterObj{Table: t, Name: name})
	}
	for _, s := range p.Sets {
		first := s.Elements[:min(len(s.Elements), maxElementsPerMessage)]
		if err := c.AddSet(s.Set, first); err != nil {
			return fmt.Errorf("set %s: %w", s.Set.Name, err)
		}
		for rest := s.Elements[len(first):]; len(rest) > 0; {
			chunk := rest[:min(len(rest), maxElementsPerMessage)]
			if err := c.SetAddElements(s.Set, chunk); err != nil {
				return fmt.Errorf("set %s: %w", s.Set.Name, err)
			}
			rest = rest[len(chunk):]
		}
	}
	c.AddChain(p.Base)
	for _, ch := range p.Chains {
		c.AddChain(ch)
	}
	for _, r := range p.Rules {
		c.AddRule(&nftables.Rule{Table: t, Chain: r.Chain, Exprs: r.Exprs})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace table inet %s: %w", TableName, kernelErr(err))
	}
	return nil
}

// Delete removes the table in one batch (add, then delete: no error when
// it was not there). A kernel without nf_tables has no table to delete.
func (NFT) Delete(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := conn(0)
	if errors.Is(err, ErrNoNFTables) {
		return nil
	}
	if err != nil {
		return err
	}
	c.AddTable(table())
	c.DelTable(table())
	if err := c.Flush(); err != nil {
		if err := kernelErr(err); errors.Is(err, ErrNoNFTables) {
			return nil
		}
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	return nil
}

// Counters reads the table's named counters.
func (NFT) Counters(ctx context.Context) (map[string]uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := conn(0)
	if err != nil {
		return nil, err
	}
	objs, err := c.GetObjects(table())
	if errors.Is(err, syscall.ENOENT) {
		return map[string]uint64{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", kernelErr(err))
	}
	out := make(map[string]uint64, len(objs))
	for _, o := range objs {
		if co, ok := o.(*nftables.CounterObj); ok {
			out[co.Name] = co.Packets
		}
	}
	return out, nil
}

// SetSize counts the elements of a set of the table.
func (NFT) SetSize(ctx context.Context, name string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c, err := conn(0)
	if err != nil {
		return 0, err
	}
	els, err := c.GetSetElements(&nftables.Set{Table: table(), Name: name})
	if err != nil {
		return 0, fmt.Errorf("read set %s: %w", name, kernelErr(err))
	}
	return len(els), nil
}

// ErrNoElementCounters is returned when the kernel lists an offender
// set's elements without their counters.
var ErrNoElementCounters = errors.New("the kernel listed the set's elements without their counters")

// Sources reads an offender set: its elements' keys and counters, as the
// kernel dumps them (one NFTA_SET_ELEM_EXPR per element, which
// google/nftables decodes into SetElement.Counter). The set holds at most
// TopSize elements, so the dump is bounded.
func (NFT) Sources(ctx context.Context, name string) ([]SourceCount, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := conn(0)
	if err != nil {
		return nil, err
	}
	els, err := c.GetSetElements(&nftables.Set{Table: table(), Name: name})
	if err != nil {
		return nil, fmt.Errorf("read set %s: %w", name, kernelErr(err))
	}
	return sourceCounts(name, els)
}

// sourceCounts turns an offender set's elements into sources; an element
// whose key is not an address or that has no counter is an error.
func sourceCounts(name string, els []nftables.SetElement) ([]SourceCount, error) {
	out := make([]SourceCount, 0, min(len(els), TopSize))
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			return nil, fmt.Errorf("read set %s: an element's key of %d bytes is not an address", name, len(e.Key))
		}
		if e.Counter == nil {
			return nil, fmt.Errorf("read set %s: %w", name, ErrNoElementCounters)
		}
		out = append(out, SourceCount{Source: a, Packets: e.Counter.Packets, Expires: e.Expires})
	}
	return out, nil
}

var _ Kernel = NFT{}
