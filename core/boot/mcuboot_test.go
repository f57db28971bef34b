package boot_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// mcubootFixture is swapBoard's flash with equal slots (0x1C000 each) and
// MCUboot built in mode.
func mcubootFixture(t testing.TB, scheme hal.Scheme, mode string) *fixture {
	t.Helper()
	tb := swapBoard
	tb.parts = parts([2]uint64{0, 0x4000}, [2]uint64{0x4000, 0x2000}, [2]uint64{0x6000, 0x1C000}, [2]uint64{0x22000, 0x1C000})
	f := newFixture(t, tb, scheme, 1)
	f.layout.Bootloader = hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: mode}
	return f
}

// slotLayout is MCUboot's trailer layout of partition name: BOOT_MAX_ALIGN
// 8, BOOT_MAX_IMG_SECTORS 28 (both slots' count).
func (f *fixture) slotLayout(mode mcuboot.Mode, name string) mcuboot.Layout {
	p, _ := f.layout.Partition(name)
	secs := make([]uint32, p.Size/0x1000)
	for i := range secs {
		secs[i] = 0x1000
	}
	return mcuboot.Layout{Mode: mode, SlotSize: uint32(p.Size), Sectors: secs, MaxAlign: 8,
		WriteSize: f.tb.geo.WriteAlign, Erased: f.tb.geo.EraseValue, MaxImgSectors: uint32(len(secs))}
}

// xipFixture is a direct-xip board with 1.0.0 in app, its trailer
// confirmed as imgtool --pad --confirm writes it (the magic, image_ok):
// MCUboot direct-xip erases an image without the magic.
func xipFixture(t testing.TB) *fixture {
	t.Helper()
	f := mcubootFixture(t, hal.DualBank, hal.ModeDirectXIP)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	la := f.slotLayout(mcuboot.DirectXIP, hal.PartApp)
	app, _ := f.layout.Partition(hal.PartApp)
	for _, w := range []mcuboot.Write{la.MagicWrite(), la.ImageOKWrite()} {
		if err := f.dev.Program(int64(app.Offset)+int64(w.Off), w.Data); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fixture) slotBytes(name string) []byte {
	f.t.Helper()
	p, _ := f.layout.Partition(name)
	b := make([]byte, p.Size)
	if _, err := f.dev.ReadAt(b, int64(p.Offset)); err != nil {
		f.t.Fatal(err)
	}
	return b
}

// TestOverwriteOnly_RequestsAreMCUbootsTrailer: a test request is exactly
// boot_set_pending(0)'s bytes at the end of ota and nothing in params'
// boot record; the power-on copies the whole of ota over app (trailer
// included) and erases ota's first and last sectors; the confirmation is
// boot_set_confirmed's image_ok on app.
func TestOverwriteOnly_RequestsAreMCUbootsTrailer(t *testing.T) {
	f := mcubootFixture(t, hal.SingleBank, hal.ModeOverwriteOnly)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	install(t, pl, f.image("1.1.0", 0), hal.BootTest)

	lo := f.slotLayout(mcuboot.OverwriteOnly, hal.PartOTA)
	erased := bytes.Repeat([]byte{0xff}, int(lo.InfoSize()))
	ws, err := lo.SetPending(erased, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	ota := f.slotBytes(hal.PartOTA)
	want := bytes.Clone(erased)
	base := lo.SlotSize - lo.InfoSize()
	for _, w := range ws {
		copy(want[w.Off-base:], w.Data)
	}
	if got := ota[base:]; !bytes.Equal(got, want) {
		t.Fatalf("ota's trailer after SetBoot(test):\n%x\nwant boot_set_pending(0)'s\n%x", got, want)
	}
	if st := slotState(describe(t, pl), hal.PartOTA); !st.Pending || st.Version != "1.1.0+0" {
		t.Fatalf("ota after the request: %+v, want pending 1.1.0", st)
	}

	res := reboot(t, pl)
	if res.Action != boot.ActionCopied || res.Version != "1.1.0+0" {
		t.Fatalf("power-on: %+v, want copied 1.1.0", res)
	}
	if got := f.slotBytes(hal.PartApp); !bytes.Equal(got, ota) {
		t.Fatalf("app after the copy differs from ota before it at 0x%x", firstDiff(got, ota))
	}
	after := f.slotBytes(hal.PartOTA)
	for _, r := range [][2]int{{0, 0x1000}, {len(after) - 0x1000, len(after)}} {
		if !bytes.Equal(after[r[0]:r[1]], bytes.Repeat([]byte{0xff}, 0x1000)) {
			t.Fatalf("ota's sector at 0x%x not erased after the copy", r[0])
		}
	}
	st := describe(t, pl)
	if app := slotState(st, hal.PartApp); !app.Active || app.Confirmed || app.Version != "1.1.0+0" {
		t.Fatalf("app after a test copy: %+v, want active, unconfirmed 1.1.0", app)
	}
	if err := pl.SetBoot(context.Background(), hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	la := f.slotLayout(mcuboot.OverwriteOnly, hal.PartApp)
	if got := f.slotBytes(hal.PartApp)[la.ImageOKOff()]; got != 0x01 {
		t.Fatalf("image_ok after the confirm: %02x, want 01", got)
	}
	if err := pl.Rollback(context.Background()); !errors.Is(err, hal.ErrUnsupported) {
		t.Fatalf("rollback after the copy: %v, want unsupported", err)
	}
}

// TestOverwriteOnly_CutCopyStartsOver cuts the power before, after and in
// each flash operation of the copy: the next power-on always ends with
// the new image in app, as MCUboot starts the copy over from its intact
// request.
func TestOverwriteOnly_CutCopyStartsOver(t *testing.T) {
	f := mcubootFixture(t, hal.SingleBank, hal.ModeOverwriteOnly)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	install(t, f.platform(), f.image("1.1.0", 0), hal.BootPermanent)
	cutEveryCopyOp(t, f.dev, f.layout, f.opts, "1.1.0+0")
}

// cutEveryCopyOp cuts the power before, after and in each flash operation
// of the power-on of dev (a copy pending), on a clone each time, then
// powers on again: that power-on must boot version want and leave app as
// the power-on that no cut stopped leaves it, which it returns.
func cutEveryCopyOp(t *testing.T, dev *flash.Emulator, l hal.Layout, opts boot.Options, want string) []byte {
	t.Helper()
	app, _ := l.Partition(hal.PartApp)
	appOf := func(d *flash.Emulator) []byte {
		b := make([]byte, app.Size)
		if _, err := d.ReadAt(b, int64(app.Offset)); err != nil {
			t.Fatal(err)
		}
		return b
	}
	probe := dev.Clone()
	before := probe.Ops()
	if res, err := boot.Boot(probe, l, opts); err != nil || res.Version != want {
		t.Fatalf("power-on without a cut: %+v, %v; want %s", res, err, want)
	}
	n := probe.Ops() - before
	if n < 8 {
		t.Fatalf("the copy made %d flash operations: too few to be a copy", n)
	}
	clean := appOf(probe)
	for k := 1; k <= n; k++ {
		for _, when := range []flash.CutWhen{flash.Before, flash.After, flash.Torn} {
			d := dev.Clone()
			d.SetCut(flash.Cut{At: k, When: when, Seed: uint64(k)})
			if _, err := boot.Boot(d, l, opts); !errors.Is(err, flash.ErrPowerCut) {
				t.Fatalf("cut %v at %d: %v, want a power cut", when, k, err)
			}
			d = d.Clone()
			res, err := boot.Boot(d, l, opts)
			if err != nil || res.Version != want {
				t.Fatalf("cut %v at %d of %d: the next power-on boots %+v, %v; want %s", when, k, n, res, err, want)
			}
			if got := appOf(d); !bytes.Equal(got, clean) {
				t.Fatalf("cut %v at %d of %d: app differs from what a power-on without a cut leaves at 0x%x", when, k, n, firstDiff(got, clean))
			}
		}
	}
	return clean
}

// TestDirectXIP_BootsHigherRevertsUnconfirmed: the test request is the
// magic only; the power-on boots the higher version in place, writes its
// copy_done, and the next one erases it unconfirmed and boots app again.
func TestDirectXIP_BootsHigherRevertsUnconfirmed(t *testing.T) {
	f := xipFixture(t)
	pl := f.platform()
	if res := reboot(t, pl); res.Slot != hal.PartApp {
		t.Fatalf("first power-on: %+v, want app", res)
	}
	ctx := context.Background()
	install(t, pl, f.image("1.1.0", 0), hal.BootTest)
	lo := f.slotLayout(mcuboot.DirectXIP, hal.PartOTA)
	ota := f.slotBytes(hal.PartOTA)
	if !bytes.Equal(ota[lo.MagicOff():], func() []byte { m := mcuboot.Magic(8); return m[:] }()) || ota[lo.CopyDoneOff()] != 0xff || ota[lo.ImageOKOff()] != 0xff {
		t.Fatal("ota's trailer after SetBoot(test) is not the magic alone")
	}
	res := reboot(t, pl)
	if res.Slot != hal.PartOTA || res.Action != boot.ActionTrial || res.Version != "1.1.0+0" {
		t.Fatalf("power-on after the request: %+v, want ota 1.1.0 on trial", res)
	}
	if got := f.slotBytes(hal.PartOTA)[lo.CopyDoneOff()]; got != 0x01 {
		t.Fatalf("ota's copy_done after its boot: %02x, want 01", got)
	}
	if err := pl.Init(ctx, hal.InitRequest{Size: 4096}); err == nil {
		t.Fatal("Init during the trial: accepted, want refused (app holds the image to fall back to)")
	}
	res = reboot(t, pl)
	if res.Slot != hal.PartApp || res.Action != boot.ActionReverted {
		t.Fatalf("second power-on: %+v, want reverted to app", res)
	}
	if ota := f.slotBytes(hal.PartOTA); !bytes.Equal(ota, bytes.Repeat([]byte{0xff}, len(ota))) {
		t.Fatal("ota not erased by the revert")
	}
	install(t, pl, f.image("1.2.0", 0), hal.BootTest)
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	reboot(t, pl)
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	if res := reboot(t, pl); res.Slot != hal.PartOTA || res.Version != "1.2.0+0" {
		t.Fatalf("after the confirm: %+v, want ota 1.2.0 kept", res)
	}
	// A lower version would never boot: its request is refused.
	old := f.image("1.0.1", 0)
	if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(old))}); err != nil {
		t.Fatal(err)
	}
	if err := pl.Write(ctx, 0, old); err != nil {
		t.Fatal(err)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootPermanent}); !errors.Is(err, hal.ErrInvalid) {
		t.Fatalf("request of 1.0.1 while 1.2.0 runs: %v, want refused", err)
	}
}

// TestDirectXIP_DownloadSurvivesAPowerOn: the first bytes of an image stay
// in the key-value store until its request, so the power-on in the middle
// of a download finds no image in the slot and leaves it, and Read returns
// the image whole.
func TestDirectXIP_DownloadSurvivesAPowerOn(t *testing.T) {
	f := xipFixture(t)
	ctx := context.Background()
	pl := f.platform()
	img := f.image("1.1.0", 0)
	if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
		t.Fatal(err)
	}
	half := len(img) / 2 &^ 0xfff
	if err := pl.Write(ctx, 0, img[:half]); err != nil {
		t.Fatal(err)
	}
	if f.slotBytes(hal.PartOTA)[0] != 0xff {
		t.Fatal("the image magic is in the flash before the request: MCUboot would erase the slot at a power-on")
	}
	reboot(t, pl)
	pl = f.platform()
	if err := pl.Write(ctx, uint64(half), img[half:]); err != nil {
		t.Fatal(err)
	}
	got, err := pl.Read(ctx, 0, len(img))
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("read back after a power-on in the download: equal %v, %v", bytes.Equal(got, img), err)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest}); err != nil {
		t.Fatal(err)
	}
	if res := reboot(t, pl); res.Slot != hal.PartOTA || res.Version != "1.1.0+0" {
		t.Fatalf("power-on: %+v, want ota 1.1.0", res)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
