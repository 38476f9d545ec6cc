package kaimport

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// flat renders a node tree as one line per statement, indented by depth.
func flat(nodes []*Node, depth int, b *strings.Builder) {
	for _, n := range nodes {
		b.WriteString(strings.Repeat("  ", depth))
		b.WriteString(n.Name)
		for _, a := range n.Args {
			b.WriteString(" [" + a + "]")
		}
		if n.HasBlock {
			b.WriteString(" {")
		}
		b.WriteByte('\n')
		flat(n.Children, depth+1, b)
	}
}

func TestParseGrammar(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		issues         []string
	}{
		{"comments", "a 1 # c\nb 2 ! c\n! whole line\n# too\n", "a [1]\nb [2]\n", nil},
		{"quoted comment chars", `a "x # y ! z" w` + "\n", "a [x # y ! z] [w]\n", nil},
		{"escaped comment chars", `a x\#y` + "\n", "a [x#y]\n", nil},
		{"quote ends a word", `a b"c d"e` + "\n", "a [b] [c d] [e]\n", nil},
		{"braces split lines", "vs 1 { a 1 } b {\nc\n}\n", "vs [1] {\n  a [1]\nb {\n  c\n", nil},
		{"brace on next line", "vs 1\n{\n a\n}\n", "vs [1] {\n  a\n", nil},
		{"quoted brace", `a "{" "}"` + "\n", "a [{] [}]\n", nil},
		{"crlf", "a 1\r\nb 2\r\n", "a [1]\nb [2]\n", nil},
		{"conditional", "@lb1 a 1\n@^lb1 b 2\nc\n", "c\n", []string{"t.conf:1: unsupported", "t.conf:2: unsupported"}},
		{"definition", "$X=1\na $X\n", "a [$X]\n", []string{"t.conf:1: unsupported", "t.conf:2: unsupported"}},
		{"sequence", "~SEQ(i,1,3) a $i\nb\n", "b\n", []string{"t.conf:1: unsupported"}},
		{"extra brace", "a {\n}\n}\n", "a {\n", []string{"t.conf:3: unsupported: extra '}'"}},
		{"unclosed", "a {\nb\n", "a {\n  b\n", []string{"t.conf:1: unsupported: a: block not closed"}},
		{"long line", "a " + strings.Repeat("x", MaxLineLength) + "\nb\n", "b\n", []string{"t.conf:1: unsupported: line longer"}},
		{"unterminated quote", "a \"b c\n", "a [b c]\n", []string{"t.conf:1: unsupported: unterminated"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse(MapSource{"t.conf": []byte(tc.in)}, "t.conf", nil, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			flat(f.Nodes, 0, &b)
			if b.String() != tc.want {
				t.Errorf("tree:\n%s\nwant:\n%s", b.String(), tc.want)
			}
			if len(f.Issues) != len(tc.issues) {
				t.Fatalf("issues %v, want %d", f.Issues, len(tc.issues))
			}
			for i, want := range tc.issues {
				if !strings.HasPrefix(f.Issues[i].String(), want) {
					t.Errorf("issue %q, want prefix %q", f.Issues[i], want)
				}
			}
		})
	}
}

// TestIncludeRelativeToIncluder follows keepalived: a relative pattern is
// relative to the directory of the file that includes it; globs and
// brace expressions expand, sorted; executable files are skipped.
func TestIncludeRelativeToIncluder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("main.conf", "top {\ninclude conf.d/*.conf\n}\nincludeb {x,y}.conf\n", 0o644)
	write("conf.d/b.conf", "b\ninclude ../sub/c.conf\n", 0o644)
	write("conf.d/a.conf", "a\n", 0o644)
	write("conf.d/z.conf", "exec\n", 0o755)
	write("sub/c.conf", "c\n", 0o644)
	write("x.conf", "x\n", 0o644)
	write("y.conf", "y\n", 0o644)
	f, err := Parse(OSSource{}, filepath.Join(dir, "main.conf"), nil, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	flat(f.Nodes, 0, &b)
	if want := "top {\n  a\n  b\n  c\nx\ny\n"; b.String() != want {
		t.Errorf("tree:\n%s\nwant:\n%s", b.String(), want)
	}
	if len(f.Issues) != 0 {
		t.Errorf("issues: %v", f.Issues)
	}
	if f.Nodes[0].Children[2].Pos != (Pos{File: filepath.Join(dir, "sub/c.conf"), Line: 1}) {
		t.Errorf("c's position: %v", f.Nodes[0].Children[2].Pos)
	}
}

func TestIncludeMissingIsReported(t *testing.T) {
	f, err := Parse(MapSource{"k.conf": []byte("include nope/*.conf\na\n")}, "k.conf", nil, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Issues) != 1 || !strings.Contains(f.Issues[0].String(), "k.conf:1: unsupported: include: nope/*.conf: no file matches") {
		t.Fatalf("issues: %v", f.Issues)
	}
}

func TestLimits(t *testing.T) {
	loop := MapSource{"k.conf": []byte("include k.conf\n")}
	for _, tc := range []struct {
		name string
		src  MapSource
		lim  Limits
	}{
		{"include loop", loop, Limits{}},
		{"files", MapSource{"k.conf": []byte("include a*\ninclude a*\n"), "a1": []byte("x\n"), "a2": []byte("x\n")}, Limits{Files: 3}},
		{"file size", MapSource{"k.conf": []byte("include a\n"), "a": []byte(strings.Repeat("x\n", 100))}, Limits{FileSize: 50}},
		{"total size", MapSource{"k.conf": []byte("include a*\n"), "a1": []byte("xxxxxxxxxx\n"), "a2": []byte("xxxxxxxxxx\n")}, Limits{TotalSize: 30}},
		{"words", MapSource{"k.conf": []byte("a b c d e f\n")}, Limits{Words: 5}},
		{"block depth", MapSource{"k.conf": []byte(strings.Repeat("a {\n", 40))}, Limits{}},
		{"brace expansion", MapSource{"k.conf": []byte("include " + strings.Repeat("{a,b}", 11) + "\n")}, Limits{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.src, "k.conf", nil, tc.lim)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("error %v, want ErrLimit", err)
			}
		})
	}
}

func TestSplitScript(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"/bin/x a b", []string{"/bin/x", "a", "b"}, true},
		{`/bin/x 'a b' "c d"`, []string{"/bin/x", "a b", "c d"}, true},
		{`/bin/x a\x20b \101 \t`, []string{"/bin/x", "a b", "A", "\t"}, true},
		{`/bin/x 'open`, nil, false},
		{`/bin/x \`, nil, false},
	} {
		got, ok := splitScript(tc.in)
		if ok != tc.ok || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitScript(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestExpandBraces(t *testing.T) {
	got, err := expandBraces("/e/{a,b{1,2}}/{x}.conf", 100)
	want := []string{"/e/a/{x}.conf", "/e/b1/{x}.conf", "/e/b2/{x}.conf"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q, %v; want %q", got, err, want)
	}
}
