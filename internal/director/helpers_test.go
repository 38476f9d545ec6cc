package director

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/api"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/internal/netkernel"
	"github.com/dsrd/dsrd/internal/testutil"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/vrrp"
)

// testTimeout bounds every wait of these tests: generous, because the race
// detector on a loaded 2-core machine slows Raft and the checks down a lot.
const testTimeout = 20 * time.Second

// freePorts returns n distinct TCP ports on 127.0.0.1 that were free a
// moment ago, below the kernel's ephemeral range: a port from that range,
// free while a director is stopped, can be taken meanwhile as the source
// port of an outgoing connection (another node's Raft or peer dial), and
// the director could not listen on it again when it restarts.
func freePorts(t *testing.T, n int) []uint16 {
	t.Helper()
	low := 32768 // Linux's default net.ipv4.ip_local_port_range start
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const from = 10000
	if low <= from+1000 {
		t.Skipf("ephemeral port range starts at %d: no room for fixed ports below it", low)
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]uint16, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			t.Fatal("no free port below the ephemeral range")
		}
		p := from + rand.IntN(low-from)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // taken
		}
		lns = append(lns, ln)
		ports = append(ports, uint16(p))
	}
	return ports
}

// writeFile writes a file atomically enough for a test (the daemon reads
// it only on Reload).
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// memSysctls is an in-memory ipvs.SysctlWriter; its writes fail while
// fail is set.
type memSysctls struct {
	mu   sync.Mutex
	m    map[string]string
	fail atomic.Bool
}

func newMemSysctls() *memSysctls { return &memSysctls{m: map[string]string{}} }

func (s *memSysctls) Get(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[name]
	if !ok {
		return "", fmt.Errorf("read sysctl %s: %w", name, os.ErrNotExist)
	}
	return v, nil
}

func (s *memSysctls) Set(name, value string) error {
	if s.fail.Load() {
		return fmt.Errorf("write sysctl %s=%s: %w", name, value, os.ErrPermission)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = value
	return nil
}

// announcements records the announcements a director sent.
type announcements struct {
	mu    sync.Mutex
	calls []string
}

func (a *announcements) send(_ context.Context, ifname string, addr netip.Addr) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, addr.String()+"%"+ifname)
	return nil
}

func (a *announcements) count(addr string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		if strings.HasPrefix(c, addr+"%") {
			n++
		}
	}
	return n
}

// weightsOf returns a service's destinations in a fake kernel as
// "addr:port=weight", sorted; nil when the service is absent.
func weightsOf(k *ipvs.Fake, key ipvs.ServiceKey) []string {
	s, ok := k.State()[key]
	if !ok {
		return nil
	}
	out := []string{}
	for dk, d := range s.Dests {
		out = append(out, fmt.Sprintf("%s=%d", dk, d.Weight))
	}
	slices.Sort(out)
	return out
}

// holdsVIP reports whether a fake VIP kernel has vip on eth0.
func holdsVIP(k *vrrp.FakeKernel, vip netip.Addr) bool {
	addrs, err := k.Addrs("eth0")
	if err != nil {
		return false
	}
	return slices.ContainsFunc(addrs, func(a netkernel.Addr) bool { return a.Prefix == netip.PrefixFrom(vip, vip.BitLen()) })
}

// apiClient returns a client of a node's API socket, closed at the end of
// the test.
func apiClient(t *testing.T, socket string) *api.Client {
	c := api.NewClient(socket)
	t.Cleanup(c.Close)
	return c
}

// loadWitness loads a witness's file.
func loadWitness(t *testing.T, path string) *config.Witness {
	t.Helper()
	cfg, err := config.LoadWitness(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// ctxTimeout is a context bounded by testTimeout and the test.
func ctxTimeout(t *testing.T) context.Context { return testutil.Context(t, testTimeout) }

// joinPath is filepath.Join, for brevity in configurations.
var joinPath = filepath.Join

// goroutines returns the stacks of every goroutine, to tell why something
// did not end.
func goroutines() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
