package healthcheck

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// The headers' bytes against haproxy's proxy-protocol.txt: the version 1
// examples of section 2.1 (the longest lines), and version 2's layout of
// section 2.2 written out byte by byte.
func TestProxyHeaderBytes(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name     string
		v        ProxyProtocol
		src, dst netip.AddrPort
		want     string // text for v1, hex for v2
	}{
		{"v1 tcp4 longest", ProxyV1, ap("255.255.255.255:65535"), ap("255.255.255.255:65535"),
			"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"},
		{"v1 tcp6 longest", ProxyV1, ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
			"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"},
		{"v1 tcp4", ProxyV1, ap("192.0.2.11:56324"), ap("198.51.100.21:443"),
			"PROXY TCP4 192.0.2.11 198.51.100.21 56324 443\r\n"},
		{"v1 mapped is tcp4", ProxyV1, ap("[::ffff:192.0.2.11]:1"), ap("198.51.100.21:2"),
			"PROXY TCP4 192.0.2.11 198.51.100.21 1 2\r\n"},
		{"v1 zone dropped", ProxyV1, ap("[fe80::1%eth0]:1"), ap("[fe80::2%eth0]:2"),
			"PROXY TCP6 fe80::1 fe80::2 1 2\r\n"},
		{"v2 tcp4", ProxyV2, ap("192.0.2.11:56324"), ap("198.51.100.21:443"),
			"0d0a0d0a000d0a515549540a" + // signature
				"21" + "11" + "000c" + // v2 PROXY, TCP over IPv4, 12 bytes
				"c000020b" + "c6336415" + // 192.0.2.11, 198.51.100.21
				"dc04" + "01bb"}, // 56324, 443
		{"v2 tcp6", ProxyV2, ap("[2001:db8::11]:80"), ap("[2001:db8:1::21]:8080"),
			"0d0a0d0a000d0a515549540a" + "21" + "21" + "0024" + // TCP over IPv6, 36 bytes
				"20010db8000000000000000000000011" + "20010db8000100000000000000000021" +
				"0050" + "1f90"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := proxyHeader(tt.v, tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if tt.v == ProxyV1 {
				if string(got) != tt.want {
					t.Errorf("got %q, want %q", got, tt.want)
				}
				if len(got) > 107 {
					t.Errorf("%d bytes: version 1 headers are at most 107", len(got))
				}
				return
			}
			if hex.EncodeToString(got) != tt.want {
				t.Errorf("got  %x\nwant %s", got, tt.want)
			}
		})
	}
	if _, err := proxyHeader(ProxyV1, ap("192.0.2.1:1"), ap("[2001:db8::1]:2")); err == nil {
		t.Error("a header of mixed families was encoded")
	}
	if _, err := proxyHeader("v3", ap("192.0.2.1:1"), ap("192.0.2.2:2")); err == nil {
		t.Error("an unknown version was encoded")
	}
	for _, s := range []string{"", "v1", "v2"} {
		if _, err := ParseProxyProtocol(s); err != nil {
			t.Errorf("ParseProxyProtocol(%q): %v", s, err)
		}
	}
	if _, err := ParseProxyProtocol("2"); err == nil {
		t.Error(`ParseProxyProtocol("2") accepted`)
	}
}

// readProxyHeader reads a PROXY header as a backend that requires one
// does, and returns the addresses it names; an error means the backend
// would reset the connection.
func readProxyHeader(r *bufio.Reader) (src, dst netip.AddrPort, err error) {
	sig, err := r.Peek(12)
	if err != nil {
		return src, dst, fmt.Errorf("no header: %w", err)
	}
	if bytes.Equal(sig, proxyV2Signature) {
		var hdr [16]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return src, dst, err
		}
		n := int(binary.BigEndian.Uint16(hdr[14:]))
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return src, dst, err
		}
		alen := map[byte]int{0x11: 4, 0x21: 16}[hdr[13]]
		if hdr[12] != 0x21 || alen == 0 || n != 2*alen+4 {
			return src, dst, fmt.Errorf("bad v2 header %x", hdr)
		}
		s, _ := netip.AddrFromSlice(body[:alen])
		d, _ := netip.AddrFromSlice(body[alen : 2*alen])
		return netip.AddrPortFrom(s, binary.BigEndian.Uint16(body[2*alen:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(body[2*alen+2:])), nil
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "PROXY TCP") {
		return src, dst, fmt.Errorf("no PROXY line: %q", line)
	}
	var proto, s, d string
	var sp, dp uint16
	if _, err := fmt.Sscanf(line, "PROXY %s %s %s %d %d\r\n", &proto, &s, &d, &sp, &dp); err != nil {
		return src, dst, err
	}
	sa, err1 := netip.ParseAddr(s)
	da, err2 := netip.ParseAddr(d)
	if err1 != nil || err2 != nil {
		return src, dst, fmt.Errorf("bad addresses in %q", line)
	}
	return netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp), nil
}

// proxyRequired is a listener that closes every connection whose first
// bytes are not a PROXY header naming the connection's own ends.
type proxyRequired struct {
	net.Listener
	t *testing.T
}

func (l proxyRequired) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		r := bufio.NewReader(c)
		src, dst, err := readProxyHeader(r)
		if err == nil && (src.String() != c.RemoteAddr().String() || dst.String() != c.LocalAddr().String()) {
			err = fmt.Errorf("header names %s -> %s, the connection is %s -> %s", src, dst, c.RemoteAddr(), c.LocalAddr())
		}
		if err != nil {
			l.t.Logf("backend refused a connection: %v", err)
			_ = c.Close()
			continue
		}
		return bufferedConn{c, r}, nil
	}
}

type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Checks with proxy set pass against backends that require the header,
// and fail without it: tcp with send/expect, http, https (the header goes
// before TLS), v1 and v2.
func TestProxyProtocolChecks(t *testing.T) {
	pingPong := tcpServer(t, "127.0.0.1", func(c net.Conn) {
		r := bufio.NewReader(c)
		if _, _, err := readProxyHeader(r); err != nil {
			return
		}
		if line, _ := r.ReadString('\n'); strings.TrimSpace(line) == "PING" {
			_, _ = io.WriteString(c, "+PONG\r\n")
		}
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	plain := httptest.NewUnstartedServer(handler)
	plain.Listener = proxyRequired{plain.Listener, t}
	plain.Start()
	t.Cleanup(plain.Close)
	secure := httptest.NewUnstartedServer(handler)
	secure.Listener = proxyRequired{secure.Listener, t}
	secure.StartTLS()
	t.Cleanup(secure.Close)
	host := func(s *httptest.Server) string {
		return strings.TrimPrefix(strings.TrimPrefix(s.URL, "http://"), "https://")
	}

	for _, v := range []ProxyProtocol{ProxyV1, ProxyV2} {
		t.Run(string(v), func(t *testing.T) {
			r := runCheck(t, mustChecker(t, Spec{Probe: TCP{Send: "PING\r\n", Expect: "+PONG", Proxy: v}}), targetOf(t, pingPong))
			want(t, r, true, ReasonOK, "+PONG")
			r = runCheck(t, mustChecker(t, Spec{Probe: HTTP{Proxy: v}}), targetOf(t, host(plain)))
			want(t, r, true, ReasonOK, "200")
			r = runCheck(t, mustChecker(t, Spec{Probe: HTTP{TLS: true, Proxy: v}}), targetOf(t, host(secure)))
			want(t, r, true, ReasonOK, "200")
			r = runCheck(t, mustChecker(t, Spec{Probe: TCP{Proxy: v}}), targetOf(t, pingPong))
			want(t, r, true, ReasonOK, "PROXY "+string(v))
		})
	}
	// Without the header the same backends refuse.
	r := runCheck(t, mustChecker(t, Spec{Params: Params{Timeout: ms(300)}, Probe: TCP{Send: "PING\r\n", Expect: "+PONG"}}), targetOf(t, pingPong))
	if r.Up {
		t.Errorf("tcp check without the header: %s, want down", r)
	}
	if r = runCheck(t, mustChecker(t, Spec{Probe: HTTP{}}), targetOf(t, host(plain))); r.Up {
		t.Errorf("http check without the header: %s, want down", r)
	}
	if _, err := NewChecker(Spec{Probe: HTTP{Proxy: "v3"}}, BuildOptions{}); err == nil {
		t.Error("an http check with PROXY v3 was built")
	}
	if _, err := NewChecker(Spec{Probe: TCP{Proxy: "1"}}, BuildOptions{}); err == nil {
		t.Error("a tcp check with PROXY 1 was built")
	}
}
