package portgen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/hal"
)

// TestCatalog_BoardsYAML keeps the repository's catalog honest: it parses,
// it is sorted, it covers the shapes the brief asks for, and every board
// says where its geometry comes from.
func TestCatalog_BoardsYAML(t *testing.T) {
	boards, err := ParseFile(filepath.Join("..", "boards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(boards) < 14 {
		t.Errorf("%d boards, want at least 14", len(boards))
	}
	var names []string
	schemes := map[string]int{}
	var erasesTo0, wide, nonUniform, blockDevice bool
	for _, b := range boards {
		names = append(names, b.Name)
		if b.OutOfTree() {
			continue // described in its own module
		}
		l := b.Layout()
		schemes[string(l.Scheme)]++
		// The catalog says what each board's SDK ships, otaport's own
		// bootloader included: an entry that names none is an omission.
		if b.Bootloader.Name == "" {
			t.Errorf("%s: no bootloader; name the one its SDK ships (mcuboot with its mode, esp-idf), or otaport where none fits", b.Name)
		}
		if len(strings.Fields(b.Source)) < 8 {
			t.Errorf("%s: source %q is too thin; name the document and section or the SDK file", b.Name, b.Source)
		}
		if b.Vendor == "" || b.SoC == "" {
			t.Errorf("%s: vendor and soc are expected in the catalog", b.Name)
		}
		erasesTo0 = erasesTo0 || b.Flash.EraseValue == 0
		wide = wide || b.Flash.WriteAlign >= 8
		nonUniform = nonUniform || len(b.Flash.Sectors) > 1
		blockDevice = blockDevice || (b.Flash.EraseSize == 512 && b.Flash.Base == 0)
		for _, want := range []string{hal.PartBootloader, hal.PartParams, hal.PartApp, hal.PartOTA} {
			if _, ok := l.Partition(want); !ok {
				t.Errorf("%s: layout has no %s", b.Name, want)
			}
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("board names are not in alphabetical order: %v", names)
	}
	if len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("duplicate board names: %v", names)
	}
	for _, want := range []string{"mk3060", "esp32-devkitc", "b-l475e-iot01a", "stm32f407-disco", "nrf52840-dk", "rpi-pico", "nucleo-l152re", "rpi4-b"} {
		if !slices.Contains(names, want) {
			t.Errorf("catalog lacks %s", want)
		}
	}
	if schemes[string(hal.SingleBank)] == 0 || schemes[string(hal.DualBank)] == 0 {
		t.Errorf("schemes %v, want both", schemes)
	}
	if !erasesTo0 || !wide || !nonUniform || !blockDevice {
		t.Errorf("catalog shapes: erases to 0x00 %v, write unit >= 8 %v, non-uniform sectors %v, block device %v; want all",
			erasesTo0, wide, nonUniform, blockDevice)
	}
}

// A catalog entry with module: names a port that lives in its own Go module:
// only its name and module, never a layout the module already holds.
func TestParse_ModuleEntry(t *testing.T) {
	inTree, err := os.ReadFile(filepath.Join("testdata", "golden", "boards.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, entry, want string
	}{
		{"valid", "  - {name: acme-other, module: example.com/acme/otaport-other}\n", ""},
		{"with a layout", "  - name: acme-other\n    module: example.com/acme/otaport-other\n    scheme: dual-bank\n",
			"scheme: a catalog entry with module: names only the board and its module"},
		{"no dot", "  - {name: acme-other, module: acme/otaport-other}\n", "has no dot"},
		{"inside otaport", "  - {name: acme-other, module: github.com/otaport/otaport/ports/x}\n", "inside otaport's module"},
		{"no name", "  - {module: example.com/acme/otaport-other}\n", "name: missing"},
		{"bad name", "  - {name: Acme, module: example.com/acme/otaport-other}\n", "is not a board name"},
		{"duplicate", "  - {name: esp32-devkitc, module: example.com/acme/otaport-other}\n", "duplicate board name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			boards, err := Parse("boards.yaml", append(slices.Clone(inTree), c.entry...))
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("err = %v, want one mentioning %q", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b := boards[len(boards)-1]
			if b.Name != "acme-other" || b.Module != "example.com/acme/otaport-other" || !b.OutOfTree() {
				t.Errorf("entry = %+v", b)
			}
			if _, err := GeneratePort(b); err == nil || !strings.Contains(err.Error(), "its own repository") {
				t.Errorf("GeneratePort of a module entry: err = %v", err)
			}
		})
	}
}

// GoVersion is what a port module's go.mod says: the go directive of
// otaport's own go.mod, which the module requires.
func TestGoVersion_MatchesGoMod(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "\ngo "+GoVersion+"\n") {
		t.Errorf("go.mod has no line \"go %s\"; set portgen.GoVersion to its go directive", GoVersion)
	}
}
