package e2e

// docs/bgp-routers.md quotes the lab's router and director configurations,
// which TestBGPLab runs. This test (no build tag: it runs with the unit
// tests, on the host) keeps the quotes equal to the files, so the document
// cannot drift from what the lab proves.

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// bgpDocQuoteRE finds a quote: a marker comment naming the file, then a
// fenced block.
var bgpDocQuoteRE = regexp.MustCompile("(?s)<!-- quote: ([^ ]+) -->\n```[a-z]*\n(.*?)```\n")

func TestBGPRoutersDocQuotesTheLabConfigs(t *testing.T) {
	root := filepath.Join("..", "..")
	doc, err := os.ReadFile(filepath.Join(root, "docs", "bgp-routers.md"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"tests/vm/bgp/bird-router.conf":   false,
		"tests/vm/bgp/frr-router.conf":    false,
		"tests/vm/bgp/bird-director.conf": false,
	}
	for _, m := range bgpDocQuoteRE.FindAllStringSubmatch(string(doc), -1) {
		name, quoted := m[1], m[2]
		if _, ok := want[name]; !ok {
			t.Errorf("docs/bgp-routers.md quotes %s, which this test does not know", name)
			continue
		}
		want[name] = true
		file, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
		if err != nil {
			t.Errorf("docs/bgp-routers.md quotes %s: %v", name, err)
			continue
		}
		if quoted != string(file) {
			t.Errorf("docs/bgp-routers.md's quote of %s differs from the file; first difference at line %d:\n doc:  %q\n file: %q",
				name, bgpFirstDiff(quoted, string(file))+1, bgpLine(quoted, bgpFirstDiff(quoted, string(file))),
				bgpLine(string(file), bgpFirstDiff(quoted, string(file))))
		}
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("docs/bgp-routers.md does not quote %s (a fenced block after <!-- quote: %s -->)", name, name)
		}
	}
}

// bgpFirstDiff is the index of the first line where a and b differ.
func bgpFirstDiff(a, b string) int {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range la {
		if i >= len(lb) || la[i] != lb[i] {
			return i
		}
	}
	return len(la)
}

func bgpLine(s string, i int) string {
	l := strings.Split(s, "\n")
	if i < len(l) {
		return l[i]
	}
	return "(end)"
}
