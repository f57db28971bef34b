package flash_test

import (
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// mib4 is a 4 MiB flash of 4 KiB sectors, the size of the larger update
// slots in the catalog.
func mib4() hal.FlashGeometry {
	return hal.FlashGeometry{Size: 4 << 20, Sectors: []hal.SectorRun{{Count: 1024, Size: 4096}}, WriteAlign: 8, EraseValue: 0xFF}
}

func benchProgram(b *testing.B, e *flash.Emulator, chunk int) {
	data := randBytes(1, chunk)
	size := int64(e.Geometry().Size)
	b.SetBytes(int64(chunk))
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		if off+int64(chunk) > size {
			off = 0
		}
		if err := e.Program(off, data); err != nil {
			b.Fatal(err)
		}
		off += int64(chunk)
	}
}

func BenchmarkProgram64K(b *testing.B) {
	benchProgram(b, newMem(b, mib4()), 64<<10)
}

func BenchmarkProgram256(b *testing.B) {
	benchProgram(b, newMem(b, mib4()), 256)
}

func BenchmarkProgram64KFile(b *testing.B) {
	e, err := flash.OpenFile(filepath.Join(b.TempDir(), "b.flash"), mib4())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	benchProgram(b, e, 64<<10)
}

func BenchmarkRead64K(b *testing.B) {
	e := newMem(b, mib4())
	if err := e.Program(0, randBytes(2, 4<<20)); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		if _, err := e.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
		off = (off + 64<<10) % (4 << 20)
	}
}

func BenchmarkEraseSector(b *testing.B) {
	e := newMem(b, stm32f4(4, 0xFF))
	b.SetBytes(128 << 10)
	b.ReportAllocs()
	for b.Loop() {
		if err := e.Erase(128<<10, 128<<10); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCloneWrite4M is the unit of a power-cut sweep: clone a written
// 4 MiB flash and change one 64 KiB region of the clone.
func BenchmarkCloneWrite4M(b *testing.B) {
	e := newMem(b, mib4())
	if err := e.Program(0, randBytes(3, 4<<20)); err != nil {
		b.Fatal(err)
	}
	data := randBytes(4, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		c := e.Clone()
		if err := c.Erase(1<<20, 64<<10); err != nil {
			b.Fatal(err)
		}
		if err := c.Program(1<<20, data); err != nil {
			b.Fatal(err)
		}
	}
}
