package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// positions maps a value's path (e.g. "services[0].reals[1].port") to where
// it is written, and remembers which values were written at all, so that
// defaults apply only to absent keys and validation errors point at the
// offending value.
type positions struct {
	vals map[string]pos  // value position of every node decoded, null included
	set  map[string]bool // paths whose value is present and not null
	bad  map[string]bool // paths whose value failed to decode
	// incomplete is set when alias expansion was cut short: the decoded
	// value is partial and not worth validating.
	incomplete bool
}

func newPositions() *positions {
	return &positions{
		vals: make(map[string]pos),
		set:  make(map[string]bool),
		bad:  make(map[string]bool),
	}
}

// isSet reports whether path was written in the file with a non-null value.
// A nil *positions (a value built in code) has nothing set.
func (p *positions) isSet(path string) bool { return p != nil && p.set[path] }

// at returns the position of path, or of its nearest ancestor written in
// the file; the zero pos when there is none.
func (p *positions) at(path string) pos {
	if p == nil {
		return pos{}
	}
	for {
		if q, ok := p.vals[path]; ok {
			return q
		}
		if path == "" {
			return pos{}
		}
		path = parentPath(path)
	}
}

// isBad reports whether path or one of its ancestors failed to decode, so
// that validation does not report a second, derived error for it.
func (p *positions) isBad(path string) bool {
	if p == nil || len(p.bad) == 0 {
		return false
	}
	for {
		if p.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// parentPath strips the last element of a path: "a.b[2]" -> "a.b" -> "a" -> "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinPath appends a key to a path.
func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// indexPath appends a list index to a path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// prefix returns "path: " for a message about path, or "" at the top level.
func prefix(path string) string {
	if path == "" {
		return ""
	}
	return path + ": "
}

// posOf returns a node's position, never below 1:1.
func posOf(n *yaml.Node) pos {
	return pos{line: max(n.Line, 1), col: max(n.Column, 1)}
}
