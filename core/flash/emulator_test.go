package flash_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// uniform is a 64 KiB flash of 4 KiB sectors.
func uniform(align uint32, erased byte) hal.FlashGeometry {
	return hal.FlashGeometry{
		Size:       64 << 10,
		Sectors:    []hal.SectorRun{{Count: 16, Size: 4 << 10}},
		WriteAlign: align,
		EraseValue: erased,
	}
}

// stm32f4 is the 1 MiB STM32F407 layout: 4x16K, 1x64K, 7x128K.
func stm32f4(align uint32, erased byte) hal.FlashGeometry {
	return hal.FlashGeometry{
		Base: 0x08000000,
		Size: 1 << 20,
		Sectors: []hal.SectorRun{
			{Count: 4, Size: 16 << 10},
			{Count: 1, Size: 64 << 10},
			{Count: 7, Size: 128 << 10},
		},
		WriteAlign: align,
		EraseValue: erased,
	}
}

func newMem(t testing.TB, g hal.FlashGeometry) *flash.Emulator {
	t.Helper()
	e, err := flash.NewMemory(g)
	if err != nil {
		t.Fatalf("NewMemory: %v", err)
	}
	return e
}

func read(t testing.TB, d flash.Device, off int64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.ReadAt(b, off); err != nil {
		t.Fatalf("ReadAt(0x%x, %d): %v", off, n, err)
	}
	return b
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestNewMemory_ReadsErased(t *testing.T) {
	for _, ev := range []byte{0x00, 0xFF} {
		e := newMem(t, stm32f4(4, ev))
		if !allEqual(read(t, e, 0, 1<<20), ev) {
			t.Errorf("erase value 0x%02x: fresh flash has a byte that is not erased", ev)
		}
	}
}

func allEqual(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return true
}

func TestProgram_MovesBitsOnlyAwayFromErased(t *testing.T) {
	tests := []struct {
		name   string
		erased byte
		first  byte
		second byte
		want   byte
	}{
		{"0xff erased: AND", 0xFF, 0xF0, 0x3C, 0x30},
		{"0xff erased: cannot set a bit back", 0xFF, 0x00, 0xFF, 0x00},
		{"0xff erased: same value twice", 0xFF, 0xA5, 0xA5, 0xA5},
		{"0x00 erased: OR", 0x00, 0x0F, 0x3C, 0x3F},
		{"0x00 erased: cannot clear a bit", 0x00, 0xFF, 0x00, 0xFF},
		{"0x00 erased: same value twice", 0x00, 0x5A, 0x5A, 0x5A},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMem(t, uniform(1, tt.erased))
			// A run longer than a word and crossing a page, to cover both
			// the word loop and the byte tail.
			const off, n = 4096 - 13, 29
			for _, v := range []byte{tt.first, tt.second} {
				if err := e.Program(off, bytes.Repeat([]byte{v}, n)); err != nil {
					t.Fatal(err)
				}
			}
			got := read(t, e, off-1, n+2)
			if got[0] != tt.erased || got[n+1] != tt.erased {
				t.Errorf("bytes around the write changed: 0x%02x 0x%02x", got[0], got[n+1])
			}
			for i, b := range got[1 : n+1] {
				if b != tt.want {
					t.Fatalf("byte %d = 0x%02x, want 0x%02x", i, b, tt.want)
				}
			}
		})
	}
}

func TestProgram_ForgottenEraseCorruptsData(t *testing.T) {
	// What the conformance kit relies on: rewriting without an erase does
	// not read back the new data.
	e := newMem(t, uniform(4, 0xFF))
	a, b := randBytes(1, 4096), randBytes(2, 4096)
	if err := e.Program(0, a); err != nil {
		t.Fatal(err)
	}
	if err := e.Program(0, b); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(read(t, e, 0, 4096), b) {
		t.Fatal("a program over programmed flash read back as the new data")
	}
	if err := e.Erase(0, 4096); err != nil {
		t.Fatal(err)
	}
	if err := e.Program(0, b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, e, 0, 4096), b) {
		t.Fatal("erase then program did not read back the data")
	}
}

func TestProgram_RefusesBadRequests(t *testing.T) {
	g := uniform(8, 0xFF)
	tests := []struct {
		name string
		off  int64
		n    int
		want error
		code hal.Code
		msg  string
	}{
		{"offset not aligned", 4, 8, flash.ErrMisaligned, hal.CodeMisaligned, "write alignment 8"},
		{"length not aligned", 8, 12, flash.ErrMisaligned, hal.CodeMisaligned, "write alignment 8"},
		{"one byte", 0, 1, flash.ErrMisaligned, hal.CodeMisaligned, "0x0, 1 bytes"},
		{"past the end", 64<<10 - 8, 16, flash.ErrOutOfBounds, hal.CodeOutOfBounds, "size 0x10000"},
		{"starts past the end", 64<<10 + 8, 8, flash.ErrOutOfBounds, hal.CodeOutOfBounds, "past the end"},
		{"negative", -8, 8, flash.ErrOutOfBounds, hal.CodeOutOfBounds, "past the end"},
		{"empty at end", 64 << 10, 0, nil, hal.CodeUnknown, ""},
		{"last unit", 64<<10 - 8, 8, nil, hal.CodeUnknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMem(t, g)
			err := e.Program(tt.off, make([]byte, tt.n))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Program(%d, %d bytes) = %v, want %v", tt.off, tt.n, err, tt.want)
			}
			if got := hal.CodeOf(err); got != tt.code {
				t.Errorf("hal.CodeOf = %v, want %v", got, tt.code)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			if err != nil && e.Ops() != 0 {
				t.Errorf("a refused call counted as an operation: Ops() = %d", e.Ops())
			}
			if tt.want != nil && !allEqual(read(t, e, 0, 64<<10), 0xFF) {
				t.Error("a refused program changed the flash")
			}
		})
	}
}

func TestErrors_KeepIdentity(t *testing.T) {
	if errors.Is(hal.ErrFlash, flash.ErrPowerCut) {
		t.Error("any hal flash error matches flash.ErrPowerCut")
	}
	if !errors.Is(flash.ErrPowerCut, hal.ErrFlash) {
		t.Error("flash.ErrPowerCut does not match hal.ErrFlash")
	}
	if errors.Is(flash.ErrOutOfBounds, flash.ErrMisaligned) {
		t.Error("distinct sentinels match")
	}
}

func TestErase_WholeSectorsOfNonUniformFlash(t *testing.T) {
	tests := []struct {
		name     string
		off, n   int64
		want     error
		msg      string
		erasedTo []int // sectors whose count goes to 1
	}{
		{"first 16K sector", 0, 16 << 10, nil, "", []int{0}},
		{"the 64K sector", 64 << 10, 64 << 10, nil, "", []int{4}},
		{"16K sectors 1-3 and the 64K", 16 << 10, 112 << 10, nil, "", []int{1, 2, 3, 4}},
		{"a 128K sector", 256 << 10, 128 << 10, nil, "", []int{6}},
		{"the whole flash", 0, 1 << 20, nil, "", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
		{"half a 16K sector", 16 << 10, 8 << 10, flash.ErrMisaligned, "nearest 0x4000 or 0x8000", nil},
		{"start inside the 64K sector", 72 << 10, 56 << 10, flash.ErrMisaligned, "spans 0x10000-0x20000", nil},
		{"end inside a 128K sector", 128 << 10, 64 << 10, flash.ErrMisaligned, "nearest 0x20000 or 0x40000", nil},
		{"4K at a 4K multiple that is no boundary", 4 << 10, 4 << 10, flash.ErrMisaligned, "spans 0x0-0x4000", nil},
		{"past the end", 896 << 10, 256 << 10, flash.ErrOutOfBounds, "size 0x100000", nil},
		{"empty", 16 << 10, 0, nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newMem(t, stm32f4(4, 0xFF))
			if err := e.Program(0, randBytes(3, 1<<20)); err != nil {
				t.Fatal(err)
			}
			before := read(t, e, 0, 1<<20)
			err := e.Erase(tt.off, tt.n)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Erase(0x%x, 0x%x) = %v, want %v", tt.off, tt.n, err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
			got := read(t, e, 0, 1<<20)
			counts := e.EraseCounts()
			if len(counts) != 12 {
				t.Fatalf("%d erase counters, want 12", len(counts))
			}
			erased := map[int]bool{}
			for _, s := range tt.erasedTo {
				erased[s] = true
			}
			for s := range 12 {
				start, size, err := e.SectorAt(sectorStart(s))
				if err != nil {
					t.Fatal(err)
				}
				wantCount := uint32(0)
				wantData := before[start : start+size]
				if erased[s] {
					wantCount = 1
					wantData = bytes.Repeat([]byte{0xFF}, int(size))
				}
				if counts[s] != wantCount {
					t.Errorf("sector %d erased %d times, want %d", s, counts[s], wantCount)
				}
				if !bytes.Equal(got[start:start+size], wantData) {
					t.Errorf("sector %d (0x%x): content not as expected (erased: %v)", s, start, erased[s])
				}
			}
		})
	}
}

// sectorStart is the start of sector s of stm32f4().
func sectorStart(s int) int64 {
	switch {
	case s < 4:
		return int64(s) * 16 << 10
	case s == 4:
		return 64 << 10
	}
	return int64(s-4) * 128 << 10
}

func TestSectorAt_NonUniform(t *testing.T) {
	e := newMem(t, stm32f4(1, 0xFF))
	tests := []struct{ off, start, size int64 }{
		{0, 0, 16 << 10},
		{16<<10 - 1, 0, 16 << 10},
		{16 << 10, 16 << 10, 16 << 10},
		{64 << 10, 64 << 10, 64 << 10},
		{128<<10 - 1, 64 << 10, 64 << 10},
		{128 << 10, 128 << 10, 128 << 10},
		{1<<20 - 1, 896 << 10, 128 << 10},
	}
	for _, tt := range tests {
		start, size, err := e.SectorAt(tt.off)
		if err != nil || start != tt.start || size != tt.size {
			t.Errorf("SectorAt(0x%x) = 0x%x, 0x%x, %v; want 0x%x, 0x%x", tt.off, start, size, err, tt.start, tt.size)
		}
	}
	if _, _, err := e.SectorAt(1 << 20); !errors.Is(err, flash.ErrOutOfBounds) {
		t.Errorf("SectorAt(end) = %v, want ErrOutOfBounds", err)
	}
}

func TestStrict_RefusesProgramOverNonErased(t *testing.T) {
	for _, ev := range []byte{0x00, 0xFF} {
		t.Run(fmt.Sprintf("erased 0x%02x", ev), func(t *testing.T) {
			e, err := flash.NewMemoryWith(uniform(4, ev), flash.Options{Strict: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Program(0x100, []byte{1, 2, 3, 4}); err != nil {
				t.Fatal(err)
			}
			// 0x100 is the first byte that is not erased in [0xf8, 0x108).
			err = e.Program(0xf8, make([]byte, 16))
			if !errors.Is(err, flash.ErrNotErased) || hal.CodeOf(err) != hal.CodeNotErased {
				t.Fatalf("Program over programmed = %v, want ErrNotErased", err)
			}
			if !strings.Contains(err.Error(), "0x100") {
				t.Errorf("error %q does not name the first offending offset 0x100", err)
			}
			if got := read(t, e, 0xf8, 8); !allEqual(got, ev) {
				t.Errorf("refused program changed the flash: % x", got)
			}
			e.SetStrict(false)
			if err := e.Program(0xf8, make([]byte, 16)); err != nil {
				t.Fatalf("non-strict program over programmed: %v", err)
			}
		})
	}
}

func TestReadAt_Bounds(t *testing.T) {
	e := newMem(t, uniform(1, 0xFF))
	b := make([]byte, 16)
	if n, err := e.ReadAt(b, 64<<10-8); n != 8 || err != io.EOF {
		t.Errorf("read across the end = %d, %v; want 8, io.EOF", n, err)
	}
	if _, err := e.ReadAt(b, 64<<10+1); !errors.Is(err, flash.ErrOutOfBounds) {
		t.Errorf("read past the end = %v, want ErrOutOfBounds", err)
	}
	if _, err := e.ReadAt(b, -1); !errors.Is(err, flash.ErrOutOfBounds) {
		t.Errorf("read at -1 = %v, want ErrOutOfBounds", err)
	}
}

func TestClone_IsIndependent(t *testing.T) {
	e := newMem(t, stm32f4(4, 0xFF))
	base := randBytes(4, 256<<10)
	if err := e.Program(0, base); err != nil {
		t.Fatal(err)
	}
	c := e.Clone()
	if c.Ops() != 0 {
		t.Errorf("clone Ops() = %d, want 0", c.Ops())
	}
	if got := c.EraseCounts(); !equalCounts(got, e.EraseCounts()) {
		t.Errorf("clone erase counts %v differ from the parent's", got)
	}
	// Change both, differently, and check neither sees the other.
	if err := c.Erase(0, 16<<10); err != nil {
		t.Fatal(err)
	}
	if err := e.Program(256<<10, []byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, e, 0, 256<<10), base) {
		t.Error("erasing the clone changed the parent")
	}
	if got := read(t, c, 256<<10, 4); !allEqual(got, 0xFF) {
		t.Error("programming the parent changed the clone")
	}
	if got := read(t, c, 16<<10, 240<<10); !bytes.Equal(got, base[16<<10:]) {
		t.Error("clone lost content it shares with the parent")
	}
	if !allEqual(read(t, c, 0, 16<<10), 0xFF) {
		t.Error("clone's erase did not take")
	}
	// A program inside what both share: the parent's pages must have
	// become copy-on-write too.
	if err := e.Program(100<<10, make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if got := read(t, c, 100<<10, 64); !bytes.Equal(got, base[100<<10:100<<10+64]) {
		t.Error("programming the parent inside shared content changed the clone")
	}
	// A clone of a clone, and a partial-page program on a shared page.
	cc := c.Clone()
	if err := cc.Program(20<<10+8, []byte{0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, c, 20<<10, 16), base[20<<10:20<<10+16]) {
		t.Error("programming a clone's clone changed the clone")
	}
}

func equalCounts(a, b []uint32) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

func TestConcurrent_DisjointWriters(t *testing.T) {
	e := newMem(t, stm32f4(8, 0xFF))
	const workers, chunk = 8, 32 << 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			off := int64(128<<10 + w*chunk*3)
			data := randBytes(uint64(w), chunk*3)
			for i := range 3 {
				if err := e.Program(off+int64(i*chunk), data[i*chunk:(i+1)*chunk]); err != nil {
					t.Error(err)
				}
				_ = e.Clone() // clones race with writers too
			}
		})
	}
	wg.Wait()
	for w := range workers {
		off := int64(128<<10 + w*chunk*3)
		if !bytes.Equal(read(t, e, off, chunk*3), randBytes(uint64(w), chunk*3)) {
			t.Errorf("worker %d's data is wrong", w)
		}
	}
	if e.Ops() != workers*3 {
		t.Errorf("Ops() = %d, want %d", e.Ops(), workers*3)
	}
}

func TestCheckGeometry(t *testing.T) {
	ok := stm32f4(4, 0xFF)
	tests := []struct {
		name string
		mod  func(g *hal.FlashGeometry)
		msg  string // "" for valid
	}{
		{"stm32f4", func(g *hal.FlashGeometry) {}, ""},
		{"align 1 erased 0x00", func(g *hal.FlashGeometry) { g.WriteAlign, g.EraseValue = 1, 0 }, ""},
		{"align 32", func(g *hal.FlashGeometry) { g.WriteAlign = 32 }, ""},
		{"size 0", func(g *hal.FlashGeometry) { g.Size = 0 }, "flash.size: is 0"},
		{"sectors short", func(g *hal.FlashGeometry) { g.Size = 2 << 20 }, "add up to 1MiB (0x100000) but flash.size is 2MiB (0x200000)"},
		{"sectors long", func(g *hal.FlashGeometry) { g.Size = 512 << 10 }, "add up to 1MiB (0x100000) but flash.size is 512KiB (0x80000)"},
		{"align 0", func(g *hal.FlashGeometry) { g.WriteAlign = 0 }, "flash.write_align: is 0"},
		{"align 3", func(g *hal.FlashGeometry) { g.WriteAlign = 3 }, "flash.write_align: 3 is not a power of two"},
		{"align beyond sector", func(g *hal.FlashGeometry) { g.WriteAlign = 32 << 10 }, "flash.write_align: 32KiB is larger than the smallest erase sector (16KiB)"},
		{"erase 0x7f", func(g *hal.FlashGeometry) { g.EraseValue = 0x7F }, "flash.erase_value: is 0x7f"},
		{"flash.sectors: is empty", func(g *hal.FlashGeometry) { g.Sectors = nil }, "flash.sectors: is empty"},
		{"zero count", func(g *hal.FlashGeometry) { g.Sectors = []hal.SectorRun{{Count: 0, Size: 4096}} }, "flash.sectors[0].count: is 0"},
		{"negative count", func(g *hal.FlashGeometry) { g.Sectors = []hal.SectorRun{{Count: -1, Size: 4096}} }, "flash.sectors[0].count: is -1"},
		{"zero size", func(g *hal.FlashGeometry) { g.Sectors = []hal.SectorRun{{Count: 1, Size: 0}} }, "flash.sectors[0].size: is 0"},
		{"huge", func(g *hal.FlashGeometry) {
			g.Size = 1 << 40
			g.Sectors = []hal.SectorRun{{Count: 1 << 20, Size: 1 << 20}}
		}, "emulator's limit"},
		{"base overflow", func(g *hal.FlashGeometry) { g.Base = ^uint64(0) - 10 }, "passes the end of the 64-bit address space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := ok
			g.Sectors = append([]hal.SectorRun(nil), ok.Sectors...)
			tt.mod(&g)
			err := flash.CheckGeometry(g)
			if tt.msg == "" {
				if err != nil {
					t.Fatalf("CheckGeometry = %v, want nil", err)
				}
				if _, err := flash.NewMemory(g); err != nil {
					t.Fatalf("NewMemory = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("CheckGeometry = %v, want an error saying %q", err, tt.msg)
			}
			if _, err := flash.NewMemory(g); err == nil {
				t.Fatal("NewMemory accepted a bad geometry")
			}
		})
	}
}

// FuzzCheckGeometry checks that whatever geometry CheckGeometry accepts, the
// emulator can hold: sector lookup agrees with the runs, and every sector
// erases on its own.
func FuzzCheckGeometry(f *testing.F) {
	f.Add(uint64(64<<10), 16, uint64(4096), 0, uint64(0), uint32(4), byte(0xFF))
	f.Add(uint64(1<<20), 4, uint64(16<<10), 1, uint64(64<<10), uint32(8), byte(0x00))
	f.Add(uint64(3000), 3, uint64(1000), 0, uint64(0), uint32(8), byte(0xFF))
	f.Add(uint64(0), 0, uint64(0), 0, uint64(0), uint32(0), byte(1))
	f.Fuzz(func(t *testing.T, size uint64, c1 int, s1 uint64, c2 int, s2 uint64, align uint32, ev byte) {
		g := hal.FlashGeometry{Size: size, WriteAlign: align, EraseValue: ev,
			Sectors: []hal.SectorRun{{Count: c1, Size: s1}}}
		if c2 != 0 || s2 != 0 {
			g.Sectors = append(g.Sectors, hal.SectorRun{Count: c2, Size: s2})
		}
		if flash.CheckGeometry(g) != nil {
			return
		}
		if size > 4<<20 {
			return // valid, but too large to exercise quickly
		}
		e, err := flash.NewMemory(g)
		if err != nil {
			t.Fatalf("CheckGeometry accepted what NewMemory refuses: %v", err)
		}
		var off int64
		for _, r := range g.Sectors {
			for j := range r.Count {
				if j < 32 || j >= r.Count-32 {
					start, n, err := e.SectorAt(off)
					if err != nil || start != off || n != int64(r.Size) {
						t.Fatalf("SectorAt(0x%x) = 0x%x, %d, %v; want 0x%x, %d", off, start, n, err, off, r.Size)
					}
					if err := e.Erase(off, n); err != nil {
						t.Fatalf("Erase(0x%x, %d): %v", off, n, err)
					}
				}
				off += int64(r.Size)
			}
		}
		if off != int64(size) {
			t.Fatalf("sectors end at 0x%x, size is 0x%x", off, size)
		}
	})
}
