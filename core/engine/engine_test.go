package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
)

// boards are catalog boards of every kind: dual-bank (uniform, non-uniform
// sectors, 1 and 3 boot attempts, 32-byte flash words) and single-bank
// (2-byte, 256-byte program units, erased value 0x00).
var boards = []struct {
	name    string
	payload int
}{
	{"esp32-devkitc", 48 << 10},
	{"stm32f769i-disco", 200 << 10},
	{"b-l475e-iot01a", 40 << 10},
	{"nucleo-h743zi", 100 << 10},
	{"longan-nano", 20 << 10},
	{"rpi-pico", 64 << 10},
	{"nucleo-l152re", 30 << 10},
	{"nrf52840-dk-swap", 40 << 10},
}

func TestInstall_TrialConfirmAndRevert(t *testing.T) {
	for _, b := range boards {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			d := newDevice(t, b.name, boardKeys(t, b.name))
			d.factory("1.0.0", b.payload)

			rec := &events{}
			e := d.engine(engine.Options{Observer: rec, ChunkSize: 16 << 10, CheckpointEvery: 32 << 10})
			src := writeFile(t, signed(t, d.keys.priv, "1.1.0", b.payload, 2))
			if err := e.Install(ctx, engine.Source{URL: src}); err != nil {
				t.Fatalf("install 1.1.0: %v", err)
			}
			want := []engine.State{engine.Downloading, engine.Verifying, engine.Installed}
			if got := rec.states(); !slices.Equal(got, want) {
				t.Fatalf("states %v, want %v", got, want)
			}
			st := d.status()
			if st.State != engine.Installed || !st.RebootRequired || st.RunningVersion != "1.0.0+0" || st.Image != "1.1.0+0" {
				t.Fatalf("status after install: %+v", st)
			}

			st = d.expectRuns("1.1.0+0")
			if st.State != engine.Testing {
				t.Fatalf("after the reboot: state %s (%s), want testing", st.State, st.LastError)
			}
			if err := e.Confirm(ctx); err != nil {
				t.Fatalf("confirm: %v", err)
			}
			if st := d.status(); st.State != engine.Confirmed || st.SecurityCounter != 2 {
				t.Fatalf("after confirm: state %s, counter %d, want confirmed, 2", st.State, st.SecurityCounter)
			}
			st = d.expectRuns("1.1.0+0")
			if st.State != engine.Confirmed {
				t.Fatalf("after the next reboot: state %s, want confirmed", st.State)
			}

			// A trial image that is never confirmed.
			src = writeFile(t, signed(t, d.keys.priv, "1.2.0", b.payload, 3))
			if err := e.Install(ctx, engine.Source{URL: src}); err != nil {
				t.Fatalf("install 1.2.0: %v", err)
			}
			if d.layout.Scheme == hal.SingleBank {
				// No old image once copied: the request is cancelled
				// before the reboot instead.
				if err := e.Rollback(ctx); err != nil {
					t.Fatalf("rollback of the pending 1.2.0: %v", err)
				}
				st = d.expectRuns("1.1.0+0")
				if st.State != engine.RolledBack {
					t.Fatalf("state %s, want rolled-back", st.State)
				}
				return
			}
			st = d.expectRuns("1.2.0+0")
			if st.State != engine.Testing || !st.Trial {
				t.Fatalf("state %s trial %v, want testing on trial", st.State, st.Trial)
			}
			for range d.layout.BootAttempts - 1 {
				d.expectRuns("1.2.0+0")
			}
			st = d.expectRuns("1.1.0+0")
			if st.State != engine.RolledBack || !strings.Contains(st.LastError, "not confirmed") {
				t.Fatalf("state %s (%s), want rolled-back: not confirmed", st.State, st.LastError)
			}
			// And the next upgrade goes through.
			src = writeFile(t, signed(t, d.keys.priv, "1.3.0", b.payload, 4))
			if err := e.Install(ctx, engine.Source{URL: src}); err != nil {
				t.Fatalf("install 1.3.0 after a revert: %v", err)
			}
			if st := d.expectRuns("1.3.0+0"); st.State != engine.Testing {
				t.Fatalf("state %s, want testing", st.State)
			}
		})
	}
}

// A trial on a board that keeps the previous image (dual-bank, swap):
// no install over the fallback, and a rollback returns to it.
func TestRollback_RevertingTrial(t *testing.T) {
	for _, board := range []string{"esp32-devkitc", "nrf52840-dk-swap"} {
		t.Run(board, func(t *testing.T) {
			ctx := context.Background()
			d := newDevice(t, board, boardKeys(t, board))
			d.factory("1.0.0", 10<<10)
			e := d.engine(engine.Options{})
			if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "2.0.0", 10<<10, 2))}); err != nil {
				t.Fatal(err)
			}
			d.expectRuns("2.0.0+0")
			// A new install while on trial would overwrite the fallback.
			err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "3.0.0", 10<<10, 3))})
			wantIs(t, err, engine.ErrBusy)
			if err := e.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if st := d.status(); st.State != engine.RolledBack || !st.RebootRequired {
				t.Fatalf("after rollback: %+v", st)
			}
			st := d.expectRuns("1.0.0+0")
			if st.State != engine.RolledBack || st.RebootRequired {
				t.Fatalf("after reboot: %+v", st)
			}
		})
	}
}

// On a swap board a confirmed image rolls back too: MCUboot swaps the
// previous image, kept in ota, back in; the image given up is not returned
// to again.
func TestRollback_SwapAfterConfirm(t *testing.T) {
	ctx := context.Background()
	board := "nrf52840-dk-swap"
	d := newDevice(t, board, boardKeys(t, board))
	d.factory("1.0.0", 10<<10)
	e := d.engine(engine.Options{})
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "2.0.0", 10<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("2.0.0+0")
	if err := e.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Rollback(ctx); err != nil {
		t.Fatalf("rollback of the confirmed 2.0.0: %v", err)
	}
	if st := d.expectRuns("1.0.0+0"); st.State != engine.RolledBack {
		t.Fatalf("after the rollback's reboot: state %s", st.State)
	}
	if err := e.Rollback(ctx); !errors.Is(err, engine.ErrNothingToRollBack) {
		t.Fatalf("a second rollback: %v, want ErrNothingToRollBack", err)
	}
	d.expectRuns("1.0.0+0")
}

func TestConfirm_BeforeRebootIsRefused(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "nodemcu-esp8266", boardKeys(t, "nodemcu-esp8266"))
	d.factory("1.0.0", 10<<10)
	e := d.engine(engine.Options{})
	if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.0.1", 10<<10, 1))}); err != nil {
		t.Fatal(err)
	}
	wantIs(t, e.Confirm(ctx), engine.ErrBusy)
	if st := d.expectRuns("1.0.1+0"); st.State != engine.Testing {
		t.Fatalf("state %s", st.State)
	}
	if err := e.Confirm(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestResume_NothingToResume(t *testing.T) {
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	wantIs(t, d.engine(engine.Options{}).Resume(context.Background()), engine.ErrNothingToResume)
}

func TestInstall_NoKeyIsRefused(t *testing.T) {
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	e, err := engine.New(d.plat, d.plat, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Install(context.Background(), engine.Source{URL: writeFile(t, []byte("x"))})
	if err == nil || !strings.Contains(err.Error(), "no verification key") {
		t.Fatalf("error %v, want no verification key", err)
	}
}
