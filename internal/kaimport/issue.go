package kaimport

import (
	"fmt"
	"strings"
)

// IssueKind says what became of a piece of the keepalived configuration.
type IssueKind string

// The kinds of issue. Unsupported, Dropped and Changed are losses:
// --strict fails on them. Replaced is not: the setting's job is done by a
// mechanism of dsrd's own design (Raft elects the VIP owner instead of
// VRRP priorities, for example).
const (
	// Unsupported is syntax this import does not read (conditionals,
	// parameter substitution, a broken line); the line is left out.
	Unsupported IssueKind = "unsupported"
	// Dropped is a setting with no dsrd equivalent, left out.
	Dropped IssueKind = "dropped"
	// Changed is a setting translated with a change of meaning.
	Changed IssueKind = "changed"
	// Replaced is a setting whose purpose dsrd serves by design.
	Replaced IssueKind = "replaced"
)

// Loss reports whether the kind loses something of the configuration.
func (k IssueKind) Loss() bool { return k != Replaced }

// Issue is one thing the import did not translate, or translated with a
// change of meaning, at its place in keepalived's files.
type Issue struct {
	Pos  Pos
	Kind IssueKind
	// Keyword is the keepalived keyword concerned, when there is one.
	Keyword string
	// Msg says what was done and why, lower-case, one line.
	Msg string
}

// String formats the issue as file:line: kind: keyword: message.
func (i Issue) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: ", i.Pos, i.Kind)
	if i.Keyword != "" {
		b.WriteString(i.Keyword)
		b.WriteString(": ")
	}
	b.WriteString(strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(i.Msg))
	return b.String()
}

// splitScript splits a keepalived script string into its argv as
// keepalived does: white space separates words, single and double quotes
// group them, backslash escapes (\n, \t, \xHH, \NNN octal, \cC, \C).
// ok is false for an unterminated quote or a trailing backslash.
func splitScript(s string) (argv []string, ok bool) {
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0 && c == quote:
			quote = 0
		case c == '\\':
			i++
			if i >= len(s) {
				return nil, false
			}
			inWord = true
			i = unescape(s, i, &cur)
		case quote != 0:
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			inWord = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			if inWord {
				argv = append(argv, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, false
	}
	if inWord {
		argv = append(argv, cur.String())
	}
	return argv, true
}

// unescape writes the character escaped at s[i] (after the backslash) and
// returns the index of its last byte.
func unescape(s string, i int, b *strings.Builder) int {
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }
	hexVal := func(c byte) byte {
		switch {
		case c <= '9':
			return c - '0'
		case c >= 'a':
			return c - 'a' + 10
		}
		return c - 'A' + 10
	}
	c := s[i]
	switch {
	case c == 'x' && i+1 < len(s) && isHex(s[i+1]):
		v := byte(0)
		n := 0
		for i+1 < len(s) && n < 2 && isHex(s[i+1]) {
			i++
			v = v<<4 | hexVal(s[i])
			n++
		}
		b.WriteByte(v)
		return i
	case c == 'c' && i+1 < len(s):
		b.WriteByte(s[i+1] & 0x1f)
		return i + 1
	case c >= '0' && c <= '7':
		v := c - '0'
		for n := 0; n < 2 && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '7'; n++ {
			i++
			v = v<<3 + (s[i] - '0')
		}
		b.WriteByte(v)
		return i
	}
	if r, ok := map[byte]byte{'a': '\a', 'b': '\b', 'E': 0x1b, 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}[c]; ok {
		b.WriteByte(r)
	} else {
		b.WriteByte(c)
	}
	return i
}
