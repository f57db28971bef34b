package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/otaport/otaport/core/hal"
)

// CopyState is where a single-bank copy of ota over app stands.
type CopyState uint8

const (
	// CopyNone: no copy in progress.
	CopyNone CopyState = 0
	// CopyRunning: the bootloader has started to overwrite app; only
	// finishing the copy gives a bootable device, and the progress record
	// (Params.CopyDone) says where to resume.
	CopyRunning CopyState = 1
)

// Params are the boot parameters: what SetBoot asks of the bootloader and
// what the bootloader remembers between power-ons. They are the otaport form
// of the AliOS Things PARAMETER_1 record (upg_flag, boot_count, off_bp) and
// of MCUboot's image trailer (magic, image_ok, copy_done).
type Params struct {
	// Pending is set by SetBoot(test/permanent) until the bootloader acts on
	// it: PendingSlot is to be booted (dual-bank) or copied over app
	// (single-bank) in Mode.
	Pending     bool
	PendingSlot Slot
	Mode        hal.BootMode
	// ImageSize is the size of the pending image (header, payload, TLVs).
	ImageSize uint32
	// Active is the slot booted when nothing is pending or on trial: the
	// last permanent or confirmed image. Always app in single-bank.
	Active Slot
	// Running is the slot the bootloader booted at the last power-on.
	Running Slot
	// Trial is set while Running was booted in test mode and has not
	// confirmed itself; BootCount counts those boots.
	Trial     bool
	BootCount uint8
	// Confirmed: the running image is marked good.
	Confirmed bool
	// RolledBack: Rollback was asked for; the next power-on reports it.
	RolledBack bool
	// Rejected (dual-bank): the slot other than Active holds an image the
	// bootloader reverted or Rollback gave up. It is never booted again,
	// nor returned to by Rollback, until SetBoot asks for that slot again
	// (a new install).
	Rejected bool
	// Copy and CopyDone are the single-bank copy progress: CopyDone bytes
	// of app (a sector boundary) already hold the new image.
	Copy     CopyState
	CopyDone uint32
	// SecurityCounter is the lowest security counter a bootable image may
	// have; raised when an image is confirmed (MCUboot's hardware
	// rollback protection).
	SecurityCounter uint32
}

// defaultParams are the parameters of a device that has never been
// upgraded: the factory image in app, good.
func defaultParams() Params {
	return Params{Active: SlotApp, Running: SlotApp, Confirmed: true}
}

// reject makes the image si in slot s unbootable when the parameters
// reject that slot (Params.Rejected): the bootloader does not boot it and
// Rollback does not return to it.
func (p Params) reject(s Slot, si slotImage) slotImage {
	if !p.Rejected || s != p.Active.Other() || !si.bootable() {
		return si
	}
	return slotImage{img: si.img, err: fmt.Errorf("image %s in %s was reverted or rolled back: it boots again only when installed again",
		si.img.Version, s.Name())}
}

// paramsVersion is the first byte of an encoded Params.
const paramsVersion = 1

// paramsSize is the encoded size of Params.
const paramsSize = 24

const (
	flagPending = 1 << iota
	flagTrial
	flagConfirmed
	flagRolledBack
	flagRejected
)

// encode returns the 24-byte form of p (docs/boot-schemes.md):
//
//	0 version  1 flags  2 mode  3 pending slot  4 active  5 running
//	6 boot count  7 copy state  8 image size u32  12 copy done u32
//	16 security counter u32  20 reserved u32 (0)
func (p Params) encode() []byte {
	b := make([]byte, paramsSize)
	b[0] = paramsVersion
	var f byte
	if p.Pending {
		f |= flagPending
	}
	if p.Trial {
		f |= flagTrial
	}
	if p.Confirmed {
		f |= flagConfirmed
	}
	if p.RolledBack {
		f |= flagRolledBack
	}
	if p.Rejected {
		f |= flagRejected
	}
	b[1] = f
	b[2] = byte(p.Mode)
	b[3] = byte(p.PendingSlot)
	b[4] = byte(p.Active)
	b[5] = byte(p.Running)
	b[6] = p.BootCount
	b[7] = byte(p.Copy)
	binary.LittleEndian.PutUint32(b[8:], p.ImageSize)
	binary.LittleEndian.PutUint32(b[12:], p.CopyDone)
	binary.LittleEndian.PutUint32(b[16:], p.SecurityCounter)
	return b
}

// decodeParams reads what encode wrote. A record that passed its CRC and
// still fails here was written by a newer otaport: refuse it rather than
// guess.
func decodeParams(b []byte) (Params, error) {
	if len(b) != paramsSize {
		return Params{}, fmt.Errorf("boot parameters: %d bytes, want %d", len(b), paramsSize)
	}
	if b[0] != paramsVersion {
		return Params{}, fmt.Errorf("boot parameters: version %d, this otaport reads version %d", b[0], paramsVersion)
	}
	p := Params{
		Pending:         b[1]&flagPending != 0,
		Trial:           b[1]&flagTrial != 0,
		Confirmed:       b[1]&flagConfirmed != 0,
		RolledBack:      b[1]&flagRolledBack != 0,
		Rejected:        b[1]&flagRejected != 0,
		Mode:            hal.BootMode(b[2]),
		PendingSlot:     Slot(b[3]),
		Active:          Slot(b[4]),
		Running:         Slot(b[5]),
		BootCount:       b[6],
		Copy:            CopyState(b[7]),
		ImageSize:       binary.LittleEndian.Uint32(b[8:]),
		CopyDone:        binary.LittleEndian.Uint32(b[12:]),
		SecurityCounter: binary.LittleEndian.Uint32(b[16:]),
	}
	for _, s := range []Slot{p.PendingSlot, p.Active, p.Running} {
		if s > SlotOTA {
			return Params{}, fmt.Errorf("boot parameters: slot %d, want 0 (app) or 1 (ota)", s)
		}
	}
	if p.Copy > CopyRunning {
		return Params{}, fmt.Errorf("boot parameters: copy state %d unknown", p.Copy)
	}
	return p, nil
}
