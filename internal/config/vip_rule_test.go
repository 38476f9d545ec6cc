package config

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/dsrd/dsrd/realserver"
	"github.com/dsrd/dsrd/vrrp"
)

// TestAcceptedVIPsPassVRRP: every VIP of every director file config
// accepts (testdata/valid, the fuzz seeds it accepts, packaging/examples),
// the vips and the services' vip alike, passes vrrp.CheckVIP, the rule
// vrrp.NewOwner applies: a file config check passes is one the directors
// take (issue 13).
func TestAcceptedVIPsPassVRRP(t *testing.T) {
	var files []string
	for _, glob := range []string{"testdata/valid/director*.yaml", "testdata/fuzz/seed_director*.yaml", "../../packaging/examples/director.yaml"} {
		m, err := filepath.Glob(glob)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no director files")
	}
	checked := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		d, err := ParseDirector(file, data)
		if err != nil {
			continue // a seed config refuses: nothing to hold to the rule
		}
		for i, v := range d.VIPs {
			checked++
			if err := vrrp.CheckVIP(v.Address); err != nil {
				t.Errorf("%s: vips[%d] %s: config accepts it, vrrp refuses it: %v", file, i, v.Address, err)
			}
		}
		for i, s := range d.Services {
			if !s.VIP.IsValid() {
				continue // a fwmark service without an address
			}
			checked++
			if err := vrrp.CheckVIP(s.VIP); err != nil {
				t.Errorf("%s: services[%d].vip %s: config accepts it, vrrp refuses it: %v", file, i, s.VIP, err)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no VIP checked: the files are all refused")
	}
}

// vipFile is a valid director file but for its one VIP, a, which its
// service uses too.
func vipFile(a netip.Addr) []byte {
	real := "198.51.100.21"
	if a.Is6() {
		real = "2001:db8:1::21"
	}
	return fmt.Appendf(nil, `node: {id: dir1, interface: eth0}
cluster:
  bind: 192.0.2.11:7946
  peers: [dir1@192.0.2.11:7946, dir2@192.0.2.12:7946, wit1@192.0.2.13:7946]
  tls: {cert: /etc/dsrd/tls/dir1.crt, key: /etc/dsrd/tls/dir1.key, ca: /etc/dsrd/tls/ca.crt}
vips: [{address: %q}]
services: [{name: web, vip: %q, protocol: tcp, port: 80, reals: [{address: %s}]}]
`, a, a, real)
}

// vipEdges are addresses at the edges of the rule, and random ones from
// the special ranges and from everywhere.
func vipEdges() []netip.Addr {
	var out []netip.Addr
	for _, s := range []string{
		"203.0.113.10", "2001:db8::10", "0.0.0.0", "::", "127.0.0.1", "127.255.255.254", "::1",
		"169.254.0.0", "169.254.10.10", "169.254.255.255", "169.255.0.1", "fe80::1", "febf::1", "fec0::1",
		"224.0.0.18", "239.255.255.255", "ff02::1", "ff05::2", "255.255.255.255", "255.255.255.254",
		"10.0.0.1", "100.64.0.1", "fc00::1", "0.1.2.3",
	} {
		out = append(out, netip.MustParseAddr(s))
	}
	r := rand.New(rand.NewPCG(13, 13))
	for range 200 {
		var b4 [4]byte
		var b16 [16]byte
		for i := range b16 {
			b16[i] = byte(r.Uint32())
		}
		copy(b4[:], b16[:4])
		out = append(out, netip.AddrFrom4(b4), netip.AddrFrom16(b16))
		// The special ranges, their host part random.
		for _, p := range []string{"169.254.0.0/16", "127.0.0.0/8", "224.0.0.0/4", "0.0.0.0/8", "fe80::/10", "ff00::/8"} {
			pfx := netip.MustParsePrefix(p)
			a := pfx.Addr().AsSlice()
			bits := pfx.Bits()
			for i := range a {
				if i*8 >= bits {
					a[i] = b16[i]
				} else if i*8+8 > bits {
					keep := byte(0xff << (8 - (bits - i*8)))
					a[i] = a[i]&keep | b16[i]&^keep
				}
			}
			x, _ := netip.AddrFromSlice(a)
			out = append(out, x)
		}
	}
	return out
}

// TestVIPRuleIsVRRPs: over edge and random addresses, config accepts a
// director file with the VIP exactly when vrrp.CheckVIP does, and the
// realserver agent's rule (realserver.CheckVIP, which a backend applies to
// the same VIPs) agrees with the director's.
func TestVIPRuleIsVRRPs(t *testing.T) {
	accepted := 0
	for _, a := range vipEdges() {
		_, err := ParseDirector("vip.yaml", vipFile(a))
		want := vrrp.CheckVIP(a)
		if (err == nil) != (want == nil) {
			t.Errorf("%s: config says %v, vrrp.CheckVIP says %v", a, err, want)
		}
		if err == nil {
			accepted++
		}
		if rs := realserver.CheckVIP(a); (rs == nil) != (want == nil) {
			t.Errorf("%s: realserver.CheckVIP says %v, vrrp.CheckVIP says %v", a, rs, want)
		}
	}
	if accepted == 0 {
		t.Fatal("no address accepted: the template is broken")
	}
}
