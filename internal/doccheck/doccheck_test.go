package doccheck_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPackageDocs(t *testing.T) {
	root := moduleRoot(t)
	undocumented, err := findUndocumented(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(undocumented) > 0 {
		t.Errorf("packages without a package doc comment (\"// Package x ...\" or \"// Command x ...\" above the package clause of one file, e.g. doc.go):\n\t%s",
			strings.Join(undocumented, "\n\t"))
	}
}

// TestFindUndocumented checks the checker on a made-up module.
func TestFindUndocumented(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"go.mod":                 "module example.com/m\n",
		"documented/a.go":        "// Package documented does things.\npackage documented\n",
		"documented/b.go":        "package documented\n",
		"cmd/tool/main.go":       "// Command tool does things.\npackage main\n",
		"cmd/bare/main.go":       "package main\n",
		"detached/a.go":          "// Copyright notice, not a doc comment.\n\npackage detached\n",
		"directive/a.go":         "//go:build linux\n\npackage directive\n",
		"testonly/a_test.go":     "package testonly\n",
		"testdoc/a.go":           "package testdoc\n",
		"testdoc/a_test.go":      "// Package testdoc is documented only in a test.\npackage testdoc\n",
		"empty/README":           "no Go here\n",
		"x/testdata/a.go":        "package a\n",
		"x/.hidden/a.go":         "package a\n",
		"x/_ignored/a.go":        "package a\n",
		"nested/go.mod":          "module example.com/nested\n",
		"nested/a.go":            "package nested\n",
		"parent/child/doc.go":    "// Package child is documented.\npackage child\n",
		"parent/parent.go":       "package parent\n",
		"block/doc.go":           "/*\nPackage block uses a block comment.\n*/\npackage block\n",
		"rootpkg/deep/er/doc.go": "// Package er is deep.\npackage er\n",
	}
	for name, contents := range files {
		path := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(contents), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	got, err := findUndocumented(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cmd/bare", "detached", "directive", "parent", "testdoc"}
	if !slices.Equal(got, want) {
		t.Errorf("findUndocumented = %q, want %q", got, want)
	}
}

// moduleRoot returns the directory of the go.mod governing the test's
// working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// findUndocumented returns, sorted and relative to root in slash form, the
// directories under root that hold non-test Go files none of which has a
// package doc comment. Like the go command, it skips directories named
// testdata or vendor or whose names begin with "." or "_", and nested
// modules.
func findUndocumented(root string) ([]string, error) {
	var undocumented []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if path != root && skipDir(path, d.Name()) {
			return filepath.SkipDir
		}
		isPkg, documented, err := hasDoc(path)
		if err != nil {
			return err
		}
		if isPkg && !documented {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			undocumented = append(undocumented, filepath.ToSlash(rel))
		}
		return nil
	})
	slices.Sort(undocumented)
	return undocumented, err
}

// skipDir reports whether the walk should skip the directory path, whose
// base name is name.
func skipDir(path, name string) bool {
	if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return true
	}
	_, err := os.Stat(filepath.Join(path, "go.mod"))
	return err == nil
}

// hasDoc reports whether dir holds a package (non-test Go files), and
// whether any of those files has a package doc comment.
func hasDoc(dir string) (isPkg, documented bool, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, false, err
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		isPkg = true
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return false, false, err
		}
		if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
			return true, true, nil
		}
	}
	return isPkg, false, nil
}
