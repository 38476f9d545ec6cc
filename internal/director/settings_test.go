package director

import (
	"testing"
	"time"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
)

func TestIPVSSettings(t *testing.T) {
	d, err := config.ParseDirector("director.yaml", []byte(testDirector))
	if err != nil {
		t.Fatal(err)
	}
	want := ipvs.Settings{
		SloppyTCP:               config.DefaultSloppyTCP,
		ExpireNodestConn:        config.DefaultExpireNodestConn,
		ExpireQuiescentTemplate: config.DefaultExpireQuiescentTemplate,
		DropEntry:               ipvs.DefenceAuto,
		DropPacket:              ipvs.DefenceOff,
		SecureTCP:               ipvs.DefenceAuto,
	}
	if got := ipvsSettings(d.IPVS); got != want {
		t.Errorf("file defaults: %+v, want %+v", got, want)
	}
	if got := ipvsSettings(config.IPVS{}); got != want {
		t.Errorf("nil pointers: %+v, want the file's defaults %+v", got, want)
	}

	off, mode := false, 2
	got := ipvsSettings(config.IPVS{
		TCPTimeout: config.Duration(time.Hour), TCPFinTimeout: config.Duration(time.Minute), UDPTimeout: config.Duration(time.Second),
		SloppyTCP: &off, ExpireNodestConn: &off, ExpireQuiescentTemplate: &off, ConnReuseMode: &mode,
		DropEntry: "always", DropPacket: "auto", SecureTCP: "off", AMemThresh: 1 << 30,
	})
	if got.Timeouts != (ipvs.Timeouts{TCP: time.Hour, TCPFin: time.Minute, UDP: time.Second}) ||
		got.SloppyTCP || got.ExpireNodestConn || got.ExpireQuiescentTemplate || got.ConnReuseMode == nil || *got.ConnReuseMode != 2 ||
		got.DropEntry != ipvs.DefenceAlways || got.DropPacket != ipvs.DefenceAuto || got.SecureTCP != ipvs.DefenceOff || got.AMemThresh != 1<<30 {
		t.Errorf("every field set: %+v", got)
	}
}
