package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// ExpiryWarningWindow is how long before it expires a certificate is
// reported as due for renewal, by `dsrd tls show`, `dsrd status` and the
// metrics alike.
const ExpiryWarningWindow = 30 * 24 * time.Hour

// Info describes a certificate for people and monitoring.
type Info struct {
	Identity    Identity // the zero Identity when IdentityErr is set
	IdentityErr error    // why the certificate carries no valid identity
	IsCA        bool
	Subject     string // RFC 2253 form, as "CN=dir1"
	Issuer      string
	Serial      string // upper-case hex, as `openssl x509 -serial` prints it
	NotBefore   time.Time
	NotAfter    time.Time
	IPs         []netip.Addr
	DNSNames    []string
	PublicKey   string // "ECDSA P-256", "Ed25519", "RSA 2048", ...
	SHA256      string // fingerprint of the DER certificate, colon-separated upper-case hex
}

// Describe returns what cert says; it does not verify cert. A nil cert
// gives an Info whose IdentityErr says so.
func Describe(cert *x509.Certificate) Info {
	if cert == nil {
		return Info{IdentityErr: errors.New("no certificate")}
	}
	info := Info{
		IsCA:      cert.IsCA,
		Subject:   cert.Subject.String(),
		Issuer:    cert.Issuer.String(),
		NotBefore: cert.NotBefore,
		NotAfter:  cert.NotAfter,
		DNSNames:  slices.Clone(cert.DNSNames),
		PublicKey: publicKeyName(cert.PublicKey),
		SHA256:    fingerprint(cert.Raw),
	}
	if cert.SerialNumber != nil {
		info.Serial = strings.ToUpper(cert.SerialNumber.Text(16))
	}
	info.Identity, info.IdentityErr = IdentityOf(cert)
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			info.IPs = append(info.IPs, a.Unmap())
		}
	}
	return info
}

// Expiry is where a certificate's validity window stands at an instant.
type Expiry string

// The states of a validity window, as ExpiryAt reports them.
const (
	ExpiryValid       Expiry = "valid"         // valid for longer than ExpiryWarningWindow
	ExpiryRenew       Expiry = "renew"         // valid, but expires within ExpiryWarningWindow
	ExpiryExpired     Expiry = "expired"       // past NotAfter
	ExpiryNotYetValid Expiry = "not yet valid" // before NotBefore
)

// ExpiryAt says where the certificate's validity window stands at now.
func (i Info) ExpiryAt(now time.Time) Expiry {
	switch {
	case now.Before(i.NotBefore):
		return ExpiryNotYetValid
	case now.After(i.NotAfter):
		return ExpiryExpired
	case i.NotAfter.Sub(now) <= ExpiryWarningWindow:
		return ExpiryRenew
	}
	return ExpiryValid
}

// DaysLeft returns the whole days from now until the certificate expires,
// negative once it has: -1 in its first day expired.
func (i Info) DaysLeft(now time.Time) int {
	d := i.NotAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days-- // round towards the past
	}
	return days
}

// publicKeyName names the algorithm and size of a public key.
func publicKeyName(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	}
	return fmt.Sprintf("unknown (%T)", pub)
}

// fingerprint returns the SHA-256 of der as colon-separated upper-case hex.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// maxCertFile bounds the size of a certificate file read: far more than any
// bundle of a few certificates takes.
const maxCertFile = 1 << 20

// ReadCertFile returns the certificate in the first CERTIFICATE block of the
// PEM file at path; other blocks before it (a key, say) are skipped.
func ReadCertFile(path string) (*x509.Certificate, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	cert, err := ParseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}

// ReadCertsFile returns the certificates of every CERTIFICATE block of the
// PEM file at path, such as a CA file holding the old and the new CA during
// a rotation.
func ReadCertsFile(path string) ([]*x509.Certificate, error) {
	data, err := readBounded(path)
	if err != nil {
		return nil, err
	}
	certs, err := parseCertsPEM(data, false)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCertPEM returns the certificate in the first CERTIFICATE block of
// data.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := parseCertsPEM(data, true)
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// parseCertsPEM parses the CERTIFICATE blocks of data, only the first when
// first is set; it fails when there is none.
func parseCertsPEM(data []byte, first bool) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var skipped []string
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			skipped = append(skipped, block.Type)
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
		if first {
			break
		}
	}
	if len(certs) == 0 {
		if len(skipped) > 0 {
			return nil, fmt.Errorf("no PEM CERTIFICATE block, only %s", strings.Join(skipped, ", "))
		}
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, nil
}

// readBounded reads the file at path, refusing one larger than maxCertFile.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	if len(data) > maxCertFile {
		return nil, fmt.Errorf("read certificate %s: larger than %d bytes", path, maxCertFile)
	}
	return data, nil
}
