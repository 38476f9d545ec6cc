package testutil

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dsrd/dsrd/raft/pki"
)

// CA is a throwaway cluster certificate authority made by pki.NewCA, valid
// for a day; the node certificates it issues are valid for an hour.
type CA struct {
	pem, keyPEM []byte
	pool        *x509.CertPool
}

// NewCA creates a certificate authority whose certificate has the common
// name name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	certPEM, keyPEM, err := pki.NewCA(pki.CAOptions{Name: name, Validity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("testutil: the CA's own PEM does not parse")
	}
	return &CA{pem: certPEM, keyPEM: keyPEM, pool: pool}
}

// Pool returns a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// PEM returns the CA's certificate, PEM-encoded.
func (ca *CA) PEM() []byte { return ca.pem }

// loopback returns the IP SANs of Issue's certificates: 127.0.0.1 and ::1.
func loopback() []netip.Addr {
	return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
}

// Issue returns a node certificate for the director name (pki identity
// "director name", IP SANs 127.0.0.1 and ::1), signed by the CA and good for
// both ends of a mutual TLS connection, with its certificate and key
// PEM-encoded.
func (ca *CA) Issue(t testing.TB, name string) (cert tls.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	return ca.IssueAs(t, name, pki.RoleDirector, loopback()...)
}

// IssueAs is Issue for any node id and role, with IP SANs ips (none when
// ips is empty).
func (ca *CA) IssueAs(t testing.TB, id string, role pki.Role, ips ...netip.Addr) (cert tls.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := pki.IssueNode(ca.pem, ca.keyPEM, pki.NodeRequest{NodeID: id, Role: role, IPs: ips, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}

// TLSFiles names a node's PEM files: its certificate, its key and the CA's
// certificate. It converts to config.TLS and raft.TLSFiles (same fields):
// testutil imports neither, so that every package's tests may use it.
type TLSFiles struct {
	Cert, Key, CA string
}

// Files issues a node certificate as Issue does for name, writes it, its
// key and the CA's certificate as PEM files to a directory of the test's,
// and returns the TLS configuration naming them.
func (ca *CA) Files(t testing.TB, name string) TLSFiles {
	t.Helper()
	return ca.FilesAs(t, name, pki.RoleDirector, loopback()...)
}

// FilesAs is Files for any node id and role, with IP SANs ips.
func (ca *CA) FilesAs(t testing.TB, id string, role pki.Role, ips ...netip.Addr) TLSFiles {
	t.Helper()
	_, certPEM, keyPEM := ca.IssueAs(t, id, role, ips...)
	dir := t.TempDir()
	c := TLSFiles{
		Cert: filepath.Join(dir, "node.crt"),
		Key:  filepath.Join(dir, "node.key"),
		CA:   filepath.Join(dir, "ca.crt"),
	}
	for path, data := range map[string][]byte{c.Cert: certPEM, c.Key: keyPEM, c.CA: ca.pem} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}
