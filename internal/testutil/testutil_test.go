package testutil

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsrd/dsrd/raft/pki"
)

// fakeTB is a testing.TB whose output, cleanups and fatal failures the
// tests of this package inspect. Fatalf ends the calling goroutine, as
// t.Fatalf does: call the helper under test through run.
type fakeTB struct {
	testing.TB
	out      bytes.Buffer
	cleanups []func()
	fatal    string
}

func (f *fakeTB) Output() io.Writer { return &f.out }
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// cleanup runs the registered cleanups, last first.
func (f *fakeTB) cleanup() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// run runs fn on a goroutine of its own and reports whether it called
// Fatalf.
func (f *fakeTB) run(fn func()) (fatal bool) {
	done := make(chan bool)
	go func() {
		returned := false
		defer func() { done <- !returned }()
		fn()
		returned = true
	}()
	return <-done
}

func TestLoggerLevelAndCleanup(t *testing.T) {
	for _, tt := range []struct {
		env       string
		wantDebug bool
		wantInfo  bool
	}{
		{env: "", wantDebug: false, wantInfo: false},
		{env: "info", wantDebug: false, wantInfo: true},
		{env: "debug", wantDebug: true, wantInfo: true},
		{env: "trace", wantDebug: true, wantInfo: true},
	} {
		t.Run("DSRD_TEST_LOG="+tt.env, func(t *testing.T) {
			t.Setenv("DSRD_TEST_LOG", tt.env)
			f := &fakeTB{TB: t}
			log := Logger(f)
			log.Debug("a debug line")
			log.Info("an info line")
			log.Warn("a warning")
			got := f.out.String()
			if strings.Contains(got, "a debug line") != tt.wantDebug ||
				strings.Contains(got, "an info line") != tt.wantInfo ||
				!strings.Contains(got, "a warning") {
				t.Errorf("output:\n%s", got)
			}
			if tt.env == "trace" && !log.Enabled(t.Context(), levelTrace) {
				t.Error("trace level not enabled")
			}
			f.cleanup()
			log.Warn("after the test")
			if strings.Contains(f.out.String(), "after the test") {
				t.Error("logged after the test's cleanup")
			}
		})
	}
}

func TestContext(t *testing.T) {
	f := &fakeTB{TB: t}
	ctx := Context(f, time.Hour)
	if d, ok := ctx.Deadline(); !ok || time.Until(d) > time.Hour {
		t.Errorf("deadline %v, %v; want within an hour", d, ok)
	}
	f.cleanup()
	if ctx.Err() == nil {
		t.Error("context not cancelled at cleanup")
	}
	select {
	case <-Context(t, time.Millisecond).Done():
	case <-time.After(10 * time.Second):
		t.Error("context not ended after its timeout")
	}
}

func TestWaitFor(t *testing.T) {
	n := 0
	f := &fakeTB{TB: t}
	if f.run(func() {
		WaitFor(f, time.Minute, "three calls", func() (bool, string) { n++; return n == 3, "" })
	}) || n != 3 {
		t.Errorf("fatal %q after %d calls, want success on the third", f.fatal, n)
	}
	if !f.run(func() {
		WaitFor(f, 50*time.Millisecond, "never", func() (bool, string) { return false, "nothing" })
	}) || !strings.Contains(f.fatal, "waiting for never; last saw: nothing") {
		t.Errorf("WaitFor on a condition that never holds: fatal %q", f.fatal)
	}
}

func TestWaitChange(t *testing.T) {
	var mu sync.Mutex
	ch, v := make(chan struct{}), 0
	changed := func() <-chan struct{} { mu.Lock(); defer mu.Unlock(); return ch }
	set := func(n int) {
		mu.Lock()
		defer mu.Unlock()
		v = n
		close(ch)
		ch = make(chan struct{})
	}
	get := func() int { mu.Lock(); defer mu.Unlock(); return v }
	go func() {
		for i := 1; i <= 3; i++ {
			time.Sleep(time.Millisecond)
			set(i)
		}
	}()
	f := &fakeTB{TB: t}
	if f.run(func() {
		WaitChange(f, time.Minute, "3", changed, func() (bool, string) { return get() == 3, "" })
	}) {
		t.Errorf("fatal %q", f.fatal)
	}
	if !f.run(func() {
		WaitChange(f, 50*time.Millisecond, "4", changed, func() (bool, string) { return get() == 4, fmt.Sprint(get()) })
	}) || !strings.Contains(f.fatal, "waiting for 4; last saw: 3") {
		t.Errorf("WaitChange on a condition that never holds: fatal %q", f.fatal)
	}
}

func TestCA(t *testing.T) {
	ca := NewCA(t, "test-ca")
	other := NewCA(t, "other-ca")
	cert, certPEM, keyPEM := ca.Issue(t, "node")
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "node" || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("certificate %s, serial %s", leaf.Subject, leaf.SerialNumber)
	}
	info := pki.Describe(leaf)
	if want := (pki.Identity{NodeID: "node", Role: pki.RoleDirector}); info.Identity != want || info.IdentityErr != nil {
		t.Errorf("identity %v, %v; want %v", info.Identity, info.IdentityErr, want)
	}
	if want := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}; !slices.Equal(info.IPs, want) {
		t.Errorf("IP SANs %v, want %v", info.IPs, want)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("verify for %v: %v", usage, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}); err == nil {
			t.Errorf("another CA verified the certificate for %v", usage)
		}
	}
	second, _, _ := ca.Issue(t, "node")
	if bytes.Equal(second.Certificate[0], cert.Certificate[0]) {
		t.Error("two issues gave the same certificate")
	}

	files := ca.Files(t, "d1")
	if _, err := tls.LoadX509KeyPair(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caPEM, ca.PEM()) {
		t.Error("CA file differs from PEM()")
	}

	wit := ca.FilesAs(t, "wit1", pki.RoleWitness, netip.MustParseAddr("192.0.2.3"))
	witCert, err := pki.ReadCertFile(wit.Cert)
	if err != nil {
		t.Fatal(err)
	}
	info = pki.Describe(witCert)
	if want := (pki.Identity{NodeID: "wit1", Role: pki.RoleWitness}); info.Identity != want ||
		!slices.Equal(info.IPs, []netip.Addr{netip.MustParseAddr("192.0.2.3")}) {
		t.Errorf("FilesAs witness: %v, %v", info.Identity, info.IPs)
	}
	if _, err := tls.LoadX509KeyPair(wit.Cert, wit.Key); err != nil {
		t.Error(err)
	}
}
