package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a configuration file, at the position of the
// offending key or value.
type Error struct {
	// File is the name the configuration was loaded under; it may be empty.
	File string
	// Line and Col are 1-based; both are 0 for an error that has no
	// position (from Validate on a value built in code).
	Line, Col int
	// Msg says what is wrong, lower-case, on one line.
	Msg string
}

// Error formats the error as file:line:col: message, leaving out the parts
// that are unknown.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", e.Line, e.Col)
	}
	if b.Len() > 0 {
		b.WriteString(" ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration file, sorted by
// position. It is the error type returned by the Parse, Load and Check
// functions for anything wrong with a file's content.
type Errors struct {
	List []Error
}

// Error returns one file:line:col: message per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, x := range e.List {
		lines[i] = x.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each Error, so that errors.As can find an Error too.
func (e *Errors) Unwrap() []error {
	errs := make([]error, len(e.List))
	for i, x := range e.List {
		errs[i] = x
	}
	return errs
}

// pos is a position in the YAML text, 1-based.
type pos struct{ line, col int }

// errorList collects errors while decoding and validating one file.
type errorList struct {
	file string
	list []Error
}

// add records msg at p. A message never spans lines: one error is one line.
func (l *errorList) add(p pos, msg string) {
	msg = strings.ReplaceAll(msg, "\r", `\r`)
	msg = strings.ReplaceAll(msg, "\n", `\n`)
	l.list = append(l.list, Error{File: l.file, Line: p.line, Col: p.col, Msg: msg})
}

// addf records a formatted message at p.
func (l *errorList) addf(p pos, format string, args ...any) {
	l.add(p, fmt.Sprintf(format, args...))
}

// err returns the collected errors sorted by position without duplicates
// (a value reached through several aliases is reported once), or nil.
func (l *errorList) err() error {
	if len(l.list) == 0 {
		return nil
	}
	list := make([]Error, len(l.list))
	copy(list, l.list)
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].Line != list[j].Line {
			return list[i].Line < list[j].Line
		}
		return list[i].Col < list[j].Col
	})
	out := list[:0]
	seen := make(map[Error]bool, len(list))
	for _, e := range list {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return &Errors{List: out}
}
