package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
)

// cutEveryOperation runs install on a copy of base's flash once per flash
// operation and cut mode, cutting the power there, and calls check with
// the device powered on again (a new platform; the bootloader not yet run).
func cutEveryOperation(t *testing.T, base *device, install func(d *device) error, check func(name string, d *device)) {
	t.Helper()
	clean := &device{t: t, layout: base.layout, keys: base.keys}
	clean.powerOn(base.dev.Clone())
	before := clean.dev.Ops()
	if err := install(clean); err != nil {
		t.Fatal(err)
	}
	ops := clean.dev.Ops() - before
	modes := []flash.CutWhen{flash.Before, flash.After, flash.Torn}
	if testing.Short() {
		modes = modes[1:2]
	}
	for _, when := range modes {
		for at := 1; at <= ops; at++ {
			d := &device{t: t, layout: base.layout, keys: base.keys}
			d.powerOn(base.dev.Clone())
			d.dev.SetCut(flash.Cut{At: at, When: when, Seed: uint64(at)})
			_ = install(d)
			d.powerOn(d.dev.Clone())
			check(fmt.Sprintf("cut %s op %d of %d", when, at, ops), d)
		}
	}
}

// cutOpts make an install of a 20 KiB image take a few checkpoints.
var cutOpts = engine.Options{ChunkSize: 4 << 10, CheckpointEvery: 8 << 10, Retries: -1}

// cutBase is a board with a factory image 1.0.0, the flash the cuts start from.
func cutBase(t *testing.T, board string) *device {
	t.Helper()
	base := newDevice(t, board, boardKeys(t, board))
	base.factory("1.0.0", 20<<10)
	return base
}

// A rollback after a power cut anywhere in an install holds: the image
// given up does not run after the next reboot, and the engine says what
// runs.
func TestPowerCut_RollbackAfterAnInterruptedInstallHolds(t *testing.T) {
	for _, board := range []string{"longan-nano", "esp32-devkitc"} {
		t.Run(board, func(t *testing.T) {
			ctx := context.Background()
			base := cutBase(t, board)
			src := writeFile(t, signed(t, base.keys.priv, "1.1.0", 20<<10, 2))
			cutEveryOperation(t, base, func(d *device) error {
				return d.engine(cutOpts).Install(ctx, engine.Source{URL: src})
			}, func(name string, d *device) {
				err := d.engine(cutOpts).Rollback(ctx)
				res, st := d.recover()
				if err != nil {
					return // refused: nothing was promised
				}
				// RolledBack when the install had reached its request;
				// the state of before the install (the factory image's
				// confirmation) when a download was dropped.
				if res.Version != "1.0.0+0" || (st.State != engine.RolledBack && st.State != engine.Confirmed) {
					t.Fatalf("%s: rolled back, then %s %s runs (%s), state %s", name, res.Slot, res.Version, res.Action, st.State)
				}
			})
		})
	}
}

// A power cut anywhere in an install that replaces a pending one never
// leaves a trial of the old pending image under the new install's record.
func TestPowerCut_InstallOverAPendingOne(t *testing.T) {
	for _, board := range []string{"longan-nano", "esp32-devkitc"} {
		t.Run(board, func(t *testing.T) {
			ctx := context.Background()
			base := cutBase(t, board)
			if err := base.engine(cutOpts).Install(ctx, engine.Source{URL: writeFile(t, signed(t, base.keys.priv, "1.1.0", 20<<10, 2))}); err != nil {
				t.Fatal(err)
			}
			src := writeFile(t, signed(t, base.keys.priv, "1.2.0", 20<<10, 3))
			cutEveryOperation(t, base, func(d *device) error {
				return d.engine(cutOpts).Install(ctx, engine.Source{URL: src})
			}, func(name string, d *device) {
				res, st := d.recover()
				switch res.Version {
				case "1.0.0+0":
				case "1.1.0+0", "1.2.0+0":
					if st.State != engine.Testing || st.Image != res.Version {
						t.Fatalf("%s: %s runs, state %s of image %s", name, res.Version, st.State, st.Image)
					}
				default:
					t.Fatalf("%s: boots %q", name, res.Version)
				}
			})
		})
	}
}

// Found by the sequence tester (nodemcu-esp8266): a downgrade cut after it
// recorded itself and before it erased anything, then dropped by a
// rollback, left the engine rolled back from the image it never wrote, and
// a second rollback was refused while the image the running one replaced
// was intact in the other slot. Dropping a download returns to the state of
// before the install, and the rollback that state allows still works.
func TestPowerCut_DroppedDownloadKeepsTheRollbackBefore(t *testing.T) {
	ctx := context.Background()
	d := downgradeCutAfterItsRecord(t, "nodemcu-esp8266", "1.0.5")
	e := d.engine(cutOpts)
	if st := d.status(); st.State != engine.Downloading {
		t.Fatalf("after the cut: state %s, want downloading (the install recorded itself)", st.State)
	}
	if err := e.Rollback(ctx); err != nil {
		t.Fatalf("rollback of the interrupted download: %v", err)
	}
	wantState(t, d.expectRuns("1.1.0+0"), engine.Confirmed, "1.1.0+0")
	if err := e.Rollback(ctx); err != nil {
		t.Fatalf("rollback of 1.1.0 to the intact 1.0.0: %v", err)
	}
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
}

// Found by the sequence tester (nucleo-h743zi): an install cut after it
// wrote the whole image and before its request, its download dropped, then
// a rollback of the factory image: the rollback made the image that never
// ran active. However the install was cut, two rollbacks and two boots
// never run an image that did not run before them.
func TestPowerCut_RollbacksNeverBootAnImageThatNeverRan(t *testing.T) {
	ctx := context.Background()
	base := cutBase(t, "nucleo-h743zi")
	src := writeFile(t, signed(t, base.keys.priv, "1.0.1", 20<<10, 1))
	cutEveryOperation(t, base, func(d *device) error {
		return d.engine(cutOpts).Install(ctx, engine.Source{URL: src})
	}, func(name string, d *device) {
		res, _ := d.recover()
		ran := map[string]bool{"1.0.0+0": true, res.Version: true}
		for i := range 2 {
			err := d.engine(cutOpts).Rollback(ctx)
			res, st := d.recover()
			if !ran[res.Version] {
				t.Fatalf("%s: rollback %d (%v), then %s runs, which never ran before (state %s)", name, i+1, err, res.Version, st.State)
			}
		}
	})
}

// Found by the sequence tester (nucleo-h743zi): a downgrade cut after it
// recorded itself, resumed without --allow-downgrade (refused: failed),
// then a rollback of the confirmed image: refused, though the image it
// replaced was intact in the other slot. A failed install leaves the
// rollback that stood before it.
func TestPowerCut_FailedResumeKeepsTheRollbackBefore(t *testing.T) {
	ctx := context.Background()
	d := downgradeCutAfterItsRecord(t, "nucleo-h743zi", "0.1.2")
	d.expectRuns("1.1.0+0")
	e := d.engine(cutOpts)
	wantIs(t, e.Resume(ctx), engine.ErrRefused)
	if err := e.Rollback(ctx); err != nil {
		t.Fatalf("rollback of 1.1.0 to the intact 1.0.0 after the failed resume: %v", err)
	}
	wantState(t, d.expectRuns("1.0.0+0"), engine.RolledBack, "1.0.0+0")
}

// downgradeCutAfterItsRecord returns board's device with 1.1.0 installed over
// the factory's 1.0.0 and confirmed, then the install of a downgrade to
// version cut after it saved its record (op 1) and before the first change
// to the slot that holds 1.0.0 (op 2), powered on again (the bootloader not
// yet run).
func downgradeCutAfterItsRecord(t *testing.T, board, version string) *device {
	t.Helper()
	ctx := context.Background()
	d := cutBase(t, board)
	e := d.engine(cutOpts)
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 20<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("1.1.0+0")
	if err := e.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	d.dev.SetCut(flash.Cut{At: 2, When: flash.Before})
	down := cutOpts
	down.AllowDowngrade = true
	if err := d.engine(down).Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, version, 20<<10, 1))}); err == nil {
		t.Fatal("install: no error with the power cut")
	}
	d.powerOn(d.dev.Clone())
	return d
}
