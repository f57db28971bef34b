package bootutil

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
)

// installBoards are the boards core/boot's Platform installs on for
// MCUboot's own bootloader: haltest's nRF52840 swap-move board and the
// catalog's nRF5340 overwrite-only board, with the flows each mode has.
// A step is a Platform call ("test NAME", "permanent NAME": an install of
// imgs[NAME]; "confirm"; "rollback") or a power-on ("boots V": MCUboot
// boots version V from the primary).
var installBoards = []struct {
	board string
	mode  mcuboot.Mode
	flows []flow
}{
	{"nrf52840-dk-swap", mcuboot.SwapMove, []flow{
		{"unconfirmed reverts", []string{"test new", "boots 1.1.0+0", "boots 1.0.0+0", "boots 1.0.0+0"}},
		{"confirmed stays", []string{"test new", "boots 1.1.0+0", "confirm", "boots 1.1.0+0", "boots 1.1.0+0"}},
		{"permanent stays", []string{"permanent new", "boots 1.1.0+0", "boots 1.1.0+0"}},
		{"rollback during the trial", []string{"test new", "boots 1.1.0+0", "rollback", "boots 1.0.0+0", "boots 1.0.0+0"}},
		{"rollback after confirm", []string{"test new", "boots 1.1.0+0", "confirm", "rollback", "boots 1.0.0+0", "boots 1.0.0+0"}},
		{"rollback cancels a request", []string{"permanent new", "rollback", "boots 1.0.0+0"}},
		{"a new install after a revert", []string{"test new", "boots 1.1.0+0", "boots 1.0.0+0", "permanent 2nd", "boots 1.2.0+0", "boots 1.2.0+0"}},
	}},
	{"nrf5340-dk", mcuboot.OverwriteOnly, []flow{
		{"test install stays unconfirmed", []string{"test new", "boots 1.1.0+0", "boots 1.1.0+0"}},
		{"confirmed stays", []string{"test new", "boots 1.1.0+0", "confirm", "boots 1.1.0+0"}},
		{"permanent stays", []string{"permanent new", "boots 1.1.0+0", "boots 1.1.0+0"}},
		{"rollback cancels a request", []string{"test new", "rollback", "boots 1.0.0+0", "boots 1.0.0+0"}},
		{"a second install", []string{"permanent new", "boots 1.1.0+0", "test 2nd", "boots 1.2.0+0", "confirm", "boots 1.2.0+0"}},
	}},
}

type flow struct {
	name  string
	steps []string
}

// TestMCUboot_BootsWhatCoreBootInstalled installs an image the way every
// otaport port does, through core/boot's Platform (Init, Write, SetBoot),
// on each of installBoards, and lets MCUboot's own bootloader of the
// board's mode boot it. Swap-move swaps it in, and at the next power-on
// swaps it back unless the Platform confirmed it in between, and a Platform
// rollback returns to the old image; overwrite-only copies it over the old
// one for good. Beside it, a copy of the flash goes through the same calls
// and powers on with core/boot's simulated bootloader: it must boot the
// same version and leave both slots byte for byte as MCUboot does, trailers
// and swap status included.
func TestMCUboot_BootsWhatCoreBootInstalled(t *testing.T) {
	mcubootTree(t)
	s := newSigner(t)
	imgs := map[string][]byte{
		"old": s.sign(t, payload(1, 50000), "1.0.0"),
		"new": s.sign(t, payload(2, 61000), "1.1.0"),
		"2nd": s.sign(t, payload(3, 45000), "1.2.0"),
	}
	opts := boot.Options{Keys: []crypto.PublicKey{s.key.Public()}}
	for _, bd := range installBoards {
		t.Run(bd.board, func(t *testing.T) {
			l, g := boardGeo(t, bd.board)
			b := compile(t, t.TempDir(), bd.mode, g.maxImgSectors(), s)
			installFlows(t, l, g, b, bd.mode, bd.flows, imgs, opts)
		})
	}
}

// installFlows plays flows on board l, through the Platform and MCUboot b.
func installFlows(t *testing.T, l hal.Layout, g geometry, b bootloader, mode mcuboot.Mode, flows []flow, imgs map[string][]byte, opts boot.Options) {
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			real := newDevice(t, g, mode)
			real.write(t, g.pri, 0, imgs["old"]) // the factory's programmer
			sim := real.clone(t)
			for i, st := range f.steps {
				op, arg, _ := strings.Cut(st, " ")
				if op != "boots" {
					// The same call on both flashes: on MCUboot's, the
					// Platform sees only what MCUboot left (its params were
					// never written by a bootloader); on core/boot's, what
					// core/boot's bootloader left too.
					for _, d := range []*device{real, sim} {
						platform(t, l, d, opts, func(ctx context.Context, pl *boot.Platform) error {
							return call(ctx, pl, op, imgs[arg])
						})
					}
					continue
				}
				res, simErr := boot.Boot(sim.fl, l, opts)
				r := b.powerOn(t, real)
				if len(r.refused) > 0 {
					t.Errorf("step %d: refused flash operations: %q\nMCUboot's log:\n%s", i+1, r.refused, r.log)
				}
				if !r.booted || r.slot != "primary" || r.version != arg {
					t.Fatalf("step %d: MCUboot %s, want boots primary %s\nMCUboot's log:\n%s", i+1, r, arg, r.log)
				}
				if simErr != nil || res.Slot != hal.PartApp || res.Version != r.version {
					t.Errorf("step %d: core/boot's bootloader boots %+v (error %v), MCUboot boots %s from app", i+1, res, simErr, r.version)
				}
				for _, a := range []area{g.pri, g.sec} {
					got, want := sim.read(t, a, 0, int(a.size)), real.read(t, a, 0, int(a.size))
					if !bytes.Equal(got, want) {
						at := firstDiff(got, want)
						t.Errorf("step %d: core/boot leaves the %s slot other than MCUboot does: at 0x%x it holds %02x, MCUboot %02x\nMCUboot's log:\n%s",
							i+1, a.name, at, got[at], want[at], r.log)
					}
				}
			}
		})
	}
}

// call makes one Platform call of a flow: an install of img with a test or
// permanent request, a confirmation or a rollback.
func call(ctx context.Context, pl *boot.Platform, op string, img []byte) error {
	switch op {
	case "test", "permanent":
		if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
			return err
		}
		for off := 0; off < len(img); off += 4096 {
			if err := pl.Write(ctx, uint64(off), img[off:min(off+4096, len(img))]); err != nil {
				return err
			}
		}
		mode := hal.BootTest
		if op == "permanent" {
			mode = hal.BootPermanent
		}
		return pl.SetBoot(ctx, hal.BootRequest{Mode: mode, Size: uint64(len(img))})
	case "confirm":
		return pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm})
	case "rollback":
		return pl.Rollback(ctx)
	}
	return fmt.Errorf("no Platform call %q", op)
}

// nrfSwap is haltest's nRF52840 swap-move board and its slots as the
// harness takes them.
func nrfSwap(t *testing.T) (hal.Layout, geometry) {
	t.Helper()
	return boardGeo(t, "nrf52840-dk-swap")
}

// boardGeo is haltest's board name and its slots as the harness takes them.
func boardGeo(t *testing.T, name string) (hal.Layout, geometry) {
	t.Helper()
	l, ok := haltest.Layout(name)
	if !ok {
		t.Fatalf("haltest has no %s board", name)
	}
	app, _ := l.Partition(hal.PartApp)
	ota, _ := l.Partition(hal.PartOTA)
	if len(l.Flash.Sectors) != 1 {
		t.Fatalf("%s: the harness takes uniform sectors, the board has %v", l.Board, l.Flash.Sectors)
	}
	return l, geometry{sector: l.Flash.Sectors[0].Size, write: l.Flash.WriteAlign, erased: l.Flash.EraseValue, size: l.Flash.Size,
		pri: area{"primary", app.Offset, app.Size}, sec: area{"secondary", ota.Offset, ota.Size}}
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

// TestMCUboot_CutSwapsResumeAlike cuts the power before every flash
// operation of a swap (and of the revert that follows it) on the nRF52840
// swap-move board, once in MCUboot's bootloader and once in core/boot's,
// and powers the device on again with each: whichever bootloader was cut,
// MCUboot and core/boot must both finish the swap from the status records
// left behind, boot the same version and leave both slots byte for byte
// alike.
func TestMCUboot_CutSwapsResumeAlike(t *testing.T) {
	mcubootTree(t)
	l, g := nrfSwap(t)
	s := newSigner(t)
	b := compile(t, t.TempDir(), mcuboot.SwapMove, g.maxImgSectors(), s)
	opts := boot.Options{Keys: []crypto.PublicKey{s.key.Public()}}

	installed := newDevice(t, g, mcuboot.SwapMove)
	installed.write(t, g.pri, 0, s.sign(t, payload(1, 30000), "1.0.0"))
	platform(t, l, installed, opts, func(ctx context.Context, pl *boot.Platform) error {
		return call(ctx, pl, "test", s.sign(t, payload(2, 41000), "1.1.0"))
	})
	swapped := installed.clone(t)
	if r := b.powerOn(t, swapped); r.version != "1.1.0+0" {
		t.Fatalf("MCUboot %s, want boots 1.1.0", r)
	}

	for _, phase := range []struct {
		name  string
		from  *device
		boots string
	}{{"swap", installed, "1.1.0+0"}, {"revert", swapped, "1.0.0+0"}} {
		// Each bootloader's own count of writes and erases: MCUboot copies
		// through a 1 KiB buffer (BUF_SZ in loader.c), core/boot a sector at
		// a time, so the counts differ; a cut between two sectors leaves the
		// same states.
		counts := map[string]int{"MCUboot": b.powerOn(t, phase.from.clone(t)).ops}
		sim := phase.from.clone(t)
		before := sim.fl.Ops()
		if _, err := boot.Boot(sim.fl, l, opts); err != nil {
			t.Fatal(err)
		}
		counts["core/boot"] = sim.fl.Ops() - before
		for _, cutIn := range []string{"MCUboot", "core/boot"} {
			for k := 1; k <= counts[cutIn]; k++ {
				d := phase.from.clone(t)
				if cutIn == "MCUboot" {
					if r := b.powerOnCut(t, d, k); !r.cut {
						t.Fatalf("%s, cut at %d: MCUboot %s", phase.name, k, r)
					}
				} else {
					d.fl.SetCut(flash.Cut{At: k})
					if _, err := boot.Boot(d.fl, l, opts); !errors.Is(err, flash.ErrPowerCut) {
						t.Fatalf("%s, cut at %d: core/boot's bootloader: %v, want a power cut", phase.name, k, err)
					}
					d.fl = d.fl.Clone()
				}
				sim := d.clone(t)
				res, simErr := boot.Boot(sim.fl, l, opts)
				r := b.powerOn(t, d)
				if len(r.refused) > 0 || !r.booted || r.version != phase.boots {
					t.Fatalf("%s cut in %s before operation %d: MCUboot then %s (refused %q), want boots %s\nMCUboot's log:\n%s",
						phase.name, cutIn, k, r, r.refused, phase.boots, r.log)
				}
				if simErr != nil || res.Version != phase.boots {
					t.Errorf("%s cut in %s before operation %d: core/boot's bootloader then boots %+v (error %v), want %s",
						phase.name, cutIn, k, res, simErr, phase.boots)
				}
				for _, a := range []area{g.pri, g.sec} {
					got, want := sim.read(t, a, 0, int(a.size)), d.read(t, a, 0, int(a.size))
					if at := firstDiff(got, want); at < len(got) {
						t.Errorf("%s cut in %s before operation %d: core/boot leaves the %s slot other than MCUboot does: at 0x%x it holds %02x, MCUboot %02x",
							phase.name, cutIn, k, a.name, at, got[at], want[at])
					}
				}
			}
		}
	}
}

// TestMCUboot_DirectXIPBootsWhatCoreBootInstalled installs through core/boot's
// Platform on a direct-xip board (haltest's nrf52840-dk-xip, the factory
// image in app with its trailer confirmed, as imgtool --pad --confirm
// writes it) and lets MCUboot's own direct-xip build with revert boot it:
// the higher version in place, an unconfirmed one erased at the power-on
// after its first. Each Platform call runs on one flash, core/boot's
// bootloader powers that flash on, and MCUboot a copy of it made before the
// power-on; both must boot the same slot and version and leave both slots
// byte for byte alike. (The Platform runs on core/boot's flash only: it
// knows the slot it runs from by what core/boot's bootloader recorded, as
// an application knows it by its own address.)
func TestMCUboot_DirectXIPBootsWhatCoreBootInstalled(t *testing.T) {
	mcubootTree(t)
	s := newSigner(t)
	imgs := map[string][]byte{
		"old": s.sign(t, payload(1, 50000), "1.0.0"),
		"new": s.sign(t, payload(2, 61000), "1.1.0"),
		"2nd": s.sign(t, payload(3, 45000), "1.2.0"),
	}
	opts := boot.Options{Keys: []crypto.PublicKey{s.key.Public()}}
	l, g := boardGeo(t, "nrf52840-dk-xip")
	b := compile(t, t.TempDir(), mcuboot.DirectXIP, g.maxImgSectors(), s)
	flows := []flow{
		{"unconfirmed reverts", []string{"test new", "boots ota 1.1.0+0", "boots app 1.0.0+0", "boots app 1.0.0+0"}},
		{"confirmed stays", []string{"test new", "boots ota 1.1.0+0", "confirm", "boots ota 1.1.0+0", "boots ota 1.1.0+0"}},
		{"permanent stays", []string{"permanent new", "boots ota 1.1.0+0", "boots ota 1.1.0+0"}},
		{"rollback during the trial", []string{"test new", "boots ota 1.1.0+0", "rollback", "boots app 1.0.0+0"}},
		{"rollback after confirm", []string{"test new", "boots ota 1.1.0+0", "confirm", "rollback", "boots app 1.0.0+0", "boots app 1.0.0+0"}},
		{"rollback cancels a request", []string{"test new", "rollback", "boots app 1.0.0+0"}},
		{"the next install goes to app", []string{"test new", "boots ota 1.1.0+0", "confirm", "test 2nd", "boots app 1.2.0+0", "confirm", "boots app 1.2.0+0"}},
	}
	for _, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			sim := newDevice(t, g, mcuboot.DirectXIP)
			sim.write(t, g.pri, 0, imgs["old"]) // the factory's programmer, with the trailer confirmed
			lay := g.layout(mcuboot.DirectXIP, g.pri)
			sim.apply(t, g.pri, []mcuboot.Write{lay.MagicWrite(), lay.ImageOKWrite()})
			// The first power-on, on both: MCUboot writes copy_done.
			if res, err := boot.Boot(sim.fl, l, opts); err != nil || res.Version != "1.0.0+0" {
				t.Fatalf("first power-on: core/boot's bootloader boots %+v, %v", res, err)
			}
			for i, st := range f.steps {
				words := strings.Fields(st)
				if words[0] != "boots" {
					platform(t, l, sim, opts, func(ctx context.Context, pl *boot.Platform) error {
						return call(ctx, pl, words[0], imgs[words[len(words)-1]])
					})
					continue
				}
				real := sim.clone(t)
				res, simErr := boot.Boot(sim.fl, l, opts)
				r := b.powerOn(t, real)
				want := map[string]string{"app": "primary", "ota": "secondary"}[words[1]]
				if len(r.refused) > 0 {
					t.Errorf("step %d: refused flash operations: %q\nMCUboot's log:\n%s", i+1, r.refused, r.log)
				}
				if !r.booted || r.slot != want || r.version != words[2] {
					t.Fatalf("step %d: MCUboot %s, want boots %s %s\nMCUboot's log:\n%s", i+1, r, want, words[2], r.log)
				}
				if simErr != nil || res.Slot != words[1] || res.Version != words[2] {
					t.Errorf("step %d: core/boot's bootloader boots %+v (error %v), MCUboot %s %s", i+1, res, simErr, r.slot, r.version)
				}
				for _, a := range []area{g.pri, g.sec} {
					got, want := sim.read(t, a, 0, int(a.size)), real.read(t, a, 0, int(a.size))
					if at := firstDiff(got, want); at < len(got) {
						t.Errorf("step %d: core/boot leaves the %s slot other than MCUboot does: at 0x%x it holds %02x, MCUboot %02x\nMCUboot's log:\n%s",
							i+1, a.name, at, got[at], want[at], r.log)
					}
				}
			}
		})
	}
}
