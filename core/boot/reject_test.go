package boot_test

import (
	"context"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/hal"
)

// The image a dual-bank bootloader reverted, or that Rollback gave up,
// never boots again until it is installed again (issue 9, reproduction 1):
// Rollback does not return to it, Describe reports it not bootable, and the
// bootloader does not fall back to it.
func TestDualBank_GivenUpImageNeverBootsAgain(t *testing.T) {
	ctx := context.Background()
	giveUp := map[string]func(t *testing.T, pl *boot.Platform){
		"reverted": func(t *testing.T, pl *boot.Platform) {
			reboot(t, pl)
			if res := reboot(t, pl); res.Action != boot.ActionReverted {
				t.Fatalf("second boot %+v, want reverted", res)
			}
		},
		"rolled back during the trial": func(t *testing.T, pl *boot.Platform) {
			reboot(t, pl)
			if err := pl.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if res := reboot(t, pl); res.Action != boot.ActionRolledBack {
				t.Fatalf("boot after rollback %+v", res)
			}
		},
		"rolled back once confirmed": func(t *testing.T, pl *boot.Platform) {
			reboot(t, pl)
			if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
				t.Fatal(err)
			}
			if err := pl.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if res := reboot(t, pl); res.Action != boot.ActionRolledBack || res.Version != "1.0.0+0" {
				t.Fatalf("boot after rollback %+v", res)
			}
		},
		"cancelled before the reboot": func(t *testing.T, pl *boot.Platform) {
			if err := pl.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range giveUp {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, testBoards[1], hal.DualBank, 1)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			pl := f.platform()
			install(t, pl, f.image("2.0.0", 0), hal.BootTest)
			fn(t, pl)

			if s := slotState(describe(t, pl), "ota"); s.Bootable || s.Version != "" {
				t.Fatalf("ota after it was given up: %+v, want not bootable", s)
			}
			if err := pl.Rollback(ctx); hal.CodeOf(err) != hal.CodeNoImage {
				t.Fatalf("rollback to the image given up: %v, want no image", err)
			}
			for range 3 {
				if res := reboot(t, pl); res.Slot != "app" || res.Version != "1.0.0+0" {
					t.Fatalf("boot %+v, want app 1.0.0", res)
				}
			}
			// Not even as the fallback of a broken active slot.
			f.corrupt(hal.PartApp)
			if res, err := pl.Reboot(ctx); err == nil {
				t.Fatalf("booted %+v: the image given up ran as a fallback", res)
			}
		})
	}
}

// Installing the image again lifts the rejection.
func TestDualBank_InstalledAgainBootsAgain(t *testing.T) {
	f := newFixture(t, testBoards[1], hal.DualBank, 1)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	install(t, pl, f.image("2.0.0", 0), hal.BootTest)
	reboot(t, pl)
	if res := reboot(t, pl); res.Action != boot.ActionReverted {
		t.Fatalf("%+v, want reverted", res)
	}
	install(t, pl, f.image("2.0.0", 0), hal.BootTest)
	if s := slotState(describe(t, pl), "ota"); !s.Bootable || !s.Pending {
		t.Fatalf("ota installed again: %+v", s)
	}
	if res := reboot(t, pl); res.Slot != "ota" || res.Action != boot.ActionTrial {
		t.Fatalf("%+v, want a trial of ota", res)
	}
}
