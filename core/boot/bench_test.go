package boot_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// benchLayout is a block device like the rpi4-b port's (512-byte sectors
// and writes, erased value 0x00) with slots of 24 MiB.
func benchLayout() hal.Layout {
	g := hal.FlashGeometry{Size: 50 << 20, Sectors: []hal.SectorRun{{Count: 50 << 11, Size: 512}}, WriteAlign: 512, EraseValue: 0x00}
	return hal.Layout{Board: "bench", Scheme: hal.DualBank, Flash: g,
		Partitions: parts([2]uint64{0, 1 << 20}, [2]uint64{1 << 20, 1 << 20}, [2]uint64{2 << 20, 24 << 20}, [2]uint64{26 << 20, 24 << 20})}
}

// benchDevices are the flashes a port runs on: the in-memory emulator of
// the tests and the file a port plugin maps.
func benchDevices(b *testing.B, g hal.FlashGeometry) map[string]func() flash.Device {
	return map[string]func() flash.Device{
		"memory": func() flash.Device {
			dev, err := flash.NewMemory(g)
			if err != nil {
				b.Fatal(err)
			}
			return dev
		},
		"file": func() flash.Device {
			dev, err := flash.OpenFile(filepath.Join(b.TempDir(), "flash.bin"), g)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = dev.Close() })
			return dev
		},
	}
}

// BenchmarkWrite is the port's side of a download: 64 KiB chunks of random
// data into an erased slot (Init again, untimed, when it is full).
func BenchmarkWrite(b *testing.B) {
	ctx := context.Background()
	l := benchLayout()
	const chunk = 64 << 10
	const size = 16 << 20
	data := make([]byte, chunk)
	_, _ = rand.NewChaCha8([32]byte{3}).Read(data)
	for _, name := range []string{"memory", "file"} {
		b.Run(name, func(b *testing.B) {
			pl, err := boot.NewPlatform(l, benchDevices(b, l.Flash)[name](), boot.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(chunk)
			off := uint64(size)
			for b.Loop() {
				if off == size {
					b.StopTimer()
					if err := pl.Init(ctx, hal.InitRequest{Size: size}); err != nil {
						b.Fatal(err)
					}
					off = 0
					b.StartTimer()
				}
				if err := pl.Write(ctx, off, data); err != nil {
					b.Fatal(err)
				}
				off += chunk
			}
		})
	}
}

// BenchmarkDescribe reads the boot state of a device whose two slots hold
// 16 MiB images: "again" on one platform (what otarun and the engine do
// several times in an install), "power-on" on a new platform each time.
func BenchmarkDescribe(b *testing.B) {
	ctx := context.Background()
	l := benchLayout()
	_, priv, err := ed25519.GenerateKey(rand.NewChaCha8([32]byte{4}))
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 16<<20)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(payload)
	img, err := image.Sign(payload, priv, image.SignOptions{Version: image.Version{Major: 1}, ErasedZero: true})
	if err != nil {
		b.Fatal(err)
	}
	opts := boot.Options{Keys: []crypto.PublicKey{priv.Public()}}
	dev := benchDevices(b, l.Flash)["file"]()
	for _, name := range []string{hal.PartApp, hal.PartOTA} {
		p, _ := l.Partition(name)
		buf := append(img, make([]byte, (512-len(img)%512)%512)...)
		if err := dev.Program(int64(p.Offset), buf); err != nil {
			b.Fatal(err)
		}
	}
	open := func() *boot.Platform {
		pl, err := boot.NewPlatform(l, dev, opts)
		if err != nil {
			b.Fatal(err)
		}
		return pl
	}
	check := func(pl *boot.Platform) {
		info, err := pl.Describe(ctx)
		if err != nil || !info.Boot.Slots[0].Bootable || !info.Boot.Slots[1].Bootable {
			b.Fatalf("describe: %+v, %v; want both slots bootable", info.Boot.Slots, err)
		}
	}
	b.Run("again", func(b *testing.B) {
		pl := open()
		check(pl)
		for b.Loop() {
			check(pl)
		}
	})
	b.Run("power-on", func(b *testing.B) {
		b.SetBytes(int64(2 * len(img)))
		for b.Loop() {
			check(open())
		}
	})
}
