package ipvs

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// encodeSyncDaemon is a GET_DAEMON answer's attributes for d.
func encodeSyncDaemon(d SyncDaemon) []byte { return syncDaemonAttr(d).Serialize() }

func TestParseSyncDaemon(t *testing.T) {
	for _, d := range []SyncDaemon{
		{State: SyncMaster, Interface: "eth0", SyncID: 255, MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1},
		{State: SyncBackup, Interface: "bond0.100", MaxLen: 8952, Group: netip.MustParseAddr("ff02::db8:81"), Port: 9000, TTL: 255},
	} {
		got, err := parseSyncDaemon(encodeSyncDaemon(d))
		if err != nil || got != d {
			t.Errorf("parse(encode(%v)) = %v, %v", d, got, err)
		}
	}
	// The port and maxlen travel in host byte order (nla_put_u16).
	b := encodeSyncDaemon(SyncDaemon{State: SyncBackup, Interface: "lo", Port: 8850})
	a, err := parseAttrs(b)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := parseAttrs(a[ipvsCmdAttrDaemon])
	if p := in[ipvsDaemonAttrMcastPort]; binary.NativeEndian.Uint16(p) != 8850 {
		t.Errorf("port attribute % x", p)
	}
	for name, b := range map[string][]byte{
		"empty":       nil,
		"no nest":     nl.NewRtAttr(1, []byte{1, 2, 3, 4}).Serialize(),
		"truncated":   encodeSyncDaemon(SyncDaemon{State: SyncMaster, Interface: "eth0"})[:10],
		"bad state":   encodeSyncDaemon(SyncDaemon{State: 4, Interface: "eth0"}),
		"bad ifname":  encodeSyncDaemon(SyncDaemon{State: SyncMaster, Interface: "a/b"}),
		"no ifname":   encodeSyncDaemon(SyncDaemon{State: SyncMaster}),
		"short group": withAttr(ipvsDaemonAttrMcastGroup, []byte{224, 0}),
		"short port":  withAttr(ipvsDaemonAttrMcastPort, []byte{1}),
		"big syncid":  withAttr(ipvsDaemonAttrSyncID, nl.Uint32Attr(256)),
	} {
		if d, err := parseSyncDaemon(b); err == nil {
			t.Errorf("%s: parsed %v", name, d)
		}
	}
}

// withAttr is a valid answer's attributes with one more attribute t
// (replacing one of the same type).
func withAttr(t int, v []byte) []byte {
	a := syncDaemonAttr(SyncDaemon{State: SyncBackup, Interface: "eth0"})
	a.AddRtAttr(t, v)
	return a.Serialize()
}

// FuzzParseSyncDaemon: no input panics; what parses is a valid daemon
// that encodes back to itself.
func FuzzParseSyncDaemon(f *testing.F) {
	f.Add(encodeSyncDaemon(SyncDaemon{State: SyncMaster, Interface: "eth0", SyncID: 3, MaxLen: 1472, Group: DefaultSyncGroup, Port: 8848, TTL: 1}))
	f.Add(encodeSyncDaemon(SyncDaemon{State: SyncBackup, Interface: "lo", Group: netip.MustParseAddr("ff02::db8:81")}))
	f.Add(withAttr(ipvsDaemonAttrMcastTTL, nil))
	f.Add([]byte{4, 0, 3, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseSyncDaemon(b)
		if err != nil {
			return
		}
		if d.State != SyncMaster && d.State != SyncBackup {
			t.Fatalf("state %d", d.State)
		}
		if err := checkIfName(d.Interface); err != nil {
			t.Fatal(err)
		}
		again, err := parseSyncDaemon(encodeSyncDaemon(d))
		if err != nil || again != d {
			t.Fatalf("%v encodes to %v, %v", d, again, err)
		}
	})
}
