package pki

import (
	"crypto/x509"
	"testing"
)

// FuzzIdentityOf feeds arbitrary DER to x509.ParseCertificate and whatever
// parses to IdentityOf and Describe, which must never panic, and whose
// identity, when there is one, must be valid.
func FuzzIdentityOf(f *testing.F) {
	caPEM, caKeyPEM := testCA(f)
	for _, role := range []Role{RoleDirector, RoleWitness} {
		certPEM, _, err := IssueNode(caPEM, caKeyPEM, NodeRequest{NodeID: "dir1", Role: role})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(mustParse(f, certPEM).Raw)
	}
	f.Add(mustParse(f, caPEM).Raw)
	f.Add(certWith(f, false, "dsrd://node/dir1", "dsrd://node/dir2", "dsrd://role/witness").Raw)
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := IdentityOf(cert)
		if err == nil {
			if CheckNodeID(id.NodeID) != nil {
				t.Errorf("identity with bad node id %q", id.NodeID)
			}
			if _, err := ParseRole(string(id.Role)); err != nil {
				t.Errorf("identity with bad role: %v", err)
			}
		}
		if info := Describe(cert); info.Identity != id {
			t.Errorf("Describe identity %v, IdentityOf %v", info.Identity, id)
		}
	})
}
