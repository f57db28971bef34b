package portgen

import (
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
		schemes[b.Scheme]++
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
		l := b.Layout()
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
