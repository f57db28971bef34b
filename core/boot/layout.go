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

// board is a layout checked against a device: the resolved partitions and
// the sector map the code needs, so nothing downstream re-validates.
type board struct {
	layout   hal.Layout
	geo      hal.FlashGeometry
	sectors  *hal.SectorMap // of geo
	params   hal.Partition
	slots    [2]hal.Partition
	attempts int
	swap     *swapGeo // the swap scheme's geometry; nil in the others
	mcub     *mcubGeo // MCUboot's trailers; nil when the bootloader is not MCUboot
	esp      *espGeo  // an esp-idf board's otadata; nil on the others
	// decKey is the device's private key for encrypted images
	// (Options.DecryptKey): what MCUboot is built with.
	decKey any
}

// checkLayout validates l with hal.Layout.Validate, over the geometry of
// dev, which l must describe when it describes a flash at all. The emulator's
// own limits are not checked here: a device that exists is one it could hold.
func checkLayout(l hal.Layout, dev flash.Device) (*board, error) {
	if dev == nil {
		return nil, fmt.Errorf("board %q: no flash device", l.Board)
	}
	g := dev.Geometry()
	if err := g.Validate().Err(); err != nil {
		return nil, fmt.Errorf("board %q: device geometry: %w", l.Board, err)
	}
	b := &board{layout: l, geo: g, sectors: g.Map()}
	if l.Flash.Size != 0 || len(l.Flash.Sectors) != 0 {
		// A layout that describes its flash must describe this device:
		// a port generated for one part and run over the image of
		// another would write its parameters into the wrong sectors.
		mine, dev := l.Flash.Map().Normal(), b.sectors.Normal()
		if l.Flash.Size != g.Size || l.Flash.WriteAlign != g.WriteAlign || l.Flash.EraseValue != g.EraseValue || !slices.Equal(mine, dev) {
			return nil, fmt.Errorf("board %q: layout flash (size %d, write_align %d, erase_value 0x%02x, sectors %v) does not match the device (size %d, write_align %d, erase_value 0x%02x, sectors %v): open a flash image made for this board",
				l.Board, l.Flash.Size, l.Flash.WriteAlign, l.Flash.EraseValue, mine, g.Size, g.WriteAlign, g.EraseValue, dev)
		}
	}
	checked := l
	checked.Flash = g
	err := checked.ValidateWith(hal.ValidateOptions{Map: b.sectors}).Err()
	if err != nil {
		return nil, fmt.Errorf("board %q: layout: %w", l.Board, err)
	}
	b.attempts = max(l.BootAttempts, 1)
	b.params, _ = l.Partition(hal.PartParams)
	b.slots[SlotApp], _ = l.Partition(hal.PartApp)
	b.slots[SlotOTA], _ = l.Partition(hal.PartOTA)
	if b.mcub, err = newMCUbootGeo(b); err != nil {
		return nil, fmt.Errorf("board %q: %w", l.Board, err)
	}
	if l.Bootloader.Name == hal.BootloaderESPIDF {
		if b.esp, err = newESPGeo(b); err != nil {
			return nil, fmt.Errorf("board %q: %w", l.Board, err)
		}
	}
	if l.Scheme == hal.Swap {
		if b.swap, err = newSwapGeo(b); err != nil {
			return nil, fmt.Errorf("board %q: %w", l.Board, err)
		}
	}
	return b, nil
}

// span is a range of the flash, absolute offsets.
type span struct{ off, size int64 }

// coverEnd is the end of the sectors of p that hold any of its first n
// bytes: [p.Offset, coverEnd) is what must be erased for an image of n bytes.
func (b *board) coverEnd(p hal.Partition, n uint64) int64 {
	n = min(n, p.Size)
	_, above, on := b.sectors.Boundary(p.Offset + n)
	if on {
		return int64(p.Offset + n)
	}
	return int64(above)
}

// sectorsCovering returns the sectors of p that hold any of its first n
// bytes, one by one: the single-bank copy erases and programs each. It is as
// long as the image has sectors, the work of the copy itself.
func (b *board) sectorsCovering(p hal.Partition, n uint64) []span {
	off, end := p.Offset, uint64(b.coverEnd(p, n))
	var out []span
	for _, r := range b.sectors.Runs(off, end) {
		for range r.Count {
			out = append(out, span{int64(off), int64(r.Size)})
			off += r.Size
		}
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
