package all

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/portgen"
	"github.com/otaport/otaport/ports/portkit/porttest"
)

// portsRoot is ports/, seen from this package's directory.
const portsRoot = ".."

var catalogFile = filepath.Join("..", "..", "boards.yaml")

func catalog(t *testing.T) []*portgen.Board {
	t.Helper()
	boards, err := portgen.ParseFile(catalogFile)
	if err != nil {
		t.Fatalf("the catalog does not validate: %v", err)
	}
	return boards
}

// The registry, the port directories and the catalog must name the same
// boards: a board added to boards.yaml without `make generate`, or a port
// left behind after its board was removed, fails here.
func TestRegistry_MatchesDirsAndCatalog(t *testing.T) {
	var registry []string
	for _, e := range Catalog() {
		registry = append(registry, e.Name)
	}
	if !sort.StringsAreSorted(registry) {
		t.Errorf("registry not sorted: %v", registry)
	}
	dirs, err := portgen.PortDirs(portsRoot)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range catalog(t) {
		if !b.OutOfTree() { // a port in its own module has no directory here
			names = append(names, b.Name)
		}
	}
	sort.Strings(names)
	if !reflect.DeepEqual(registry, dirs) {
		t.Errorf("registry %v != ports/* directories %v; run make generate (and remove the ports of boards that left the catalog)", registry, dirs)
	}
	if !reflect.DeepEqual(dirs, names) {
		t.Errorf("ports/* directories %v != boards of boards.yaml %v; run make generate (and remove the ports of boards that left the catalog)", dirs, names)
	}
	for _, n := range names {
		if _, ok := Lookup(n); !ok {
			t.Errorf("Lookup(%q) found nothing", n)
		}
	}
	if _, ok := Lookup("no-such-board"); ok {
		t.Error("Lookup found a board that does not exist")
	}
}

// The committed ports must be what otagen produces from boards.yaml now: the
// test generates every board into a temporary directory and compares.
func TestPorts_UpToDate(t *testing.T) {
	boards := catalog(t)
	tmp := t.TempDir()
	var files []portgen.File
	var names []string
	for _, b := range boards {
		if b.OutOfTree() {
			continue
		}
		fs, err := portgen.GeneratePort(b)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
		names = append(names, b.Name)
	}
	reg, err := portgen.GenerateRegistry(names)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := portgen.GenerateShared()
	if err != nil {
		t.Fatal(err)
	}
	files = append(append(files, reg), shared...)
	if _, err := portgen.WriteFiles(tmp, files); err != nil {
		t.Fatal(err)
	}
	generated := map[string]bool{}
	for _, f := range files {
		generated[f.Path] = true
		committed, err := os.ReadFile(filepath.Join(portsRoot, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Errorf("ports/%s: %v; run make generate", f.Path, err)
			continue
		}
		if f.Once {
			continue // driver.go belongs to the port's author once it exists
		}
		want, err := os.ReadFile(filepath.Join(tmp, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(committed, want) {
			t.Errorf("ports/%s differs from what otagen produces from boards.yaml; run make generate", f.Path)
		}
	}
	// A file in a port's directory, or in the C port's, that otagen no
	// longer produces is stale.
	for _, dir := range append(names, portgen.SharedDir) {
		_ = filepath.WalkDir(filepath.Join(portsRoot, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(portsRoot, p)
			if rel = filepath.ToSlash(rel); !generated[rel] {
				t.Errorf("ports/%s is not produced by otagen any more; remove it", rel)
			}
			return nil
		})
	}
}

// TestConformance runs the conformance kit against every port of the
// catalog, in-process and over the plugin wire (gRPC), as each port's own
// test used to.
func TestConformance(t *testing.T) {
	for _, e := range Catalog() {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			porttest.Conformance(t, e.Name, e.Layout())
		})
	}
}

// Every entry of the registry builds a working port over a fresh flash.
func TestCatalog_New(t *testing.T) {
	for _, e := range Catalog() {
		t.Run(e.Name, func(t *testing.T) {
			l := e.Layout()
			if l.Board != e.Name {
				t.Fatalf("Layout().Board = %q, want %q", l.Board, e.Name)
			}
			dev, err := flash.NewMemory(l.Flash)
			if err != nil {
				t.Fatal(err)
			}
			p, err := e.New(dev)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			info, err := p.Describe(context.Background())
			if err != nil {
				t.Fatalf("Describe: %v", err)
			}
			if !reflect.DeepEqual(info.Layout, l) {
				t.Errorf("Describe().Layout = %+v, want %+v", info.Layout, l)
			}
			if c, ok := p.(interface{ Close() error }); ok {
				if err := c.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
}

// harnessLimit bounds the flash the C harness simulates in RAM.
const harnessLimit = 64 << 20

// Every committed C port compiles without a warning and, where its flash
// fits in RAM, passes the harness that runs it over a strict RAM flash.
func TestCPorts_CompileAndRun(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not on PATH: the C ports are not compiled")
	}
	harness, err := filepath.Abs(filepath.Join("..", "..", "portgen", "testdata", "cport", "harness.c"))
	if err != nil {
		t.Fatal(err)
	}
	shared, err := filepath.Abs(filepath.Join(portsRoot, portgen.SharedDir))
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", shared}
	for _, e := range Catalog() {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			// The one shared ota_port.c, over this board's ota_board.h.
			dir, err := filepath.Abs(filepath.Join(portsRoot, e.Name, "c"))
			if err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(shared, "ota_port.c")
			args := append(append([]string{"-fsyntax-only", "-I", dir}, flags...), src)
			if out, err := gccIn(dir, gcc, args...); err != nil {
				t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if e.Layout().Flash.Size > harnessLimit {
				t.Skipf("flash of %d MiB: syntax checked, harness not run", e.Layout().Flash.Size>>20)
			}
			bin := filepath.Join(t.TempDir(), "harness")
			args = append(append([]string{"-O1", "-I", dir, "-o", bin}, flags...), src, harness)
			if out, err := gccIn(dir, gcc, args...); err != nil {
				t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			out, err := exec.Command(bin).CombinedOutput()
			if err != nil || !strings.HasSuffix(string(out), "ok\n") {
				t.Fatalf("harness: %v\n%s", err, out)
			}
		})
	}
}

func gccIn(dir, gcc string, args ...string) ([]byte, error) {
	cmd := exec.Command(gcc, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}
