package boot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// programLog is the fixture's emulator with a record of every Program.
type programLog struct {
	flash.Device
	programs []program
}

type program struct {
	off  int64
	data []byte
}

func (d *programLog) Program(off int64, p []byte) error {
	d.programs = append(d.programs, program{off, bytes.Clone(p)})
	return d.Device.Program(off, p)
}

// unitModel is what Write must do, one write unit at a time: pad data to
// the alignment with the erased value, skip the units that hold the same
// bytes, program each run of units that differ, and stop with the offset
// of the first differing unit that is not erased (the runs before it
// programmed).
func unitModel(cur, data []byte, align int, erase byte) (progs []program, notErased int) {
	buf := bytes.Clone(data)
	for len(buf)%align != 0 {
		buf = append(buf, erase)
	}
	erased := bytes.Repeat([]byte{erase}, align)
	for u := 0; u < len(buf); {
		if bytes.Equal(cur[u:u+align], buf[u:u+align]) {
			u += align
			continue
		}
		start := u
		for u < len(buf) && !bytes.Equal(cur[u:u+align], buf[u:u+align]) {
			if !bytes.Equal(cur[u:u+align], erased) {
				return progs, u
			}
			u += align
		}
		progs = append(progs, program{int64(start), buf[start:u]})
	}
	return progs, -1
}

// TestWrite_ProgramsExactlyTheDifferingUnits checks Write against
// unitModel on every board, over random chunks: units of random bytes, of
// the erased value (which the flash already holds), of random bytes with
// erased bytes among them, a short tail; over flash that is erased (every
// download), holds part of the chunk already (a resume), or holds other
// data (refused); chunks of a few units and chunks larger than the pieces
// Write reads the flash in.
func TestWrite_ProgramsExactlyTheDifferingUnits(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.SingleBank, 0)
			log := &programLog{Device: f.dev}
			pl, err := boot.NewPlatform(f.layout, log, f.opts)
			if err != nil {
				t.Fatal(err)
			}
			ota := tb.part(hal.PartOTA)
			if err := pl.Init(ctx, hal.InitRequest{Size: ota.Size}); err != nil {
				t.Fatal(err)
			}
			a := int(tb.geo.WriteAlign)
			erase := tb.geo.EraseValue
			rng := rand.New(rand.NewPCG(uint64(a), uint64(erase)))
			randUnit := func() []byte {
				u := make([]byte, a)
				for i := range u {
					u[i] = byte(rng.IntN(255)) // never 0xFF
					if erase == 0 {
						u[i]++ // never 0x00
					}
				}
				if a > 1 && rng.IntN(3) == 0 {
					// An erased byte that does not make the unit erased.
					u[rng.IntN(a)] = erase
				}
				return u
			}
			off := 0
			// After the small chunks, chunks of 10 KiB and more: Write
			// reads the flash in 4 KiB pieces, and runs of units span
			// them, over pieces erased, holding data, or both.
			const small = 60
			large := []string{"erased", "resume", "other", "resumed head"}
			for i := range small + len(large) {
				units := 1 + rng.IntN(48)
				mode := []string{"erased", "resume", "other"}[i%3]
				if i >= small {
					units, mode = 10<<10/a+rng.IntN(48), large[i-small]
				}
				var data []byte
				for range units {
					if rng.IntN(6) == 0 {
						data = append(data, bytes.Repeat([]byte{erase}, a)...)
					} else {
						data = append(data, randUnit()...)
					}
				}
				if a > 1 && rng.IntN(2) == 0 {
					data = data[:len(data)-1-rng.IntN(a-1)]
				}
				// What the flash holds before: erased, or per unit
				// erased, the chunk's own bytes, or other data (in
				// its first half only, for "resumed head").
				padded := (len(data) + a - 1) / a * a
				before := bytes.Repeat([]byte{erase}, padded)
				if mode != "erased" {
					for u := 0; u < padded; u += a {
						if mode == "resumed head" && u >= padded/2 {
							break
						}
						switch r := rng.IntN(8); {
						case r < 3 && u+a <= len(data):
							copy(before[u:], data[u:u+a])
						case r == 3 && mode == "other":
							copy(before[u:], randUnit())
						}
					}
				}
				base := int64(ota.Offset) + int64(off)
				if err := f.dev.Program(base, before); err != nil {
					t.Fatal(err)
				}
				want, stop := unitModel(before, data, a, erase)
				log.programs = nil
				err := pl.Write(ctx, uint64(off), data)
				name := fmt.Sprintf("case %d (%s, %d bytes at 0x%x)", i, mode, len(data), off)
				if stop >= 0 {
					if !errors.Is(err, hal.ErrNotErased) || !bytes.Contains([]byte(err.Error()), fmt.Appendf(nil, "bytes at 0x%x", off+stop)) {
						t.Fatalf("%s: write: %v, want not erased at 0x%x", name, err, off+stop)
					}
				} else if err != nil {
					t.Fatalf("%s: write: %v", name, err)
				}
				if len(log.programs) != len(want) {
					t.Fatalf("%s: %d programs, want %d", name, len(log.programs), len(want))
				}
				for j, p := range log.programs {
					if p.off != base+want[j].off || !bytes.Equal(p.data, want[j].data) {
						t.Fatalf("%s: program %d at 0x%x (%d bytes), want at 0x%x (%d bytes)", name, j, p.off-base, len(p.data), want[j].off, len(want[j].data))
					}
				}
				if stop < 0 {
					got, err := pl.Read(ctx, uint64(off), padded)
					wantBytes := append(bytes.Clone(data), bytes.Repeat([]byte{erase}, padded-len(data))...)
					if err != nil || !bytes.Equal(got, wantBytes) {
						t.Fatalf("%s: read back differs (%v)", name, err)
					}
				}
				off += padded + a
			}
		})
	}
}

// TestWrite_AllocatesNothingPerChunk: the download's path through the
// port, over a file-backed flash as a port plugin runs it, reuses its
// buffers, and so does ReadInto.
func TestWrite_AllocatesNothingPerChunk(t *testing.T) {
	ctx := context.Background()
	tb := testBoards[0]
	dev, err := flash.OpenFile(filepath.Join(t.TempDir(), "flash.bin"), tb.geo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dev.Close() })
	pl, err := boot.NewPlatform(tb.layout(hal.DualBank, 0), dev, boot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ota := tb.part(hal.PartOTA)
	if err := pl.Init(ctx, hal.InitRequest{Size: ota.Size}); err != nil {
		t.Fatal(err)
	}
	const chunk = 4096
	data := bytes.Repeat([]byte{0x5A, 0xA5, 0x3C}, chunk/3+1)
	for _, c := range []struct {
		name string
		n    int
	}{{"whole units", chunk}, {"padded tail", chunk - 3}} {
		off := uint64(0)
		write := func() {
			if err := pl.Write(ctx, off, data[:c.n]); err != nil {
				t.Fatal(err)
			}
			off += chunk
		}
		write() // the first call sizes the buffers
		if n := testing.AllocsPerRun(8, write); n != 0 {
			t.Errorf("write, %s: %.1f allocations per chunk, want 0", c.name, n)
		}
		if err := pl.Init(ctx, hal.InitRequest{Size: ota.Size}); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, chunk)
	if n := testing.AllocsPerRun(8, func() {
		if err := pl.ReadInto(ctx, 0, buf); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("read into: %.1f allocations per call, want 0", n)
	}
}

func TestReadInto_MatchesRead(t *testing.T) {
	ctx := context.Background()
	for _, tb := range testBoards {
		t.Run(tb.name, func(t *testing.T) {
			f := newFixture(t, tb, hal.DualBank, 0)
			pl := f.platform()
			img := f.image("2.0.0", 0)
			install(t, pl, img, hal.BootTest)
			ota, _ := f.layout.Partition(hal.PartOTA)
			for _, r := range []struct{ off, n int }{{0, len(img)}, {1, 17}, {len(img) - 5, 5}, {int(ota.Size) - 3, 3}, {0, 0}} {
				want, err := pl.Read(ctx, uint64(r.off), r.n)
				if err != nil {
					t.Fatal(err)
				}
				got := bytes.Repeat([]byte{0xEE}, r.n)
				if err := pl.ReadInto(ctx, uint64(r.off), got); err != nil || !bytes.Equal(got, want) {
					t.Fatalf("read into %d bytes at 0x%x: equal=%v, %v", r.n, r.off, bytes.Equal(got, want), err)
				}
			}
			err := pl.ReadInto(ctx, ota.Size-2, make([]byte, 3))
			if !errors.Is(err, hal.ErrOutOfBounds) || !bytes.Contains([]byte(err.Error()), []byte("ota")) {
				t.Errorf("read into past the end: %v, want out of bounds naming ota", err)
			}
			_ = pl.Close()
			if err := pl.ReadInto(ctx, 0, make([]byte, 1)); !errors.Is(err, hal.ErrInvalid) {
				t.Errorf("read into after close: %v, want invalid", err)
			}
		})
	}
}
