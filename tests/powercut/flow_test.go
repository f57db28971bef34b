package powercut

import (
	"context"
	"errors"
	"fmt"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// Flow is one path through an upgrade that the suite cuts at every flash
// operation: a script of engine calls and power-ons that starts on the
// device as it runs the old image and ends in a known state.
type Flow struct {
	// Name names the flow in reports and in Config.Case.
	Name string
	// Doc says what the flow does, for the report.
	Doc string
	// Reverting: the flow needs a board that keeps the old image, dual-bank
	// or swap (a single-bank board has no old image to fall back to once
	// it has copied the new one).
	Reverting bool
	// wantNew: a clean run ends with the new image running (confirmed);
	// otherwise with the old one running and the engine rolled back.
	wantNew bool
	run     func(ctx context.Context, f *fixture, dev *flash.Emulator) error
	// Kind is the kind of the new image the flow installs.
	Kind Kind
}

// Kind is a kind of image the new one is: full and plain, or one of the
// forms that save bytes over the air, whose install writes the slot
// another way (decompressed, decrypted, rebuilt from a patch).
type Kind string

// Kinds of new image.
const (
	KindPlain      Kind = ""
	KindCompressed Kind = "lzma2"     // otaimg sign --compression lzma2
	KindEncrypted  Kind = "encrypted" // otaimg sign --encrypt, X25519
	KindDelta      Kind = "delta"     // otaimg diff, in blocks of 4 KiB
)

// Flows returns the flows of the suite:
//
//   - upgrade: install (download writes and checkpoints, read-back,
//     SetBoot), power-on (the bootloader's copy or switch, then the
//     engine's recovery), confirm, power-on;
//   - revert: install, then power-ons without a confirm until the
//     bootloader's boot counter runs out and it falls back (dual-bank), or
//     MCUboot swaps the image back at the next one (swap);
//   - rollback: an explicit rollback: of the trial image after its first
//     boot (dual-bank, swap), or of the pending copy before the reboot
//     (single-bank); then power-on.
func Flows() []Flow {
	return []Flow{
		{Name: "upgrade", Doc: "install, power-on, confirm, power-on", wantNew: true, run: runUpgrade},
		{Name: "revert", Doc: "install, power-on without confirm until the bootloader falls back", Reverting: true, run: runRevert},
		{Name: "rollback", Doc: "install, (power-on,) explicit rollback, power-on", run: runRollback},
		{Name: "lzma2", Doc: "upgrade to a compressed image (decompressed into the slot as it streams)", wantNew: true, run: runUpgrade, Kind: KindCompressed},
		{Name: "encrypt", Doc: "upgrade to an encrypted image (decrypted as it streams; MCUboot's slot keeps the ciphertext)", wantNew: true, run: runUpgrade, Kind: KindEncrypted},
		{Name: "delta", Doc: "upgrade by a delta image (the patch applied against the running slot, checkpointed at its blocks)", wantNew: true, run: runUpgrade, Kind: KindDelta},
	}
}

// FlowsNamed returns the flows called names, in that order.
func FlowsNamed(names ...string) ([]Flow, error) {
	var out []Flow
	for _, n := range names {
		found := false
		for _, fl := range Flows() {
			if fl.Name == n {
				out, found = append(out, fl), true
			}
		}
		if !found {
			return nil, fmt.Errorf("flow %q: want one of upgrade, revert, rollback, lzma2, encrypt, delta", n)
		}
	}
	return out, nil
}

// applies reports whether fl can run on a board of layout l.
func (fl Flow) applies(l hal.Layout) bool {
	if fl.Kind == KindEncrypted && l.Bootloader == (hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeDirectXIP}) {
		// MCUboot direct-xip runs an image where it lies, so it cannot
		// decrypt one (imgtool refuses --encrypt there): the engine
		// refuses such an image up front, as it must, and the flow has
		// nothing to cut.
		return false
	}
	return !fl.Reverting || l.Scheme.Reverts()
}

func runUpgrade(ctx context.Context, f *fixture, dev *flash.Emulator) error {
	a, err := f.attach(dev)
	if err != nil {
		return err
	}
	if err := a.install(ctx); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	o, err := f.powerOn(ctx, dev)
	if err != nil {
		return err
	}
	if err := o.a.confirm(ctx); err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	_, err = f.powerOn(ctx, dev)
	return err
}

func runRevert(ctx context.Context, f *fixture, dev *flash.Emulator) error {
	a, err := f.attach(dev)
	if err != nil {
		return err
	}
	if err := a.install(ctx); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	// The trial boots (BootAttempts of them), then the one that reverts.
	for range hal.MaxBootAttempts + 1 {
		o, err := f.powerOn(ctx, dev)
		if err != nil {
			return err
		}
		if o.res.Version == f.oldVer {
			return nil
		}
	}
	return errors.New("revert: the new image still runs after every boot attempt without a confirm")
}

func runRollback(ctx context.Context, f *fixture, dev *flash.Emulator) error {
	a, err := f.attach(dev)
	if err != nil {
		return err
	}
	if err := a.install(ctx); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if f.layout.Scheme.Reverts() {
		o, err := f.powerOn(ctx, dev)
		if err != nil {
			return err
		}
		a = o.a
	}
	if err := a.rollback(ctx); err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	_, err = f.powerOn(ctx, dev)
	return err
}

// powered is the device after a power-on: what the bootloader booted, the
// software that runs on it, and the engine's state after its recovery.
type powered struct {
	res    hal.RebootResult
	a      *agent
	st     string
	status engine.Status
}

// powerOn is a power-on of the device: the bootloader over the flash as it
// is, then a fresh platform and engine, whose recovery runs first.
func (f *fixture) powerOn(ctx context.Context, dev *flash.Emulator) (*powered, error) {
	res, err := boot.Boot(dev, f.layout, f.bootOpts)
	if err != nil {
		if dev.PoweredOff() {
			return nil, fmt.Errorf("bootloader: %w", err)
		}
		return nil, &brickError{err: err}
	}
	a, err := f.attach(dev)
	if err != nil {
		return nil, err
	}
	st, err := a.recover(ctx)
	if err != nil {
		return nil, fmt.Errorf("recover (after booting %s %s): %w", res.Slot, res.Version, err)
	}
	return &powered{res: res, a: a, st: string(st.State), status: st}, nil
}

// brickError is a power-on after which the bootloader boots nothing.
type brickError struct{ err error }

func (e *brickError) Error() string { return "the device does not boot: " + e.err.Error() }
func (e *brickError) Unwrap() error { return e.err }

// check asserts what must hold after any power-on: the device runs the old
// or the new image, the slot it runs verifies, the engine reports what the
// bootloader booted, its state agrees with it, and a download checkpoint
// matches the bytes in the update slot. The boot state is the platform's
// (Describe, as the engine's Status carries it): the same reading of the
// flash that boot.Inspect makes.
func (f *fixture) check(ctx context.Context, dev *flash.Emulator, o *powered) error {
	v := o.res.Version
	if v != f.oldVer && v != f.newVer {
		return fmt.Errorf("runs %q in %s, neither the old image %s nor the new %s", v, o.res.Slot, f.oldVer, f.newVer)
	}
	st := o.status
	var run *hal.SlotState
	for i := range st.Slots {
		if st.Slots[i].Active {
			run = &st.Slots[i]
		}
	}
	if run == nil || run.Name != o.res.Slot || !run.Bootable || run.Version != v {
		return fmt.Errorf("booted %s %s but the boot state says %+v", o.res.Slot, v, st.Slots)
	}
	if st.RunningVersion != v || st.RunningSlot != o.res.Slot {
		return fmt.Errorf("the engine reports %s %s running, the bootloader booted %s %s", st.RunningSlot, st.RunningVersion, o.res.Slot, v)
	}
	if err := f.consistent(o, *run); err != nil {
		return err
	}
	if v == f.newVer && f.runImg != nil {
		if err := f.runsPlain(dev, o.res.Slot); err != nil {
			return err
		}
	}
	if o.st == stateDownloading && st.Offset > 0 && f.slotImg != nil {
		// A checkpoint claims the slot holds the image's first Offset
		// bytes: a resume hashes on from there without reading them.
		// (A delta's checkpoint is at a byte of the delta, and names
		// the target bytes the slot holds in the decoder's state: the
		// resume and the target's read-back check those.)
		n := st.Offset
		if n > int64(len(f.slotImg)) {
			return fmt.Errorf("engine checkpoint at byte %d, past the end of the %d-byte image", n, len(f.slotImg))
		}
		got, err := o.a.downloaded(ctx, n)
		if err != nil {
			return fmt.Errorf("read the update slot: %w", err)
		}
		if i := firstDiff(got, f.slotImg[:n]); i >= 0 {
			return fmt.Errorf("engine checkpoint at byte %d, but the update slot differs from the image at byte %d (0x%02x, want 0x%02x): a resume would hash bytes the slot does not hold", n, i, got[i], f.slotImg[i])
		}
	}
	return nil
}

// runsPlain checks that the running slot holds runImg byte for byte: an
// encrypted image runs from its plain payload, whichever bootloader or
// engine decrypted it.
func (f *fixture) runsPlain(dev *flash.Emulator, slot string) error {
	p, ok := f.layout.Partition(slot)
	if !ok {
		return fmt.Errorf("runs from %q, which the layout does not have", slot)
	}
	got := make([]byte, len(f.runImg))
	if _, err := dev.ReadAt(got, int64(p.Offset)); err != nil {
		return fmt.Errorf("read %s: %w", slot, err)
	}
	if i := firstDiff(got, f.runImg); i >= 0 {
		return fmt.Errorf("runs the new image from %s, but at byte %d it holds 0x%02x, the plain image 0x%02x: the payload was not decrypted", slot, i, got[i], f.runImg[i])
	}
	return nil
}

// firstDiff returns the first index where a and b differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// consistent asserts that the engine's state agrees with the boot state:
// run is the slot that runs.
func (f *fixture) consistent(o *powered, run hal.SlotState) error {
	v, st := o.res.Version, o.status
	pending := false
	for _, s := range st.Slots {
		pending = pending || s.Pending
	}
	bad := func(why string) error {
		return fmt.Errorf("engine state %s, but %s (runs %s %s, trial %v, slots %+v)", o.st, why, o.res.Slot, v, st.Trial, st.Slots)
	}
	switch o.st {
	case stateTesting:
		if v != f.newVer {
			return bad("the new image does not run")
		}
		if f.layout.Scheme.Reverts() && (!st.Trial || run.Confirmed) {
			return bad("the bootloader has no trial running")
		}
	case stateConfirmed:
		if v != f.newVer || !run.Confirmed || st.Trial {
			return bad("the new image does not run confirmed")
		}
	case stateInstalled:
		if !pending {
			return bad("nothing is pending for the next boot")
		}
	case stateRolledBack, stateIdle, stateFailed, stateDownloading, stateVerifying:
		if v != f.oldVer {
			return bad("the new image runs")
		}
		if st.Trial {
			return bad("the bootloader has a trial running")
		}
	default:
		return bad("the state is unknown to the suite")
	}
	if o.st != stateInstalled && pending {
		return bad("a boot request is pending that the engine does not know of")
	}
	return nil
}

// maxRetrySteps bounds complete: an upgrade from any state takes at most
// a resume or install, a power-on, a confirm and a power-on.
const maxRetrySteps = 8

// complete retries the upgrade from o to its end: the new image runs,
// confirmed, and the engine says so. Each step is what an agent does in
// that state.
func (f *fixture) complete(ctx context.Context, dev *flash.Emulator, o *powered) (*powered, error) {
	var trail []string
	for range maxRetrySteps {
		trail = append(trail, o.st+"/"+o.res.Version)
		if o.res.Version == f.newVer && o.st == stateConfirmed {
			return o, nil
		}
		var err error
		switch o.st {
		case stateTesting:
			if err = o.a.confirm(ctx); err != nil {
				return nil, fmt.Errorf("retry: confirm: %w", err)
			}
			if o.st, err = o.a.state(ctx); err != nil {
				return nil, fmt.Errorf("retry: status: %w", err)
			}
		case stateInstalled:
			if o, err = f.powerOn(ctx, dev); err != nil {
				return nil, fmt.Errorf("retry: %w", err)
			}
		case stateDownloading, stateVerifying:
			if err = o.a.resume(ctx); err != nil {
				return nil, fmt.Errorf("retry: resume: %w", err)
			}
			if o.st, err = o.a.state(ctx); err != nil {
				return nil, fmt.Errorf("retry: status: %w", err)
			}
		default:
			if o.res.Version == f.newVer {
				return nil, fmt.Errorf("retry: the new image runs but the engine is %s: nothing confirms it (trail %v)", o.st, trail)
			}
			if err = o.a.install(ctx); err != nil {
				return nil, fmt.Errorf("retry: install: %w", err)
			}
			if o.st, err = o.a.state(ctx); err != nil {
				return nil, fmt.Errorf("retry: status: %w", err)
			}
		}
	}
	return nil, fmt.Errorf("retry: the upgrade does not complete in %d steps (trail %v)", maxRetrySteps, trail)
}

// finish completes the upgrade from o and checks the end: the new image
// runs confirmed, and still does after one more power-on.
func (f *fixture) finish(ctx context.Context, dev *flash.Emulator, o *powered) error {
	if _, err := f.complete(ctx, dev, o); err != nil {
		return err
	}
	o, err := f.powerOn(ctx, dev)
	if err != nil {
		return fmt.Errorf("power-on after the upgrade: %w", err)
	}
	if err := f.check(ctx, dev, o); err != nil {
		return fmt.Errorf("after the upgrade: %w", err)
	}
	if o.res.Version != f.newVer || o.st != stateConfirmed {
		return fmt.Errorf("after the upgrade and a power-on: runs %s, engine %s; want %s, %s", o.res.Version, o.st, f.newVer, stateConfirmed)
	}
	return nil
}
