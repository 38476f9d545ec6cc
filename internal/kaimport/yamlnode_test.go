package kaimport

import (
	"bytes"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestCommentsHoldOnlyWhatYAMLPrints is FuzzImport's find in CI
// (testdata/fuzz/FuzzImport/96ec4ee79ef4511b): "advert_int 1\b" copied into
// a comment made a file dsrd could not read ("control characters are not
// allowed"). Every rune YAML does not print or that ends a line, in any
// comment, comes out escaped, and the file reads back.
func TestCommentsHoldOnlyWhatYAMLPrints(t *testing.T) {
	for _, r := range []rune{0x00, 0x08, 0x0b, 0x0c, '\r', 0x1b, 0x7f, 0x85, 0x9f, 0x2028, 0x2029, 0xfffe, 0xffff} {
		text := "advert_int 1" + string(r) + " tail"
		doc := mapping(kv{key: "a", value: str("v" + string(r)), comment: text})
		doc.Content[1].LineComment = "# line " + string(r)
		doc.FootComment = "# foot " + string(r)
		validUTF8(doc)
		var b bytes.Buffer
		enc := yaml.NewEncoder(&b)
		if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{doc}}); err != nil {
			t.Fatalf("rune %U: encode: %v", r, err)
		}
		var back map[string]string
		if err := yaml.Unmarshal(b.Bytes(), &back); err != nil {
			t.Errorf("rune %U: the file does not read back: %v\n%q", r, err, b.String())
			continue
		}
		if back["a"] != "v"+string(r) {
			t.Errorf("rune %U: value %q, want it kept", r, back["a"])
		}
		if len(back) != 1 {
			t.Errorf("rune %U: keys %v: a comment spilled into the document", r, back)
		}
		if !strings.Contains(b.String(), "advert_int 1\\") {
			t.Errorf("rune %U: no escape in %q", r, b.String())
		}
	}
	// Tabs, newlines between a comment's lines, and printable text are
	// left as they are.
	doc := mapping(kv{key: "a", value: str("v"), comment: "one\ttab\ntwo é ✓"})
	validUTF8(doc)
	if got := doc.Content[0].HeadComment; !strings.Contains(got, "one\ttab") || !strings.Contains(got, "two é ✓") {
		t.Errorf("printable comment changed: %q", got)
	}
}
