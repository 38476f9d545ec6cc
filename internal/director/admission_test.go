package director

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/admission"
)

// TestAdmissionFailClosed: a service with admission control reaches IPVS
// only once its rules are in place; a service without any is served
// meanwhile; the table follows the configuration, and a director that
// stops leaves it in place.
func TestAdmissionFailClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a one-node Raft cluster on 127.0.0.1")
	}
	l := newLabOf(t, "", "dir1")
	n := l.dirs["dir1"]
	l.setHealth("192.0.2.21", true)
	guarded := l.service("web", 80, "192.0.2.21") + "    admission: {deny: [198.51.100.0/24], service_rate: {rate: 100/s}}\n"
	plain := l.service("extra", 8080, "192.0.2.21")
	l.writeDirector(n, guarded+plain)
	n.adm.Fail(errors.New("the kernel has no nf_tables"))
	l.start(n)

	l.waitWeights(labExtra, "192.0.2.21:8080=100")
	if w := weightsOf(n.ipvs, labWeb); w != nil {
		t.Fatalf("web is in IPVS without its admission control: %v", w)
	}
	// The kernel takes the rules: web is served, protected.
	n.adm.Fail(nil)
	l.waitWeights(labWeb, "192.0.2.21:80=100")
	table := n.adm.Table()
	for _, want := range []string{"chain svc_web", "198.51.100.0/24", "limit rate over 100/second burst 5 packets"} {
		if !strings.Contains(table, want) {
			t.Errorf("the table lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "svc_extra") {
		t.Errorf("the table has rules for extra, which has no admission control:\n%s", table)
	}
	// dsrd status --top: the offender set's sources through the API,
	// most dropped first, on the service's admission status only.
	n.adm.Offend(admission.TopName("web"),
		admission.SourceCount{Source: netip.MustParseAddr("198.51.100.7"), Packets: 3, Expires: time.Minute},
		admission.SourceCount{Source: netip.MustParseAddr("198.51.100.9"), Packets: 40, Expires: time.Minute})
	st, err := apiClient(t, n.sock).StatusTop(ctxTimeout(t), 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Services {
		var got []string
		if s.Admission != nil {
			for _, x := range s.Admission.Top {
				got = append(got, fmt.Sprintf("%s=%d", x.Source, x.Packets))
			}
		}
		want := map[string]string{"web": "198.51.100.9=40 198.51.100.7=3", "extra": ""}[s.Name]
		if strings.Join(got, " ") != want {
			t.Errorf("%s's top: %v, want %q", s.Name, got, want)
		}
	}
	// A stop leaves the table: a restarting director stays protected.
	l.stop(n)
	if n.adm.Table() == "" {
		t.Error("the stop removed the admission table")
	}
}

func TestAdmissionOf(t *testing.T) {
	spec := specOf(t, `node: {id: d1, interface: eth0}
cluster: {bind: "127.0.0.1:7946", peers: [d1@127.0.0.1:7946]}
vips:
  - address: 192.0.2.10
    admission:
      allow: [198.51.100.0/24]
      source_rate: {rate: 10/s}
  - address: 2001:db8::10
services:
  - {name: a, vip: 192.0.2.10, port: 80, protocol: tcp, reals: [{address: 192.0.2.21}]}
  - name: b
    vip: 192.0.2.10
    port: 81
    protocol: tcp
    reals: [{address: 192.0.2.21}]
    admission: {allow: [203.0.113.0/24], service_rate: {rate: 5/m, burst: 2}}
  - {name: c, vip: 2001:db8::10, port: 80, protocol: tcp, reals: [{address: "2001:db8::21"}]}
`)
	services, err := translateSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	got := admissionOf(spec, services)
	var lines []string
	for _, s := range got.Services {
		line := fmt.Sprintf("%s v%d %s %s:%d allow=%v", s.Name, s.Family, s.Protocol, s.VIP, s.Port, s.Allow)
		if s.SourceRate != nil {
			line += fmt.Sprintf(" source=%s /%d /%d", s.SourceRate.Rate, s.SourceRate.PrefixV4, s.SourceRate.PrefixV6)
		}
		if s.ServiceRate != nil {
			line += " cap=" + s.ServiceRate.String()
		}
		lines = append(lines, line)
	}
	want := []string{
		"a v4 tcp 192.0.2.10:80 allow=[198.51.100.0/24] source=10/second burst 5 packets /32 /64",
		"b v4 tcp 192.0.2.10:81 allow=[203.0.113.0/24] source=10/second burst 5 packets /32 /64 cap=5/minute burst 2 packets",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("admission:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
