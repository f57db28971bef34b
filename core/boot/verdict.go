package boot

import (
	"fmt"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// A port written in another language (ports/cport, the C port) keeps the
// params partition and the slots itself but leaves the image's crypto and
// the key set to the bootloader, which has them: CheckSlot and CheckKeySet
// are the two questions it asks, answered exactly as Platform answers them
// for itself.

// SlotVerdict is what the bootloader makes of the image in one slot.
type SlotVerdict struct {
	// Parses: the slot holds an image whose header and TLVs parse, so
	// TotalSize and SecurityCounter are its own.
	Parses bool
	// Bootable: it verifies (hash, signature, the board's algorithm). The
	// security counter is not compared: that is the caller's, with its
	// own boot parameters.
	Bootable        bool
	TotalSize       uint32
	SecurityCounter uint32
	// Reason says why it is not bootable.
	Reason string
}

// CheckSlot verifies the image in slot s of dev as Platform.SetBoot and
// Rollback do, with the keys the bootloader of l uses now (the key set in
// params on otaport's bootloader, else opts.Keys). The error is a failure
// to read the flash, never an invalid image.
func CheckSlot(dev flash.Device, l hal.Layout, s Slot, opts Options) (SlotVerdict, error) {
	pl, err := NewPlatform(l, dev, opts)
	if err != nil {
		return SlotVerdict{}, err
	}
	si, err := pl.check(s, 0)
	if err != nil {
		return SlotVerdict{}, err
	}
	v := SlotVerdict{Parses: si.img != nil, Bootable: si.bootable()}
	if si.img != nil {
		v.TotalSize, v.SecurityCounter = uint32(si.img.TotalSize), si.img.SecurityCounter
	}
	if si.err != nil {
		v.Reason = si.err.Error()
	}
	return v, nil
}

// CheckKeySet refuses value as the key set to store in params of dev for
// the reasons Platform.Set does (a set the bootloader of l reads that does
// not parse, that is removed, that comes while a boot request or a trial is
// pending, or under which the running image does not verify).
func CheckKeySet(dev flash.Device, l hal.Layout, value []byte, opts Options) error {
	pl, err := NewPlatform(l, dev, opts)
	if err != nil {
		return fmt.Errorf("check the key set: %w", err)
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.checkKeySet(value)
}
