package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// On b-l475e-iot01a (dual-bank, three boot attempts) the factory image runs
// from ota and upgrades go to app.
const rollbackBoard = "b-l475e-iot01a"

// wantNothingToRollBack fails unless Rollback refuses with
// ErrNothingToRollBack and names what runs.
func wantNothingToRollBack(t *testing.T, err error, runs string) {
	t.Helper()
	if !errors.Is(err, engine.ErrNothingToRollBack) {
		t.Fatalf("rollback: %v, want ErrNothingToRollBack", err)
	}
	if !strings.Contains(err.Error(), runs+" runs") {
		t.Fatalf("rollback error %q does not say %q runs", err, runs)
	}
}

// wantState fails unless the engine is in state s with nothing on trial.
func wantState(t *testing.T, st engine.Status, s engine.State, running string) {
	t.Helper()
	if st.State != s || st.RunningVersion != running || st.Trial {
		t.Fatalf("state %s, %s runs (trial %v), want %s with %s running and no trial", st.State, st.RunningVersion, st.Trial, s, running)
	}
}

// Issue 9, reproduction 1: after the bootloader reverted a trial image there
// is nothing to roll back to; the rollback used to make the reverted image
// active and confirmed.
func TestRollback_AfterRevertIsRefused(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, rollbackBoard, boardKeys(t, rollbackBoard))
	d.factory("1.0.0", 8<<10)
	e := d.engine(engine.Options{})
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	for range d.layout.BootAttempts {
		d.expectRuns("1.1.0+0")
	}
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")

	wantNothingToRollBack(t, e.Rollback(ctx), "ota 1.0.0+0")
	for range 3 {
		wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
	}
	for _, s := range d.status().Slots {
		if s.Name == hal.PartApp && (s.Bootable || s.Confirmed) {
			t.Fatalf("the reverted image's slot %+v is still bootable", s)
		}
	}
}

// The same after an operator's rollback from a trial: the second rollback
// is refused and the image given up does not come back.
func TestRollback_SecondRollbackIsRefused(t *testing.T) {
	ctx := context.Background()
	d, e := rolledBackFromTrial(t)
	// Asked twice before the reboot: the second says a rollback is due.
	wantNothingToRollBack(t, e.Rollback(ctx), "app 1.1.0+0")
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
	wantNothingToRollBack(t, e.Rollback(ctx), "ota 1.0.0+0")
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")

	// Installed again, it runs again.
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing {
		t.Fatalf("state %s after installing the rolled-back image again, want testing", st.State)
	}
}

// A confirmed upgrade rolls back once, to the image it replaced; then
// there is nothing left to roll back to.
func TestRollback_ConfirmedOnce(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, rollbackBoard, boardKeys(t, rollbackBoard))
	d.factory("1.0.0", 8<<10)
	e := d.engine(engine.Options{})
	// Nothing installed since the factory: nothing to return to.
	wantNothingToRollBack(t, e.Rollback(ctx), "ota 1.0.0+0")
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("1.1.0+0")
	if err := e.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Rollback(ctx); err != nil {
		t.Fatalf("rollback of a confirmed upgrade: %v", err)
	}
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
	wantNothingToRollBack(t, e.Rollback(ctx), "ota 1.0.0+0")
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
}

// A failed install leaves nothing to give up.
func TestRollback_AfterFailedInstallIsRefused(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, rollbackBoard, boardKeys(t, rollbackBoard))
	d.factory("1.0.0", 8<<10)
	e := d.engine(engine.Options{})
	err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, boardKeys(t, rollbackBoard).priv, "1.1.0", 8<<10, 1))})
	wantIs(t, err, engine.ErrVerify)
	wantNothingToRollBack(t, e.Rollback(ctx), "ota 1.0.0+0")
	wantState(t, d.expectRuns("1.0.0+0"), engine.Failed, "1.0.0+0")
}

// Issue 9, reproduction 3: an install refused before it writes anything
// leaves a pending one as it was: status says installed, the next boot
// runs it on trial, confirm keeps it.
func TestInstall_RefusedKeepsPending(t *testing.T) {
	const size = 8 << 10
	refusals := []struct {
		name  string
		image func(d *device) []byte
	}{
		{"larger than the slot", func(d *device) []byte {
			ota, _ := d.layout.Partition(hal.PartOTA)
			return signed(t, d.keys.priv, "1.2.0", int(ota.Size), 1)
		}},
		{"older than the running image", func(d *device) []byte {
			return signed(t, d.keys.priv, "0.9.0", size, 1)
		}},
		// A trusted key, but not of the board's algorithm: the signature
		// comes after the payload, so it is read ahead from the source.
		{"signed with another algorithm", func(d *device) []byte {
			return signed(t, d.alien.priv, "1.2.0", size, 1)
		}},
	}
	for _, board := range []string{rollbackBoard, "longan-nano"} {
		for _, r := range refusals {
			t.Run(board+"/"+r.name, func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, board, boardKeys(t, board))
				d.factory("1.0.0", size)
				alienType := image.KeyEd25519
				if d.layout.Signature == image.KeyEd25519 {
					alienType = image.KeyECDSAP256
				}
				d.alien = newKeysOf(t, alienType)
				e := d.engine(engine.Options{Keys: append(slices.Clone(d.keys.pub), d.alien.pub...)})
				good := writeFile(t, signed(t, d.keys.priv, "1.1.0", size, 1))
				if err := e.Install(ctx, engine.Source{URL: good}); err != nil {
					t.Fatal(err)
				}
				pending := d.status()

				bad := writeFile(t, r.image(d))
				wantIs(t, e.Install(ctx, engine.Source{URL: bad}), engine.ErrRefused)
				st := d.status()
				if st.State != engine.Installed || st.Image != "1.1.0+0" || st.Source != good || !st.RebootRequired || st.LastError != "" {
					t.Fatalf("after a refused install: state %s, image %s from %s, reboot %v, last error %q; want installed 1.1.0+0 from %s",
						st.State, st.Image, st.Source, st.RebootRequired, st.LastError, good)
				}
				if len(st.Slots) != len(pending.Slots) {
					t.Fatalf("slots %+v, want %+v", st.Slots, pending.Slots)
				}
				for i := range st.Slots {
					if st.Slots[i] != pending.Slots[i] {
						t.Fatalf("slot %+v, want %+v as before the refused install", st.Slots[i], pending.Slots[i])
					}
				}
				if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing && st.State != engine.Confirmed {
					t.Fatalf("state %s after the reboot, want testing", st.State)
				}
				if err := e.Confirm(ctx); err != nil {
					t.Fatal(err)
				}
				if st := d.status(); st.State != engine.Confirmed || st.Image != "1.1.0+0" {
					t.Fatalf("state %s image %s after confirm, want confirmed 1.1.0+0", st.State, st.Image)
				}
			})
		}
	}
}

// A confirm between a rollback and the reboot would keep the image given
// up (and raise the security counter past the one to return to): refused.
func TestConfirm_AfterRollbackBeforeRebootIsRefused(t *testing.T) {
	ctx := context.Background()
	d, e := rolledBackFromTrialWithCounter(t, 7)
	wantIs(t, e.Confirm(ctx), engine.ErrBusy)
	if err := d.plat.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); hal.CodeOf(err) != hal.CodeInvalid {
		t.Fatalf("port's confirm after a rollback: %v, want an invalid request", err)
	}
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
}

// TestInstall_RefusedWhileARollbackAwaitsItsReboot: after a rollback from a
// trial (or of a confirmed upgrade), the image to return to sits in the
// slot an install would write; an install before the reboot would erase it
// and leave nothing to boot. It is refused, naming the reboot, and the
// device returns to the old image. Found by the sequence tester.
func TestInstall_RefusedWhileARollbackAwaitsItsReboot(t *testing.T) {
	for _, confirmed := range []bool{false, true} {
		t.Run(map[bool]string{false: "from-trial", true: "of-confirmed"}[confirmed], func(t *testing.T) {
			ctx := context.Background()
			d := newDevice(t, rollbackBoard, boardKeys(t, rollbackBoard))
			d.factory("1.0.0", 8<<10)
			e := d.engine(engine.Options{})
			if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 1))}); err != nil {
				t.Fatal(err)
			}
			d.expectRuns("1.1.0+0")
			if confirmed {
				if err := e.Confirm(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.2.0", 8<<10, 1))})
			if !errors.Is(err, engine.ErrBusy) || !strings.Contains(err.Error(), "reboot") {
				t.Fatalf("install before the rollback's reboot: %v, want ErrBusy naming the reboot", err)
			}
			wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
		})
	}
}

// Found by the sequence tester with the agent: a rollback from a trial,
// then an agent that restarts (its Recover runs, the device does not
// reboot) and takes an order. Recover took the rollback as done, the
// install erased the slot the next boot returns to, and a refused image
// there left nothing to boot. The rollback awaits its power-on for as long
// as the image given up runs, and the port refuses to erase its slot.
func TestRollback_AwaitsItsRebootAcrossARecover(t *testing.T) {
	ctx := context.Background()
	d, e := rolledBackFromTrial(t)
	st, err := e.Recover(ctx) // a process restart, not a power-on
	if err != nil {
		t.Fatal(err)
	}
	if st.State != engine.RolledBack || !st.RebootRequired {
		t.Fatalf("after a recover without a reboot: state %s, reboot required %v; want rolled-back, reboot required", st.State, st.RebootRequired)
	}
	err = e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.2.0", 8<<10, 1))})
	wantIs(t, err, engine.ErrBusy)
	// The port holds too, whatever the engine's record says.
	if err := d.plat.Init(ctx, hal.InitRequest{Size: 4096}); !errors.Is(err, hal.ErrBusy) {
		t.Fatalf("port Init while a rollback awaits its power-on: %v, want hal.ErrBusy", err)
	}
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
}

// rolledBackFromTrial returns a device whose image 1.1.0 runs on trial over
// the factory's 1.0.0 and was rolled back, the reboot not yet come.
func rolledBackFromTrial(t *testing.T) (*device, *engine.Engine) {
	t.Helper()
	return rolledBackFromTrialWithCounter(t, 1)
}

// rolledBackFromTrialWithCounter is rolledBackFromTrial with 1.1.0 carrying
// security counter cnt.
func rolledBackFromTrialWithCounter(t *testing.T, cnt uint32) (*device, *engine.Engine) {
	t.Helper()
	ctx := context.Background()
	d := newDevice(t, rollbackBoard, boardKeys(t, rollbackBoard))
	d.factory("1.0.0", 8<<10)
	e := d.engine(engine.Options{})
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, cnt))}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("1.1.0+0")
	if err := e.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	return d, e
}
