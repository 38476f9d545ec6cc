package healthcheck

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsrd/dsrd/ipvs"
)

func TestReasonNames(t *testing.T) {
	seen := map[string]Reason{}
	for r := ReasonOK; r <= ReasonError; r++ {
		name := r.String()
		if strings.HasPrefix(name, "reason(") {
			t.Errorf("reason %d has no name", r)
		}
		if prev, dup := seen[name]; dup {
			t.Errorf("reasons %d and %d are both %q", prev, r, name)
		}
		seen[name] = r
	}
	if got := Reason(200).String(); got != "reason(200)" {
		t.Errorf("unknown reason: %q", got)
	}
}

func TestClassify(t *testing.T) {
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	bg := context.Background()
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)}
	}
	tests := []struct {
		ctx  context.Context
		err  error
		want Reason
	}{
		{bg, opErr(syscall.ECONNREFUSED), ReasonRefused},
		{bg, opErr(syscall.EHOSTUNREACH), ReasonUnreachable},
		{bg, opErr(syscall.ENETUNREACH), ReasonUnreachable},
		{bg, opErr(syscall.ECONNRESET), ReasonConnection},
		{bg, io.EOF, ReasonConnection},
		{bg, os.ErrDeadlineExceeded, ReasonTimeout},
		{bg, fmt.Errorf("query: %w", context.DeadlineExceeded), ReasonTimeout},
		{bg, x509.UnknownAuthorityError{}, ReasonTLS},
		{bg, configError{errors.New("families")}, ReasonConfig},
		{bg, errors.New("something else"), ReasonError},
		// The context decides first: the error of an interrupted call
		// says little.
		{expired, opErr(syscall.ECONNRESET), ReasonTimeout},
		{canceled, os.ErrDeadlineExceeded, ReasonCanceled},
	}
	for _, tt := range tests {
		if got := classify(tt.ctx, tt.err); got != tt.want {
			t.Errorf("classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
	if got := errText(opErr(syscall.ECONNREFUSED)); got != "connection refused" {
		t.Errorf("errText = %q", got)
	}
}

func TestClip(t *testing.T) {
	if got := clip("  first\tline\nsecond line"); got != "first line ..." {
		t.Errorf("clip = %q", got)
	}
	if got := clip(strings.Repeat("x", 1000)); len(got) != maxMessage {
		t.Errorf("clip of 1000 bytes has %d", len(got))
	}
}

func TestParams(t *testing.T) {
	if got := ParamsFrom(nil); got != (Params{Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall, Initial: StateDown}) {
		t.Errorf("fallback defaults %+v", got)
	}
	got := ParamsFrom(&Spec{Params: Params{Interval: ms(500), Timeout: ms(100), Rise: 1, Fall: 5, Initial: StateUp}})
	if got != (Params{Interval: 500 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: 1, Fall: 5, Initial: StateUp}) {
		t.Errorf("params %+v", got)
	}
}

func TestChecksFor(t *testing.T) {
	addr := netip.MustParseAddr
	svcCheck := &Spec{Probe: HTTP{Path: "/health"}}
	services := []Service{
		{
			Name: "web", Key: ipvs.MustParseServiceKey("tcp/203.0.113.10:80"), Port: 80,
			Reals: []Real{
				{Address: addr("192.0.2.1"), Check: svcCheck},
				{Address: addr("192.0.2.2"), Check: svcCheck},
				{Address: addr("192.0.2.3"), Check: &Spec{Probe: Agent{}}},
				{Address: addr("192.0.2.4")},
				{Address: addr("192.0.2.5"), Check: &Spec{Address: addr("198.51.100.5"), Port: 8080, Probe: TCP{}}},
			},
		},
		{Name: "unchecked", Key: ipvs.MustParseServiceKey("udp/203.0.113.10:53"), Port: 53, Reals: []Real{{Address: addr("192.0.2.9")}}},
		{
			Name: "broken", Key: ipvs.MustParseServiceKey("tcp/203.0.113.10:443"), Port: 443,
			Reals: []Real{{Address: addr("192.0.2.10"), Check: &Spec{Probe: HTTP{BodyRegexp: "("}}}},
		},
	}
	checks, err := ChecksFor(services, BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), "service broken real 192.0.2.10:443") {
		t.Errorf("error %v, want one naming the broken check", err)
	}
	got := map[string]Check{}
	for _, c := range checks {
		got[c.Key.String()] = c
	}
	wantTargets := map[string]string{
		"tcp/203.0.113.10:80/192.0.2.1:80":    "192.0.2.1:80",
		"tcp/203.0.113.10:80/192.0.2.2:80":    "192.0.2.2:80",
		"tcp/203.0.113.10:80/192.0.2.3:80":    "192.0.2.3:9797",
		"tcp/203.0.113.10:80/192.0.2.5:80":    "198.51.100.5:8080",
		"tcp/203.0.113.10:443/192.0.2.10:443": "192.0.2.10:443",
	}
	if len(got) != len(wantTargets) {
		t.Errorf("got checks %v", keysOf(checks))
	}
	for key, target := range wantTargets {
		c, ok := got[key]
		if !ok {
			t.Errorf("no check %s", key)
			continue
		}
		if c.Target.Addr.String() != target || c.Key.Real != c.Target.Real {
			t.Errorf("%s: target %+v, want %s", key, c.Target, target)
		}
	}
	if a, b := got["tcp/203.0.113.10:80/192.0.2.1:80"].Checker, got["tcp/203.0.113.10:80/192.0.2.2:80"].Checker; a != b {
		t.Error("reals sharing the service's check do not share its checker")
	}
	if r := runCheck(t, got["tcp/203.0.113.10:443/192.0.2.10:443"].Checker, got["tcp/203.0.113.10:443/192.0.2.10:443"].Target); r.Reason != ReasonConfig || !strings.Contains(r.Message, "body_regexp") {
		t.Errorf("broken check: %s", r)
	}

	// Fingerprints are stable across builds and follow the definition.
	again, _ := ChecksFor(services, BuildOptions{})
	for i := range checks {
		if checks[i].Fingerprint == "" || checks[i].Fingerprint != again[i].Fingerprint {
			t.Errorf("%s: fingerprint not stable", checks[i].Key)
		}
	}
	svcCheck.Probe = HTTP{Path: "/other"}
	changed, _ := ChecksFor(services, BuildOptions{})
	if changed[0].Fingerprint == checks[0].Fingerprint || changed[4].Fingerprint != checks[4].Fingerprint {
		t.Error("fingerprints do not follow the check definitions")
	}
}
