package config

import (
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"
)

// LoadDirector reads, decodes, defaults and validates the director
// configuration file at path. Problems with the file's content are
// returned as *Errors, one per problem.
func LoadDirector(path string) (*Director, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseDirector(path, data)
}

// LoadWitness reads, decodes, defaults and validates the witness
// configuration file at path.
func LoadWitness(path string) (*Witness, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseWitness(path, data)
}

// LoadRealserver reads, decodes, defaults and validates the realserver
// configuration file at path.
func LoadRealserver(path string) (*Realserver, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseRealserver(path, data)
}

// ParseDirector decodes data as a director configuration, applies the
// defaults and validates it. name (usually the file's path) starts every
// error message. Every problem found is returned at once as *Errors.
func ParseDirector(name string, data []byte) (*Director, error) {
	d, _, err := ParseDirectorWarnings(name, data)
	return d, err
}

// ParseDirectorWarnings is ParseDirector that also returns the warnings:
// what the file may say but probably does not mean (an allow entry inside
// a deny entry), each at its file:line:col.
func ParseDirectorWarnings(name string, data []byte) (*Director, []Error, error) {
	return parseWarn(name, data, KindDirector, defaultDirector, (*validator).director)
}

// ParseWitness decodes data as a witness configuration, applies the
// defaults and validates it, returning every problem as *Errors.
func ParseWitness(name string, data []byte) (*Witness, error) {
	return parse(name, data, KindWitness, defaultWitness, (*validator).witness)
}

// ParseRealserver decodes data as a realserver configuration, applies the
// defaults and validates it, returning every problem as *Errors.
func ParseRealserver(name string, data []byte) (*Realserver, error) {
	return parse(name, data, KindRealserver, defaultRealserver, (*validator).realserver)
}

// parse is the pipeline every kind of file goes through: YAML nodes,
// decode with positions, defaults for absent keys, validation.
func parse[T any](name string, data []byte, kind Kind, def func(*T, setFunc), check func(*validator, *T)) (*T, error) {
	cfg, _, err := parseWarn(name, data, kind, def, check)
	return cfg, err
}

// parseWarn is parse that also returns the warnings, sorted by position.
func parseWarn[T any](name string, data []byte, kind Kind, def func(*T, setFunc), check func(*validator, *T)) (*T, []Error, error) {
	errs := &errorList{file: name}
	root := parseYAML(data, errs, kind)
	if root == nil {
		return nil, nil, errs.err()
	}
	cfg := new(T)
	pos := decodeInto(root, kind, errs, cfg)
	if pos.incomplete {
		return nil, nil, errs.err()
	}
	def(cfg, pos.isSet)
	warns := &errorList{file: name}
	check(&validator{errs: errs, pos: pos, warns: warns}, cfg)
	var wl []Error
	if w, ok := warns.err().(*Errors); ok {
		wl = w.List
	}
	if err := errs.err(); err != nil {
		return nil, wl, err
	}
	return cfg, wl, nil
}

// Check validates data as a configuration of the given kind, or of the
// kind Detect finds when kind is "". It returns nil or *Errors; name
// starts every message. It is what dsrd config check runs.
func Check(name string, data []byte, kind Kind) error {
	_, err := CheckWarnings(name, data, kind)
	return err
}

// CheckWarnings is Check that also returns the file's warnings (see
// ParseDirectorWarnings).
func CheckWarnings(name string, data []byte, kind Kind) ([]Error, error) {
	if kind == "" {
		k, err := detect(name, data)
		if err != nil {
			return nil, err
		}
		kind = k
	}
	var err error
	switch kind {
	case KindDirector:
		var warns []Error
		_, warns, err = ParseDirectorWarnings(name, data)
		return warns, err
	case KindWitness:
		_, err = ParseWitness(name, data)
	case KindRealserver:
		_, err = ParseRealserver(name, data)
	default:
		return nil, fmt.Errorf("unknown configuration kind %q: want director, witness or realserver", kind)
	}
	return nil, err
}

// Detect guesses which kind of configuration data is from its top-level
// keys: services or ipvs, or vips with node or cluster, make a director;
// vips alone or a realserver's own keys (interfaces, cleanup_on_exit,
// status_address, ...) a realserver; node and cluster alone a witness.
// A file it cannot place, or that is not YAML, is an *Errors.
func Detect(data []byte) (Kind, error) {
	return detect("", data)
}

func detect(name string, data []byte) (Kind, error) {
	errs := &errorList{file: name}
	root := parseYAML(data, errs, "dsrd")
	if root == nil {
		return "", errs.err()
	}
	keys := make(map[string]bool)
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode {
			keys[k.Value] = true
		}
	}
	has := func(names ...string) bool {
		for _, n := range names {
			if keys[n] {
				return true
			}
		}
		return false
	}
	switch {
	case has("services", "ipvs"), keys["vips"] && has("node", "cluster"):
		return KindDirector, nil
	case has("vips", "interfaces", "cleanup_on_exit", "status_address", "resync_interval", "syn_cookies", "tunnel", "data_dir", "log_level", "log_format"):
		return KindRealserver, nil
	case has("node", "cluster"):
		return KindWitness, nil
	}
	errs.add(posOf(root), "cannot tell the kind of configuration: a director has node, cluster, vips and services; "+
		"a witness node and cluster; a realserver vips and interfaces")
	return "", errs.err()
}

// readFile reads a configuration file, refusing one over MaxFileSize.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read configuration %s: %w", path, err)
	}
	return data, nil
}
