package healthcheck

import (
	"net"
	"strconv"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// dnsHandler answers www.example.test A with 192.0.2.10, big.example.test
// with a truncated reply over UDP and a full one over TCP, and NXDOMAIN to
// anything else.
func dnsHandler(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	name := q.Question[0].Name
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	switch {
	case name == "www.example.test." && q.Question[0].Qtype == dns.TypeA:
		rr, _ := dns.NewRR("www.example.test. 60 IN A 192.0.2.10")
		m.Answer = append(m.Answer, rr)
	case name == "big.example.test." && udp:
		m.Truncated = true
	case name == "big.example.test.":
		rr, _ := dns.NewRR("big.example.test. 60 IN A 192.0.2.11")
		m.Answer = append(m.Answer, rr)
	default:
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// dnsServers starts a UDP and a TCP DNS server on the same loopback port.
func dnsServers(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			_ = pc.Close()
			continue // the TCP port is taken: try another
		}
		var wg sync.WaitGroup
		started := make(chan struct{}, 2)
		udp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(dnsHandler), NotifyStartedFunc: func() { started <- struct{}{} }}
		tcp := &dns.Server{Listener: ln, Handler: dns.HandlerFunc(dnsHandler), NotifyStartedFunc: func() { started <- struct{}{} }}
		wg.Go(func() { _ = udp.ActivateAndServe() })
		wg.Go(func() { _ = tcp.ActivateAndServe() })
		<-started
		<-started
		t.Cleanup(func() { _ = udp.Shutdown(); _ = tcp.Shutdown(); wg.Wait() })
		return pc.LocalAddr().String()
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}

func TestDNS(t *testing.T) {
	addr := dnsServers(t)
	mute := udpServer(t, "127.0.0.1", func([]byte) []byte { return nil })
	tests := []struct {
		name   string
		spec   Spec
		addr   string
		up     bool
		reason Reason
		msg    string
	}{
		{"noerror", Spec{Probe: DNS{QueryName: "www.example.test"}}, addr, true, ReasonOK, "NOERROR"},
		{"answer", Spec{Probe: DNS{QueryName: "www.example.test", QueryType: "a", ExpectAnswer: "192.0.2.10"}}, addr, true, ReasonOK, "192.0.2.10"},
		{"wrong answer", Spec{Probe: DNS{QueryName: "www.example.test", ExpectAnswer: "192.0.2.99"}}, addr, false, ReasonUnexpectedReply, "192.0.2.99"},
		{"nxdomain", Spec{Probe: DNS{QueryName: "nope.example.test"}}, addr, false, ReasonUnexpectedReply, "rcode NXDOMAIN, want NOERROR"},
		{"expected nxdomain", Spec{Probe: DNS{QueryName: "nope.example.test", ExpectRcode: "nxdomain"}}, addr, true, ReasonOK, ""},
		{"over tcp", Spec{Probe: DNS{QueryName: "www.example.test", ExpectAnswer: "192.0.2.10", TCP: true}}, addr, true, ReasonOK, ""},
		{"truncated, retried over tcp", Spec{Probe: DNS{QueryName: "big.example.test", ExpectAnswer: "192.0.2.11"}}, addr, true, ReasonOK, ""},
		{"no server", Spec{Probe: DNS{QueryName: "www.example.test"}}, closedPort(t, "udp", "127.0.0.1"), false, ReasonRefused, ""},
		{"no answer", Spec{Params: Params{Timeout: ms(200)}, Probe: DNS{QueryName: "www.example.test"}}, mute.String(), false, ReasonTimeout, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewChecker(tt.spec, BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want(t, runCheck(t, c, targetOf(t, tt.addr)), tt.up, tt.reason, tt.msg)
		})
	}
}
