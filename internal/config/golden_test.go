package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/errors")

// kindOf returns the kind a test file is for, from its name's first word
// ("director_x.yaml"); "detect" files are checked with the kind detected.
func kindOf(t *testing.T, file string) Kind {
	t.Helper()
	prefix, _, _ := strings.Cut(filepath.Base(file), "_")
	switch k := Kind(prefix); k {
	case KindDirector, KindWitness, KindRealserver:
		return k
	case "detect":
		return ""
	}
	t.Fatalf("%s: name must start with director_, witness_, realserver_ or detect_", file)
	return ""
}

// errorLine is the shape of every line of an *Errors message.
var errorLine = regexp.MustCompile(`^[^:\n]+:[1-9][0-9]*:[1-9][0-9]*: \S.*$`)

// checkErrors asserts the invariants of an error returned for a file:
// an *Errors whose entries have a position, sorted, one line each.
func checkErrors(t *testing.T, name string, err error) *Errors {
	t.Helper()
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("%s: error %T is not *Errors: %v", name, err, err)
	}
	if len(errs.List) == 0 {
		t.Fatalf("%s: *Errors with no error", name)
	}
	for i, e := range errs.List {
		if e.File != name || e.Line < 1 || e.Col < 1 {
			t.Errorf("%s: error %d has no position: %+v", name, i, e)
		}
		if i > 0 {
			p := errs.List[i-1]
			if p.Line > e.Line || p.Line == e.Line && p.Col > e.Col {
				t.Errorf("%s: errors not sorted: %v before %v", name, p, e)
			}
		}
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !errorLine.MatchString(line) {
			t.Errorf("%s: line is not file:line:col: message: %q", name, line)
		}
	}
	return errs
}

// TestGolden checks every broken file under testdata/errors against the
// errors in its .golden file; go test -update rewrites them.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(file)
			err = Check(name, data, kindOf(t, file))
			if err == nil {
				t.Fatalf("no error for a broken file")
			}
			checkErrors(t, name, err)
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s (run go test -update if the change is right)\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// TestGoldenOrphans keeps testdata/errors free of golden files whose input
// was removed.
func TestGoldenOrphans(t *testing.T) {
	goldens, _ := filepath.Glob("testdata/errors/*.golden")
	for _, g := range goldens {
		if _, err := os.Stat(strings.TrimSuffix(g, ".golden") + ".yaml"); err != nil {
			t.Errorf("%s has no input file", g)
		}
	}
}
