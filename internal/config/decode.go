package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

const (
	// MaxFileSize bounds a configuration file. The largest realistic
	// director file (thousands of services) is a few megabytes.
	MaxFileSize = 16 << 20

	// minAliasBudget is how many values alias and merge expansion may
	// produce in any file; a larger file may expand as many values as it
	// has nodes. Expansion is therefore linear in the input, so a
	// "billion laughs" file cannot blow up memory or time.
	minAliasBudget = 10000

	// maxDocuments bounds how many documents after the first are looked at
	// to tell an empty trailing document from a second configuration.
	maxDocuments = 100

	// extensionPrefix starts the top-level keys that are not configuration
	// and are ignored: a place to define anchors (x-check: &check ...),
	// as in Compose files.
	extensionPrefix = "x-"
)

// decoder walks a YAML node tree and fills a configuration value by
// reflection on its yaml struct tags, recording positions and collecting
// every error instead of stopping at the first.
type decoder struct {
	kind Kind
	errs *errorList
	pos  *positions

	// active holds the anchored nodes being expanded, and merging the
	// mappings being flattened, to refuse an alias or a merge that refers
	// to a value containing it.
	active  map[*yaml.Node]bool
	merging map[*yaml.Node]bool
	// reported holds the errors found under an alias, by position and
	// message, to report each once.
	reported map[string]bool
	// fields caches fieldsOf per struct type.
	fields map[reflect.Type][]field
	// aliasDepth > 0 while walking a value reached through an alias or a
	// merge; expanded counts the values walked so, up to budget.
	aliasDepth int
	outer      *yaml.Node // the outermost alias (or merge) being expanded
	expanded   int
	budget     int
	exhausted  bool
}

// decodeInto decodes root, the top-level mapping, into out, a pointer to
// one of the configuration structs.
func decodeInto(root *yaml.Node, kind Kind, errs *errorList, out any) *positions {
	d := &decoder{
		kind:     kind,
		errs:     errs,
		pos:      newPositions(),
		active:   make(map[*yaml.Node]bool),
		merging:  make(map[*yaml.Node]bool),
		fields:   make(map[reflect.Type][]field),
		reported: make(map[string]bool),
		budget:   max(minAliasBudget, countNodes(root)),
	}
	d.value(root, "", reflect.ValueOf(out).Elem())
	return d.pos
}

// countNodes counts the nodes of a tree, not following aliases.
func countNodes(root *yaml.Node) int {
	n := 0
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		stack = append(stack, x.Content...)
	}
	return n
}

// report records msg about the value at path, written at p. Text reached
// through several aliases is reported once, for its first use: the same
// mistake is not worth one line per use.
func (d *decoder) report(p pos, path, msg string) {
	if d.aliasDepth > 0 {
		k := fmt.Sprintf("%d:%d:%s", p.line, p.col, msg)
		if d.reported[k] {
			return
		}
		d.reported[k] = true
	}
	d.errs.add(p, prefix(path)+msg)
}

// fail records an error about the value at path and marks it bad.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.report(posOf(n), path, fmt.Sprintf(format, args...))
	d.pos.bad[path] = true
}

// expect records that n is not the kind of value path wants.
func (d *decoder) expect(n *yaml.Node, path, want string) {
	d.fail(n, path, "expected %s, got %s", want, describe(n))
}

// enter follows n when it is an alias. It returns the node to decode and a
// function to call when done with it; ok is false when the alias must not
// be expanded (a cycle, or the expansion budget is spent).
func (d *decoder) enter(n *yaml.Node, path string) (target *yaml.Node, leave func(), ok bool) {
	if n.Kind != yaml.AliasNode {
		return n, func() {}, true
	}
	if d.exhausted {
		return nil, nil, false
	}
	t := n.Alias
	if t == nil {
		d.fail(n, path, "alias *%s refers to no anchor", n.Value)
		return nil, nil, false
	}
	if d.active[t] {
		d.fail(n, path, "alias *%s refers to a value that contains it", n.Value)
		return nil, nil, false
	}
	d.active[t] = true
	d.enterAlias(n)
	return t, func() {
		delete(d.active, t)
		d.leaveAlias()
	}, true
}

// enterAlias and leaveAlias bracket the walk of a value reached through
// the alias or merge key n.
func (d *decoder) enterAlias(n *yaml.Node) {
	if d.aliasDepth == 0 {
		d.outer = n
	}
	d.aliasDepth++
}

func (d *decoder) leaveAlias() {
	d.aliasDepth--
	if d.aliasDepth == 0 {
		d.outer = nil
	}
}

// spend counts one value walked under an alias against the budget.
func (d *decoder) spend(n *yaml.Node) bool {
	if d.aliasDepth == 0 {
		return true
	}
	if d.exhausted {
		return false
	}
	d.expanded++
	if d.expanded > d.budget {
		at := n
		if d.outer != nil {
			at = d.outer
		}
		d.errs.addf(posOf(at), "aliases and merges expand to more than %d values: refusing to expand further", d.budget)
		d.exhausted = true
		d.pos.incomplete = true
		return false
	}
	return true
}

// value decodes n into v, the value at path.
func (d *decoder) value(n *yaml.Node, path string, v reflect.Value) {
	if _, ok := d.pos.vals[path]; !ok {
		d.pos.vals[path] = posOf(n)
	}
	n, leave, ok := d.enter(n, path)
	if !ok {
		return
	}
	defer leave()
	if !d.spend(n) {
		return
	}
	if isNull(n) {
		return
	}
	d.pos.set[path] = true
	if !d.knownTag(n, path) {
		return
	}
	d.decode(n, path, v)
}

// knownTag refuses explicit tags other than YAML's core ones.
func (d *decoder) knownTag(n *yaml.Node, path string) bool {
	switch n.Kind {
	case yaml.MappingNode:
		if n.Tag == "" || n.Tag == "!!map" {
			return true
		}
	case yaml.SequenceNode:
		if n.Tag == "" || n.Tag == "!!seq" {
			return true
		}
	case yaml.ScalarNode:
		switch n.Tag {
		case "", "!!str", "!!int", "!!float", "!!bool", "!!null", "!!timestamp":
			return true
		}
	default:
		d.expect(n, path, "a value")
		return false
	}
	d.fail(n, path, "unsupported tag %q", n.Tag)
	return false
}

// decode decodes a non-null node n into v by v's type. An empty string
// for an address is the zero address, as a marshalled zero value is
// written; validation then says when one is required.
func (d *decoder) decode(n *yaml.Node, path string, v reflect.Value) {
	switch p := v.Addr().Interface().(type) {
	case *netip.Addr:
		if s, ok := d.scalar(n, path, "an IP address"); ok && s != "" {
			a, err := parseAddr(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = a
		}
		return
	case *netip.AddrPort:
		if s, ok := d.scalar(n, path, "an ip:port address"); ok && s != "" {
			ap, err := parseAddrPort(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = ap
		}
		return
	case *Duration:
		if s, ok := d.scalar(n, path, "a duration such as 1.5s"); ok {
			if n.Tag == "!!bool" {
				d.expect(n, path, "a duration such as 1.5s")
				return
			}
			dur, err := parseDuration(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = dur
		}
		return
	case *ByteSize:
		if s, ok := d.scalar(n, path, "a size such as 256MiB"); ok {
			b, err := parseByteSize(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = b
		}
		return
	case *netip.Prefix:
		if s, ok := d.scalar(n, path, "a prefix such as 192.0.2.0/24"); ok && s != "" {
			pf, err := parsePrefix(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = pf
		}
		return
	case *Rate:
		if s, ok := d.scalar(n, path, "a rate such as 100/s"); ok {
			r, err := ParseRate(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = r
		}
		return
	case *Peer:
		if s, ok := d.scalar(n, path, "a peer written id@ip:port"); ok && s != "" {
			peer, err := ParsePeer(s)
			if err != nil {
				d.fail(n, path, "%v", err)
				return
			}
			*p = peer
		}
		return
	}

	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.decode(n, path, e.Elem())
		v.Set(e)
	case reflect.Struct:
		d.mapping(n, path, v)
	case reflect.Slice:
		d.sequence(n, path, v)
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
			d.expect(n, path, "true or false")
			return
		}
		v.SetBool(strings.EqualFold(n.Value, "true"))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		d.integer(n, path, v)
	default:
		// Only reachable through a change of the schema types, which the
		// tests decode completely.
		panic(fmt.Sprintf("config: cannot decode into %s at %s", v.Type(), path))
	}
}

// scalar returns the text of a scalar node, or records that path wanted one.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.expect(n, path, want)
		return "", false
	}
	return n.Value, true
}

// octalLike matches YAML 1.1 octals (0755): YAML reads them as octal, which
// an operator who wrote port: 0080 does not expect.
var octalLike = regexp.MustCompile(`^[-+]?0[0-9]+$`)

// integer decodes an integer scalar into v, checking v's range.
func (d *decoder) integer(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		d.expect(n, path, "an integer")
		return
	}
	text := strings.ReplaceAll(n.Value, "_", "")
	if octalLike.MatchString(text) {
		d.fail(n, path, "ambiguous number %s: write it without the leading zero (or 0o... for octal)", n.Value)
		return
	}
	lo, hi := intRange(v.Kind())
	x, err := strconv.ParseInt(text, 0, 64)
	switch {
	case err == nil:
		if (lo == 0 && x < 0) || (x < 0 && x < lo) || (x > 0 && uint64(x) > hi) {
			d.fail(n, path, "%s is out of range (%d to %d)", n.Value, lo, hi)
			return
		}
	case errors.Is(err, strconv.ErrRange):
		d.fail(n, path, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return
	default:
		d.expect(n, path, "an integer")
		return
	}
	if v.CanInt() {
		v.SetInt(x)
	} else {
		v.SetUint(uint64(x))
	}
}

// intRange returns the range of an integer kind.
func intRange(k reflect.Kind) (lo int64, hi uint64) {
	switch k {
	case reflect.Int8:
		return math.MinInt8, math.MaxInt8
	case reflect.Int16:
		return math.MinInt16, math.MaxInt16
	case reflect.Int32:
		return math.MinInt32, math.MaxInt32
	case reflect.Int, reflect.Int64:
		return math.MinInt64, math.MaxInt64
	case reflect.Uint8:
		return 0, math.MaxUint8
	case reflect.Uint16:
		return 0, math.MaxUint16
	case reflect.Uint32:
		return 0, math.MaxUint32
	default:
		// uint and uint64 values above MaxInt64 do not parse as int64 and
		// are reported out of range: no field needs them.
		return 0, math.MaxInt64
	}
}

// sequence decodes a list into the slice v.
func (d *decoder) sequence(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.SequenceNode {
		d.expect(n, path, "a list")
		return
	}
	if len(n.Content) == 0 {
		return // an empty list is a nil slice, as in Go
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, indexPath(path, i), s.Index(i))
	}
	v.Set(s)
}

// field is a struct field decoded from the mapping key name.
type field struct {
	name  string
	index int
}

// fieldsOf lists the yaml-tagged fields of a struct type in order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{name: name, index: i})
	}
	return fs
}

// entry is one key and value of a mapping, merges flattened.
type entry struct {
	key, val *yaml.Node
	name     string
	// merged entries come from a merge key (<<) and are decoded as if
	// through an alias, against the expansion budget.
	merged bool
}

// mapping decodes a mapping into the struct v, reporting unknown and
// duplicate keys.
func (d *decoder) mapping(n *yaml.Node, path string, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		d.expect(n, path, "a mapping")
		return
	}
	fields, ok := d.fields[v.Type()]
	if !ok {
		fields = fieldsOf(v.Type())
		d.fields[v.Type()] = fields
	}
	first := make(map[string]*yaml.Node)
	for _, e := range d.entries(n, path) {
		// Keys count against the expansion budget too: an aliased mapping
		// of unknown keys would otherwise multiply errors instead.
		if !d.spend(e.key) {
			return
		}
		if prev, dup := first[e.name]; dup {
			d.report(posOf(e.key), path, fmt.Sprintf("duplicate key %q (first at line %d)", e.name, posOf(prev).line))
			continue
		}
		first[e.name] = e.key
		if path == "" && strings.HasPrefix(e.name, extensionPrefix) {
			continue
		}
		i := -1
		for _, f := range fields {
			if f.name == e.name {
				i = f.index
				break
			}
		}
		if i < 0 {
			d.report(posOf(e.key), path, d.unknownKey(path, e.name, fields))
			continue
		}
		fp := joinPath(path, e.name)
		if e.merged {
			d.enterAlias(e.key)
		}
		d.value(e.val, fp, v.Field(i))
		if e.merged {
			d.leaveAlias()
		}
	}
}

// unknownKey words the error for an unknown key, with the closest known
// key when one is near.
func (d *decoder) unknownKey(path, name string, fields []field) string {
	msg := fmt.Sprintf("unknown key %q", name)
	known := make([]string, len(fields))
	for i, f := range fields {
		known[i] = f.name
	}
	if s := closest(name, known); s != "" {
		return msg + fmt.Sprintf(" (did you mean %q?)", s)
	}
	if path == "" {
		switch {
		case d.kind == KindWitness && (name == "vips" || name == "services" || name == "ipvs"):
			return msg + " (a witness has none: is this a director configuration?)"
		case d.kind == KindRealserver && (name == "node" || name == "cluster" || name == "services"):
			return msg + fmt.Sprintf(" (a realserver has no %s: is this a director or witness configuration?)", name)
		case d.kind != KindRealserver && (name == "interfaces" || name == "cleanup_on_exit" || name == "status_address"):
			return msg + " (is this a realserver configuration?)"
		}
	}
	return msg
}

// entries lists a mapping's keys and values. Merge keys (<<: *anchor, or a
// list of anchors) are flattened: explicit keys win over merged ones, and
// earlier merged mappings over later ones.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	if d.merging[n] {
		d.report(posOf(n), path, "merge refers to a mapping that contains it")
		d.pos.bad[path] = true
		return nil
	}
	d.merging[n] = true
	defer delete(d.merging, n)

	var out []entry
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			merges = append(merges, val)
			continue
		}
		name, ok := d.keyName(k, path)
		if !ok {
			continue
		}
		out = append(out, entry{key: k, val: val, name: name})
	}
	if len(merges) == 0 {
		return out
	}
	have := make(map[string]bool, len(out))
	for _, e := range out {
		have[e.name] = true
	}
	add := func(orig *yaml.Node) {
		m, leave, ok := d.enter(orig, path)
		if !ok {
			return
		}
		defer leave()
		if d.merging[m] {
			d.report(posOf(orig), path, "merge refers to a mapping that contains it")
			d.pos.bad[path] = true
			return
		}
		if m.Kind != yaml.MappingNode {
			d.report(posOf(m), path, "a merge (<<) takes a mapping or a list of mappings, got "+describe(m))
			d.pos.bad[path] = true
			return
		}
		for _, e := range d.entries(m, path) {
			d.enterAlias(orig)
			ok := d.spend(e.key)
			d.leaveAlias()
			if !ok {
				return
			}
			if !have[e.name] {
				have[e.name] = true
				e.merged = true
				out = append(out, e)
			}
		}
	}
	for _, m := range merges {
		if m.Kind == yaml.SequenceNode {
			for _, item := range m.Content {
				add(item)
			}
			continue
		}
		add(m)
	}
	return out
}

// keyName returns a mapping key's text; keys must be scalars.
func (d *decoder) keyName(k *yaml.Node, path string) (string, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		d.report(posOf(k), path, "a key must be a plain name, got "+describe(k))
		return "", false
	}
	return k.Value, true
}
