package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// KeyType is the kind of key a certificate is issued for.
type KeyType string

// The key types NewCA and IssueNode create. ECDSA P-256 is the default:
// every TLS stack speaks it. Ed25519 works between dsrd nodes (Go's TLS 1.3).
const (
	KeyECDSAP256 KeyType = "ecdsa-p256"
	KeyEd25519   KeyType = "ed25519"
)

// ParseKeyType returns the key type named s; "" is KeyECDSAP256.
func ParseKeyType(s string) (KeyType, error) {
	switch k := KeyType(s); k {
	case "":
		return KeyECDSAP256, nil
	case KeyECDSAP256, KeyEd25519:
		return k, nil
	}
	return "", fmt.Errorf("unknown key type %q: want ecdsa-p256 or ed25519", s)
}

// Validity defaults and limits.
const (
	// DefaultCAValidity is how long a CA is valid unless CAOptions says.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultNodeValidity is how long a node certificate is valid unless
	// NodeRequest says: a year, so that rotation is a routine job.
	DefaultNodeValidity = 365 * 24 * time.Hour
	// MaxNodeValidity is the longest a node certificate may be valid: 825
	// days, the ceiling the public web used until 2020. A node certificate
	// cannot be revoked (the cluster reads no CRL), so its lifetime is the
	// longest a stolen key stays useful.
	MaxNodeValidity = 825 * 24 * time.Hour
	// clockSkew is how far NotBefore is backdated, so that a member whose
	// clock is a little behind the issuer's accepts a fresh certificate.
	clockSkew = 5 * time.Minute
)

// DefaultCAName is the common name of a CA unless CAOptions says.
const DefaultCAName = "dsrd cluster CA"

// CAOptions are the choices in creating a cluster CA; the zero value is a
// CA named "dsrd cluster CA", valid for 10 years, with an ECDSA P-256 key.
type CAOptions struct {
	Name     string        // the CA's common name; default DefaultCAName
	Validity time.Duration // from now; default DefaultCAValidity
	KeyType  KeyType       // default KeyECDSAP256
}

// NewCA creates a cluster CA: a self-signed certificate that may sign node
// certificates and nothing below them (MaxPathLen 0), and its private key,
// both PEM-encoded (the key as PKCS#8 "PRIVATE KEY"). Dedicate the CA to
// one cluster: every certificate it signs is a candidate member.
func NewCA(opts CAOptions) (certPEM, keyPEM []byte, err error) {
	if opts.Name == "" {
		opts.Name = DefaultCAName
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultCAValidity
	}
	if opts.Validity < 0 {
		return nil, nil, fmt.Errorf("ca validity of %s: must be positive", days(opts.Validity))
	}
	key, err := newKey(opts.KeyType)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: opts.Name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	return sign(tmpl, opts.Validity, nil, key, key)
}

// NodeRequest is what a node certificate says.
type NodeRequest struct {
	NodeID   string       // the node id (CheckNodeID), also the common name
	Role     Role         // director or witness
	IPs      []netip.Addr // IP SANs: optional, no zone, not unspecified, no duplicates
	DNSNames []string     // DNS SANs: optional
	// Validity is how long from now the certificate is valid: default
	// DefaultNodeValidity, at most MaxNodeValidity, and never past the CA's
	// own NotAfter.
	Validity time.Duration
	KeyType  KeyType // default KeyECDSAP256
}

// IssueNode creates a node certificate for req signed by the CA, and its new
// private key, both PEM-encoded (the key as PKCS#8 "PRIVATE KEY"). The
// certificate carries the identity (NodeURI and RoleURI), is good for both
// ends of mutual TLS (serverAuth and clientAuth), has a random 128-bit
// serial and is valid from 5 minutes ago, to allow for clock skew.
func IssueNode(caCertPEM, caKeyPEM []byte, req NodeRequest) (certPEM, keyPEM []byte, err error) {
	ca, err := ParseCertPEM(caCertPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("ca certificate: %w", err)
	}
	if !ca.IsCA || ca.KeyUsage != 0 && ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("ca certificate %s is not a CA that may sign certificates", ca.Subject)
	}
	caKey, err := parseKeyPEM(caKeyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("ca key: %w", err)
	}
	if pub, ok := caKey.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("ca key does not belong to ca certificate %s", ca.Subject)
	}
	tmpl, err := nodeTemplate(req)
	if err != nil {
		return nil, nil, err
	}
	if req.Validity == 0 {
		req.Validity = DefaultNodeValidity
	}
	switch now := time.Now(); {
	case req.Validity < 0 || req.Validity > MaxNodeValidity:
		return nil, nil, fmt.Errorf("validity of %s: must be positive and at most %s", days(req.Validity), days(MaxNodeValidity))
	case !now.Before(ca.NotAfter):
		return nil, nil, fmt.Errorf("ca certificate %s expired at %s", ca.Subject, ca.NotAfter.UTC().Format(time.RFC3339))
	case now.Add(req.Validity).After(ca.NotAfter):
		return nil, nil, fmt.Errorf("validity of %s would outlast the ca certificate %s, which expires at %s: issue for less or renew the ca",
			days(req.Validity), ca.Subject, ca.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := newKey(req.KeyType)
	if err != nil {
		return nil, nil, err
	}
	certPEM, keyPEM, err = sign(tmpl, req.Validity, ca, key, caKey)
	if err != nil {
		return nil, nil, err
	}
	// Never hand out a certificate the cluster would refuse.
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	if _, err := IdentityOf(cert); err != nil {
		return nil, nil, fmt.Errorf("issued certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, nil, fmt.Errorf("issued certificate does not verify against ca certificate %s: %w", ca.Subject, err)
		}
	}
	return certPEM, keyPEM, nil
}

// days writes d in days when it is a whole number of them.
func days(d time.Duration) string {
	const day = 24 * time.Hour
	if d%day != 0 {
		return d.String()
	}
	if d == day {
		return "1 day"
	}
	return fmt.Sprintf("%d days", d/day)
}

// nodeTemplate checks req and returns the certificate it asks for, without
// serial or validity window.
func nodeTemplate(req NodeRequest) (*x509.Certificate, error) {
	if err := CheckNodeID(req.NodeID); err != nil {
		return nil, fmt.Errorf("node id %q %w", req.NodeID, err)
	}
	if _, err := ParseRole(string(req.Role)); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: req.NodeID},
		BasicConstraintsValid: true, // CA:FALSE, said explicitly
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:                  []*url.URL{NodeURI(req.NodeID), RoleURI(req.Role)},
	}
	seen := make(map[netip.Addr]bool, len(req.IPs))
	for _, ip := range req.IPs {
		switch {
		case !ip.IsValid():
			return nil, errors.New("ip SAN: invalid address")
		case ip.Zone() != "":
			return nil, fmt.Errorf("ip SAN %s: a certificate cannot name a zone", ip)
		case ip.IsUnspecified():
			return nil, fmt.Errorf("ip SAN %s: unspecified address", ip)
		}
		ip = ip.Unmap() // x509 writes a v4-mapped address as IPv4
		if seen[ip] {
			return nil, fmt.Errorf("ip SAN %s: given twice", ip)
		}
		seen[ip] = true
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IP(ip.AsSlice()))
	}
	for _, name := range req.DNSNames {
		if err := checkDNSName(name); err != nil {
			return nil, fmt.Errorf("dns SAN %q: %w", name, err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, name)
	}
	return tmpl, nil
}

// checkDNSName reports whether name is a host name a certificate may carry:
// dot-separated labels of 1 to 63 letters, digits and hyphens, not starting
// or ending with a hyphen, at most 253 characters; no wildcards.
func checkDNSName(name string) error {
	if name == "" || len(name) > 253 {
		return errors.New("must be 1 to 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("labels must be 1 to 63 characters and not start or end with -")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return errors.New("must be letters, digits, - and . only")
			}
		}
	}
	return nil
}

// newKey generates a private key of type t.
func newKey(t KeyType) (crypto.Signer, error) {
	t, err := ParseKeyType(string(t))
	if err != nil {
		return nil, err
	}
	if t == KeyEd25519 {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ed25519 key: %w", err)
		}
		return key, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ecdsa key: %w", err)
	}
	return key, nil
}

// serialLimit bounds serial numbers to 128 bits.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// sign completes tmpl with a random 128-bit serial and a validity window
// from clockSkew ago to validity from now, signs it for key with parentKey
// (self-signed when parent is nil) and returns the certificate and key PEM.
func sign(tmpl *x509.Certificate, validity time.Duration, parent *x509.Certificate, key, parentKey crypto.Signer) (certPEM, keyPEM []byte, err error) {
	for tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() == 0 { // a serial must be positive
		if tmpl.SerialNumber, err = rand.Int(rand.Reader, serialLimit); err != nil {
			return nil, nil, fmt.Errorf("generate serial: %w", err)
		}
	}
	now := time.Now()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-clockSkew), now.Add(validity)
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// parseKeyPEM returns the private key of the first PRIVATE KEY (PKCS#8)
// block of data.
func parseKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM PRIVATE KEY block found")
		}
		if block.Type != "PRIVATE KEY" {
			continue
		}
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse PKCS#8 private key: %w", err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T cannot sign", key)
		}
		return signer, nil
	}
}
