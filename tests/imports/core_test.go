// Package imports holds tests of the module's import graph that need the
// go command: what a package's tests pull in, which the compiler alone
// does not check.
package imports

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/otaport/otaport/"

// core is the part every port and the fleet build on, so it must build and
// test without them: no package of core, and no test of one, may depend on
// ports/ (the catalog) or fleet/ (the cloud side). Tests that need a
// board's layout use core/hal/haltest, tests that need a broker
// core/cloud/cloudtest, and the catalog-wide power-cut suite lives in
// tests/powercut.
func TestCore_TestsIncludedDependOnNoPortOrFleet(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./core/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// Every package the build of core's tests needs, and what each imports;
	// a test variant's path carries a suffix in brackets.
	importers := map[string][]string{}
	var deps []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, imports := f[0], f[1:]
		if len(imports) > 0 && strings.HasPrefix(imports[0], "[") {
			imports = imports[1:]
		}
		deps = append(deps, pkg)
		for _, imp := range imports {
			importers[imp] = append(importers[imp], strings.TrimPrefix(pkg, module))
		}
	}
	for _, pkg := range deps {
		if strings.HasPrefix(pkg, module+"ports/") || strings.HasPrefix(pkg, module+"fleet/") {
			t.Errorf("core's packages or tests depend on %s (imported by %v); use core/hal/haltest for a board's layout and core/cloud/cloudtest for a broker", strings.TrimPrefix(pkg, module), importers[pkg])
		}
	}
	if len(deps) < 10 {
		t.Fatalf("go list found %d packages for ./core/...: %q", len(deps), out)
	}
}
