package raft

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/dsrd/dsrd/internal/config"
)

// PeerTLS is mutual TLS between cluster members: both sides present a
// certificate, and each side accepts the other's only if it chains to the
// cluster CA. Any certificate the CA issued is a cluster member, so the CA
// must be dedicated to the cluster. Peers are not checked by host name or
// address (peers are addressed by IP and node certificates need not carry IP
// SANs). Node certificates need the serverAuth and clientAuth extended key
// usages (or none). TLS 1.3 only.
type PeerTLS struct {
	server *tls.Config
	client *tls.Config
}

// LoadPeerTLS reads the PEM files of c. It returns nil, nil when TLS is not
// configured, and an error when it is configured only in part, when a file
// cannot be read, or when the node's own certificate does not chain to the
// CA.
func LoadPeerTLS(c config.TLS) (*PeerTLS, error) {
	if !c.Enabled() {
		return nil, nil
	}
	if c.Cert == "" || c.Key == "" || c.CA == "" {
		return nil, errors.New("cluster tls needs cert, key and ca")
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("load cluster tls key pair %s, %s: %w", c.Cert, c.Key, err)
	}
	caPEM, err := os.ReadFile(c.CA)
	if err != nil {
		return nil, fmt.Errorf("read cluster tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("cluster tls ca %s: no PEM certificate found", c.CA)
	}
	t, err := NewPeerTLS(cert, pool)
	if err != nil {
		return nil, fmt.Errorf("cluster tls cert %s: %w", c.Cert, err)
	}
	return t, nil
}

// NewPeerTLS builds mutual TLS from the node's certificate and the cluster
// CA pool. It fails when cert does not chain to the pool: the peers would
// refuse it.
func NewPeerTLS(cert tls.Certificate, ca *x509.CertPool) (*PeerTLS, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	own := make([]*x509.Certificate, 0, len(cert.Certificate))
	own = append(own, leaf)
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("parse certificate chain: %w", err)
		}
		own = append(own, c)
	}
	if err := verifyChain(own, ca, x509.ExtKeyUsageAny); err != nil {
		return nil, fmt.Errorf("certificate does not chain to the cluster ca: %w", err)
	}
	cert.Leaf = leaf

	server := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The default verification checks the server's name against the
		// dialed address; peers are checked by chain only, which
		// VerifyConnection does (it runs whatever InsecureSkipVerify says).
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := verifyChain(cs.PeerCertificates, ca, x509.ExtKeyUsageServerAuth); err != nil {
				return fmt.Errorf("peer certificate: %w", err)
			}
			return nil
		},
	}
	return &PeerTLS{server: server, client: client}, nil
}

// verifyChain checks that certs[0] chains to roots through certs[1:].
func verifyChain(certs []*x509.Certificate, roots *x509.CertPool, usage x509.ExtKeyUsage) error {
	if len(certs) == 0 {
		return errors.New("no certificate presented")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	return err
}
