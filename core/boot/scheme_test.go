package boot_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/hal"
)

func TestSingleBank_CopiesAVerifiedImage(t *testing.T) {
	for _, tb := range testBoards {
		for _, mode := range []hal.BootMode{hal.BootTest, hal.BootPermanent} {
			t.Run(tb.name+"/"+mode.String(), func(t *testing.T) {
				f := newFixture(t, tb, hal.SingleBank, 0)
				f.flashImage(hal.PartApp, f.image("1.0.0", 0))
				pl := f.platform()
				if res := reboot(t, pl); res.Version != "1.0.0+0" || res.Action != boot.ActionNone {
					t.Fatalf("factory boot = %+v", res)
				}
				install(t, pl, f.image("2.0.0", 0), mode)
				st := describe(t, pl)
				if !slotState(st, "ota").Pending || !slotState(st, "ota").Bootable {
					t.Errorf("before reboot: ota = %+v, want pending and bootable", slotState(st, "ota"))
				}
				res := reboot(t, pl)
				if res.Slot != "app" || res.Version != "2.0.0+0" || res.Action != boot.ActionCopied {
					t.Fatalf("reboot = %+v, want 2.0.0+0 copied into app", res)
				}
				app := slotState(describe(t, pl), "app")
				if app.Version != "2.0.0+0" || !app.Active || app.Confirmed != (mode == hal.BootPermanent) {
					t.Errorf("app = %+v", app)
				}
				if res := reboot(t, pl); res.Version != "2.0.0+0" || res.Action != boot.ActionNone {
					t.Errorf("second reboot = %+v, want 2.0.0+0 and nothing to do", res)
				}
				if err := pl.Rollback(context.Background()); !errors.Is(err, hal.ErrUnsupported) || !strings.Contains(err.Error(), "no old image") {
					t.Errorf("rollback after the copy: %v, want unsupported with a reason", err)
				}
			})
		}
	}
}

func TestSingleBank_InvalidImageIsNotCopied(t *testing.T) {
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.SingleBank, 0)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			pl := f.platform()
			install(t, pl, f.image("2.0.0", 0), hal.BootPermanent)
			f.corrupt(hal.PartOTA)
			res := reboot(t, pl)
			if res.Version != "1.0.0+0" || res.Action != boot.ActionNone || !strings.Contains(res.Detail, "upgrade not applied") || !strings.Contains(res.Detail, "hash") {
				t.Fatalf("reboot = %+v, want 1.0.0 kept with a reason naming the hash", res)
			}
			if res := reboot(t, pl); res.Detail != "" || res.Version != "1.0.0+0" {
				t.Errorf("the request was not cleared: %+v", res)
			}
		})
	}
}

func TestSingleBank_RollbackCancelsAPendingCopy(t *testing.T) {
	tb := testBoards[0]
	f := newFixture(t, tb, hal.SingleBank, 0)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	install(t, pl, f.image("2.0.0", 0), hal.BootTest)
	if err := pl.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := reboot(t, pl); res.Version != "1.0.0+0" || res.Action != boot.ActionNone {
		t.Errorf("reboot = %+v, want 1.0.0 and no copy", res)
	}
}

func TestSingleBank_WrongKeyIsRefused(t *testing.T) {
	tb := testBoards[0]
	f := newFixture(t, tb, hal.SingleBank, 0)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	other := newFixture(t, tb, hal.SingleBank, 0)
	other.key = mustKey(t, 2)
	img := other.image("2.0.0", 0)
	if err := pl.Init(context.Background(), hal.InitRequest{Size: uint64(len(img))}); err != nil {
		t.Fatal(err)
	}
	if err := pl.Write(context.Background(), 0, img); err != nil {
		t.Fatal(err)
	}
	err := pl.SetBoot(context.Background(), hal.BootRequest{Mode: hal.BootPermanent})
	if !errors.Is(err, hal.ErrNoImage) {
		t.Fatalf("set boot with an image signed by another key: %v, want no image", err)
	}
}

func TestDualBank_TrialNotConfirmedReverts(t *testing.T) {
	for _, attempts := range []int{1, 3} {
		for _, tb := range testBoards {
			t.Run(tb.name, func(t *testing.T) {
				f := newFixture(t, tb, hal.DualBank, attempts)
				f.flashImage(hal.PartApp, f.image("1.0.0", 0))
				pl := f.platform()
				install(t, pl, f.image("2.0.0", 0), hal.BootTest)
				for i := 1; i <= attempts; i++ {
					res := reboot(t, pl)
					if res.Slot != "ota" || res.Version != "2.0.0+0" || res.Action != boot.ActionTrial {
						t.Fatalf("boot %d = %+v, want a trial of 2.0.0 in ota", i, res)
					}
					st := describe(t, pl)
					if !st.Trial || st.BootCount != i || !slotState(st, "ota").Active || slotState(st, "ota").Confirmed {
						t.Fatalf("boot %d: state %+v", i, st)
					}
				}
				res := reboot(t, pl)
				if res.Slot != "app" || res.Version != "1.0.0+0" || res.Action != boot.ActionReverted || !strings.Contains(res.Detail, "without confirming") {
					t.Fatalf("boot %d = %+v, want reverted to 1.0.0 in app", attempts+1, res)
				}
				if res := reboot(t, pl); res.Slot != "app" || res.Action != boot.ActionNone {
					t.Errorf("after revert: %+v", res)
				}
			})
		}
	}
}

func TestDualBank_TrialConfirmedStays(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.DualBank, 0)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			pl := f.platform()
			install(t, pl, f.image("2.0.0", 0), hal.BootTest)
			if res := reboot(t, pl); res.Action != boot.ActionTrial {
				t.Fatalf("reboot = %+v", res)
			}
			// On trial, the old image is the fallback: it may not be overwritten.
			if err := pl.Init(ctx, hal.InitRequest{Size: 100}); !errors.Is(err, hal.ErrInvalid) {
				t.Errorf("init during trial: %v, want invalid", err)
			}
			if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if res := reboot(t, pl); res.Slot != "ota" || res.Version != "2.0.0+0" || res.Action != boot.ActionNone {
					t.Fatalf("after confirm: %+v", res)
				}
			}
			st := describe(t, pl)
			if st.Trial || !slotState(st, "ota").Confirmed || !slotState(st, "ota").Active {
				t.Errorf("state = %+v", st)
			}
			// The next upgrade goes to app, and rollback returns to 2.0.0's
			// predecessor only by explicit request.
			install(t, pl, f.image("3.0.0", 0), hal.BootPermanent)
			if res := reboot(t, pl); res.Slot != "app" || res.Version != "3.0.0+0" || res.Action != boot.ActionSwitched {
				t.Fatalf("permanent = %+v", res)
			}
			if err := pl.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if res := reboot(t, pl); res.Slot != "ota" || res.Version != "2.0.0+0" || res.Action != boot.ActionRolledBack {
				t.Fatalf("rollback = %+v", res)
			}
			if res := reboot(t, pl); res.Slot != "ota" || res.Action != boot.ActionNone {
				t.Fatalf("after rollback = %+v", res)
			}
		})
	}
}

func TestDualBank_RollbackDuringTrial(t *testing.T) {
	tb := testBoards[1]
	f := newFixture(t, tb, hal.DualBank, 3)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	install(t, pl, f.image("2.0.0", 0), hal.BootTest)
	reboot(t, pl)
	if err := pl.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	if res := reboot(t, pl); res.Slot != "app" || res.Version != "1.0.0+0" || res.Action != boot.ActionRolledBack {
		t.Fatalf("rollback = %+v", res)
	}
}

func TestDualBank_CorruptImageFallsBack(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(f *fixture, pl *boot.Platform)
		slot    string
		version string
		action  string
		detail  string
	}{
		{
			name: "pending image corrupt",
			setup: func(f *fixture, pl *boot.Platform) {
				install(f.t, pl, f.image("2.0.0", 0), hal.BootTest)
				f.corrupt(hal.PartOTA)
			},
			slot: "app", version: "1.0.0+0", action: boot.ActionNone, detail: "upgrade not applied",
		},
		{
			name: "trial image corrupt at its second boot",
			setup: func(f *fixture, pl *boot.Platform) {
				install(f.t, pl, f.image("2.0.0", 0), hal.BootTest)
				reboot(f.t, pl)
				f.corrupt(hal.PartOTA)
			},
			slot: "app", version: "1.0.0+0", action: boot.ActionReverted, detail: "no longer verifies",
		},
		{
			name: "active image corrupt",
			setup: func(f *fixture, pl *boot.Platform) {
				install(f.t, pl, f.image("2.0.0", 0), hal.BootPermanent)
				reboot(f.t, pl) // 2.0.0 in ota, active
				f.corrupt(hal.PartOTA)
			},
			slot: "app", version: "1.0.0+0", action: boot.ActionSwitched, detail: "booted app instead",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, testBoards[0], hal.DualBank, 3)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			pl := f.platform()
			c.setup(f, pl)
			res := reboot(t, pl)
			if res.Slot != c.slot || res.Version != c.version || res.Action != c.action || !strings.Contains(res.Detail, c.detail) {
				t.Fatalf("reboot = %+v, want %s %s %s with %q", res, c.slot, c.version, c.action, c.detail)
			}
		})
	}
	t.Run("neither valid", func(t *testing.T) {
		f := newFixture(t, testBoards[0], hal.DualBank, 0)
		_, err := boot.Boot(f.dev, f.layout, f.opts)
		if !errors.Is(err, hal.ErrNoImage) {
			t.Fatalf("boot of a blank flash: %v, want no image", err)
		}
	})
}

func TestSecurityCounter_RaisedOnConfirmAndEnforced(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testBoards[0], hal.DualBank, 0)
	f.flashImage(hal.PartApp, f.image("1.0.0", 1))
	pl := f.platform()
	install(t, pl, f.image("2.0.0", 5), hal.BootTest)
	reboot(t, pl)
	if _, p, _ := boot.Inspect(f.dev, f.layout, f.opts); p.SecurityCounter != 0 {
		t.Fatalf("security counter raised before confirm: %d", p.SecurityCounter)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	if _, p, _ := boot.Inspect(f.dev, f.layout, f.opts); p.SecurityCounter != 5 {
		t.Fatalf("security counter after confirm = %d, want 5", p.SecurityCounter)
	}
	// 1.0.0 (counter 1) is now below the device's counter: no rollback to it.
	if err := pl.Rollback(ctx); !errors.Is(err, hal.ErrNoImage) || !strings.Contains(err.Error(), "security counter 1") {
		t.Errorf("rollback to a revoked image: %v", err)
	}
	if app := slotState(describe(t, pl), "app"); app.Bootable {
		t.Errorf("app with a revoked image reported bootable: %+v", app)
	}
	// An older image is refused at SetBoot.
	img := f.image("1.5.0", 3)
	if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
		t.Fatal(err)
	}
	if err := pl.Write(ctx, 0, img); err != nil {
		t.Fatal(err)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootPermanent}); !errors.Is(err, hal.ErrNoImage) {
		t.Errorf("set boot of a downgrade: %v", err)
	}
}
