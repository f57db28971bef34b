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

	"github.com/otaport/otaport/templates"
)

// ModulePath is otaport's module. In-tree ports live in it, under ports/;
// a port made with GenerateModule requires it.
const ModulePath = "github.com/otaport/otaport"

// PortsPath is the import path of the in-tree ports.
const PortsPath = ModulePath + "/ports"

// GoVersion is the go directive of otaport's go.mod, which a port module
// needs too (a test keeps them equal).
const GoVersion = "1.26.8"

// RegistryDir is the directory, beside the ports, that holds the registry of
// the catalog. No board may take its name.
const RegistryDir = "all"

// SharedDir is the directory, beside the ports, of the C port that every
// board shares. No board may take its name.
const SharedDir = "c"

// KitDir is the directory, beside the ports, of portkit, the Go code every
// port shares. No board may take its name.
const KitDir = "portkit"

// DriverFile is the hand-written hook of a port: created once, never
// overwritten.
const DriverFile = "driver.go"

// GeneratedFile is a port's generated Go file; its presence marks a port
// directory.
const GeneratedFile = "zz_generated.go"

// File is one generated file.
type File struct {
	// Path is slash-separated and relative to the root of the ports
	// ("stm32f407-disco/zz_generated.go") or of a port module.
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

// GeneratePort returns every file of the in-tree port of b (ports/<name>/),
// in path order. b must have been validated (Parse does it); GeneratePort
// only refuses what would make unbuildable output. What every port shares
// is not among them: see GenerateShared.
func GeneratePort(b *Board) ([]File, error) {
	if err := checkGeneratable(b); err != nil {
		return nil, err
	}
	files, err := render(newPortData(b, nil), []output{
		{templates.Port, GeneratedFile, false},
		{templates.Main, path.Join("cmd", PluginName(b.Name), "main.go"), false},
		{templates.Driver, DriverFile, true},
		{templates.README, "README.md", false},
		{templates.CBoard, "c/ota_board.h", false},
	})
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", b.Name, err)
	}
	for i := range files {
		files[i].Path = path.Join(b.Name, files[i].Path)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// GenerateShared returns what the in-tree ports share and otagen writes once
// beside them: the C port (c/ota_hal_plat.h, c/ota_port.c), the same for
// every board.
func GenerateShared() ([]File, error) {
	return render(nil, sharedC)
}

var sharedC = []output{
	{templates.CHeader, path.Join(SharedDir, "ota_hal_plat.h"), false},
	{templates.CSource, path.Join(SharedDir, "ota_port.c"), false},
}

// Module is a port that is its own Go module, outside otaport's repository.
type Module struct {
	// Path is the module path ("example.com/acme/otaport-myboard").
	Path string
	// Otaport is the version of otaport the module requires.
	Otaport string
	// Replace, when set, replaces otaport by this directory in go.mod: a
	// local checkout to develop against.
	Replace string
}

// GenerateModule returns every file of the port of b as the Go module m, in
// path order, relative to the module's root: the port package at the root,
// its plugin, its conformance test, the C port with the board's header, and
// go.mod. go.mod and driver.go are written once and belong to the port's
// author afterwards.
func GenerateModule(b *Board, m Module) ([]File, error) {
	if err := checkGeneratable(b); err != nil {
		return nil, err
	}
	if err := checkModulePath(m.Path); err != nil {
		return nil, fmt.Errorf("generate %s: %w", b.Name, err)
	}
	if m.Otaport == "" {
		return nil, fmt.Errorf("generate %s: no otaport version to require", b.Name)
	}
	files, err := render(newPortData(b, &m), append([]output{
		{templates.GoMod, "go.mod", true},
		{templates.Port, GeneratedFile, false},
		{templates.PortTest, "zz_generated_test.go", false},
		{templates.Main, path.Join("cmd", PluginName(b.Name), "main.go"), false},
		{templates.Driver, DriverFile, true},
		{templates.README, "README.md", false},
		{templates.CBoard, "c/ota_board.h", false},
	}, sharedC...))
	if err != nil {
		return nil, fmt.Errorf("generate %s: %w", b.Name, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return files, nil
}

// checkModulePath refuses what cannot be a module path: the go tool checks
// the rest when it builds.
func checkModulePath(p string) error {
	switch {
	case p == "":
		return errors.New("no module path; give one such as example.com/acme/otaport-myboard")
	case p == ModulePath || strings.HasPrefix(p, ModulePath+"/"):
		return fmt.Errorf("module path %s is inside otaport's module; a port of the catalog is generated without --module", p)
	}
	first, _, _ := strings.Cut(p, "/")
	if !strings.Contains(first, ".") {
		return fmt.Errorf("module path %s: its first element %q has no dot; use a domain you control, such as example.com/acme/otaport-myboard", p, first)
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~/", c)) {
			return fmt.Errorf("module path %s has %q; use letters, digits and - . _ ~ /", p, c)
		}
	}
	return nil
}

// checkGeneratable refuses the boards whose port could not be built: the
// rules that matter to the generator, whoever validated the board.
func checkGeneratable(b *Board) error {
	if b == nil {
		return errors.New("generate: nil board")
	}
	if b.OutOfTree() {
		return fmt.Errorf("generate %s: the board's port is the module %s, generated in its own repository (otagen --module), not here", b.Name, b.Module)
	}
	if reserved(b.Name) {
		return fmt.Errorf("generate %s: board name %q is reserved for what the ports share (ports/%s, ports/%s, ports/%s); rename the board",
			b.Name, b.Name, RegistryDir, SharedDir, KitDir)
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
		if reserved(n) {
			return File{}, fmt.Errorf("generate registry: board name %q is reserved", n)
		}
		sorted = append(sorted, n)
	}
	sort.Strings(sorted)
	ports := make([]portData, len(sorted))
	for i, n := range sorted {
		ports[i] = portData{Name: n, Package: PackageName(n), ImportPath: PortsPath + "/" + n}
	}
	files, err := render(ports, []output{{templates.Registry, path.Join(RegistryDir, GeneratedFile), false}})
	if err != nil {
		return File{}, fmt.Errorf("generate registry: %w", err)
	}
	return files[0], nil
}

// reserved says whether name is one of the directories beside the ports.
func reserved(name string) bool {
	return name == RegistryDir || name == SharedDir || name == KitDir
}

// PortDirs lists the ports already under root: the directories holding a
// generated zz_generated.go, sorted. A missing root holds none.
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
		if !e.IsDir() || reserved(e.Name()) {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, e.Name(), GeneratedFile)); err == nil {
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
