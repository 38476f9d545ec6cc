package main

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// vipWatcher follows whether a namespace's interface holds the VIP: through
// netlink address notifications (every change, stamped when it arrives,
// with no cost while nothing changes: under TCG a 10 ms poll of two
// namespaces costs a quarter of a CPU), and a netlink socket opened inside
// that namespace for the cross-checking polls.
type vipWatcher struct {
	ns      string
	h       *netlink.Handle
	index   int
	vip     net.IP
	updates chan netlink.AddrUpdate
	done    chan struct{}
	errs    chan error
}

func newVIPWatcher(ns, ifname, vip string) (*vipWatcher, error) {
	ip := net.ParseIP(vip)
	if ip == nil {
		return nil, fmt.Errorf("bad VIP %q", vip)
	}
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	link, err := h.LinkByName(ifname)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("%s in %s: %w", ifname, ns, err)
	}
	w := &vipWatcher{
		ns: ns, h: h, index: link.Attrs().Index, vip: ip,
		updates: make(chan netlink.AddrUpdate, 256),
		done:    make(chan struct{}),
		errs:    make(chan error, 1),
	}
	err = netlink.AddrSubscribeWithOptions(w.updates, w.done, netlink.AddrSubscribeOptions{
		Namespace:         &nsh,
		ReceiveBufferSize: 1 << 20,
		ErrorCallback: func(err error) {
			select {
			case w.errs <- err:
			default:
			}
		},
	})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("address notifications in %s: %w", ns, err)
	}
	return w, nil
}

// concerns says whether an update is about the VIP on the watched
// interface.
func (w *vipWatcher) concerns(u netlink.AddrUpdate) bool {
	return u.LinkIndex == w.index && u.LinkAddress.IP.Equal(w.vip)
}

// held asks the kernel now.
func (w *vipWatcher) held() (bool, error) {
	link := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: w.index}}
	addrs, err := w.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, a := range addrs {
		if a.IP.Equal(w.vip) {
			return true, nil
		}
	}
	return false, nil
}

func (w *vipWatcher) close() {
	close(w.done)
	w.h.Close()
}

// vipState is the watchers' combined view, logged on every change.
type vipState struct {
	watchers  []*vipWatcher
	held      []bool
	last      string
	changes   int64
	both      int64
	bothSince time.Time
	bothFor   time.Duration
	resyncs   int64
	transient int64
	log       *lineLog
}

func (s *vipState) holders() string {
	var h []string
	for i, w := range s.watchers {
		if s.held[i] {
			h = append(h, w.ns)
		}
	}
	if len(h) == 0 {
		return "-"
	}
	return strings.Join(h, ",")
}

// set records watcher i's state at time now, logging a change of holders
// with its source (e: a notification, p: the first poll, r: a poll that
// found the notifications had missed something, t: two holders by the
// notifications that a poll at once did not confirm).
//
// Notifications from two namespaces come through two sockets, read by two
// goroutines: when one is scheduled late, a VIP's removal on one director
// can be seen after its addition on the other, which happened later. So
// two holders by the notifications are confirmed by asking the kernel at
// once; only a confirmed overlap counts as a split brain.
func (s *vipState) set(i int, held bool, now time.Time, src string) {
	s.held[i] = held
	cur := s.holders()
	if cur == s.last {
		return
	}
	if s.last != "" {
		s.changes++
	}
	n := strings.Count(cur, ",") + 1
	if cur == "-" {
		n = 0
	}
	if n > 1 && s.bothSince.IsZero() && !s.confirmBoth() {
		s.transient++
		src = "t"
		n = 1 // not a split brain: do not start one
	}
	switch {
	case n > 1 && s.bothSince.IsZero():
		s.both++
		s.bothSince = now
	case n <= 1 && !s.bothSince.IsZero():
		s.bothFor += now.Sub(s.bothSince)
		s.bothSince = time.Time{}
	}
	s.last = cur
	s.log.write(record(fmt.Sprintf("V %d %s %s", now.UnixNano(), cur, src)))
}

// confirmBoth asks every namespace now whether it holds the VIP; it says
// yes when more than one does, or when one cannot be asked (no verdict is
// not an all-clear).
func (s *vipState) confirmBoth() bool {
	n := 0
	for _, w := range s.watchers {
		h, err := w.held()
		if err != nil || h {
			n++
		}
	}
	return n > 1
}

// run follows the watchers until stop: notifications as they come, and a
// poll every pollEvery that corrects the state when a notification was
// missed (the same disagreement seen by two polls in a row, so that a
// notification still on its way is not mistaken for a lost one).
func (s *vipState) run(stop <-chan struct{}, pollEvery time.Duration) error {
	type ev struct {
		i    int
		held bool
	}
	merged := make(chan ev, 256)
	for i, w := range s.watchers {
		go func() {
			for u := range w.updates {
				if w.concerns(u) {
					merged <- ev{i, u.NewAddr}
				}
			}
		}()
	}
	s.held = make([]bool, len(s.watchers))
	// The initial state, from a poll: notifications only tell changes.
	for i, w := range s.watchers {
		h, err := w.held()
		if err != nil {
			return err
		}
		s.held[i] = h
	}
	s.set(0, s.held[0], time.Now(), "p")
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	suspect := make([]int, len(s.watchers))
	for {
		select {
		case <-stop:
			if !s.bothSince.IsZero() {
				s.bothFor += time.Since(s.bothSince)
			}
			return nil
		case e := <-merged:
			s.set(e.i, e.held, time.Now(), "e")
		case <-t.C:
			// Two holders by the notifications, not confirmed then: ask again.
			if strings.Contains(s.last, ",") && s.bothSince.IsZero() && s.confirmBoth() {
				s.both++
				s.bothSince = time.Now()
				s.log.write(record(fmt.Sprintf("V %d %s r", s.bothSince.UnixNano(), s.last)))
			}
			for i, w := range s.watchers {
				select {
				case err := <-w.errs:
					return fmt.Errorf("address notifications in %s: %w", w.ns, err)
				default:
				}
				h, err := w.held()
				if err != nil {
					continue
				}
				if h == s.held[i] {
					suspect[i] = 0
					continue
				}
				if suspect[i]++; suspect[i] >= 2 {
					s.resyncs++
					suspect[i] = 0
					s.set(i, h, time.Now(), "r")
				}
			}
		}
	}
}
