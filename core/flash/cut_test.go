package flash_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"testing"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// script is a small fixed sequence of flash operations: what an upgrade
// looks like to the flash.
type op struct {
	erase bool
	off   int64
	data  []byte // program
	size  int64  // erase
}

func (o op) do(e *flash.Emulator) error {
	if o.erase {
		return e.Erase(o.off, o.size)
	}
	return e.Program(o.off, o.data)
}

func script() []op {
	return []op{
		{erase: true, off: 0, size: 8 << 10},
		{off: 0, data: randBytes(10, 4<<10)},
		{off: 4 << 10, data: randBytes(11, 4<<10)},
		{erase: true, off: 16 << 10, size: 4 << 10},
		{off: 16 << 10, data: randBytes(12, 256)},
		{erase: true, off: 0, size: 4 << 10},
	}
}

// prepared returns a flash with content in every sector the script touches,
// so that each erase and program changes bits.
func prepared(t testing.TB, erased byte) *flash.Emulator {
	t.Helper()
	e := newMem(t, uniform(4, erased))
	data := randBytes(99, 64<<10)
	if err := e.Program(0, data); err != nil {
		t.Fatal(err)
	}
	return e
}

// states runs the script on a clone of e and returns the flash content
// before each operation and after the last.
func states(t testing.TB, e *flash.Emulator) [][]byte {
	t.Helper()
	c := e.Clone()
	out := [][]byte{read(t, c, 0, 64<<10)}
	for _, o := range script() {
		if err := o.do(c); err != nil {
			t.Fatal(err)
		}
		out = append(out, read(t, c, 0, 64<<10))
	}
	return out
}

func TestCut_EveryModeAtEveryOperation(t *testing.T) {
	for _, ev := range []byte{0xFF, 0x00} {
		base := prepared(t, ev)
		want := states(t, base)
		n := len(script())
		for _, when := range []flash.CutWhen{flash.Before, flash.After, flash.Torn} {
			for k := 1; k <= n; k++ {
				t.Run(fmt.Sprintf("0x%02x/%v/%d", ev, when, k), func(t *testing.T) {
					e := base.Clone()
					e.SetCut(flash.Cut{At: k, When: when, Seed: 7})
					var cutErr error
					for i, o := range script() {
						err := o.do(e)
						switch {
						case i+1 < k:
							if err != nil {
								t.Fatalf("operation %d before the cut: %v", i+1, err)
							}
						case i+1 == k && when == flash.After:
							if err != nil {
								t.Fatalf("operation %d (cut after it) = %v, want nil", k, err)
							}
						default:
							if !errors.Is(err, flash.ErrPowerCut) || hal.CodeOf(err) != hal.CodeFlash {
								t.Fatalf("operation %d = %v, want ErrPowerCut", i+1, err)
							}
							if cutErr == nil {
								cutErr = err
							}
						}
					}
					if !e.PoweredOff() {
						t.Error("PoweredOff() = false after the cut")
					}
					if _, err := e.ReadAt(make([]byte, 1), 0); !errors.Is(err, flash.ErrPowerCut) {
						t.Errorf("read after the cut = %v, want ErrPowerCut", err)
					}
					if e.Ops() != k {
						t.Errorf("Ops() = %d, want %d (every valid call counts until the cut)", e.Ops(), k)
					}
					on, err := e.Reopen()
					if err != nil {
						t.Fatal(err)
					}
					got := read(t, on, 0, 64<<10)
					switch when {
					case flash.Before:
						if !bytes.Equal(got, want[k-1]) {
							t.Error("cut before operation k: flash is not as after operation k-1")
						}
					case flash.After:
						if !bytes.Equal(got, want[k]) {
							t.Error("cut after operation k: flash is not as after operation k")
						}
					case flash.Torn:
						if bytes.Equal(got, want[k-1]) || bytes.Equal(got, want[k]) {
							t.Error("torn operation k: flash equals the state before or after it")
						}
						if !between(want[k-1], got, want[k]) {
							t.Error("torn operation k moved bits the operation would not move")
						}
					}
					// The powered-on flash works and has no cut armed.
					if err := on.Erase(32<<10, 4<<10); err != nil {
						t.Errorf("erase after power-on: %v", err)
					}
				})
			}
		}
	}
}

// between reports whether every bit of mid is the bit of old or of new, i.e.
// only bits the operation changes have moved.
func between(old, mid, new []byte) bool {
	for i := range old {
		if (mid[i]^old[i])&^(old[i]^new[i]) != 0 {
			return false
		}
	}
	return true
}

func TestCut_Disarm(t *testing.T) {
	e := prepared(t, 0xFF)
	e.SetCut(flash.Cut{At: 1})
	e.SetCut(flash.Cut{})
	for i, o := range script() {
		if err := o.do(e); err != nil {
			t.Fatalf("operation %d with the cut disarmed: %v", i+1, err)
		}
	}
}

func TestCut_CountsFromSetCut(t *testing.T) {
	e := prepared(t, 0xFF) // one program already
	e.SetCut(flash.Cut{At: 2, When: flash.Before})
	if err := e.Erase(0, 4096); err != nil {
		t.Fatalf("first operation after SetCut: %v", err)
	}
	if err := e.Erase(0, 4096); !errors.Is(err, flash.ErrPowerCut) {
		t.Fatalf("second operation after SetCut = %v, want ErrPowerCut", err)
	}
	if e.Ops() != 3 {
		t.Errorf("Ops() = %d, want 3 since power-on", e.Ops())
	}
}

func TestTorn_ManySeedsStrictlyBetween(t *testing.T) {
	geos := map[string]hal.FlashGeometry{
		"uniform": uniform(8, 0xFF),
		"stm32f4": stm32f4(4, 0x00),
	}
	for name, g := range geos {
		e := newMem(t, g)
		if err := e.Program(0, randBytes(5, 64<<10)); err != nil {
			t.Fatal(err)
		}
		before := read(t, e, 0, 64<<10)
		data := randBytes(6, 16<<10)
		for seed := range uint64(50) {
			// A program of 16K at 8K (4K into it is the program's own
			// business), and an erase of the first 64K (several sectors on
			// uniform, four on stm32f4).
			for _, tc := range []struct {
				name string
				run  func(*flash.Emulator) error
			}{
				{"program", func(e *flash.Emulator) error { return e.Program(8<<10, data) }},
				{"erase", func(e *flash.Emulator) error { return e.Erase(0, 64<<10) }},
			} {
				after := e.Clone()
				if err := tc.run(after); err != nil {
					t.Fatal(err)
				}
				want := read(t, after, 0, 64<<10)

				c := e.Clone()
				c.SetCut(flash.Cut{At: 1, When: flash.Torn, Seed: seed})
				if err := tc.run(c); !errors.Is(err, flash.ErrPowerCut) {
					t.Fatalf("%s %s seed %d: torn = %v, want ErrPowerCut", name, tc.name, seed, err)
				}
				got := read(t, c.Clone(), 0, 64<<10)
				if bytes.Equal(got, before) || bytes.Equal(got, want) || !between(before, got, want) {
					t.Errorf("%s %s seed %d: torn result not strictly between before and after", name, tc.name, seed)
				}
				// Deterministic: the same seed tears the same way.
				c2 := e.Clone()
				c2.SetCut(flash.Cut{At: 1, When: flash.Torn, Seed: seed})
				_ = tc.run(c2)
				if !bytes.Equal(read(t, c2.Clone(), 0, 64<<10), got) {
					t.Errorf("%s %s seed %d: torn result not reproducible", name, tc.name, seed)
				}
			}
		}
	}
}

func TestTorn_SeedsVary(t *testing.T) {
	// Different seeds tear at different points: a sweep with several seeds
	// explores more than one state per operation.
	e := prepared(t, 0xFF)
	seen := map[int]bool{}
	old := read(t, e, 0, 8<<10)
	for seed := range uint64(20) {
		c := e.Clone()
		c.SetCut(flash.Cut{At: 1, When: flash.Torn, Seed: seed})
		_ = c.Erase(0, 8<<10)
		got := read(t, c.Clone(), 0, 8<<10)
		moved := 0
		for i := range got {
			moved += bits.OnesCount8(got[i] ^ old[i])
		}
		seen[moved] = true
	}
	if len(seen) < 5 {
		t.Errorf("20 seeds gave only %d different torn erases", len(seen))
	}
}
