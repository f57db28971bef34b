package boot_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// swapBoard is an nRF52840-like part with MCUboot swap-move: 4 KiB pages,
// word writes, app (the primary) one sector larger than ota.
var swapBoard = testBoard{
	name: "swap-4k",
	geo: hal.FlashGeometry{Size: 256 << 10, Sectors: []hal.SectorRun{{Count: 64, Size: 4 << 10}},
		WriteAlign: 4, EraseValue: 0xFF},
	parts:  parts([2]uint64{0, 0x4000}, [2]uint64{0x4000, 0x2000}, [2]uint64{0x6000, 0x1D000}, [2]uint64{0x23000, 0x1C000}),
	images: 40 << 10,
}

func newSwapFixture(t testing.TB) *fixture {
	t.Helper()
	f := newFixture(t, swapBoard, hal.Swap, 1)
	f.layout.Bootloader = hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeSwapMove}
	return f
}

// mcubootLayout is the trailer layout of a slot of swapBoard as MCUboot
// builds it: BOOT_MAX_ALIGN 8, BOOT_MAX_IMG_SECTORS the primary's 29.
func (f *fixture) mcubootLayout(name string) mcuboot.Layout {
	p, _ := f.layout.Partition(name)
	secs := make([]uint32, p.Size/0x1000)
	for i := range secs {
		secs[i] = 0x1000
	}
	return mcuboot.Layout{Mode: mcuboot.SwapMove, SlotSize: uint32(p.Size), Sectors: secs, MaxAlign: 8,
		WriteSize: f.tb.geo.WriteAlign, Erased: f.tb.geo.EraseValue, MaxImgSectors: 29}
}

// tail returns the last InfoSize bytes of partition name.
func (f *fixture) tail(name string) []byte {
	f.t.Helper()
	l := f.mcubootLayout(name)
	p, _ := f.layout.Partition(name)
	b := make([]byte, l.InfoSize())
	if _, err := f.dev.ReadAt(b, int64(p.End())-int64(len(b))); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// trailerState decodes the trailer of partition name as MCUboot does.
func (f *fixture) trailerState(name string) mcuboot.State {
	f.t.Helper()
	st, err := f.mcubootLayout(name).Decode(f.tail(name))
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// applied returns tail with ws (slot offsets) programmed over it.
func applied(l mcuboot.Layout, tail []byte, ws []mcuboot.Write) []byte {
	out := bytes.Clone(tail)
	base := l.SlotSize - l.InfoSize()
	for _, w := range ws {
		for i, c := range w.Data {
			out[w.Off-base+uint32(i)] &= c
		}
	}
	return out
}

// v drops the build number 0 the tests' versions carry.
func v(s string) string { return strings.TrimSuffix(s, "+0") }

// swapped boots a swap board with a factory image and returns it.
func factorySwap(t *testing.T) (*fixture, *boot.Platform) {
	f := newSwapFixture(t)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	t.Cleanup(func() { pl.Close() })
	if res := reboot(t, pl); v(res.Version) != "1.0.0" || res.Slot != hal.PartApp {
		t.Fatalf("factory boot: %+v", res)
	}
	return f, pl
}

// The whole life of an image on a swap board, step by step: what runs,
// what the boot state says and what the trailers hold after each.
func TestSwap_Flows(t *testing.T) {
	ctx := context.Background()
	type step struct {
		do     func(t *testing.T, f *fixture, pl *boot.Platform) hal.RebootResult
		runs   string // version in app after the step
		action string // the boot's action, when the step boots
		trial  bool
		// rolled: a rollback of the trial awaits the next power-on: not
		// on trial any more, and not confirmed either.
		rolled  bool
		ota     string // version ota reports bootable, "" none
		pending bool
	}
	installV := func(v string, mode hal.BootMode) func(t *testing.T, f *fixture, pl *boot.Platform) hal.RebootResult {
		return func(t *testing.T, f *fixture, pl *boot.Platform) hal.RebootResult {
			install(t, pl, f.image(v, 0), mode)
			return hal.RebootResult{}
		}
	}
	boots := func(t *testing.T, f *fixture, pl *boot.Platform) hal.RebootResult { return reboot(t, pl) }
	confirm := func(t *testing.T, f *fixture, pl *boot.Platform) hal.RebootResult {
		if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
			t.Fatalf("confirm: %v", err)
		}
		return hal.RebootResult{}
	}
	rollback := func(t *testing.T, f *fixture, pl *boot.Platform) hal.RebootResult {
		if err := pl.Rollback(ctx); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		return hal.RebootResult{}
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"test then revert", []step{
			{do: installV("1.1.0", hal.BootTest), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: boots, runs: "1.1.0", action: boot.ActionTrial, trial: true, ota: "1.0.0"},
			{do: boots, runs: "1.0.0", action: boot.ActionReverted, ota: ""},
			{do: boots, runs: "1.0.0", action: boot.ActionNone, ota: ""},
		}},
		{"permanent", []step{
			{do: installV("1.1.0", hal.BootPermanent), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: boots, runs: "1.1.0", action: boot.ActionSwitched, ota: "1.0.0"},
			{do: boots, runs: "1.1.0", action: boot.ActionNone, ota: "1.0.0"},
		}},
		{"test, confirm, stays", []step{
			{do: installV("1.1.0", hal.BootTest), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: boots, runs: "1.1.0", action: boot.ActionTrial, trial: true, ota: "1.0.0"},
			{do: confirm, runs: "1.1.0", ota: "1.0.0"},
			{do: boots, runs: "1.1.0", action: boot.ActionNone, ota: "1.0.0"},
		}},
		{"rollback during the trial", []step{
			{do: installV("1.1.0", hal.BootTest), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: boots, runs: "1.1.0", action: boot.ActionTrial, trial: true, ota: "1.0.0"},
			{do: rollback, runs: "1.1.0", rolled: true, ota: "1.0.0"},
			{do: boots, runs: "1.0.0", action: boot.ActionRolledBack, ota: ""},
		}},
		{"rollback after confirm swaps back", []step{
			{do: installV("1.1.0", hal.BootTest), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: boots, runs: "1.1.0", action: boot.ActionTrial, trial: true, ota: "1.0.0"},
			{do: confirm, runs: "1.1.0", ota: "1.0.0"},
			{do: rollback, runs: "1.1.0", ota: "1.0.0"},
			{do: boots, runs: "1.0.0", action: boot.ActionRolledBack, ota: ""},
			{do: boots, runs: "1.0.0", action: boot.ActionNone, ota: ""},
		}},
		{"rollback cancels a request", []step{
			{do: installV("1.1.0", hal.BootPermanent), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: rollback, runs: "1.0.0", ota: ""},
			{do: boots, runs: "1.0.0", action: boot.ActionNone, ota: ""},
		}},
		{"a new install after a revert", []step{
			{do: installV("1.1.0", hal.BootTest), runs: "1.0.0", ota: "1.1.0", pending: true},
			{do: boots, runs: "1.1.0", action: boot.ActionTrial, trial: true, ota: "1.0.0"},
			{do: boots, runs: "1.0.0", action: boot.ActionReverted, ota: ""},
			{do: installV("1.2.0", hal.BootPermanent), runs: "1.0.0", ota: "1.2.0", pending: true},
			{do: boots, runs: "1.2.0", action: boot.ActionSwitched, ota: "1.0.0"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, pl := factorySwap(t)
			for i, s := range tt.steps {
				res := s.do(t, f, pl)
				if s.action != "" && (res.Action != s.action || res.Slot != hal.PartApp || v(res.Version) != s.runs) {
					t.Fatalf("step %d: boot %+v, want %s of %s from app", i, res, s.action, s.runs)
				}
				st := describe(t, pl)
				app, ota := slotState(st, hal.PartApp), slotState(st, hal.PartOTA)
				if !app.Active || ota.Active || v(app.Version) != s.runs {
					t.Errorf("step %d: app %+v, ota %+v: want %s active in app", i, app, ota, s.runs)
				}
				if st.Trial != s.trial || app.Confirmed != (!s.trial && !s.rolled) {
					t.Errorf("step %d: trial %v, app confirmed %v; want trial %v", i, st.Trial, app.Confirmed, s.trial)
				}
				if v(ota.Version) != s.ota || ota.Pending != s.pending {
					t.Errorf("step %d: ota %+v, want version %q pending %v", i, ota, s.ota, s.pending)
				}
			}
		})
	}
}

// Each request writes into the trailers exactly what MCUboot's
// boot_set_pending and boot_set_confirmed write (core/bootfmt/mcuboot), and
// a swap leaves the trailers as MCUboot's does: the secondary's erased, the
// primary's with the magic, swap_info, swap_size and copy_done (image_ok
// after a permanent swap, not after a test).
func TestSwap_TrailerBytes(t *testing.T) {
	ctx := context.Background()
	for _, perm := range []bool{false, true} {
		f, pl := factorySwap(t)
		ls := f.mcubootLayout(hal.PartOTA)
		img := f.image("1.1.0", 0)
		before := f.tail(hal.PartOTA)
		mode := hal.BootTest
		if perm {
			mode = hal.BootPermanent
		}
		install(t, pl, img, mode)
		ws, err := ls.SetPending(before, 0, perm)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := f.tail(hal.PartOTA), applied(ls, before, ws); !bytes.Equal(got, want) {
			t.Fatalf("permanent=%v: ota's trailer after set boot\n got %x\nwant %x", perm, got, want)
		}
		reboot(t, pl)
		if st := f.trailerState(hal.PartOTA); st.Magic != mcuboot.MagicUnset || st.ImageOK != mcuboot.FlagUnset {
			t.Errorf("permanent=%v: ota's trailer after the swap: %+v, want erased", perm, st)
		}
		// swap_status_init's writes on an erased trailer, then copy_done
		// (image_ok came from ota's trailer in a permanent swap).
		lp := f.mcubootLayout(hal.PartApp)
		tail := f.tail(hal.PartApp)
		erased := bytes.Repeat([]byte{0xFF}, len(tail))
		wantType := mcuboot.SwapTest
		if perm {
			wantType = mcuboot.SwapPerm
		}
		si, err := lp.SwapInfoWrite(wantType, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []mcuboot.Write{si}
		if perm {
			want = append(want, lp.ImageOKWrite())
		}
		want = append(want, lp.SwapSizeWrite(uint32(len(img))), lp.MagicWrite(), lp.CopyDoneWrite())
		if exp := applied(lp, erased, want); !bytes.Equal(tail, exp) {
			t.Errorf("permanent=%v: app's trailer after the swap\n got %x\nwant %x", perm, tail, exp)
		}
		if perm {
			continue
		}
		ws, err = lp.SetConfirmed(tail, 0)
		if err != nil || len(ws) != 1 {
			t.Fatalf("SetConfirmed: %v %v", ws, err)
		}
		if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
			t.Fatal(err)
		}
		if got, want := f.tail(hal.PartApp), applied(lp, tail, ws); !bytes.Equal(got, want) {
			t.Errorf("app's trailer after confirm\n got %x\nwant %x", got, want)
		}
		// The rollback of the confirmed image: boot_set_pending(1) on ota,
		// whose trailer the swap left erased.
		before = f.tail(hal.PartOTA)
		if err := pl.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if ws, err = ls.SetPending(before, 0, true); err != nil {
			t.Fatal(err)
		}
		if got, want := f.tail(hal.PartOTA), applied(ls, before, ws); !bytes.Equal(got, want) {
			t.Errorf("ota's trailer after the rollback\n got %x\nwant %x", got, want)
		}
	}
}

// A secondary that fails its signature check is not swapped in: MCUboot
// erases it and boots the primary, and the request is gone.
func TestSwap_TamperedSecondaryNotSwapped(t *testing.T) {
	f, pl := factorySwap(t)
	install(t, pl, f.image("1.1.0", 0), hal.BootTest)
	f.corrupt(hal.PartOTA)
	res := reboot(t, pl)
	if v(res.Version) != "1.0.0" || res.Action != boot.ActionNone {
		t.Fatalf("boot after tampering: %+v, want 1.0.0 with no swap", res)
	}
	if st := f.trailerState(hal.PartOTA); st.Magic != mcuboot.MagicUnset {
		t.Errorf("ota's trailer after the refused swap: %+v, want erased", st)
	}
	if st := f.trailerState(hal.PartApp); st.Magic != mcuboot.MagicUnset {
		t.Errorf("app's trailer after the refused swap: %+v, want untouched (erased)", st)
	}
	if ota := slotState(describe(t, pl), hal.PartOTA); ota.Bootable || ota.Pending {
		t.Errorf("ota after the refused swap: %+v", ota)
	}
}

// Refusals: nothing to roll back to on a fresh board; a confirm after a
// rollback; an install during a trial; an image reaching the trailer.
func TestSwap_Refusals(t *testing.T) {
	ctx := context.Background()
	f, pl := factorySwap(t)
	if err := pl.Rollback(ctx); !errors.Is(err, hal.ErrNoImage) {
		t.Errorf("rollback with nothing in ota: %v, want ErrNoImage", err)
	}
	max := uint64(0x1D000 - 2*0x1000)
	if err := pl.Init(ctx, hal.InitRequest{Size: max + 1}); !errors.Is(err, hal.ErrOutOfBounds) {
		t.Errorf("init of %d bytes: %v, want ErrOutOfBounds", max+1, err)
	}
	if err := pl.Init(ctx, hal.InitRequest{Size: max}); err != nil {
		t.Errorf("init of %d bytes: %v", max, err)
	}
	if err := pl.Write(ctx, max-4, make([]byte, 8)); !errors.Is(err, hal.ErrOutOfBounds) {
		t.Errorf("write into the trailer sectors: %v, want ErrOutOfBounds", err)
	}
	install(t, pl, f.image("1.1.0", 0), hal.BootTest)
	reboot(t, pl)
	if err := pl.Init(ctx, hal.InitRequest{Size: 4096}); err == nil {
		t.Error("init during a trial: accepted; ota holds the image to fall back to")
	}
	if err := pl.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err == nil {
		t.Error("confirm after a rollback: accepted")
	}
}

// TestPowerCut_Swap cuts the power at every flash operation of a swap-move
// power-on (before it, after it, torn in the middle), then at a second one
// in the power-on that resumes it, and asserts the next power-on boots what
// the trailers asked for: the test image on trial, the permanent one, the
// old image after a revert or a rollback, never nothing. Only a torn
// copy_done, the swap's last write, leaves the test image unconfirmed yet
// not on trial: MCUboot reads a torn flag as not set, so nothing reverts it;
// and a cut after copy_done, before the test image runs, reverts it.
func TestPowerCut_Swap(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *fixture, pl *boot.Platform)
		want   string
		trial  bool
		action string
	}{
		{"test swap", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("1.1.0", 0), hal.BootTest)
		}, "1.1.0", true, boot.ActionTrial},
		{"permanent swap", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("1.1.0", 0), hal.BootPermanent)
		}, "1.1.0", false, boot.ActionSwitched},
		{"revert", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("1.1.0", 0), hal.BootTest)
			reboot(t, pl)
		}, "1.0.0", false, boot.ActionReverted},
		{"rollback after confirm", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("1.1.0", 0), hal.BootTest)
			reboot(t, pl)
			if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
				t.Fatal(err)
			}
			if err := pl.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		}, "1.0.0", false, boot.ActionRolledBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, pl := factorySwap(t)
			tt.setup(t, f, pl)
			base := f.dev
			clean := base.Clone()
			ops0 := clean.Ops()
			res, err := boot.Boot(clean, f.layout, f.opts)
			if err != nil || res.Action != tt.action || v(res.Version) != tt.want {
				t.Fatalf("clean boot = %+v, %v; want %s of %s", res, err, tt.action, tt.want)
			}
			n := clean.Ops() - ops0
			runs, midway, untrial, unrun := 0, 0, 0, 0
			for k := 1; k <= n; k++ {
				for _, when := range cutsAt(k) {
					d := f.bootCut(base, k, when)
					if pri := f.stateOn(d, hal.PartApp); pri.Magic == mcuboot.MagicGood && pri.CopyDone == mcuboot.FlagUnset {
						midway++
					}
					// A second cut in the power-on that resumes; when it
					// comes after that power-on's last operation, that
					// power-on is the one to judge (a test image gets one).
					d.SetCut(flash.Cut{At: 1 + (k*7)%n, When: cutKinds[k%3], Seed: uint64(k) + 1})
					done := f.stateOn(d, hal.PartApp).CopyDone == mcuboot.FlagSet
					res, err := boot.Boot(d, f.layout, f.opts)
					if err != nil || d.PoweredOff() {
						d = d.Clone()
						done = f.stateOn(d, hal.PartApp).CopyDone == mcuboot.FlagSet
						res, err = boot.Boot(d, f.layout, f.opts)
					}
					if err != nil {
						t.Fatalf("cut %v op %d: the device does not boot: %v", when, k, err)
					}
					if tt.trial && done && v(res.Version) == "1.0.0" && res.Action == boot.ActionReverted {
						// The test swap was complete when the power went:
						// MCUboot reverts an image that never ran, as it
						// would one that ran and did not confirm.
						unrun++
						runs++
						continue
					}
					if v(res.Version) != tt.want || res.Slot != hal.PartApp {
						t.Fatalf("cut %v op %d: booted %+v, want %s in app", when, k, res, tt.want)
					}
					st, _, err := boot.Inspect(d, f.layout, f.opts)
					if err != nil {
						t.Fatal(err)
					}
					if ota := slotState(st, hal.PartOTA); tt.want == "1.0.0" && ota.Bootable {
						// The image a revert or a rollback gave up sits in
						// ota, and stays given up however the cut fell (a
						// revert cut after app's trailer was erased ends as
						// a permanent swap).
						t.Fatalf("cut %v op %d: ota holds %s bootable after the %s; want it given up", when, k, ota.Version, tt.name)
					}
					if st.Trial != tt.trial {
						if !tt.trial || f.stateOn(d, hal.PartApp).CopyDone != mcuboot.FlagBad {
							t.Fatalf("cut %v op %d: trial %v, want %v (app's trailer %+v)", when, k, st.Trial, tt.trial, f.stateOn(d, hal.PartApp))
						}
						untrial++
					}
					runs++
				}
			}
			if midway == 0 {
				t.Error("no cut stopped the swap midway: the sweep misses the swap")
			}
			t.Logf("%d flash operations in a clean power-on, %d cut runs, %d stopped midway, %d torn copy_done, %d reverted before the test image ran", n, runs, midway, untrial, unrun)
		})
	}
}

// stateOn decodes the trailer of partition name on d.
func (f *fixture) stateOn(d *flash.Emulator, name string) mcuboot.State {
	f.t.Helper()
	l := f.mcubootLayout(name)
	p, _ := f.layout.Partition(name)
	b := make([]byte, l.InfoSize())
	if _, err := d.ReadAt(b, int64(p.End())-int64(len(b))); err != nil {
		f.t.Fatal(err)
	}
	st, err := l.Decode(b)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// bootCut powers on a copy of base with the power cut at operation k, and
// returns the flash as the cut left it, powered on again.
func (f *fixture) bootCut(base *flash.Emulator, k int, when flash.CutWhen) *flash.Emulator {
	f.t.Helper()
	d := base.Clone()
	d.SetCut(flash.Cut{At: k, When: when, Seed: uint64(k)})
	if _, err := boot.Boot(d, f.layout, f.opts); err == nil && when != flash.After {
		f.t.Fatalf("cut %v op %d: boot succeeded through a power cut", when, k)
	}
	return d.Clone()
}

// hal's MaxImageSize for a swap board (its own arithmetic of MCUboot's
// trailer) is exactly what the platform takes, which core/bootfmt/mcuboot's
// layout decides: Init takes that many bytes and refuses one more. The
// geometries put the trailer on both sides of a sector boundary.
func TestSwap_MaxImageAgreesWithHal(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		align  uint32
		sector uint64
		ns     uint64 // ota's sectors; app has one more
	}{{1, 4 << 10, 28}, {4, 4 << 10, 28}, {8, 1 << 10, 60}, {8, 1 << 10, 40}, {16, 2 << 10, 30}, {32, 4 << 10, 50}, {32, 1 << 10, 20}} {
		s := tt.sector
		total := 4 + 2*tt.ns + 1
		tb := testBoard{name: "swap-max",
			geo: hal.FlashGeometry{Size: total * s, Sectors: []hal.SectorRun{{Count: int(total), Size: s}},
				WriteAlign: tt.align, EraseValue: 0xFF},
			parts: parts([2]uint64{0, 2 * s}, [2]uint64{2 * s, 2 * s}, [2]uint64{4 * s, (tt.ns + 1) * s}, [2]uint64{(tt.ns + 5) * s, tt.ns * s}),
		}
		f := newFixture(t, tb, hal.Swap, 1)
		f.layout.Bootloader = hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeSwapMove}
		pl := f.platform()
		info, err := pl.Describe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		max, err := info.MaxImageSize()
		if err != nil || max == 0 {
			t.Fatalf("%+v: MaxImageSize %d, %v", tt, max, err)
		}
		if err := pl.Init(ctx, hal.InitRequest{Size: max}); err != nil {
			t.Errorf("%+v: init of hal's max %d: %v", tt, max, err)
		}
		if err := pl.Init(ctx, hal.InitRequest{Size: max + 1}); !errors.Is(err, hal.ErrOutOfBounds) {
			t.Errorf("%+v: init of hal's max + 1 (%d): %v, want out of bounds", tt, max+1, err)
		}
		pl.Close()
	}
}

// A power cut at any flash operation of a rollback after a confirm leaves
// the rollback asked for or not, never half: the next power-on runs the old
// image rolled back, or the new one still confirmed; never the old one on
// trial, which the power-on after would swap out again.
func TestPowerCut_SwapRollbackRequest(t *testing.T) {
	ctx := context.Background()
	f, pl := factorySwap(t)
	install(t, pl, f.image("1.1.0", 0), hal.BootTest)
	reboot(t, pl)
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	base := f.dev
	clean := base.Clone()
	cpl, err := boot.NewPlatform(f.layout, clean, f.opts)
	if err != nil {
		t.Fatal(err)
	}
	ops0 := clean.Ops()
	if err := cpl.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	n := clean.Ops() - ops0
	outcomes := map[string]int{}
	for k := 1; k <= n; k++ {
		for _, when := range cutKinds {
			d := base.Clone()
			dpl, err := boot.NewPlatform(f.layout, d, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			d.SetCut(flash.Cut{At: k, When: when, Seed: uint64(k)})
			_ = dpl.Rollback(ctx)
			d = d.Clone()
			res, err := boot.Boot(d, f.layout, f.opts)
			if err != nil {
				t.Fatalf("cut %v op %d: %v", when, k, err)
			}
			st, _, err := boot.Inspect(d, f.layout, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			if st.Trial {
				t.Fatalf("cut %v op %d of the rollback: %s runs on trial (%s); want it rolled back for good or not at all", when, k, res.Version, res.Action)
			}
			outcomes[v(res.Version)]++
		}
	}
	if outcomes["1.0.0"] == 0 || outcomes["1.1.0"] == 0 {
		t.Errorf("outcomes %v: want cuts that leave the rollback undone and cuts that leave it done", outcomes)
	}
	t.Logf("%d flash operations in the rollback; outcomes %v", n, outcomes)
}
