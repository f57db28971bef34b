package otaport_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

const securityDoc = "docs/security.md"

// requiredThreats are the rows docs/security.md must have: Uptane's threat
// list and TUF's fast-forward, by the name each row starts with.
var requiredThreats = []string{
	"Eavesdrop", "Drop-request", "Slow retrieval", "Freeze", "Partial bundle", "Rollback",
	"Endless data", "Mix-and-match", "Arbitrary software", "Fast-forward",
}

var (
	// testRef is a test named in the table: `core/engine/TestHTTP_Faults`.
	testRef = regexp.MustCompile("^`([a-z0-9_.-]+(?:/[a-z0-9_.-]+)*)/(Test[A-Za-z0-9_]*)`$")
	// statusCell is the status column: the word, and for partly and
	// open what will close the rest.
	statusCell = regexp.MustCompile(`^(mitigated|partly|open)\b`)
	closedBy   = regexp.MustCompile(`\bitem \d+|\bno item\b`)
)

// testFuncs finds the test functions of a package directory: what
// "func TestX(t *testing.T)" declares at the top level of its _test.go
// files. A directory without test files has none.
type testFuncs struct {
	root string
	seen map[string]map[string]bool
}

func (f *testFuncs) has(pkg, name string) (bool, error) {
	if f.seen == nil {
		f.seen = map[string]map[string]bool{}
	}
	funcs, ok := f.seen[pkg]
	if !ok {
		files, err := filepath.Glob(filepath.Join(f.root, filepath.FromSlash(pkg), "*_test.go"))
		if err != nil {
			return false, err
		}
		funcs = map[string]bool{}
		fset := token.NewFileSet()
		for _, file := range files {
			parsed, err := parser.ParseFile(fset, file, nil, parser.SkipObjectResolution)
			if err != nil {
				return false, fmt.Errorf("parse %s: %w", file, err)
			}
			for _, d := range parsed.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Test") {
					funcs[fn.Name.Name] = true
				}
			}
		}
		f.seen[pkg] = funcs
	}
	return funcs[name], nil
}

// threatProblems checks the "## Threats" table of doc: every row has a
// status, a row not mitigated says which item closes it, a mitigated row
// names a test, every named test exists in the package it names, and
// every required threat has a row.
func threatProblems(doc string, has func(pkg, name string) (bool, error)) []string {
	_, section, ok := strings.Cut(doc, "\n## Threats\n")
	if !ok {
		return []string{"no \"## Threats\" section"}
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var problems []string
	rows := 0
	threats := map[string]bool{}
	for n, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| Threat |") {
			continue
		}
		rows++
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 4 {
			problems = append(problems, fmt.Sprintf("row %d: %d cells, want 4 (threat, what otaport does, status, tests): %.60s", n, len(cells), line))
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		threat, status, tests := strings.Trim(cells[0], "*"), cells[2], cells[3]
		name, _, _ := strings.Cut(threat, "**")
		threats[strings.TrimSpace(name)] = true
		word := statusCell.FindString(status)
		switch {
		case word == "":
			problems = append(problems, fmt.Sprintf("%s: status %q: want mitigated, partly (item N) or open (item N)", name, status))
		case word != "mitigated" && !closedBy.MatchString(status):
			problems = append(problems, fmt.Sprintf("%s: status %q names no item of the issue that closes it: write (item N), or (no item ...)", name, status))
		}
		var named int
		if tests != "—" {
			for ref := range strings.SplitSeq(tests, ",") {
				ref = strings.TrimSpace(ref)
				m := testRef.FindStringSubmatch(ref)
				if m == nil {
					problems = append(problems, fmt.Sprintf("%s: test %q: want `package/TestName`, the package relative to the module root", name, ref))
					continue
				}
				named++
				ok, err := has(m[1], m[2])
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("%s: %s: %v", name, ref, err))
				case !ok:
					problems = append(problems, fmt.Sprintf("%s: %s does not exist: no func %s in %s/*_test.go", name, ref, m[2], m[1]))
				}
			}
		}
		if word == "mitigated" && named == 0 {
			problems = append(problems, fmt.Sprintf("%s: mitigated, but no test proves it: name one, or mark it partly", name))
		}
	}
	if rows == 0 {
		problems = append(problems, "the threats table has no rows")
	}
	for _, t := range requiredThreats {
		if !threats[t] {
			problems = append(problems, fmt.Sprintf("no row for %s", t))
		}
	}
	return problems
}

// TestSecurityDoc_NamesRealTests keeps docs/security.md's threat table and
// the tests in step: each test it names exists, and each mitigated threat
// names one.
func TestSecurityDoc_NamesRealTests(t *testing.T) {
	doc, err := os.ReadFile(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	funcs := &testFuncs{root: "."}
	for _, p := range threatProblems(string(doc), funcs.has) {
		t.Errorf("%s: %s", securityDoc, p)
	}
}

// TestSecurityDoc_CheckFindsMistakes: the check above fails on the mistakes
// it is for, so its silence on the real page means something.
func TestSecurityDoc_CheckFindsMistakes(t *testing.T) {
	var rows []string
	for _, name := range requiredThreats {
		rows = append(rows, "| **"+name+"** | x | open (item 1) | — |")
	}
	page := func(extra string) string {
		return "# S\n\n## Threats\n\n| Threat | What | Status | Tests |\n|---|---|---|---|\n" + strings.Join(rows, "\n") + "\n" + extra + "\n## After\n"
	}
	funcs := &testFuncs{root: "."}
	cases := []struct {
		name, row, want string
	}{
		{"fine", "| **Extra** | x | mitigated | `core/engine/TestHTTP_Faults` |", ""},
		{"no such test", "| **Extra** | x | mitigated | `core/engine/TestHTTP_NoSuchTest` |", "does not exist"},
		{"test in another package", "| **Extra** | x | mitigated | `core/agent/TestHTTP_Faults` |", "does not exist"},
		{"no such package", "| **Extra** | x | mitigated | `core/nothing/TestHTTP_Faults` |", "does not exist"},
		{"mitigated without a test", "| **Extra** | x | mitigated | — |", "no test proves it"},
		{"no package", "| **Extra** | x | mitigated | `TestHTTP_Faults` |", "want `package/TestName`"},
		{"open without an item", "| **Extra** | x | open | — |", "names no item"},
		{"no status", "| **Extra** | x | fine | — |", "want mitigated, partly"},
		{"a cell missing", "| **Extra** | x | open (item 2) |", "3 cells"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(threatProblems(page(c.row), funcs.has), "\n")
			if c.want == "" && got != "" || !strings.Contains(got, c.want) {
				t.Errorf("problems %q, want %q", got, c.want)
			}
		})
	}
	if got := strings.Join(threatProblems("# S\n\n## Threats\n\n| **Rollback** | x | open (item 5) | — |\n", funcs.has), "\n"); !strings.Contains(got, "no row for Freeze") {
		t.Errorf("a table without the required threats: problems %q", got)
	}
}
