package boot_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// countingDevice is the fixture's emulator with a count of the bytes read
// from it: what tells a verification from flash from a cached one.
type countingDevice struct {
	flash.Device
	read int
}

func (d *countingDevice) ReadAt(p []byte, off int64) (int, error) {
	d.read += len(p)
	return d.Device.ReadAt(p, off)
}

// countingPlatform is a platform over f's flash that counts its reads.
func (f *fixture) countingPlatform() (*boot.Platform, *countingDevice) {
	f.t.Helper()
	dev := &countingDevice{Device: f.dev}
	pl, err := boot.NewPlatform(f.layout, dev, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return pl, dev
}

func TestCache_UnchangedSlotsAreNotReadAgain(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testBoards[0], hal.DualBank, 0)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl, dev := f.countingPlatform()
	img := f.image("2.0.0", 0)
	install(t, pl, img, hal.BootTest) // SetBoot verifies ota

	dev.read = 0
	st := describe(t, pl) // app for the first time, ota from the cache
	if app, ota := slotState(st, "app"), slotState(st, "ota"); !app.Bootable || app.Version != "1.0.0+0" || !ota.Bootable || ota.Version != "2.0.0+0" || !ota.Pending {
		t.Fatalf("describe = %+v, want app 1.0.0 and ota 2.0.0 pending, both bootable", st.Slots)
	}
	appOnly := dev.read // SetBoot verified ota
	dev.read = 0
	describe(t, pl)
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest, Size: uint64(len(img))}); err != nil {
		t.Fatal(err)
	}
	if dev.read != 0 {
		t.Errorf("describe and set boot over unchanged slots read %d bytes, want 0", dev.read)
	}

	// A power-on forgets it all: the bootloader reads both slots.
	res := reboot(t, pl)
	if res.Slot != "ota" || res.Action != boot.ActionTrial {
		t.Fatalf("reboot = %+v, want a trial of ota", res)
	}
	if dev.read < len(img) {
		t.Errorf("power-on read %d bytes, want at least the %d of the image it boots", dev.read, len(img))
	}
	dev.read = 0
	describe(t, pl)
	// The two images are of one size: reading both costs twice as much.
	if dev.read < len(img) || 3*appOnly > 2*dev.read {
		t.Errorf("describe after a power-on read %d bytes, the first one after SetBoot %d: want the first to read app alone, half as much", dev.read, appOnly)
	}
}

// erasedUnit returns the offset of a write unit in the hashed header room
// of img (imgtool --pad-header fills it with the erased value): a place
// where Write can still program a verified image, and so break it.
func erasedUnit(t *testing.T, img []byte, align int, erase byte) int {
	t.Helper()
	for u := (image.HeaderSize + align - 1) / align * align; u+align <= image.DefaultHeaderSize; u += align {
		ok := true
		for _, c := range img[u : u+align] {
			ok = ok && c == erase
		}
		if ok {
			return u
		}
	}
	t.Fatalf("no erased unit of %d bytes in the header room", align)
	return 0
}

func TestCache_WriteToAVerifiedSlotDropsIt(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		for _, scheme := range []hal.Scheme{hal.SingleBank, hal.DualBank} {
			t.Run(tb.name+"/"+string(scheme), func(t *testing.T) {
				f := newFixture(t, tb, scheme, 0)
				f.flashImage(hal.PartApp, f.image("1.0.0", 0))
				pl := f.platform()
				img := f.image("2.0.0", 0)
				install(t, pl, img, hal.BootTest)
				if ota := slotState(describe(t, pl), "ota"); !ota.Bootable || ota.Version != "2.0.0+0" {
					t.Fatalf("ota after install = %+v, want 2.0.0 bootable", ota)
				}

				a := int(tb.geo.WriteAlign)
				u := erasedUnit(t, img, a, tb.geo.EraseValue)
				if err := pl.Write(ctx, uint64(u), []byte(strings.Repeat("\x5a", a))); err != nil {
					t.Fatalf("write into the header room at 0x%x: %v", u, err)
				}
				if ota := slotState(describe(t, pl), "ota"); ota.Bootable {
					t.Fatalf("ota after a write into its hashed bytes = %+v, want not bootable", ota)
				}
				err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest, Size: uint64(len(img))})
				if !errors.Is(err, hal.ErrNoImage) || !strings.Contains(err.Error(), "hash") {
					t.Fatalf("set boot after the write: %v, want no image naming the hash", err)
				}
				// The image was pending before the write: the power-on
				// finds it broken and keeps 1.0.0.
				if res := reboot(t, pl); res.Slot != "app" || res.Version != "1.0.0+0" || !strings.Contains(res.Detail, "upgrade not applied") {
					t.Fatalf("reboot = %+v, want 1.0.0 kept, upgrade not applied", res)
				}
			})
		}
	}
}

func TestCache_InitAndFailedWritesDropTheSlot(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testBoards[0], hal.DualBank, 0)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	img := f.image("2.0.0", 0)
	install(t, pl, img, hal.BootTest)
	if !slotState(describe(t, pl), "ota").Bootable {
		t.Fatal("ota not bootable after install")
	}
	if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
		t.Fatal(err)
	}
	if ota := slotState(describe(t, pl), "ota"); ota.Bootable || ota.Pending {
		t.Fatalf("ota after Init = %+v, want neither bootable nor pending", ota)
	}

	// Write the image again, then cut the power in the middle of a
	// program of it: whatever the flash holds, the cache does not vouch
	// for it.
	install(t, pl, img, hal.BootTest)
	if !slotState(describe(t, pl), "ota").Bootable {
		t.Fatal("ota not bootable after the second install")
	}
	if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(img); off += 4096 {
		if err := pl.Write(ctx, uint64(off), img[off:min(off+4096, len(img))]); err != nil {
			t.Fatal(err)
		}
	}
	if !slotState(describe(t, pl), "ota").Bootable {
		t.Fatal("ota not bootable after writing it")
	}
	f.dev.SetCut(flash.Cut{At: 1, When: flash.Torn, Seed: 7})
	a := int(f.tb.geo.WriteAlign)
	u := erasedUnit(t, img, a, f.tb.geo.EraseValue)
	if err := pl.Write(ctx, uint64(u), []byte(strings.Repeat("\x00", a))); !errors.Is(err, flash.ErrPowerCut) {
		t.Fatalf("write with the power cut: %v, want a power cut", err)
	}
	// The power stays off: a Describe that reads the flash fails.
	if _, err := pl.Describe(ctx); !errors.Is(err, flash.ErrPowerCut) {
		t.Fatalf("describe after the cut: %v, want the flash read and its power cut, not the cache's answer", err)
	}
	// Powered on again, the torn unit breaks the image's hash.
	pl2, err := boot.NewPlatform(f.layout, f.dev.Clone(), f.opts)
	if err != nil {
		t.Fatal(err)
	}
	if ota := slotState(describe(t, pl2), "ota"); ota.Bootable {
		t.Fatalf("ota after the torn write = %+v, want not bootable", ota)
	}
}

func TestCache_PowerOnCatchesCorruptionUnderneath(t *testing.T) {
	for _, scheme := range []hal.Scheme{hal.SingleBank, hal.DualBank} {
		t.Run(string(scheme), func(t *testing.T) {
			f := newFixture(t, testBoards[0], scheme, 0)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			pl := f.platform()
			install(t, pl, f.image("2.0.0", 0), hal.BootPermanent)
			if !slotState(describe(t, pl), "ota").Bootable {
				t.Fatal("ota not bootable after install")
			}
			// Behind the platform's back: it still vouches for the slot,
			// by design (the cache sees only its own writes)...
			f.corrupt(hal.PartOTA)
			if !slotState(describe(t, pl), "ota").Bootable {
				t.Fatal("describe re-read the slot: the cache is not in use")
			}
			// ...and a power-on verifies from the flash.
			res := reboot(t, pl)
			if res.Slot != "app" || res.Version != "1.0.0+0" || !strings.Contains(res.Detail, "upgrade not applied") || !strings.Contains(res.Detail, "hash") {
				t.Fatalf("reboot = %+v, want 1.0.0 kept, the upgrade refused for its hash", res)
			}
			if ota := slotState(describe(t, pl), "ota"); ota.Bootable {
				t.Fatalf("ota after the power-on = %+v, want not bootable", ota)
			}
			// So does a bootloader over the same flash, and a new platform.
			if _, err := boot.Boot(f.dev, f.layout, f.opts); err != nil {
				t.Fatal(err)
			}
			if ota := slotState(describe(t, f.platform()), "ota"); ota.Bootable {
				t.Fatalf("a new platform reports ota %+v, want not bootable", ota)
			}
		})
	}
}

func TestCache_SecurityCounterAppliesToCachedSlots(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testBoards[0], hal.DualBank, 0)
	// The device runs app 2.0.0 (counter 3), not yet confirmed; ota holds
	// an older 1.0.0 (counter 1) that the device may still boot.
	f.flashImage(hal.PartApp, f.image("2.0.0", 3))
	f.flashImage(hal.PartOTA, f.image("1.0.0", 1))
	pl := f.platform()
	if ota := slotState(describe(t, pl), "ota"); !ota.Bootable {
		t.Fatalf("ota before confirm = %+v, want bootable", ota)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	if ota := slotState(describe(t, pl), "ota"); ota.Bootable {
		t.Fatalf("ota after confirming counter 3 = %+v, want not bootable (a downgrade)", ota)
	}
	err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest})
	if !errors.Is(err, hal.ErrNoImage) || !strings.Contains(err.Error(), "security counter") {
		t.Fatalf("set boot of the older image: %v, want no image naming the security counter", err)
	}
}
