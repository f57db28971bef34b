package portgen

import (
	"bytes"
	"flag"
	goparser "go/parser"
	"go/token"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

const goldenDir = "testdata/golden"

func goldenBoards(t *testing.T) []*Board {
	t.Helper()
	boards, err := ParseFile(filepath.Join(goldenDir, "boards.yaml"))
	if err != nil {
		t.Fatalf("parse golden boards: %v", err)
	}
	if len(boards) < 4 || !boards[len(boards)-1].OutOfTree() {
		t.Fatalf("golden boards: got %d, want at least 3 and a module entry last", len(boards))
	}
	return boards
}

// goldenFiles is everything the generator writes for the golden boards: the
// ports and the registry.
func goldenFiles(t *testing.T, boards []*Board) []File {
	t.Helper()
	var all []File
	var names []string
	for _, b := range boards {
		if b.OutOfTree() {
			continue // its port is its own module's
		}
		files, err := GeneratePort(b)
		if err != nil {
			t.Fatalf("GeneratePort(%s): %v", b.Name, err)
		}
		all = append(all, files...)
		names = append(names, b.Name)
	}
	reg, err := GenerateRegistry(names)
	if err != nil {
		t.Fatalf("GenerateRegistry: %v", err)
	}
	shared, err := GenerateShared()
	if err != nil {
		t.Fatalf("GenerateShared: %v", err)
	}
	// One board as a module of its own, as otagen --module writes it.
	mod, err := GenerateModule(boards[1], goldenModule)
	if err != nil {
		t.Fatalf("GenerateModule: %v", err)
	}
	for _, f := range mod {
		f.Path = path.Join("module", f.Path)
		all = append(all, f)
	}
	return append(append(all, reg), shared...)
}

// goldenModule is the module the golden files hold a port module of.
var goldenModule = Module{Path: "example.com/acme/otaport-esp32", Otaport: "v0.4.0"}

func TestGenerate_Golden(t *testing.T) {
	files := goldenFiles(t, goldenBoards(t))
	want := map[string]bool{}
	for _, f := range files {
		want[f.Path] = true
		golden := filepath.Join(goldenDir, filepath.FromSlash(f.Path))
		if *update {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, f.Data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(golden)
		if err != nil {
			t.Errorf("%s: %v (run go test ./portgen -run Golden -update)", f.Path, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("%s differs from its golden file:\n%s\n(run go test ./portgen -run Golden -update if the change is intended)",
				f.Path, firstDiff(got, f.Data))
		}
	}
	// No golden file may be left over from an older generator.
	err := filepath.WalkDir(goldenDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(goldenDir, p)
		rel = filepath.ToSlash(rel)
		if rel == "boards.yaml" || want[rel] {
			return nil
		}
		if *update {
			return os.Remove(p)
		}
		t.Errorf("golden file %s is not generated any more (run with -update to remove it)", rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// firstDiff shows the first differing line of two texts.
func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n  golden:    " + x + "\n  generated: " + y
		}
	}
	return "(same lines, different bytes)"
}

func TestGeneratePort_Idempotent(t *testing.T) {
	for _, b := range goldenBoards(t)[:3] {
		first, err := GeneratePort(b)
		if err != nil {
			t.Fatal(err)
		}
		second, err := GeneratePort(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(first, second) {
			t.Errorf("%s: two runs differ", b.Name)
		}
		if !sort.SliceIsSorted(first, func(i, j int) bool { return first[i].Path < first[j].Path }) {
			t.Errorf("%s: files not sorted by path", b.Name)
		}
	}
}

func TestGeneratePort_Files(t *testing.T) {
	b := goldenBoards(t)[0]
	files, err := GeneratePort(b)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, f.Path)
	}
	want := []string{
		"stm32f407-disco/README.md",
		"stm32f407-disco/c/ota_board.h",
		"stm32f407-disco/cmd/otaport-stm32f407-disco/main.go",
		"stm32f407-disco/driver.go",
		"stm32f407-disco/zz_generated.go",
	}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths:\n%s\nwant:\n%s", strings.Join(paths, "\n"), strings.Join(want, "\n"))
	}
	for _, f := range files {
		once := path.Base(f.Path) == DriverFile
		if f.Once != once {
			t.Errorf("%s: Once = %v, want %v", f.Path, f.Once, once)
		}
		if !strings.HasSuffix(f.Path, ".go") {
			continue
		}
		fset := token.NewFileSet()
		af, err := goparser.ParseFile(fset, f.Path, f.Data, goparser.ParseComments)
		if err != nil {
			t.Errorf("%s does not parse: %v", f.Path, err)
			continue
		}
		generated := strings.HasPrefix(string(f.Data), "// Code generated by otagen. DO NOT EDIT.\n")
		if generated == once {
			t.Errorf("%s: generated header = %v, want %v", f.Path, generated, !once)
		}
		if ast := af; ast.Name.Name != "main" && ast.Name.Name != PackageName(b.Name) {
			t.Errorf("%s: package %s, want %s", f.Path, ast.Name.Name, PackageName(b.Name))
		}
	}
}

func TestWriteFiles_KeepsDriverAndSkipsUnchanged(t *testing.T) {
	root := t.TempDir()
	b := goldenBoards(t)[0]
	files, err := GeneratePort(b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := WriteFiles(root, files)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Written) != len(files) {
		t.Fatalf("first write: wrote %d files, want %d", len(res.Written), len(files))
	}
	driver := filepath.Join(root, b.Name, DriverFile)
	readme := filepath.Join(root, b.Name, "README.md")
	mine := []byte("package stm32f407disco\n\n// my real flash driver\n")
	if err := os.WriteFile(driver, mine, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(readme, []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err = WriteFiles(root, files)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(driver); !bytes.Equal(got, mine) {
		t.Errorf("driver.go was overwritten:\n%s", got)
	}
	if !reflect.DeepEqual(res.Kept, []string{b.Name + "/" + DriverFile}) {
		t.Errorf("Kept = %v", res.Kept)
	}
	if !reflect.DeepEqual(res.Written, []string{b.Name + "/README.md"}) {
		t.Errorf("Written = %v, want only the edited README", res.Written)
	}
	if len(res.Unchanged) != len(files)-2 {
		t.Errorf("Unchanged = %d files, want %d", len(res.Unchanged), len(files)-2)
	}
	entries, err := os.ReadDir(filepath.Join(root, b.Name))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".otagen-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

func TestPortDirs(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"b-board", "a-board", "all", "c", "no-yaml"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if d != "no-yaml" {
			if err := os.WriteFile(filepath.Join(root, d, GeneratedFile), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := PortDirs(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a-board", "b-board"}; !reflect.DeepEqual(got, want) {
		t.Errorf("PortDirs = %v, want %v", got, want)
	}
	if got, err := PortDirs(filepath.Join(root, "missing")); err != nil || got != nil {
		t.Errorf("PortDirs(missing) = %v, %v; want nil, nil", got, err)
	}
}

func TestGenerateRegistry_SortedAndDeduplicated(t *testing.T) {
	f, err := GenerateRegistry([]string{"zeta-board", "alpha-board", "zeta-board"})
	if err != nil {
		t.Fatal(err)
	}
	s := string(f.Data)
	a, z := strings.Index(s, `Name: "alpha-board"`), strings.Index(s, `Name: "zeta-board"`)
	if a < 0 || z < 0 || a > z {
		t.Errorf("entries missing or unsorted:\n%s", s)
	}
	if strings.Count(s, `Name: "zeta-board"`) != 1 {
		t.Errorf("duplicate entry:\n%s", s)
	}
	if _, err := GenerateRegistry([]string{"all"}); err == nil {
		t.Error("GenerateRegistry accepted a board named all")
	}
}

func TestPackageName(t *testing.T) {
	for _, c := range []struct{ board, want string }{
		{"stm32f407-disco", "stm32f407disco"},
		{"esp32-devkitc", "esp32devkitc"},
		{"8266-board", "board8266board"},
		{"go", "boardgo"},
	} {
		if got := PackageName(c.board); got != c.want {
			t.Errorf("PackageName(%q) = %q, want %q", c.board, got, c.want)
		}
	}
}

func TestGeneratePort_Refuses(t *testing.T) {
	good := goldenBoards(t)[0]
	for _, c := range []struct {
		name   string
		change func(b *Board)
		want   string
	}{
		{"registry name", func(b *Board) { b.Name = "all" }, "reserved"},
		{"upper case", func(b *Board) { b.Name = "Stm32" }, "lower-case"},
		{"no ota", func(b *Board) { b.Partitions = b.Partitions[:3] }, "no ota partition"},
		{"no sectors", func(b *Board) { b.Flash.Sectors = nil; b.Flash.EraseSize = 0 }, "erase_size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := *good
			b.Partitions = append([]Partition(nil), good.Partitions...)
			c.change(&b)
			_, err := GeneratePort(&b)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

// The generated C port must compile cleanly and behave: a harness runs it
// against a strict RAM flash (erase on sector bounds, program aligned and
// only over erased bytes).
func TestCPort_CompilesAndRuns(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not on PATH: the C port is not compiled")
	}
	harness, err := filepath.Abs("testdata/cport/harness.c")
	if err != nil {
		t.Fatal(err)
	}
	shared, err := GenerateShared()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range goldenBoards(t)[:3] {
		t.Run(b.Name, func(t *testing.T) {
			// The shared files in one directory, the board's header in another,
			// as in ports/c and ports/<board>/c.
			dir, boardDir := t.TempDir(), t.TempDir()
			files, err := GeneratePort(b)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range append(files, shared...) {
				to := boardDir
				if strings.HasPrefix(f.Path, SharedDir+"/") {
					to = dir
				} else if !strings.HasPrefix(f.Path, b.Name+"/c/") {
					continue
				}
				if err := os.WriteFile(filepath.Join(to, path.Base(f.Path)), f.Data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			flags := []string{"-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", boardDir, "-I", dir}
			syntax := append(append([]string{"-fsyntax-only"}, flags...), "ota_port.c")
			if out, err := runIn(dir, gcc, syntax...); err != nil {
				t.Fatalf("gcc %s: %v\n%s", strings.Join(syntax, " "), err, out)
			}
			build := append(append([]string{"-O1", "-o", "harness"}, flags...), "ota_port.c", harness)
			if out, err := runIn(dir, gcc, build...); err != nil {
				t.Fatalf("gcc %s: %v\n%s", strings.Join(build, " "), err, out)
			}
			out, err := runIn(dir, filepath.Join(dir, "harness"))
			if err != nil || !strings.HasSuffix(string(out), "ok\n") {
				t.Fatalf("harness: %v\n%s", err, out)
			}
		})
	}
}

func runIn(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}
