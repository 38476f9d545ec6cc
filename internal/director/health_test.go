package director

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/healthcheck"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/vrrp/bgp"
)

func TestCheckSpec(t *testing.T) {
	on := true
	addr := netip.MustParseAddr
	common := config.HealthCheck{
		Interval: config.Duration(3 * time.Second), Timeout: config.Duration(time.Second),
		Rise: 4, Fall: 5, Initial: "up",
		Address: addr("198.51.100.5"), Port: 8080, Source: addr("192.0.2.200"),
	}
	with := func(typ config.CheckType, set func(*config.HealthCheck)) *config.HealthCheck {
		hc := common
		hc.Type = typ
		if set != nil {
			set(&hc)
		}
		return &hc
	}
	tests := []struct {
		name  string
		hc    *config.HealthCheck
		proto config.Protocol
		want  healthcheck.Probe
	}{
		{"tcp", with(config.CheckTCP, func(hc *config.HealthCheck) { hc.Send, hc.Expect = "PING", "PONG" }), config.TCP,
			healthcheck.TCP{Send: "PING", Expect: "PONG"}},
		{"no type is tcp", with("", nil), config.TCP, healthcheck.TCP{}},
		{"tcp behind a PROXY protocol listener", with(config.CheckTCP, func(hc *config.HealthCheck) { hc.ProxyProtocol = "v2" }), config.TCP,
			healthcheck.TCP{Proxy: healthcheck.ProxyV2}},
		{"https behind a PROXY protocol listener", with(config.CheckHTTPS, func(hc *config.HealthCheck) { hc.ProxyProtocol = "v1" }), config.TCP,
			healthcheck.HTTP{TLS: true, Proxy: healthcheck.ProxyV1}},
		{"http", with(config.CheckHTTP, func(hc *config.HealthCheck) {
			hc.Method, hc.Path, hc.Host, hc.ExpectStatus, hc.BodyRegexp = "HEAD", "/health", "www.example.test", []string{"200"}, "ok"
		}), config.TCP, healthcheck.HTTP{Method: "HEAD", Path: "/health", Host: "www.example.test", ExpectStatus: []string{"200"}, BodyRegexp: "ok"}},
		{"https", with(config.CheckHTTPS, func(hc *config.HealthCheck) { hc.TLSServer, hc.TLSVerify = "backend.example.test", &on }), config.TCP,
			healthcheck.HTTP{TLS: true, TLSServerName: "backend.example.test", TLSVerify: true}},
		{"https without tls_verify", with(config.CheckHTTPS, nil), config.TCP, healthcheck.HTTP{TLS: true}},
		{"udp", with(config.CheckUDP, func(hc *config.HealthCheck) { hc.Send, hc.Expect, hc.NoReplyIsUp = "ping", "pong", true }), config.UDP,
			healthcheck.UDP{Send: "ping", Expect: "pong", NoReplyIsUp: true}},
		{"dns of a udp service", with(config.CheckDNS, func(hc *config.HealthCheck) {
			hc.QueryName, hc.QueryType, hc.ExpectCode, hc.ExpectAnswer = "www.example.test", "AAAA", "NXDOMAIN", "2001:db8::1"
		}), config.UDP, healthcheck.DNS{QueryName: "www.example.test", QueryType: "AAAA", ExpectRcode: "NXDOMAIN", ExpectAnswer: "2001:db8::1"}},
		{"dns of a tcp service", with(config.CheckDNS, nil), config.TCP, healthcheck.DNS{TCP: true}},
		{"icmp", with(config.CheckICMP, nil), config.TCP, healthcheck.ICMP{}},
		{"exec", with(config.CheckExec, func(hc *config.HealthCheck) { hc.Command = []string{"/bin/check", "-v"} }), config.TCP,
			healthcheck.Exec{Command: []string{"/bin/check", "-v"}}},
		{"agent", with(config.CheckAgent, func(hc *config.HealthCheck) { hc.Path, hc.Host = "/ready", "agent.example.test" }), config.TCP,
			healthcheck.Agent{Path: "/ready", Host: "agent.example.test"}},
		{"unknown type", with("carrier-pigeon", nil), config.TCP, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := checkSpec(tt.hc, tt.proto)
			want := &healthcheck.Spec{
				Params:  healthcheck.Params{Interval: 3 * time.Second, Timeout: time.Second, Rise: 4, Fall: 5, Initial: healthcheck.StateUp},
				Address: addr("198.51.100.5"), Port: 8080, Source: addr("192.0.2.200"),
				Probe: tt.want,
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("checkSpec = %+v, want %+v", got, want)
			}
		})
	}
	if got := checkSpec(nil, config.TCP); got != nil {
		t.Errorf("no health check: %+v, want nil", got)
	}
	if got := checkSpec(&config.HealthCheck{Type: config.CheckNone, Interval: 1}, config.TCP); got != nil {
		t.Errorf("type none: %+v, want nil", got)
	}
	if got := checkSpec(&config.HealthCheck{Type: config.CheckTCP, Initial: "down"}, config.TCP); healthcheck.ParamsFrom(got).Initial != healthcheck.StateDown {
		t.Errorf("initial down: %+v", got)
	}
}

// TestCheckSpecCoversTheFile fails when config.HealthCheck gains a field
// that checkSpec does not translate.
func TestCheckSpecCoversTheFile(t *testing.T) {
	translated := []string{
		"Type", "Interval", "Timeout", "Rise", "Fall", "Initial", "Address", "Port", "Source",
		"Send", "Expect", "Method", "Path", "Host", "ExpectStatus", "BodyRegexp", "TLSServer", "TLSVerify",
		"NoReplyIsUp", "QueryName", "QueryType", "ExpectCode", "ExpectAnswer", "Command", "ProxyProtocol",
		"ThroughVIP", // healthService: throughVIPSpec
	}
	typ := reflect.TypeFor[config.HealthCheck]()
	for i := range typ.NumField() {
		if f := typ.Field(i); !slices.Contains(translated, f.Name) {
			t.Errorf("config.HealthCheck.%s is not translated into a healthcheck.Spec", f.Name)
		}
	}
}

func TestHealthService(t *testing.T) {
	addr := netip.MustParseAddr
	w := 7
	svc := config.Service{
		Name: "web", VIP: addr("203.0.113.10"), Port: 80, Protocol: config.TCP,
		Quorum: 2, OnDown: config.DownRemove, SorryServer: addr("198.51.100.9"),
		HealthCheck: &config.HealthCheck{Type: config.CheckHTTP, Path: "/health"},
		Reals: []config.Real{
			{Address: addr("192.0.2.1"), Port: 80, Weight: &w, UpperThreshold: 10, LowerThreshold: 5},
			{Address: addr("192.0.2.2")},
			{Address: addr("192.0.2.3"), HealthCheck: &config.HealthCheck{Type: config.CheckNone}},
			{Address: addr("192.0.2.4"), HealthCheck: &config.HealthCheck{Type: config.CheckAgent}},
		},
	}
	got := healthService(svc, nil)
	if got.Name != "web" || got.Port != 80 || got.Quorum != 2 || got.OnDown != healthcheck.DownRemove || got.SorryServer != addr("198.51.100.9") {
		t.Errorf("service %+v", got)
	}
	if len(got.Reals) != len(svc.Reals) {
		t.Fatalf("%d reals, want %d", len(got.Reals), len(svc.Reals))
	}
	if r := got.Reals[0]; r.Address != addr("192.0.2.1") || r.Port != 80 || r.Weight == nil || *r.Weight != 7 || r.UpperThreshold != 10 || r.LowerThreshold != 5 {
		t.Errorf("first real %+v", r)
	}
	if a, b := got.Reals[0].Check, got.Reals[1].Check; a == nil || a != b || a.Type() != healthcheck.TypeHTTP {
		t.Errorf("reals without their own check: %+v and %+v, want the service's, shared", a, b)
	}
	if c := got.Reals[2].Check; c != nil {
		t.Errorf("real with type none: check %+v, want none", c)
	}
	if c := got.Reals[3].Check; c == nil || c.Type() != healthcheck.TypeAgent {
		t.Errorf("real with its own check: %+v", c)
	}
	svc.OnDown = config.DownWeightZero
	if got := healthService(svc, nil); got.OnDown != healthcheck.DownWeightZero {
		t.Errorf("on_down weight0: %v", got.OnDown)
	}
}

// A check type the configuration does not know (validation refuses it
// first) keeps its real down with a configuration error.
func TestUnknownCheckTypeIsAConfigError(t *testing.T) {
	svc := config.Service{
		Name: "web", Port: 80, Protocol: config.TCP,
		HealthCheck: &config.HealthCheck{Type: "carrier-pigeon"},
		Reals:       []config.Real{{Address: netip.MustParseAddr("192.0.2.1")}},
	}
	checks, err := healthcheck.ChecksFor(healthServices([]config.Service{svc}), healthcheck.BuildOptions{})
	if err == nil || len(checks) != 1 {
		t.Fatalf("checks %v, error %v", checks, err)
	}
	r := checks[0].Checker.Check(t.Context(), checks[0].Target)
	if r.Up || r.Reason != healthcheck.ReasonConfig || !strings.Contains(r.Message, "no probe") {
		t.Errorf("result %s, want a configuration error", r)
	}
}

// TestAcceptedChecksBuild: every health check of every director file that
// config check accepts builds a checker (accept implies construct), so that
// config validation and healthcheck's constructors cannot drift apart: a
// file that passes `dsrd config check` never runs a check that reports
// "config" as its reason.
func TestAcceptedChecksAndSpeakersBuild(t *testing.T) {
	var files []string
	for _, glob := range []string{
		"../config/testdata/valid/*.yaml", "../config/testdata/fuzz/*.yaml",
		"../../packaging/examples/*.yaml", "../../raft/testdata/wire/*.yaml",
	} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	built, speakers := 0, 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if kind, err := config.Detect(data); err != nil || kind != config.KindDirector {
			continue
		}
		d, err := config.ParseDirector(f, data)
		if err != nil {
			continue // refused by config: nothing to construct
		}
		checks, err := healthcheck.ChecksFor(healthServices(d.Services), healthcheck.BuildOptions{})
		if err != nil {
			t.Errorf("%s: config accepts it, healthcheck cannot build: %v", f, err)
		}
		built += len(checks)
		if d.BGP != nil {
			// Accept implies construct for the BGP speaker too.
			if _, err := bgp.New(slog.New(slog.DiscardHandler), d.BGP.Speaker()); err != nil {
				t.Errorf("%s: config accepts its bgp section, the speaker refuses it: %v", f, err)
			}
			speakers++
		}
	}
	if built == 0 {
		t.Fatal("no check built: the globs found no accepted director file")
	}
	if speakers == 0 {
		t.Fatal("no speaker built: the globs found no accepted director file with a bgp section")
	}
	t.Logf("%d checks built from %d files", built, len(files))
}
