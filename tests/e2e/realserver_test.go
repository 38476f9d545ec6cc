//go:build vmtest

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/realserver"
	"github.com/dsrd/dsrd/tests/e2e/lab"
)

// The realserver agent in the lab: a DR service on dir1 whose backends rs1
// and rs2 get their VIP and ARP sysctls from the agent only. Each agent is
// this test binary re-run as a helper process inside the real server's
// namespace (ip netns exec rsN ... -test.run=^TestRealserverAgentHelper$),
// so it runs the library exactly as dsrd realserver does: in its own
// namespace, stopped by SIGTERM, cleaning up on exit.

const (
	rsVIP     = "203.0.113.10"
	rsService = rsVIP + ":80"
	// rsAgentStart bounds an agent's start under TCG, process exec included.
	rsAgentStart = 30 * time.Second
)

// Environment of the helper process.
const (
	rsEnvHelper  = "DSRD_RS_HELPER"
	rsEnvVIPs    = "DSRD_RS_VIPS"
	rsEnvDataDir = "DSRD_RS_DATA_DIR"
	rsEnvReady   = "DSRD_RS_READY"
)

// TestRealserverAgentHelper is not a test: it is the agent process the DR
// test starts in a real server's namespace.
func TestRealserverAgentHelper(t *testing.T) {
	if os.Getenv(rsEnvHelper) != "1" {
		t.Skip("helper process of TestRealserverDR, run only by it")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var vips []netip.Addr
	for _, s := range strings.Split(os.Getenv(rsEnvVIPs), ",") {
		vips = append(vips, netip.MustParseAddr(s))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := realserver.New(realserver.Config{
		VIPs:          vips,
		Interfaces:    []string{"eth0"},
		DataDir:       os.Getenv(rsEnvDataDir),
		CleanupOnExit: true,
		StatusAddress: ":9797",
		// The file's default; repairs here come from netlink events.
		ResyncInterval: 30 * time.Second,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	go func() {
		select {
		case <-a.Ready():
			if err := os.WriteFile(os.Getenv(rsEnvReady), []byte("ready\n"), 0o644); err != nil {
				log.Error("write ready file", slog.Any("error", err))
			}
		case <-ctx.Done():
		}
	}()
	if err := a.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// rsAgentProc is a running helper agent.
type rsAgentProc struct {
	host    lab.Host
	dataDir string
	cmd     *exec.Cmd
	done    chan error
	log     *strings.Builder
}

// rsStartAgent runs the agent in h until stop (or the test's end).
func rsStartAgent(t *testing.T, h lab.Host, dataDir string) *rsAgentProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ready := filepath.Join(t.TempDir(), "ready")
	p := &rsAgentProc{host: h, dataDir: dataDir, done: make(chan error, 1), log: &strings.Builder{}}
	// ip netns exec execs the program: the pid is the agent's own, and
	// SIGTERM reaches it directly.
	p.cmd = exec.Command("ip", "netns", "exec", string(h), exe, "-test.run=^TestRealserverAgentHelper$", "-test.v")
	p.cmd.Env = append(os.Environ(), rsEnvHelper+"=1", rsEnvVIPs+"="+rsVIP, rsEnvDataDir+"="+dataDir, rsEnvReady+"="+ready)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	err = lab.Poll(rsAgentStart, 50*time.Millisecond, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			return fmt.Errorf("agent in %s exited: %v\n%s", h, err, p.log)
		default:
		}
		if _, err := os.Stat(ready); err != nil {
			return fmt.Errorf("agent in %s not ready", h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stop sends SIGTERM and waits for the agent's clean exit (with cleanup).
func (p *rsAgentProc) stop(t *testing.T) {
	t.Helper()
	if p.cmd.ProcessState != nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("agent in %s: %v\n%s", p.host, err, p.log)
		}
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		t.Errorf("agent in %s did not stop within 20s of SIGTERM\n%s", p.host, p.log)
	}
	t.Logf("agent in %s:\n%s", p.host, p.log)
}

// rsGet fetches url from h and returns the status code and body.
func rsGet(h lab.Host, url string, timeout time.Duration) (int, string, error) {
	resp, err := lab.HTTPClient(h, timeout).Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// rsCheckIn runs the agent's diagnosis on h's namespace from this process.
func rsCheckIn(t *testing.T, h lab.Host, dataDir string) realserver.Report {
	t.Helper()
	ns, err := netns.GetFromName(string(h))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	k, err := netkernel.NewAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	a, err := realserver.New(realserver.Config{
		VIPs:       []netip.Addr{netip.MustParseAddr(rsVIP)},
		Interfaces: []string{"eth0"},
		DataDir:    dataDir,
		// Check only: the agent never runs, never resyncs.
		ResyncInterval: time.Hour,
	}, nil, realserver.WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.Check(context.Background(), realserver.CheckOptions{Sources: []netip.Addr{lab.Client.IPv4()}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Table(&b)
	t.Logf("check in %s:\n%s", h, b.String())
	return rep
}

func TestRealserverDR(t *testing.T) {
	lab.Require(t)
	lab.Up(t)
	lab.StartBackends(t)
	vip := netip.MustParseAddr(rsVIP)

	// dir1 owns the VIP and balances it over rs1 and rs2 in DR mode.
	lab.MustIPBatch(t, lab.Dir1, "addr add "+rsVIP+"/32 dev eth0")
	lab.MustInNS(t, lab.Dir1, "ipvsadm", "-A", "-t", rsService, "-s", "rr")
	for _, rs := range []lab.Host{lab.RS1, lab.RS2} {
		lab.MustInNS(t, lab.Dir1, "ipvsadm", "-a", "-t", rsService, "-r", rs.IPv4().String()+":80", "-g", "-w", "1")
	}
	origIgnore, err := lab.ReadSysctl(lab.RS2, "net.ipv4.conf.all.arp_ignore")
	if err != nil {
		t.Fatal(err)
	}

	// Without the agent the backends drop the VIP's traffic.
	if rep := rsCheckIn(t, lab.RS2, t.TempDir()); rep.OK() {
		t.Fatal("check passes on a real server the agent never touched")
	}

	dataDirs := map[lab.Host]string{lab.RS1: t.TempDir(), lab.RS2: t.TempDir()}
	rsStartAgent(t, lab.RS1, dataDirs[lab.RS1])
	rs2 := rsStartAgent(t, lab.RS2, dataDirs[lab.RS2])

	// The client reaches both backends through the director.
	url := "http://" + rsVIP + "/"
	seen := map[string]bool{}
	lab.Eventually(t, 20*time.Second, 50*time.Millisecond, func() error {
		code, body, err := rsGet(lab.Client, url, 2*time.Second)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d", code)
		}
		seen[body] = true
		if !seen["rs1"] || !seen["rs2"] {
			return fmt.Errorf("reached %v so far", seen)
		}
		return nil
	})

	// Only the director answers ARP for the VIP: the agents' arp_ignore.
	macs, err := lab.ARPProbe(lab.Client, vip, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(macs) != 1 || macs[0] != lab.Dir1.MAC() {
		t.Errorf("ARP for the VIP answered by %v, want only dir1 (%s)", macs, lab.Dir1.MAC())
	}

	// The status endpoint, as the director's agent check sees it.
	status := func(h lab.Host) (int, string) {
		t.Helper()
		code, body, err := rsGet(lab.Dir1, "http://"+h.IPv4().String()+":9797/status", 5*time.Second)
		if err != nil {
			t.Fatalf("status of %s: %v", h, err)
		}
		return code, body
	}
	if code, body := status(lab.RS1); code != http.StatusOK || body != "ok" {
		t.Errorf("rs1 status: %d %q, want 200 ok", code, body)
	}
	if err := realserver.SetDrain(dataDirs[lab.RS1], true); err != nil {
		t.Fatal(err)
	}
	if code, body := status(lab.RS1); code != http.StatusServiceUnavailable || body != "draining" {
		t.Errorf("drained rs1 status: %d %q, want 503 draining", code, body)
	}
	if err := realserver.SetDrain(dataDirs[lab.RS1], false); err != nil {
		t.Fatal(err)
	}
	if code, _ := status(lab.RS1); code != http.StatusOK {
		t.Errorf("undrained rs1 status: %d, want 200", code)
	}
	if rep := rsCheckIn(t, lab.RS2, dataDirs[lab.RS2]); !rep.OK() {
		t.Errorf("check fails with the agent running: %s", rep.Summary())
	}

	// Stop rs2's agent: it cleans up, and rs2 drops the VIP's traffic.
	rs2.stop(t)
	if v, err := lab.ReadSysctl(lab.RS2, "net.ipv4.conf.all.arp_ignore"); err != nil || v != origIgnore {
		t.Errorf("rs2 arp_ignore after cleanup = %q, %v; want the original %q", v, err, origIgnore)
	}
	if out := lab.MustIP(t, lab.RS2, "-br", "addr", "show", "dev", "lo"); strings.Contains(out, rsVIP) {
		t.Errorf("VIP still on rs2's lo after cleanup: %s", out)
	}
	// New connections go to rs2 only.
	lab.MustInNS(t, lab.Dir1, "ipvsadm", "-e", "-t", rsService, "-r", lab.RS1.IPv4().String()+":80", "-g", "-w", "0")
	for range 2 {
		if _, body, err := rsGet(lab.Client, url, 2*time.Second); err == nil {
			t.Errorf("request answered by %q with rs2's agent stopped and rs1 at weight 0", body)
		}
	}
	rep := rsCheckIn(t, lab.RS2, dataDirs[lab.RS2])
	v, _ := rep.VIP(vip)
	if v.OK || !v.Has(realserver.CodeVIPMissing) || !v.Has(realserver.CodeARPIgnore) || !v.Has(realserver.CodeARPAnnounce) {
		t.Errorf("check after cleanup: %v, want vip-missing, arp-ignore and arp-announce", v.Reasons)
	}

	// The agent back, rs2 serves again.
	rsStartAgent(t, lab.RS2, dataDirs[lab.RS2])
	lab.Eventually(t, 20*time.Second, 100*time.Millisecond, func() error {
		code, body, err := rsGet(lab.Client, url, 2*time.Second)
		if err != nil {
			return err
		}
		if code != 200 || body != "rs2" {
			return fmt.Errorf("%d %q", code, body)
		}
		return nil
	})
}
