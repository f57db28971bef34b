// Package boot is the flash-backed platform every otaport port is built on,
// and the bootloader's side of an upgrade run in simulation.
//
// NewPlatform implements the port contract (hal.Platform, hal.KV,
// hal.Rebooter) over any flash.Device and a board layout: a generated port is
// a thin wrapper around it. The params partition holds the boot parameters
// and the key-value store as a power-safe log in two alternating areas.
// Boot is a power-on: the simulated second-stage bootloader that copies ota
// over app (single-bank, resumable after a power cut at any operation),
// picks a slot (dual-bank, with a trial boot counter, confirm and fallback),
// or, on a board that names MCUboot, is MCUboot in its mode: the requests
// are MCUboot's image trailers and the decisions MCUboot's (overwrite-only's
// copy, overwrite.go; swap-move's swap, status records, resume and revert,
// swap.go; direct-xip's choice and revert, directxip.go), checking every
// image's hash, signature and security counter before it boots it.
//
// It does not download, verify streams or decide when to upgrade (that is
// core/engine), and it is not a bootloader for real hardware: it is the
// executable model of one, which ports' C bootloaders follow.
// docs/boot-schemes.md describes the schemes and the on-flash format.
package boot

import (
	"crypto"
	"fmt"
	"log/slog"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// Options configures a Platform and the bootloader.
type Options struct {
	// Keys are the public keys an image must be signed with (one of them).
	// With none, images are checked by their SHA-256 only.
	Keys []crypto.PublicKey
	// DecryptKey is the private key an MCUboot board decrypts encrypted
	// images (imgtool -E) with, as MCUboot compiles it in (its
	// enc-*.pem): it decrypts ota's image as it swaps or copies
	// (overwrite-only) it into app, and on a swap encrypts app's as it
	// swaps it out. otaport's own bootloader and
	// ESP-IDF's need none: the engine writes their slots decrypted.
	DecryptKey any
	// Logger receives what the bootloader does; nil discards it.
	Logger *slog.Logger
	// CloseDevice makes Platform.Close close the device too (when it has a
	// Close method): set it when the platform owns the device, as a port's
	// Open does; leave it off when the caller opens the same flash again.
	CloseDevice bool
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Actions a power-on reports in hal.RebootResult.Action.
const (
	ActionNone       = "none"
	ActionCopied     = "copied"
	ActionSwitched   = "switched"
	ActionTrial      = "trial"
	ActionReverted   = "reverted"
	ActionRolledBack = "rolled-back"
)

// Boot powers dev on: it runs the simulated bootloader of layout l over the
// flash as it is, finishing or undoing whatever the boot parameters ask, and
// reports which image now runs. An error means no image can be booted: a
// bricked device.
func Boot(dev flash.Device, l hal.Layout, opts Options) (hal.RebootResult, error) {
	b, err := checkLayout(l, dev)
	if err != nil {
		return hal.RebootResult{}, err
	}
	b.decKey = opts.DecryptKey
	s, err := openStore(dev, b)
	if err != nil {
		return hal.RebootResult{}, err
	}
	return runBoot(dev, b, s, opts)
}

// Inspect reads the boot state of dev without changing it: each slot's
// image and flags, and the boot parameters. It is what a test asserts on
// after a power cut.
func Inspect(dev flash.Device, l hal.Layout, opts Options) (hal.BootState, Params, error) {
	b, err := checkLayout(l, dev)
	if err != nil {
		return hal.BootState{}, Params{}, err
	}
	b.decKey = opts.DecryptKey
	s, err := openStore(dev, b)
	if err != nil {
		return hal.BootState{}, Params{}, err
	}
	p := s.params()
	keys := bootKeys(b, s, opts.Keys, opts.logger())
	check := func(sl Slot, minCounter uint32) (slotImage, error) {
		return checkSlot(dev, b, sl, keys, minCounter)
	}
	if b.directXIP() {
		xs, err := b.xipRead(dev, check, p.SecurityCounter)
		if err != nil {
			return hal.BootState{}, p, err
		}
		return xipBootState(xs, p.Running, p), p, nil
	}
	if b.mcub != nil {
		pri, sec, err := b.trailers(dev)
		if err != nil {
			return hal.BootState{}, p, err
		}
		st, err := mcubBootState(b, pri, sec, p, check)
		return st, p, err
	}
	if b.esp != nil {
		two, err := b.readOtadata(dev)
		if err != nil {
			return hal.BootState{}, p, err
		}
		st, err := espBootState(newESPView(two, p.Running), p, check)
		return st, p, err
	}
	st, err := bootState(p, check)
	return st, p, err
}

// bootState describes the slots under parameters p, each read with check
// (checkSlot, or a Platform's cache of it).
func bootState(p Params, check func(s Slot, minCounter uint32) (slotImage, error)) (hal.BootState, error) {
	st := hal.BootState{Trial: p.Trial, BootCount: int(p.BootCount), SecurityCounter: p.SecurityCounter}
	for _, s := range []Slot{SlotApp, SlotOTA} {
		si, err := check(s, p.SecurityCounter)
		if err != nil {
			return st, err
		}
		si = p.reject(s, si)
		ss := hal.SlotState{
			Name:      s.Name(),
			Bootable:  si.bootable(),
			Active:    s == p.Running,
			Pending:   p.Pending && p.PendingSlot == s,
			Confirmed: s == p.Active && p.Confirmed && si.bootable(),
		}
		if si.bootable() {
			ss.Version = si.version()
		}
		st.Slots = append(st.Slots, ss)
	}
	return st, nil
}

// runBoot is the bootloader proper, over an opened params store.
func runBoot(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	log := opts.logger().With("board", b.layout.Board)
	opts.Keys = bootKeys(b, s, opts.Keys, log)
	var res hal.RebootResult
	var err error
	switch {
	case b.overwriteOnly():
		res, err = bootOverwrite(dev, b, s, opts)
	case b.directXIP():
		res, err = bootXIP(dev, b, s, opts)
	case b.esp != nil:
		res, err = bootESP(dev, b, s, opts)
	case b.layout.Scheme == hal.SingleBank:
		res, err = bootSingle(dev, b, s, opts)
	case b.layout.Scheme == hal.Swap:
		res, err = bootSwap(dev, b, s, opts)
	default:
		res, err = bootDual(dev, b, s, opts)
	}
	if err != nil {
		log.Error("boot failed", "err", err)
		return res, err
	}
	log.Info("booted", "slot", res.Slot, "version", res.Version, "action", res.Action, "detail", res.Detail)
	return res, nil
}

// bootSingle: finish an interrupted copy, or start a requested one if the
// image in ota verifies, then boot app.
func bootSingle(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	res := hal.RebootResult{Action: ActionNone}
	p := s.params()
	switch {
	case p.Copy == CopyRunning:
		// app is partly overwritten: the only way to a bootable device is
		// to finish. ota is never written during a copy, so it still
		// holds the verified image.
		ota, err := checkSlot(dev, b, SlotOTA, opts.Keys, p.SecurityCounter)
		if err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		if !ota.bootable() {
			return res, hal.Errorf(hal.CodeNoImage, "boot: copy of ota over app interrupted at 0x%x and %v: the device cannot boot", p.CopyDone, ota.err)
		}
		res.Detail = fmt.Sprintf("resumed the copy at 0x%x of 0x%x", p.CopyDone, p.ImageSize)
		if err := copyImage(dev, b, s, p); err != nil {
			return res, err
		}
		res.Action = ActionCopied
	case p.Pending:
		ota, err := checkSlot(dev, b, SlotOTA, opts.Keys, p.SecurityCounter)
		if err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		var reason string
		switch {
		case !ota.bootable():
			reason = ota.err.Error()
		case uint64(ota.img.TotalSize) > b.slots[SlotApp].Size:
			reason = fmt.Sprintf("image %s of %d bytes does not fit app (%d bytes)", ota.img.Version, ota.img.TotalSize, b.slots[SlotApp].Size)
		}
		if reason != "" {
			// Verification comes before the copy: nothing of app has
			// been touched, so dropping the request keeps the old image.
			p.Pending, p.Mode, p.ImageSize = false, 0, 0
			if err := s.setParams(p); err != nil {
				return res, fmt.Errorf("boot: clear the upgrade request: %w", err)
			}
			res.Detail = "upgrade not applied: " + reason
			break
		}
		// Announce the copy before the first erase of app: from here on a
		// power-on resumes rather than boots the half-written app.
		p.Pending, p.Copy, p.CopyDone, p.ImageSize = false, CopyRunning, 0, uint32(ota.img.TotalSize)
		if err := s.setParams(p); err != nil {
			return res, fmt.Errorf("boot: record the start of the copy: %w", err)
		}
		if err := copyImage(dev, b, s, p); err != nil {
			return res, err
		}
		res.Action = ActionCopied
	}
	p = s.params()
	app, err := checkSlot(dev, b, SlotApp, opts.Keys, p.SecurityCounter)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	if !app.bootable() {
		return res, hal.Errorf(hal.CodeNoImage, "boot: no bootable image: %v", app.err)
	}
	res.Slot, res.Version = hal.PartApp, app.version()
	return res, nil
}

// copyImage copies the image in ota over app, one erase sector of app at a
// time, from the progress in p. After each sector is erased and programmed
// the progress is recorded, so a power cut anywhere redoes at most that
// sector. The last record ends the copy and, for a permanent request,
// confirms the image and raises the security counter.
func copyImage(dev flash.Device, b *board, s *store, p Params) error {
	app, ota := b.slots[SlotApp], b.slots[SlotOTA]
	size := uint64(p.ImageSize)
	align := uint64(b.geo.WriteAlign)
	secs := b.sectorsCovering(app, size)
	for i, sec := range secs {
		rel := uint64(sec.off) - app.Offset
		if rel < uint64(p.CopyDone) {
			continue
		}
		if err := dev.Erase(sec.off, sec.size); err != nil {
			return flashErr(fmt.Sprintf("boot: copy: erase app at 0x%x", sec.off), err)
		}
		n := min(uint64(sec.size), (size-rel+align-1)/align*align)
		buf := make([]byte, n)
		if _, err := dev.ReadAt(buf, int64(ota.Offset+rel)); err != nil {
			return flashErr(fmt.Sprintf("boot: copy: read ota at 0x%x", ota.Offset+rel), err)
		}
		if err := dev.Program(sec.off, buf); err != nil {
			return flashErr(fmt.Sprintf("boot: copy: program app at 0x%x", sec.off), err)
		}
		p.CopyDone = uint32(rel + uint64(sec.size))
		if i == len(secs)-1 {
			p.Copy, p.CopyDone = CopyNone, 0
			p.Running, p.Active, p.Trial, p.BootCount = SlotApp, SlotApp, false, 0
			p.Confirmed = p.Mode == hal.BootPermanent
			if p.Confirmed {
				si, err := checkSlot(dev, b, SlotApp, nil, 0)
				if err != nil {
					return fmt.Errorf("boot: copy: %w", err)
				}
				if si.img != nil {
					p.SecurityCounter = max(p.SecurityCounter, si.img.SecurityCounter)
				}
			}
			p.Mode = 0
		}
		if err := s.setParams(p); err != nil {
			return fmt.Errorf("boot: copy: record progress 0x%x: %w", p.CopyDone, err)
		}
	}
	return nil
}

// bootDual picks the slot to boot: a pending request, a trial in progress
// with its boot counter, or the active slot; an image that does not verify
// is never booted, and the other slot is tried instead. The decision is
// written as one record before the boot, so a power cut before it makes the
// next power-on decide again, the same way.
func bootDual(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	res := hal.RebootResult{Action: ActionNone}
	p := s.params()
	// A slot that cannot be read is not an invalid image: stop before
	// any decision is written.
	var ioErr error
	check := func(sl Slot) slotImage {
		si, err := checkSlot(dev, b, sl, opts.Keys, p.SecurityCounter)
		if err != nil && ioErr == nil {
			ioErr = err
		}
		return p.reject(sl, si)
	}

	switch {
	case p.RolledBack:
		// Rollback made the old slot active again; the image given up
		// is in the other one, and stays given up.
		p.RolledBack, p.Rejected = false, true
		res.Action = ActionRolledBack
	case p.Trial:
		t := p.Running
		if int(p.BootCount) >= b.attempts {
			p.Trial, p.BootCount, p.Running, p.Rejected = false, 0, p.Active, true
			res.Action = ActionReverted
			res.Detail = fmt.Sprintf("image in %s booted %d time(s) without confirming itself; back to %s", t.Name(), b.attempts, p.Active.Name())
			break
		}
		if si := check(t); !si.bootable() {
			p.Trial, p.BootCount, p.Running, p.Rejected = false, 0, p.Active, true
			res.Action = ActionReverted
			res.Detail = fmt.Sprintf("trial image no longer verifies (%v); back to %s", si.err, p.Active.Name())
			break
		}
		p.BootCount++
		res.Action = ActionTrial
	case p.Pending:
		t := p.PendingSlot
		mode := p.Mode
		p.Pending, p.Mode, p.ImageSize = false, 0, 0
		si := check(t)
		if !si.bootable() {
			res.Detail = "upgrade not applied: " + si.err.Error()
			break
		}
		if mode == hal.BootPermanent {
			p.Active, p.Running, p.Confirmed, p.Trial, p.BootCount = t, t, true, false, 0
			p.SecurityCounter = max(p.SecurityCounter, si.img.SecurityCounter)
			res.Action = ActionSwitched
		} else {
			p.Running, p.Trial, p.BootCount = t, true, 1
			res.Action = ActionTrial
		}
	}
	if !p.Trial {
		p.Running = p.Active
	}

	// Boot the chosen slot if it verifies, else the other one.
	target := p.Running
	si := check(target)
	if !si.bootable() {
		other := target.Other()
		so := check(other)
		if ioErr != nil {
			return res, fmt.Errorf("boot: %w", ioErr)
		}
		if !so.bootable() {
			return res, hal.Errorf(hal.CodeNoImage, "boot: no bootable image: %v; %v", si.err, so.err)
		}
		// Nobody confirmed the image in the other slot for this role:
		// the running software confirms it after its health check.
		p.Active, p.Running, p.Trial, p.BootCount, p.Confirmed = other, other, false, 0, false
		// The slot given up is no longer the other one: what was
		// rejected there was not rejected here.
		p.Rejected = false
		if res.Action == ActionNone {
			res.Action = ActionSwitched
		}
		res.Detail = joinDetail(res.Detail, fmt.Sprintf("%v; booted %s instead", si.err, other.Name()))
		si = so
	}
	if ioErr != nil {
		return res, fmt.Errorf("boot: %w", ioErr)
	}
	if err := s.setParams(p); err != nil {
		return res, fmt.Errorf("boot: record the boot of %s: %w", p.Running.Name(), err)
	}
	res.Slot, res.Version = p.Running.Name(), si.version()
	return res, nil
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
