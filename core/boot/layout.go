package boot

import (
	"fmt"
	"slices"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// Slot numbers the two image slots. They are stored in the boot parameters
// as one byte, so their values are part of the on-flash format.
type Slot uint8

const (
	// SlotApp is the app partition: slot A, the one a factory image is in.
	SlotApp Slot = 0
	// SlotOTA is the ota partition: slot B in dual-bank, the download area
	// in single-bank.
	SlotOTA Slot = 1
)

// Name returns the partition name of the slot.
func (s Slot) Name() string {
	if s == SlotOTA {
		return hal.PartOTA
	}
	return hal.PartApp
}

// Other returns the other slot.
func (s Slot) Other() Slot { return 1 - s }

func (s Slot) String() string { return s.Name() }

// MaxBootAttempts is the largest BootAttempts a layout may ask for, as AliOS
// Things' REC_MAX_NUM.
const MaxBootAttempts = 3

// board is a layout checked against a device: the resolved partitions and
// the sector boundaries the code needs, so nothing downstream re-validates.
type board struct {
	layout   hal.Layout
	geo      hal.FlashGeometry
	bounds   []int64 // sector boundaries of the whole flash, 0 .. size
	params   hal.Partition
	slots    [2]hal.Partition
	attempts int
}

// checkLayout validates l against the geometry of dev: the scheme, the four
// partitions inside the flash, on sector boundaries and apart from each
// other, a params partition of at least two sectors (its two copies), and a
// boot attempt limit in range. Errors name the field and the fix.
func checkLayout(l hal.Layout, dev flash.Device) (*board, error) {
	if dev == nil {
		return nil, fmt.Errorf("board %q: no flash device", l.Board)
	}
	g := dev.Geometry()
	if err := flash.CheckGeometry(g); err != nil {
		return nil, fmt.Errorf("board %q: device: %w", l.Board, err)
	}
	if l.Scheme != hal.SingleBank && l.Scheme != hal.DualBank {
		return nil, fmt.Errorf("board %q: scheme %q: want %q or %q", l.Board, l.Scheme, hal.SingleBank, hal.DualBank)
	}
	b := &board{layout: l, geo: g, bounds: boundaries(g)}
	if l.Flash.Size != 0 || len(l.Flash.Sectors) != 0 {
		// A layout that describes its flash must describe this device:
		// a port generated for one part and run over the image of
		// another would write its parameters into the wrong sectors.
		if l.Flash.Size != g.Size || l.Flash.WriteAlign != g.WriteAlign || l.Flash.EraseValue != g.EraseValue ||
			!slices.Equal(boundaries(l.Flash), b.bounds) {
			return nil, fmt.Errorf("board %q: layout flash (size %d, write_align %d, erase_value 0x%02x, %d sectors) does not match the device (size %d, write_align %d, erase_value 0x%02x, %d sectors): open a flash image made for this board",
				l.Board, l.Flash.Size, l.Flash.WriteAlign, l.Flash.EraseValue, len(boundaries(l.Flash))-1,
				g.Size, g.WriteAlign, g.EraseValue, len(b.bounds)-1)
		}
	}
	b.attempts = l.BootAttempts
	if b.attempts == 0 {
		b.attempts = 1
	}
	if b.attempts < 1 || b.attempts > MaxBootAttempts {
		return nil, fmt.Errorf("board %q: boot_attempts %d: want 1 to %d", l.Board, l.BootAttempts, MaxBootAttempts)
	}

	names := []string{hal.PartBootloader, hal.PartParams, hal.PartApp, hal.PartOTA}
	found := make([]hal.Partition, len(names))
	for i, name := range names {
		p, ok := l.Partition(name)
		if !ok {
			return nil, fmt.Errorf("board %q: no partition %q: every board needs bootloader, params, app and ota", l.Board, name)
		}
		if p.Size == 0 {
			return nil, fmt.Errorf("board %q: partition %q has size 0", l.Board, name)
		}
		if p.Offset > g.Size || p.Size > g.Size-p.Offset {
			return nil, fmt.Errorf("board %q: partition %q [0x%x, 0x%x) ends past the flash (size 0x%x): shrink it or move it", l.Board, name, p.Offset, p.End(), g.Size)
		}
		for _, edge := range []uint64{p.Offset, p.End()} {
			if _, ok := slices.BinarySearch(b.bounds, int64(edge)); !ok {
				lo, hi := b.around(int64(edge))
				return nil, fmt.Errorf("board %q: partition %q [0x%x, 0x%x): 0x%x is not a sector boundary (nearest 0x%x and 0x%x): partitions must start and end on erase sectors", l.Board, name, p.Offset, p.End(), edge, lo, hi)
			}
		}
		found[i] = p
	}
	for i := range found {
		for j := i + 1; j < len(found); j++ {
			a, c := found[i], found[j]
			if a.Offset < c.End() && c.Offset < a.End() {
				return nil, fmt.Errorf("board %q: partitions %q [0x%x, 0x%x) and %q [0x%x, 0x%x) overlap", l.Board, a.Name, a.Offset, a.End(), c.Name, c.Offset, c.End())
			}
		}
	}
	b.params, b.slots[SlotApp], b.slots[SlotOTA] = found[1], found[2], found[3]
	if n := len(b.sectors(b.params)); n < 2 {
		return nil, fmt.Errorf("board %q: partition params [0x%x, 0x%x) holds %d erase sector; it needs at least 2 so that one copy of the parameters survives a power cut while the other is erased", l.Board, b.params.Offset, b.params.End(), n)
	}
	return b, nil
}

// boundaries lists the sector boundaries of g: 0, the end of each sector.
func boundaries(g hal.FlashGeometry) []int64 {
	n := 1
	for _, r := range g.Sectors {
		n += r.Count
	}
	// Sized up front: a block device has a hundred thousand sectors, and
	// every power-on builds this list.
	out := make([]int64, 1, n)
	var off int64
	for _, r := range g.Sectors {
		for range r.Count {
			off += int64(r.Size)
			out = append(out, off)
		}
	}
	return out
}

// around returns the sector boundaries at or below and above off.
func (b *board) around(off int64) (lo, hi int64) {
	i, _ := slices.BinarySearch(b.bounds, off)
	if i >= len(b.bounds) {
		last := b.bounds[len(b.bounds)-1]
		return last, last
	}
	if i == 0 {
		return b.bounds[0], b.bounds[0]
	}
	return b.bounds[i-1], b.bounds[i]
}

// span is a range of the flash, absolute offsets.
type span struct{ off, size int64 }

func (s span) end() int64 { return s.off + s.size }

// sectors returns the erase sectors of partition p in address order.
func (b *board) sectors(p hal.Partition) []span {
	var out []span
	for i := 0; i+1 < len(b.bounds); i++ {
		lo, hi := b.bounds[i], b.bounds[i+1]
		if lo >= int64(p.Offset) && hi <= int64(p.End()) {
			out = append(out, span{lo, hi - lo})
		}
	}
	return out
}

// sectorsCovering returns the sectors of p that hold any of its first n
// bytes: what must be erased for an image of n bytes.
func (b *board) sectorsCovering(p hal.Partition, n uint64) []span {
	var out []span
	for _, s := range b.sectors(p) {
		if uint64(s.off) >= p.Offset+n {
			break
		}
		out = append(out, s)
	}
	return out
}

// updateSlot is the slot a new image is written to when running runs
// (hal.Layout's rule).
func (b *board) updateSlot(running Slot) Slot {
	if b.layout.UpdateSlot(running.Name()) == hal.PartApp {
		return SlotApp
	}
	return SlotOTA
}
