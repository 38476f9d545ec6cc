// Package kaimport reads a keepalived configuration (keepalived.conf and the
// files it includes) and translates it into a dsrd director file, reporting
// everything it could not translate, or translated with a change of meaning,
// at keepalived's file:line.
//
// The grammar is keepalived's own, learnt from its documentation
// (keepalived.conf(5)) and its parser: a file is read line by line; '#' and
// '!' start a comment anywhere outside double quotes; '{' and '}' outside
// quotes split a line; a double-quoted string is one word; `include` (and
// includer, includem, includew, includeb, includea) reads the files matching
// a glob pattern, brace expressions included, at that point, a relative
// pattern being relative to the directory of the including file. Conditional
// lines (`@id`, `@^id`), parameter definitions (`$NAME=...`) and sequence
// and list blocks (`~SEQ`, `~LST`) are not supported: they are reported and
// the line is left out.
package kaimport

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Limits bound what Parse reads, so that no input can exhaust memory or
// time. The zero value of a field means its default.
type Limits struct {
	// FileSize is the most bytes one file may hold (default 4 MiB).
	FileSize int64
	// TotalSize is the most bytes all files together may hold (16 MiB).
	TotalSize int64
	// IncludeDepth is how deeply includes may nest (8).
	IncludeDepth int
	// Files is the most files one configuration may read (256).
	Files int
	// Words is the most words, braces included, of the whole
	// configuration (1,000,000).
	Words int
	// BlockDepth is how deeply blocks may nest (32).
	BlockDepth int
}

// The default limits. keepalived itself reads lines of at most 1024 bytes;
// these bounds are far above any real configuration.
const (
	DefaultFileSize     = 4 << 20
	DefaultTotalSize    = 16 << 20
	DefaultIncludeDepth = 8
	DefaultFiles        = 256
	DefaultWords        = 1_000_000
	DefaultBlockDepth   = 32
	// MaxLineLength is keepalived's own line limit (MAXBUF, 1024 bytes
	// with the newline): a longer line is ignored by keepalived, and so
	// reported and ignored here.
	MaxLineLength = 1023
)

func (l Limits) withDefaults() Limits {
	if l.FileSize <= 0 {
		l.FileSize = DefaultFileSize
	}
	if l.TotalSize <= 0 {
		l.TotalSize = DefaultTotalSize
	}
	if l.IncludeDepth <= 0 {
		l.IncludeDepth = DefaultIncludeDepth
	}
	if l.Files <= 0 {
		l.Files = DefaultFiles
	}
	if l.Words <= 0 {
		l.Words = DefaultWords
	}
	if l.BlockDepth <= 0 {
		l.BlockDepth = DefaultBlockDepth
	}
	return l
}

// ErrLimit is wrapped by the error Parse returns when the configuration
// exceeds one of its Limits.
var ErrLimit = errors.New("limit exceeded")

// Pos is a place in a keepalived file: the file's name as it was opened
// (or included) and a 1-based line.
type Pos struct {
	File string
	Line int
}

// String formats the position as file:line.
func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// Node is one keyword of a keepalived configuration with its arguments
// and, when it opens one, its block.
type Node struct {
	// Name is the keyword, the first word of the statement.
	Name string
	// Args are the words after it, quotes removed.
	Args []string
	// Pos is where the keyword is.
	Pos Pos
	// HasBlock is true when a '{' followed the keyword.
	HasBlock bool
	// Children are the statements of the block.
	Children []*Node
}

// Source is what Parse reads files through. OSSource reads the local file
// system; tests give their own.
type Source interface {
	// ReadFile returns the content of the file name, refusing one larger
	// than max bytes with an error wrapping ErrLimit.
	ReadFile(name string, max int64) ([]byte, error)
	// Glob returns the names of the regular files matching pattern (a
	// shell pattern, brace expressions included), sorted.
	Glob(pattern string) ([]string, error)
}

// File is a parsed keepalived configuration.
type File struct {
	// Nodes are the top-level statements, every included file's in place.
	Nodes []*Node
	// Issues are what the parser left out or could not read, in the
	// order met.
	Issues []Issue
	// Files are the names of the files read, the main one first.
	Files []string
}

// Parse reads the keepalived configuration name (its content is data when
// data is not nil, as for standard input) and the files it includes
// through src. A problem confined to a line or an include is an Issue of
// the result; the error is for a configuration that cannot be read at all
// or that exceeds lim.
func Parse(src Source, name string, data []byte, lim Limits) (*File, error) {
	p := &parser{src: src, lim: lim.withDefaults(), out: &File{}}
	if data == nil {
		var err error
		data, err = src.ReadFile(name, p.lim.FileSize)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
	} else if int64(len(data)) > p.lim.FileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", name, p.lim.FileSize, ErrLimit)
	}
	if err := p.file(name, data, 0); err != nil {
		return nil, err
	}
	nodes, err := p.tree()
	if err != nil {
		return nil, err
	}
	p.out.Nodes = nodes
	return p.out, nil
}

// word is one word of the flattened statement stream: a keyword's words
// end at the end of a statement (eos), braces are words of their own.
type stmt struct {
	words []string
	pos   Pos
}

type parser struct {
	src   Source
	lim   Limits
	out   *File
	total int64
	words int
	stmts []stmt
}

func (p *parser) issue(pos Pos, kind IssueKind, keyword, format string, args ...any) {
	p.out.Issues = append(p.out.Issues, Issue{Pos: pos, Kind: kind, Keyword: keyword, Msg: fmt.Sprintf(format, args...)})
}

// file reads one file's lines into p.stmts, following includes.
func (p *parser) file(name string, data []byte, depth int) error {
	if len(p.out.Files) >= p.lim.Files {
		return fmt.Errorf("%s: more than %d files: %w", name, p.lim.Files, ErrLimit)
	}
	p.total += int64(len(data))
	if p.total > p.lim.TotalSize {
		return fmt.Errorf("%s: the files together exceed %d bytes: %w", name, p.lim.TotalSize, ErrLimit)
	}
	p.out.Files = append(p.out.Files, name)
	lines := strings.Split(string(data), "\n")
	for i, raw := range lines {
		pos := Pos{File: name, Line: i + 1}
		raw = strings.TrimRight(raw, "\r")
		if len(raw) > MaxLineLength {
			p.issue(pos, Unsupported, "", "line longer than %d bytes: keepalived ignores it, and so does this import", MaxLineLength)
			continue
		}
		if strings.IndexByte(raw, 0) >= 0 {
			p.issue(pos, Unsupported, "", "line holds a NUL byte: keepalived ignores it, and so does this import")
			continue
		}
		line, quoteOK := decomment(raw)
		if !quoteOK {
			p.issue(pos, Unsupported, "", "unterminated double quote")
		}
		if line == "" {
			continue
		}
		switch {
		case line[0] == '@':
			p.issue(pos, Unsupported, "", "conditional configuration (@config_id) is not supported: line left out")
			continue
		case line[0] == '$':
			p.issue(pos, Unsupported, "", "parameter definitions ($NAME=...) are not supported: line left out")
			continue
		case strings.HasPrefix(line, "~SEQ") || strings.HasPrefix(line, "~LST"):
			p.issue(pos, Unsupported, "", "sequence and list blocks (~SEQ, ~LST) are not supported: line left out")
			continue
		}
		if pattern, ok := includeOf(line); ok {
			if err := p.include(pos, pattern, depth); err != nil {
				return err
			}
			continue
		}
		if strings.Contains(line, "$") {
			p.issue(pos, Unsupported, "", "parameter substitution ($NAME) is not supported: the words are read as written")
		}
		if err := p.split(pos, line); err != nil {
			return err
		}
	}
	return nil
}

// decomment removes a comment ('#' or '!' outside double quotes; a
// backslash escapes them outside quotes) and the surrounding white space.
// It reports false when a double quote is left open.
func decomment(s string) (string, bool) {
	var b strings.Builder
	quote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			quote = !quote
		case c == '\\' && i+1 < len(s):
			if !quote && (s[i+1] == '#' || s[i+1] == '!') {
				b.WriteByte(s[i+1])
			} else {
				b.WriteByte(c)
				b.WriteByte(s[i+1])
			}
			i++
			continue
		case !quote && (c == '#' || c == '!'):
			return strings.TrimSpace(b.String()), true
		}
		b.WriteByte(c)
	}
	return strings.Trim(b.String(), " \t\f\v"), !quote
}

// includeOf reports whether line is an include directive and returns its
// pattern (the rest of the line).
func includeOf(line string) (string, bool) {
	if !strings.HasPrefix(line, "include") || len(line) < 9 {
		return "", false
	}
	rest := line[7:]
	if isSpace(rest[0]) {
		return strings.TrimSpace(rest), true
	}
	if strings.IndexByte("rmwba", rest[0]) >= 0 && isSpace(rest[1]) {
		return strings.TrimSpace(rest[1:]), true
	}
	return "", false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r' }

// include reads the files matching pattern, relative to the including
// file's directory, as keepalived does (it changes to that directory).
func (p *parser) include(pos Pos, pattern string, depth int) error {
	if depth+1 > p.lim.IncludeDepth {
		return fmt.Errorf("%s: includes nested more than %d deep: %w", pos, p.lim.IncludeDepth, ErrLimit)
	}
	if len(pattern) >= 2 && pattern[0] == '"' && pattern[len(pattern)-1] == '"' {
		pattern = pattern[1 : len(pattern)-1]
	}
	if pattern == "" {
		p.issue(pos, Unsupported, "include", "include without a file name")
		return nil
	}
	if !filepath.IsAbs(pattern) && pos.File != StdinName {
		pattern = filepath.Join(filepath.Dir(pos.File), pattern)
	}
	names, err := p.src.Glob(pattern)
	if errors.Is(err, ErrLimit) {
		return fmt.Errorf("%s: include %s: %w", pos, pattern, err)
	}
	if err != nil {
		p.issue(pos, Unsupported, "include", "%s: %v", pattern, err)
		return nil
	}
	if len(names) == 0 {
		p.issue(pos, Unsupported, "include", "%s: no file matches", pattern)
		return nil
	}
	for _, name := range names {
		data, err := p.src.ReadFile(name, p.lim.FileSize)
		if errors.Is(err, ErrLimit) {
			return fmt.Errorf("%s: include %s: %w", pos, name, err)
		}
		if err != nil {
			p.issue(pos, Unsupported, "include", "%s: %v", name, err)
			continue
		}
		if err := p.file(name, data, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// split cuts a line into statements at the braces outside double quotes
// and into words.
func (p *parser) split(pos Pos, line string) error {
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			p.stmts = append(p.stmts, stmt{words: cur, pos: pos})
			cur = nil
		}
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r':
			i++
			continue
		case c == '{' || c == '}':
			flush()
			cur = []string{string(c)}
			flush()
			i++
		case c == '"':
			end := strings.IndexByte(line[i+1:], '"')
			if end < 0 {
				cur = append(cur, line[i+1:])
				i = len(line)
			} else {
				cur = append(cur, line[i+1:i+1+end])
				i += end + 2
			}
		default:
			j := i
			for j < len(line) && !strings.ContainsRune(" \t\f\v\r\"{}", rune(line[j])) {
				j++
			}
			cur = append(cur, line[i:j])
			i = j
		}
		p.words++
		if p.words > p.lim.Words {
			return fmt.Errorf("%s: more than %d words: %w", pos, p.lim.Words, ErrLimit)
		}
	}
	flush()
	return nil
}

// tree builds the nested statements from the flat stream: a '{' opens the
// block of the statement before it, '}' closes it.
func (p *parser) tree() ([]*Node, error) {
	var root []*Node
	stack := []*Node{}
	var last *Node
	add := func(n *Node) {
		if len(stack) == 0 {
			root = append(root, n)
		} else {
			top := stack[len(stack)-1]
			top.Children = append(top.Children, n)
		}
	}
	for _, s := range p.stmts {
		switch s.words[0] {
		case "{":
			if last == nil || last.HasBlock {
				p.issue(s.pos, Unsupported, "", "'{' without a keyword before it: block left out")
				last = &Node{Name: "{", Pos: s.pos}
			}
			if len(stack) >= p.lim.BlockDepth {
				return nil, fmt.Errorf("%s: blocks nested more than %d deep: %w", s.pos, p.lim.BlockDepth, ErrLimit)
			}
			last.HasBlock = true
			stack = append(stack, last)
			last = nil
		case "}":
			if len(stack) == 0 {
				p.issue(s.pos, Unsupported, "", "extra '}' ignored")
				continue
			}
			stack = stack[:len(stack)-1]
			last = nil
		default:
			n := &Node{Name: s.words[0], Args: s.words[1:], Pos: s.pos}
			add(n)
			last = n
		}
	}
	for i := len(stack) - 1; i >= 0; i-- {
		p.issue(stack[i].Pos, Unsupported, stack[i].Name, "block not closed: missing '}'")
	}
	return root, nil
}

// StdinName is the name Parse gives standard input in positions; includes
// from it are relative to the working directory, as keepalived's would be.
const StdinName = "<stdin>"

// OSSource reads the local file system.
type OSSource struct{}

// ReadFile reads a regular file of at most max bytes.
func (OSSource) ReadFile(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", name, max, ErrLimit)
	}
	return data, nil
}

// Glob expands brace expressions, then matches each pattern with
// filepath.Glob. Like keepalived, it keeps regular files that are not
// executable.
func (OSSource) Glob(pattern string) ([]string, error) {
	pats, err := expandBraces(pattern, maxBraceExpansions)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	for _, pat := range pats {
		names, err := filepath.Glob(pat)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", pat, err)
		}
		for _, n := range names {
			st, err := os.Stat(n)
			if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 != 0 || seen[n] {
				continue
			}
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// maxBraceExpansions bounds how many patterns one brace expression may
// become.
const maxBraceExpansions = 1024

// expandBraces expands csh-style brace expressions ("a{b,c}d" is "abd",
// "acd"), nested ones included, into at most max patterns.
func expandBraces(s string, max int) ([]string, error) {
	open := -1
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '{':
			if depth == 0 {
				open = i
			}
			depth++
		case '}':
			if depth == 0 {
				continue
			}
			depth--
			if depth > 0 {
				continue
			}
			var alts []string
			start, d := open+1, 0
			for j := open + 1; j < i; j++ {
				switch s[j] {
				case '\\':
					j++
				case '{':
					d++
				case '}':
					d--
				case ',':
					if d == 0 {
						alts = append(alts, s[start:j])
						start = j + 1
					}
				}
			}
			alts = append(alts, s[start:i])
			if len(alts) == 1 {
				// "{x}" is not an alternation: keep it literal.
				return []string{s}, nil
			}
			var out []string
			for _, a := range alts {
				more, err := expandBraces(s[:open]+a+s[i+1:], max)
				if err != nil {
					return nil, err
				}
				out = append(out, more...)
				if len(out) > max {
					return nil, fmt.Errorf("brace expression expands to more than %d patterns: %w", max, ErrLimit)
				}
			}
			return out, nil
		}
	}
	return []string{s}, nil
}

// MapSource is an in-memory Source for tests and fuzzing: file names to
// contents. Glob matches names with path.Match, after brace expansion.
type MapSource map[string][]byte

// ReadFile returns the named file's content.
func (m MapSource) ReadFile(name string, max int64) ([]byte, error) {
	data, ok := m[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes: %w", name, max, ErrLimit)
	}
	return data, nil
}

// Glob returns the sorted names that match pattern.
func (m MapSource) Glob(pattern string) ([]string, error) {
	pats, err := expandBraces(pattern, maxBraceExpansions)
	if err != nil {
		return nil, err
	}
	var out []string
	for name := range m {
		for _, pat := range pats {
			if ok, _ := filepath.Match(pat, name); ok {
				out = append(out, name)
				break
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
