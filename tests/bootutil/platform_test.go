package bootutil

import (
	"bytes"
	"context"
	"crypto"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
)

// TestMCUboot_BootsWhatCoreBootInstalled installs an image the way every
// otaport port does, through core/boot's Platform (Init, Write, SetBoot) on
// the nRF52840 swap-move board, and lets MCUboot's own swap-move bootloader
// boot it: it swaps it in, and at the next power-on swaps it back unless the
// Platform confirmed it in between. Beside it, a copy of the flash powers on
// with core/boot's simulated bootloader: it must boot the same version and
// leave both slots byte for byte as MCUboot does, trailers and swap status
// included.
func TestMCUboot_BootsWhatCoreBootInstalled(t *testing.T) {
	mcubootTree(t)
	l, ok := haltest.Layout("nrf52840-dk-swap")
	if !ok {
		t.Fatal("haltest has no nrf52840-dk-swap board")
	}
	app, _ := l.Partition(hal.PartApp)
	ota, _ := l.Partition(hal.PartOTA)
	if len(l.Flash.Sectors) != 1 {
		t.Fatalf("%s: the harness takes uniform sectors, the board has %v", l.Board, l.Flash.Sectors)
	}
	g := geometry{sector: l.Flash.Sectors[0].Size, write: l.Flash.WriteAlign, erased: l.Flash.EraseValue, size: l.Flash.Size,
		pri: area{"primary", app.Offset, app.Size}, sec: area{"secondary", ota.Offset, ota.Size}}
	s := newSigner(t)
	b := compile(t, t.TempDir(), mcuboot.SwapMove, g.maxImgSectors(), s)
	imgs := map[string][]byte{
		"old": s.sign(t, payload(1, 50000), "1.0.0"),
		"new": s.sign(t, payload(2, 61000), "1.1.0"),
	}
	opts := boot.Options{Keys: []crypto.PublicKey{s.key.Public()}}

	type want struct{ boots, primary, secondary string }
	swapped := want{"primary 1.1.0+0", "new", "old"}
	back := want{"primary 1.0.0+0", "old", "new"}
	for _, c := range []struct {
		name    string
		confirm bool // core/boot confirms the new image after its first boot
		ons     []want
	}{
		{"unconfirmed reverts", false, []want{swapped, back, back}},
		{"confirmed by core/boot stays", true, []want{swapped, swapped, swapped}},
	} {
		t.Run(c.name, func(t *testing.T) {
			real := newDevice(t, g, mcuboot.SwapMove)
			real.write(t, g.pri, 0, imgs["old"]) // the factory's programmer
			platform(t, l, real, opts, func(ctx context.Context, pl *boot.Platform) error {
				img := imgs["new"]
				if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
					return err
				}
				for off := 0; off < len(img); off += 4096 {
					if err := pl.Write(ctx, uint64(off), img[off:min(off+4096, len(img))]); err != nil {
						return err
					}
				}
				return pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest, Size: uint64(len(img))})
			})
			sim := newDevice(t, g, mcuboot.SwapMove)
			sim.load(t, real.bytes(t))

			for i, w := range c.ons {
				if c.confirm && i == 1 {
					for _, d := range []*device{real, sim} {
						platform(t, l, d, opts, func(ctx context.Context, pl *boot.Platform) error {
							return pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm})
						})
					}
				}
				res, simErr := boot.Boot(sim.fl, l, opts)
				r := b.powerOn(t, real)
				if len(r.refused) > 0 {
					t.Errorf("power-on %d: refused flash operations: %q\nMCUboot's log:\n%s", i+1, r.refused, r.log)
				}
				if got := r.slot + " " + r.version; !r.booted || got != w.boots {
					t.Fatalf("power-on %d: MCUboot %s, want boots %s\nMCUboot's log:\n%s", i+1, r, w.boots, r.log)
				}
				for _, c := range []struct {
					a    area
					want string
				}{{g.pri, w.primary}, {g.sec, w.secondary}} {
					if err := real.holds(t, c.a, c.want, imgs); err != nil {
						t.Errorf("power-on %d: %v", i+1, err)
					}
				}

				if simErr != nil || res.Slot != hal.PartApp || res.Version != r.version {
					t.Errorf("power-on %d: core/boot's bootloader boots %+v (error %v), MCUboot boots %s from app", i+1, res, simErr, r.version)
				}
				for _, a := range []area{g.pri, g.sec} {
					got, want := sim.read(t, a, 0, int(a.size)), real.read(t, a, 0, int(a.size))
					if !bytes.Equal(got, want) {
						at := firstDiff(got, want)
						t.Errorf("power-on %d: core/boot leaves the %s slot other than MCUboot does: at 0x%x it holds %02x, MCUboot %02x\nMCUboot's log:\n%s",
							i+1, a.name, at, got[at], want[at], r.log)
					}
				}
			}
		})
	}
}

// platform opens core/boot's Platform on d's flash, runs do and closes it:
// what a port does between two power-ons.
func platform(t *testing.T, l hal.Layout, d *device, opts boot.Options, do func(context.Context, *boot.Platform) error) {
	t.Helper()
	pl, err := boot.NewPlatform(l, d.fl, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := do(context.Background(), pl); err != nil {
		t.Fatalf("core/boot's Platform: %v", err)
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
}
