package boot

import (
	"bytes"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// MCUboot built with MCUBOOT_DIRECT_XIP and MCUBOOT_DIRECT_XIP_REVERT, the
// application's bootutil with MCUBOOT_BOOTUTIL_LIB_FOR_DIRECT_XIP: each
// slot runs in place. A request is the magic in the new slot's trailer
// (test), or the magic, copy_done and image_ok (permanent); the simulated
// bootloader picks as context_boot_go does in loader.c: among the slots
// whose image header is valid the highest version (app on a tie,
// find_slot_with_highest_version), then boot_select_or_erase: a slot with
// no good magic, or one that was selected before (copy_done) and never
// confirmed (image_ok), is erased whole and the next one tried; else
// copy_done is written and the image validated (one that fails is erased
// too). Which slot runs is what that choice gave at the last power-on,
// read back from the flash. docs/boot-schemes.md, "Dual bank (MCUboot
// direct-xip)".

// directXIP reports whether b runs MCUboot direct-xip.
func (b *board) directXIP() bool { return b.mcub != nil && b.mcub.mode == mcuboot.DirectXIP }

// xipSlot is what the direct-xip bootloader sees of one slot.
type xipSlot struct {
	// held: the image's first bytes are still held back (xipHeadKey):
	// MCUboot finds no image there yet.
	held bool
	si   slotImage
	st   mcuboot.State
}

// xipRead reads both slots: their images through check and their trailers.
func (b *board) xipRead(r io.ReaderAt, check func(s Slot, minCounter uint32) (slotImage, error), counter uint32) ([2]xipSlot, error) {
	pri, sec, err := b.trailers(r)
	if err != nil {
		return [2]xipSlot{}, err
	}
	return xipSlots(check, counter, [2]mcuboot.State{pri, sec})
}

// xipSlots pairs each slot's image, read through check, with its trailer.
func xipSlots(check func(s Slot, minCounter uint32) (slotImage, error), counter uint32, sts [2]mcuboot.State) ([2]xipSlot, error) {
	var xs [2]xipSlot
	for _, s := range []Slot{SlotApp, SlotOTA} {
		si, err := check(s, counter)
		if err != nil {
			return xs, err
		}
		xs[s] = xipSlot{si: si, st: sts[s]}
	}
	return xs, nil
}

// higher reports whether the image of slot a wins over slot b's in
// find_slot_with_highest_version: a higher version without the build
// number (MCUboot's default comparison), app on a tie.
func higher(xs [2]xipSlot, a, b Slot) bool {
	c := xs[a].si.img.Version.Core().Compare(xs[b].si.img.Version.Core())
	return c > 0 || c == 0 && a == SlotApp
}

// selected reports whether the bootloader chose the slot at a power-on:
// a verified image, the magic, and copy_done written (or torn: MCUboot
// cannot write it again, and boots it anyway).
func (x xipSlot) selected() bool {
	return x.si.bootable() && x.st.Magic == mcuboot.MagicGood && x.st.CopyDone != mcuboot.FlagUnset
}

// xipTrial reports whether the slot's image runs unconfirmed: the next
// power-on erases it (boot_select_or_erase).
func xipTrial(st mcuboot.State) bool {
	return st.Magic == mcuboot.MagicGood && st.CopyDone == mcuboot.FlagSet && st.ImageOK == mcuboot.FlagUnset
}

// xipPending reports whether slot s, not the running one, holds a request
// the next power-on acts on: the magic over a verified image that wins
// over what runs (a permanent request has copy_done and image_ok too).
func xipPending(xs [2]xipSlot, s, running Slot) bool {
	x := xs[s]
	if s == running || !x.si.bootable() || x.held || x.st.Magic != mcuboot.MagicGood || xipTrial(x.st) {
		return false
	}
	if x.st.CopyDone != mcuboot.FlagUnset && x.st.ImageOK != mcuboot.FlagSet {
		return false
	}
	return !xs[running].si.bootable() || higher(xs, s, running)
}

// xipBootState describes a direct-xip board whose last power-on booted
// running (Params.Running, which the simulated bootloader records: on a
// device the application knows the slot it runs from).
func xipBootState(xs [2]xipSlot, running Slot, p Params) hal.BootState {
	st := hal.BootState{SecurityCounter: p.SecurityCounter}
	runs := xs[running].si.bootable()
	if runs && xipTrial(xs[running].st) && !p.RolledBack {
		st.Trial, st.BootCount = true, 1
	}
	for _, s := range []Slot{SlotApp, SlotOTA} {
		x := xs[s]
		ss := hal.SlotState{Name: s.Name(), Bootable: x.si.bootable(), Active: runs && s == running,
			Pending: xipPending(xs, s, running)}
		ss.Confirmed = ss.Active && ss.Bootable && !xipTrial(x.st)
		if ss.Bootable {
			ss.Version = x.si.version()
		}
		st.Slots = append(st.Slots, ss)
	}
	return st
}

// bootXIP is context_boot_go of a direct-xip build with revert.
func bootXIP(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	res := hal.RebootResult{Action: ActionNone}
	p := s.params()
	check := func(sl Slot, c uint32) (slotImage, error) { return checkSlot(dev, b, sl, opts.Keys, c) }
	xs, err := b.xipRead(dev, check, p.SecurityCounter)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	prev := p.Running
	// boot_get_slot_usage: a slot whose header is valid is available.
	avail := [2]bool{xs[SlotApp].si.img != nil, xs[SlotOTA].si.img != nil}
	for {
		cand, ok := SlotApp, false
		for _, sl := range []Slot{SlotApp, SlotOTA} {
			if avail[sl] && (!ok || higher(xs, sl, cand) && sl != cand) {
				cand, ok = sl, true
			}
		}
		if !ok {
			return res, hal.Errorf(hal.CodeNoImage, "boot: no bootable image: %s", joinDetail(res.Detail, "neither slot holds an image MCUboot direct-xip selects"))
		}
		avail[cand] = false
		x := xs[cand]
		// boot_select_or_erase.
		if x.st.Magic != mcuboot.MagicGood || x.st.CopyDone == mcuboot.FlagSet && x.st.ImageOK != mcuboot.FlagSet {
			why := "its trailer has no magic"
			if x.st.Magic == mcuboot.MagicGood {
				why = "it booted without confirming itself"
				res.Action = ActionReverted
			}
			res.Detail = joinDetail(res.Detail, fmt.Sprintf("image %s in %s erased: %s", x.si.version(), cand.Name(), why))
			if err := b.scrambleSlot(dev, cand); err != nil {
				return res, fmt.Errorf("boot: %w", err)
			}
			continue
		}
		fresh := x.st.CopyDone == mcuboot.FlagUnset
		if fresh {
			// Written before the image is validated: one that fails is
			// erased whole, trailer and all. A copy_done torn by a cut is
			// not written again (the flash refuses; MCUboot warns).
			if err := b.writeTrailer(dev, cand, []mcuboot.Write{b.mcub.lay[cand].CopyDoneWrite()}); err != nil {
				return res, fmt.Errorf("boot: %w", err)
			}
		}
		if !x.si.bootable() {
			res.Detail = joinDetail(res.Detail, fmt.Sprintf("%v; MCUboot erased %s", x.si.err, cand.Name()))
			if err := b.scrambleSlot(dev, cand); err != nil {
				return res, fmt.Errorf("boot: %w", err)
			}
			continue
		}
		switch {
		case p.RolledBack:
			res.Action = ActionRolledBack
		case fresh && x.st.ImageOK == mcuboot.FlagSet:
			res.Action = ActionSwitched
		case fresh:
			res.Action = ActionTrial
		case res.Action == ActionNone && cand != prev:
			res.Action = ActionSwitched
		}
		// boot_update_hw_rollback_protection: with revert, once confirmed.
		if x.st.ImageOK == mcuboot.FlagSet {
			p.SecurityCounter = max(p.SecurityCounter, x.si.img.SecurityCounter)
		}
		p.RolledBack = false
		p.Running, p.Active, p.Confirmed = cand, cand, x.st.ImageOK == mcuboot.FlagSet
		if err := s.setParams(p); err != nil {
			return res, fmt.Errorf("boot: record the boot: %w", err)
		}
		res.Slot, res.Version = cand.Name(), x.si.version()
		return res, nil
	}
}

// xipState reads the platform's view: both slots through its cache.
func (pl *Platform) xipState() ([2]xipSlot, error) {
	pri, sec, err := pl.trailers()
	if err != nil {
		return [2]xipSlot{}, err
	}
	xs, err := xipSlots(pl.check, pl.s.params().SecurityCounter, [2]mcuboot.State{pri, sec})
	for s := range xs {
		xs[s].held = pl.xipHead(Slot(s)) != nil
	}
	return xs, err
}

// xipRun is the slot that runs, and whether it holds an image.
func (pl *Platform) xipRun(xs [2]xipSlot) (Slot, bool) {
	r := pl.s.params().Running
	return r, xs[r].si.bootable()
}

// setBootXIP is SetBoot on a direct-xip board (under the lock).
func (pl *Platform) setBootXIP(req hal.BootRequest) error {
	p := pl.s.params()
	run, target := p.Running, pl.updateSlot()
	switch req.Mode {
	case hal.BootTest, hal.BootPermanent:
		si, err := pl.checkRequest(req, target, p.SecurityCounter)
		if err != nil {
			return err
		}
		xs, err := pl.xipState()
		if err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
		// Strictly higher, without the build number: on a tie MCUboot
		// boots app, whichever slot that leaves running.
		if xs[run].si.bootable() && xs[target].si.img.Version.Core().Compare(xs[run].si.img.Version.Core()) <= 0 {
			return hal.Errorf(hal.CodeInvalid, "set boot %s: image %s in %s is not above %s in %s, which runs: MCUboot direct-xip boots the higher version, so it would boot %s again: install a higher version",
				req.Mode, si.version(), target.Name(), xs[run].si.version(), run.Name(), xs[run].si.version())
		}
		// The trailer before the header: a power-on between the two finds
		// no image in the slot (and leaves it), never an image without a
		// magic (which it would erase).
		if err := pl.xipRequest(target, req.Mode == hal.BootPermanent); err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
		if err := pl.releaseXIPHead(target); err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
		return nil
	case hal.BootConfirm:
		if p.RolledBack {
			return hal.Errorf(hal.CodeInvalid, "set boot confirm: the image in %s was rolled back and %s boots at the next power-on: power on (Reboot) first", run.Name(), run.Other().Name())
		}
		xs, err := pl.xipState()
		if err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		if !xs[run].si.bootable() {
			return nil
		}
		if err := pl.xipRequest(run, true); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		if err := pl.raiseCounter(&p, run); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		if err := pl.s.setParams(p); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		return nil
	}
	return hal.Errorf(hal.CodeInvalid, "set boot: mode %v: want test, permanent or confirm", req.Mode)
}

// xipRequest is the direct-xip boot_set_next on slot s: the magic (test),
// then copy_done and image_ok (confirm). A trailer with a torn magic or
// image_ok is erased first and written anew: MCUboot's call would leave it
// as it is, and the next power-on would erase the image.
func (pl *Platform) xipRequest(s Slot, confirm bool) error {
	l := pl.b.mcub.lay[s]
	pl.dropTrailer(s)
	st, tail, err := pl.b.trailer(pl.dev, s)
	if err != nil {
		return err
	}
	// A torn copy_done is left as it is: MCUboot boots such a slot and
	// keeps it once image_ok is set. A torn image_ok or magic is not.
	clean := st.Magic != mcuboot.MagicBad && st.ImageOK != mcuboot.FlagBad
	if !confirm && st.Magic == mcuboot.MagicGood && st.CopyDone == mcuboot.FlagUnset && st.ImageOK == mcuboot.FlagUnset {
		return nil
	}
	if !clean || !confirm && st.Magic != mcuboot.MagicUnset {
		if err := pl.b.scrambleTrailer(pl.dev, s); err != nil {
			return err
		}
		if _, tail, err = pl.b.trailer(pl.dev, s); err != nil {
			return err
		}
	}
	ws, err := l.SetNext(tail, 0, false, confirm)
	if err != nil {
		return err
	}
	if err := pl.b.writeTrailer(pl.dev, s, ws); err != nil {
		return err
	}
	st, err = pl.b.afterWrites(s, tail, ws)
	if err != nil {
		return err
	}
	pl.noteTrailer(s, st)
	return nil
}

// rollbackXIP is Rollback on a direct-xip board (under the lock): a request
// not yet booted is cancelled (its header and trailer erased); a trial is
// recorded as given up (the next power-on erases it anyway); a confirmed
// image is given up by erasing its trailer, so that the next power-on
// erases it and boots the other slot, which must hold an image MCUboot
// selects.
func (pl *Platform) rollbackXIP() error {
	p := pl.s.params()
	if p.RolledBack {
		return nil
	}
	xs, err := pl.xipState()
	if err != nil {
		return err
	}
	run, runs := pl.xipRun(xs)
	for _, s := range []Slot{SlotApp, SlotOTA} {
		if xipPending(xs, s, run) {
			return pl.cancelRequestOf(s)
		}
	}
	if !runs {
		return hal.Errorf(hal.CodeNoImage, "no image to return to: nothing runs")
	}
	other := xs[run.Other()]
	if !xipTrial(xs[run].st) {
		switch {
		case !other.si.bootable():
			return hal.Errorf(hal.CodeNoImage, "no image to return to: %v", other.si.err)
		case !other.selected() || xipTrial(other.st):
			return hal.Errorf(hal.CodeNoImage, "no image to return to: image %s in %s was never confirmed, and MCUboot direct-xip would erase it", other.si.version(), run.Other().Name())
		}
	}
	// Recorded before the trailer goes: SetBoot(confirm) and installs are
	// refused from here until the power-on.
	p.RolledBack = true
	if err := pl.s.setParams(p); err != nil {
		return fmt.Errorf("record the rollback: %w", err)
	}
	if xipTrial(xs[run].st) {
		return nil
	}
	pl.dropTrailer(run)
	if err := pl.b.scrambleTrailer(pl.dev, run); err != nil {
		return err
	}
	pl.noteTrailer(run, pl.b.erasedTrailer(run))
	return nil
}

// xipHeadKey is the key-value entry that holds, on a direct-xip board, the
// first bytes of an image being downloaded: its slot, then the bytes.
//
// MCUboot direct-xip erases the whole slot of an image whose header is
// valid and whose trailer has no magic when that image has the higher
// version (boot_select_or_erase): a download cut by a power-on would be
// lost, and a resumed one would hash bytes the slot no longer holds. So the
// header's magic (the first write units that cover ih_magic) stays here
// until SetBoot asks for the image; until then MCUboot sees no image in the
// slot and leaves it alone. Read returns these bytes as if they were
// programmed.
const xipHeadKey = "otaport.boot.xip-head"

// xipHeadSize is how many bytes from an image's start are held back: the
// write units that cover the 4-byte ih_magic.
func (b *board) xipHeadSize() uint64 {
	a := uint64(b.geo.WriteAlign)
	return (4 + a - 1) / a * a
}

// xipHead returns the held bytes of slot s, or nil.
func (pl *Platform) xipHead(s Slot) []byte {
	v, ok := pl.s.get(xipHeadKey)
	if !ok || len(v) != 1+int(pl.b.xipHeadSize()) || Slot(v[0]) != s {
		return nil
	}
	return v[1:]
}

// writeXIPHead is Write of the part of data at off (below xipHeadSize) that
// falls in the held bytes of slot s, with Write's rules: a unit that holds
// the same bytes is kept, one that holds others is refused. It returns how
// many bytes of data it took.
func (pl *Platform) writeXIPHead(s Slot, off uint64, data []byte) (int, error) {
	size := pl.b.xipHeadSize()
	n := int(min(uint64(len(data)), size-off))
	pl.cache.drop(s)
	erase := pl.b.geo.EraseValue
	head := make([]byte, size)
	fillBytes(head, erase)
	if h := pl.xipHead(s); h != nil {
		copy(head, h)
	}
	a := uint64(pl.b.geo.WriteAlign)
	next := bytes.Clone(head)
	copy(next[off:], data[:n])
	for u := off / a * a; u < off+uint64(n); u += a {
		cur, want := head[u:u+a], next[u:u+a]
		if !bytes.Equal(cur, want) && !isErased(cur, erase) {
			return 0, hal.Errorf(hal.CodeNotErased, "write %s at 0x%x: bytes at 0x%x already hold other data: Init the slot (without Resume) before writing a new image", s.Name(), off, u)
		}
	}
	if !bytes.Equal(head, next) || pl.xipHead(s) == nil {
		if err := pl.s.set(xipHeadKey, append([]byte{byte(s)}, next...)); err != nil {
			return 0, fmt.Errorf("write %s at 0x%x: keep the image's first bytes: %w", s.Name(), off, err)
		}
	}
	return n, nil
}

// overlayXIPHead puts the held bytes of slot s over p, read at off.
func (pl *Platform) overlayXIPHead(s Slot, off uint64, p []byte) {
	h := pl.xipHead(s)
	if h == nil || off >= uint64(len(h)) {
		return
	}
	copy(p, h[off:])
}

// releaseXIPHead programs the held bytes of slot s into the flash (the
// units still erased there), then forgets them: what a request does first.
func (pl *Platform) releaseXIPHead(s Slot) error {
	h := pl.xipHead(s)
	if h == nil {
		return nil
	}
	base := int64(pl.b.slots[s].Offset)
	cur := make([]byte, len(h))
	if _, err := pl.dev.ReadAt(cur, base); err != nil {
		return flashErr(fmt.Sprintf("read %s", s.Name()), err)
	}
	pl.cache.drop(s)
	a := int(pl.b.geo.WriteAlign)
	torn := false
	for u := 0; u < len(h); u += a {
		if bytes.Equal(cur[u:u+a], h[u:u+a]) || isErased(h[u:u+a], pl.b.geo.EraseValue) {
			continue
		}
		if !isErased(cur[u:u+a], pl.b.geo.EraseValue) {
			torn = true
			break
		}
		if err := pl.dev.Program(base+int64(u), h[u:u+a]); err != nil {
			return flashErr(fmt.Sprintf("program the image header of %s", s.Name()), err)
		}
	}
	if torn {
		// A power cut tore an earlier program of these bytes: the first
		// sector is programmed again, with the rest of it as it is.
		first := pl.b.mcub.first[s]
		sec := make([]byte, first.size)
		if _, err := pl.dev.ReadAt(sec, first.off); err != nil {
			return flashErr(fmt.Sprintf("read %s", s.Name()), err)
		}
		copy(sec, h)
		if err := pl.dev.Erase(first.off, first.size); err != nil {
			return flashErr(fmt.Sprintf("program the image header of %s again", s.Name()), err)
		}
		if err := pl.dev.Program(first.off, sec); err != nil {
			return flashErr(fmt.Sprintf("program the image header of %s again", s.Name()), err)
		}
	}
	if err := pl.s.set(xipHeadKey, nil); err != nil {
		return fmt.Errorf("forget the image's first bytes: %w", err)
	}
	return nil
}

// headReader reads the flash with the held first bytes of a slot, at off,
// in place.
type headReader struct {
	r    io.ReaderAt
	off  int64
	head []byte
}

func (h headReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := h.r.ReadAt(p, off)
	if lo, hi := max(off, h.off), min(off+int64(len(p)), h.off+int64(len(h.head))); lo < hi {
		copy(p[lo-off:hi-off], h.head[lo-h.off:])
	}
	return n, err
}
