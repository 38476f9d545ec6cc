package healthcheck

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/testutil/privileged"
)

// haproxyNeed is Debian's haproxy: CI installs the package (.ci/run), so
// there a missing one fails the test.
var haproxyNeed = privileged.Need{
	What: "haproxy (Debian package haproxy), a real PROXY protocol receiver",
	Missing: func() error {
		_, err := exec.LookPath("haproxy")
		return err
	},
}

// TestProxyProtocolAgainstHAProxy checks PROXY protocol v1 and v2 headers
// against a real receiver: Debian's haproxy with accept-proxy on every
// listener, IPv4 and IPv6, plain and TLS. haproxy answers each request
// with the source and destination it read from the header, so the test
// sees that haproxy parsed the header and took the check's own addresses
// from it; without the header haproxy drops the connection and the same
// checks fail.
func TestProxyProtocolAgainstHAProxy(t *testing.T) {
	privileged.Require(t, haproxyNeed)
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "haproxy.pem")
	writeSelfSigned(t, pemFile)
	plain4, plain6, tls4 := freePort(t, "127.0.0.1"), freePort(t, "::1"), freePort(t, "127.0.0.1")
	cfg := fmt.Sprintf(`global
  log stderr format short local0 warning
defaults
  mode http
  timeout connect 1s
  timeout client 2s
  timeout server 2s
frontend proxied
  bind 127.0.0.1:%d accept-proxy
  bind [::1]:%d accept-proxy
  bind 127.0.0.1:%d accept-proxy ssl crt %s
  http-request return status 200 content-type text/plain lf-string "from %%[src]:%%[src_port] to %%[dst]:%%[dst_port]\n"
`, plain4, plain6, tls4, pemFile)
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", cfgFile).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c refuses the test's configuration: %v\n%s", err, out)
	}
	cmd := exec.Command("haproxy", "-db", "-f", cfgFile)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy's log:\n%s", logs.String())
		}
	})
	for _, addr := range []string{fmt.Sprintf("127.0.0.1:%d", plain4), fmt.Sprintf("[::1]:%d", plain6), fmt.Sprintf("127.0.0.1:%d", tls4)} {
		waitListening(t, addr)
	}

	targets := []struct {
		name string
		addr string
		tls  bool
		host string
	}{
		{"ipv4", fmt.Sprintf("127.0.0.1:%d", plain4), false, `127\.0\.0\.1`},
		{"ipv6", fmt.Sprintf("[::1]:%d", plain6), false, `::1`},
		{"tls", fmt.Sprintf("127.0.0.1:%d", tls4), true, `127\.0\.0\.1`},
	}
	for _, v := range []ProxyProtocol{ProxyV1, ProxyV2} {
		for _, tg := range targets {
			t.Run(string(v)+"/"+tg.name, func(t *testing.T) {
				target := targetOf(t, tg.addr)
				// The header names the check's own connection: its
				// source (any port) and the checked address and port.
				body := fmt.Sprintf(`^from %s:[0-9]+ to %s:%d\n$`, tg.host, tg.host, target.Addr.Port())
				r := runCheck(t, mustChecker(t, Spec{Probe: HTTP{TLS: tg.tls, BodyRegexp: body, Proxy: v}}), target)
				want(t, r, true, ReasonOK, "200")
				if tg.tls {
					return
				}
				r = runCheck(t, mustChecker(t, Spec{Probe: TCP{Send: "GET / HTTP/1.0\r\n\r\n", Expect: " 200 ", Proxy: v}}), target)
				want(t, r, true, ReasonOK, "")
			})
		}
	}
	for _, tg := range targets {
		t.Run("none/"+tg.name, func(t *testing.T) {
			target := targetOf(t, tg.addr)
			spec := Spec{Params: Params{Timeout: 2 * time.Second}, Probe: HTTP{TLS: tg.tls}}
			if r := runCheck(t, mustChecker(t, spec), target); r.Up {
				t.Errorf("http check without the header: %s, want down", r)
			}
			spec.Probe = TCP{Send: "GET / HTTP/1.0\r\n\r\n", Expect: " 200 "}
			if r := runCheck(t, mustChecker(t, spec), target); r.Up {
				t.Errorf("tcp check without the header: %s, want down", r)
			}
		})
	}
	if regexp.MustCompile(`(?i)\bparse|invalid\b`).MatchString(logs.String()) {
		t.Errorf("haproxy logged a parse error:\n%s", logs.String())
	}
}

// freePort returns a TCP port that was free on host a moment ago.
func freePort(t *testing.T, host string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits up to 10 s, polling every 50 ms, until addr accepts
// TCP connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for range 200 {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s after 10 s", addr)
}

// writeSelfSigned writes a self-signed ECDSA certificate and its key, as
// one PEM file (haproxy's crt), to path.
func writeSelfSigned(t *testing.T, path string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "backend.example.test"},
		DNSNames: []string{"backend.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	out = append(out, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}
