package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Status is the engine's state together with what the port reports. It
// marshals to the object `otarun status --json` prints.
type Status struct {
	State  State      `json:"state"`
	Board  string     `json:"board"`
	Scheme hal.Scheme `json:"scheme"`
	// RunningSlot and RunningVersion name the image that runs now
	// ("" when none the bootloader can verify).
	RunningSlot    string `json:"running_slot"`
	RunningVersion string `json:"running_version"`
	// Trial is true while the running image is on trial.
	Trial bool            `json:"trial"`
	Slots []hal.SlotState `json:"slots"`
	// Image is the version being (or last) installed, Previous the one
	// that ran when that install began.
	Image    string `json:"image,omitempty"`
	Previous string `json:"previous,omitempty"`
	Source   string `json:"source,omitempty"`
	// Offset and Total are the download's progress (Total 0 while
	// unknown), Percent as in Event.
	Offset  int64 `json:"offset,omitempty"`
	Total   int64 `json:"total,omitempty"`
	Percent int   `json:"percent"`
	// RebootRequired is true when the state takes effect at the next
	// reboot.
	RebootRequired bool `json:"reboot_required"`
	// LastError is why the engine is Failed or RolledBack, or what
	// interrupted a download.
	LastError string `json:"last_error,omitempty"`
	// SecurityCounter is the lowest security counter an image may carry:
	// the bootloader's (hal.BootState), of which the engine keeps no copy.
	SecurityCounter uint32 `json:"security_counter"`
	// KeySet is the version of the device's key set (core/keyset), 0 while
	// it trusts the keys it was provisioned with.
	KeySet uint64 `json:"key_set,omitempty"`
}

// Status returns the engine's state and the port's boot state. It changes
// nothing.
func (e *Engine) Status(ctx context.Context) (Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, err := e.load(ctx)
	if err != nil {
		return Status{}, err
	}
	dev, err := e.describe(ctx)
	if err != nil {
		return Status{}, err
	}
	st := statusOf(rec, dev)
	if set, err := e.keySet(ctx); err == nil && set != nil {
		st.KeySet = set.Version
	}
	return st, nil
}

func statusOf(rec record, dev device) Status {
	st := Status{
		State:           rec.State,
		Board:           dev.info.Layout.Board,
		Scheme:          dev.scheme,
		RunningSlot:     dev.running.Name,
		RunningVersion:  dev.running.Version,
		Trial:           dev.trial,
		Slots:           dev.info.Boot.Slots,
		Image:           rec.Image,
		Previous:        rec.Previous,
		Source:          rec.Source,
		Offset:          rec.Offset,
		Total:           rec.Total,
		Percent:         percent(rec.Offset, rec.Total),
		RebootRequired:  rec.Reboot,
		LastError:       rec.Error,
		SecurityCounter: dev.info.Boot.SecurityCounter,
	}
	if st.Slots == nil {
		st.Slots = []hal.SlotState{}
	}
	if !dev.running.Bootable {
		st.RunningSlot, st.RunningVersion = "", ""
	}
	return st
}

// newImageRuns reports whether the image rec installed is the one that
// runs now.
func newImageRuns(rec record, dev device) bool {
	if !dev.running.Bootable || !image.SameVersion(dev.running.Version, rec.Image) {
		return false
	}
	if dev.scheme == hal.DualBank {
		return dev.running.Name == rec.Slot
	}
	// Single-bank and swap: the image runs from app once copied or
	// swapped there, unless the request is still pending (an equal
	// version installed with a downgrade).
	ota, _ := dev.slot(rec.Slot)
	return !ota.Pending
}

// updatePending reports whether the bootloader still has a request for the
// update slot.
func updatePending(rec record, dev device) bool {
	s, ok := dev.slot(rec.Slot)
	return ok && s.Pending
}

// Recover reconciles the persisted state with what the bootloader did, and
// is to be run after every power-on: an installed image that now runs on
// trial is Testing, a trial image that no longer runs was RolledBack, an
// installed image the bootloader refused is Failed, a request SetBoot
// recorded just before a crash is Installed. An interrupted download stays
// Downloading, for Resume.
func (e *Engine) Recover(ctx context.Context) (Status, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, err := e.load(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("recover: %w", err)
	}
	dev, err := e.describe(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("recover: %w", err)
	}
	old := rec
	runs := newImageRuns(rec, dev)
	var msg string
	switch rec.State {
	case Verifying, Installed:
		switch {
		case runs:
			rec.State, rec.Reboot, rec.Error = Testing, false, ""
			msg = fmt.Sprintf("image %s runs from %s, on trial: confirm it after a health check", rec.Image, dev.running.Name)
			if dev.running.Confirmed && !dev.trial {
				rec.State = Confirmed
				msg = fmt.Sprintf("image %s runs from %s, confirmed (permanent boot)", rec.Image, dev.running.Name)
			}
		case updatePending(rec, dev):
			// SetBoot was done; a Verifying record means the crash came
			// before Installed was saved.
			rec.State, rec.Reboot = Installed, true
			msg = fmt.Sprintf("image %s installed in %s: reboot to apply", rec.Image, rec.Slot)
		case rec.State == Installed:
			rec.State, rec.Reboot = Failed, false
			rec.Error = fmt.Sprintf("the bootloader did not start image %s from %s; %s %s runs (it refused the image or its request was cancelled)",
				rec.Image, rec.Slot, dev.running.Name, dev.running.Version)
			msg = rec.Error
		}
	case Testing:
		switch {
		case runs && dev.running.Confirmed && !dev.trial:
			rec.State = Confirmed
			msg = fmt.Sprintf("image %s confirmed", rec.Image)
		case !runs:
			rec.State, rec.Reboot = RolledBack, false
			rec.Error = fmt.Sprintf("image %s was not confirmed: the bootloader returned to %s %s", rec.Image, dev.running.Name, dev.running.Version)
			msg = rec.Error
		}
	case RolledBack:
		// While the image given up still runs, the power-on that carries
		// out the rollback has not come (an agent that restarted, not
		// the device): the rollback still awaits it, and so does the
		// guard of the slot it returns to.
		if rec.Reboot && !runs {
			rec.Error = fmt.Sprintf("image %s rolled back on request; %s %s runs", rec.Image, dev.running.Name, dev.running.Version)
			msg = rec.Error
			rec.Reboot = false
		}
	}
	if rec.State != old.State || rec.Reboot != old.Reboot || rec.Error != old.Error {
		if err := e.announce(ctx, &rec, msg); err != nil {
			return Status{}, fmt.Errorf("recover: %w", err)
		}
	}
	return statusOf(rec, dev), nil
}

// Confirm marks the running image good (SetBoot confirm): a new image on
// trial becomes the one the bootloader keeps, and the bootloader raises its
// security counter to the image's. Run it after the health check.
func (e *Engine) Confirm(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, err := e.load(ctx)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	dev, err := e.describe(ctx)
	if err != nil {
		return fmt.Errorf("confirm: %w", err)
	}
	if rec.State == RolledBack && rec.Reboot {
		return fmt.Errorf("confirm: %w: image %s is being rolled back and the previous image runs after the next reboot: reboot first (otarun boot); install it again to keep it", ErrBusy, rec.Image)
	}
	if rec.State == Installed && !newImageRuns(rec, dev) {
		return fmt.Errorf("confirm: %w: image %s is installed but does not run yet: reboot first (otarun boot), then confirm", ErrBusy, rec.Image)
	}
	if !dev.running.Bootable {
		return fmt.Errorf("confirm: %w: no verified image runs", hal.ErrNoImage)
	}
	if err := e.p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		return fmt.Errorf("confirm %s %s: %w", dev.running.Name, dev.running.Version, err)
	}
	if (rec.State == Testing || rec.State == Installed) && newImageRuns(rec, dev) {
		rec.State, rec.Error, rec.Reboot = Confirmed, "", false
		return e.announce(ctx, &rec, fmt.Sprintf("image %s confirmed in %s", rec.Image, dev.running.Name))
	}
	e.log.Info("confirmed the running image", "slot", dev.running.Name, "version", dev.running.Version, "state", rec.State)
	return nil
}

// Rollback gives up the new image, and what that means depends on the state
// (docs/engine.md, "Commands in every state"):
//
//   - Downloading, Verifying: the interrupted download is dropped and the
//     state of before the install stands again;
//   - Installed: the pending request is cancelled, the running image stays;
//   - Testing: the trial ends, the old image runs after the next reboot;
//   - Confirmed: dual-bank, the image the install replaced runs again
//     after the next reboot, for good; single-bank keeps no old image and
//     answers hal.ErrUnsupported;
//   - Failed: as Confirmed when a confirmed image stood before the failed
//     install (it may return to the image it replaced if the install did
//     not reach it), else as Idle;
//   - Idle, RolledBack: refused with ErrNothingToRollBack, naming what
//     runs: there is no new image to give up, and the image a revert or
//     an earlier rollback gave up never boots again until it is
//     installed again.
//
// Every accepted rollback of an image ends in RolledBack; dropping a
// download returns to the state that stood before it.
func (e *Engine) Rollback(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	rec, err := e.load(ctx)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	switch rec.State {
	case Downloading, Verifying:
		// A crash after SetBoot and before Installed was saved leaves a
		// Verifying record with a request pending: cancel it first, so
		// that a cut between the two leaves no rolled-back record over
		// a request.
		dev, err := e.describe(ctx)
		if err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
		if updatePending(rec, dev) {
			if err := e.p.Rollback(ctx); err != nil {
				return fmt.Errorf("rollback: cancel the request for %s: %w", rec.Slot, err)
			}
		}
		// What stood before the install stands again: the image the
		// running one replaced included, if the download did not reach
		// it (the port's Rollback checks that it still verifies).
		n := rec.restore(rec.Base)
		msg := fmt.Sprintf("install of %s abandoned at byte %d; the engine is %s again", rec.Source, rec.Offset, n.State)
		return e.announce(ctx, &n, msg)
	}
	if rec.State == Failed && rec.Base != nil && rec.Base.State == Confirmed {
		// A failed install leaves what stood before it: the confirmed
		// image may still return to the one it replaced, when the
		// failed install did not reach that image's slot (checked
		// below, as for any confirmed image).
		rec = rec.restore(rec.Base)
	}
	dev, err := e.describe(ctx)
	if err != nil {
		return fmt.Errorf("rollback: %w", err)
	}
	runs := "no verified image runs"
	if dev.running.Bootable {
		runs = fmt.Sprintf("%s %s runs", dev.running.Name, dev.running.Version)
	}
	switch rec.State {
	case Idle:
		return fmt.Errorf("rollback: %w: no image was installed; %s", ErrNothingToRollBack, runs)
	case Failed:
		return fmt.Errorf("rollback: %w: the last install (%s) failed and left nothing to give up; %s", ErrNothingToRollBack, rec.Source, runs)
	case RolledBack:
		if rec.Reboot {
			return fmt.Errorf("rollback: %w: a rollback of image %s is already asked for; %s until the next reboot, then the image before it", ErrNothingToRollBack, rec.Image, runs)
		}
		return fmt.Errorf("rollback: %w: image %s was already given up (%s); %s, and %s boots again only when installed again",
			ErrNothingToRollBack, rec.Image, rec.Error, runs, rec.Image)
	}
	if rec.State == Confirmed && dev.scheme.Reverts() {
		if err := returnsToPrevious(rec, dev, runs); err != nil {
			return fmt.Errorf("rollback: %w", err)
		}
	}
	if err := e.p.Rollback(ctx); err != nil {
		switch {
		case errors.Is(err, hal.ErrUnsupported):
			return fmt.Errorf("rollback: %w; %s", err, runs)
		case rec.State == Confirmed && errors.Is(err, hal.ErrNoImage):
			// Nothing left to return to: a provisioned image, or one
			// whose predecessor was overwritten or given up.
			return fmt.Errorf("rollback: %w: %s and no other image may boot (%w)", ErrNothingToRollBack, runs, err)
		}
		return fmt.Errorf("rollback: %w", err)
	}
	if rec.State == Installed {
		rec.State, rec.Reboot = RolledBack, false
		rec.Error = fmt.Sprintf("request to boot %s cancelled; the running image stays", rec.Image)
		return e.announce(ctx, &rec, rec.Error)
	}
	rec.State, rec.Reboot = RolledBack, true
	rec.Error = "rollback requested: the previous image runs after the next reboot"
	if rec.Previous != "" {
		rec.Error = fmt.Sprintf("rollback of %s requested: %s runs again after the next reboot", rec.Image, rec.Previous)
	}
	return e.announce(ctx, &rec, rec.Error)
}

// returnsToPrevious refuses the rollback of a confirmed image unless the
// other slot still holds the image its install replaced: an install that
// stopped short of its request (dropped, or cut before SetBoot) may have
// left a complete image there that never ran, and a rollback must not make
// that one boot.
func returnsToPrevious(rec record, dev device, runs string) error {
	if rec.Previous == "" {
		return fmt.Errorf("%w: %s and nothing ran before image %s (provisioned, or installed over a blank slot)", ErrNothingToRollBack, runs, rec.Image)
	}
	other, _ := dev.slot(dev.update.Name)
	if !other.Bootable || !image.SameVersion(other.Version, rec.Previous) {
		holds := "no verified image"
		if other.Version != "" {
			holds = other.Version
			if other.Bootable {
				holds += ", never run (an install that did not finish)"
			}
		}
		return fmt.Errorf("%w: %s, and %s, which it replaced, is no longer in %s (it holds %s)", ErrNothingToRollBack, runs, rec.Previous, dev.update.Name, holds)
	}
	return nil
}
