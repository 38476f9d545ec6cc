package config

import (
	"errors"
	"time"

	"github.com/dsrd/dsrd/vrrp/bgp"
)

// Bounds of the director-level bgp settings (the speaker's own rules are
// vrrp/bgp's, Config.Validate).
const (
	// MaxBGPDrainDelay bounds bgp.drain_delay: a stop must end well within
	// systemd's stop timeout.
	MaxBGPDrainDelay = 5 * time.Minute
	// MaxBGPPartitionHold bounds bgp.partition_hold.
	MaxBGPPartitionHold = time.Hour
)

// Speaker is the BGP speaker's input: the subset of the bgp section the
// speaker needs (drain_delay and partition_hold are the director's).
func (b *BGP) Speaker() bgp.Config {
	c := bgp.Config{ASN: b.ASN, RouterID: b.RouterID, Communities: b.Communities, MED: b.MED}
	for _, p := range b.Peers {
		sp := bgp.Peer{
			Address:       p.Address,
			ASN:           p.ASN,
			Port:          p.Port,
			Password:      p.Password,
			HoldTime:      p.HoldTime.D(),
			KeepaliveTime: p.KeepaliveTime.D(),
			SourceAddress: p.SourceAddress,
			EBGPMultihop:  p.EBGPMultihop,
		}
		if p.BFD != nil {
			sp.BFD = &bgp.BFD{MinRx: p.BFD.MinRx.D(), MinTx: p.BFD.MinTx.D(), Multiplier: p.BFD.Multiplier}
		}
		c.Peers = append(c.Peers, sp)
	}
	return c
}

// bgp checks the bgp section: the speaker's rules are the speaker's own
// (bgp.Config.Validate, reported at the field it names), so a file this
// accepts is one the speaker starts with.
func (v *validator) bgp(b *BGP, path string) {
	if b == nil {
		return
	}
	if d := b.DrainDelay.D(); d < 0 || d > MaxBGPDrainDelay {
		v.errorf(joinPath(path, "drain_delay"), "%s is out of range 0s to %s", d, MaxBGPDrainDelay)
	}
	if d := b.PartitionHold.D(); d < 0 || d > MaxBGPPartitionHold {
		v.errorf(joinPath(path, "partition_hold"), "%s is out of range 0s to %s", d, MaxBGPPartitionHold)
	}
	err := b.Speaker().Validate()
	var fe *bgp.FieldError
	switch {
	case err == nil:
	case errors.As(err, &fe):
		v.errorf(joinPath(path, fe.Field), "%s", fe.Err)
	default:
		v.errorf(path, "%s", err)
	}
}
