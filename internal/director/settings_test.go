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
	})
	if got.Timeouts != (ipvs.Timeouts{TCP: time.Hour, TCPFin: time.Minute, UDP: time.Second}) ||
		got.SloppyTCP || got.ExpireNodestConn || got.ExpireQuiescentTemplate || got.ConnReuseMode == nil || *got.ConnReuseMode != 2 {
		t.Errorf("every field set: %+v", got)
	}
}
