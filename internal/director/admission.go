package director

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/dsrd/dsrd/internal/admission"
	"github.com/dsrd/dsrd/internal/clusterspec"
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
	"github.com/dsrd/dsrd/raft"
)

// admissionOf translates the admission control of every service of a
// spec (a VIP's block inherited, a service's overriding it field by
// field); services without any are left out.
func admissionOf(spec raft.Spec, services []serviceSpec) admission.Config {
	vips := clusterspec.VIPs(spec)
	var out admission.Config
	for i := range services {
		s := &services[i]
		a := config.EffectiveAdmission(vips, &s.Config)
		if a == nil {
			continue
		}
		fam := 4
		if s.Key.Family == ipvs.IPv6 {
			fam = 6
		}
		as := admission.Service{Name: s.Config.Name, Family: fam, Protocol: string(s.Config.Protocol),
			VIP: s.Config.VIP, Port: s.Config.Port, FWMark: s.Config.FWMark, Allow: a.Allow, Deny: a.Deny}
		if r := a.SourceRate; r != nil {
			as.SourceRate = &admission.SourceRate{Rate: admission.Rate{Count: r.Rate.Count, Per: r.Rate.Per.D(), Burst: r.Burst},
				PrefixV4: r.PrefixV4, PrefixV6: r.PrefixV6}
		}
		if r := a.ServiceRate; r != nil {
			as.ServiceRate = &admission.Rate{Count: r.Rate.Count, Per: r.Rate.Per.D(), Burst: r.Burst}
		}
		out.Services = append(out.Services, as)
	}
	return out
}

// admissionState is the reconcile loop's view of admission control: the
// configuration of the generation last translated.
type admissionState struct {
	generation uint64
	hash       string
	cfg        admission.Config
	byKey      map[ipvs.ServiceKey]admission.Service
	// logged is the last error logged about removing the table.
	logged string
}

// followAdmission puts the spec's admission control in place before IPVS
// is changed, and takes out of desired every service whose rules are not
// in place as configured: such a service is not served at all rather than
// served unprotected (fail closed). A service the rules of an earlier
// configuration still protect as asked stays. The error says why.
func (d *Director) followAdmission(ctx context.Context, cc raft.ClusterConfig, services []serviceSpec, desired ipvs.State) error {
	st := &d.loop.admission
	if st.byKey == nil || st.generation != cc.Generation || st.hash != cc.Hash {
		cfg := admissionOf(cc.Spec, services)
		byKey := make(map[ipvs.ServiceKey]admission.Service, len(cfg.Services))
		for i := range services {
			for _, a := range cfg.Services {
				if a.Name == services[i].Config.Name {
					byKey[services[i].Key] = a
				}
			}
		}
		*st = admissionState{generation: cc.Generation, hash: cc.Hash, cfg: cfg, byKey: byKey, logged: st.logged}
	}
	err := d.adm.Apply(ctx, st.cfg)
	if err != nil && len(st.cfg.Services) == 0 {
		// Nothing to protect: a table that cannot be removed (left by
		// an earlier configuration) holds no service back. Said once
		// per distinct error, retried on every pass.
		if msg := err.Error(); msg != st.logged {
			st.logged = msg
			d.log.Warn("cannot remove the admission control table no service needs any more", "error", err)
		}
		return nil
	}
	st.logged = ""
	if err != nil {
		err = fmt.Errorf("admission control: %w", err)
	}
	var withheld []string
	for k, a := range st.byKey {
		if _, ok := desired[k]; ok && !d.adm.Covers(a) {
			delete(desired, k)
			withheld = append(withheld, a.Name)
		}
	}
	if len(withheld) > 0 {
		slices.Sort(withheld)
		d.log.Error("services withheld from IPVS: their admission control is not in place", slog.Any("services", withheld), slog.Any("error", err))
		err = errors.Join(err, fmt.Errorf("admission control not in place: %d services withheld from IPVS", len(withheld)))
	}
	return err
}
