package boot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

var cutKinds = []flash.CutWhen{flash.Before, flash.After, flash.Torn}

// cutsAt returns the kinds of cut to try at operation k: all three, or with
// -short one of them in turn, so that a short run still visits every
// operation and every kind.
func cutsAt(k int) []flash.CutWhen {
	if testing.Short() {
		return cutKinds[k%3 : k%3+1]
	}
	return cutKinds
}

// TestPowerCut_SingleBankCopy cuts the power at every flash operation of the
// bootloader's copy of ota over app (before it, after it, and in the middle
// of it), powers on again, and asserts the device boots the new image: once
// the request is recorded the copy always completes. A second cut during the
// resumed copy is tried too.
func TestPowerCut_SingleBankCopy(t *testing.T) {
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.SingleBank, 0)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			install(t, f.platform(), f.image("2.0.0", 0), hal.BootPermanent)
			base := f.dev

			clean := base.Clone()
			if res, err := boot.Boot(clean, f.layout, f.opts); err != nil || res.Action != boot.ActionCopied {
				t.Fatalf("clean boot = %+v, %v", res, err)
			}
			n := clean.Ops()
			if n < 3 {
				t.Fatalf("clean copy took %d flash operations", n)
			}
			runs, halfCopied := 0, 0
			for k := 1; k <= n; k++ {
				for _, when := range cutsAt(k) {
					d := f.bootCut(base, k, when)
					if _, p, err := boot.Inspect(d, f.layout, f.opts); err == nil && p.Copy == boot.CopyRunning {
						// Half-copied: the port must not touch ota before the bootloader finishes.
						halfCopied++
						pl, err := boot.NewPlatform(f.layout, d, f.opts)
						if err != nil {
							t.Fatal(err)
						}
						if err := pl.Init(context.Background(), hal.InitRequest{Size: 1}); !errors.Is(err, hal.ErrInvalid) {
							t.Fatalf("cut %v op %d: init during an unfinished copy: %v", when, k, err)
						}
					}
					// A second cut somewhere in the resumed copy.
					d = d.Clone()
					d.SetCut(flash.Cut{At: 1 + (k*7)%n, When: cutKinds[k%3], Seed: uint64(k) + 1})
					_, _ = boot.Boot(d, f.layout, f.opts)

					d = d.Clone()
					res, err := boot.Boot(d, f.layout, f.opts)
					if err != nil {
						t.Fatalf("cut %v op %d: the device does not boot: %v", when, k, err)
					}
					if res.Version != "2.0.0+0" || res.Slot != "app" {
						t.Fatalf("cut %v op %d: booted %+v, want 2.0.0+0 in app", when, k, res)
					}
					st, p, err := boot.Inspect(d, f.layout, f.opts)
					if err != nil || p.Copy != boot.CopyNone || p.Pending || !slotState(st, "app").Confirmed {
						t.Fatalf("cut %v op %d: state after the copy %+v %+v %v", when, k, st, p, err)
					}
					runs++
				}
			}
			if halfCopied == 0 {
				t.Error("no cut left the copy half done: the sweep misses the copy")
			}
			t.Logf("%d flash operations in a clean copy, %d cut runs, %d left the copy half done", n, runs, halfCopied)
		})
	}
}

// kvStep is one Set of the KV sweep.
type kvStep struct {
	key string
	val []byte
}

// kvSteps returns a sequence of sets and deletes with values large enough
// for the sequence to compact the params partition of every test board
// several times.
func kvSteps(tb testBoard) []kvStep {
	half := int(tb.part(hal.PartParams).Size / 2)
	size := max(8, min(half/5, 1000))
	var steps []kvStep
	for i := range 60 {
		k := fmt.Sprintf("key%d", i%3)
		switch {
		case i%7 == 6:
			steps = append(steps, kvStep{k, nil})
		default:
			steps = append(steps, kvStep{k, bytes.Repeat([]byte{byte('a' + i)}, size-(i%5))})
		}
	}
	return steps
}

// TestPowerCut_KVSet cuts the power at every flash operation of a sequence
// of KV Sets and asserts, after a power-on, that every completed Set is
// there, the interrupted one holds its old value (or the new one when the
// cut fell after its last operation), and the store takes new Sets.
func TestPowerCut_KVSet(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.DualBank, 0)
			steps := kvSteps(tb)
			base := f.dev

			// Clean run: the cumulative operation count after each step.
			clean := base.Clone()
			pl, err := boot.NewPlatform(f.layout, clean, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			cum := make([]int, len(steps))
			for i, s := range steps {
				if err := pl.Set(ctx, s.key, s.val); err != nil {
					t.Fatalf("clean step %d: %v", i, err)
				}
				cum[i] = clean.Ops()
			}
			n := cum[len(cum)-1]
			model := func(upTo int) map[string][]byte {
				m := map[string][]byte{}
				for _, s := range steps[:upTo] {
					if s.val == nil {
						delete(m, s.key)
					} else {
						m[s.key] = s.val
					}
				}
				return m
			}
			check := func(pl *boot.Platform, want map[string][]byte, what string) {
				t.Helper()
				for _, k := range []string{"key0", "key1", "key2"} {
					v, ok, err := pl.Get(ctx, k)
					w, wok := want[k]
					if err != nil || ok != wok || !bytes.Equal(v, w) {
						t.Fatalf("%s: get %q = %.12q, %v, %v; want %.12q, %v", what, k, v, ok, err, w, wok)
					}
				}
			}

			for k := 1; k <= n; k++ {
				// The step whose operations include operation k.
				i := 0
				for cum[i] < k {
					i++
				}
				for _, when := range cutsAt(k) {
					what := fmt.Sprintf("cut %v op %d (step %d)", when, k, i)
					d := base.Clone()
					pl, err := boot.NewPlatform(f.layout, d, f.opts)
					if err != nil {
						t.Fatal(err)
					}
					d.SetCut(flash.Cut{At: k, When: when, Seed: uint64(k)})
					for _, s := range steps {
						if pl.Set(ctx, s.key, s.val) != nil {
							break
						}
					}
					if !d.PoweredOff() {
						t.Fatalf("%s: the cut never happened", what)
					}
					d = d.Clone()
					pl, err = boot.NewPlatform(f.layout, d, f.opts)
					if err != nil {
						t.Fatalf("%s: power-on: %v", what, err)
					}
					done := i
					if when == flash.After && k == cum[i] {
						done = i + 1
					}
					check(pl, model(done), what)
					// The store recovers: the rest of the sequence goes through.
					for _, s := range steps[done:] {
						if err := pl.Set(ctx, s.key, s.val); err != nil {
							t.Fatalf("%s: set after power-on: %v", what, err)
						}
					}
					check(pl, model(len(steps)), what+", finished")
				}
			}
			t.Logf("%d flash operations in %d sets", n, len(steps))
		})
	}
}

// TestPowerCut_DualBankFlow cuts the power at every operation of a
// dual-bank upgrade (SetBoot test, two trial boots and a revert, SetBoot
// test again, reboot into the trial, confirm, reboot)
// and asserts that a power-on always boots the old or the new image.
func TestPowerCut_DualBankFlow(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.DualBank, 2)
			f.flashImage(hal.PartApp, f.image("1.0.0", 0))
			f.flashImage(hal.PartOTA, f.image("2.0.0", 0))
			flow := func(d *flash.Emulator) error {
				pl, err := boot.NewPlatform(f.layout, d, f.opts)
				if err != nil {
					return err
				}
				if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest}); err != nil {
					return err
				}
				// Two trial boots, then the revert.
				for range 3 {
					if _, err := pl.Reboot(ctx); err != nil {
						return err
					}
				}
				if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest}); err != nil {
					return err
				}
				if _, err := pl.Reboot(ctx); err != nil {
					return err
				}
				if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
					return err
				}
				_, err = pl.Reboot(ctx)
				return err
			}
			clean := f.dev.Clone()
			if err := flow(clean); err != nil {
				t.Fatal(err)
			}
			n := clean.Ops()
			for k := 1; k <= n; k++ {
				for _, when := range cutsAt(k) {
					d := f.dev.Clone()
					d.SetCut(flash.Cut{At: k, When: when, Seed: uint64(k)})
					if err := flow(d); !errors.Is(err, flash.ErrPowerCut) {
						t.Fatalf("cut %v op %d: flow = %v, want a power cut", when, k, err)
					}
					d = d.Clone()
					for range 3 { // and the boots after it
						res, err := boot.Boot(d, f.layout, f.opts)
						if err != nil {
							t.Fatalf("cut %v op %d: the device does not boot: %v", when, k, err)
						}
						if res.Version != "1.0.0+0" && res.Version != "2.0.0+0" {
							t.Fatalf("cut %v op %d: booted %+v", when, k, res)
						}
					}
				}
			}
			t.Logf("%d flash operations in the flow", n)
		})
	}
}
