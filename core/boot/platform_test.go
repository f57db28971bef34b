package boot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

func TestNewPlatform_RejectsBadLayouts(t *testing.T) {
	tb := testBoards[0]
	good := tb.layout(hal.SingleBank, 0)
	with := func(edit func(*hal.Layout)) hal.Layout {
		l := good
		l.Partitions = append([]hal.Partition(nil), good.Partitions...)
		edit(&l)
		return l
	}
	setPart := func(name string, off, size uint64) func(*hal.Layout) {
		return func(l *hal.Layout) {
			for i := range l.Partitions {
				if l.Partitions[i].Name == name {
					l.Partitions[i].Offset, l.Partitions[i].Size = off, size
				}
			}
		}
	}
	cases := []struct {
		name   string
		layout hal.Layout
		want   string
	}{
		{"scheme", with(func(l *hal.Layout) { l.Scheme = "triple-bank" }), `scheme "triple-bank"`},
		{"missing ota", with(func(l *hal.Layout) { l.Partitions = l.Partitions[:3] }), `partitions: has no ota partition`},
		{"past the end", with(setPart("ota", 0x22000, 0x100000)), `partitions[3].size: ends at 0x122000, past the end of the flash (0x40000)`},
		{"off a sector", with(setPart("ota", 0x22100, 0x1C000)), `partitions[3].offset: starts at 0x22100, not on an erase-sector boundary (nearest 0x22000 below, 0x23000 above)`},
		{"end off a sector", with(setPart("ota", 0x22000, 0x1C010)), `partitions[3].size: ends at 0x3e010, not on an erase-sector boundary`},
		{"overlap", with(setPart("ota", 0x20000, 0x1C000)), `partitions[3].offset: overlaps app (0x6000..0x22000) at 0x20000`},
		{"params one sector", with(setPart("params", 0x4000, 0x1000)), `partitions[1].size: spans 1 erase sector (0x4000..0x5000); it needs at least 2`},
		{"boot attempts", with(func(l *hal.Layout) { l.BootAttempts = 4 }), `boot_attempts: is 4; a dual-bank bootloader allows 1 to 3`},
		{"other flash", with(func(l *hal.Layout) { l.Flash.WriteAlign = 8 }), `does not match the device`},
		{"size zero", with(setPart("app", 0x6000, 0)), `partitions[2].size: size is 0`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dev, err := flash.NewMemory(tb.geo)
			if err != nil {
				t.Fatal(err)
			}
			_, err = boot.NewPlatform(c.layout, dev, boot.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		for _, tb := range testBoards {
			dev, _ := flash.NewMemory(tb.geo)
			for _, s := range []hal.Scheme{hal.SingleBank, hal.DualBank} {
				if _, err := boot.NewPlatform(tb.layout(s, 0), dev, boot.Options{}); err != nil {
					t.Errorf("%s %s: %v", tb.name, s, err)
				}
			}
		}
	})
}

func TestKV_Semantics(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.SingleBank, 0)
			pl := f.platform()
			get := func(k string) ([]byte, bool) {
				t.Helper()
				v, ok, err := pl.Get(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				return v, ok
			}
			if _, ok := get("missing"); ok {
				t.Fatal("missing key reported present")
			}
			steps := []struct {
				key string
				val []byte
			}{
				{"a", []byte("one")},
				{"b", []byte("two")},
				{"a", []byte("three")},
				{"empty", []byte{}},
				{"b", nil},
				{"never", nil},
			}
			want := map[string][]byte{}
			for _, s := range steps {
				if err := pl.Set(ctx, s.key, s.val); err != nil {
					t.Fatalf("set %q: %v", s.key, err)
				}
				if s.val == nil {
					delete(want, s.key)
				} else {
					want[s.key] = s.val
				}
			}
			// Enough writes to wrap both areas several times.
			for i := range 200 {
				v := fmt.Appendf(nil, "value-%d", i)
				if err := pl.Set(ctx, "counter", v); err != nil {
					t.Fatalf("set counter %d: %v", i, err)
				}
				want["counter"] = v
			}
			check := func(pl *boot.Platform) {
				t.Helper()
				for _, k := range []string{"a", "b", "empty", "never", "counter"} {
					v, ok, err := pl.Get(ctx, k)
					if err != nil {
						t.Fatal(err)
					}
					w, wok := want[k]
					if ok != wok || !bytes.Equal(v, w) {
						t.Errorf("get %q = %q, %v; want %q, %v", k, v, ok, w, wok)
					}
				}
			}
			check(pl)
			check(f.platform()) // a new power-on reads the same

			if err := pl.Set(ctx, "", []byte("x")); hal.CodeOf(err) != hal.CodeInvalid {
				t.Errorf("empty key: %v, want invalid", err)
			}
			if err := pl.Set(ctx, strings.Repeat("k", 256), []byte("x")); hal.CodeOf(err) != hal.CodeInvalid {
				t.Errorf("long key: %v, want invalid", err)
			}
			huge := make([]byte, tb.part(hal.PartParams).Size)
			err := pl.Set(ctx, "huge", huge)
			if !errors.Is(err, hal.ErrOutOfBounds) || !strings.Contains(err.Error(), "params") {
				t.Errorf("huge value: %v, want out of bounds naming params", err)
			}
			check(pl)
		})
	}
}

func TestKV_SurvivesReopen(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tb.name+".flash")
			open := func() (*boot.Platform, *flash.Emulator) {
				dev, err := flash.OpenFile(path, tb.geo)
				if err != nil {
					t.Fatal(err)
				}
				pl, err := boot.NewPlatform(tb.layout(hal.DualBank, 0), dev, boot.Options{CloseDevice: true})
				if err != nil {
					t.Fatal(err)
				}
				return pl, dev
			}
			pl, _ := open()
			for i := range 30 {
				if err := pl.Set(ctx, fmt.Sprintf("k%d", i%5), fmt.Appendf(nil, "v%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}); err != nil {
				t.Fatal(err)
			}
			if err := pl.Close(); err != nil {
				t.Fatal(err)
			}
			pl, dev := open()
			defer pl.Close()
			for i := 25; i < 30; i++ {
				k := fmt.Sprintf("k%d", i%5)
				v, ok, err := pl.Get(ctx, k)
				if err != nil || !ok || string(v) != fmt.Sprintf("v%d", i) {
					t.Errorf("after reopen get %q = %q, %v, %v; want v%d", k, v, ok, err, i)
				}
			}
			pl.Close()
			if _, err := dev.ReadAt(make([]byte, 1), 0); err == nil {
				t.Error("CloseDevice: the device is still open after Close")
			}
		})
	}
}

func TestWrite_AlignmentBoundsAndTail(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.SingleBank, 0)
			pl := f.platform()
			ota := tb.part(hal.PartOTA)
			align := uint64(tb.geo.WriteAlign)

			err := pl.Init(ctx, hal.InitRequest{Size: ota.Size + 1})
			if !errors.Is(err, hal.ErrOutOfBounds) || !strings.Contains(err.Error(), fmt.Sprint(ota.Size+1)) || !strings.Contains(err.Error(), fmt.Sprint(ota.Size)) {
				t.Errorf("init too big: %v; want out of bounds naming %d and %d", err, ota.Size+1, ota.Size)
			}
			if err := pl.Init(ctx, hal.InitRequest{}); !errors.Is(err, hal.ErrInvalid) {
				t.Errorf("init size 0: %v, want invalid", err)
			}
			if err := pl.Init(ctx, hal.InitRequest{Size: 3 * align}); err != nil {
				t.Fatal(err)
			}
			if align > 1 {
				if err := pl.Write(ctx, 1, []byte{1}); !errors.Is(err, hal.ErrMisaligned) {
					t.Errorf("misaligned write: %v", err)
				}
			}
			if err := pl.Write(ctx, ota.Size-align, make([]byte, align+1)); !errors.Is(err, hal.ErrOutOfBounds) {
				t.Errorf("write past the end: %v", err)
			}
			if _, err := pl.Read(ctx, ota.Size, 1); !errors.Is(err, hal.ErrOutOfBounds) {
				t.Errorf("read past the end: %v", err)
			}
			// A short final chunk is padded; Read returns what was written.
			data := []byte{0x11, 0x22, 0x33}
			if uint64(len(data)) > align {
				data = data[:1]
			}
			data = append(bytes.Repeat([]byte{0x5A}, int(align)), data...)
			if err := pl.Write(ctx, 0, data); err != nil {
				t.Fatal(err)
			}
			got, err := pl.Read(ctx, 0, len(data))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read = %x, %v; want %x", got, err, data)
			}
			pad, _ := pl.Read(ctx, uint64(len(data)), int(2*align)-len(data))
			for _, c := range pad {
				if c != tb.geo.EraseValue {
					t.Fatalf("padding = %x, want erase value 0x%02x", pad, tb.geo.EraseValue)
				}
			}
			// The same data again is accepted (a resumed download).
			if err := pl.Write(ctx, 0, data); err != nil {
				t.Errorf("rewrite same data: %v", err)
			}
			other := bytes.Repeat([]byte{0x0F}, len(data))
			if err := pl.Write(ctx, 0, other); !errors.Is(err, hal.ErrNotErased) {
				t.Errorf("rewrite other data: %v, want not erased", err)
			}
			// Init again erases it.
			if err := pl.Init(ctx, hal.InitRequest{Size: 3 * align}); err != nil {
				t.Fatal(err)
			}
			if err := pl.Write(ctx, 0, other); err != nil {
				t.Errorf("write after init: %v", err)
			}
		})
	}
}

func TestInit_ErasesOnlyWhatTheImageNeeds(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.SingleBank, 0)
			ota := tb.part(hal.PartOTA)
			old := bytes.Repeat([]byte{0x42}, int(ota.Size))
			if err := f.dev.Program(int64(ota.Offset), old); err != nil {
				t.Fatal(err)
			}
			pl := f.platform()
			if err := pl.Init(ctx, hal.InitRequest{Size: 100, Resume: true}); err != nil {
				t.Fatal(err)
			}
			if got, _ := pl.Read(ctx, 0, 100); !bytes.Equal(got, old[:100]) {
				t.Fatal("resume erased the slot")
			}
			size := ota.Size / 2 // a sector boundary on every test board
			if err := pl.Init(ctx, hal.InitRequest{Size: size}); err != nil {
				t.Fatal(err)
			}
			all, err := pl.Read(ctx, 0, int(ota.Size))
			if err != nil {
				t.Fatal(err)
			}
			for i := range size {
				if all[i] != tb.geo.EraseValue {
					t.Fatalf("byte 0x%x of the image area not erased", i)
				}
			}
			if all[len(all)-1] != 0x42 {
				t.Error("init erased the end of the slot, past what the image needs")
			}
		})
	}
}

func TestDescribe_ReportsLayoutAndSlots(t *testing.T) {
	tb := testBoards[0]
	f := newFixture(t, tb, hal.DualBank, 0)
	f.flashImage(hal.PartApp, f.image("1.0.0", 0))
	info, err := f.platform().Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.Layout.Board != tb.name || info.Layout.BootAttempts != 1 || len(info.Layout.Partitions) != 4 {
		t.Errorf("layout = %+v", info.Layout)
	}
	if strings.Join(info.Capabilities, ",") != "kv,read-slot,reboot" {
		t.Errorf("capabilities = %v", info.Capabilities)
	}
	want := []hal.SlotState{
		{Name: "app", Version: "1.0.0+0", Bootable: true, Active: true, Confirmed: true},
		{Name: "ota"},
	}
	if fmt.Sprint(info.Boot.Slots) != fmt.Sprint(want) {
		t.Errorf("slots = %+v, want %+v", info.Boot.Slots, want)
	}
}

func TestPlatform_MapsFlashErrorsAndSerialisesCalls(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, testBoards[0], hal.DualBank, 0)
	pl := f.platform()
	// Concurrent calls from many goroutines: the mutex keeps the store
	// consistent (run with -race).
	done := make(chan error)
	for g := range 8 {
		go func() {
			var err error
			for i := range 20 {
				if err = pl.Set(ctx, fmt.Sprintf("g%d", g), fmt.Appendf(nil, "%d", i)); err != nil {
					break
				}
				if _, _, err = pl.Get(ctx, "g0"); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	for g := range 8 {
		if v, ok, _ := f.platform().Get(ctx, fmt.Sprintf("g%d", g)); !ok || string(v) != "19" {
			t.Errorf("g%d = %q, %v; want 19", g, v, ok)
		}
	}
	f.dev.SetCut(flash.Cut{At: 1})
	err := pl.Set(ctx, "x", []byte("y"))
	if !errors.Is(err, hal.ErrFlash) || !errors.Is(err, flash.ErrPowerCut) || hal.CodeOf(err) != hal.CodeFlash {
		t.Errorf("set during a power cut: %v (code %v), want a flash failure wrapping the power cut", err, hal.CodeOf(err))
	}
	if err := pl.Write(ctx, 0, []byte{1, 2, 3, 4}); hal.CodeOf(err) != hal.CodeFlash {
		t.Errorf("write during a power cut: %v", err)
	}
	if _, err := pl.Describe(ctx); !errors.Is(err, flash.ErrPowerCut) {
		t.Errorf("describe during a power cut: %v", err)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest}); hal.CodeOf(err) != hal.CodeFlash {
		t.Errorf("set boot during a power cut: %v, want a flash failure, not no image", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := pl.Init(cctx, hal.InitRequest{Size: 1}); !errors.Is(err, context.Canceled) {
		t.Errorf("init with a cancelled context: %v", err)
	}
}
