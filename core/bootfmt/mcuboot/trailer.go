// Package mcuboot is MCUboot's image trailer byte for byte: where each field
// sits at the end of a slot, what boot_set_pending and boot_set_confirmed write
// there and in which order, how MCUboot reads a trailer back into its
// boot_swap_state, and its swap-type decision table.
//
// It mirrors boot/bootutil of the MCUboot source (bootutil_public.c,
// bootutil_misc.h, bootutil_priv.h, bootutil_area.c) and is checked against
// that code by the golden files in testdata, which MCUboot's own C produced.
// Everything here is pure: it takes the bytes of a trailer and returns the
// writes to make; reading and programming the flash is the caller's. It is not
// a bootloader: the swap itself, its status records and the validation of
// images belong elsewhere.
package mcuboot

import (
	"errors"
	"fmt"
	"math/bits"
)

// Mode is how the MCUboot build upgrades (one per build in MCUboot). It decides
// the size of the swap status area, whether the trailer holds the unprotected
// TLV sizes (swap-offset), which rows the swap-type table has, and, for
// DirectXIP, which boot_set_next the application's bootutil library carries.
type Mode int

// The upgrade modes, named as MCUboot's configuration options.
const (
	// OverwriteOnly is MCUBOOT_OVERWRITE_ONLY: the secondary is copied over the
	// primary, no revert.
	OverwriteOnly Mode = iota + 1
	// SwapScratch is MCUBOOT_SWAP_USING_SCRATCH (MCUboot's default).
	SwapScratch
	// SwapMove is MCUBOOT_SWAP_USING_MOVE.
	SwapMove
	// SwapOffset is MCUBOOT_SWAP_USING_OFFSET.
	SwapOffset
	// DirectXIP is MCUBOOT_DIRECT_XIP, with the application's library built with
	// MCUBOOT_BOOTUTIL_LIB_FOR_DIRECT_XIP (the second boot_set_next).
	DirectXIP
)

var modeNames = map[Mode]string{
	OverwriteOnly: "overwrite-only",
	SwapScratch:   "swap-scratch",
	SwapMove:      "swap-move",
	SwapOffset:    "swap-offset",
	DirectXIP:     "direct-xip",
}

// String returns the mode as board files spell it.
func (m Mode) String() string {
	if s, ok := modeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

func (m Mode) swaps() bool { return m == SwapScratch || m == SwapMove || m == SwapOffset }

// statesPerSector is BOOT_STATUS_STATE_COUNT (bootutil_area.h): status records
// per sector swapped. Overwrite-only and direct-xip builds take the default
// branch of that #if, so their trailer size counts 3 as well.
func (m Mode) statesPerSector() uint32 {
	switch m {
	case SwapMove:
		return 3 // BOOT_STATUS_MOVE_STATE_COUNT 1 + BOOT_STATUS_SWAP_STATE_COUNT 2
	case SwapOffset:
		return 2
	default:
		return 3
	}
}

// MagicSize is BOOT_MAGIC_SZ: the magic is always the last 16 bytes of a slot.
const MagicSize = 16

// legacyMagic is boot_img_magic when BOOT_MAX_ALIGN is 8 (bootutil_public.c).
var legacyMagic = [MagicSize]byte{
	0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f,
	0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
}

// alignedMagicTail is boot_img_magic.magic, the 14 bytes after the uint16
// alignment, when BOOT_MAX_ALIGN is not 8 (bootutil_public.c).
var alignedMagicTail = [MagicSize - 2]byte{
	0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a,
}

// Magic returns the 16 magic bytes of a build whose BOOT_MAX_ALIGN is
// maxAlign: the legacy constant for 8, otherwise maxAlign as a little-endian
// uint16 (union boot_img_magic_t in bootutil_priv.h, on the little-endian
// targets MCUboot runs on) followed by 14 fixed bytes. A bootloader accepts
// only its own variant.
func Magic(maxAlign uint32) [MagicSize]byte {
	if maxAlign == 8 {
		return legacyMagic
	}
	var m [MagicSize]byte
	m[0], m[1] = byte(maxAlign), byte(maxAlign>>8)
	copy(m[2:], alignedMagicTail[:])
	return m
}

// Layout is one slot as an MCUboot build sees it: the fields that place the
// trailer. It is a value; Validate says whether MCUboot could run on it.
type Layout struct {
	// Mode is the build's upgrade mode.
	Mode Mode
	// SlotSize is the size of the slot (flash_area_get_size) in bytes.
	SlotSize uint32
	// Sectors are the slot's erase sectors from its start, in bytes; their sum
	// is SlotSize. Only the number of sectors and where the trailer starts
	// depend on them.
	Sectors []uint32
	// MaxAlign is BOOT_MAX_ALIGN (MCUBOOT_BOOT_MAX_ALIGN, 8 when undefined):
	// the distance between trailer fields and the magic's variant.
	MaxAlign uint32
	// WriteSize is the flash's write unit (flash_area_align): every field is
	// written as one unit of it, padded with Erased.
	WriteSize uint32
	// Erased is the flash's erased value (flash_area_erased_val), 0xff or 0x00.
	Erased byte
	// MaxImgSectors is BOOT_MAX_IMG_SECTORS, which sizes the swap status area.
	// Zero means Zephyr's CONFIG_BOOT_MAX_IMG_SECTORS_AUTO: the number of
	// Sectors.
	MaxImgSectors uint32
}

// Validate reports why MCUboot could not run on the layout, naming the field.
func (l Layout) Validate() error {
	if _, ok := modeNames[l.Mode]; !ok {
		return fmt.Errorf("mcuboot layout: mode %d is none of overwrite-only, swap-scratch, swap-move, swap-offset, direct-xip", int(l.Mode))
	}
	if !pow2(l.MaxAlign) || l.MaxAlign > 1<<15 {
		return fmt.Errorf("mcuboot layout: max_align %d is not a power of two up to 32768", l.MaxAlign)
	}
	if l.Mode.swaps() && (l.MaxAlign < 8 || l.MaxAlign > 32) {
		// _Static_assert in bootutil_public.h.
		return fmt.Errorf("mcuboot layout: max_align %d: %s needs 8 to 32", l.MaxAlign, l.Mode)
	}
	if !pow2(l.WriteSize) || l.WriteSize > l.MaxAlign {
		// boot_write_trailer asserts ALIGN_UP(len, write size) <= BOOT_MAX_ALIGN.
		return fmt.Errorf("mcuboot layout: write size %d must be a power of two no larger than max_align %d", l.WriteSize, l.MaxAlign)
	}
	if l.Mode.swaps() && l.WriteSize < 4 && l.MaxAlign < 4 {
		return fmt.Errorf("mcuboot layout: write size %d: the 4-byte swap size needs max_align >= 4", l.WriteSize)
	}
	if l.Erased != 0xff && l.Erased != 0x00 {
		return fmt.Errorf("mcuboot layout: erased value 0x%02x is neither 0xff nor 0x00", l.Erased)
	}
	if l.SlotSize%l.MaxAlign != 0 {
		return fmt.Errorf("mcuboot layout: slot size %d is not a multiple of max_align %d", l.SlotSize, l.MaxAlign)
	}
	var sum uint64
	for i, s := range l.Sectors {
		if s == 0 {
			return fmt.Errorf("mcuboot layout: sector %d has size 0", i)
		}
		sum += uint64(s)
	}
	if len(l.Sectors) > 0 && sum != uint64(l.SlotSize) {
		return fmt.Errorf("mcuboot layout: sectors add up to %d bytes, slot size is %d", sum, l.SlotSize)
	}
	if l.imgSectors() == 0 {
		return errors.New("mcuboot layout: neither sectors nor max_img_sectors given: the status area size is unknown")
	}
	if l.imgSectors() < uint32(len(l.Sectors)) {
		return fmt.Errorf("mcuboot layout: %d sectors exceed max_img_sectors %d", len(l.Sectors), l.MaxImgSectors)
	}
	if uint64(l.TrailerSize()) > uint64(l.SlotSize) {
		return fmt.Errorf("mcuboot layout: the trailer (%d bytes) does not fit the slot (%d bytes)", l.TrailerSize(), l.SlotSize)
	}
	return nil
}

func pow2(v uint32) bool { return v != 0 && bits.OnesCount32(v) == 1 }

func alignDown(v, a uint32) uint32 { return v &^ (a - 1) }
func alignUp(v, a uint32) uint32   { return (v + a - 1) &^ (a - 1) }

func (l Layout) imgSectors() uint32 {
	if l.MaxImgSectors != 0 {
		return l.MaxImgSectors
	}
	return uint32(len(l.Sectors))
}

// MagicAlignSize is BOOT_MAGIC_ALIGN_SIZE: the magic is written as one block
// of this size, erased padding first.
func (l Layout) MagicAlignSize() uint32 { return alignUp(MagicSize, l.MaxAlign) }

// MagicOff is boot_magic_off (bootutil_misc.h): the last 16 bytes.
func (l Layout) MagicOff() uint32 { return l.SlotSize - MagicSize }

// ImageOKOff is boot_image_ok_off (bootutil_misc.h).
func (l Layout) ImageOKOff() uint32 { return alignDown(l.MagicOff()-l.MaxAlign, l.MaxAlign) }

// CopyDoneOff is boot_copy_done_off (bootutil_misc.h).
func (l Layout) CopyDoneOff() uint32 { return l.ImageOKOff() - l.MaxAlign }

// SwapInfoOff is boot_swap_info_off (bootutil_public.c).
func (l Layout) SwapInfoOff() uint32 { return l.CopyDoneOff() - l.MaxAlign }

// UnprotectedTLVSizesOff is boot_unprotected_tlv_sizes_off (bootutil_misc.h),
// a field of swap-offset builds only; ok is false in other modes.
func (l Layout) UnprotectedTLVSizesOff() (off uint32, ok bool) {
	if l.Mode != SwapOffset {
		return 0, false
	}
	return l.SwapInfoOff() - l.MaxAlign, true
}

// SwapSizeOff is boot_swap_size_off (bootutil_misc.h).
func (l Layout) SwapSizeOff() uint32 {
	if off, ok := l.UnprotectedTLVSizesOff(); ok {
		return off - l.MaxAlign
	}
	return l.SwapInfoOff() - l.MaxAlign
}

// InfoSize is boot_trailer_info_sz (bootutil_area.c) without encryption keys:
// the fields from the swap size to the end of the slot.
func (l Layout) InfoSize() uint32 {
	n := 4*l.MaxAlign + l.MagicAlignSize()
	if l.Mode == SwapOffset {
		n += l.MaxAlign
	}
	return n
}

// StatusSize is boot_status_sz (bootutil_area.c): one record of WriteSize
// bytes per state per sector, for BOOT_MAX_IMG_SECTORS sectors.
func (l Layout) StatusSize() uint32 {
	return l.imgSectors() * l.Mode.statesPerSector() * l.WriteSize
}

// TrailerSize is boot_trailer_sz (bootutil_area.c) without encryption keys.
func (l Layout) TrailerSize() uint32 { return l.StatusSize() + l.InfoSize() }

// StatusOff is boot_status_off (bootutil_misc.c) for an image slot: where the
// swap status records start.
func (l Layout) StatusOff() uint32 { return l.SlotSize - l.TrailerSize() }

// TrailerSectors is how many sectors at the end of the slot hold part of the
// trailer, and so are erased with it; 0 when Sectors is empty.
func (l Layout) TrailerSectors() int {
	start := uint64(l.StatusOff())
	var off uint64
	for i, s := range l.Sectors {
		if start < off+uint64(s) {
			return len(l.Sectors) - i
		}
		off += uint64(s)
	}
	return 0
}
