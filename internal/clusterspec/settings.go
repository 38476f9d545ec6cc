package clusterspec

import (
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
)

// Settings translates a file's cluster section into a node's raft
// settings.
func Settings(c config.Cluster) raft.ClusterSettings {
	s := raft.ClusterSettings{
		Bind: c.Bind, Advertise: c.Advertise, TLS: TLS(c.TLS), Insecure: c.Insecure,
		HeartbeatTimeout: c.HeartbeatTimeout.D(), ElectionTimeout: c.ElectionTimeout.D(),
		LeaderLeaseTimeout: c.LeaderLeaseTimeout.D(), CommitTimeout: c.CommitTimeout.D(),
	}
	for _, p := range c.Peers {
		s.Peers = append(s.Peers, raft.Voter{ID: p.ID, Address: p.Address})
	}
	return s
}

// TLS translates a file's cluster.tls into raft's TLS files.
func TLS(t config.TLS) raft.TLSFiles {
	return raft.TLSFiles{Cert: t.Cert, Key: t.Key, CA: t.CA}
}
