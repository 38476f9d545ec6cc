package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzParse feeds arbitrary bytes to the three parsers and to Check. Seeds
// are every YAML file under testdata and packaging/examples, valid and
// broken, plus testdata/fuzz/FuzzParse. It asserts that nothing panics,
// that every error has a position and prints as file:line:col: message,
// and that what parses also validates and survives a YAML round trip.
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, glob := range []string{"testdata/*/*.yaml", "testdata/fuzz/*.yaml", "../../packaging/examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		seeds = append(seeds, files...)
	}
	for _, file := range seeds {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		for _, kind := range []Kind{KindDirector, KindWitness, KindRealserver} {
			cfg, err := parseKind(name, data, kind)
			if err != nil {
				checkErrors(t, name, err)
				continue
			}
			if reflect.ValueOf(cfg).IsNil() {
				t.Fatalf("%s: nil configuration and nil error", kind)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("%s: parsed, but Validate says: %v", kind, err)
			}
			out, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatalf("%s: marshal: %v", kind, err)
			}
			again, err := parseKind(name, out, kind)
			if err != nil {
				t.Fatalf("%s: parsing the marshalled value: %v\n%s", kind, err, out)
			}
			if !reflect.DeepEqual(cfg, again) {
				t.Fatalf("%s: round trip changed the value:\n%s", kind, out)
			}
		}
		if err := Check(name, data, ""); err != nil {
			checkErrors(t, name, err)
		}
		if _, err := Detect(data); err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || errs.List[0].Line < 1 || strings.Contains(errs.List[0].Msg, "\n") {
				t.Fatalf("Detect error without position: %v", err)
			}
		}
	})
}
