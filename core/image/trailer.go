package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Trailer defaults, as imgtool's.
const (
	DefaultMaxAlign   = 8
	DefaultMaxSectors = 128
	trailerMagicSize  = 16
)

// bootMagic is the trailer magic for a maximum write alignment of 8
// (MCUboot's boot_img_magic).
var bootMagic = []byte{
	0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f,
	0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80,
}

// bootMagic2 ends the trailer magic for other maximum alignments; the first
// two bytes hold the alignment, little-endian.
var bootMagic2 = []byte{
	0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b,
	0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a,
}

// TrailerOptions describe the flash the image trailer is laid out for.
type TrailerOptions struct {
	// Align is the flash write size (1, 2, 4, 8, 16 or 32; 0 means 1).
	Align int
	// MaxAlign is the largest write size of the two slots (8, 16 or 32; 0
	// means max(8, Align)). It sets the size of each trailer field.
	MaxAlign int
	// MaxSectors is the size of the swap status area in sectors (0 means
	// 128, imgtool's default).
	MaxSectors int
	// OverwriteOnly drops the swap status area (MCUboot overwrite-only).
	OverwriteOnly bool
}

func (o TrailerOptions) normalize() (TrailerOptions, error) {
	if o.Align == 0 {
		o.Align = 1
	}
	switch o.Align {
	case 1, 2, 4, 8, 16, 32:
	default:
		return o, fmt.Errorf("trailer align %d: want 1, 2, 4, 8, 16 or 32 (the flash write size)", o.Align)
	}
	if o.MaxAlign == 0 {
		o.MaxAlign = max(DefaultMaxAlign, o.Align)
	}
	switch o.MaxAlign {
	case 8, 16, 32:
	default:
		return o, fmt.Errorf("trailer max align %d: want 8, 16 or 32", o.MaxAlign)
	}
	if o.MaxAlign < o.Align {
		return o, fmt.Errorf("trailer max align %d is below align %d; set it to at least %d", o.MaxAlign, o.Align, o.Align)
	}
	if o.MaxSectors == 0 {
		o.MaxSectors = DefaultMaxSectors
	}
	if o.MaxSectors < 0 {
		return o, fmt.Errorf("trailer max sectors %d: want a positive count", o.MaxSectors)
	}
	return o, nil
}

func alignUp(n, a int) int { return (n + a - 1) &^ (a - 1) }

// TrailerSize is the number of bytes at the end of a slot that MCUboot
// reserves for its trailer, computed as imgtool does when it pads: swap
// status (MaxSectors*3*Align), swap size, swap info, copy done and image ok
// (MaxAlign each), then the magic rounded up to MaxAlign.
func TrailerSize(o TrailerOptions) (int, error) {
	o, err := o.normalize()
	if err != nil {
		return 0, err
	}
	magic := alignUp(trailerMagicSize, o.MaxAlign)
	if o.OverwriteOnly {
		return o.MaxAlign*2 + magic, nil
	}
	return o.MaxSectors*3*o.Align + o.MaxAlign*4 + magic, nil
}

// TrailerMagic returns the 16 bytes that end a slot with a pending image.
func TrailerMagic(maxAlign int) []byte {
	if maxAlign == 0 || maxAlign == DefaultMaxAlign {
		return bytes.Clone(bootMagic)
	}
	b := binary.LittleEndian.AppendUint16(nil, uint16(maxAlign))
	return append(b, bootMagic2...)
}

// Trailer is the state at the end of a slot, as MCUboot reads it.
type Trailer struct {
	MaxAlign int
	ImageOK  byte
	CopyDone byte
	SwapInfo byte
	SwapSize uint32
}

// ReadTrailer reads the trailer at the end of the slotSize bytes of r. ok is
// false when the slot does not end with a trailer magic (no image pending).
func ReadTrailer(r io.ReaderAt, slotSize int64) (t Trailer, ok bool, err error) {
	if slotSize < trailerMagicSize {
		return t, false, nil
	}
	m := make([]byte, trailerMagicSize)
	if err := readFull(r, m, slotSize-trailerMagicSize); err != nil {
		return t, false, fmt.Errorf("read trailer magic: %w", err)
	}
	switch {
	case bytes.Equal(m, bootMagic):
		t.MaxAlign = DefaultMaxAlign
	case bytes.Equal(m[2:], bootMagic2):
		t.MaxAlign = int(binary.LittleEndian.Uint16(m))
		if t.MaxAlign != 16 && t.MaxAlign != 32 {
			return t, false, nil
		}
	default:
		return t, false, nil
	}
	magic := int64(alignUp(trailerMagicSize, t.MaxAlign))
	a := int64(t.MaxAlign)
	if slotSize < magic+4*a {
		return t, false, nil
	}
	f := make([]byte, 4*a)
	if err := readFull(r, f, slotSize-magic-4*a); err != nil {
		return t, false, fmt.Errorf("read trailer: %w", err)
	}
	// From the end: image_ok, copy_done, swap_info, swap_size, each in a
	// MaxAlign-sized field.
	t.ImageOK = f[3*a]
	t.CopyDone = f[2*a]
	t.SwapInfo = f[a]
	t.SwapSize = binary.LittleEndian.Uint32(f)
	return t, true, nil
}
