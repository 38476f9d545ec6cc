package raft

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/dsrd/dsrd/ipvs"
)

// CommandType is the first byte of every Raft log command; the rest is the
// command's JSON body.
type CommandType uint8

// IgnoreUnknownFlag marks a command type that a node which does not know it
// may skip without its state diverging from the nodes that do (a future
// command that carries only advisory data). A node that meets an unknown
// command without this flag stops: see FSM.Apply.
const IgnoreUnknownFlag CommandType = 0x80

// The command types. Values are part of the log format: never renumber.
const (
	// CommandSetConfig replaces the cluster configuration (SetConfigCommand).
	CommandSetConfig CommandType = 1
	// CommandSetAdmin sets the admin state of one real (SetAdminCommand).
	CommandSetAdmin CommandType = 2
	// CommandSetConfigV2 replaces the cluster configuration with a spec
	// that needs version 2 (a VIP with a Mode: Spec.Version). Its body is
	// a SetConfigCommand, as for CommandSetConfig.
	CommandSetConfigV2 CommandType = 3
	// CommandSetHealth changes the cluster's health verdicts on reals
	// (SetHealthCommand).
	CommandSetHealth CommandType = 4
	// CommandSetDrain drains or undrains a director's BGP announcements
	// (SetDrainCommand).
	CommandSetDrain CommandType = 5
	// CommandSetConfigV3 replaces the cluster configuration with a spec
	// that needs version 4 (a field a version 3 binary would ignore and so
	// get wrong: Spec.Version). Its body is a SetConfigCommand, as for
	// CommandSetConfig.
	CommandSetConfigV3 CommandType = 6
)

// CommandVersion is the highest command version this binary can apply.
// Every command type has the version that introduced it (Version); a
// leader appends a command of version v only when every member has
// advertised a CommandVersion of at least v (Node.CheckMemberVersions,
// fed by Config.MemberVersions: members advertise theirs in their peer
// status). So a rolling upgrade that adds a command type is safe in any
// order: the new type is used once the last member runs a binary that
// knows it, and an older member never meets an entry that would stop it.
// Bump it with every new command type, and never tighten the validation
// of an existing type without one: an entry older members accept and
// newer ones reject would split their states.
const CommandVersion = 4

// Version returns the command version that introduced t; 0 for a type
// this binary does not know.
func (t CommandType) Version() int {
	switch t {
	case CommandSetConfig, CommandSetAdmin:
		return 1
	case CommandSetConfigV2, CommandSetHealth:
		return 2
	case CommandSetDrain:
		return 3
	case CommandSetConfigV3:
		return 4
	}
	return 0
}

// String names the command type for logs.
func (t CommandType) String() string {
	switch t {
	case CommandSetConfig:
		return "set-config"
	case CommandSetConfigV2:
		return "set-config-v2"
	case CommandSetConfigV3:
		return "set-config-v3"
	case CommandSetHealth:
		return "set-health"
	case CommandSetAdmin:
		return "set-admin"
	case CommandSetDrain:
		return "set-drain"
	}
	if t&IgnoreUnknownFlag != 0 {
		return fmt.Sprintf("unknown-ignorable(%d)", uint8(t&^IgnoreUnknownFlag))
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// ErrInvalidSpec is matched (errors.Is) by the refusal of a spec that
// fails validation, on any path.
var ErrInvalidSpec = errors.New("invalid cluster configuration")

// Keys returns the service keys of the spec, in order.
func (s Spec) Keys() []ipvs.ServiceKey {
	keys := make([]ipvs.ServiceKey, len(s.Services))
	for i := range s.Services {
		keys[i] = s.Services[i].Key()
	}
	return keys
}

// validateSpec checks spec with v (refusing every non-empty spec when v is
// nil); the error matches ErrInvalidSpec.
func validateSpec(v SpecValidator, spec Spec) error {
	var err error
	switch {
	case v != nil:
		err = v(spec)
	case len(spec.VIPs) > 0 || len(spec.Services) > 0:
		err = errNoValidator
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	return nil
}

// Hash returns the content hash of the spec, "sha256:" and the hex digest of
// its JSON encoding. Two directors that load the same file compute the same
// hash; the FSM compares hashes, it never recomputes them (see
// SetConfigCommand).
func (s Spec) Hash() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// SetConfigCommand replaces the cluster configuration. Hash is computed by
// the submitter: a command whose hash equals the current configuration's is
// a no-op that leaves the generation unchanged, so directors that submit the
// same file do not churn. The FSM trusts the carried hash rather than
// recomputing it, because Apply must give the same result on every node
// whatever binary version it runs, and a hash of a Go encoding may change
// between versions.
//
// Keys, for the same reason, carries the submitter's service keys
// (Keys[i] = Spec.Services[i].Key()), which the FSM matches admin states
// against: Apply never depends on how a binary formats a key.
type SetConfigCommand struct {
	Spec        Spec              `json:"spec"`
	Hash        string            `json:"hash"`
	Keys        []ipvs.ServiceKey `json:"keys"`
	SubmittedBy string            `json:"submitted_by"`
	SubmittedAt time.Time         `json:"submitted_at"`
}

// SetAdminCommand sets the admin state of one real. Setting AdminEnabled
// removes the entry: enabled is every real's default.
type SetAdminCommand struct {
	Ref   RealRef `json:"ref"`
	State Admin   `json:"state"`
}

// Admin is the operator's admin state of a real, replicated through Raft.
type Admin string

// The admin states.
const (
	// AdminEnabled is the default: the real takes traffic when healthy.
	AdminEnabled Admin = "enabled"
	// AdminDrained keeps the real with weight 0: no new connections,
	// established ones continue.
	AdminDrained Admin = "drained"
	// AdminDisabled removes the real from IPVS.
	AdminDisabled Admin = "disabled"
)

// ParseAdmin validates an admin state name.
func ParseAdmin(s string) (Admin, error) {
	switch a := Admin(s); a {
	case AdminEnabled, AdminDrained, AdminDisabled:
		return a, nil
	}
	return "", fmt.Errorf("unknown admin state %q (want enabled, drained or disabled)", s)
}

// RealRef identifies a real of a service: the service's identity in IPVS
// (encoded as ipvs.ServiceKey writes it: "tcp/203.0.113.10:80",
// "fwmark/4/1"), and the real's address (a real's port always equals the
// service port in DR mode). The API layer resolves service names to keys.
type RealRef struct {
	Service ipvs.ServiceKey `json:"service"`
	Address netip.Addr      `json:"address"`
}

// RefOf returns the reference of real r of service s.
func RefOf(s *Service, r *Real) RealRef {
	return RealRef{Service: s.Key(), Address: r.Address}
}

// String formats the reference as service/address.
func (r RealRef) String() string { return r.Service.String() + "/" + r.Address.String() }

// SetConfigResult is what applying a SetConfigCommand returns.
type SetConfigResult struct {
	// Generation is the configuration's generation after the command.
	Generation uint64
	// Changed is false when the command was a no-op (same hash).
	Changed bool
}

// SetAdminResult is what applying a SetAdminCommand returns.
type SetAdminResult struct {
	// Previous is the real's admin state before the command.
	Previous Admin
	// Changed is false when the real was already in the requested state.
	Changed bool
}

// ErrUnknownCommand is returned (and stops the node) for a command type this
// binary does not know and that is not flagged IgnoreUnknownFlag.
var ErrUnknownCommand = errors.New("unknown raft command type")

// ErrUnknownReal is returned by SetAdmin for a real that is not in the
// current cluster configuration.
var ErrUnknownReal = errors.New("no such real in the cluster configuration")

// encodeCommand builds a log entry: the type byte, then the JSON body.
func encodeCommand(t CommandType, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return append([]byte{byte(t)}, b...), nil
}

// decodeCommand splits a log entry into its type and body.
func decodeCommand(data []byte) (CommandType, []byte, error) {
	if len(data) == 0 {
		return 0, nil, errors.New("empty raft command")
	}
	return CommandType(data[0]), data[1:], nil
}
