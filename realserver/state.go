package realserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/dsrd/dsrd/internal/netkernel"
)

// stateFile is the agent's state in the data dir.
const stateFile = "realserver-state.json"

// stateVersion is the format of stateFile; a file with another version is
// refused rather than misread.
const stateVersion = 1

// state is what the agent must remember across restarts to undo exactly
// what it did and nothing else.
type state struct {
	Version int `json:"version"`
	// Sysctls maps a sysctl's dotted name to the value found there before
	// the agent first changed it, and the value it wrote. In the file the
	// keys are /proc/sys paths ("net/ipv4/conf/all/arp_ignore"), the format
	// earlier versions wrote and read (see MarshalJSON). An entry is written
	// before the sysctl is changed and never replaced while it exists, so
	// a restart after a crash does not take the agent's own value for the
	// original.
	Sysctls map[string]savedSysctl `json:"sysctls,omitempty"`
	// Addresses are the IPv6 VIPs the agent added to lo. IPv6 addresses
	// have no label, so this is the only mark of ownership; an entry is
	// written before the address is added. IPv4 VIPs carry the label
	// instead (ownLabel) and are not listed.
	Addresses []netip.Prefix `json:"addresses,omitempty"`
}

// savedSysctl is one sysctl the agent changed.
type savedSysctl struct {
	// Original is the value before the agent's first change.
	Original string `json:"original"`
	// Set is the value the agent wrote.
	Set string `json:"set"`
}

// MarshalJSON writes the sysctls keyed by /proc/sys path: the file format
// earlier versions read, so that a downgrade still restores them.
func (s *state) MarshalJSON() ([]byte, error) {
	type file state // without the methods
	f := file(*s)
	f.Sysctls = make(map[string]savedSysctl, len(s.Sysctls))
	for name, v := range s.Sysctls {
		f.Sysctls[netkernel.SysctlPath(name)] = v
	}
	return json.Marshal(f)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *state) UnmarshalJSON(b []byte) error {
	type file state
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	*s = state(f)
	s.Sysctls = make(map[string]savedSysctl, len(f.Sysctls))
	for path, v := range f.Sysctls {
		s.Sysctls[netkernel.SysctlName(path)] = v
	}
	return nil
}

func newState() *state {
	return &state{Version: stateVersion, Sysctls: map[string]savedSysctl{}}
}

// empty reports whether the state records nothing to undo.
func (s *state) empty() bool { return len(s.Sysctls) == 0 && len(s.Addresses) == 0 }

func (s *state) ownsAddr(p netip.Prefix) bool { return slices.Contains(s.Addresses, p) }

func (s *state) addAddr(p netip.Prefix) {
	if !s.ownsAddr(p) {
		s.Addresses = append(s.Addresses, p)
	}
}

func (s *state) removeAddr(p netip.Prefix) {
	s.Addresses = slices.DeleteFunc(s.Addresses, func(q netip.Prefix) bool { return q == p })
}

func (s *state) clone() *state {
	c := &state{Version: s.Version, Sysctls: make(map[string]savedSysctl, len(s.Sysctls)), Addresses: slices.Clone(s.Addresses)}
	for k, v := range s.Sysctls {
		c.Sysctls[k] = v
	}
	return c
}

// loadState reads the state file in dir; a missing file is an empty state.
// A file that cannot be parsed is an error: replacing it would lose the
// original sysctl values for good.
func loadState(dir string) (*state, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newState(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state: %w", err)
	}
	s := newState()
	if err := json.Unmarshal(b, s); err != nil {
		return nil, fmt.Errorf("parse state %s (fix or remove it by hand; it holds the sysctl values to restore): %w", path, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("state %s: version %d, want %d", path, s.Version, stateVersion)
	}
	if s.Sysctls == nil {
		s.Sysctls = map[string]savedSysctl{}
	}
	return s, nil
}

// saveState writes the state file in dir atomically and durably; an empty
// state removes the file.
func saveState(dir string, s *state) error {
	path := filepath.Join(dir, stateFile)
	if s.empty() {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove state: %w", err)
		}
		return syncDir(dir)
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that a crash leaves either the
// old or the new file, never a partial one: it writes a temporary file in
// the same directory, fsyncs it, renames it over path and fsyncs the
// directory so the rename itself is on disk.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if err := tmp.Chmod(perm); err != nil {
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	if err := os.Rename(name, path); err != nil {
		return fmt.Errorf("rename %s: %w", name, err)
	}
	ok = true
	return syncDir(dir)
}

// syncDir fsyncs a directory so that entries created, renamed or removed in
// it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
