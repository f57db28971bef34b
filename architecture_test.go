package otaport_test

import (
	"bufio"
	"errors"
	"fmt"
	"go/build"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// module is this module's path; the table in docs/architecture.md names
// packages relative to it.
const module = "github.com/otaport/otaport"

// arrow is one row of the table: the packages a pattern's non-test files
// may import, and what its tests may import besides.
type arrow struct {
	pattern string
	prod    []string
	test    []string
	stdOnly bool // "standard library only": no import outside it at all
	line    int
}

// readArrows parses the "Packages and arrows" table of docs/architecture.md,
// the one place the allowed imports are written down.
func readArrows(t *testing.T, file string) []arrow {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	code := regexp.MustCompile("`([^`]+)`")
	var rows []arrow
	in := false
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Packages and arrows"
			continue
		case !in || !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			t.Fatalf("%s:%d: a row of the arrows table has %d cells, want 4 (package, owns, may import, tests may also import)", file, n, len(cells))
		}
		pat := code.FindStringSubmatch(cells[0])
		r := arrow{pattern: pat[1], line: n, stdOnly: strings.Contains(cells[2], "standard library only")}
		for _, m := range code.FindAllStringSubmatch(cells[2], -1) {
			r.prod = append(r.prod, m[1])
		}
		for _, m := range code.FindAllStringSubmatch(cells[3], -1) {
			r.test = append(r.test, m[1])
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no rows under \"## Packages and arrows\"", file)
	}
	return rows
}

// match reports whether the package p (relative to the module) matches a
// pattern: exact, "a/..." for a and everything under it, "*" for one
// element.
func match(pattern, p string) bool {
	if rest, ok := strings.CutSuffix(pattern, "/..."); ok {
		return match(rest, p) || matchPrefix(rest, p)
	}
	ok, err := path.Match(pattern, p)
	return err == nil && ok
}

func matchPrefix(pattern, p string) bool {
	parts := strings.Split(p, "/")
	n := strings.Count(pattern, "/") + 1
	return len(parts) > n && match(pattern, strings.Join(parts[:n], "/"))
}

// rowOf is the row that governs p: the longest matching pattern.
func rowOf(rows []arrow, p string) (arrow, bool) {
	var best arrow
	found := false
	for _, r := range rows {
		if match(r.pattern, p) && (!found || len(r.pattern) > len(best.pattern)) {
			best, found = r, true
		}
	}
	return best, found
}

type pkg struct {
	rel            string // path relative to the module
	name           string
	imports, tests []string
}

// loadPackages reads every package of the module from its files, as the go
// tool would build it on this system (test files included).
func loadPackages(t *testing.T) []pkg {
	t.Helper()
	var pkgs []pkg
	err := filepath.WalkDir(".", func(dir string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		base := d.Name()
		if dir != "." && (base == "testdata" || strings.HasPrefix(base, ".") || strings.HasPrefix(base, "_") || base == "node_modules") {
			return filepath.SkipDir
		}
		bp, err := build.Default.ImportDir(dir, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		rel := filepath.ToSlash(dir)
		p := pkg{rel: rel, name: bp.Name, imports: bp.Imports}
		p.tests = append(append(p.tests, bp.TestImports...), bp.XTestImports...)
		pkgs = append(pkgs, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func ours(imp string) (string, bool) {
	return strings.CutPrefix(imp, module+"/")
}

func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// isTestSupport: a package whose name ends in "test" (plugintest), which
// only tests and other test support may import.
func isTestSupport(rel string) bool {
	return strings.HasSuffix(path.Base(rel), "test")
}

// TestArchitecture_ImportsFollowTheArrows checks every import of every
// package of the module against docs/architecture.md.
func TestArchitecture_ImportsFollowTheArrows(t *testing.T) {
	const doc = "docs/architecture.md"
	rows := readArrows(t, doc)
	pkgs := loadPackages(t)
	used := map[string]bool{}
	allowed := func(list []string, imp string) bool {
		return slices.ContainsFunc(list, func(pat string) bool { return match(pat, imp) })
	}
	for _, p := range pkgs {
		if p.rel == "." {
			continue // this test
		}
		r, ok := rowOf(rows, p.rel)
		if !ok {
			t.Errorf("%s: package %s is in no row of the arrows table: add one (what it owns, what it may import)", doc, p.rel)
			continue
		}
		used[r.pattern] = true
		support := isTestSupport(p.rel)
		for _, imp := range p.imports {
			if imp == "testing" && !support {
				t.Errorf("%s imports testing outside a _test.go file: test helpers belong in a package whose name ends in \"test\"", p.rel)
			}
			if r.stdOnly && !isStd(imp) {
				t.Errorf("%s imports %s, but %s:%d says %s imports the standard library only", p.rel, imp, doc, r.line, r.pattern)
			}
			rel, mine := ours(imp)
			if !mine {
				continue
			}
			if isTestSupport(rel) && !support {
				t.Errorf("%s imports the test support %s outside a _test.go file", p.rel, rel)
			}
			if !allowed(r.prod, rel) {
				t.Errorf("%s imports %s: not allowed by %s:%d (row %s); change the code or, if the arrow is right, the table", p.rel, rel, doc, r.line, r.pattern)
			}
		}
		for _, imp := range p.tests {
			rel, mine := ours(imp)
			if !mine || rel == p.rel {
				continue
			}
			if !allowed(r.prod, rel) && !allowed(r.test, rel) {
				t.Errorf("tests of %s import %s: not allowed by %s:%d (row %s); change the test or, if the arrow is right, the table", p.rel, rel, doc, r.line, r.pattern)
			}
		}
	}
	var stale []string
	for _, r := range rows {
		if !used[r.pattern] {
			stale = append(stale, fmt.Sprintf("%s:%d: %s", doc, r.line, r.pattern))
		}
	}
	sort.Strings(stale)
	for _, s := range stale {
		t.Errorf("%s matches no package: remove the row or fix its pattern", s)
	}
}

// TestArchitecture_Match pins the pattern rules the table relies on.
func TestArchitecture_Match(t *testing.T) {
	for _, c := range []struct {
		pattern, p string
		want       bool
	}{
		{"core/hal", "core/hal", true},
		{"core/hal", "core/hal/plugin", false},
		{"core/...", "core", true},
		{"core/...", "core/hal/plugin", true},
		{"core/...", "corex/hal", false},
		{"ports/*", "ports/esp32-devkitc", true},
		{"ports/*", "ports/esp32-devkitc/cmd/x", false},
		{"ports/*/cmd/*", "ports/esp32-devkitc/cmd/otaport-esp32-devkitc", true},
		{"fleet/...", "fleet", true},
		{"fleet/...", "fleetx", false},
	} {
		if got := match(c.pattern, c.p); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.p, got, c.want)
		}
	}
	rows := []arrow{{pattern: "ports/*"}, {pattern: "ports/all"}, {pattern: "ports/*/cmd/*"}}
	for p, want := range map[string]string{"ports/all": "ports/all", "ports/x": "ports/*", "ports/x/cmd/y": "ports/*/cmd/*"} {
		if r, _ := rowOf(rows, p); r.pattern != want {
			t.Errorf("rowOf(%q) = %q, want %q", p, r.pattern, want)
		}
	}
}
