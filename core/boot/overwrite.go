package boot

import (
	"crypto"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// MCUboot built with MCUBOOT_OVERWRITE_ONLY: app is its primary slot, ota its
// secondary. A request is boot_set_pending on ota's trailer; the simulated
// bootloader decides from the two trailers only (boot_swap_type_multi), and
// copies as boot_copy_image does in loader.c: the whole primary erased
// sector by sector, the secondary copied over it (its trailer with it: a
// test image arrives unconfirmed, a permanent one confirmed), then the
// secondary's first and last sectors erased. There is no status record: ota
// and its request are intact until the copy has ended, so a power cut
// anywhere before makes the next power-on start the copy again from the
// start. docs/boot-schemes.md, "Single bank (MCUboot overwrite-only)".

// overwriteOnly reports whether b runs MCUboot overwrite-only.
func (b *board) overwriteOnly() bool { return b.mcub != nil && b.mcub.mode == mcuboot.OverwriteOnly }

// overwriteBootState describes an overwrite-only board: app runs; it is
// confirmed unless its trailer says a test request brought it (magic good,
// image_ok unset), the condition boot_update_hw_rollback_protection raises
// the counter on; ota is pending while its trailer holds a request over an
// image that verifies.
func overwriteBootState(pri, sec mcuboot.State, p Params, check func(s Slot, minCounter uint32) (slotImage, error)) (hal.BootState, error) {
	st := hal.BootState{SecurityCounter: p.SecurityCounter}
	for _, s := range []Slot{SlotApp, SlotOTA} {
		si, err := check(s, p.SecurityCounter)
		if err != nil {
			return st, err
		}
		ss := hal.SlotState{Name: s.Name(), Bootable: si.bootable(), Active: s == SlotApp}
		if s == SlotApp {
			ss.Confirmed = si.bootable() && overwriteConfirmed(pri)
		} else {
			ss.Pending = swapPending(sec) && si.bootable()
		}
		if si.bootable() {
			ss.Version = si.version()
		}
		st.Slots = append(st.Slots, ss)
	}
	return st, nil
}

// overwriteConfirmed reports whether the image in app counts as confirmed:
// anything but a trailer that a test request brought (magic good, image_ok
// unset). A torn image_ok (neither set nor unset) counts: MCUboot's
// boot_set_confirmed writes it no more, and nothing will ever take the image
// back.
func overwriteConfirmed(pri mcuboot.State) bool {
	return pri.Magic != mcuboot.MagicGood || pri.ImageOK != mcuboot.FlagUnset
}

// bootOverwrite is boot_go of an overwrite-only build for one image.
func bootOverwrite(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	res := hal.RebootResult{Action: ActionNone}
	p := s.params()
	pri, sec, err := b.trailers(dev)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	if t := mcuboot.Decide(mcuboot.OverwriteOnly, pri, sec); t != mcuboot.SwapNone {
		ok, why, err := b.validateOverwrite(dev, opts.Keys, p.SecurityCounter)
		if err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		if !ok {
			res.Detail = "upgrade not applied: " + why
		} else {
			if err := b.copyOverwrite(dev); err != nil {
				return res, fmt.Errorf("boot: %w", err)
			}
			// MCUBOOT_HW_ROLLBACK_PROT: boot_copy_image raises the counter
			// to the new image's right after the copy, test or not: the
			// old image is gone, nothing below it can come back.
			app, err := checkSlot(dev, b, SlotApp, nil, 0)
			if err != nil {
				return res, fmt.Errorf("boot: %w", err)
			}
			if app.img != nil {
				p.SecurityCounter = max(p.SecurityCounter, app.img.SecurityCounter)
				if err := s.setParams(p); err != nil {
					return res, fmt.Errorf("boot: record the security counter: %w", err)
				}
			}
			if err := b.scrubSecondary(dev); err != nil {
				return res, fmt.Errorf("boot: %w", err)
			}
			res.Action = ActionCopied
		}
	}
	counter := p.SecurityCounter
	app, err := b.bootPrimary(dev, opts.Keys, &p)
	if err != nil {
		return res, err
	}
	if p.SecurityCounter != counter {
		if err := s.setParams(p); err != nil {
			return res, fmt.Errorf("boot: record the boot: %w", err)
		}
	}
	res.Slot, res.Version = hal.PartApp, app.version()
	return res, nil
}

// validateOverwrite is boot_validate_slot on the secondary in an
// overwrite-only build: an erased header is no image (the trailer stays:
// only swap builds erase it then); an image that fails its hash, signature
// or security counter, or does not fit app, has the whole slot erased.
func (b *board) validateOverwrite(dev flash.Device, keys []crypto.PublicKey, minCounter uint32) (ok bool, why string, err error) {
	erased, err := b.headerErased(dev, SlotOTA)
	if err != nil {
		return false, "", err
	}
	if erased {
		return false, "ota holds no image", nil
	}
	si, err := checkSlot(dev, b, SlotOTA, keys, minCounter)
	if err != nil {
		return false, "", err
	}
	if si.bootable() && uint64(si.img.TotalSize) > b.slots[SlotApp].Size {
		si.err = fmt.Errorf("image %s of %d bytes does not fit app (%d bytes)", si.img.Version, si.img.TotalSize, b.slots[SlotApp].Size)
	}
	if si.bootable() {
		return true, "", nil
	}
	if err := b.scrambleSlot(dev, SlotOTA); err != nil {
		return false, "", err
	}
	return false, si.err.Error() + "; MCUboot erased ota", nil
}

// copyOverwrite is the copy of boot_copy_image: every sector of app erased
// from the first (boot_erase_region), then app's size of ota copied over it
// (boot_copy_region), decrypting an encrypted image's payload as MCUboot
// built with MCUBOOT_ENC_IMAGES does when it copies out of the secondary:
// the key unwrapped from ota's TLV (boot_enc_load) once app is erased, the
// header and the TLVs copied as they are, so that app keeps the encrypted
// flag and the key TLV over the plain payload (see encryptedPlain). A
// sector that is all erased once decrypted is not programmed, which leaves
// the same bytes; it is tested after the decryption, since an erased
// sector of ciphertext decrypts to bytes that must be written.
func (b *board) copyOverwrite(dev flash.Device) error {
	app, ota := b.slots[SlotApp], b.slots[SlotOTA]
	for _, sec := range b.sectorsCovering(app, app.Size) {
		if err := dev.Erase(sec.off, sec.size); err != nil {
			return flashErr(fmt.Sprintf("copy: erase app at 0x%x", sec.off), err)
		}
	}
	c, err := b.overwriteCipher(dev)
	if err != nil {
		return err
	}
	for _, sec := range b.sectorsCovering(app, app.Size) {
		rel := uint64(sec.off) - app.Offset
		buf := make([]byte, sec.size)
		if _, err := dev.ReadAt(buf, int64(ota.Offset+rel)); err != nil {
			return flashErr(fmt.Sprintf("copy: read ota at 0x%x", ota.Offset+rel), err)
		}
		if c != nil {
			c.XORKeyStreamAt(buf, buf, int64(rel))
		}
		if isErased(buf, b.geo.EraseValue) {
			continue
		}
		if err := dev.Program(sec.off, buf); err != nil {
			return flashErr(fmt.Sprintf("copy: program app at 0x%x", sec.off), err)
		}
	}
	return nil
}

// overwriteCipher is the AES-CTR of the image in ota when it is encrypted
// and its key unwraps with the board's key, else nil (copied as it is).
func (b *board) overwriteCipher(r io.ReaderAt) (*image.PayloadCipher, error) {
	if b.decKey == nil {
		return nil, nil
	}
	ota := b.slots[SlotOTA]
	v := &sectorView{r: r, sz: ota.Size, n: 1, at: func(int) uint64 { return ota.Offset }}
	return b.imageCipher(v)
}

// scrubSecondary is the end of boot_copy_image: the secondary's first
// sector (the image header) and its last (the trailer's magic) erased, so
// that the request is gone and ota holds no image.
func (b *board) scrubSecondary(dev flash.Device) error {
	first, trl := b.mcub.first[SlotOTA], b.mcub.trailer[SlotOTA]
	last := trl[len(trl)-1]
	for _, sec := range []span{first, last} {
		if err := dev.Erase(sec.off, sec.size); err != nil {
			return flashErr(fmt.Sprintf("copy: erase ota at 0x%x", sec.off), err)
		}
	}
	return nil
}

// setBootOverwrite is SetBoot on an overwrite-only board (under the lock).
func (pl *Platform) setBootOverwrite(req hal.BootRequest) error {
	p := pl.s.params()
	switch req.Mode {
	case hal.BootTest, hal.BootPermanent:
		if err := pl.checkTrailerRequest(req, p); err != nil {
			return err
		}
		if err := pl.writeRequest(req.Mode == hal.BootPermanent, false); err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
		return nil
	case hal.BootConfirm:
		return pl.confirmTrailer(p)
	}
	return hal.Errorf(hal.CodeInvalid, "set boot: mode %v: want test, permanent or confirm", req.Mode)
}

// rollbackOverwrite is Rollback on an overwrite-only board (under the
// lock): a request not yet copied is cancelled; after the copy there is no
// old image to return to.
func (pl *Platform) rollbackOverwrite() error {
	_, sec, err := pl.trailers()
	if err != nil {
		return err
	}
	if swapPending(sec) {
		// A request over no image (its header erased by a cancel that a
		// power cut stopped, or by the end of a copy) is none: MCUboot
		// drops it, and Describe does not report it.
		si, err := pl.check(SlotOTA, pl.s.params().SecurityCounter)
		if err != nil {
			return err
		}
		if si.bootable() {
			return pl.cancelRequest()
		}
	}
	return hal.Errorf(hal.CodeUnsupported, "board %q runs MCUboot overwrite-only: nothing is pending, and once ota has been copied over app there is no old image to return to", pl.b.layout.Board)
}
