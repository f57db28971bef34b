package boot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/espidf"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// espBoard is an ESP32 flash cut down: 4 KiB sectors, 16-byte writes (flash
// encryption), otadata of two sectors, params of its own, no factory app.
var espBoard = testBoard{
	name: "esp-idf-4k",
	geo: hal.FlashGeometry{Size: 256 << 10, Sectors: []hal.SectorRun{{Count: 64, Size: 4 << 10}},
		WriteAlign: 16, EraseValue: 0xFF},
	parts: []hal.Partition{
		{Name: hal.PartBootloader, Offset: 0, Size: 0x8000},
		{Name: hal.PartOtadata, Offset: 0x8000, Size: 0x2000},
		{Name: hal.PartParams, Offset: 0xa000, Size: 0x2000},
		{Name: hal.PartApp, Offset: 0x10000, Size: 0x18000},
		{Name: hal.PartOTA, Offset: 0x28000, Size: 0x18000},
	},
	images: 40 << 10,
}

func newESPFixture(t *testing.T) *fixture {
	f := newFixture(t, espBoard, hal.DualBank, 1)
	f.layout.Bootloader = hal.Bootloader{Name: hal.BootloaderESPIDF}
	return f
}

// otadataSectors reads both sectors of otadata whole.
func otadataSectors(t *testing.T, dev flash.Device) [2][]byte {
	t.Helper()
	var out [2][]byte
	for i := range out {
		out[i] = make([]byte, espidf.SectorSize)
		if _, err := dev.ReadAt(out[i], int64(0x8000+i*espidf.SectorSize)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// wantSector is a sector holding entry e (nil: erased) and 0xff after it,
// as write_otadata leaves it.
func wantSector(e *espidf.Entry) []byte {
	b := bytes.Repeat([]byte{0xFF}, espidf.SectorSize)
	if e != nil {
		eb := e.Bytes()
		copy(b, eb[:])
	}
	return b
}

func entry(seq uint32, st espidf.State) *espidf.Entry {
	e := espidf.NewEntry(seq, st)
	return &e
}

// TestESPIDF_OtadataAsESPIDFWritesIt follows one device through a trial
// that reverts, a confirmed upgrade and a rollback, and checks after each
// step the bytes of both otadata sectors (the entries of
// core/bootfmt/espidf, golden-checked there against ESP-IDF's CRC) and
// what the bootloader booted.
func TestESPIDF_OtadataAsESPIDFWritesIt(t *testing.T) {
	f := newESPFixture(t)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	pl := f.platform()
	ctx := context.Background()
	check := func(step string, e0, e1 *espidf.Entry) {
		t.Helper()
		got := otadataSectors(t, f.dev)
		for i, e := range []*espidf.Entry{e0, e1} {
			if !bytes.Equal(got[i], wantSector(e)) {
				t.Fatalf("%s: otadata sector %d starts % x, want % x", step, i, got[i][:32], wantSector(e)[:32])
			}
		}
	}
	booted := func(step, slot, version, action string) {
		t.Helper()
		res := reboot(t, pl)
		if res.Slot != slot || res.Version != version || res.Action != action {
			t.Fatalf("%s: booted %s %s (%s, %s), want %s %s (%s)", step, res.Slot, res.Version, res.Action, res.Detail, slot, version, action)
		}
	}

	booted("first power-on", hal.PartApp, "1.0.0+0", boot.ActionNone)
	// No factory app and no entry: ESP-IDF boots ota_0 and records it.
	check("first power-on", entry(1, espidf.StateValid), nil)

	install(t, pl, f.image("2.0.0", 0), hal.BootTest)
	check("set boot test", entry(1, espidf.StateValid), entry(2, espidf.StateNew))
	if st := describe(t, pl); !slotState(st, hal.PartOTA).Pending {
		t.Fatalf("after set boot test: ota not pending: %+v", st)
	}
	booted("trial", hal.PartOTA, "2.0.0+0", boot.ActionTrial)
	check("trial", entry(1, espidf.StateValid), entry(2, espidf.StatePendingVerify))
	if st := describe(t, pl); !st.Trial {
		t.Fatalf("trial not reported: %+v", st)
	}
	booted("no confirm", hal.PartApp, "1.0.0+0", boot.ActionReverted)
	check("no confirm", entry(1, espidf.StateValid), entry(2, espidf.StateAborted))
	if st := describe(t, pl); slotState(st, hal.PartOTA).Bootable {
		t.Fatalf("the aborted image in ota is reported bootable: %+v", st)
	}

	install(t, pl, f.image("3.0.0", 0), hal.BootTest)
	check("set boot test again", entry(1, espidf.StateValid), entry(2, espidf.StateNew))
	booted("second trial", hal.PartOTA, "3.0.0+0", boot.ActionTrial)
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
		t.Fatal(err)
	}
	check("confirm", entry(1, espidf.StateValid), entry(2, espidf.StateValid))
	booted("confirmed", hal.PartOTA, "3.0.0+0", boot.ActionNone)

	// esp_ota_begin with rollback: after the erase of app, the entry that
	// still names app (the inactive one) loses its sector.
	if err := pl.Init(ctx, hal.InitRequest{Size: 4096}); err != nil {
		t.Fatal(err)
	}
	check("init", nil, entry(2, espidf.StateValid))
	install(t, pl, f.image("4.0.0", 0), hal.BootPermanent)
	// esp_ota_set_boot_partition into the other sector with the next
	// ota_seq for ota_0; permanent is the state of a build without rollback.
	check("set boot permanent", entry(3, espidf.StateUndefined), entry(2, espidf.StateValid))
	booted("permanent", hal.PartApp, "4.0.0+0", boot.ActionSwitched)
	check("permanent", entry(3, espidf.StateUndefined), entry(2, espidf.StateValid))

	if err := pl.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	check("rollback", entry(3, espidf.StateInvalid), entry(2, espidf.StateValid))
	booted("rolled back", hal.PartOTA, "3.0.0+0", boot.ActionRolledBack)
	err := pl.Rollback(ctx)
	if !errors.Is(err, hal.ErrNoImage) {
		t.Fatalf("second rollback: %v, want no image to return to", err)
	}
}

// TestESPIDF_PowerCutInARewrite cuts the power after every flash operation
// of each otadata rewrite (set boot, the bootloader's new → pending-verify
// and pending-verify → aborted, mark valid, mark invalid): each is one
// sector erased then 32 bytes programmed, so the other sector always keeps
// its entry, and the device always boots one of the two images.
func TestESPIDF_PowerCutInARewrite(t *testing.T) {
	steps := []struct {
		name string
		// setup brings a fresh device to the state before the step.
		setup func(t *testing.T, f *fixture, pl *boot.Platform)
		run   func(pl *boot.Platform) error
	}{
		{"set boot test", func(t *testing.T, f *fixture, pl *boot.Platform) {
			ctx := context.Background()
			img := f.image("2.0.0", 0)
			if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
				t.Fatal(err)
			}
			if err := pl.Write(ctx, 0, img); err != nil {
				t.Fatal(err)
			}
		}, func(pl *boot.Platform) error {
			return pl.SetBoot(context.Background(), hal.BootRequest{Mode: hal.BootTest})
		}},
		{"boot of a new entry", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("2.0.0", 0), hal.BootTest)
		}, func(pl *boot.Platform) error { _, err := pl.Reboot(context.Background()); return err }},
		{"boot of a pending-verify entry", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("2.0.0", 0), hal.BootTest)
			reboot(t, pl)
		}, func(pl *boot.Platform) error { _, err := pl.Reboot(context.Background()); return err }},
		{"mark valid", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("2.0.0", 0), hal.BootTest)
			reboot(t, pl)
		}, func(pl *boot.Platform) error {
			return pl.SetBoot(context.Background(), hal.BootRequest{Mode: hal.BootConfirm})
		}},
		{"mark invalid", func(t *testing.T, f *fixture, pl *boot.Platform) {
			install(t, pl, f.image("2.0.0", 0), hal.BootTest)
			reboot(t, pl)
			if err := pl.SetBoot(context.Background(), hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
				t.Fatal(err)
			}
		}, func(pl *boot.Platform) error { return pl.Rollback(context.Background()) }},
	}
	for _, st := range steps {
		t.Run(strings.ReplaceAll(st.name, " ", "_"), func(t *testing.T) {
			prepare := func() *fixture {
				f := newESPFixture(t)
				f.flashImage(hal.PartApp, f.image("1.0.0", 0))
				pl := f.platform()
				reboot(t, pl)
				st.setup(t, f, pl)
				return f
			}
			f := prepare()
			before := otadataSectors(t, f.dev)
			pl := f.platform()
			f.dev.SetCut(flash.Cut{At: 1 << 30})
			if err := st.run(pl); err != nil {
				t.Fatal(err)
			}
			n := f.dev.Ops()
			otadataOps := 0
			for k := 1; k <= n; k++ {
				for _, when := range []flash.CutWhen{flash.Before, flash.After, flash.Torn} {
					f := prepare()
					pl := f.platform()
					f.dev.SetCut(flash.Cut{At: k, When: when, Seed: uint64(k)})
					_ = st.run(pl) // cut somewhere inside
					dev := f.dev.Clone()
					after := otadataSectors(t, dev)
					changed := 0
					for i := range after {
						if !bytes.Equal(after[i], before[i]) {
							changed++
						}
					}
					if changed > 1 {
						t.Fatalf("cut %s op %d: both otadata sectors changed", when, k)
					}
					otadataOps += changed
					res, err := boot.Boot(dev, f.layout, f.opts)
					if err != nil {
						t.Fatalf("cut %s op %d: no boot: %v", when, k, err)
					}
					if res.Version != "1.0.0+0" && res.Version != "2.0.0+0" {
						t.Fatalf("cut %s op %d: booted %s", when, k, res.Version)
					}
				}
			}
			if otadataOps == 0 {
				t.Fatalf("no cut of %d operations changed otadata", n)
			}
		})
	}
}

// TestESPIDF_OldFlashFileRefused: a flash file of the layout that kept
// otaport's params log where otadata now is opens with an error that says
// what happened and what to do, never as two garbage entries.
func TestESPIDF_OldFlashFileRefused(t *testing.T) {
	f := newESPFixture(t)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	// The old layout's params at otadata's address: a record starts with
	// the magic "OTAp".
	rec := bytes.Repeat([]byte{0xFF}, 16)
	binary.LittleEndian.PutUint32(rec, 0x7041544F)
	if err := f.dev.Program(0x8000, rec); err != nil {
		t.Fatal(err)
	}
	_, err := boot.NewPlatform(f.layout, f.dev, f.opts)
	if err == nil || !strings.Contains(err.Error(), "holds otaport's params log") || !strings.Contains(err.Error(), "start from a new flash file") {
		t.Fatalf("open: %v, want the old layout named with its fix", err)
	}
	if _, err := boot.Boot(f.dev, f.layout, f.opts); err == nil || !strings.Contains(err.Error(), "holds otaport's params log") {
		t.Fatalf("boot: %v, want the old layout named", err)
	}
}
