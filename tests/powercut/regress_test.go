package powercut

import (
	"context"
	"errors"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// flashOp is one Program or Erase a recorder saw.
type flashOp struct {
	erase     bool
	off, size int64
}

// recorder is a flash.Device that lists the operations made through it, in
// the order and with the numbering of the emulator's cuts (empty calls do
// not reach the flash and are not counted).
type recorder struct {
	flash.Device
	ops []flashOp
}

func (r *recorder) Program(off int64, p []byte) error {
	if len(p) > 0 {
		r.ops = append(r.ops, flashOp{off: off, size: int64(len(p))})
	}
	return r.Device.Program(off, p)
}

func (r *recorder) Erase(off, size int64) error {
	if size > 0 {
		r.ops = append(r.ops, flashOp{erase: true, off: off, size: size})
	}
	return r.Device.Erase(off, size)
}

// find returns the 1-based number of the first operation from index from
// on that matches, or 0.
func (r *recorder) find(from int, match func(flashOp) bool) int {
	for i := from; i < len(r.ops); i++ {
		if match(r.ops[i]) {
			return i + 1
		}
	}
	return 0
}

// TestResume_CutAfterStartOverErase: a download torn in the middle of a
// write is resumed; the resume finds the torn unit, starts the download
// over and erases the slot; the power goes again at the first write after
// that erase. At the next power-on the recorded checkpoint must not claim
// bytes the erase removed: resuming must complete the install, not fail
// its read-back with a hash mismatch (the slot holds erased bytes where the
// checkpoint says the image's first bytes were written).
func TestResume_CutAfterStartOverErase(t *testing.T) {
	ctx := context.Background()
	boards, err := Boards(DefaultBoards()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range boards {
		t.Run(b.Name, func(t *testing.T) {
			f, err := newFixture(ctx, b, Config{}, t.TempDir(), KindPlain)
			if err != nil {
				t.Fatal(err)
			}
			// Where the image goes: ota, less MCUboot's trailer on an
			// MCUboot board, where boot requests (not the download) write.
			ota, _ := f.layout.Partition(hal.PartOTA)
			end := ota.End()
			switch {
			case f.layout.Scheme == hal.Swap:
				end = ota.Offset + f.layout.SwapMoveMaxImage()
			case f.layout.Bootloader.Name == hal.BootloaderMCUboot:
				end = ota.Offset + f.layout.MCUbootMaxImage()
			}
			inOTA := func(op flashOp) bool {
				return op.off >= int64(ota.Offset) && op.off < int64(end)
			}

			// The last write of a clean download: a checkpoint lies
			// before it.
			rec := &recorder{Device: f.base.Clone()}
			a, err := f.attach(rec)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.install(ctx); err != nil {
				t.Fatal(err)
			}
			last := 0
			for i, op := range rec.ops {
				if !op.erase && inOTA(op) {
					last = i + 1
				}
			}
			if last == 0 {
				t.Fatal("a clean install wrote nothing to ota")
			}

			// A torn write whose tear lies inside a write unit (some
			// seeds tear on a unit boundary, which a resume simply
			// continues from); the resume then starts over.
			var dev *flash.Emulator
			var erase, write int
			for seed := uint64(1); seed <= 20 && erase == 0; seed++ {
				dev = f.base.Clone()
				dev.SetCut(flash.Cut{At: last, When: flash.Torn, Seed: seed})
				if a, err = f.attach(dev); err != nil {
					t.Fatal(err)
				}
				if err := a.install(ctx); !errors.Is(err, flash.ErrPowerCut) {
					t.Fatalf("install through a torn write: %v, want a power cut", err)
				}
				dev = dev.Clone()
				o, err := f.powerOn(ctx, dev)
				if err != nil {
					t.Fatal(err)
				}
				if o.st != stateDownloading {
					t.Fatalf("after a cut in the download the engine is %s, want %s", o.st, stateDownloading)
				}
				// Where the resume erases the slot to start over, and
				// its first write after that.
				rec = &recorder{Device: dev.Clone()}
				if a, err = f.attach(rec); err != nil {
					t.Fatal(err)
				}
				if err := a.resume(ctx); err != nil {
					t.Fatalf("resume after a torn write (seed %d): %v", seed, err)
				}
				erase = rec.find(0, func(op flashOp) bool { return op.erase && inOTA(op) })
				write = rec.find(erase, func(op flashOp) bool { return !op.erase && inOTA(op) })
			}
			if erase == 0 || write == 0 {
				t.Fatalf("no torn write in 20 seeds made the resume erase ota and start over (erase op %d, write op %d)", erase, write)
			}

			cut := dev.Clone()
			cut.SetCut(flash.Cut{At: write, When: flash.Before})
			if a, err = f.attach(cut); err != nil {
				t.Fatal(err)
			}
			if err := a.resume(ctx); !errors.Is(err, flash.ErrPowerCut) {
				t.Fatalf("resume through a cut: %v, want a power cut", err)
			}
			dev = cut.Clone()
			o, err := f.powerOn(ctx, dev)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.check(ctx, dev, o); err != nil {
				t.Fatal(err)
			}
			err = o.a.resume(ctx)
			if errors.Is(err, engine.ErrVerify) {
				t.Fatalf("the resume after the second cut fails its read-back: the checkpoint survived the erase that voided it (engine.download: errStartOver erases the slot before the reset checkpoint is saved): %v", err)
			}
			if err != nil {
				t.Fatalf("resume after the second cut: %v", err)
			}
			if err := f.finish(ctx, dev, o); err != nil {
				t.Fatal(err)
			}
		})
	}
}
