package director

import (
	"cmp"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
)

// ipvsSettings translates the configuration's ipvs section into the ipvs
// package's own input. Loading a file fills in every default; a nil
// pointer in a value built otherwise (an older peer's specification) takes
// the same default from config, the one place defaults are defined.
func ipvsSettings(c config.IPVS) ipvs.Settings {
	return ipvs.Settings{
		Timeouts: ipvs.Timeouts{
			TCP:    c.TCPTimeout.D(),
			TCPFin: c.TCPFinTimeout.D(),
			UDP:    c.UDPTimeout.D(),
		},
		SloppyTCP:               boolOr(c.SloppyTCP, config.DefaultSloppyTCP),
		ExpireNodestConn:        boolOr(c.ExpireNodestConn, config.DefaultExpireNodestConn),
		ExpireQuiescentTemplate: boolOr(c.ExpireQuiescentTemplate, config.DefaultExpireQuiescentTemplate),
		ConnReuseMode:           c.ConnReuseMode,
		DropEntry:               ipvs.Defence(cmp.Or(c.DropEntry, config.DefaultDropEntry)),
		DropPacket:              ipvs.Defence(cmp.Or(c.DropPacket, config.DefaultDropPacket)),
		SecureTCP:               ipvs.Defence(cmp.Or(c.SecureTCP, config.DefaultSecureTCP)),
		AMemThresh:              int64(c.AMemThresh),
	}
}

// boolOr returns *p, or def when p is nil.
func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}
