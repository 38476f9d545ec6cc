package raft

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/dsrd/dsrd/raft/pki"
)

// PeerTLS is mutual TLS between cluster members: both sides present a
// certificate of the cluster CA carrying a dsrd identity (pki: a node id
// and a role), and that identity, never a name the peer writes, is who the
// peer is. The server side requires a client certificate of the CA; the
// StreamLayer then reads its identity and asks the node whether that node
// is a member (Authority). The client side checks that the server's
// certificate is the member it meant to reach: the node id the Raft
// configuration gives the dialed address, or, for an address no member
// has, a certificate carrying that IP address. Node certificates need the
// serverAuth and clientAuth extended key usages (or none). TLS 1.3 only.
type PeerTLS struct {
	server   *tls.Config
	client   *tls.Config
	ca       *x509.CertPool
	identity pki.Identity
	leaf     *x509.Certificate
}

// Identity returns the identity of this node's own certificate.
func (t *PeerTLS) Identity() pki.Identity { return t.identity }

// Certificate returns this node's own certificate (for its expiry).
func (t *PeerTLS) Certificate() *x509.Certificate { return t.leaf }

// clientFor returns the client configuration for dialing address: the
// server's certificate must name expectID when it is not empty, and carry
// the address's IP when it is (or when the certificate has IP addresses).
func (t *PeerTLS) clientFor(address, expectID string) *tls.Config {
	c := t.client.Clone()
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := verifyChain(cs.PeerCertificates, t.ca, x509.ExtKeyUsageServerAuth); err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		leaf := cs.PeerCertificates[0]
		id, err := pki.IdentityOf(leaf)
		if err != nil {
			return fmt.Errorf("peer certificate: %w", err)
		}
		if expectID != "" && id.NodeID != expectID {
			return fmt.Errorf("peer %s presented the certificate of %s, want node %s", address, id, expectID)
		}
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("peer address %q: %w", address, err)
		}
		ips := certIPs(leaf.IPAddresses)
		if (expectID == "" || len(ips) > 0) && !containsAddr(ips, ap.Addr()) {
			return fmt.Errorf("peer %s presented the certificate of %s, which does not carry address %s", address, id, ap.Addr())
		}
		return nil
	}
	return c
}

// LoadPeerTLS reads the PEM files of c. It returns nil, nil when TLS is not
// configured, and an error when it is configured only in part, when a file
// cannot be read, or when the node's own certificate does not chain to the
// CA.
func LoadPeerTLS(c TLSFiles) (*PeerTLS, error) {
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
	id, err := pki.IdentityOf(leaf)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w (issue node certificates with dsrd tls cert issue)", err)
	}

	server := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	client := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		// The default verification checks a DNS name against the dialed
		// address; peers are dialed by IP and checked by chain, identity
		// and address instead, which VerifyConnection does (clientFor;
		// it runs whatever InsecureSkipVerify says). Without clientFor's
		// VerifyConnection no connection is made.
		InsecureSkipVerify: true,
		VerifyConnection: func(tls.ConnectionState) error {
			return errors.New("peer certificate not checked: internal error (dial through clientFor)")
		},
	}
	return &PeerTLS{server: server, client: client, ca: ca, identity: id, leaf: leaf}, nil
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
