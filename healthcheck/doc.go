// Package healthcheck checks the health of real servers and decides their
// IPVS weights.
//
// It has three parts:
//
//   - Checkers (Checker, built by NewChecker from a Spec, whose Probe is
//     one of TCP, HTTP, UDP, DNS, ICMP, Exec and Agent). A check probes a
//     Target (the real's address and the service port unless the Spec
//     overrides them) once, within its timeout, and returns a Result with
//     a typed Reason.
//   - The Scheduler runs thousands of checks at their intervals on a
//     bounded pool of workers, turns results into up/down states with rise
//     and fall (RiseFall), reports state changes (Event) and keeps the last
//     result of every check (Snapshot). ChecksFor builds its checks from
//     Services (this package's own input: the caller translates its
//     configuration); Update applies a new set keeping the state of
//     unchanged checks.
//   - The policy (Desire) maps a service, the health and admin state of its
//     reals to the destinations and weights IPVS should have, with the
//     sorry server and quorum. It is pure.
//
// # Defaults
//
// A zero field of a Spec takes the default documented on the Default*
// constants: interval 2 s, timeout 1 s, rise 2, fall 3, initial down,
// status 200-399, TLS verification off, agent port 9797 and path /status,
// dns query ". A" expecting NOERROR, 256 concurrent checks. They are also
// the configuration's defaults: internal/config defines its own as these.
//
// # Connections
//
// tcp, http, https and agent checks open a new connection for every check
// (no keep-alive, no pooled idle connections: a server that stopped
// accepting cannot hide behind an old connection) and close it with a TCP
// reset, which keeps the director's TIME_WAIT table empty at thousands of
// checks a second; backends may log the reset.
//
// # Realserver agent contract
//
// The agent check's HTTP contract, which dsrd realserver's status endpoint
// implements, is documented on agentChecker in agent.go and summed up here:
// GET http://REAL:9797/status; 200 is up; 503 is down, and a body whose
// first line is "draining" (or JSON {"status":"draining"}) asks for a drain,
// which gives weight 0 (no new connections, established ones continue)
// whatever on_down says; any other answer is down.
//
// # Goroutines
//
// Scheduler.Run runs the dispatch loop on its caller's goroutine and starts
// Concurrency workers and one notifier; all of them end when Run's context
// is done, and Run returns only after they have. A check in flight is
// canceled through the same context. Checkers start no goroutine that
// outlives a check: the exec checker's waiter ends when the checked
// process exits, which the checker forces by killing its process group at
// the timeout; context.AfterFunc callbacks are stopped when a check ends.
package healthcheck
