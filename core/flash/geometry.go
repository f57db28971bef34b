package flash

import (
	"fmt"
	"slices"

	"github.com/otaport/otaport/core/hal"
)

// Limits on what the emulator accepts. They are far above any NOR part in the
// catalog (the largest serial NOR parts are 256 MiB) and exist so that a
// corrupt board file cannot make the emulator allocate without bound.
const (
	// MaxSize is the largest flash the emulator holds.
	MaxSize = 1 << 30
	// MaxSectors is the largest number of erase sectors.
	MaxSectors = 1 << 20
)

// CheckGeometry reports whether g describes a flash the emulator can hold:
// sector runs that add up to Size, a write alignment that is a power of two
// and divides every sector, and an erased value of 0x00 or 0xFF. The error
// names the field, the value and what would be accepted.
func CheckGeometry(g hal.FlashGeometry) error {
	if g.Size == 0 {
		return fmt.Errorf("flash geometry: size is 0: give the flash size in bytes")
	}
	if g.Size > MaxSize {
		return fmt.Errorf("flash geometry: size %d is more than the emulator's limit of %d bytes", g.Size, MaxSize)
	}
	if g.EraseValue != 0x00 && g.EraseValue != 0xFF {
		return fmt.Errorf("flash geometry: erase_value 0x%02x: NOR flash erases to 0xff (most parts) or 0x00 (STM32L0/L1)", g.EraseValue)
	}
	if g.WriteAlign == 0 || g.WriteAlign&(g.WriteAlign-1) != 0 {
		return fmt.Errorf("flash geometry: write_align %d is not a power of two >= 1 (1, 2, 4, 8, 16, 32 ...)", g.WriteAlign)
	}
	if len(g.Sectors) == 0 {
		return fmt.Errorf("flash geometry: no sectors: list the erase sectors, e.g. one run {count: %d, size: 4096}", g.Size/4096)
	}
	if g.Base > ^uint64(0)-g.Size {
		return fmt.Errorf("flash geometry: base 0x%x + size 0x%x overflows the address space", g.Base, g.Size)
	}
	var total uint64
	var n int
	for i, r := range g.Sectors {
		if r.Count <= 0 {
			return fmt.Errorf("flash geometry: sectors[%d]: count %d must be at least 1", i, r.Count)
		}
		if r.Size == 0 {
			return fmt.Errorf("flash geometry: sectors[%d]: size is 0", i)
		}
		if r.Size%uint64(g.WriteAlign) != 0 {
			return fmt.Errorf("flash geometry: sectors[%d]: size %d is not a multiple of write_align %d", i, r.Size, g.WriteAlign)
		}
		if r.Count > MaxSectors || n+r.Count > MaxSectors {
			return fmt.Errorf("flash geometry: more than %d sectors", MaxSectors)
		}
		// Count <= 2^20 and Size < 2^64 / 2^20 keep the product in range;
		// anything larger already exceeds MaxSize.
		if r.Size > MaxSize {
			return fmt.Errorf("flash geometry: sectors[%d]: size %d is larger than the flash (%d)", i, r.Size, g.Size)
		}
		n += r.Count
		total += uint64(r.Count) * r.Size
		if total > g.Size {
			return fmt.Errorf("flash geometry: sectors[0..%d] add up to %d bytes, more than size %d: fix the sector counts or the size", i, total, g.Size)
		}
	}
	if total != g.Size {
		return fmt.Errorf("flash geometry: sectors add up to %d bytes but size is %d: fix the sector counts or the size", total, g.Size)
	}
	return nil
}

// sectorTable maps offsets to sectors. starts has one entry per sector plus
// the end of the flash, so sector i is [starts[i], starts[i+1]).
type sectorTable struct {
	starts []int64
}

func newSectorTable(g hal.FlashGeometry) sectorTable {
	n := 0
	for _, r := range g.Sectors {
		n += r.Count
	}
	starts := make([]int64, 0, n+1)
	var off int64
	for _, r := range g.Sectors {
		for range r.Count {
			starts = append(starts, off)
			off += int64(r.Size)
		}
	}
	starts = append(starts, off)
	return sectorTable{starts: starts}
}

// count is the number of sectors.
func (t sectorTable) count() int { return len(t.starts) - 1 }

// index returns the sector holding off (0 <= off < size), by binary search:
// the emulator sits on the hot path of benchmarks and non-uniform parts
// rule out a division.
func (t sectorTable) index(off int64) int {
	i, found := slices.BinarySearch(t.starts, off)
	if found {
		return i
	}
	return i - 1
}

// boundary reports whether off is a sector boundary (the end of the flash
// counts as one).
func (t sectorTable) boundary(off int64) bool {
	_, found := slices.BinarySearch(t.starts, off)
	return found
}

// around returns the sector boundaries at or before and after off, for error
// messages that tell the caller where a valid erase would start or end.
func (t sectorTable) around(off int64) (lo, hi int64) {
	i := t.index(off)
	if i < 0 {
		return 0, t.starts[0]
	}
	if i >= t.count() {
		last := t.starts[len(t.starts)-1]
		return last, last
	}
	return t.starts[i], t.starts[i+1]
}
