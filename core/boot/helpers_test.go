package boot_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"math/rand/v2"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// testBoard is a flash geometry of a real part with a partition map of the
// kind its port uses. Each comment says which part it follows.
type testBoard struct {
	name  string
	geo   hal.FlashGeometry
	parts []hal.Partition
	// dual, when set, is the partition map for dual-bank, where app and
	// ota must erase alike; parts is then single-bank only.
	dual   []hal.Partition
	images int // payload size of the test images, fitting app and ota
}

func parts(boot, params, app, ota [2]uint64) []hal.Partition {
	return []hal.Partition{
		{Name: hal.PartBootloader, Offset: boot[0], Size: boot[1]},
		{Name: hal.PartParams, Offset: params[0], Size: params[1]},
		{Name: hal.PartApp, Offset: app[0], Size: app[1]},
		{Name: hal.PartOTA, Offset: ota[0], Size: ota[1]},
	}
}

var testBoards = []testBoard{
	{
		// Uniform 4 KiB sectors, 4-byte program unit: NXP K64F-like.
		name: "uniform-4k",
		geo: hal.FlashGeometry{Size: 256 << 10, Sectors: []hal.SectorRun{{Count: 64, Size: 4 << 10}},
			WriteAlign: 4, EraseValue: 0xFF},
		parts:  parts([2]uint64{0, 0x4000}, [2]uint64{0x4000, 0x2000}, [2]uint64{0x6000, 0x1C000}, [2]uint64{0x22000, 0x1C000}),
		images: 40 << 10,
	},
	{
		// STM32F407: 4x16K, 1x64K, 7x128K, byte programming (RM0090
		// section 3.3). Single-bank: app spans a 64K and a 128K sector,
		// ota two 128K. Dual-bank: two 128K sectors each.
		name: "stm32f4",
		geo: hal.FlashGeometry{Base: 0x08000000, Size: 1 << 20,
			Sectors:    []hal.SectorRun{{Count: 4, Size: 16 << 10}, {Count: 1, Size: 64 << 10}, {Count: 7, Size: 128 << 10}},
			WriteAlign: 1, EraseValue: 0xFF},
		parts:  parts([2]uint64{0, 0x4000}, [2]uint64{0x4000, 0x8000}, [2]uint64{0x10000, 0x30000}, [2]uint64{0x40000, 0x40000}),
		dual:   parts([2]uint64{0, 0x4000}, [2]uint64{0x4000, 0x8000}, [2]uint64{0x20000, 0x40000}, [2]uint64{0x60000, 0x40000}),
		images: 150 << 10,
	},
	{
		// STM32L4: 2 KiB pages, 8-byte (double word) programming.
		name: "stm32l4-8byte",
		geo: hal.FlashGeometry{Size: 512 << 10, Sectors: []hal.SectorRun{{Count: 256, Size: 2 << 10}},
			WriteAlign: 8, EraseValue: 0xFF},
		parts:  parts([2]uint64{0, 0x8000}, [2]uint64{0x8000, 0x1000}, [2]uint64{0x9000, 0x38000}, [2]uint64{0x41000, 0x38000}),
		images: 30 << 10,
	},
	{
		// STM32L0: 128-byte pages, word programming, erased cells read 0x00.
		name: "stm32l0-erase00",
		geo: hal.FlashGeometry{Size: 192 << 10, Sectors: []hal.SectorRun{{Count: 1536, Size: 128}},
			WriteAlign: 4, EraseValue: 0x00},
		parts:  parts([2]uint64{0, 0x2000}, [2]uint64{0x2000, 0x400}, [2]uint64{0x2400, 0xE000}, [2]uint64{0x10400, 0xE000}),
		images: 6 << 10,
	},
	{
		// STM32H7: 128 KiB sectors, 32-byte flash words with ECC (each
		// word programmed once).
		name: "stm32h7-32byte",
		geo: hal.FlashGeometry{Base: 0x08000000, Size: 1 << 20, Sectors: []hal.SectorRun{{Count: 8, Size: 128 << 10}},
			WriteAlign: 32, EraseValue: 0xFF},
		parts:  parts([2]uint64{0, 0x20000}, [2]uint64{0x20000, 0x40000}, [2]uint64{0x60000, 0x40000}, [2]uint64{0xA0000, 0x40000}),
		images: 100 << 10,
	},
}

func (tb testBoard) layout(scheme hal.Scheme, attempts int) hal.Layout {
	ps := tb.parts
	if scheme == hal.DualBank && tb.dual != nil {
		ps = tb.dual
	}
	return hal.Layout{
		Board: tb.name, Scheme: scheme, Flash: tb.geo, Partitions: ps,
		Signature: "ed25519", BootAttempts: attempts,
	}
}

func (tb testBoard) part(name string) hal.Partition {
	for _, p := range tb.parts {
		if p.Name == name {
			return p
		}
	}
	panic("no partition " + name)
}

// fixture is a board's flash with a signing key.
type fixture struct {
	t      testing.TB
	tb     testBoard
	layout hal.Layout
	dev    *flash.Emulator
	key    crypto.Signer
	opts   boot.Options
}

func newFixture(t testing.TB, tb testBoard, scheme hal.Scheme, attempts int) *fixture {
	t.Helper()
	dev, err := flash.NewMemoryWith(tb.geo, flash.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.NewChaCha8([32]byte{1}))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, tb: tb, layout: tb.layout(scheme, attempts), dev: dev, key: priv,
		opts: boot.Options{Keys: []crypto.PublicKey{priv.Public()}}}
}

// image returns a signed image of version v (and security counter sec when
// non-zero) with a payload that differs per version.
func (f *fixture) image(v string, sec uint32) []byte {
	f.t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		f.t.Fatal(err)
	}
	payload := make([]byte, f.tb.images)
	r := rand.NewChaCha8([32]byte(append([]byte(v), make([]byte, 32)...)[:32]))
	_, _ = r.Read(payload)
	opts := image.SignOptions{Version: ver, ErasedZero: f.tb.geo.EraseValue == 0}
	if sec != 0 {
		opts.SecurityCounter = &sec
	}
	img, err := image.Sign(payload, f.key, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return img
}

// flashImage programs img into partition name directly, as a factory
// programmer does.
func (f *fixture) flashImage(name string, img []byte) {
	f.t.Helper()
	p, _ := f.layout.Partition(name)
	if err := f.dev.Erase(int64(p.Offset), int64(p.Size)); err != nil {
		f.t.Fatal(err)
	}
	a := int(f.tb.geo.WriteAlign)
	buf := append([]byte(nil), img...)
	for len(buf)%a != 0 {
		buf = append(buf, f.tb.geo.EraseValue)
	}
	if err := f.dev.Program(int64(p.Offset), buf); err != nil {
		f.t.Fatal(err)
	}
}

// corrupt flips a byte of the payload of the image in partition name.
func (f *fixture) corrupt(name string) {
	f.t.Helper()
	p, _ := f.layout.Partition(name)
	off := int64(p.Offset) + 0x300
	b := make([]byte, f.tb.geo.WriteAlign)
	off -= off % int64(len(b))
	if _, err := f.dev.ReadAt(b, off); err != nil {
		f.t.Fatal(err)
	}
	// Move bits only towards the programmed value so that this works on
	// a strict emulator without an erase.
	for i := range b {
		if f.tb.geo.EraseValue == 0xFF {
			b[i] &= 0x0F
		} else {
			b[i] |= 0xF0
		}
	}
	f.dev.SetStrict(false)
	defer f.dev.SetStrict(true)
	if err := f.dev.Program(off, b); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) platform() *boot.Platform {
	f.t.Helper()
	pl, err := boot.NewPlatform(f.layout, f.dev, f.opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return pl
}

// install writes img to the update slot in chunks as the engine does and
// asks for a boot in mode.
func install(t testing.TB, pl hal.Platform, img []byte, mode hal.BootMode) {
	t.Helper()
	ctx := context.Background()
	if err := pl.Init(ctx, hal.InitRequest{Size: uint64(len(img))}); err != nil {
		t.Fatalf("init: %v", err)
	}
	const chunk = 4096
	for off := 0; off < len(img); off += chunk {
		if err := pl.Write(ctx, uint64(off), img[off:min(off+chunk, len(img))]); err != nil {
			t.Fatalf("write at 0x%x: %v", off, err)
		}
	}
	got, err := pl.Read(ctx, 0, len(img))
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("read back: equal=%v err=%v", bytes.Equal(got, img), err)
	}
	if err := pl.SetBoot(ctx, hal.BootRequest{Mode: mode, Size: uint64(len(img))}); err != nil {
		t.Fatalf("set boot %v: %v", mode, err)
	}
}

func reboot(t testing.TB, pl *boot.Platform) hal.RebootResult {
	t.Helper()
	res, err := pl.Reboot(context.Background())
	if err != nil {
		t.Fatalf("reboot: %v", err)
	}
	return res
}

func describe(t testing.TB, pl hal.Platform) hal.BootState {
	t.Helper()
	info, err := pl.Describe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.Boot
}

func slotState(st hal.BootState, name string) hal.SlotState {
	for _, s := range st.Slots {
		if s.Name == name {
			return s
		}
	}
	return hal.SlotState{}
}

func mustKey(t testing.TB, seed byte) crypto.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return priv
}
