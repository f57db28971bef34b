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
				if res.Version != "1.0.0+0" || st.State != engine.RolledBack {
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
