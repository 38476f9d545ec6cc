package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testCA creates a cluster CA named "test CA" with the defaults otherwise.
func testCA(t testing.TB) (certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := NewCA(CAOptions{Name: "test CA"})
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, keyPEM
}

func mustParse(t testing.TB, certPEM []byte) *x509.Certificate {
	t.Helper()
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestCheckNodeID(t *testing.T) {
	for id, ok := range map[string]bool{
		"dir1": true, "a": true, "A.b_c-9": true, "...": true, strings.Repeat("x", 64): true,
		"": false, ".": false, "..": false, "../x": false, "a/b": false, "a b": false, "é": false,
		strings.Repeat("x", 65): false, "dir1\n": false, "%2e": false,
	} {
		if err := CheckNodeID(id); (err == nil) != ok {
			t.Errorf("CheckNodeID(%q) = %v, want ok %v", id, err, ok)
		}
	}
}

func TestParseRole(t *testing.T) {
	for s, want := range map[string]Role{"director": RoleDirector, "witness": RoleWitness, "Director": "", "": "", "admin": ""} {
		r, err := ParseRole(s)
		if r != want || (err == nil) != (want != "") {
			t.Errorf("ParseRole(%q) = %q, %v; want %q", s, r, err, want)
		}
	}
}

func TestIdentityString(t *testing.T) {
	if s := (Identity{NodeID: "dir1", Role: RoleDirector}).String(); s != "director dir1" {
		t.Errorf("String() = %q", s)
	}
	if s := (Identity{}).String(); s != "no identity" {
		t.Errorf("zero String() = %q", s)
	}
	if NodeURI("dir1").String() != "dsrd://node/dir1" || RoleURI(RoleWitness).String() != "dsrd://role/witness" {
		t.Errorf("URIs %s %s", NodeURI("dir1"), RoleURI(RoleWitness))
	}
}

func TestIssueRoundTrip(t *testing.T) {
	caPEM, caKeyPEM := testCA(t)
	ca := mustParse(t, caPEM)
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero ||
		ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign || ca.Subject.CommonName != "test CA" {
		t.Errorf("CA certificate: %+v", ca)
	}
	if d := ca.NotAfter.Sub(ca.NotBefore); d < DefaultCAValidity || d > DefaultCAValidity+time.Hour {
		t.Errorf("CA valid for %v", d)
	}
	if info := Describe(ca); !info.IsCA || !errors.Is(info.IdentityErr, ErrNoIdentity) {
		t.Errorf("Describe(CA) = %+v", info)
	}
	for _, tt := range []struct {
		req      NodeRequest
		wantIPs  []netip.Addr
		wantKey  string
		validity time.Duration
	}{{
		req: NodeRequest{NodeID: "dir1", Role: RoleDirector,
			IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, DNSNames: []string{"dir1.example.net"}},
		wantIPs: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")},
		wantKey: "ECDSA P-256", validity: DefaultNodeValidity,
	}, {
		req:     NodeRequest{NodeID: "wit1", Role: RoleWitness, IPs: []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.3")}, Validity: 90 * 24 * time.Hour, KeyType: KeyEd25519},
		wantIPs: []netip.Addr{netip.MustParseAddr("192.0.2.3")},
		wantKey: "Ed25519", validity: 90 * 24 * time.Hour,
	}, {
		req:     NodeRequest{NodeID: "no-ips", Role: RoleDirector},
		wantKey: "ECDSA P-256", validity: DefaultNodeValidity,
	}} {
		t.Run(tt.req.NodeID, func(t *testing.T) {
			before := time.Now()
			certPEM, keyPEM, err := IssueNode(caPEM, caKeyPEM, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
				t.Fatalf("key PEM %q", keyPEM)
			} else if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
				t.Fatal(err)
			}
			cert := mustParse(t, certPEM)
			id, err := IdentityOf(cert)
			if want := (Identity{NodeID: tt.req.NodeID, Role: tt.req.Role}); err != nil || id != want {
				t.Errorf("IdentityOf = %v, %v; want %v", id, err, want)
			}
			if cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage != x509.KeyUsageDigitalSignature ||
				!reflect.DeepEqual(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("usages: CA %v, key usage %v, ext %v", cert.IsCA, cert.KeyUsage, cert.ExtKeyUsage)
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v", cert.SerialNumber)
			}
			if skew := before.Sub(cert.NotBefore); skew < clockSkew-time.Second || skew > clockSkew+time.Minute {
				t.Errorf("NotBefore %v is %v before issuing", cert.NotBefore, skew)
			}
			if d := cert.NotAfter.Sub(before); d < tt.validity-time.Second || d > tt.validity+time.Minute {
				t.Errorf("NotAfter %v after issuing, want %v", d, tt.validity)
			}
			info := Describe(cert)
			want := Info{
				Identity: id, Subject: "CN=" + tt.req.NodeID, Issuer: "CN=test CA",
				Serial: strings.ToUpper(cert.SerialNumber.Text(16)), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
				IPs: tt.wantIPs, DNSNames: tt.req.DNSNames, PublicKey: tt.wantKey, SHA256: info.SHA256,
			}
			if !reflect.DeepEqual(info, want) {
				t.Errorf("Describe:\n got %+v\nwant %+v", info, want)
			}
			if len(info.SHA256) != 32*3-1 {
				t.Errorf("fingerprint %q", info.SHA256)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestIssueNodeRefuses(t *testing.T) {
	caPEM, caKeyPEM := testCA(t)
	otherPEM, otherKeyPEM := testCA(t)
	nodePEM, nodeKeyPEM, err := IssueNode(caPEM, caKeyPEM, NodeRequest{NodeID: "dir1", Role: RoleDirector})
	if err != nil {
		t.Fatal(err)
	}
	shortPEM, shortKeyPEM, err := NewCA(CAOptions{Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ok := NodeRequest{NodeID: "dir1", Role: RoleDirector}
	with := func(f func(*NodeRequest)) NodeRequest { r := ok; f(&r); return r }
	for _, tt := range []struct {
		name          string
		caPEM, keyPEM []byte
		req           NodeRequest
		want          string
	}{
		{"bad id", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.NodeID = "../x" }), `node id "../x" must be 1 to 64`},
		{"no role", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.Role = "" }), `unknown role ""`},
		{"zone", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.IPs = []netip.Addr{netip.MustParseAddr("fe80::1%eth0")} }), "cannot name a zone"},
		{"unspecified", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.IPs = []netip.Addr{netip.IPv4Unspecified()} }), "unspecified address"},
		{"invalid ip", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.IPs = []netip.Addr{{}} }), "invalid address"},
		{"duplicate ip", caPEM, caKeyPEM, with(func(r *NodeRequest) {
			r.IPs = []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:192.0.2.1")}
		}), "192.0.2.1: given twice"},
		{"dns", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.DNSNames = []string{"*.example.net"} }), `dns SAN "*.example.net"`},
		{"too long", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.Validity = MaxNodeValidity + time.Hour }), "validity of 19801h0m0s: must be positive and at most 825 days"},
		{"negative", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.Validity = -time.Hour }), "must be positive"},
		{"outlasts ca", shortPEM, shortKeyPEM, ok, "validity of 365 days would outlast the ca certificate CN=dsrd cluster CA"},
		{"key type", caPEM, caKeyPEM, with(func(r *NodeRequest) { r.KeyType = "rsa" }), `unknown key type "rsa"`},
		{"wrong key", caPEM, otherKeyPEM, ok, "ca key does not belong to ca certificate CN=test CA"},
		{"not a ca", nodePEM, nodeKeyPEM, ok, "is not a CA"},
		{"no ca", nil, caKeyPEM, ok, "ca certificate: no PEM CERTIFICATE block"},
		{"key as ca", caKeyPEM, caKeyPEM, ok, "ca certificate: no PEM CERTIFICATE block, only PRIVATE KEY"},
		{"no key", otherPEM, otherPEM, ok, "ca key: no PEM PRIVATE KEY block"},
	} {
		_, _, err := IssueNode(tt.caPEM, tt.keyPEM, tt.req)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if _, _, err := NewCA(CAOptions{Validity: -time.Hour}); err == nil {
		t.Error("NewCA with a negative validity")
	}
}

// certWith returns a certificate, self-signed by a throwaway key, carrying
// the URI SANs uris.
func certWith(t testing.TB, isCA bool, uris ...string) *x509.Certificate {
	t.Helper()
	return mustParse(t, certPEMWith(t, isCA, uris...))
}

func certPEMWith(t testing.TB, isCA bool, uris ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestIdentityOf(t *testing.T) {
	const node, role = "dsrd://node/dir1", "dsrd://role/director"
	for _, tt := range []struct {
		name string
		isCA bool
		uris []string
		want string // "" for the identity director dir1
	}{
		{"ok", false, []string{node, role}, ""},
		{"ok, role first", false, []string{role, node}, ""},
		{"ok beside other schemes", false, []string{"spiffe://example.org/dir9", node, "https://node/dir2", role}, ""},
		{"upper-case scheme", false, []string{"DSRD://node/dir1", role}, ""},
		{"no URIs", false, nil, "carries no dsrd identity"},
		{"only other schemes", false, []string{"spiffe://node/dir1", "https://role/director"}, "carries no dsrd identity"},
		{"wrong scheme for node", false, []string{"dsr://node/dir1", role}, "no dsrd://node/<id> URI SAN"},
		{"two node URIs", false, []string{node, "dsrd://node/dir2", role}, "2 dsrd://node/<id> URI SANs (dsrd://node/dir1, dsrd://node/dir2)"},
		{"same node twice", false, []string{node, node, role}, "2 dsrd://node/<id> URI SANs"},
		{"two roles", false, []string{node, role, "dsrd://role/witness"}, "2 dsrd://role/<role> URI SANs"},
		{"no role", false, []string{node}, "no dsrd://role/<role> URI SAN"},
		{"no node", false, []string{role}, "no dsrd://node/<id> URI SAN"},
		{"bad id", false, []string{"dsrd://node/../x", role}, `node URI "dsrd://node/../x"`},
		{"empty id", false, []string{"dsrd://node/", role}, `node URI "dsrd://node/"`},
		{"no path", false, []string{"dsrd://node", role}, `node URI "dsrd://node"`},
		{"slash in id", false, []string{"dsrd://node/a/b", role}, `node URI "dsrd://node/a/b"`},
		{"escaped id", false, []string{"dsrd://node/%64ir1", role}, `node URI "dsrd://node/%64ir1"`},
		{"long id", false, []string{"dsrd://node/" + strings.Repeat("x", 65), role}, "node URI"},
		{"query", false, []string{"dsrd://node/dir1?x=1", role}, `node URI "dsrd://node/dir1?x=1"`},
		{"fragment", false, []string{"dsrd://node/dir1#x", role}, `node URI "dsrd://node/dir1#x"`},
		{"user", false, []string{"dsrd://u@node/dir1", role}, `node URI "dsrd://u@node/dir1"`},
		{"port", false, []string{"dsrd://node:1/dir1", role}, `unknown dsrd URI "dsrd://node:1/dir1"`},
		{"unknown role", false, []string{node, "dsrd://role/admin"}, `role URI "dsrd://role/admin"`},
		{"role case", false, []string{node, "dsrd://role/Director"}, `role URI "dsrd://role/Director"`},
		{"role path", false, []string{node, "dsrd://role/director/x"}, `role URI "dsrd://role/director/x"`},
		{"other dsrd URI", false, []string{node, role, "dsrd://cluster/x"}, `unknown dsrd URI "dsrd://cluster/x"`},
		{"host case", false, []string{"dsrd://NODE/dir1", role}, `unknown dsrd URI "dsrd://NODE/dir1"`},
		{"opaque", false, []string{"dsrd:node/dir1", role}, `unknown dsrd URI "dsrd:node/dir1"`},
		{"a CA", true, []string{node, role}, "a CA certificate cannot carry a node identity"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := IdentityOf(certWith(t, tt.isCA, tt.uris...))
			if tt.want == "" {
				if want := (Identity{NodeID: "dir1", Role: RoleDirector}); err != nil || id != want {
					t.Errorf("IdentityOf = %v, %v; want %v", id, err, want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || id != (Identity{}) {
				t.Errorf("IdentityOf = %v, %v; want error %q", id, err, tt.want)
			}
		})
	}
	if _, err := IdentityOf(nil); err == nil {
		t.Error("IdentityOf(nil): no error")
	}
}

func TestExpiry(t *testing.T) {
	at := time.Date(2026, 11, 2, 12, 0, 0, 0, time.UTC)
	info := Info{NotBefore: at, NotAfter: at.Add(100 * 24 * time.Hour)}
	for _, tt := range []struct {
		now  time.Time
		want Expiry
		days int
	}{
		{at.Add(-time.Second), ExpiryNotYetValid, 100},
		{at, ExpiryValid, 100},
		{info.NotAfter.Add(-ExpiryWarningWindow - time.Second), ExpiryValid, 30},
		{info.NotAfter.Add(-ExpiryWarningWindow), ExpiryRenew, 30},
		{info.NotAfter.Add(-time.Hour), ExpiryRenew, 0},
		{info.NotAfter, ExpiryRenew, 0},
		{info.NotAfter.Add(time.Second), ExpiryExpired, -1},
		{info.NotAfter.Add(24 * time.Hour), ExpiryExpired, -1},
		{info.NotAfter.Add(24*time.Hour + time.Second), ExpiryExpired, -2},
	} {
		if got, days := info.ExpiryAt(tt.now), info.DaysLeft(tt.now); got != tt.want || days != tt.days {
			t.Errorf("at %v: %q, %d days; want %q, %d", tt.now, got, days, tt.want, tt.days)
		}
	}
}

func TestReadCertFile(t *testing.T) {
	caPEM, caKeyPEM := testCA(t)
	other, _ := testCA(t)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	both := write("both.crt", append(append([]byte{}, caPEM...), other...))
	cert, err := ReadCertFile(both)
	if err != nil || !cert.Equal(mustParse(t, caPEM)) {
		t.Errorf("ReadCertFile(two certificates) = %v, %v", cert, err)
	}
	certs, err := ReadCertsFile(both)
	if err != nil || len(certs) != 2 || !certs[1].Equal(mustParse(t, other)) {
		t.Errorf("ReadCertsFile(two certificates) = %v, %v", certs, err)
	}
	if cert, err := ReadCertFile(write("key-first.pem", append(append([]byte{}, caKeyPEM...), caPEM...))); err != nil || !cert.Equal(certs[0]) {
		t.Errorf("key then certificate: %v, %v", cert, err)
	}
	big := make([]byte, maxCertFile+1)
	for name, tt := range map[string]struct {
		path, want string
	}{
		"missing": {filepath.Join(dir, "missing.crt"), "read certificate: open " + filepath.Join(dir, "missing.crt") + ": no such file"},
		"key":     {write("ca.key", caKeyPEM), "ca.key: no PEM CERTIFICATE block, only PRIVATE KEY"},
		"empty":   {write("empty.crt", nil), "empty.crt: no PEM CERTIFICATE block"},
		"garbage": {write("garbage.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")})), "garbage.crt: certificate 1: x509: malformed certificate"},
		"too big": {write("big.crt", big), "larger than 1048576 bytes"},
		"dir":     {dir, "is a directory"},
	} {
		if _, err := ReadCertFile(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", name, err, tt.want)
		}
		if _, err := ReadCertsFile(tt.path); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadCertsFile %s: %v, want %q", name, err, tt.want)
		}
	}
}

func TestDescribeNil(t *testing.T) {
	if info := Describe(nil); info.IdentityErr == nil {
		t.Errorf("Describe(nil) = %+v", info)
	}
}
