// Command failover is the measuring side of the failover benchmark
// (tests/bench/failover/run) and of the demo (tests/vm/demo). It runs inside
// the VM lab, built on the host: one program started once is far more
// precise under TCG than a shell loop, where every exec costs 0.1 to 1 s.
//
//	failover spread  [-n 30] [-target 203.0.113.10:80]
//	    N HTTP requests, a new connection each; prints "NAME COUNT" per
//	    backend and "failed COUNT". Run it in the client's namespace.
//	failover monitor -out DIR [-probe http|tcp] [-interval 10ms] [-timeout 300ms]
//	                 [-vip-ns dir1,dir2] [-paused]
//	    Until SIGTERM/SIGINT: a probe (an HTTP GET, or a TCP handshake, on a
//	    new connection) started every interval, each bounded by timeout,
//	    logged to DIR/probes.log; SIGUSR1 pauses the probes, SIGUSR2 resumes
//	    them. And every change of the VIP's holders among the -vip-ns
//	    namespaces' eth0 (netlink address notifications, cross-checked by a
//	    poll), logged to DIR/vip.log; two holders at once is a split brain.
//	    On exit, DIR/summary. Run it in the client's namespace.
//	failover kill    -pid PID[,PID] [-netns NS [-input FILE] -- RELEASE...]
//	    SIGKILL, then at once RELEASE (what a systemd ExecStopPost runs) in
//	    NS; with -input, RELEASE is started before the kill and reads FILE
//	    from a FIFO (its "{}" argument) written at the kill. Prints
//	    killed=NS [released=NS]. With -owner NS, kills only if NS holds the
//	    VIP right then (else exit 3).
//	failover event   -out DIR -kill TIME -old NODE [-crash] [-wait 30s]
//	    Waits until the client is served again after the kill of NODE at
//	    TIME and prints what happened as key=value (outage_ms: kill to the
//	    first success of a probe started after the VIP left NODE).
//	failover settle  -socket dir1=PATH,dir2=PATH,dir3=PATH [-timeout 60s] [-stable 1s]
//	    Waits until the dsrd cluster is settled: every node answers and
//	    follows one director in one term, the leader alone holds the VIP,
//	    and every real is up in every director's IPVS. Prints the leader.
//	failover stats   < numbers
//	    n, median, p95 (nearest rank), max of the numbers on stdin.
//	failover report  PHASE_FILE...
//	    The benchmark's tables, in Markdown, from the files it wrote.
//
// Timestamps are CLOCK_REALTIME nanoseconds, the clock bash's EPOCHREALTIME
// reads, so a shell's times and the program's compare directly.
package main

import (
	"errors"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "spread":
		err = spreadCmd(args)
	case "monitor":
		err = monitorCmd(args)
	case "event":
		err = eventCmd(args)
	case "settle":
		err = settleCmd(args)
	case "kill":
		err = killCmd(args)
	case "stats":
		err = statsCmd(args)
	case "report":
		err = reportCmd(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "failover %s: %v\n", os.Args[1], err)
		if errors.Is(err, errNotOwner) {
			os.Exit(3)
		}
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: failover spread|monitor|event|settle|kill|stats|report [FLAGS]")
	os.Exit(2)
}
