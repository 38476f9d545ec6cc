//go:build vmtest && vmcluster && vmchaos

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsrd/dsrd/tests/chaos"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// chaosStream collects one workload's probes.
type chaosStream struct {
	mu     sync.Mutex
	probes []chaos.Probe
}

func (s *chaosStream) add(at time.Duration, err error) {
	p := chaos.Probe{At: at, OK: err == nil}
	if err != nil {
		p.Err = err.Error()
	}
	s.mu.Lock()
	s.probes = append(s.probes, p)
	s.mu.Unlock()
}

func (s *chaosStream) all() []chaos.Probe {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]chaos.Probe(nil), s.probes...)
	// The streams' goroutines append as their probes end: order by start.
	slices.SortStableFunc(out, func(a, b chaos.Probe) int { return int(a.At - b.At) })
	return out
}

// chaosStreamResult is invariant (e) for one workload.
type chaosStreamResult struct {
	name       string
	probes     int
	outside    float64
	worst      map[chaos.Kind][]time.Duration
	violations []chaos.Violation
}

func chaosOutages(name string, s *chaosStream, schedule []chaos.Fault) chaosStreamResult {
	ps := s.all()
	rate, worst, v := chaos.Outages(ps, schedule, chaosGrace)
	for i := range v {
		v[i].Detail = name + ": " + v[i].Detail
	}
	return chaosStreamResult{name: name, probes: len(ps), outside: rate, worst: worst, violations: v}
}

// chaosShort sends one HTTP request to the VIP every chaosProbeEvery;
// failed calls failed(at, err) (which must not block).
func chaosShort(ctx context.Context, since func() time.Duration, s *chaosStream, failed func(time.Duration, error)) {
	client := lab.HTTPClient(lab.Client, time.Second)
	tick := time.NewTicker(chaosProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		at := since()
		err := chaosGet(ctx, client)
		if ctx.Err() != nil {
			return // cut short by the end of the run, not by the cluster
		}
		if err != nil {
			failed(at, err)
		}
		s.add(at, err)
	}
}

// chaosLongLived keeps one connection to the echo service open and sends
// a line every chaosLongEvery; each exchange is a probe (answered within
// a second). A connection that fails is closed and opened again: the
// reconnection's outcome is the next probe.
func chaosLongLived(ctx context.Context, since func() time.Duration, s *chaosStream) {
	addr := netip.AddrPortFrom(clusterVIP, 9000).String()
	var c net.Conn
	var r *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	tick := time.NewTicker(chaosLongEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		at := since()
		var err error
		if c == nil {
			dctx, cancel := context.WithTimeout(ctx, time.Second)
			var nc net.Conn
			nc, err = lab.Dial(dctx, lab.Client, "tcp", addr)
			cancel()
			if err == nil {
				nc.SetDeadline(time.Now().Add(time.Second))
				r = bufio.NewReader(nc)
				if _, err = r.ReadString('\n'); err != nil { // the backend's greeting
					nc.Close()
					err = fmt.Errorf("greeting: %w", err)
				} else {
					c = nc
				}
			}
		}
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			var line string
			if _, err = io.WriteString(c, "x\n"); err == nil {
				if line, err = r.ReadString('\n'); err == nil && line != "x\n" {
					err = fmt.Errorf("echoed %q", line)
				}
			}
			if err != nil {
				c.Close()
				c = nil
				err = fmt.Errorf("an established connection broke: %w", err)
			}
		}
		if ctx.Err() != nil {
			return
		}
		s.add(at, err)
	}
}

// chaosUDP sends a datagram to the UDP service every chaosLongEvery, each
// from a new socket (a new flow), and wants a backend's answer within a
// second.
func chaosUDP(ctx context.Context, since func() time.Duration, s *chaosStream) {
	addr := netip.AddrPortFrom(clusterVIP, chaosUDPPort).String()
	tick := time.NewTicker(chaosLongEvery)
	defer tick.Stop()
	buf := make([]byte, 512)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		at := since()
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := lab.Dial(dctx, lab.Client, "udp", addr)
		cancel()
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			if _, err = c.Write([]byte("ping\n")); err == nil {
				var n int
				if n, err = c.Read(buf); err == nil && !bytes.HasPrefix(buf[:n], []byte("rs")) {
					err = fmt.Errorf("answered %q", buf[:n])
				}
			}
			c.Close()
		}
		if ctx.Err() != nil {
			return
		}
		s.add(at, err)
	}
}

// addUDPService adds the UDP service the UDP probes use (udp/9000 on the
// VIP, mh over rs1-rs3, a udp check) to both directors' files and reloads.
func (r *chaosRunner) addUDPService() {
	t := r.t
	for _, d := range lab.ClusterDirectors() {
		if err := lab.ClusterConfigEdit(r.c.ConfPath(d), func(doc map[string]any) error {
			svcs, _ := doc["services"].([]any)
			var check any
			for _, s := range svcs {
				if svc, _ := s.(map[string]any); svc != nil && svc["name"] == "echo" {
					hc, _ := svc["health_check"].(map[string]any)
					check = map[string]any{"type": "udp", "send": "ping", "expect": "rs",
						"interval": hc["interval"], "timeout": hc["timeout"], "rise": hc["rise"], "fall": hc["fall"]}
				}
			}
			if check == nil {
				return fmt.Errorf("no echo service to copy the check's timing from")
			}
			var reals []any
			for _, h := range clusterReals {
				reals = append(reals, map[string]any{"address": h.IPv4().String()})
			}
			doc["services"] = append(svcs, map[string]any{"name": "udp", "vip": clusterVIP.String(), "port": chaosUDPPort,
				"protocol": "udp", "scheduler": "mh", "scheduler_flags": []any{"mh-port"}, "health_check": check, "reals": reals})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.c.Status(clusterCtx(t), lab.Dir1)
	if err != nil {
		t.Fatal(err)
	}
	clusterReloadWait(t, r.c, lab.Dir1, st.Generation)
	lab.Eventually(t, clusterConverge, 200*time.Millisecond, func() error {
		for _, d := range lab.ClusterDirectors() {
			w, err := lab.ClusterIPVSWeights(clusterCtx(t), d)
			if err != nil {
				return err
			}
			key := "UDP " + netip.AddrPortFrom(clusterVIP, chaosUDPPort).String()
			if n := len(w[key]); n != len(clusterReals) {
				return fmt.Errorf("%s: %s has %d reals: %v", d, key, n, w)
			}
			for real, weight := range w[key] {
				if weight == 0 {
					return fmt.Errorf("%s: %s %s at weight 0", d, key, real)
				}
			}
		}
		return nil
	})
}

// chaosResources samples the daemons' footprint.
type chaosResources struct {
	c       *lab.Cluster
	mu      sync.Mutex
	samples []chaos.ResourceSample
}

// chaosDaemons are the daemons sampled: directors, the witness, agents.
var chaosDaemons = []lab.Host{lab.Dir1, lab.Dir2, lab.Dir3, lab.RS1, lab.RS2, lab.RS3}

func (r *chaosResources) run(ctx context.Context, since func() time.Duration, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		at := since()
		m := r.read(ctx)
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.samples = append(r.samples, chaos.ResourceSample{At: at, Daemons: m})
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (r *chaosResources) all() []chaos.ResourceSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]chaos.ResourceSample(nil), r.samples...)
}

// read reads every running daemon's footprint: /proc for the process,
// the metrics endpoint (in the daemon's namespace) for its goroutines.
func (r *chaosResources) read(ctx context.Context) map[string]chaos.Resources {
	out := map[string]chaos.Resources{}
	for _, h := range chaosDaemons {
		pid, err := r.c.PID(h)
		if err != nil || !r.c.Running(h) {
			continue
		}
		res, err := chaosProcResources(pid)
		if err != nil {
			continue
		}
		name := string(h)
		res.Goroutines = -1
		if h == lab.Dir1 || h == lab.Dir2 || h == lab.Dir3 {
			g, err := chaosGoroutines(ctx, h)
			if err != nil {
				continue // stalled or starting: not read this time
			}
			res.Goroutines = g
		} else {
			name = "agent@" + name
		}
		out[name] = res
	}
	return out
}

// chaosProcResources reads a process's threads, RSS and open files.
func chaosProcResources(pid int) (chaos.Resources, error) {
	res := chaos.Resources{PID: pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return res, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(l, ":")
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			res.RSS = n << 10
		case "Threads":
			res.Threads = int(n)
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return res, err
	}
	res.FDs = len(fds)
	return res, nil
}

// chaosGoroutines reads go_goroutines from the metrics endpoint of h's
// daemon (127.0.0.1:9796 in its namespace).
func chaosGoroutines(ctx context.Context, h lab.Host) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9796/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := lab.HTTPClient(h, 2*time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("%s: no go_goroutines in its metrics", h)
}

// chaosMaxDiagnoses bounds the snapshots a run takes of failed requests.
const chaosMaxDiagnoses = 20

// diagnose snapshots, on its own goroutine, what a request that failed
// outside every fault's window met: which MAC the client sends the VIP
// to, which director holds the VIP, their IPVS weights for web and the
// half-open connections IPVS holds from the client. A failure inside a
// fault's window is expected and not looked at.
func (r *chaosRunner) diagnose(at time.Duration, failure error) {
	for _, f := range r.windows(at + time.Hour) {
		if at >= f.At && at < f.End()+chaosGrace {
			return
		}
	}
	r.mu.Lock()
	if r.diagnosing >= chaosMaxDiagnoses {
		r.mu.Unlock()
		return
	}
	r.diagnosing++
	r.mu.Unlock()
	r.dwg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var b strings.Builder
		fmt.Fprintf(&b, "+%s %v\n", at.Round(time.Millisecond), failure)
		out, err := lab.InNS(ctx, lab.Client, "ip", "neigh", "show", clusterVIP.String())
		fmt.Fprintf(&b, "  client's neighbour entry for the VIP: %s%v\n", strings.TrimSpace(out), errOrNil(err))
		for _, d := range lab.ClusterDirectors() {
			addrs, err := lab.InNS(ctx, d, "ip", "-br", "addr", "show")
			holds := err == nil && strings.Contains(addrs, clusterVIP.String()+"/")
			link, _ := lab.InNS(ctx, d, "cat", "/sys/class/net/eth0/address")
			ipvs, err2 := lab.InNS(ctx, d, "ipvsadm", "-L", "-n", "-t", netip.AddrPortFrom(clusterVIP, 80).String())
			conns, _ := lab.InNS(ctx, d, "ipvsadm", "-L", "-n", "-c")
			half := 0
			for _, l := range strings.Split(conns, "\n") {
				if strings.Contains(l, lab.Client.IPv4().String()+":") && strings.Contains(l, "SYN_RECV") {
					half++
				}
			}
			fmt.Fprintf(&b, "  %s (eth0 %s): holds the VIP %v%v; %d half-open connections from the client; web: %s%v\n",
				d, strings.TrimSpace(link), holds, errOrNil(err), half, chaosWeightsLine(ipvs), errOrNil(err2))
		}
		r.mu.Lock()
		r.diagnoses = append(r.diagnoses, b.String())
		r.mu.Unlock()
	})
}

// errOrNil formats err as " (err)", or nothing.
func errOrNil(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// chaosWeightsLine shortens ipvsadm -Ln -t's output to its destinations'
// addresses and weights on one line.
func chaosWeightsLine(out string) string {
	var ds []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "->" {
			ds = append(ds, f[1]+"="+f[3])
		}
	}
	if len(ds) == 0 {
		return "no destinations"
	}
	return strings.Join(ds, " ")
}
