package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// parseYAML parses data into the root mapping of its only document. On
// failure it records errors and returns nil.
func parseYAML(data []byte, errs *errorList, kind Kind) *yaml.Node {
	if len(data) > MaxFileSize {
		errs.addf(pos{1, 1}, "file is too large: %d bytes, the limit is %d", len(data), MaxFileSize)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			errs.addf(pos{1, 1}, "empty file: expected a %s configuration", kind)
			return nil
		}
		addSyntaxError(errs, data, err)
		return nil
	}
	for range maxDocuments {
		var next yaml.Node
		err := safeDecode(dec, &next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			addSyntaxError(errs, data, err)
			break
		}
		if root := docRoot(&next); root != nil && !isNull(root) {
			errs.addf(posOf(&next), "a second YAML document: a configuration file holds exactly one")
			break
		}
	}
	root := docRoot(&doc)
	if root == nil || isNull(root) {
		errs.addf(posOf(&doc), "empty document: expected a %s configuration", kind)
		return nil
	}
	if root.Kind != yaml.MappingNode {
		errs.addf(posOf(root), "expected a mapping of keys at the top level, got %s", describe(root))
		return nil
	}
	return root
}

// docRoot returns the content of a document node.
func docRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	return doc.Content[0]
}

// safeDecode decodes the next document as a node tree. The parser reports
// malformed input by panicking internally; the few panics it does not turn
// into errors itself are turned into one here, so a hostile file cannot
// crash the caller.
func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// yamlLine matches the line number in the YAML parser's error messages.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// addSyntaxError records a YAML parser error at the line it names; the
// parser gives no column. For the errors that name no line, the position is
// found in the text where possible.
func addSyntaxError(errs *errorList, data []byte, err error) {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// The parser's own errors ("did not find expected ...") and the
		// scanner's tab error count lines from 0 (the others from 1);
		// the line is then where the problem or its enclosing block is.
		if strings.HasPrefix(m[2], "did not find expected") || strings.HasPrefix(m[2], "found a tab character") {
			line++
		}
		lines := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			lines++
		}
		line = min(line, lines)
		errs.addf(pos{max(line, 1), 1}, "syntax error: %s", m[2])
		return
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	errs.addf(locate(data, msg), "syntax error: %s", msg)
}

// unknownAnchor matches the parser's message for an undefined alias.
var unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// locate finds where in data the parser's line-less error msg happened.
func locate(data []byte, msg string) pos {
	off := -1
	switch {
	case unknownAnchor.MatchString(msg):
		name := unknownAnchor.FindStringSubmatch(msg)[1]
		off = bytes.Index(data, []byte("*"+name))
	case strings.Contains(msg, "UTF-8") || strings.Contains(msg, "utf-8"):
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				off = i
				break
			}
			i += size
		}
	case strings.Contains(msg, "control characters"):
		off = bytes.IndexFunc(data, func(r rune) bool {
			return r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0x7f
		})
	}
	if off < 0 {
		return pos{1, 1}
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := 1 + utf8.RuneCount(data[bytes.LastIndexByte(data[:off], '\n')+1:off])
	return pos{line, col}
}

// isNull reports whether n is a null scalar (~, null, or nothing).
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	v := n.Value
	if utf8.RuneCountInString(v) > 40 {
		v = string([]rune(v)[:40]) + "..."
	}
	switch n.Tag {
	case "!!null":
		return "nothing (null)"
	case "!!str":
		return fmt.Sprintf("string %q", v)
	case "!!int":
		return "integer " + v
	case "!!float":
		return fmt.Sprintf("number %q", v)
	case "!!bool":
		return fmt.Sprintf("boolean %q", v)
	case "!!timestamp":
		return fmt.Sprintf("timestamp %q", v)
	}
	return fmt.Sprintf("%s %q", n.Tag, v)
}
