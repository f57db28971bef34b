package mcuboot

import (
	"errors"
	"fmt"
)

// MagicState is what MCUboot makes of a trailer's magic (BOOT_MAGIC_*), with
// MCUboot's numbers.
type MagicState uint8

// The magic states a trailer can read as.
const (
	MagicGood  MagicState = 1 // the 16 bytes equal the build's magic
	MagicBad   MagicState = 2 // neither the magic nor erased
	MagicUnset MagicState = 3 // all 16 bytes erased
)

// Flag is what MCUboot makes of a one-byte flag, copy_done or image_ok
// (BOOT_FLAG_*), with MCUboot's numbers.
type Flag uint8

// The flag states. FlagSet's number, 1, is also the only value ever written.
const (
	FlagSet   Flag = 1 // the byte is 0x01
	FlagBad   Flag = 2 // neither 0x01 nor erased
	FlagUnset Flag = 3 // the byte is erased
)

// SwapType is BOOT_SWAP_TYPE_*, with MCUboot's numbers.
type SwapType uint8

// The swap types. Test, Perm and Revert are stored in swap_info; the table
// gives None, Test, Perm or Revert; Fail and Panic come from the bootloader.
const (
	SwapNone   SwapType = 1
	SwapTest   SwapType = 2
	SwapPerm   SwapType = 3
	SwapRevert SwapType = 4
	SwapFail   SwapType = 5
	SwapPanic  SwapType = 0xff
)

// State is struct boot_swap_state: a slot's trailer as boot_read_swap_state
// reads it.
type State struct {
	Magic    MagicState
	SwapType SwapType // the low nibble of swap_info; 0 is possible (see Decode)
	ImageNum uint8    // the high nibble of swap_info
	CopyDone Flag
	ImageOK  Flag
}

// Write is one flash program operation at Off bytes from the start of the
// slot. Every Write is whole units of the layout's write size at an aligned
// offset, and lands on erased bytes when made from the state it was computed
// from.
type Write struct {
	Off  uint32
	Data []byte
}

// Errors of boot_set_next, with the MCUboot code each stands for.
var (
	// ErrBadImage is BOOT_EBADIMAGE: a request for a slot whose magic is bad.
	ErrBadImage = errors.New("mcuboot: the slot's trailer magic is neither the bootloader's nor erased (BOOT_EBADIMAGE)")
	// ErrBadVect is BOOT_EBADVECT: a confirmation of a primary slot whose magic is bad.
	ErrBadVect = errors.New("mcuboot: the primary slot's trailer magic is neither the bootloader's nor erased (BOOT_EBADVECT)")
)

// tail checks that b is the slot's last InfoSize bytes and returns a reader
// of it by slot offset.
func (l Layout) tail(b []byte) (func(off, n uint32) []byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	if uint32(len(b)) != l.InfoSize() {
		return nil, fmt.Errorf("mcuboot trailer: got %d bytes, want the slot's last %d", len(b), l.InfoSize())
	}
	base := l.SlotSize - l.InfoSize()
	return func(off, n uint32) []byte { return b[off-base : off-base+n] }, nil
}

func (l Layout) flag(b byte) Flag {
	switch b {
	case l.Erased:
		return FlagUnset
	case byte(FlagSet):
		return FlagSet
	default:
		return FlagBad
	}
}

// Decode is boot_read_swap_state: tail is the slot's last InfoSize bytes.
// As in MCUboot, an erased swap_info or one whose type is above Revert reads
// as None, image 0; any other low nibble is returned as it is, so a 0x00
// swap_info on 0xff-erased flash reads as type 0.
func (l Layout) Decode(tail []byte) (State, error) {
	at, err := l.tail(tail)
	if err != nil {
		return State{}, err
	}
	var st State
	magic := at(l.MagicOff(), MagicSize)
	want := Magic(l.MaxAlign)
	switch {
	case allBytes(magic, l.Erased):
		st.Magic = MagicUnset
	case string(magic) == string(want[:]):
		st.Magic = MagicGood
	default:
		st.Magic = MagicBad
	}
	info := at(l.SwapInfoOff(), 1)[0]
	st.SwapType, st.ImageNum = SwapType(info&0x0f), info>>4
	if info == l.Erased || st.SwapType > SwapRevert {
		st.SwapType, st.ImageNum = SwapNone, 0
	}
	st.CopyDone = l.flag(at(l.CopyDoneOff(), 1)[0])
	st.ImageOK = l.flag(at(l.ImageOKOff(), 1)[0])
	return st, nil
}

func allBytes(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return true
}

// MagicWrite is boot_write_magic: one block of MagicAlignSize bytes ending at
// the end of the slot, erased padding then the magic.
func (l Layout) MagicWrite() Write {
	n := l.MagicAlignSize()
	d := make([]byte, n)
	for i := range d {
		d[i] = l.Erased
	}
	m := Magic(l.MaxAlign)
	copy(d[n-MagicSize:], m[:])
	return Write{Off: alignDown(l.MagicOff(), l.MaxAlign), Data: d}
}

// field is boot_write_trailer: the value padded with erased bytes to a whole
// write unit.
func (l Layout) field(off uint32, v []byte) Write {
	d := make([]byte, alignUp(uint32(len(v)), l.WriteSize))
	copy(d, v)
	for i := len(v); i < len(d); i++ {
		d[i] = l.Erased
	}
	return Write{Off: off, Data: d}
}

// ImageOKWrite is boot_write_image_ok.
func (l Layout) ImageOKWrite() Write { return l.field(l.ImageOKOff(), []byte{byte(FlagSet)}) }

// CopyDoneWrite is boot_write_copy_done.
func (l Layout) CopyDoneWrite() Write { return l.field(l.CopyDoneOff(), []byte{byte(FlagSet)}) }

// SwapInfoWrite is boot_write_swap_info: (image << 4) | type. MCUboot asserts
// both below 0xf; so does this, with an error.
func (l Layout) SwapInfoWrite(t SwapType, image uint8) (Write, error) {
	if t >= 0xf || image >= 0xf {
		return Write{}, fmt.Errorf("mcuboot swap_info: swap type %d and image %d must both be below 15", t, image)
	}
	return l.field(l.SwapInfoOff(), []byte{image<<4 | byte(t)}), nil
}

// SwapSizeWrite is boot_write_swap_size: the number of bytes the swap moves,
// a little-endian uint32.
func (l Layout) SwapSizeWrite(size uint32) Write {
	return l.field(l.SwapSizeOff(), []byte{byte(size), byte(size >> 8), byte(size >> 16), byte(size >> 24)})
}

// SetPending is boot_set_pending_multi(image, permanent) on the secondary
// slot whose trailer's last InfoSize bytes are tail: the writes to make, in
// MCUboot's order.
func (l Layout) SetPending(tail []byte, image uint8, permanent bool) ([]Write, error) {
	return l.SetNext(tail, image, false, permanent)
}

// SetConfirmed is boot_set_confirmed_multi on the primary slot whose
// trailer's last InfoSize bytes are tail.
func (l Layout) SetConfirmed(tail []byte, image uint8) ([]Write, error) {
	return l.SetNext(tail, image, true, true)
}

// SetNext is boot_set_next (bootutil_public.c): active is true for the slot
// that runs (a confirmation), confirm for a permanent request. image is the
// image the slot belongs to (flash_area_to_image), stored in swap_info.
//
// The order of the writes is what makes a request power-safe: the magic goes
// first and the swap-type table ignores swap_info, so a cut after the magic
// of a permanent request leaves a test request, and a cut before it leaves
// no request at all.
func (l Layout) SetNext(tail []byte, image uint8, active, confirm bool) ([]Write, error) {
	st, err := l.Decode(tail)
	if err != nil {
		return nil, err
	}
	if active {
		confirm = true
	}
	if l.Mode == DirectXIP {
		return l.setNextDirectXIP(st, confirm)
	}
	switch st.Magic {
	case MagicGood:
		// Not active: a request is already there (a test request cannot be
		// made permanent). Active: confirm, without looking at copy_done, so
		// that an image programmed with its trailer can confirm itself.
		if active && st.ImageOK == FlagUnset {
			return []Write{l.ImageOKWrite()}, nil
		}
		return nil, nil
	case MagicUnset:
		if active {
			return nil, nil
		}
		ws := []Write{l.MagicWrite()}
		t := SwapTest
		if confirm {
			ws = append(ws, l.ImageOKWrite())
			t = SwapPerm
		}
		si, err := l.SwapInfoWrite(t, image)
		if err != nil {
			return nil, err
		}
		return append(ws, si), nil
	default:
		if active {
			return nil, ErrBadVect
		}
		return nil, ErrBadImage
	}
}

// setNextDirectXIP is the boot_set_next of a library built with
// MCUBOOT_BOOTUTIL_LIB_FOR_DIRECT_XIP: the magic marks a slot the bootloader
// may try, copy_done then image_ok make it permanent.
func (l Layout) setNextDirectXIP(st State, confirm bool) ([]Write, error) {
	var ws []Write
	switch st.Magic {
	case MagicUnset:
		ws = append(ws, l.MagicWrite())
	case MagicGood:
	default:
		return nil, ErrBadImage
	}
	if confirm {
		if st.CopyDone == FlagUnset {
			ws = append(ws, l.CopyDoneWrite())
		}
		if st.ImageOK == FlagUnset {
			ws = append(ws, l.ImageOKWrite())
		}
	}
	return ws, nil
}

// Decide is the table of boot_swap_type_multi (boot_swap_tables in
// bootutil_public.c): the swap the bootloader starts from the states of the
// primary and secondary slots. Rows are tried in order and the first match
// wins; the first row exists in swap-offset builds only, and only they compare
// the secondary's copy_done. A secondary slot that cannot be read counts as
// erased (State{MagicUnset, SwapNone, 0, FlagUnset, FlagUnset}).
func Decide(mode Mode, primary, secondary State) SwapType {
	if secondary.Magic == MagicGood {
		switch {
		case mode == SwapOffset && secondary.ImageOK == FlagUnset && secondary.CopyDone == FlagSet:
			return SwapRevert
		case secondary.ImageOK == FlagUnset:
			return SwapTest
		case secondary.ImageOK == FlagSet:
			return SwapPerm
		}
	}
	if primary.Magic == MagicGood && primary.ImageOK == FlagUnset && primary.CopyDone == FlagSet {
		return SwapRevert
	}
	return SwapNone
}
