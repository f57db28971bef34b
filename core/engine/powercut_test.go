package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
)

// TestPowerCut_EveryOperationOfAnInstall cuts the power at every flash
// operation of an install (before it, after it, and in the middle of it),
// powers the device on again and checks, as MCUboot's simulator does, that
// it boots a valid image (the old one, or the new one on trial), that the
// engine's state is one Recover knows, and that the upgrade can then be
// finished.
func TestPowerCut_EveryOperationOfAnInstall(t *testing.T) {
	for _, b := range []struct {
		name    string
		payload int
	}{
		{"longan-nano", 40 << 10},   // single-bank, 1 KiB sectors, 2-byte writes, 2 KiB params
		{"esp32-devkitc", 40 << 10}, // dual-bank, 4 KiB sectors, 16-byte writes
	} {
		t.Run(b.name, func(t *testing.T) {
			k := boardKeys(t, b.name)
			base := newDevice(t, b.name, k)
			base.factory("1.0.0", b.payload)
			src := writeFile(t, signed(t, k.priv, "1.1.0", b.payload, 2))
			opts := engine.Options{ChunkSize: 4 << 10, CheckpointEvery: 8 << 10, Retries: -1}
			ctx := context.Background()

			// A clean install, to count its operations.
			clean := &device{t: t, layout: base.layout, keys: k}
			clean.powerOn(base.dev.Clone())
			if err := clean.engine(opts).Install(ctx, engine.Source{URL: src}); err != nil {
				t.Fatal(err)
			}
			ops := clean.dev.Ops()
			t.Logf("%s: %d flash operations in a clean install", b.name, ops)
			if ops < 10 {
				t.Fatalf("a clean install took %d flash operations", ops)
			}
			modes := []flash.CutWhen{flash.Before, flash.After, flash.Torn}
			if testing.Short() {
				modes = modes[2:]
			}
			for _, when := range modes {
				for at := 1; at <= ops; at++ {
					name := fmt.Sprintf("%s cut %s op %d of %d", b.name, when, at, ops)
					d := &device{t: t, layout: base.layout, keys: k}
					d.powerOn(base.dev.Clone())
					d.dev.SetCut(flash.Cut{At: at, When: when, Seed: uint64(at)})
					err := d.engine(opts).Install(ctx, engine.Source{URL: src})
					if err == nil && !(when == flash.After && at == ops) {
						t.Fatalf("%s: install succeeded through the cut", name)
					}

					d.powerOn(d.dev.Clone())
					res, err := d.plat.Reboot(ctx)
					if err != nil {
						t.Fatalf("%s: the device does not boot: %v", name, err)
					}
					if res.Version != "1.0.0+0" && res.Version != "1.1.0+0" {
						t.Fatalf("%s: boots %q", name, res.Version)
					}
					st, err := d.engine(opts).Recover(ctx)
					if err != nil {
						t.Fatalf("%s: recover: %v", name, err)
					}
					if res.Version == "1.1.0+0" {
						if st.State != engine.Testing {
							t.Fatalf("%s: 1.1.0 runs, state %s (%s)", name, st.State, st.LastError)
						}
						continue
					}
					switch st.State {
					case engine.Downloading, engine.Verifying:
						err = d.engine(opts).Resume(ctx)
					case engine.Installed:
					case engine.Failed, engine.Confirmed, engine.Idle:
						err = d.engine(opts).Install(ctx, engine.Source{URL: src})
					default:
						t.Fatalf("%s: state %s after the power-on", name, st.State)
					}
					if err != nil {
						t.Fatalf("%s: finishing from state %s: %v", name, st.State, err)
					}
					if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing {
						t.Fatalf("%s: state %s", name, st.State)
					}
				}
			}
		})
	}
}
