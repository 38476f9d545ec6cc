package director

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dsrd/dsrd/internal/config"
	"github.com/dsrd/dsrd/ipvs"
)

// ownedFileName is the file in the data dir that carries, across restarts,
// the IPVS services this director owns and the cluster state its IPVS
// last followed in full.
const ownedFileName = "ipvs-owned.json"

// ownedFormat is the version of the file's encoding.
const ownedFormat = 1

// ownedRecord is the content of the owned file.
//
// Services are the reconciler's owned services (ipvs.Reconciler.Owned)
// with their drain timeouts: loaded into ipvs.WithOwnedServices at start,
// they let a service removed from the cluster configuration while this
// director was down be drained and deleted when it comes back, where
// otherwise it would look foreign and stay forever. Services never owned
// are not in it, so they are never touched.
//
// Index is the raft.State.Index of the last state applied without error:
// at start, Raft replays its log through older states, and programming one
// of them would undo, for a moment, changes the kernel already holds (a real
// deleted and re-added, a service drained): see catchUp.
type ownedRecord struct {
	Format   int        `json:"format"`
	Index    uint64     `json:"index"`
	Services []ownedKey `json:"services"`
}

// ownedKey is an ipvs.ServiceKey as written in the owned file.
// with its drain timeout (a Go duration, "5m0s").
type ownedKey struct {
	Family       string     `json:"family"`
	Protocol     string     `json:"protocol,omitempty"`
	Address      netip.Addr `json:"address,omitzero"`
	Port         uint16     `json:"port,omitempty"`
	FWMark       uint32     `json:"fwmark,omitempty"`
	DrainTimeout string     `json:"drain_timeout"`
}

// ownedKeyOf encodes an owned service.
func ownedKeyOf(s ipvs.Service) ownedKey {
	k := s.Key
	o := ownedKey{Family: k.Family.String(), DrainTimeout: s.DrainTimeout.String()}
	if k.IsFWMark() {
		o.FWMark = k.FWMark
	} else {
		o.Protocol, o.Address, o.Port = k.Protocol.String(), k.Addr, k.Port
	}
	return o
}

// service decodes an owned service: its key, in canonical form, and its
// drain timeout.
func (o ownedKey) service() (ipvs.Service, error) {
	k, err := o.key()
	if err != nil {
		return ipvs.Service{}, err
	}
	d, err := time.ParseDuration(o.DrainTimeout)
	if err != nil || d < 0 {
		return ipvs.Service{}, fmt.Errorf("service %s: drain timeout %q: want a duration like 5m0s", k, o.DrainTimeout)
	}
	return ipvs.Service{Key: k, DrainTimeout: d}, nil
}

// key decodes the service key, in canonical form.
func (o ownedKey) key() (ipvs.ServiceKey, error) {
	var fam ipvs.Family
	switch o.Family {
	case "ipv4":
		fam = ipvs.IPv4
	case "ipv6":
		fam = ipvs.IPv6
	default:
		return ipvs.ServiceKey{}, fmt.Errorf("unknown family %q", o.Family)
	}
	if o.FWMark != 0 {
		return ipvs.FWMarkKey(fam, o.FWMark), nil
	}
	p, err := ipvs.ParseProtocol(o.Protocol)
	if err != nil {
		return ipvs.ServiceKey{}, err
	}
	if !o.Address.IsValid() || o.Port == 0 {
		return ipvs.ServiceKey{}, fmt.Errorf("service %s %s:%d: address and port are required", o.Protocol, o.Address, o.Port)
	}
	k := ipvs.NewServiceKey(p, netip.AddrPortFrom(o.Address, o.Port))
	if k.Family != fam {
		return ipvs.ServiceKey{}, fmt.Errorf("service %s: address is not %s", k, o.Family)
	}
	return k, nil
}

// owned is the decoded owned file: the state index, and the owned services
// (Key and DrainTimeout only) in ipvsadm's order.
type owned struct {
	index    uint64
	services []ipvs.Service
}

// equal reports whether two records hold the same.
func (o owned) equal(p owned) bool {
	return o.index == p.index && slices.EqualFunc(o.services, p.services, func(a, b ipvs.Service) bool {
		return a.Key == b.Key && a.DrainTimeout == b.DrainTimeout
	})
}

// keys returns the keys of the owned services.
func (o owned) keys() []ipvs.ServiceKey {
	out := make([]ipvs.ServiceKey, 0, len(o.services))
	for _, s := range o.services {
		out = append(out, s.Key)
	}
	return out
}

// loadOwned reads the owned file of a data dir; a missing file is an empty
// record (a first start, or a data dir of an earlier version).
func loadOwned(dataDir string) (owned, error) {
	path := filepath.Join(dataDir, ownedFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return owned{}, nil
	}
	if err != nil {
		return owned{}, err
	}
	var rec ownedRecord
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return owned{}, fmt.Errorf("%s: %w", path, err)
	}
	if rec.Format != ownedFormat {
		return owned{}, fmt.Errorf("%s: format %d not supported (want %d)", path, rec.Format, ownedFormat)
	}
	out := owned{index: rec.Index, services: make([]ipvs.Service, 0, len(rec.Services))}
	for _, o := range rec.Services {
		s, err := o.service()
		if err != nil {
			return owned{}, fmt.Errorf("%s: %w", path, err)
		}
		out.services = append(out.services, s)
	}
	return out, nil
}

// saveOwned replaces the owned file of a data dir atomically.
func saveOwned(dataDir string, o owned) (err error) {
	rec := ownedRecord{Format: ownedFormat, Index: o.index, Services: make([]ownedKey, 0, len(o.services))}
	for _, s := range o.services {
		rec.Services = append(rec.Services, ownedKeyOf(s))
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode owned services: %w", err)
	}
	b = append(b, '\n')
	if err := writeFileAtomic(dataDir, ownedFileName, b); err != nil {
		return fmt.Errorf("save owned services: %w", err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data: a crash leaves the old file
// or the new one, never a torn one (write a temporary file, fsync it,
// rename it over the old one, fsync the directory).
func writeFileAtomic(dir, name string, data []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// ownedSaver keeps the owned file of a data dir up to date with the
// reconciler's owned services. The reconcile loop owns it: no lock.
type ownedSaver struct {
	log     *slog.Logger
	dataDir string
	saved   owned // the file as last written or read
}

// save records the owned services with their drain timeouts (desired's,
// or as recorded before for those no longer desired), and the state
// index when the apply of desired succeeded (applied), when they changed.
// A failure is logged and retried after the next apply.
func (s *ownedSaver) save(owned []ipvs.ServiceKey, desired ipvs.State, index uint64, applied bool) {
	next := ownedRecordOf(s.saved, owned, desired, index, applied)
	if next.equal(s.saved) {
		return
	}
	if err := saveOwned(s.dataDir, next); err != nil {
		s.log.Error("cannot record the owned ipvs services", "error", err)
		return
	}
	s.saved = next
}

// ownedRecordOf is the record that follows prev once the reconciler owns
// the services keys after applying desired (applied: without error, at
// the state index).
func ownedRecordOf(prev owned, keys []ipvs.ServiceKey, desired ipvs.State, index uint64, applied bool) owned {
	next := owned{index: prev.index}
	if applied {
		next.index = index
	}
	for _, k := range keys {
		s := ipvs.Service{Key: k, DrainTimeout: config.DefaultDrainTimeout}
		if ds, ok := desired[k]; ok {
			s.DrainTimeout = ds.DrainTimeout
		} else if i := slices.IndexFunc(prev.services, func(o ipvs.Service) bool { return o.Key == k }); i >= 0 {
			s.DrainTimeout = prev.services[i].DrainTimeout
		}
		next.services = append(next.services, s)
	}
	return next
}
