package raft

import (
	"net/netip"
	"time"
)

// ClusterSettings are a node's settings of the cluster, in this package's
// terms: where it listens and is reached, the voters of the first
// configuration, its mutual TLS files and Raft's timings. The edge
// (internal/director) translates a configuration file's cluster section
// into them.
type ClusterSettings struct {
	// Bind is the ip:port the Raft port listens on.
	Bind netip.AddrPort
	// Advertise is the ip:port peers reach this node on; Bind when invalid.
	Advertise netip.AddrPort
	// Peers are the voters of the cluster's first configuration, this node
	// included (a node bootstraps with them when it has no Raft state).
	Peers []Voter
	// TLS names the PEM files of mutual TLS; none set means plain TCP,
	// which only a loopback-only or an Insecure cluster may run.
	TLS TLSFiles
	// Insecure allows plain TCP off loopback.
	Insecure bool
	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and
	// CommitTimeout are hashicorp/raft's timings; zero keeps its default.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
}

// Voter is one voter of the first configuration.
type Voter struct {
	ID      string
	Address netip.AddrPort
}

// TLSFiles names the PEM files of a node's mutual TLS: its certificate,
// its key and the cluster CA's certificate(s).
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled reports whether any file is set.
func (t TLSFiles) Enabled() bool { return t.Cert != "" || t.Key != "" || t.CA != "" }
