// Package clusterspec translates between a director's or witness's
// configuration file (internal/config) and raft's terms: the specification
// the cluster replicates (raft.Spec), both ways, validated by the file's
// rules, and a node's cluster settings (raft.ClusterSettings). It is the
// edge where the configuration schema meets the cluster: raft owns its
// types and does not know the file.
package clusterspec

import (
	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/raft"
)

// FromDirector extracts the shared load-balancing configuration of a
// director configuration file.
//
// A VIP whose interface is the director's node.interface (the default the
// config package fills in) carries no interface in the spec: interface names
// are node-local, so every director puts such a VIP on its own
// node.interface, and two directors loading the same file with different
// NIC names submit the same spec.
func FromDirector(d *config.Director) raft.Spec {
	s := FromConfig(d.IPVS, d.VIPs, d.Services)
	if x := s.IPVS.Sync; x != nil && x.Interface == d.Node.Interface {
		x.Interface = "" // node-local, as a VIP's
	}
	for i := range s.VIPs {
		if s.VIPs[i].Interface == d.Node.Interface {
			s.VIPs[i].Interface = ""
		}
	}
	return s
}

// FromConfig translates the file's types into a spec.
func FromConfig(x config.IPVS, vips []config.VIP, services []config.Service) raft.Spec {
	s := raft.Spec{
		IPVS: raft.IPVSSettings{
			TCPTimeout: raft.Duration(x.TCPTimeout), TCPFinTimeout: raft.Duration(x.TCPFinTimeout),
			UDPTimeout: raft.Duration(x.UDPTimeout), SloppyTCP: clone(x.SloppyTCP),
			ExpireNodestConn: clone(x.ExpireNodestConn), ExpireQuiescentTemplate: clone(x.ExpireQuiescentTemplate),
			ConnReuseMode: clone(x.ConnReuseMode),
			DropEntry:     x.DropEntry, DropPacket: x.DropPacket, SecureTCP: x.SecureTCP, AMemThresh: uint64(x.AMemThresh),
			Sync: convertPtr(x.Sync, func(y config.IPVSSync) raft.SyncSettings { return raft.SyncSettings(y) }),
		},
		VIPs:     make([]raft.VIP, len(vips)),
		Services: make([]raft.Service, len(services)),
	}
	for i, v := range vips {
		s.VIPs[i] = raft.VIP{Address: v.Address, Interface: v.Interface, Announce: raft.Announce{
			Count: v.Announce.Count, Interval: raft.Duration(v.Announce.Interval), Refresh: convertPtr(v.Announce.Refresh, toDuration),
		}, Admission: convertPtr(v.Admission, admissionToWire)}
		switch v.Mode {
		case config.ModeARP, "":
			// An arp VIP's spec stays byte for byte what it was before
			// modes existed (version 1).
		case config.ModeBGP:
			// Every director holds a bgp VIP on lo: no interface
			// travels.
			s.VIPs[i].Mode = raft.VIPModeBGP
			s.VIPs[i].Interface = ""
		default:
			// Unknown: carried as written, for validation to refuse.
			s.VIPs[i].Mode = string(v.Mode)
		}
	}
	for i := range services {
		c := &services[i]
		svc := raft.Service{
			Name: c.Name, VIP: c.VIP, Port: c.Port, Protocol: string(c.Protocol), FWMark: c.FWMark,
			Scheduler: c.Scheduler, SchedulerFlags: cloneSlice(c.SchedulerFlags),
			Persistence: raft.Persistence{Timeout: raft.Duration(c.Persistence.Timeout), Netmask: c.Persistence.Netmask},
			OnePacket:   c.OnePacket, DrainTimeout: raft.Duration(c.DrainTimeout), Quorum: c.Quorum,
			OnDown: string(c.OnDown), SorryServer: c.SorryServer, HealthCheck: convertPtr(c.HealthCheck, checkToWire),
			Forwarding: forwardingToWire(c.Forwarding, config.ForwardDR),
			Admission:  convertPtr(c.Admission, admissionToWire),
		}
		if c.Reals != nil {
			svc.Reals = make([]raft.Real, len(c.Reals))
		}
		for j, r := range c.Reals {
			svc.Reals[j] = raft.Real{Address: r.Address, Port: r.Port, Weight: clone(r.Weight),
				UpperThreshold: r.UpperThreshold, LowerThreshold: r.LowerThreshold, HealthCheck: convertPtr(r.HealthCheck, checkToWire),
				Forwarding: forwardingToWire(r.Forwarding, c.RealForwarding(nil))}
		}
		s.Services[i] = svc
	}
	if vips == nil {
		s.VIPs = nil
	}
	if services == nil {
		s.Services = nil
	}
	return s
}

// forwardingToWire is a forwarding method as the spec carries it: empty
// when it is the method it would inherit anyway (inherit: dr for a
// service, the service's for a real). A file that spells out the default
// so replicates byte for byte as one that does not, and older members
// can read it (only tunnel needs command version 4: raft's usesTunnel).
// Anything else, an unknown name included, is carried as written for
// validation to judge.
func forwardingToWire(f, inherit config.Forwarding) string {
	if f == inherit {
		return ""
	}
	return string(f)
}

// IPVS translates a spec's IPVS settings into the file's type.
func IPVS(s raft.Spec) config.IPVS {
	x := s.IPVS
	return config.IPVS{
		TCPTimeout: config.Duration(x.TCPTimeout), TCPFinTimeout: config.Duration(x.TCPFinTimeout),
		UDPTimeout: config.Duration(x.UDPTimeout), SloppyTCP: clone(x.SloppyTCP),
		ExpireNodestConn: clone(x.ExpireNodestConn), ExpireQuiescentTemplate: clone(x.ExpireQuiescentTemplate),
		ConnReuseMode: clone(x.ConnReuseMode),
		DropEntry:     x.DropEntry, DropPacket: x.DropPacket, SecureTCP: x.SecureTCP, AMemThresh: config.ByteSize(x.AMemThresh),
		Sync: convertPtr(x.Sync, func(y raft.SyncSettings) config.IPVSSync { return config.IPVSSync(y) }),
	}
}

// VIPs translates a spec's VIPs into the file's type.
func VIPs(s raft.Spec) []config.VIP {
	if s.VIPs == nil {
		return nil
	}
	out := make([]config.VIP, len(s.VIPs))
	for i, v := range s.VIPs {
		out[i] = config.VIP{Address: v.Address, Mode: config.ModeARP, Interface: v.Interface, Announce: config.Announce{
			Count: v.Announce.Count, Interval: config.Duration(v.Announce.Interval), Refresh: convertPtr(v.Announce.Refresh, fromDuration),
		}, Admission: convertPtr(v.Admission, admissionFromWire)}
		if v.Mode == raft.VIPModeBGP {
			out[i].Mode = config.ModeBGP
			out[i].Interface = config.BGPInterface
		} else if v.Mode != "" {
			// Unknown to this binary: validation refuses it by name.
			out[i].Mode = config.VIPMode(v.Mode)
		}
	}
	return out
}

// Services translates a spec's services into the file's type.
func Services(s raft.Spec) []config.Service {
	if s.Services == nil {
		return nil
	}
	out := make([]config.Service, len(s.Services))
	for i := range s.Services {
		w := &s.Services[i]
		c := config.Service{
			Name: w.Name, VIP: w.VIP, Port: w.Port, Protocol: config.Protocol(w.Protocol), FWMark: w.FWMark,
			Scheduler: w.Scheduler, SchedulerFlags: cloneSlice(w.SchedulerFlags),
			Persistence: config.Persistence{Timeout: config.Duration(w.Persistence.Timeout), Netmask: w.Persistence.Netmask},
			OnePacket:   w.OnePacket, DrainTimeout: config.Duration(w.DrainTimeout), Quorum: w.Quorum,
			OnDown: config.DownPolicy(w.OnDown), SorryServer: w.SorryServer, HealthCheck: convertPtr(w.HealthCheck, checkFromWire),
			Forwarding: config.Forwarding(w.Forwarding),
			Admission:  convertPtr(w.Admission, admissionFromWire),
		}
		if w.Reals != nil {
			c.Reals = make([]config.Real, len(w.Reals))
		}
		for j, r := range w.Reals {
			c.Reals[j] = config.Real{Address: r.Address, Port: r.Port, Weight: clone(r.Weight),
				UpperThreshold: r.UpperThreshold, LowerThreshold: r.LowerThreshold, HealthCheck: convertPtr(r.HealthCheck, checkFromWire),
				Forwarding: config.Forwarding(r.Forwarding)}
		}
		out[i] = c
	}
	return out
}

// Validate checks a replicated spec by the rules of the configuration file
// (config.ValidateShared); it is the raft.SpecValidator of every node.
func Validate(s raft.Spec) error {
	return config.ValidateShared(IPVS(s), VIPs(s), Services(s))
}

var _ raft.SpecValidator = Validate

func checkToWire(c config.HealthCheck) raft.HealthCheck {
	return raft.HealthCheck{
		Type: string(c.Type), Interval: raft.Duration(c.Interval), Timeout: raft.Duration(c.Timeout),
		Rise: c.Rise, Fall: c.Fall, Initial: c.Initial, Address: c.Address, Port: c.Port, Source: c.Source,
		Send: c.Send, Expect: c.Expect, Method: c.Method, Path: c.Path, Host: c.Host,
		ExpectStatus: cloneSlice(c.ExpectStatus), BodyRegexp: c.BodyRegexp, TLSServer: c.TLSServer,
		TLSVerify: clone(c.TLSVerify), NoReplyIsUp: c.NoReplyIsUp, QueryName: c.QueryName, QueryType: c.QueryType,
		ExpectCode: c.ExpectCode, ExpectAnswer: c.ExpectAnswer, Command: cloneSlice(c.Command),
		ProxyProtocol: c.ProxyProtocol, ThroughVIP: c.ThroughVIP,
	}
}

func checkFromWire(c raft.HealthCheck) config.HealthCheck {
	return config.HealthCheck{
		Type: config.CheckType(c.Type), Interval: config.Duration(c.Interval), Timeout: config.Duration(c.Timeout),
		Rise: c.Rise, Fall: c.Fall, Initial: c.Initial, Address: c.Address, Port: c.Port, Source: c.Source,
		Send: c.Send, Expect: c.Expect, Method: c.Method, Path: c.Path, Host: c.Host,
		ExpectStatus: cloneSlice(c.ExpectStatus), BodyRegexp: c.BodyRegexp, TLSServer: c.TLSServer,
		TLSVerify: clone(c.TLSVerify), NoReplyIsUp: c.NoReplyIsUp, QueryName: c.QueryName, QueryType: c.QueryType,
		ExpectCode: c.ExpectCode, ExpectAnswer: c.ExpectAnswer, Command: cloneSlice(c.Command),
		ProxyProtocol: c.ProxyProtocol, ThroughVIP: c.ThroughVIP,
	}
}

func admissionToWire(a config.Admission) raft.Admission {
	out := raft.Admission{Allow: cloneSlice(a.Allow), Deny: cloneSlice(a.Deny)}
	if r := a.SourceRate; r != nil {
		out.SourceRate = &raft.SourceRate{Rate: raft.Rate{Count: r.Rate.Count, Per: raft.Duration(r.Rate.Per)},
			Burst: r.Burst, PrefixV4: r.PrefixV4, PrefixV6: r.PrefixV6}
	}
	if r := a.ServiceRate; r != nil {
		out.ServiceRate = &raft.ServiceRate{Rate: raft.Rate{Count: r.Rate.Count, Per: raft.Duration(r.Rate.Per)}, Burst: r.Burst}
	}
	return out
}

func admissionFromWire(a raft.Admission) config.Admission {
	out := config.Admission{Allow: cloneSlice(a.Allow), Deny: cloneSlice(a.Deny)}
	if r := a.SourceRate; r != nil {
		out.SourceRate = &config.SourceRate{Rate: config.Rate{Count: r.Rate.Count, Per: config.Duration(r.Rate.Per)},
			Burst: r.Burst, PrefixV4: r.PrefixV4, PrefixV6: r.PrefixV6}
	}
	if r := a.ServiceRate; r != nil {
		out.ServiceRate = &config.ServiceRate{Rate: config.Rate{Count: r.Rate.Count, Per: config.Duration(r.Rate.Per)}, Burst: r.Burst}
	}
	return out
}

func toDuration(d config.Duration) raft.Duration   { return raft.Duration(d) }
func fromDuration(d raft.Duration) config.Duration { return config.Duration(d) }

// clone returns a copy of *p, nil for nil: nothing the spec holds aliases
// the file's values.
func clone[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// convertPtr converts *p with f, nil for nil.
func convertPtr[A, B any](p *A, f func(A) B) *B {
	if p == nil {
		return nil
	}
	v := f(*p)
	return &v
}

// cloneSlice copies s, keeping nil and empty apart.
func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}
