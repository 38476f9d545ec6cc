package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples checks that every file in packaging/examples parses clean
// as the kind its name says, and is detected as such.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../../packaging/examples/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			kind := Kind(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)))
			switch kind {
			case KindDirector, KindWitness, KindRealserver:
			default:
				t.Fatalf("example %s: name it director.yaml, witness.yaml or realserver.yaml", file)
			}
			assertClean(t, file, data, kind)
		})
	}
}
