package kaimport

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsrd/dsrd/internal/config"
)

// FuzzImport feeds arbitrary bytes to the parser, as the main file and as
// a file it includes, then to the translator. Seeds are the golden inputs,
// the snippets under testdata/fuzz and, when installed, Debian's keepalived
// samples. Nothing may panic; a parse error is only a limit; a translation
// either fails on its options or yields a file dsrd's validation accepts;
// every issue has a position and is one line.
func FuzzImport(f *testing.F) {
	var seeds []string
	for _, glob := range []string{"testdata/golden/*.conf", "testdata/fuzz/*.conf", debianSamples + "/keepalived.conf.*"} {
		files, _ := filepath.Glob(glob)
		seeds = append(seeds, files...)
	}
	for _, file := range seeds {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, []byte("real_server 198.51.100.9 80 {\n TCP_CHECK {\n }\n}\n"))
	}
	f.Fuzz(func(t *testing.T, main, inc []byte) {
		src := MapSource{"k.conf": main, "inc/a.conf": inc, "inc/b.conf": []byte("include a.conf\n")}
		// Small limits so that the fuzzer reaches them.
		file, err := Parse(src, "k.conf", nil, Limits{Words: 20000, IncludeDepth: 4, Files: 16})
		if err != nil {
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("parse error that is not a limit: %v", err)
			}
			return
		}
		res, err := Translate(file, Options{})
		if err != nil {
			t.Fatalf("translate: %v", err)
		}
		if _, err := config.ParseDirector("out.yaml", res.YAML); err != nil {
			t.Fatalf("the translation does not validate: %v\n%s", err, res.YAML)
		}
		for _, i := range res.Issues {
			if i.Pos.File == "" || i.Pos.Line < 1 || strings.ContainsAny(i.String(), "\n\r") {
				t.Fatalf("issue without position or on several lines: %q", i.String())
			}
		}
	})
}
