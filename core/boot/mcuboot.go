package boot

import (
	"crypto"
	"fmt"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// mcubGeo is where MCUboot's image trailer sits in each slot of a board that
// runs MCUboot, whatever its mode: app is MCUboot's primary slot and ota its
// secondary. Every boot request on such a board is that trailer, written
// through core/bootfmt/mcuboot; the mode decides what the simulated
// bootloader does with it (swap.go, overwrite.go).
type mcubGeo struct {
	mode mcuboot.Mode
	// lay is each slot's trailer layout, by Slot.
	lay [2]mcuboot.Layout
	// trailer lists, by Slot, the erase sectors that hold any of the
	// slot's trailer (boot_trailer_sz from the end), from the first.
	trailer [2][]span
	// first is each slot's first sector: what holds the image header.
	first [2]span
	// maxImage is the most bytes an image may take: every sector of each
	// slot before its trailer's, whichever slot has fewer (for swap-move,
	// swapGeo.maxImage is smaller still).
	maxImage uint64
}

// mcubootModes are the MCUboot modes the simulated bootloader runs.
var mcubootModes = map[string]mcuboot.Mode{
	hal.ModeOverwriteOnly: mcuboot.OverwriteOnly,
	hal.ModeSwapMove:      mcuboot.SwapMove,
	hal.ModeDirectXIP:     mcuboot.DirectXIP,
}

// newMCUbootGeo returns the trailer geometry of a board whose bootloader is
// MCUboot, nil for any other bootloader. BOOT_MAX_ALIGN is the write unit,
// at least 8 (MCUboot's default); BOOT_MAX_IMG_SECTORS the larger slot's
// sector count, as Zephyr's CONFIG_BOOT_MAX_IMG_SECTORS_AUTO takes it.
func newMCUbootGeo(b *board) (*mcubGeo, error) {
	bl := b.layout.Bootloader
	if bl.Name != hal.BootloaderMCUboot {
		return nil, nil
	}
	mode, ok := mcubootModes[bl.Mode]
	if !ok {
		return nil, fmt.Errorf("bootloader %s: the simulated bootloader runs MCUboot %s, %s or %s only: build MCUboot in one of those modes and say so in bootloader.mode",
			bl, hal.ModeOverwriteOnly, hal.ModeSwapMove, hal.ModeDirectXIP)
	}
	g := &mcubGeo{mode: mode}
	var secs [2][]uint32
	maxSecs := 0
	for s, p := range b.slots {
		if p.Size > 1<<32-1 {
			return nil, fmt.Errorf("bootloader %s: %s is %d bytes; MCUboot's flash areas are at most 4 GiB", bl, p.Name, p.Size)
		}
		for _, r := range b.sectors.Runs(p.Offset, p.End()) {
			for range r.Count {
				secs[s] = append(secs[s], uint32(r.Size))
			}
		}
		maxSecs = max(maxSecs, len(secs[s]))
	}
	align := b.geo.WriteAlign
	g.maxImage = ^uint64(0)
	for s, p := range b.slots {
		l := mcuboot.Layout{Mode: mode, SlotSize: uint32(p.Size), Sectors: secs[s],
			MaxAlign: max(8, align), WriteSize: align, Erased: b.geo.EraseValue,
			MaxImgSectors: uint32(maxSecs)}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("bootloader %s: %s: %w", bl, p.Name, err)
		}
		g.lay[s] = l
		n := len(secs[s]) - l.TrailerSectors()
		off := p.Offset
		for i, sz := range secs[s] {
			if i == 0 {
				g.first[s] = span{int64(off), int64(sz)}
			}
			if i >= n {
				g.trailer[s] = append(g.trailer[s], span{int64(off), int64(sz)})
			}
			off += uint64(sz)
		}
		free := uint64(g.trailer[s][0].off) - p.Offset
		if free == 0 {
			return nil, fmt.Errorf("bootloader %s: %s of %d bytes holds MCUboot's trailer (%d bytes) and no image: make it larger", bl, p.Name, p.Size, l.TrailerSize())
		}
		g.maxImage = min(g.maxImage, free)
	}
	return g, nil
}

// confirmTrailer is SetBoot(confirm) on an MCUboot board (under the lock):
// boot_set_confirmed on app's trailer, image_ok when the magic is good and
// image_ok unset, then the security counter raised to the image's. p is
// the boot parameters as they stand.
func (pl *Platform) confirmTrailer(p Params) error {
	_, tail, err := pl.b.trailer(pl.dev, SlotApp)
	if err != nil {
		return fmt.Errorf("set boot confirm: %w", err)
	}
	ws, err := pl.b.mcub.lay[SlotApp].SetConfirmed(tail, 0)
	if err != nil {
		return hal.Errorf(hal.CodeInvalid, "set boot confirm: %v: power on (Reboot) to let MCUboot repair app's trailer", err)
	}
	pl.dropTrailer(SlotApp)
	if err := pl.b.writeTrailer(pl.dev, SlotApp, ws); err != nil {
		return fmt.Errorf("set boot confirm: %w", err)
	}
	st, err := pl.b.afterWrites(SlotApp, tail, ws)
	if err != nil {
		return fmt.Errorf("set boot confirm: %w", err)
	}
	pl.noteTrailer(SlotApp, st)
	// image_ok first: a cut before the counter is raised leaves a
	// confirmed image, whose counter the next power-on raises.
	if err := pl.raiseCounter(&p, SlotApp); err != nil {
		return fmt.Errorf("set boot confirm: %w", err)
	}
	if err := pl.s.setParams(p); err != nil {
		return fmt.Errorf("set boot confirm: %w", err)
	}
	return nil
}

// cancelRequest withdraws a request in ota's trailer that the bootloader
// has not acted on (under the lock).
func (pl *Platform) cancelRequest() error { return pl.cancelRequestOf(SlotOTA) }

// cancelRequestOf withdraws the request in slot s's trailer: MCUboot's API
// has no call for it, so the image's first sector is erased first (MCUboot
// then drops the request itself: an erased header is no image) and the
// trailer after it.
func (pl *Platform) cancelRequestOf(s Slot) error {
	pl.cache.drop(s)
	pl.dropTrailer(s)
	part, first := pl.b.slots[s], pl.b.mcub.first[s]
	if err := pl.dev.Erase(first.off, first.size); err != nil {
		return flashErr(fmt.Sprintf("cancel the request: erase the image header in %s", part.Name), err)
	}
	if err := pl.b.scrambleTrailer(pl.dev, s); err != nil {
		return fmt.Errorf("cancel the request: %w", err)
	}
	pl.noteTrailer(s, pl.b.erasedTrailer(s))
	return nil
}

// mcubBootState describes an MCUboot board from its trailers' states, by
// mode.
func mcubBootState(b *board, pri, sec mcuboot.State, p Params, check func(s Slot, minCounter uint32) (slotImage, error)) (hal.BootState, error) {
	if b.overwriteOnly() {
		return overwriteBootState(pri, sec, p, check)
	}
	return swapBootState(pri, sec, p, check)
}

// checkTrailerRequest checks a test or permanent request on an MCUboot
// board: the image in ota verifies under the boot parameters p and leaves
// MCUboot's trailer sectors free.
func (pl *Platform) checkTrailerRequest(req hal.BootRequest, p Params) error {
	si, err := pl.checkRequest(req, SlotOTA, p.SecurityCounter)
	if err != nil {
		return err
	}
	if uint64(si.img.TotalSize) > pl.maxWrite() {
		return pl.tooLarge("set boot "+req.Mode.String(), uint64(si.img.TotalSize))
	}
	return nil
}

// writeRequest is requestSwap through the Platform's trailer cache.
func (pl *Platform) writeRequest(permanent, okFirst bool) error {
	pl.dropTrailer(SlotOTA)
	st, err := pl.b.requestSwap(pl.dev, permanent, okFirst)
	if err != nil {
		return err
	}
	pl.noteTrailer(SlotOTA, st)
	return nil
}

// bootPrimary checks the image in app, which MCUboot boots, and raises the
// security counter in p as boot_update_hw_rollback_protection does: to the
// image's once app's trailer has no good magic or has image_ok set (a test
// image does so when it confirms itself).
func (b *board) bootPrimary(dev flash.Device, keys []crypto.PublicKey, p *Params) (slotImage, error) {
	app, err := checkSlot(dev, b, SlotApp, keys, p.SecurityCounter)
	if err != nil {
		return app, fmt.Errorf("boot: %w", err)
	}
	if !app.bootable() {
		return app, hal.Errorf(hal.CodeNoImage, "boot: no bootable image: %v", app.err)
	}
	pri, _, err := b.trailer(dev, SlotApp)
	if err != nil {
		return app, fmt.Errorf("boot: %w", err)
	}
	if pri.Magic != mcuboot.MagicGood || pri.ImageOK == mcuboot.FlagSet {
		p.SecurityCounter = max(p.SecurityCounter, app.img.SecurityCounter)
	}
	return app, nil
}
