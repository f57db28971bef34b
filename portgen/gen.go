package portgen

import (
	"bytes"
	"errors"
	"fmt"
	"go/format"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Import paths the generated code refers to. Generated ports live in this
// module whatever directory otagen writes them to, so the paths are fixed.
const (
	ModulePath     = "github.com/otaport/otaport"
	PortsPath      = ModulePath + "/ports"
	halPath        = ModulePath + "/core/hal"
	flashPath      = ModulePath + "/core/flash"
	bootPath       = ModulePath + "/core/boot"
	imagePath      = ModulePath + "/core/image"
	conformancePkg = ModulePath + "/core/conformance"
)

// RegistryDir is the directory, beside the ports, that holds the registry of
// the catalog. No board may take its name.
const RegistryDir = "all"

// DriverFile is the hand-written hook of a port: created once, never
// overwritten.
const DriverFile = "driver.go"

// File is one generated file.
type File struct {
	// Path is slash-separated and relative to the root of the ports
	// ("stm32f407-disco/zz_generated.go").
	Path string
	// Data is the file's content.
	Data []byte
	// Once marks a file that belongs to the port's author once it exists:
	// it is written only when missing.
	Once bool
}

// PackageName is the Go package name of a board's port: the board name
// without its dashes ("stm32f407-disco" -> "stm32f407disco"). A name that
// would not be a Go identifier gets a "board" prefix.
func PackageName(board string) string {
	n := strings.ReplaceAll(board, "-", "")
	if n == "" || n[0] >= '0' && n[0] <= '9' || token.IsKeyword(n) {
		n = "board" + n
	}
	return n
}

// PluginName is the name of a board's plugin binary and of the directory of
// its main package.
func PluginName(board string) string { return "otaport-" + board }

// GeneratePort returns every file of the port of b, in path order. b must
// have been validated (Parse does it); GeneratePort only refuses what would
// make unbuildable output.
func GeneratePort(b *Board) ([]File, error) {
	if err := checkGeneratable(b); err != nil {
		return nil, err
	}
	yml, err := boardYAML(b)
	if err != nil {
		return nil, fmt.Errorf("generate %s: board.yaml: %w", b.Name, err)
	}
	files := []File{{Path: "board.yaml", Data: yml}}

	goFiles := []struct {
		path string
		gen  func(*Board) ([]byte, error)
		once bool
	}{
		{"zz_generated.go", genPortGo, false},
		{"zz_generated_test.go", genPortTest, false},
		{path.Join("cmd", PluginName(b.Name), "main.go"), genMain, false},
		{DriverFile, genDriver, true},
	}
	for _, g := range goFiles {
		data, err := g.gen(b)
		if err != nil {
			return nil, fmt.Errorf("generate %s: %s: %w", b.Name, g.path, err)
		}
		files = append(files, File{Path: g.path, Data: data, Once: g.once})
	}

	text, err := genText(b)
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", b.Name, err)
	}
	files = append(files, text...)

	for i := range files {
		files[i].Path = path.Join(b.Name, files[i].Path)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// checkGeneratable refuses the boards whose port could not be built: the
// rules that matter to the generator, whoever validated the board.
func checkGeneratable(b *Board) error {
	if b == nil {
		return errors.New("generate: nil board")
	}
	if b.Name == RegistryDir {
		return fmt.Errorf("generate %s: board name %q is reserved for the registry of the catalog (ports/%s); rename the board",
			b.Name, b.Name, RegistryDir)
	}
	for _, c := range b.Name {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("generate %s: board name has %q; use lower-case letters, digits and '-'", b.Name, c)
		}
	}
	if b.Name == "" {
		return errors.New("generate: board without a name; set name")
	}
	for _, p := range []string{"bootloader", "params", "app", "ota"} {
		if _, ok := b.Layout().Partition(p); !ok {
			return fmt.Errorf("generate %s: no %s partition; every board needs bootloader, params, app and ota", b.Name, p)
		}
	}
	if len(b.Layout().Flash.Sectors) == 0 {
		return fmt.Errorf("generate %s: no erase sectors; set flash.sectors or flash.erase_size", b.Name)
	}
	return nil
}

// GenerateRegistry returns ports/all/zz_generated.go, the registry of the
// ports named (in any order, duplicates ignored).
func GenerateRegistry(names []string) (File, error) {
	uniq := map[string]bool{}
	for _, n := range names {
		uniq[n] = true
	}
	sorted := make([]string, 0, len(uniq))
	for n := range uniq {
		if n == RegistryDir {
			return File{}, fmt.Errorf("generate registry: board name %q is reserved", n)
		}
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	data, err := genRegistry(sorted)
	if err != nil {
		return File{}, fmt.Errorf("generate registry: %w", err)
	}
	return File{Path: path.Join(RegistryDir, "zz_generated.go"), Data: data}, nil
}

// PortDirs lists the ports already under root: the directories holding a
// generated board.yaml, sorted. A missing root holds none.
func PortDirs(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list ports: %w", err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == RegistryDir {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), "board.yaml")); err == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// WriteResult says what WriteFiles did with each file.
type WriteResult struct {
	Written   []string // created or changed
	Unchanged []string // already byte-identical
	Kept      []string // Once files that exist and were left alone
}

// WriteFiles writes files under root. A file whose content is already on
// disk is not touched (so regeneration keeps modification times), a Once
// file that exists is kept, and every write goes through a temporary file
// and a rename, so a reader never sees half a file.
func WriteFiles(root string, files []File) (WriteResult, error) {
	var res WriteResult
	for _, f := range files {
		dst := filepath.Join(root, filepath.FromSlash(f.Path))
		old, err := os.ReadFile(dst)
		switch {
		case err == nil && f.Once:
			res.Kept = append(res.Kept, f.Path)
			continue
		case err == nil && bytes.Equal(old, f.Data):
			res.Unchanged = append(res.Unchanged, f.Path)
			continue
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return res, fmt.Errorf("write %s: %w", dst, err)
		}
		if err := writeAtomic(dst, f.Data); err != nil {
			return res, err
		}
		res.Written = append(res.Written, f.Path)
	}
	return res, nil
}

func writeAtomic(dst string, data []byte) error {
	dir := filepath.Dir(dst)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(dir, ".otagen-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// gofmt formats generated Go source; the generator's output must already be
// valid Go, so an error here is a generator bug.
func gofmt(src []byte) ([]byte, error) {
	out, err := format.Source(src)
	if err != nil {
		return nil, fmt.Errorf("format generated code: %w\n%s", err, src)
	}
	return out, nil
}
