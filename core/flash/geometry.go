package flash

import (
	"fmt"
	"slices"

	"github.com/otaport/otaport/core/hal"
)

// Limits of the emulator: it holds the whole flash in memory or a file, and
// keeps a table with one entry per sector. They are far above any NOR part in
// the catalog (the largest serial NOR parts are 256 MiB); a board past them is
// a valid layout (otagen says so when it generates one) that the emulator
// cannot run, not a wrong one.
const (
	// MaxSize is the largest flash the emulator holds.
	MaxSize = 1 << 30
	// MaxSectors is the largest number of erase sectors.
	MaxSectors = 1 << 20
)

// CheckGeometry reports whether g describes a flash the emulator can hold: a
// geometry hal.FlashGeometry.Validate accepts, within the emulator's limits.
// The error names the field, the value and what would be accepted.
func CheckGeometry(g hal.FlashGeometry) error {
	if err := g.Validate().Err(); err != nil {
		return fmt.Errorf("flash geometry: %w", err)
	}
	return CheckLimits(g)
}

// CheckLimits reports whether the emulator can hold a valid geometry g.
func CheckLimits(g hal.FlashGeometry) error {
	if g.Size > MaxSize {
		return fmt.Errorf("flash geometry: size %d is more than the emulator's limit of %d bytes (1 GiB): the emulator holds the whole flash; emulate a smaller part of the same family", g.Size, MaxSize)
	}
	var n uint64
	for _, r := range g.Sectors {
		n += uint64(r.Count)
	}
	if n > MaxSectors {
		return fmt.Errorf("flash geometry: %d erase sectors, more than the emulator's limit of %d: it keeps a table entry per sector", n, MaxSectors)
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
