package lab

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// IPVSConn is one entry of the kernel's IPVS connection table.
type IPVSConn struct {
	Proto   string // TCP, UDP, SCTP
	State   string // ESTABLISHED, FIN_WAIT, SYN_RECV, ...
	Source  string // client address:port, IPv6 in brackets
	Virtual string // VIP:port
	Dest    string // real server address:port
}

// IPVSConns lists h's IPVS connection table (ipvsadm -Lnc).
func IPVSConns(ctx context.Context, h Host) ([]IPVSConn, error) {
	out, err := InNS(ctx, h, "ipvsadm", "-L", "-n", "-c")
	if err != nil {
		return nil, err
	}
	return ParseIPVSConns(out)
}

// ParseIPVSConns parses the output of ipvsadm -Lnc.
func ParseIPVSConns(out string) ([]IPVSConn, error) {
	var conns []IPVSConn
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "IPVS" || f[0] == "pro":
		case len(f) == 6:
			conns = append(conns, IPVSConn{Proto: f[0], State: f[2], Source: f[3], Virtual: f[4], Dest: f[5]})
		default:
			return nil, fmt.Errorf("ipvsadm -Lnc line %d: unexpected %q", i+1, line)
		}
	}
	return conns, nil
}

// IPVSStats are the counters of one IPVS service or destination.
type IPVSStats struct {
	Conns, InPkts, OutPkts, InBytes, OutBytes uint64
}

// IPVSServiceStats are the counters of a service and of each of its
// destinations, keyed by address:port.
type IPVSServiceStats struct {
	IPVSStats
	Dests map[string]IPVSStats
}

// IPVSStatsOf reads h's IPVS counters (ipvsadm -Ln --stats --exact), keyed
// by "PROTO VIP:port" (IPv6 in brackets). The kernel folds its per-CPU
// counters into these every 2 s, so they lag the traffic by up to that.
func IPVSStatsOf(ctx context.Context, h Host) (map[string]IPVSServiceStats, error) {
	out, err := InNS(ctx, h, "ipvsadm", "-L", "-n", "--stats", "--exact")
	if err != nil {
		return nil, err
	}
	return ParseIPVSStats(out)
}

// ParseIPVSStats parses the output of ipvsadm -Ln --stats --exact.
func ParseIPVSStats(out string) (map[string]IPVSServiceStats, error) {
	services := map[string]IPVSServiceStats{}
	var current string
	for i, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "IP" || f[0] == "Prot" || (f[0] == "->" && len(f) == 2):
			// Headers.
		case f[0] == "->" && len(f) == 7:
			if current == "" {
				return nil, fmt.Errorf("ipvsadm --stats line %d: destination before any service", i+1)
			}
			st, err := parseCounters(f[2:])
			if err != nil {
				return nil, fmt.Errorf("ipvsadm --stats line %d: %w", i+1, err)
			}
			services[current].Dests[f[1]] = st
		case len(f) == 7:
			st, err := parseCounters(f[2:])
			if err != nil {
				return nil, fmt.Errorf("ipvsadm --stats line %d: %w", i+1, err)
			}
			current = f[0] + " " + f[1]
			services[current] = IPVSServiceStats{IPVSStats: st, Dests: map[string]IPVSStats{}}
		default:
			return nil, fmt.Errorf("ipvsadm --stats line %d: unexpected %q", i+1, line)
		}
	}
	return services, nil
}

func parseCounters(f []string) (IPVSStats, error) {
	var n [5]uint64
	for i, s := range f {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return IPVSStats{}, fmt.Errorf("counter %q: %w", s, err)
		}
		n[i] = v
	}
	return IPVSStats{Conns: n[0], InPkts: n[1], OutPkts: n[2], InBytes: n[3], OutBytes: n[4]}, nil
}
