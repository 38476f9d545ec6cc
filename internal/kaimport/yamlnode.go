package kaimport

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// kv is one key of a mapping being built, with the comment written above
// it.
type kv struct {
	key     string
	value   *yaml.Node
	comment string
}

func mapping(pairs ...kv) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for _, p := range pairs {
		if p.value == nil {
			continue
		}
		k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: p.key, HeadComment: p.comment}
		m.Content = append(m.Content, k, p.value)
	}
	return m
}

// add appends a key to a mapping node.
func add(m *yaml.Node, key string, value *yaml.Node, comment string) {
	if value == nil {
		return
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, HeadComment: comment}, value)
}

// get returns the value of key in mapping m, or nil.
func get(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func str(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func num(n int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(n, 10)}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func seq(items ...*yaml.Node) *yaml.Node {
	return &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: items}
}

func strs(items []string) *yaml.Node {
	s := seq()
	for _, it := range items {
		s.Content = append(s.Content, str(it))
	}
	s.Style = yaml.FlowStyle
	return s
}

// commentUnsafe reports a rune a YAML comment cannot hold as it is: one
// YAML does not print (C0 and C1 controls, U+FFFE, U+FFFF) or one that
// ends a line (CR, NEL, U+2028, U+2029), but a newline (which separates
// the comment's lines) and a tab.
func commentUnsafe(r rune) bool {
	switch {
	case r == '\n' || r == '\t':
		return false
	case r == '\r' || r == 0x85 || r == 0x2028 || r == 0x2029, r == 0xfffe || r == 0xffff:
		return true
	}
	return r < 0x20 || (r >= 0x7f && r < 0xa0)
}

// commentEscape writes r, which commentUnsafe reports, as Go would quote
// it: \x08, \u2028.
func commentEscape(b *strings.Builder, r rune) {
	if r <= 0xff {
		fmt.Fprintf(b, "\\x%02x", r)
		return
	}
	fmt.Fprintf(b, "\\u%04x", r)
}

// validUTF8 replaces, in n and below, every byte of a value or comment
// that is not UTF-8 with U+FFFD, and every rune of a comment that
// commentUnsafe reports with its escape (\x08). YAML is UTF-8 and its
// comments are written as they are: keepalived reads bytes, and a name or
// script path copied from a keepalived.conf in another encoding made the
// encoder panic, and a backspace after a value copied into a comment made
// a file dsrd cannot read (FuzzImport found both in CI). The encoder quotes
// and escapes values itself. Such a value then reaches dsrd's validation
// as text, and the report keeps keepalived's own line.
func validUTF8(n *yaml.Node) {
	if n == nil {
		return
	}
	fix := func(s *string) {
		if !utf8.ValidString(*s) {
			*s = strings.ToValidUTF8(*s, "\uFFFD")
		}
	}
	comment := func(s *string) {
		fix(s)
		if strings.IndexFunc(*s, commentUnsafe) < 0 {
			return
		}
		var b strings.Builder
		for _, r := range *s {
			if commentUnsafe(r) {
				commentEscape(&b, r)
				continue
			}
			b.WriteRune(r)
		}
		*s = b.String()
	}
	fix(&n.Value)
	comment(&n.HeadComment)
	comment(&n.LineComment)
	comment(&n.FootComment)
	for _, c := range n.Content {
		validUTF8(c)
	}
}
