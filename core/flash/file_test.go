package flash_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

func TestOpenFile_CreatesErased(t *testing.T) {
	for _, ev := range []byte{0x00, 0xFF} {
		t.Run(fmt.Sprintf("0x%02x", ev), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "board.flash")
			e, err := flash.OpenFile(path, stm32f4(4, ev))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) != 1<<20 || !allEqual(raw, ev) {
				t.Fatalf("new flash file: %d bytes, erased %v; want 1 MiB of 0x%02x", len(raw), allEqual(raw, ev), ev)
			}
			if !allEqual(read(t, e, 0, 1<<20), ev) {
				t.Fatal("new flash does not read erased")
			}
			if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary file left behind: %v", err)
			}
		})
	}
}

func TestOpenFile_SurvivesReopen(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", sync), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "board.flash")
			g := stm32f4(8, 0xFF)
			e, err := flash.OpenFileWith(path, g, flash.Options{Sync: sync})
			if err != nil {
				t.Fatal(err)
			}
			data := randBytes(20, 100<<10)
			if err := e.Program(16<<10, data); err != nil {
				t.Fatal(err)
			}
			if err := e.Erase(64<<10, 64<<10); err != nil {
				t.Fatal(err)
			}
			if err := e.Erase(64<<10, 64<<10); err != nil {
				t.Fatal(err)
			}
			if err := e.Erase(0, 16<<10); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := e.ReadAt(make([]byte, 1), 0); !errors.Is(err, flash.ErrClosed) {
				t.Errorf("read after Close = %v, want ErrClosed", err)
			}

			// The file itself is the flash, byte for byte.
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := bytes.Repeat([]byte{0xFF}, 1<<20)
			copy(want[16<<10:64<<10], data)
			if !bytes.Equal(raw, want) {
				t.Fatal("flash file does not hold the flash content")
			}

			e2, err := flash.OpenFile(path, g)
			if err != nil {
				t.Fatal(err)
			}
			defer e2.Close()
			if !bytes.Equal(read(t, e2, 0, 1<<20), want) {
				t.Error("reopened flash content differs")
			}
			counts := e2.EraseCounts()
			if counts[0] != 1 || counts[4] != 2 || counts[1] != 0 {
				t.Errorf("reopened erase counts %v, want sector 0: 1, sector 4: 2, others 0", counts)
			}
		})
	}
}

func TestOpenFile_RefusesWrongSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	if err := os.WriteFile(path, make([]byte, 512<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := flash.OpenFile(path, stm32f4(4, 0xFF))
	if err == nil {
		t.Fatal("OpenFile accepted a file of the wrong size")
	}
	for _, s := range []string{path, "524288", "1048576", "delete", "board"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if st, _ := os.Stat(path); st.Size() != 512<<10 {
		t.Error("the refused file was changed")
	}
}

func TestOpenFile_RefusesOtherGeometryOfSameSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	e, err := flash.OpenFile(path, stm32f4(4, 0xFF))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	other := hal.FlashGeometry{Size: 1 << 20, Sectors: []hal.SectorRun{{Count: 256, Size: 4096}}, WriteAlign: 4, EraseValue: 0xFF}
	_, err = flash.OpenFile(path, other)
	if err == nil || !strings.Contains(err.Error(), "another geometry") || !strings.Contains(err.Error(), "256 sectors") {
		t.Fatalf("OpenFile with another geometry = %v, want a refusal naming both", err)
	}
	// The right geometry still opens.
	e, err = flash.OpenFile(path, stm32f4(4, 0xFF))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
}

func TestOpenFile_RefusesBadGeometryNamingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	g := stm32f4(3, 0xFF)
	_, err := flash.OpenFile(path, g)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "write_align: 3") {
		t.Fatalf("OpenFile = %v, want an error naming the file and write_align", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused geometry created a file")
	}
}

func TestOpenFile_WithoutWearFileStartsCounting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	if err := os.WriteFile(path, bytes.Repeat([]byte{0xFF}, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := flash.OpenFile(path, uniform(4, 0xFF))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Erase(4096, 4096); err != nil {
		t.Fatal(err)
	}
	if c := e.EraseCounts(); c[1] != 1 || c[0] != 0 {
		t.Errorf("erase counts %v", c)
	}
}

func TestOpenFile_CorruptWearFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	e, err := flash.OpenFile(path, uniform(4, 0xFF))
	if err != nil {
		t.Fatal(err)
	}
	e.Close()
	if err := os.WriteFile(path+".wear", []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = flash.OpenFile(path, uniform(4, 0xFF))
	if err == nil || !strings.Contains(err.Error(), "delete "+path+".wear") {
		t.Fatalf("OpenFile with a corrupt wear file = %v, want a refusal with the fix", err)
	}
}

func TestReopen_FileKeepsTheCutState(t *testing.T) {
	for _, when := range []flash.CutWhen{flash.Before, flash.After, flash.Torn} {
		t.Run(when.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "board.flash")
			e, err := flash.OpenFile(path, uniform(4, 0xFF))
			if err != nil {
				t.Fatal(err)
			}
			old := randBytes(30, 8<<10)
			if err := e.Program(0, old); err != nil {
				t.Fatal(err)
			}
			e.SetCut(flash.Cut{At: 1, When: when, Seed: 3})
			_ = e.Erase(0, 8<<10)
			if err := e.Program(8<<10, []byte{1, 2, 3, 4}); !errors.Is(err, flash.ErrPowerCut) {
				t.Fatalf("program after the cut = %v, want ErrPowerCut", err)
			}
			on, err := e.Reopen()
			if err != nil {
				t.Fatal(err)
			}
			defer on.Close()
			if on.PoweredOff() || on.Ops() != 0 {
				t.Errorf("reopened flash: powered off %v, ops %d", on.PoweredOff(), on.Ops())
			}
			got := read(t, on, 0, 8<<10)
			erased := bytes.Repeat([]byte{0xFF}, 8<<10)
			switch when {
			case flash.Before:
				if !bytes.Equal(got, old) {
					t.Error("cut before the erase: content changed")
				}
			case flash.After:
				if !bytes.Equal(got, erased) {
					t.Error("cut after the erase: not erased")
				}
			case flash.Torn:
				if bytes.Equal(got, old) || bytes.Equal(got, erased) {
					t.Error("torn erase: content is old or erased")
				}
			}
			if !allEqual(read(t, on, 8<<10, 4), 0xFF) {
				t.Error("a program after the cut reached the file")
			}
		})
	}
}

// FuzzParseWear feeds arbitrary wear files to OpenFile: it must refuse or
// accept them cleanly, and accept only a file that matches the geometry.
func FuzzParseWear(f *testing.F) {
	dir := f.TempDir()
	g := uniform(4, 0xFF)
	seed := filepath.Join(dir, "seed.flash")
	e, err := flash.OpenFile(seed, g)
	if err != nil {
		f.Fatal(err)
	}
	if err := e.Erase(0, 8192); err != nil {
		f.Fatal(err)
	}
	e.Close()
	good, err := os.ReadFile(seed + ".wear")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte("OTAWEAR1"))
	f.Add(append([]byte("OTAWEAR1"), make([]byte, 100)...))
	flashBytes := bytes.Repeat([]byte{0xFF}, 64<<10)
	f.Fuzz(func(t *testing.T, wear []byte) {
		path := filepath.Join(t.TempDir(), "f.flash")
		if err := os.WriteFile(path, flashBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".wear", wear, 0o644); err != nil {
			t.Fatal(err)
		}
		e, err := flash.OpenFile(path, g)
		if err != nil {
			if len(wear) == 0 {
				t.Fatalf("an empty wear file was refused: %v", err)
			}
			return
		}
		defer e.Close()
		if n := len(e.EraseCounts()); n != 16 {
			t.Fatalf("accepted wear file gives %d counters, want 16", n)
		}
		if len(wear) != 0 && len(wear) != len(good) {
			t.Fatalf("accepted a wear file of %d bytes, want %d", len(wear), len(good))
		}
	})
}

// TestOpenFile_TheFileIsTheFlashWhileOpen: every operation is in the file
// as soon as it returns, before any Close (a process killed mid-upgrade
// leaves the chip as it was), for both erased values and with pages that
// straddle sector ends.
func TestOpenFile_TheFileIsTheFlashWhileOpen(t *testing.T) {
	for _, ev := range []byte{0x00, 0xFF} {
		t.Run(fmt.Sprintf("0x%02x", ev), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "board.flash")
			e, err := flash.OpenFile(path, uniform(4, ev))
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			want := bytes.Repeat([]byte{ev}, 64<<10)
			steps := []func() error{
				func() error { return e.Program(100, copyInto(want, 100, randBytes(40, 10000))) },
				func() error { return e.Erase(8<<10, 8<<10) },
				func() error { return e.Program(9<<10, copyInto(want, 9<<10, randBytes(41, 4<<10))) },
				func() error { return e.Program(30<<10, copyInto(want, 30<<10, randBytes(42, 20<<10))) },
			}
			for i, step := range steps {
				if i == 1 {
					fill(want[8<<10:16<<10], ev)
				}
				if err := step(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, want) {
					t.Fatalf("after step %d the file differs from the flash", i)
				}
				if !bytes.Equal(read(t, e, 0, 64<<10), want) {
					t.Fatalf("after step %d the flash reads other bytes than expected", i)
				}
			}
		})
	}
}

// copyInto programs p at off in the model of an erased flash (a plain copy
// where every byte was erased) and returns p.
func copyInto(model []byte, off int, p []byte) []byte {
	copy(model[off:], p)
	return p
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// TestOpenFile_ClonesAreIndependent: a clone of a file-backed flash holds
// the content at the time of Clone, whatever either side does next, and
// never reaches the file; the clone of a closed one is closed.
func TestOpenFile_ClonesAreIndependent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board.flash")
	e, err := flash.OpenFile(path, uniform(4, 0xFF))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	first := randBytes(50, 8<<10)
	if err := e.Program(0, first); err != nil {
		t.Fatal(err)
	}
	before := read(t, e, 0, 64<<10)
	c := e.Clone()
	if err := e.Erase(0, 8<<10); err != nil {
		t.Fatal(err)
	}
	if err := e.Program(16<<10, randBytes(51, 4<<10)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(t, c, 0, 64<<10), before) {
		t.Fatal("the clone changed with the file-backed flash")
	}
	fileBefore, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Erase(0, 64<<10); err != nil {
		t.Fatal(err)
	}
	if err := c.Program(32<<10, randBytes(52, 4<<10)); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(path); !bytes.Equal(raw, fileBefore) {
		t.Fatal("a write to the clone reached the file")
	}
	for i, n := range c.EraseCounts() {
		if n != 1 {
			t.Errorf("clone erase count of sector %d = %d, want 1: its own erase, not the original's later one", i, n)
		}
	}

	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	closed := e.Clone()
	if _, err := closed.ReadAt(make([]byte, 1), 0); !errors.Is(err, flash.ErrClosed) {
		t.Errorf("read of the clone of a closed flash = %v, want ErrClosed", err)
	}
}
