package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/metrics"
	"github.com/dsrd/dsrd/internal/testutil"
)

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// witnessFile writes a one-node witness configuration with this extra
// node setting (a YAML line, or "") and returns its path. Unix socket
// paths are short, so the files live under /tmp rather than t.TempDir.
func witnessFile(t *testing.T, nodeExtra string) string {
	t.Helper()
	dir := testutil.ShortTempDir(t)
	port := freePort(t)
	conf := fmt.Sprintf("node:\n  id: wit\n  data_dir: %s\n  api_socket: %s\n%scluster:\n  bind: 127.0.0.1:%d\n  peers: [wit@127.0.0.1:%d]\n",
		filepath.Join(dir, "data"), filepath.Join(dir, "api.sock"), nodeExtra, port, port)
	name := filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(name, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestWitnessServesMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a witness with Raft on 127.0.0.1")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	conf := witnessFile(t, "  metrics_address: "+addr+"\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errb bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"dsrd", "witness", "--config", conf}, io.Discard, &errb) }() // ends when ctx is cancelled

	url := "http://" + addr + metrics.Path
	want := `dsrd_node_info{node="wit",role="witness",version=`
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for {
		if resp, err := http.Get(url); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = resp.Status + "\n" + string(body)
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				break
			}
		} else {
			last = err.Error()
		}
		select {
		case code := <-done:
			t.Fatalf("dsrd witness exited %d before serving metrics: %s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s at %s; last: %s", want, url, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if strings.Contains(last, "dsrd_vip_owned") || strings.Contains(last, "dsrd_real_weight") {
		t.Errorf("a witness exports director metrics:\n%s", last)
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dsrd witness exited %d: %s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dsrd witness did not stop")
	}
	if _, err := http.Get(url); err == nil {
		t.Error("the metrics endpoint still answers after the witness stopped")
	}
}

func TestMetricsBindFailureNamesTheAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	// Through the flag, over a file without metrics.
	code, _, errOut := run(t, "witness", "--config", witnessFile(t, ""), "--metrics-address", addr)
	if code != exitFailure || !strings.Contains(errOut, "metrics endpoint on "+addr) || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("exit %d, stderr %q; want a failure naming %s", code, errOut, addr)
	}
}

func TestMetricsOffWhenUnset(t *testing.T) {
	if m := newMetrics("", metrics.RoleDirector); m != nil {
		t.Error("metrics without an address: a Set, want none")
	}
	stop, err := startMetrics(context.Background(), "", newMetrics("", metrics.RoleWitness), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if m := newMetrics("127.0.0.1:9796", metrics.RoleDirector); m == nil {
		t.Error("metrics with an address: no Set")
	}
}
