// Package vrrp makes the Raft leader the owner of the virtual IPs (VIPs): it
// adds them to their interfaces, tells the L2 segment with gratuitous ARP
// (IPv4) and unsolicited neighbour advertisements (IPv6), removes them when
// leadership is lost, and tracks the ownership state (MASTER, BACKUP, FAULT)
// with keepalived-style notify scripts.
//
// The name is keepalived heritage: there is no VRRP protocol here. Raft
// decides who owns the VIPs; this package only carries the decision out.
//
// The pieces, from the bottom up:
//
//   - [Kernel]: the few kernel operations needed (address add, delete and
//     list; link state and change notifications), the part of
//     internal/netkernel's seam this package uses. [Linux] is netkernel's
//     netlink implementation plus Announce; [FakeKernel] is netkernel's
//     in-memory fake, which records what was done as ip(8) command lines.
//   - [AnnounceFunc]: sends one announcement of one VIP. [Linux.Announce]
//     sends gratuitous ARP or an unsolicited neighbour advertisement.
//   - [Owner]: holds the VIPs (Acquire, Release, ReleaseStale, Update) and
//     runs their announcement bursts and refreshes.
//   - [Machine]: the state machine that drives an Owner from the leadership
//     signal and the state of the VIPs' interfaces, runs notify scripts and
//     reports interface faults so the director can give up leadership.
package vrrp
