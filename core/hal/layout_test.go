package hal_test

import (
	"strings"
	"testing"

	"github.com/otaport/otaport/core/hal"
)

// stm32f4 is a valid single-bank layout over non-uniform sectors (RM0090
// 3.3): 4x16K, 1x64K, 7x128K.
func stm32f4() hal.Layout {
	return hal.Layout{
		Board: "stm32f4", Scheme: hal.SingleBank, Signature: "ed25519",
		Flash: hal.FlashGeometry{Base: 0x08000000, Size: 1 << 20, WriteAlign: 4, EraseValue: 0xFF,
			Sectors: []hal.SectorRun{{Count: 4, Size: 16 << 10}, {Count: 1, Size: 64 << 10}, {Count: 7, Size: 128 << 10}}},
		Partitions: []hal.Partition{
			{Name: "bootloader", Offset: 0, Size: 32 << 10},
			{Name: "params", Offset: 0x8000, Size: 32 << 10},
			{Name: "app", Offset: 0x20000, Size: 384 << 10},
			{Name: "ota", Offset: 0x80000, Size: 512 << 10},
		},
	}
}

func TestLayoutValidate_OneProblemPerRule(t *testing.T) {
	part := func(i int, off, size uint64) func(*hal.Layout) {
		return func(l *hal.Layout) { l.Partitions[i].Offset, l.Partitions[i].Size = off, size }
	}
	// swap makes the layout a swap board with app and ota where given.
	swap := func(appOff, appSize, otaOff, otaSize uint64, attempts int) func(*hal.Layout) {
		return func(l *hal.Layout) {
			l.Scheme, l.BootAttempts = hal.Swap, attempts
			l.Partitions[2] = hal.Partition{Name: "app", Offset: appOff, Size: appSize}
			l.Partitions[3] = hal.Partition{Name: "ota", Offset: otaOff, Size: otaSize}
		}
	}
	tests := []struct {
		name string
		edit func(*hal.Layout)
		path string // "" for valid
		msg  string
	}{
		{"valid", func(*hal.Layout) {}, "", ""},
		{"valid dual-bank, boot attempts 3", func(l *hal.Layout) {
			l.Scheme, l.BootAttempts = hal.DualBank, 3
			l.Partitions[2] = hal.Partition{Name: "app", Offset: 0x20000, Size: 256 << 10}
			l.Partitions[3] = hal.Partition{Name: "ota", Offset: 0x60000, Size: 256 << 10}
		}, "", ""},
		{"valid swap", swap(0x40000, 3*128<<10, 0xA0000, 2*128<<10, 0), "", ""},
		{"swap over sectors of two sizes", swap(0x10000, 64<<10+2*128<<10, 0x80000, 2*128<<10, 0),
			"partitions[3].offset", "has sectors 2x128KiB and app has 1x64KiB + 2x128KiB; MCUboot swap-move exchanges the slots sector by sector"},
		{"swap, app too small", swap(0x40000, 128<<10, 0x80000, 2*128<<10, 0),
			"partitions[2].size", "is 128KiB (1 sectors) and ota 256KiB (2); MCUboot swap-move needs app to have one sector more than ota (the sector it moves the image into) or as many: make app 384KiB"},
		{"boot attempts on swap", swap(0x40000, 3*128<<10, 0xA0000, 2*128<<10, 2),
			"boot_attempts", "is 2 on a swap board, whose bootloader swaps a new image back at the power-on after its trial"},
		{"no board", func(l *hal.Layout) { l.Board = "" }, "board", "is empty"},
		{"scheme", func(l *hal.Layout) { l.Scheme = "triple-bank" }, "scheme", `unknown scheme "triple-bank"`},
		{"flash size 0", func(l *hal.Layout) { l.Flash.Size = 0 }, "flash.size", "is 0"},
		{"sectors do not add up", func(l *hal.Layout) { l.Flash.Size = 2 << 20 }, "flash.sectors", "add up to 1MiB (0x100000) but flash.size is 2MiB"},
		{"sector count 0", func(l *hal.Layout) { l.Flash.Sectors[1].Count = 0 }, "flash.sectors[1].count", "is 0; a run has at least 1 sector"},
		{"sectors overflow", func(l *hal.Layout) { l.Flash.Sectors[2] = hal.SectorRun{Count: 1 << 40, Size: 1 << 40} }, "flash.sectors[2]", "more than 2^63"},
		{"too many runs", func(l *hal.Layout) { l.Flash.Sectors = make([]hal.SectorRun, hal.MaxSectorRuns+1) }, "flash.sectors", "more than 256"},
		{"write_align 3", func(l *hal.Layout) { l.Flash.WriteAlign = 3 }, "flash.write_align", "3 is not a power of two"},
		{"write_align past a sector", func(l *hal.Layout) { l.Flash.WriteAlign = 32 << 10 }, "flash.write_align", "32KiB is larger than the smallest erase sector (16KiB)"},
		{"erase value", func(l *hal.Layout) { l.Flash.EraseValue = 0x7F }, "flash.erase_value", "is 0x7f"},
		{"base overflow", func(l *hal.Layout) { l.Flash.Base = ^uint64(0) - 10 }, "flash.base", "passes the end of the 64-bit address space"},
		{"boot attempts 4", func(l *hal.Layout) { l.Scheme = hal.DualBank; l.BootAttempts = 4 }, "boot_attempts", "is 4; a dual-bank bootloader allows 1 to 3"},
		{"boot attempts on single-bank", func(l *hal.Layout) { l.BootAttempts = 2 }, "boot_attempts", "is 2 on a single-bank board"},
		{"no partitions", func(l *hal.Layout) { l.Partitions = nil }, "partitions", "is empty"},
		{"missing ota", func(l *hal.Layout) { l.Partitions = l.Partitions[:3] }, "partitions", "has no ota partition"},
		{"bad name", func(l *hal.Layout) { l.Partitions[0].Name = "Boot" }, "partitions[0].name", `name "Boot": use lower-case letters`},
		{"duplicate name", func(l *hal.Layout) {
			l.Partitions = append(l.Partitions, hal.Partition{Name: "app", Offset: 0x8000, Size: 0})
		}, "partitions[4].name", "duplicate partition name (first at partitions[2])"},
		{"size 0", func(l *hal.Layout) { l.Partitions[0].Size = 0 }, "partitions[0].size", "size is 0"},
		{"past the flash", part(3, 0x100000, 512<<10), "partitions[3].offset", "starts at 0x100000, past the end of the flash"},
		{"ends past the flash", part(3, 0x80000, 1<<20), "partitions[3].size", "ends at 0x180000, past the end of the flash (0x100000); shrink it to 512KiB"},
		{"start off a boundary", part(1, 0x9000, 28<<10), "partitions[1].offset", "starts at 0x9000, not on an erase-sector boundary (nearest 0x8000 below, 0xc000 above)"},
		{"end off a boundary", part(2, 0x20000, 380<<10), "partitions[2].size", "ends at 0x7f000, not on an erase-sector boundary (nearest 0x60000 below, 0x80000 above); make its size 0x40000 or 0x60000"},
		{"overlap", part(3, 0x7f000, 512<<10), "partitions[3].offset", "overlaps app (0x20000..0x80000) at 0x7f000; move ota to 0x80000 or shrink app to 380KiB"},
		{"params of one sector", part(1, 0x8000, 16<<10), "partitions[1].size", "spans 1 erase sector (0x8000..0xc000); it needs at least 2 so that the boot record survives a power cut during an erase: make its size 32KiB"},
		{"params too large", func(l *hal.Layout) {
			l.Flash.Size, l.Flash.Sectors = 64<<20, []hal.SectorRun{{Count: 512, Size: 128 << 10}}
			l.Partitions[1] = hal.Partition{Name: "params", Offset: 32 << 20, Size: 17 << 20}
		}, "partitions[1].size", "is 17MiB, more than 16MiB"},
		{"dual-bank sizes", func(l *hal.Layout) { l.Scheme = hal.DualBank }, "partitions[3].size", "is 512KiB but app is 384KiB"},
		{"dual-bank sector layouts", func(l *hal.Layout) {
			l.Scheme = hal.DualBank
			l.Partitions = []hal.Partition{
				{Name: "app", Offset: 0, Size: 256 << 10}, {Name: "ota", Offset: 0x40000, Size: 256 << 10},
				{Name: "bootloader", Offset: 0x80000, Size: 128 << 10}, {Name: "params", Offset: 0xA0000, Size: 256 << 10},
			}
		}, "partitions[1].offset", "has sectors 2x128KiB but app has 4x16KiB + 1x64KiB + 1x128KiB"},
		{"single-bank ota smaller", part(3, 0x80000, 256<<10), "partitions[3].size", "is 256KiB, smaller than app (384KiB)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := stm32f4()
			l.Flash.Sectors = append([]hal.SectorRun(nil), l.Flash.Sectors...)
			tt.edit(&l)
			probs := l.Validate()
			if tt.path == "" {
				if len(probs) != 0 {
					t.Fatalf("problems in a valid layout:\n%v", probs)
				}
				return
			}
			for _, p := range probs {
				if p.Path == tt.path && strings.Contains(p.Msg, tt.msg) && strings.Contains(p.Msg, "; ") {
					return
				}
			}
			t.Fatalf("no problem at %s saying %q; got:\n%v", tt.path, tt.msg, probs)
		})
	}
}

func TestLayoutValidate_SkipsUnknownFields(t *testing.T) {
	l := stm32f4()
	l.Flash.Size = 0
	l.Partitions[2].Offset = 0 // as if it did not decode: it would overlap
	known := func(p string) bool { return p != "flash.size" && p != "partitions[2].offset" }
	if probs := l.ValidateWith(hal.ValidateOptions{Known: known}); len(probs) != 0 {
		t.Fatalf("problems with unknown fields, want none:\n%v", probs)
	}
	if probs := l.Validate(); len(probs) < 2 {
		t.Fatalf("Validate with every field known: %v, want flash.size and an overlap", probs)
	}
}

func TestSectorMap(t *testing.T) {
	m := stm32f4().Flash.Map()
	for _, tt := range []struct {
		off, below, above uint64
		on                bool
	}{
		{0, 0, 16 << 10, true},
		{0x9000, 0x8000, 0xc000, false},
		{0x10000, 0x10000, 0x20000, true},
		{0x7f000, 0x60000, 0x80000, false},
		{1 << 20, 1 << 20, 1 << 20, true},
		{2 << 20, 1 << 20, 1 << 20, false},
	} {
		lo, hi, on := m.Boundary(tt.off)
		if lo != tt.below || hi != tt.above || on != tt.on {
			t.Errorf("Boundary(%#x) = %#x, %#x, %v; want %#x, %#x, %v", tt.off, lo, hi, on, tt.below, tt.above, tt.on)
		}
	}
	runs := m.Runs(0x8000, 0x40000)
	want := []hal.SectorRun{{Count: 2, Size: 16 << 10}, {Count: 1, Size: 64 << 10}, {Count: 1, Size: 128 << 10}}
	if len(runs) != len(want) {
		t.Fatalf("Runs = %v, want %v", runs, want)
	}
	for i := range runs {
		if runs[i] != want[i] {
			t.Fatalf("Runs = %v, want %v", runs, want)
		}
	}
	if n := m.Count(0, 1<<20); n != 12 {
		t.Errorf("Count of the flash = %d, want 12", n)
	}
	split := hal.FlashGeometry{Size: 12 << 10, Sectors: []hal.SectorRun{{Count: 1, Size: 4 << 10}, {Count: 2, Size: 4 << 10}}}
	if n := split.Map().Normal(); len(n) != 1 || n[0] != (hal.SectorRun{Count: 3, Size: 4 << 10}) {
		t.Errorf("Normal = %v, want one run of 3x4KiB", n)
	}
}

// TestSectorMap_StepsBoundedByRuns: issue 8's boards of 2^51 and 2^31
// sectors are validated in a number of steps bounded by their runs, counted.
func TestSectorMap_StepsBoundedByRuns(t *testing.T) {
	for _, l := range []hal.Layout{
		{Board: "exa", Scheme: hal.SingleBank,
			Flash: hal.FlashGeometry{Size: 1 << 62, WriteAlign: 8, EraseValue: 0xFF, Sectors: []hal.SectorRun{{Count: 1 << 51, Size: 2 << 10}}},
			Partitions: []hal.Partition{{Name: "bootloader", Size: 64 << 10}, {Name: "params", Offset: 0x10000, Size: 4 << 10},
				{Name: "app", Offset: 1 << 20, Size: 1<<61 - 1<<20}, {Name: "ota", Offset: 1 << 61, Size: 1 << 61}}},
		{Board: "tib", Scheme: hal.DualBank,
			Flash: hal.FlashGeometry{Size: 1 << 40, WriteAlign: 4, EraseValue: 0xFF, Sectors: []hal.SectorRun{{Count: 1 << 31, Size: 512}}},
			Partitions: []hal.Partition{{Name: "bootloader", Size: 64 << 10}, {Name: "params", Offset: 0x10000, Size: 4 << 10},
				{Name: "app", Offset: 1 << 20, Size: 511 << 30}, {Name: "ota", Offset: 512<<30 + 1<<20, Size: 511 << 30}}},
	} {
		m := l.Flash.Map()
		if probs := l.ValidateWith(hal.ValidateOptions{Map: m}); len(probs) != 0 {
			t.Fatalf("%s: %v", l.Board, probs)
		}
		// A lookup visits each run once at most; the rules make two per
		// partition and a few more.
		bound := len(l.Flash.Sectors) * (2*len(l.Partitions) + 4)
		if m.Steps == 0 || m.Steps > bound {
			t.Errorf("%s: %d steps, want 1 to %d", l.Board, m.Steps, bound)
		}
	}
}
