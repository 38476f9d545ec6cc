package healthcheck

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// ProxyProtocol is the version of the PROXY protocol header a tcp, http or
// https check sends first, for backends that require one (HAProxy's
// accept-proxy, nginx's proxy_protocol) and reset a connection without it.
// The header names the director's end of the check's connection as the
// source and the checked destination as the destination, so a backend that
// logs client addresses logs the director's check address.
type ProxyProtocol string

// The versions of the PROXY protocol (haproxy's proxy-protocol.txt).
const (
	// ProxyNone sends no header (the zero value).
	ProxyNone ProxyProtocol = ""
	// ProxyV1 sends the human-readable header: "PROXY TCP4 src dst sport dport\r\n".
	ProxyV1 ProxyProtocol = "v1"
	// ProxyV2 sends the binary header: the 12-byte signature, version 2
	// command PROXY, TCP over IPv4 or IPv6, and the addresses.
	ProxyV2 ProxyProtocol = "v2"
)

// ParseProxyProtocol validates a version's name; "" is ProxyNone.
func ParseProxyProtocol(s string) (ProxyProtocol, error) {
	switch p := ProxyProtocol(s); p {
	case ProxyNone, ProxyV1, ProxyV2:
		return p, nil
	}
	return "", fmt.Errorf("unknown PROXY protocol version %q (want v1 or v2)", s)
}

// proxyV2Signature starts every version 2 header.
var proxyV2Signature = []byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// proxyHeader encodes the header of version v for a TCP connection from
// src to dst. Both addresses must be of one family (an IPv4-mapped IPv6
// address counts as IPv4).
func proxyHeader(v ProxyProtocol, src, dst netip.AddrPort) ([]byte, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() {
		return nil, fmt.Errorf("PROXY header: addresses %s and %s are not of one family", src, dst)
	}
	// Zones have no place in the header: the backend sees plain addresses.
	s, d = s.WithZone(""), d.WithZone("")
	switch v {
	case ProxyV1:
		proto := "TCP4"
		if s.Is6() {
			proto = "TCP6"
		}
		return []byte("PROXY " + proto + " " + s.String() + " " + d.String() + " " +
			strconv.Itoa(int(src.Port())) + " " + strconv.Itoa(int(dst.Port())) + "\r\n"), nil
	case ProxyV2:
		fam, size := byte(0x11), 12 // AF_INET, STREAM; 2 x 4 + 2 x 2 bytes
		if s.Is6() {
			fam, size = 0x21, 36 // AF_INET6, STREAM; 2 x 16 + 2 x 2 bytes
		}
		b := make([]byte, 0, 16+size)
		b = append(b, proxyV2Signature...)
		b = append(b, 0x21, fam) // version 2, command PROXY
		b = binary.BigEndian.AppendUint16(b, uint16(size))
		b = append(b, s.AsSlice()...)
		b = append(b, d.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
		return b, nil
	}
	return nil, fmt.Errorf("PROXY header: unknown version %q", v)
}

// sendProxyHeader writes the header of version v for conn's own addresses,
// bounded by deadline; nothing for ProxyNone.
func sendProxyHeader(conn net.Conn, v ProxyProtocol, deadline time.Time) error {
	if v == ProxyNone {
		return nil
	}
	src, err := netip.ParseAddrPort(conn.LocalAddr().String())
	if err != nil {
		return fmt.Errorf("PROXY header: local address: %w", err)
	}
	dst, err := netip.ParseAddrPort(conn.RemoteAddr().String())
	if err != nil {
		return fmt.Errorf("PROXY header: remote address: %w", err)
	}
	h, err := proxyHeader(v, src, dst)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(deadline)
	if _, err := conn.Write(h); err != nil {
		return fmt.Errorf("send PROXY %s header: %w", v, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return nil
}
