package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsrd/dsrd/ipvs"
)

func ptr[T any](v T) *T { return &v }

func dur(d time.Duration) Duration { return Duration(d) }

// defaultTCPCheck is the check a service on port gets when it has none.
func defaultTCPCheck(port uint16) *HealthCheck {
	return &HealthCheck{
		Type: CheckTCP, Interval: dur(2 * time.Second), Timeout: dur(time.Second),
		Rise: 2, Fall: 3, Initial: "down", Port: port,
	}
}

func TestParseDirectorDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/director_minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseDirector("director_minimal.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := &Director{
		Node: Node{
			ID: "dir1", Interface: "eth0", DataDir: "/var/lib/dsrd",
			APISocket: "/run/dsrd/dsrd.sock", LogLevel: "info", LogFormat: "text",
			Notify: Notify{Timeout: dur(30 * time.Second)},
		},
		Cluster: Cluster{
			Bind:      netip.MustParseAddrPort("192.0.2.11:7946"),
			Advertise: netip.MustParseAddrPort("192.0.2.11:7946"),
			Peers: []Peer{
				{ID: "dir1", Address: netip.MustParseAddrPort("192.0.2.11:7946")},
				{ID: "dir2", Address: netip.MustParseAddrPort("192.0.2.12:7946")},
				{ID: "wit1", Address: netip.MustParseAddrPort("192.0.2.13:7946")},
			},
			TLS:                TLS{Cert: "/etc/dsrd/tls/dir1.crt", Key: "/etc/dsrd/tls/dir1.key", CA: "/etc/dsrd/tls/ca.crt"},
			HeartbeatTimeout:   dur(500 * time.Millisecond),
			ElectionTimeout:    dur(500 * time.Millisecond),
			LeaderLeaseTimeout: dur(250 * time.Millisecond),
			CommitTimeout:      dur(50 * time.Millisecond),
		},
		IPVS: IPVS{SloppyTCP: ptr(true), ExpireNodestConn: ptr(true), ExpireQuiescentTemplate: ptr(true)},
		VIPs: []VIP{{
			Address:   netip.MustParseAddr("203.0.113.10"),
			Mode:      ModeARP,
			Interface: "eth0",
			Announce:  Announce{Count: 3, Interval: dur(1100 * time.Millisecond), Refresh: ptr(dur(30 * time.Second))},
		}},
		Services: []Service{{
			Name: "web", VIP: netip.MustParseAddr("203.0.113.10"), Port: 80, Protocol: TCP,
			Scheduler: "mh", SchedulerFlags: []string{"mh-fallback"}, DrainTimeout: dur(5 * time.Minute), Quorum: 1, OnDown: DownWeightZero,
			HealthCheck: defaultTCPCheck(80),
			Reals: []Real{
				{Address: netip.MustParseAddr("198.51.100.21"), Port: 80, Weight: ptr(100)},
				{Address: netip.MustParseAddr("198.51.100.22"), Port: 80, Weight: ptr(0)},
			},
		}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", dump(t, got), dump(t, want))
	}
}

// TestExplicitZeros checks that a key written with a zero value keeps it:
// defaults apply only to absent keys.
func TestExplicitZeros(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/director_fwmark.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDirector("director_fwmark.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if *d.IPVS.SloppyTCP || !*d.IPVS.ExpireNodestConn || *d.IPVS.ConnReuseMode != 0 {
		t.Errorf("ipvs = %+v", d.IPVS)
	}
	an := d.VIPs[0].Announce
	if an.Count != 1 || an.Interval != 0 || *an.Refresh != 0 {
		t.Errorf("announce = %+v, refresh %v", an, *an.Refresh)
	}
	s := d.Services[0]
	if s.FWMark != 16 || s.Quorum != 0 || s.DrainTimeout != 0 || s.OnDown != DownRemove {
		t.Errorf("service = %+v", s)
	}
	if s.Persistence.Netmask != 128 || s.Persistence.Timeout != dur(time.Hour) {
		t.Errorf("persistence = %+v, want /128 for 1h", s.Persistence)
	}
	if got := s.Key().String(); got != "fwmark/6/16" {
		t.Errorf("key = %q", got)
	}
	if s.Reals[0].Port != 0 {
		t.Errorf("a fwmark service's real got port %d", s.Reals[0].Port)
	}
	if c := s.CheckFor(&s.Reals[1]); c.Type != CheckNone || c.Interval != 0 {
		t.Errorf("real check = %+v, want type none and nothing else", c)
	}
	if c := s.CheckFor(&s.Reals[0]); c != s.HealthCheck || c.Port != 443 {
		t.Errorf("real 0 check = %+v, want the service's", c)
	}
	all := d.Services[1]
	if all.Port != 0 || all.Persistence.Netmask != 64 || all.HealthCheck.Port != 0 || all.Key().String() != "udp/[2001:db8::10]:0" {
		t.Errorf("all-ports service = %+v (%s)", all, all.Key())
	}
	if c := d.Services[2].HealthCheck; c.Port != DefaultAgentPort || c.Path != DefaultAgentPath || c.Method != "GET" || !reflect.DeepEqual(c.ExpectStatus, []string{"200"}) {
		t.Errorf("agent check = %+v", c)
	}
	if c := d.Services[3].HealthCheck; c.Initial != "up" || !reflect.DeepEqual(c.Command, []string{"/usr/lib/dsrd/check-smtp", "--quick"}) || c.Port != 0 {
		t.Errorf("exec check = %+v", c)
	}
}

func TestAnchorsAndMerges(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/director_anchors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDirector("director_anchors.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	web, alt := d.Services[0], d.Services[1]
	if web.Scheduler != "wlc" || alt.Scheduler != "rr" {
		t.Errorf("schedulers %q %q: explicit keys must win over merged ones", web.Scheduler, alt.Scheduler)
	}
	for _, s := range d.Services {
		c := s.HealthCheck
		if c.Type != CheckHTTP || c.Path != "/healthz" || c.Interval != dur(5*time.Second) || c.Port != s.Port {
			t.Errorf("%s: check %+v", s.Name, c)
		}
		if len(s.Reals) != 2 || s.Reals[1].Port != s.Port {
			t.Errorf("%s: reals %+v", s.Name, s.Reals)
		}
	}
	if web.HealthCheck == alt.HealthCheck {
		t.Error("services share one *HealthCheck: an alias must decode to separate values")
	}
}

func TestParseWitnessAndRealserverDefaults(t *testing.T) {
	w, err := ParseWitness("w", []byte("node: {id: wit1}\ncluster: {bind: \"192.0.2.13:7946\", peers: [wit1@192.0.2.13:7946], insecure: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if w.Node.DataDir != DefaultDataDir || w.Cluster.Advertise != w.Cluster.Bind || w.Cluster.HeartbeatTimeout != dur(DefaultHeartbeatTimeout) {
		t.Errorf("witness = %+v", w)
	}
	r, err := ParseRealserver("r", []byte("vips: [203.0.113.10]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Realserver{
		VIPs:    []netip.Addr{netip.MustParseAddr("203.0.113.10")},
		DataDir: "/var/lib/dsrd/realserver", ResyncInterval: dur(30 * time.Second),
		LogLevel: "info", LogFormat: "text",
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got %+v, want %+v", r, want)
	}
}

// TestValidFiles checks that every file under testdata/valid parses clean,
// validates again as parsed, and survives a YAML round trip.
func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			assertClean(t, file, data, kindOf(t, file))
		})
	}
}

// assertClean parses data as kind, and checks Check, Detect, Validate and
// a marshal-and-parse round trip agree that it is valid.
func assertClean(t *testing.T, name string, data []byte, kind Kind) {
	t.Helper()
	if err := Check(name, data, kind); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got, err := Detect(data); err != nil || got != kind {
		t.Errorf("Detect = %q, %v; want %q", got, err, kind)
	}
	cfg, err := parseKind(name, data, kind)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("Validate after a successful parse: %v", err)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := parseKind(name+" (marshalled)", out, kind)
	if err != nil {
		t.Fatalf("parsing the marshalled value: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(cfg, again) {
		t.Errorf("round trip changed the value:\nbefore\n%s\nafter\n%s", dump(t, cfg), dump(t, again))
	}
}

// validatable is what the three configuration types have in common.
type validatable interface{ Validate() error }

func parseKind(name string, data []byte, kind Kind) (validatable, error) {
	switch kind {
	case KindDirector:
		return ParseDirector(name, data)
	case KindWitness:
		return ParseWitness(name, data)
	default:
		return ParseRealserver(name, data)
	}
}

func dump(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDetect(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Kind
	}{
		{"services: []\n", KindDirector},
		{"ipvs: {}\n", KindDirector},
		{"vips: [{address: 203.0.113.10}]\ncluster: {}\n", KindDirector},
		{"vips: [203.0.113.10]\nnode: {}\n", KindDirector},
		{"node: {id: a}\ncluster: {}\n", KindWitness},
		{"cluster: {}\n", KindWitness},
		{"vips: [203.0.113.10]\n", KindRealserver},
		{"interfaces: [eth0]\n", KindRealserver},
		{"cleanup_on_exit: true\n", KindRealserver},
		{"frob: 1\n", ""},
		{"", ""},
		{"[1, 2]\n", ""},
		{"a: [\n", ""},
	} {
		got, err := Detect([]byte(tc.in))
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("Detect(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || errs.List[0].Line < 1 {
				t.Errorf("Detect(%q): error %v is not a positioned *Errors", tc.in, err)
			}
		}
	}
}

func TestCheckUnknownKind(t *testing.T) {
	if err := Check("x", []byte("a: 1\n"), "balancer"); err == nil || !strings.Contains(err.Error(), `unknown configuration kind "balancer"`) {
		t.Errorf("err = %v", err)
	}
}

func TestParsePeer(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "dir1@192.0.2.11:7946", want: "dir1@192.0.2.11:7946"},
		{in: "dir-2.a_b@[2001:db8::1]:7946", want: "dir-2.a_b@[2001:db8::1]:7946"},
		{in: "dir1@2001:db8::1:7946", err: "invalid address"},
		{in: "192.0.2.11:7946", err: "want id@ip:port"},
		{in: "@192.0.2.11:7946", err: "id must be"},
		{in: "a@b@192.0.2.11:7946", err: "invalid address"},
		{in: "dir1@host.example:7946", err: "invalid address"},
		{in: "dir1@[fe80::1%eth0]:7946", err: "zone"},
	} {
		p, err := ParsePeer(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePeer(%q) error = %v, want %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParsePeer(%q): %v", tc.in, err)
		case p.String() != tc.want:
			t.Errorf("ParsePeer(%q) = %s, want %s", tc.in, p, tc.want)
		}
	}
	var p Peer
	if err := p.UnmarshalText([]byte("")); err != nil || p != (Peer{}) || p.String() != "" {
		t.Errorf("empty peer: %v %v", p, err)
	}
}

func TestServiceKey(t *testing.T) {
	for _, tc := range []struct {
		s    Service
		want string
	}{
		{Service{Protocol: TCP, VIP: netip.MustParseAddr("203.0.113.10"), Port: 80}, "tcp/203.0.113.10:80"},
		{Service{Protocol: UDP, VIP: netip.MustParseAddr("2001:db8::53"), Port: 53}, "udp/[2001:db8::53]:53"},
		{Service{FWMark: 1, VIP: netip.MustParseAddr("203.0.113.10")}, "fwmark/4/1"},
		{Service{FWMark: 4294967295, Reals: []Real{{Address: netip.MustParseAddr("2001:db8::1")}}}, "fwmark/6/4294967295"},
	} {
		if got := tc.s.Key().String(); got != tc.want {
			t.Errorf("Key() = %q, want %q", got, tc.want)
		}
	}
	for _, none := range []Service{{FWMark: 2}, {Protocol: "icmp", VIP: netip.MustParseAddr("203.0.113.10"), Port: 80}} {
		if k := none.Key(); k != (ipvs.ServiceKey{}) {
			t.Errorf("%+v: Key() = %v, want none", none, k)
		}
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1m30s")); err != nil || d != dur(90*time.Second) {
		t.Errorf("UnmarshalText: %v %v", d, err)
	}
	if err := d.UnmarshalText([]byte("-1s")); err == nil {
		t.Error("negative duration accepted")
	}
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 250ms\n"), &v); err != nil || v.D != dur(250*time.Millisecond) {
		t.Errorf("yaml.Unmarshal: %v %v", v.D, err)
	}
	if err := yaml.Unmarshal([]byte("d: -5s\n"), &v); err == nil {
		t.Error("yaml.Unmarshal took a negative duration")
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "d: 250ms\n" {
		t.Errorf("Marshal = %q, %v", out, err)
	}
}

func TestErrorsFormatting(t *testing.T) {
	err := error(&Errors{List: []Error{
		{File: "f.yaml", Line: 3, Col: 5, Msg: "bad"},
		{Line: 4, Col: 1, Msg: "no file"},
		{Msg: "no position"},
	}})
	want := "f.yaml:3:5: bad\n4:1: no file\nno position"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
	var one Error
	if !errors.As(err, &one) || one.Msg != "bad" {
		t.Errorf("errors.As(Error) = %+v", one)
	}
}

func TestValidateWithoutPositions(t *testing.T) {
	d := &Director{}
	err := d.Validate()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v", err)
	}
	for _, e := range errs.List {
		if e.Line != 0 || e.File != "" {
			t.Errorf("error with a position: %+v", e)
		}
	}
	if !strings.Contains(err.Error(), "node.id: required") {
		t.Errorf("err = %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "realserver.yaml")
	if err := os.WriteFile(path, []byte("vips: [203.0.113.10]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRealserver(path); err != nil {
		t.Errorf("LoadRealserver: %v", err)
	}
	if _, err := LoadDirector(path); err == nil || !strings.HasPrefix(err.Error(), path+":") {
		t.Errorf("LoadDirector of a realserver file: %v", err)
	}
	_, err := LoadWitness(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadWitness of a missing file: %v", err)
	}
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("#", MaxFileSize+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRealserver(big); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("LoadRealserver of a big file: %v", err)
	}
}

func TestClosest(t *testing.T) {
	known := []string{"scheduler", "scheduler_flags", "port", "protocol", "health_check", "vip"}
	for in, want := range map[string]string{
		"schedular":    "scheduler",
		"Scheduler":    "scheduler",
		"prot":         "port",
		"health-check": "health_check",
		"vips":         "vip",
		"colour":       "",
		"x":            "",
	} {
		if got := closest(in, known); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestParallel parses from several goroutines at once: the package keeps no
// mutable state, which go test -race checks here.
func TestParallel(t *testing.T) {
	data, err := os.ReadFile("../../packaging/examples/director.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		t.Run(strings.Repeat("p", i+1), func(t *testing.T) {
			t.Parallel()
			for range 5 {
				if _, err := ParseDirector("director.yaml", data); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestScalarForms(t *testing.T) {
	base := "node: {id: dir1, interface: eth0}\ncluster: {bind: \"127.0.0.1:7946\", peers: [dir1@127.0.0.1:7946]}\n" +
		"vips: [{address: 203.0.113.10}]\n"
	svc := func(s string) string {
		return base + "services: [{name: s, vip: 203.0.113.10, protocol: tcp, reals: [{address: 198.51.100.1}], " + s + "}]\n"
	}
	for _, tc := range []struct {
		in   string
		port uint16
		err  string
	}{
		{in: svc("port: 0x50"), port: 80},
		{in: svc("port: +80"), port: 80},
		{in: svc("port: 1_000"), port: 1000},
		{in: svc("port: 0o17"), port: 15},
		{in: svc("port: 08"), err: "ambiguous number 08"},
		{in: svc("port: .inf"), err: "expected an integer"},
		{in: svc(`port: "80"`), err: `expected an integer, got string "80"`},
		{in: "\ufeff" + svc("port: 80"), port: 80},
		{in: strings.ReplaceAll(svc("port: 80"), "\n", "\r\n"), port: 80},
		{in: svc("port: 80, drain_timeout: 1"), err: `invalid duration "1"`},
		{in: svc("port: 80, drain_timeout: 0"), port: 80},
		{in: svc("port: 80, drain_timeout: true"), err: `expected a duration such as 1.5s, got boolean "true"`},
	} {
		d, err := ParseDirector("t.yaml", []byte(tc.in))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case d.Services[0].Port != tc.port:
			t.Errorf("%q: port %d, want %d", tc.in, d.Services[0].Port, tc.port)
		}
	}
}

// TestClusterTrust: off loopback, the Raft port needs mutual TLS or an
// explicit insecure: true; a loopback-only cluster may stay plain. The
// error names the cluster's file position.
func TestClusterTrust(t *testing.T) {
	const svc = "vips: [{address: 203.0.113.10}]\n" +
		"services: [{name: s, vip: 203.0.113.10, protocol: tcp, port: 80, reals: [{address: 198.51.100.1}]}]\n"
	for _, tc := range []struct {
		name, cluster, wantErr string
	}{
		{"loopback plain", `{bind: "127.0.0.1:7946", peers: [dir1@127.0.0.1:7946]}`, ""},
		{"ipv6 loopback plain", `{bind: "[::1]:7946", peers: ["dir1@[::1]:7946"]}`, ""},
		{"lan plain", `{bind: "192.0.2.11:7946", peers: [dir1@192.0.2.11:7946]}`,
			"t.yaml:2:10: cluster: mutual TLS is required off loopback (bind 192.0.2.11:7946, peer dir1@192.0.2.11:7946)"},
		{"loopback bind, lan peer", `{bind: "127.0.0.1:7946", peers: [dir1@127.0.0.1:7946, dir2@192.0.2.12:7946]}`,
			"mutual TLS is required off loopback (peer dir2@192.0.2.12:7946)"},
		{"lan with tls", `{bind: "192.0.2.11:7946", peers: [dir1@192.0.2.11:7946], tls: {cert: /c, key: /k, ca: /ca}}`, ""},
		{"lan insecure", `{bind: "192.0.2.11:7946", peers: [dir1@192.0.2.11:7946], insecure: true}`, ""},
		{"insecure false", `{bind: "192.0.2.11:7946", peers: [dir1@192.0.2.11:7946], insecure: false}`,
			"mutual TLS is required off loopback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "node: {id: dir1, interface: eth0}\ncluster: " + tc.cluster + "\n" + svc
			_, err := ParseDirector("t.yaml", []byte(doc))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("accepted, want %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestValidateShared: the replicated part of a configuration is checked by
// the file's rules; a VIP may leave its interface to the node.
func TestValidateShared(t *testing.T) {
	d, err := LoadDirector("testdata/valid/director_minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	vips := append([]VIP(nil), d.VIPs...)
	vips[0].Interface = ""
	if err := ValidateShared(d.IPVS, vips, d.Services); err != nil {
		t.Fatalf("a valid spec refused: %v", err)
	}
	bad := append([]Service(nil), d.Services...)
	bad[0].HealthCheck = &HealthCheck{Type: CheckTCP, Interval: Duration(time.Nanosecond), Timeout: Duration(time.Nanosecond), Rise: 1, Fall: 1}
	badVIPs := append([]VIP(nil), vips...)
	badVIPs[0].Address = netip.MustParseAddr("224.0.0.1")
	err = ValidateShared(d.IPVS, badVIPs, bad)
	if err == nil {
		t.Fatal("a spec with a multicast VIP and a 1ns check interval was accepted")
	}
	for _, want := range []string{"vips[0].address: 224.0.0.1 is a multicast address", "services[0].health_check.interval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestParseNotify: notify scripts are absolute argv lists.
func TestParseNotify(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/director_minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data = []byte(strings.Replace(string(data), "  interface: eth0\n", `  interface: eth0
  notify:
    master: [/usr/local/bin/on-vips, master]
    fault: [/usr/local/bin/page, "VIP interface down"]
    timeout: 10s
`, 1))
	got, err := ParseDirector("director_notify.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := Notify{
		Master:  []string{"/usr/local/bin/on-vips", "master"},
		Fault:   []string{"/usr/local/bin/page", "VIP interface down"},
		Timeout: dur(10 * time.Second),
	}
	if !reflect.DeepEqual(got.Node.Notify, want) {
		t.Errorf("node.notify = %+v, want %+v", got.Node.Notify, want)
	}
}

// TestAnnounceBounds: a takeover burst is a handful of announcements, not
// a flood (issue 12 sent 1,000 gratuitous ARPs in 1.2 s through a spec
// with count 1000, interval 1ms).
func TestAnnounceBounds(t *testing.T) {
	for _, tc := range []struct {
		announce, want string
	}{
		{"{count: 1000, interval: 1ms}", "announce.count: 1000: at most 100"},
		{"{count: 5, interval: 1ms}", "announce.interval: 1ms is too short"},
		{"{count: 1, interval: 0s}", ""},
		{"{count: 100, interval: 10ms}", ""},
	} {
		doc := "node: {id: dir1, interface: eth0}\ncluster: {bind: \"127.0.0.1:7946\", peers: [dir1@127.0.0.1:7946]}\n" +
			"vips: [{address: 203.0.113.10, announce: " + tc.announce + "}]\n" +
			"services: [{name: s, vip: 203.0.113.10, protocol: tcp, port: 80, reals: [{address: 198.51.100.1}]}]\n"
		_, err := ParseDirector("t.yaml", []byte(doc))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s refused: %v", tc.announce, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.announce, err, tc.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"256MiB": 256 << 20, "1GiB": 1 << 30, "512KiB": 512 << 10, "4096B": 4096, "2TiB": 2 << 40} {
		got, err := parseByteSize(in)
		if err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
		if got.String() != in && in != "4096B" {
			t.Errorf("%d.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"", "256", "256MB", "-1MiB", "1.5GiB", "MiB", "99999999999TiB"} {
		if _, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) accepted", in)
		}
	}
	if s := ByteSize(4096).String(); s != "4KiB" {
		t.Errorf("4096 = %q, want 4KiB", s)
	}
}
