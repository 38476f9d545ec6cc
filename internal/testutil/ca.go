package testutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
)

// CA is a throwaway certificate authority: an ECDSA P-256 key and a
// self-signed certificate, valid from an hour ago to an hour from now.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

// NewCA creates a certificate authority whose certificate has the common
// name name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key, cert, der := newCert(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}, nil, nil)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, key: key, pool: pool,
		pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Pool returns a pool holding only the CA's certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// PEM returns the CA's certificate, PEM-encoded.
func (ca *CA) PEM() []byte { return ca.pem }

// Issue returns a node certificate for name, signed by the CA and good for
// both ends of a mutual TLS connection (serverAuth and clientAuth), with
// its certificate and key PEM-encoded.
func (ca *CA) Issue(t testing.TB, name string) (cert tls.Certificate, certPEM, keyPEM []byte) {
	t.Helper()
	key, _, der := newCert(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, ca.cert, ca.key)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certPEM, keyPEM
}

// Files issues a node certificate for name, writes it, its key and the
// CA's certificate as PEM files to a directory of the test's, and returns
// the TLS configuration naming them.
func (ca *CA) Files(t testing.TB, name string) config.TLS {
	t.Helper()
	_, certPEM, keyPEM := ca.Issue(t, name)
	dir := t.TempDir()
	c := config.TLS{
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

// newCert completes tmpl (a random 120-bit serial, valid from an hour ago
// to an hour from now), gives it a new P-256 key and signs it with
// parentKey as parent, or self-signs it when parent is nil.
func newCert(t testing.TB, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*ecdsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber, err = rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert, der
}
