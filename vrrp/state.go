package vrrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often the machine reads the state of its
// interfaces itself, in case a netlink notification was lost, and repairs
// the VIPs (re-adds a VIP removed by hand while MASTER, removes a stale one
// while not). Five seconds bounds how long a missed event can go unnoticed
// at the cost of one netlink dump per interface.
const DefaultCheckInterval = 5 * time.Second

// State is the VIP ownership state of a node.
type State int

// The states. The zero value is StateInit.
const (
	// StateInit: Run has not decided yet.
	StateInit State = iota
	// StateBackup: not the leader; holds no VIP.
	StateBackup
	// StateMaster: the leader; holds and announces the VIPs.
	StateMaster
	// StateFault: an interface of the VIPs is down or missing; holds no
	// VIP and asks the director to give up leadership (Machine.Faults).
	StateFault
	// StateStop: Run has returned; holds no VIP.
	StateStop
)

// String returns the keepalived-style name: INIT, BACKUP, MASTER, FAULT or
// STOP.
func (s State) String() string {
	switch s {
	case StateInit:
		return "INIT"
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	case StateStop:
		return "STOP"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Reason says why a transition happened.
type Reason string

// The reasons.
const (
	// ReasonStart: the first decision of Run.
	ReasonStart Reason = "start"
	// ReasonLeader: SetLeader(true).
	ReasonLeader Reason = "leader"
	// ReasonNotLeader: SetLeader(false).
	ReasonNotLeader Reason = "not-leader"
	// ReasonInterfaceDown: an interface of the VIPs is down.
	ReasonInterfaceDown Reason = "interface-down"
	// ReasonInterfaceMissing: an interface of the VIPs does not exist.
	ReasonInterfaceMissing Reason = "interface-missing"
	// ReasonInterfaceUp: every interface of the VIPs is up again.
	ReasonInterfaceUp Reason = "interface-up"
	// ReasonShutdown: Run's context is done.
	ReasonShutdown Reason = "shutdown"
)

// Transition is one change of state.
type Transition struct {
	// From is the state left, To the state entered.
	From, To State
	// Reason says why.
	Reason Reason
	// Interface is the interface behind a FAULT (or the recovery from
	// one); empty otherwise.
	Interface string
	// VIPs are the configured VIPs at the time.
	VIPs []VIP
}

// MachineOptions configure a Machine.
type MachineOptions struct {
	// CheckInterval is how often interfaces are read and VIPs repaired
	// besides link notifications; zero means DefaultCheckInterval.
	CheckInterval time.Duration
	// Notify are the scripts run on transitions.
	Notify NotifyScripts
	// Confirm, when set, is asked just before MASTER takes the VIPs, and
	// an error keeps the machine out of MASTER (retried every
	// confirmRetry while the leadership signal stays true). The director
	// confirms its Raft leadership with a quorum here: a leader paused
	// (SIGSTOP, a frozen VM) for longer than its lease may have been
	// deposed while the signal it gave before the pause waits in the
	// machine, and must not take the VIPs the new leader holds.
	Confirm func(ctx context.Context) error
}

// confirmRetry spaces the attempts to confirm leadership while the
// leadership signal says leader.
const confirmRetry = 250 * time.Millisecond

// Machine drives an Owner from two inputs: the leadership signal
// (SetLeader) and the state of the VIPs' interfaces (link notifications and
// a periodic check). Leader and every interface up: MASTER, the VIPs are
// acquired. Not leader: BACKUP, released. An interface down or missing:
// FAULT, released, and a signal on Faults so the director hands leadership
// over. When the interfaces are back it goes to BACKUP, never straight to
// MASTER: entering FAULT forgets the leadership signal, and only a
// SetLeader(true) given after that leads to MASTER again.
type Machine struct {
	owner  *Owner
	log    *slog.Logger
	check  time.Duration
	notify *notifier
	faults chan Transition
	nudge  chan struct{}
	reqs   chan updateRequest

	running atomic.Bool
	stopped chan struct{}

	confirm func(ctx context.Context) error

	// observe, when set (by tests), sees every transition.
	observe func(Transition)

	mu        sync.Mutex
	state     State
	leader    bool // the last SetLeader
	leaderNew bool // SetLeader was called since the loop last looked
}

type updateRequest struct {
	vips []VIP
	err  chan error
}

// NewMachine returns a Machine driving o; nothing happens until Run.
func NewMachine(o *Owner, opts MachineOptions) *Machine {
	if opts.CheckInterval <= 0 {
		opts.CheckInterval = DefaultCheckInterval
	}
	return &Machine{
		owner:   o,
		log:     o.log,
		check:   opts.CheckInterval,
		notify:  newNotifier(opts.Notify, o.log),
		confirm: opts.Confirm,
		faults:  make(chan Transition, 1),
		nudge:   make(chan struct{}, 1),
		reqs:    make(chan updateRequest),
		stopped: make(chan struct{}),
	}
}

// SetLeader tells the machine whether this node is the Raft leader (call
// it with true after Barrier, with false the moment leadership is lost).
// It never blocks; the machine acts on the latest value.
func (m *Machine) SetLeader(leader bool) {
	m.mu.Lock()
	m.leader, m.leaderNew = leader, true
	m.mu.Unlock()
	m.poke()
}

// poke wakes the loop to evaluate its inputs again; it never blocks.
func (m *Machine) poke() {
	select {
	case m.nudge <- struct{}{}:
	default:
	}
}

// State returns the current state.
func (m *Machine) State() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Faults delivers a Transition each time the machine enters FAULT: the
// director's cue to give up Raft leadership (TransferLeadership) so that a
// director with a working interface takes the VIPs over. It holds at most
// one pending fault; later ones are dropped while one is unread. If the
// node is still leader after the transfer attempt (it failed), call
// SetLeader(true) again: the machine becomes MASTER once the interface is
// back.
func (m *Machine) Faults() <-chan Transition { return m.faults }

// Update replaces the configured VIPs (a configuration reload) through the
// running machine: see Owner.Update. It waits for Run to apply it, or for
// ctx.
func (m *Machine) Update(ctx context.Context, vips []VIP) error {
	r := updateRequest{vips: vips, err: make(chan error, 1)}
	select {
	case m.reqs <- r:
	case <-m.stopped:
		return errors.New("vrrp machine stopped")
	case <-ctx.Done():
		return fmt.Errorf("update vips: %w", ctx.Err())
	}
	select {
	case err := <-r.err:
		return err
	case <-ctx.Done():
		return fmt.Errorf("update vips: %w", ctx.Err())
	}
}

// loop is the state of Run's goroutine.
type loop struct {
	leader bool
	links  map[string]LinkStatus
	// faultIface is the interface that caused the current FAULT.
	faultIface string
}

// Run runs the machine until ctx is done: it first releases any VIP left
// on the interfaces (the startup cleanup), then follows SetLeader and the
// interfaces. When ctx is done it releases the VIPs, waits for its
// goroutines (link watcher, notify scripts) to end and returns; the error
// is that of the final release. Run may be called once.
func (m *Machine) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("vrrp machine already running")
	}
	defer close(m.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	links := make(chan Link)
	wg.Go(func() { watchLinks(ctx, m.owner.kernel, m.log, links) })
	wg.Go(func() { m.notify.run(ctx) })

	st := &loop{links: make(map[string]LinkStatus)}
	m.readLinks(st)
	m.takeLeader(st)
	m.evaluate(ctx, st)

	tick := time.NewTicker(m.check)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			err := m.owner.Release(context.WithoutCancel(ctx))
			m.setState(StateStop, ReasonShutdown, "")
			cancel()
			wg.Wait()
			if err != nil {
				return fmt.Errorf("release vips on shutdown: %w", err)
			}
			return nil
		case l := <-links:
			if l.Name == "" {
				m.readLinks(st)
			} else if _, ok := st.links[l.Name]; ok {
				st.links[l.Name] = l.Status
			}
			m.evaluate(ctx, st)
		case <-m.nudge:
			m.takeLeader(st)
			m.evaluate(ctx, st)
		case r := <-m.reqs:
			err := m.owner.Update(ctx, r.vips)
			m.readLinks(st)
			m.evaluate(ctx, st)
			r.err <- err
		case <-tick.C:
			m.readLinks(st)
			m.evaluate(ctx, st)
			m.maintain(ctx)
		}
	}
}

// readLinks reads the state of every interface of the configured VIPs
// (and forgets interfaces no VIP uses any more).
func (m *Machine) readLinks(st *loop) {
	seen := make(map[string]bool)
	for _, v := range m.owner.VIPs() {
		if seen[v.Interface] {
			continue
		}
		seen[v.Interface] = true
		l, err := readLink(m.owner.kernel, v.Interface)
		if err != nil {
			m.log.Warn("cannot read interface state", keyInterface, v.Interface, keyError, err)
			if _, known := st.links[v.Interface]; !known {
				st.links[v.Interface] = LinkUp // optimistic until known: the add will tell
			}
			continue
		}
		st.links[v.Interface] = l.Status
	}
	for name := range st.links {
		if !seen[name] {
			delete(st.links, name)
		}
	}
}

func (m *Machine) takeLeader(st *loop) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leaderNew {
		st.leader, m.leaderNew = m.leader, false
	}
}

// evaluate moves to the state the inputs ask for.
func (m *Machine) evaluate(ctx context.Context, st *loop) {
	names := make([]string, 0, len(st.links))
	for n := range st.links {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if s := st.links[n]; s != LinkUp {
			if m.State() != StateFault {
				r := ReasonInterfaceDown
				if s == LinkMissing {
					r = ReasonInterfaceMissing
				}
				m.enterFault(ctx, st, r, n)
			}
			return
		}
	}
	switch m.State() {
	case StateInit:
		m.enterBackup(ctx, ReasonStart, "")
	case StateFault:
		m.enterBackup(ctx, ReasonInterfaceUp, st.faultIface)
		st.faultIface = ""
	}
	switch cur := m.State(); {
	case st.leader && cur != StateMaster:
		if m.confirm != nil {
			if err := m.confirm(ctx); err != nil {
				m.log.Warn("leadership not confirmed: vips not taken", keyError, err)
				time.AfterFunc(confirmRetry, m.poke)
				return
			}
			// The confirmation may have taken a while: a SetLeader(false)
			// given meanwhile wins.
			if m.takeLeader(st); !st.leader {
				return
			}
		}
		m.enterMaster(ctx)
	case !st.leader && cur == StateMaster:
		m.enterBackup(ctx, ReasonNotLeader, "")
	}
}

func (m *Machine) enterMaster(ctx context.Context) {
	if err := m.owner.Acquire(ctx); err != nil {
		// Stay MASTER with what could be added: the periodic check
		// retries, and a broken interface leads to FAULT.
		m.log.Error("acquiring vips", keyState, StateMaster.String(), keyError, err)
	}
	m.setState(StateMaster, ReasonLeader, "")
}

func (m *Machine) enterBackup(ctx context.Context, r Reason, ifname string) {
	if err := m.owner.Release(ctx); err != nil {
		m.log.Error("releasing vips", keyState, StateBackup.String(), keyError, err)
	}
	m.setState(StateBackup, r, ifname)
}

func (m *Machine) enterFault(ctx context.Context, st *loop, r Reason, ifname string) {
	if err := m.owner.Release(ctx); err != nil {
		m.log.Error("releasing vips", keyState, StateFault.String(), keyError, err)
	}
	// Forget the leadership signal, including one not yet seen by the
	// loop: only a SetLeader(true) after the fault leads back to MASTER.
	st.leader = false
	st.faultIface = ifname
	m.mu.Lock()
	m.leaderNew = false
	m.mu.Unlock()
	t := m.setState(StateFault, r, ifname)
	select {
	case m.faults <- t:
	default:
	}
}

// setState records the new state, logs it and queues its notify scripts.
func (m *Machine) setState(to State, r Reason, ifname string) Transition {
	m.mu.Lock()
	from := m.state
	m.state = to
	m.mu.Unlock()
	t := Transition{From: from, To: to, Reason: r, Interface: ifname, VIPs: m.owner.VIPs()}
	attrs := []any{keyState, to.String(), "from", from.String(), "reason", string(r)}
	if ifname != "" {
		attrs = append(attrs, keyInterface, ifname)
	}
	if to == StateFault {
		m.log.Warn("vrrp state changed", attrs...)
	} else {
		m.log.Info("vrrp state changed", attrs...)
	}
	if to != StateStop {
		m.notify.enqueue(t)
	}
	if m.observe != nil {
		m.observe(t)
	}
	return t
}

// maintain repairs the VIPs on the periodic check.
func (m *Machine) maintain(ctx context.Context) {
	if m.State() == StateMaster {
		if err := m.owner.Acquire(ctx); err != nil {
			m.log.Warn("repairing vips", keyState, StateMaster.String(), keyError, err)
		}
		return
	}
	if _, err := m.owner.ReleaseStale(ctx); err != nil {
		m.log.Warn("removing stale vips", keyState, m.State().String(), keyError, err)
	}
}
