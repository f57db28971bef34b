package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/otaport/otaport/portgen"
)

// TestModule_OutOfTreeCatalog covers a catalog that names a port living in
// its own Go module: otagen generates the in-tree board and leaves the other
// alone; the other, made with otagen --module from its own board.yaml in a
// directory of its own, passes its generated test there, builds into a
// plugin with go build, and passes otarun conformance as a process.
//
// The module builds offline: a replace directive points at this checkout,
// and otaport's go.sum covers the dependencies it shares.
func TestModule_OutOfTreeCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a port module and otarun with the go tool")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go tool on PATH")
	}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	catalogFile := filepath.Join("testdata", "catalog", "boards.yaml")
	tmp := t.TempDir()
	out := otagen(t, "-o", filepath.Join(tmp, "ports"), catalogFile)
	if !strings.Contains(out, "acme-myboard: in its own module example.com/acme/otaport-myboard, not generated here") {
		t.Errorf("otagen did not report the out-of-tree port:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(tmp, "ports", "acme-myboard")); err == nil {
		t.Error("otagen generated ports/acme-myboard, a port that lives in its own module")
	}
	if _, err := os.Stat(filepath.Join(tmp, "ports", "alpha-board", portgen.GeneratedFile)); err != nil {
		t.Errorf("the in-tree board was not generated: %v", err)
	}

	boards, err := portgen.ParseFile(catalogFile)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "bin")
	goIn(t, repo, "build", "-o", bin+string(filepath.Separator), "./cmd/otarun")
	tested := 0
	for _, b := range boards {
		if !b.OutOfTree() {
			continue
		}
		tested++
		t.Run(b.Name, func(t *testing.T) {
			boardFile := filepath.Join("testdata", "catalog", b.Name, "board.yaml")
			own, err := portgen.ParseFile(boardFile)
			if err != nil {
				t.Fatal(err)
			}
			if len(own) != 1 || own[0].Name != b.Name {
				t.Fatalf("%s describes %d boards, want the one the catalog calls %s", boardFile, len(own), b.Name)
			}
			dir := filepath.Join(tmp, b.Name)
			otagen(t, "--module", b.Module, "--replace", repo, "-o", dir, boardFile)
			sum, err := os.ReadFile(filepath.Join(repo, "go.sum"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
				t.Fatal(err)
			}
			goIn(t, dir, "test", "-count=1", "./...")
			goIn(t, dir, "build", "-o", bin+string(filepath.Separator), "./...")

			cmd := exec.Command(filepath.Join(bin, "otarun"), "conformance", "--plugin", filepath.Join(bin, portgen.PluginName(b.Name)))
			cmd.Dir = tmp
			got, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("otarun conformance: %v\n%s", err, got)
			}
			m := regexp.MustCompile(`(?m)^(\d+) passed, 0 failed$`).FindSubmatch(got)
			if m == nil || string(m[1]) == "0" {
				t.Fatalf("otarun conformance did not pass:\n%s", got)
			}

			// A second run rewrites nothing and keeps what the author owns.
			again := otagen(t, "--module", b.Module, "--replace", repo, "-o", dir, boardFile)
			if !strings.Contains(again, "wrote 0 files") || !strings.Contains(again, "kept driver.go, go.mod") {
				t.Errorf("second otagen --module run: %s", again)
			}
		})
	}
	if tested == 0 {
		t.Fatalf("%s names no port in its own module", catalogFile)
	}
}

// otagen runs the command in-process and returns its output; it fails the
// test on a non-zero status.
func otagen(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("otagen %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// goIn runs the go tool in dir, offline: every module comes from the local
// module cache or a replace directive.
func goIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
}
