// Package hal is the port contract of otaport: the Go form of the AliOS Things
// platform HAL (hal_ota_init, _write, _read, _set_boot, _rollback), the board
// layout types a port describes itself with and the one set of rules a valid
// layout follows (Layout.Validate, with SectorMap for its arithmetic), and the
// error codes that cross every boundary.
//
// It is not where upgrade logic lives (that is core/engine), nor where flash
// is emulated (core/flash), nor how a port runs as its own process (that is
// core/hal/plugin): a port implements Platform, the core consumes it. hal is a
// leaf: it imports nothing of otaport's and nothing outside the standard
// library, so a package that only needs the layout types pulls in nothing
// else.
package hal

import (
	"context"
	"fmt"
)

// Scheme is how a board boots a new image.
type Scheme string

const (
	// SingleBank: the image is downloaded to the ota partition and the
	// bootloader copies it over app (AliOS "ota temp partition", MCUboot
	// "overwrite only"). No rollback once copied.
	SingleBank Scheme = "single-bank"
	// DualBank: app and ota are slots A and B; the bootloader boots either.
	DualBank Scheme = "dual-bank"
	// Swap: app and ota are MCUboot's primary and secondary slots. The
	// bootloader swaps their contents sector by sector, with a status that
	// survives a power cut, runs the new image from app on trial, and swaps
	// back at the next power-on an image that did not confirm itself. The
	// image always runs from app; ota keeps the one to return to.
	Swap Scheme = "swap"
)

// Reverts reports whether the scheme keeps the previous image after an
// upgrade, so that a trial can fall back and a confirmed image can roll
// back: dual-bank and swap, not single-bank.
func (s Scheme) Reverts() bool { return s == DualBank || s == Swap }

// Bootloader names the second-stage bootloader a board runs and how it is
// built: it decides the bytes of every boot request (whose format the
// params partition or the slots' trailers hold) and the scheme.
type Bootloader struct {
	// Name is otaport (otaport's own boot record), mcuboot or esp-idf.
	Name string `json:"name"`
	// Mode is MCUboot's upgrade mode (overwrite-only, swap-move,
	// swap-scratch, swap-offset, direct-xip); empty for the others.
	Mode string `json:"mode,omitempty"`
}

// Bootloader names and MCUboot modes, as board files spell them.
const (
	BootloaderOtaport = "otaport"
	BootloaderMCUboot = "mcuboot"
	BootloaderESPIDF  = "esp-idf"

	ModeOverwriteOnly = "overwrite-only"
	ModeSwapMove      = "swap-move"
	ModeSwapScratch   = "swap-scratch"
	ModeSwapOffset    = "swap-offset"
	ModeDirectXIP     = "direct-xip"
)

// String returns the bootloader as a board file writes it: "mcuboot
// swap-move", "esp-idf".
func (b Bootloader) String() string {
	if b.Mode == "" {
		return b.Name
	}
	return b.Name + " " + b.Mode
}

// SchemeOf returns the scheme a bootloader implies, and false for a
// bootloader or mode this version does not know. otaport's own bootloader
// implies none: its board names the scheme.
func SchemeOf(b Bootloader) (Scheme, bool) {
	switch b.Name {
	case BootloaderMCUboot:
		switch b.Mode {
		case ModeOverwriteOnly:
			return SingleBank, true
		case ModeSwapMove, ModeSwapScratch, ModeSwapOffset:
			return Swap, true
		case ModeDirectXIP:
			return DualBank, true
		}
	case BootloaderESPIDF:
		if b.Mode == "" {
			return DualBank, true
		}
	}
	return "", false
}

// Well-known partition names. Every board has all four.
const (
	PartBootloader = "bootloader"
	PartParams     = "params"
	PartApp        = "app"
	PartOTA        = "ota"
)

// SectorRun is Count consecutive erase sectors of Size bytes.
type SectorRun struct {
	Count int    `json:"count"`
	Size  uint64 `json:"size"`
}

// FlashGeometry is the shape of a board's flash as its datasheet gives it.
type FlashGeometry struct {
	// Base is the address the flash is mapped at; offsets are relative to it.
	Base uint64 `json:"base"`
	// Size is the total size in bytes.
	Size uint64 `json:"size"`
	// Sectors lists the erase units in address order; uniform flash has one run.
	Sectors []SectorRun `json:"sectors"`
	// WriteAlign is the smallest programmable unit in bytes.
	WriteAlign uint32 `json:"write_align"`
	// EraseValue is what an erased byte reads as (0xFF on most NOR, 0x00 on STM32L0/L1).
	EraseValue byte `json:"erase_value"`
}

// Partition is a named region of the flash, offsets relative to FlashGeometry.Base.
type Partition struct {
	Name   string `json:"name"`
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
}

// End is the first offset past the partition.
func (p Partition) End() uint64 { return p.Offset + p.Size }

// Layout is the static description of a board: what a port is generated from.
type Layout struct {
	Board  string `json:"board"`
	Vendor string `json:"vendor,omitempty"`
	SoC    string `json:"soc,omitempty"`
	Scheme Scheme `json:"scheme"`
	// Bootloader is the bootloader the board runs; the zero value is
	// otaport's own, with Scheme as the board names it.
	Bootloader Bootloader    `json:"bootloader,omitzero"`
	Flash      FlashGeometry `json:"flash"`
	Partitions []Partition   `json:"partitions"`
	// Signature is the image signature type the board expects
	// (ed25519, ecdsa-p256, rsa-2048, rsa-3072).
	Signature string `json:"signature"`
	// BootAttempts is how many unconfirmed boots a dual-bank bootloader
	// allows a new image before it falls back (1 to 3; 1 as MCUboot's test mode).
	BootAttempts int `json:"boot_attempts,omitempty"`
}

// Partition returns the partition called name.
func (l Layout) Partition(name string) (Partition, bool) {
	for _, p := range l.Partitions {
		if p.Name == name {
			return p, true
		}
	}
	return Partition{}, false
}

// InitRequest prepares the update slot for an image.
type InitRequest struct {
	// Size is the full size of the image that will be written, in bytes.
	Size uint64 `json:"size"`
	// Resume keeps what is already in the slot (a download continues);
	// otherwise the part of the slot the image needs is erased.
	Resume bool `json:"resume,omitempty"`
}

// BootMode says how the bootloader is to treat an image.
type BootMode int

const (
	// BootTest boots the new image once (or BootAttempts times) and falls
	// back unless it confirms itself.
	BootTest BootMode = iota + 1
	// BootPermanent makes the new image the one to boot from now on.
	BootPermanent
	// BootConfirm marks the running image good (MCUboot's image_ok).
	BootConfirm
)

func (m BootMode) String() string {
	switch m {
	case BootTest:
		return "test"
	case BootPermanent:
		return "permanent"
	case BootConfirm:
		return "confirm"
	}
	return fmt.Sprintf("BootMode(%d)", int(m))
}

// BootRequest is what SetBoot is asked to do.
type BootRequest struct {
	Mode BootMode `json:"mode"`
	// Size is the size of the image in the update slot (header, payload and
	// TLVs), so the bootloader knows how much to copy or check.
	Size uint64 `json:"size,omitempty"`
}

// SlotState is what the bootloader knows of one slot.
type SlotState struct {
	Name      string `json:"name"`      // partition name (app, ota)
	Version   string `json:"version"`   // image version, "" if no valid image
	Bootable  bool   `json:"bootable"`  // holds an image that verifies
	Active    bool   `json:"active"`    // the slot that runs now
	Pending   bool   `json:"pending"`   // will be tried at the next boot
	Confirmed bool   `json:"confirmed"` // image marked good
}

// BootState is the run-time state a port reports beside its layout.
type BootState struct {
	Slots []SlotState `json:"slots"`
	// Trial is true while the running image is on trial (booted in test
	// mode and not yet confirmed).
	Trial bool `json:"trial,omitempty"`
	// BootCount is the number of boots of an unconfirmed image so far.
	BootCount int `json:"boot_count,omitempty"`
	// SecurityCounter is the lowest security counter an image may carry
	// and still boot (MCUboot's hardware security counter): the bootloader
	// raises it to an image's counter when it makes that image permanent,
	// and nothing else keeps a copy of it. 0 where the bootloader keeps
	// none.
	SecurityCounter uint32 `json:"security_counter,omitempty"`
}

// Info is what Describe returns.
type Info struct {
	Layout Layout    `json:"layout"`
	Boot   BootState `json:"boot"`
	// Capabilities lists the optional parts of the contract the port has
	// ("kv", "read-slot", "reboot").
	Capabilities []string `json:"capabilities,omitempty"`
}

// Platform is the port contract: the five functions of the AliOS Things
// porting guide plus Describe. Offsets of Write and Read are relative to the
// update slot (the ota partition in single-bank and swap, the inactive slot
// in dual-bank), as hal_ota_write and hal_ota_read are.
type Platform interface {
	// Describe returns the board's layout and boot state.
	Describe(ctx context.Context) (Info, error)
	// Init prepares the update slot for an image of req.Size bytes.
	Init(ctx context.Context, req InitRequest) error
	// Write programs data at off in the update slot. off must be a multiple
	// of the board's write alignment; a short final chunk is padded with the
	// erase value by the port.
	Write(ctx context.Context, off uint64, data []byte) error
	// Read reads n bytes at off in the update slot.
	Read(ctx context.Context, off uint64, n int) ([]byte, error)
	// SetBoot tells the bootloader what to do at the next boot.
	SetBoot(ctx context.Context, req BootRequest) error
	// Rollback returns to the previous image (dual-bank, swap), or cancels
	// a pending upgrade (single-bank, before the copy).
	Rollback(ctx context.Context) error
}

// KV is the optional key-value store a port keeps in its params partition,
// where state survives a reboot. Set must be atomic across a power cut: after
// it, Get returns either the old value or the new one.
type KV interface {
	// Get returns the value of key; ok is false when it is not set.
	Get(ctx context.Context, key string) (value []byte, ok bool, err error)
	// Set stores value under key; a nil value deletes the key.
	Set(ctx context.Context, key string, value []byte) error
}

// SlotReader is the optional capability to read an image slot by name,
// the running one included, where Platform.Read reaches only the update
// slot. The engine needs it to apply a delta image: the patch rebuilds the
// new image from the one that runs, read from its slot while the new one
// is written to the update slot. Which slot runs is what
// BootState.Running says: app on single-bank (the bootloader copied the
// image there) and on swap (MCUboot runs the primary slot), app or ota on
// dual-bank.
//
// It is its own interface, beside Platform rather than a slot argument of
// Read, so that the AliOS-shaped Platform stays the five functions of
// hal_ota_* and a port that cannot read its running slot (code in
// external flash behind a cache it cannot bypass) still takes full
// images: a port without it lists no "read-slot" capability and is sent
// full images. It is declared here, not in the engine that consumes it,
// because the plugin wire, the emulated device, the C port and the
// conformance kit implement or check it too, as they do KV.
type SlotReader interface {
	// ReadSlot reads n bytes at off in the partition called slot (app or
	// ota, as Partition.Name and SlotState.Name spell them); another name
	// is ErrInvalid, a read past the partition ErrOutOfBounds.
	ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error)
}

// CapReadSlot is the capability a port with SlotReader lists in
// Info.Capabilities.
const CapReadSlot = "read-slot"

// RebootResult is what the bootloader did at a (simulated) power-on.
type RebootResult struct {
	// Slot is the partition that now runs.
	Slot string `json:"slot"`
	// Version is the version of the image that now runs.
	Version string `json:"version"`
	// Action is what the bootloader did: "none", "copied", "switched",
	// "trial", "reverted", "rolled-back".
	Action string `json:"action"`
	// Detail explains a fallback ("image in ota fails its signature").
	Detail string `json:"detail,omitempty"`
}

// Rebooter is the optional capability to reset the device. On the flash
// emulator it runs the simulated bootloader; on hardware it resets the chip.
type Rebooter interface {
	Reboot(ctx context.Context) (RebootResult, error)
}
