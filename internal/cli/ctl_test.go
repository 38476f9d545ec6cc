package cli

import (
	"context"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/api/apitest"
	"github.com/dsrd/dsrd/internal/testutil"
)

// daemon serves a fake backend through the real API server on a unix
// socket, as a director does; it stops when the test ends.
type daemon struct {
	backend *apitest.Backend
	socket  string
}

func startDaemon(t *testing.T, st api.Status) *daemon {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	d := &daemon{backend: apitest.NewBackend(st), socket: filepath.Join(dir, "run", "dsrd.sock")}
	ln, err := api.ListenUnix(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- api.NewServer(d.backend, slog.New(slog.DiscardHandler), api.ServerOptions{}).Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("api server: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("api server did not stop")
		}
	})
	return d
}

// run runs dsrd args against the daemon's socket.
func (d *daemon) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append(args, "--socket", d.socket)...)
}

func TestStatusCommand(t *testing.T) {
	d := startDaemon(t, apitest.SampleStatus())
	code, out, errOut := d.run(t, "status")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	golden(t, "status_director.golden", []byte(out))

	code, out, errOut = d.run(t, "status", "--json")
	if code != 0 {
		t.Fatalf("--json: exit %d, stderr %q", code, errOut)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if want := apitest.SampleStatus(); !reflect.DeepEqual(st, want) {
		t.Errorf("--json status:\n got %+v\nwant %+v", st, want)
	}

	// The socket from the environment.
	t.Setenv("DSRD_API_SOCKET", d.socket)
	if code, _, errOut := run(t, "status"); code != 0 {
		t.Errorf("DSRD_API_SOCKET: exit %d, stderr %q", code, errOut)
	}
}

func TestStatusNoDaemon(t *testing.T) {
	dir := testutil.ShortTempDir(t)
	sock := filepath.Join(dir, "dsrd.sock")
	code, _, errOut := run(t, "status", "--socket", sock)
	want := "dsrd status: no dsrd director or witness is running here (no socket at " + sock + ")\n"
	if code != exitFailure || errOut != want {
		t.Errorf("no socket: exit %d, stderr %q, want %q", code, errOut, want)
	}

	// A socket left by a daemon that died.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	code, _, errOut = run(t, "status", "--socket", sock)
	if code != exitFailure || !strings.Contains(errOut, "nothing answers on "+sock) {
		t.Errorf("stale socket: exit %d, stderr %q", code, errOut)
	}
}

func TestDaemonSocket(t *testing.T) {
	d := startDaemon(t, apitest.SampleStatus())
	fi, err := os.Stat(d.socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != fs.ModeSocket|0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode())
	}
	if _, err := api.ListenUnix(d.socket); err == nil || !strings.Contains(err.Error(), "another dsrd is running on") {
		t.Errorf("a second daemon on a live socket: %v", err)
	}
	// The live daemon still answers.
	if code, _, errOut := d.run(t, "status"); code != 0 {
		t.Errorf("after the refused takeover: exit %d, %q", code, errOut)
	}
}

func TestAdminCommands(t *testing.T) {
	d := startDaemon(t, apitest.SampleStatus())
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"drain", "web", "198.51.100.10"}, 0, "web (tcp/203.0.113.10:80) 198.51.100.10: enabled -> drained\n", ""},
		{[]string{"drain", "web", "198.51.100.10"}, 0, "web (tcp/203.0.113.10:80) 198.51.100.10: already drained\n", ""},
		{[]string{"enable", "tcp/203.0.113.10:80", "198.51.100.10:80"}, 0, "tcp/203.0.113.10:80 198.51.100.10: drained -> enabled\n", ""},
		{[]string{"disable", "dns", "2001:db8::53"}, 0, "dns (udp/203.0.113.10:53) 2001:db8::53: enabled -> disabled\n", ""},
		{[]string{"drain", "ftp", "198.51.100.10"}, 1, "", "dsrd drain: unknown service \"ftp\": not found\n"},
		{[]string{"drain", "web", "198.51.100.99"}, 1, "", "dsrd drain: service web has no real 198.51.100.99: not found\n"},
		{[]string{"drain", "web"}, 2, "", "dsrd drain: want SERVICE REAL\n"},
		{[]string{"drain", "web", "backend-1"}, 2, "", "dsrd drain: REAL \"backend-1\": want an IP address\n"},
	} {
		code, out, errOut := d.run(t, tc.args...)
		if code != tc.code || out != tc.out || errOut != tc.err {
			t.Errorf("dsrd %s: exit %d, stdout %q, stderr %q; want %d, %q, %q",
				strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.out, tc.err)
		}
	}
	st, err := d.backend.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Services[1].Reals[1].Admin; got != "disabled" {
		t.Errorf("dns real admin %q after disable", got)
	}
}

func TestReloadCommand(t *testing.T) {
	d := startDaemon(t, apitest.SampleStatus())
	d.backend.SetNextReload(api.ReloadResult{OK: false, Errors: []string{
		"/etc/dsrd/director.yaml:3:3: unknown key \"data_dri\" (did you mean data_dir?)",
		"/etc/dsrd/director.yaml:14:16: unknown scheduler \"fastest\"",
	}})
	code, out, errOut := d.run(t, "reload")
	want := "/etc/dsrd/director.yaml:3:3: unknown key \"data_dri\" (did you mean data_dir?)\n" +
		"/etc/dsrd/director.yaml:14:16: unknown scheduler \"fastest\"\n" +
		"dsrd reload: the file is invalid; the running configuration (generation 12) stays\n"
	if code != exitFailure || out != "" || errOut != want {
		t.Errorf("invalid reload: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// The soak's reload while the cluster had no leader: a valid file,
	// not "the file is invalid".
	d.backend.SetNextReload(api.ReloadResult{OK: false, NotSubmitted: true, Errors: []string{
		"submit to the cluster: submit config: not the raft leader; no leader known"}})
	code, out, errOut = d.run(t, "reload")
	want = "submit to the cluster: submit config: not the raft leader; no leader known\n" +
		"dsrd reload: the file is valid but the cluster did not take it (try again); the running configuration (generation 12) stays\n"
	if code != exitFailure || out != "" || errOut != want {
		t.Errorf("reload not taken: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	d.backend.SetNextReload(api.ReloadResult{OK: true, Changed: true})
	code, out, _ = d.run(t, "reload")
	if code != 0 || out != "reloaded: the configuration changed, now generation 13\n" {
		t.Errorf("reload: exit %d, %q", code, out)
	}
	d.backend.SetNextReload(api.ReloadResult{OK: true})
	code, out, _ = d.run(t, "reload")
	if code != 0 || out != "reloaded: no change (generation 13)\n" {
		t.Errorf("unchanged reload: exit %d, %q", code, out)
	}
}

func TestFailoverCommand(t *testing.T) {
	d := startDaemon(t, apitest.SampleStatus())
	code, out, errOut := d.run(t, "failover", "--to", "d2")
	if code != 0 || out != "leadership moved from d1 to d2\n" {
		t.Errorf("failover --to d2: exit %d, %q, %q", code, out, errOut)
	}
	code, out, _ = d.run(t, "failover")
	if code != 0 || out != "leadership moved from d2 to d1\n" {
		t.Errorf("failover: exit %d, %q", code, out)
	}
	code, _, errOut = d.run(t, "failover", "--to", "d9")
	if code != exitFailure || !strings.Contains(errOut, "d9: not a voter") {
		t.Errorf("failover to a stranger: exit %d, %q", code, errOut)
	}
}

func TestClusterCommands(t *testing.T) {
	d := startDaemon(t, apitest.SampleStatus())
	code, out, _ := d.run(t, "cluster", "members")
	want := "ID  ADDRESS          SUFFRAGE  LEADER\n" +
		"d1  192.0.2.11:7946  voter     *\n" +
		"d2  192.0.2.12:7946  voter\n" +
		"w1  192.0.2.13:7946  voter\n"
	if code != 0 || trimLines(out) != want {
		t.Errorf("members: exit %d:\n%s", code, out)
	}

	// Flags after the arguments, as the usage shows them.
	code, out, errOut := d.run(t, "cluster", "join", "d3", "192.0.2.14:7946", "--nonvoter")
	if code != 0 || out != "d3 (192.0.2.14:7946) joined as a nonvoter\n" {
		t.Errorf("join: exit %d, %q, %q", code, out, errOut)
	}
	code, out, _ = d.run(t, "cluster", "join", "d4", "192.0.2.15:7946")
	if code != 0 || out != "d4 (192.0.2.15:7946) joined as a voter\n" {
		t.Errorf("join: exit %d, %q", code, out)
	}
	code, out, _ = d.run(t, "cluster", "members")
	if code != 0 || !strings.Contains(out, "d3  192.0.2.14:7946  nonvoter") || !strings.Contains(out, "d4  192.0.2.15:7946  voter") {
		t.Errorf("members after join: exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{
		{"cluster", "join", "d5"},
		{"cluster", "join", "d5", "192.0.2.16"},
		{"cluster", "join", "d5", "192.0.2.16:7946", "--no-such-flag"},
		{"cluster", "remove"},
	} {
		if code, _, errOut := d.run(t, args...); code != exitUsage {
			t.Errorf("dsrd %s: exit %d, %q", strings.Join(args, " "), code, errOut)
		}
	}

	code, out, _ = d.run(t, "cluster", "remove", "d3")
	if code != 0 || out != "d3 removed\n" {
		t.Errorf("remove: exit %d, %q", code, out)
	}
	code, _, errOut = d.run(t, "cluster", "remove", "d3")
	if code != exitFailure || errOut != "dsrd cluster remove: d3 is not a member: not found\n" {
		t.Errorf("remove of a stranger: exit %d, %q", code, errOut)
	}
	calls := strings.Join(d.backend.Calls(), "\n")
	for _, want := range []string{"Join d3 192.0.2.14:7946 false", "Join d4 192.0.2.15:7946 true", "Remove d3"} {
		if !strings.Contains(calls, want) {
			t.Errorf("the backend got no %q:\n%s", want, calls)
		}
	}
}

func TestControlCommandsHaveHelp(t *testing.T) {
	for _, args := range [][]string{
		{"drain", "--help"}, {"enable", "--help"}, {"disable", "--help"}, {"failover", "--help"},
		{"reload", "--help"}, {"cluster", "--help"}, {"cluster", "members", "--help"},
		{"cluster", "join", "--help"}, {"cluster", "remove", "--help"}, {"status", "--help"},
	} {
		code, out, errOut := run(t, args...)
		if code != 0 || !strings.Contains(out, "USAGE:") || !strings.Contains(out, "--socket") && args[1] != "--help" {
			t.Errorf("dsrd %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out, errOut)
		}
	}
	_, out, _ := run(t, "--help")
	for _, cmd := range []string{"drain", "enable", "disable", "failover", "reload", "cluster"} {
		if !strings.Contains(out, "\n   "+cmd) {
			t.Errorf("dsrd --help does not list %q", cmd)
		}
	}
}

func trimLines(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString(strings.TrimRight(line, " \n") + "\n")
	}
	return b.String()
}

func TestBGPDrainCommand(t *testing.T) {
	st := apitest.SampleStatus()
	st.VIPs = append(st.VIPs, api.VIP{Address: netip.MustParseAddr("203.0.113.20"), Interface: "lo", Mode: "bgp", Held: true, Announced: true})
	d := startDaemon(t, st)
	code, _, errOut := d.run(t, "bgp", "drain")
	if code != exitFailure || !strings.Contains(errOut, "no other director announces [203.0.113.20]") {
		t.Errorf("bgp drain of the only announcer: exit %d, %q", code, errOut)
	}
	code, out, errOut := d.run(t, "bgp", "drain", "--force")
	if code != 0 || !strings.Contains(out, "drained: "+st.Node+" announces as leaving for 10s") || !strings.Contains(errOut, "warning: no other director announces 203.0.113.20") {
		t.Errorf("bgp drain --force: exit %d, %q, %q", code, out, errOut)
	}
	if code, out, _ = d.run(t, "bgp", "drain", "--force"); code != 0 || !strings.Contains(out, "drained already") {
		t.Errorf("bgp drain of a drained director: exit %d, %q", code, out)
	}
	if code, out, _ = d.run(t, "bgp", "undrain", "--node", "dir9"); code != 0 || out != "dir9 was not drained\n" {
		t.Errorf("bgp undrain --node dir9: exit %d, %q", code, out)
	}
	code, out, _ = d.run(t, "bgp", "undrain")
	if code != 0 || !strings.HasPrefix(out, "undrained: "+st.Node) {
		t.Errorf("bgp undrain: exit %d, %q", code, out)
	}
}

// A director that has applied no configuration yet (it had just started,
// in the soak) names no generation: "generation 0" reads as a real one.
func TestReloadFailureWithoutGeneration(t *testing.T) {
	for _, tc := range []struct {
		r    api.ReloadResult
		want string
	}{
		{api.ReloadResult{NotSubmitted: true}, "the file is valid but the cluster did not take it (try again); the running configuration stays"},
		{api.ReloadResult{}, "the file is invalid; the running configuration stays"},
		{api.ReloadResult{Generation: 3}, "the file is invalid; the running configuration (generation 3) stays"},
	} {
		if got := reloadFailure(tc.r); got != tc.want {
			t.Errorf("reloadFailure(%+v) = %q, want %q", tc.r, got, tc.want)
		}
	}
}
