// Package pki is the cluster's public key infrastructure: who a certificate
// says its holder is (a node id and a role, carried as URI SANs), and the
// creation of a cluster CA and of the node certificates it signs.
//
// A cluster CA is dedicated to one cluster: every certificate it signs is a
// candidate member, and the identity in the certificate then decides which
// member it is and what it may do. Never use a CA that signs anything else.
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Role is what a cluster member may do: a director or a witness.
type Role string

// The roles a node certificate can carry.
const (
	RoleDirector Role = "director" // owns VIPs and programs IPVS
	RoleWitness  Role = "witness"  // a Raft voter only
)

// ParseRole returns the role named s, exactly "director" or "witness".
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleDirector, RoleWitness:
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: want director or witness", s)
}

// Identity is who a certificate says its holder is.
type Identity struct {
	NodeID string `json:"node_id"`
	Role   Role   `json:"role"`
}

// String returns the role and node id, as in "director dir1"; the zero
// Identity is "no identity".
func (i Identity) String() string {
	if i == (Identity{}) {
		return "no identity"
	}
	return string(i.Role) + " " + i.NodeID
}

// maxNodeID is the longest node id, in bytes.
const maxNodeID = 64

// errNodeIDSyntax says what a node id may be; internal/config says the same
// of its names.
var errNodeIDSyntax = errors.New("must be 1 to 64 characters of A-Z a-z 0-9 . _ - (and not . or ..)")

// CheckNodeID reports whether id is a valid node id: 1 to 64 characters of
// A-Z a-z 0-9 . _ - and neither "." nor "..". The error says what a node
// id may be; it does not quote id.
func CheckNodeID(id string) error {
	if id == "" || len(id) > maxNodeID || id == "." || id == ".." {
		return errNodeIDSyntax
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return errNodeIDSyntax
		}
	}
	return nil
}

// The identity URIs: dsrd://node/<id> and dsrd://role/<role>.
const (
	uriScheme = "dsrd"
	nodeHost  = "node"
	roleHost  = "role"
)

// NodeURI returns the URI SAN that names node id: dsrd://node/<id>. It does
// not check id (see CheckNodeID).
func NodeURI(id string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: nodeHost, Path: "/" + id}
}

// RoleURI returns the URI SAN that names role r: dsrd://role/<r>. It does
// not check r (see ParseRole).
func RoleURI(r Role) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: roleHost, Path: "/" + string(r)}
}

// ErrNoIdentity is returned (wrapped) by IdentityOf for a certificate that
// carries no dsrd URI at all, such as one issued before identities existed:
// reissue it with `dsrd tls cert issue`.
var ErrNoIdentity = errors.New("certificate carries no dsrd identity (URI SANs dsrd://node/<id> and dsrd://role/<role>)")

// IdentityOf returns the identity a certificate carries: exactly one URI SAN
// dsrd://node/<id> with a valid node id and exactly one dsrd://role/<role>
// naming director or witness, each in exactly that form (no port, user,
// query, fragment or escaping). Any other dsrd:// URI is an error; URIs of
// other schemes are ignored. A CA certificate has no identity.
//
// IdentityOf does not verify the certificate: call it on a certificate
// that has been verified against the cluster CA.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, errors.New("no certificate")
	}
	var nodes, roles []string
	for _, u := range cert.URIs {
		if u == nil || !strings.EqualFold(u.Scheme, uriScheme) {
			continue
		}
		switch u.Host {
		case nodeHost:
			nodes = append(nodes, u.String())
		case roleHost:
			roles = append(roles, u.String())
		default:
			return Identity{}, fmt.Errorf("unknown dsrd URI %q: want dsrd://node/<id> or dsrd://role/<role>", u.String())
		}
	}
	if len(nodes) == 0 && len(roles) == 0 {
		return Identity{}, ErrNoIdentity
	}
	if cert.IsCA {
		return Identity{}, errors.New("a CA certificate cannot carry a node identity")
	}
	node, err := single(nodes, "dsrd://node/<id>")
	if err != nil {
		return Identity{}, err
	}
	role, err := single(roles, "dsrd://role/<role>")
	if err != nil {
		return Identity{}, err
	}
	var id Identity
	id.NodeID = strings.TrimPrefix(node, "dsrd://node/")
	if err := CheckNodeID(id.NodeID); err != nil || node != NodeURI(id.NodeID).String() {
		return Identity{}, fmt.Errorf("node URI %q: want dsrd://node/<id>, where the id %v", node, errNodeIDSyntax)
	}
	if id.Role, err = ParseRole(strings.TrimPrefix(role, "dsrd://role/")); err != nil || role != RoleURI(id.Role).String() {
		return Identity{}, fmt.Errorf("role URI %q: want dsrd://role/director or dsrd://role/witness", role)
	}
	return id, nil
}

// single returns the one element of uris, or an error naming the URI form
// what when there are none or several.
func single(uris []string, what string) (string, error) {
	switch len(uris) {
	case 0:
		return "", fmt.Errorf("certificate has no %s URI SAN", what)
	case 1:
		return uris[0], nil
	}
	return "", fmt.Errorf("certificate has %d %s URI SANs (%s): want exactly one", len(uris), what, strings.Join(uris, ", "))
}
