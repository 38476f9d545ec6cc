package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestAdmissionInheritAndDefaults(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/director_admission.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, warns, err := ParseDirectorWarnings("a.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	var w []string
	for _, x := range warns {
		w = append(w, x.Error())
	}
	// api's own allow (everything) holds its own deny: deny wins.
	if want := "a.yaml:29:14: services[1].admission.deny[0]: service api: deny 203.0.113.0/24 overlaps allow 0.0.0.0/0: deny wins, 203.0.113.0/24 is dropped"; strings.Join(w, "\n") != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(w, "\n"), want)
	}
	show := func(a *Admission) string {
		if a == nil {
			return "none"
		}
		s := fmt.Sprintf("allow=%v deny=%v", a.Allow, a.Deny)
		if r := a.SourceRate; r != nil {
			s += fmt.Sprintf(" source=%s burst %d /%d /%d", r.Rate, r.Burst, r.PrefixV4, r.PrefixV6)
		}
		if r := a.ServiceRate; r != nil {
			s += fmt.Sprintf(" cap=%s burst %d", r.Rate, r.Burst)
		}
		return s
	}
	for i, want := range []string{
		"allow=[198.51.100.0/24 203.0.113.0/25 192.0.2.1/32] deny=[] source=10/s burst 20 /24 /64 cap=1000/s burst 100",
		"allow=[0.0.0.0/0] deny=[203.0.113.0/24] source=10/s burst 20 /24 /64",
		"allow=[] deny=[2001:db8:bad::/48 2001:db8::1/128] source=600/m burst 5 /32 /64",
	} {
		if got := show(EffectiveAdmission(d.VIPs, &d.Services[i])); got != want {
			t.Errorf("%s: %s\nwant %s", d.Services[i].Name, got, want)
		}
	}
	if d.VIPs[1].Admission.SourceRate.Rate != (Rate{Count: 600, Per: Duration(time.Minute)}) {
		t.Errorf("rate %+v", d.VIPs[1].Admission.SourceRate.Rate)
	}
}

func TestAdmissionNoneIsNil(t *testing.T) {
	s := Service{VIP: netip.MustParseAddr("192.0.2.1")}
	if a := EffectiveAdmission([]VIP{{Address: s.VIP}}, &s); a != nil {
		t.Errorf("no admission: %+v", a)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]string{"1/s": "1/s", "10/second": "10/s", "5/m": "5/m", "7/minute": "7/m", "2/h": "2/h", "3/hour": "3/h", "1/d": "1/d", "4/day": "4/d", " 9 / s ": "9/s"} {
		r, err := ParseRate(in)
		if err != nil || r.String() != want {
			t.Errorf("%q: %v %v, want %s", in, r, err, want)
		}
	}
	for _, in := range []string{"", "10", "/s", "x/s", "-1/s", "10/w", "10/ss", "99999999999/s", "1/s/s"} {
		if r, err := ParseRate(in); err == nil {
			t.Errorf("%q: parsed as %v", in, r)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.0/24": "192.0.2.0/24", "192.0.2.1": "192.0.2.1/32", "2001:db8::/32": "2001:db8::/32", "2001:db8::1": "2001:db8::1/128", "0.0.0.0/0": "0.0.0.0/0"} {
		p, err := parsePrefix(in)
		if err != nil || p.String() != want {
			t.Errorf("%q: %v %v, want %s", in, p, err, want)
		}
	}
	for _, in := range []string{"192.0.2.1/24", "192.0.2.0/33", "fe80::1%eth0/128", "::ffff:192.0.2.0/120", "x", "192.0.2.0/", "/24"} {
		if p, err := parsePrefix(in); err == nil {
			t.Errorf("%q: parsed as %v", in, p)
		}
	}
}

// TestAdmissionOverlapWarningsBounded: a file with many overlaps reports
// a bounded number of warnings and says how many more there are.
func TestAdmissionOverlapWarningsBounded(t *testing.T) {
	var deny []string
	for i := range 50 {
		deny = append(deny, fmt.Sprintf("198.51.100.%d", i))
	}
	doc := `node: {id: d1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: [d1@127.0.0.1:7946]}
vips: [{address: 192.0.2.10}]
services:
  - {name: web, vip: 192.0.2.10, port: 80, protocol: tcp, reals: [{address: 192.0.2.21}],
     admission: {allow: [198.51.100.0/24], deny: [` + strings.Join(deny, ", ") + `]}}
`
	_, warns, err := ParseDirectorWarnings("w.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	more := 0
	for _, w := range warns {
		if strings.Contains(w.Msg, "30 more allow and deny entries overlap") {
			more++
		}
	}
	if len(warns) != maxOverlapWarnings+1 || more != 1 {
		t.Errorf("%d warnings (%d saying how many more): %v", len(warns), more, warns)
	}
}
