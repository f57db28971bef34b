package powercut

import (
	"fmt"
	"slices"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/ports/all"
)

// Board is a catalog board the suite runs on, with the layout of its port.
type Board struct {
	Name   string
	Layout hal.Layout
}

// Traits of a board's flash that change what a power cut does, as Traits
// reports them.
const (
	// TraitNonUniform: sectors of several sizes (STM32F4/F7), so one erase
	// of the update slot or one copy step covers very different amounts.
	TraitNonUniform = "non-uniform-sectors"
	// TraitWideWrite: a write unit of 8 bytes or more (ECC flash words,
	// QSPI pages), where a torn program leaves a unit that can never be
	// programmed again without an erase.
	TraitWideWrite = "write-unit-8+"
	// TraitErasedZero: erased cells read 0x00 (STM32L0/L1, eMMC), so every
	// "is it erased" and every padding decision runs the other way.
	TraitErasedZero = "erases-to-0x00"
)

// Traits lists the traits of l's flash among TraitNonUniform,
// TraitWideWrite and TraitErasedZero.
func Traits(l hal.Layout) []string {
	var t []string
	sizes := map[uint64]bool{}
	for _, r := range l.Flash.Sectors {
		sizes[r.Size] = true
	}
	if len(sizes) > 1 {
		t = append(t, TraitNonUniform)
	}
	if l.Flash.WriteAlign >= 8 {
		t = append(t, TraitWideWrite)
	}
	if l.Flash.EraseValue == 0x00 {
		t = append(t, TraitErasedZero)
	}
	return t
}

// DefaultBoards names the boards of the default sweep: per scheme, one board
// with non-uniform sectors, one with a write unit of 8 bytes or more and
// one that erases to 0x00 (a test keeps the choice covering all three).
//
//   - single-bank: stm32f407-disco (16/64/128 KiB sectors, byte writes),
//     frdm-k64f (4 KiB sectors, 8-byte phrases), nucleo-l152re (256-byte
//     pages, 4-byte words, erased 0x00);
//   - dual-bank: stm32f769i-disco (two banks of 16/64/128 KiB sectors),
//     b-l475e-iot01a (2 KiB pages, 8-byte double words, 3 boot attempts),
//     rpi4-b (64 MiB eMMC of 512-byte blocks, erased 0x00);
//   - swap: nrf52840-dk-swap (MCUboot swap-move, 4 KiB pages, word
//     writes), a layout of core/hal/haltest until the catalog has a swap
//     board.
func DefaultBoards() []string {
	return []string{
		"stm32f407-disco", "frdm-k64f", "nucleo-l152re",
		"stm32f769i-disco", "b-l475e-iot01a", "rpi4-b",
		"nrf52840-dk-swap",
	}
}

// CatalogBoards names every board of the catalog, sorted, then the boards
// of core/hal/haltest that the catalog does not hold (haltest.Extra).
func CatalogBoards() []string {
	var names []string
	for _, e := range all.Catalog() {
		names = append(names, e.Name)
	}
	for _, n := range haltest.Extra() {
		if _, ok := all.Lookup(n); !ok {
			names = append(names, n)
		}
	}
	return names
}

// Boards returns the boards called names, in that order, with the layouts
// their generated ports declare, or core/hal/haltest's for a board the
// catalog does not hold.
func Boards(names ...string) ([]Board, error) {
	var out []Board
	for _, n := range names {
		var l hal.Layout
		if e, ok := all.Lookup(n); ok {
			l = e.Layout()
		} else if hl, ok := haltest.Layout(n); ok && slices.Contains(haltest.Extra(), n) {
			l = hl
		} else {
			return nil, fmt.Errorf("board %q is not in the catalog (boards.yaml); known boards: %v", n, CatalogBoards())
		}
		l.Flash.Sectors = slices.Clone(l.Flash.Sectors)
		l.Partitions = slices.Clone(l.Partitions)
		out = append(out, Board{Name: n, Layout: l})
	}
	return out, nil
}
