package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readMan returns the roff source inside dir/dsrd.1.gz.
func readMan(t *testing.T, dir string) string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "dsrd.1.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header carries name %q and time %v: want neither, for reproducible packages", zr.Name, zr.ModTime)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestManPageHasEverySection(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir); err != nil {
		t.Fatal(err)
	}
	man := readMan(t, dir)
	wants := []string{
		".TH dsrd 1",
		".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH COMMANDS",
		".SH EXIT STATUS", ".SH FILES", ".SH EXAMPLES", ".SH SEE ALSO",
		"/etc/dsrd/director.yaml", "/run/dsrd/dsrd.sock",
	}
	for _, cmd := range []string{"director", "witness", "realserver", "config", "status", "version"} {
		wants = append(wants, "\n.SH "+cmd+"\n") // urfave/cli gives each command a heading
	}
	for _, w := range wants {
		if !strings.Contains(man, w) {
			t.Errorf("man page lacks %q", w)
		}
	}
	// The trailer must come after the generated commands, where man pages
	// keep FILES and SEE ALSO.
	if strings.Index(man, ".SH FILES") < strings.Index(man, ".SH COMMANDS") {
		t.Error("FILES comes before COMMANDS")
	}
}

func TestFishCompletionNamesCommands(t *testing.T) {
	dir := t.TempDir()
	if err := generate(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "dsrd.fish"))
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"director", "witness", "realserver", "config", "status", "version"} {
		if !bytes.Contains(b, []byte("-a '"+cmd+"'")) {
			t.Errorf("fish completion does not offer %q", cmd)
		}
	}
}

// TestGenerateIsReproducible checks that two runs write identical bytes:
// the packages of one commit must not differ by when they were built.
func TestGenerateIsReproducible(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	if err := generate(a); err != nil {
		t.Fatal(err)
	}
	if err := generate(b); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"dsrd.1.gz", "dsrd.fish"} {
		x, err := os.ReadFile(filepath.Join(a, name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", name)
		}
	}
}
