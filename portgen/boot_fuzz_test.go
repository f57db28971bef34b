package portgen_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/portgen"
)

// geometryDevice is a flash of any size that reads erased and is never
// written: enough for boot.NewPlatform, which only reads the params.
type geometryDevice struct{ g hal.FlashGeometry }

func (d geometryDevice) Geometry() hal.FlashGeometry { return d.g }

func (d geometryDevice) ReadAt(p []byte, off int64) (int, error) {
	for i := range p {
		p[i] = d.g.EraseValue
	}
	return len(p), nil
}

func (d geometryDevice) Program(off int64, p []byte) error { return errors.New("read-only") }
func (d geometryDevice) Erase(off, size int64) error       { return errors.New("read-only") }

// fuzzBoard writes a board file from the fuzzer's numbers: sectors as one or
// two runs (c1 > 0) or as erase_size.
func fuzzBoard(size, erase uint64, c1 int, s1 uint64, c2 int, s2 uint64, align uint64, ev uint8, dual bool, attempts int, parts [8]uint64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: fuzz-board\nsource: fuzz\nflash:\n  size: %#x\n", size)
	if c1 > 0 {
		fmt.Fprintf(&b, "  sectors:\n    - {count: %d, size: %#x}\n", c1, s1)
		if c2 > 0 {
			fmt.Fprintf(&b, "    - {count: %d, size: %#x}\n", c2, s2)
		}
	} else {
		fmt.Fprintf(&b, "  erase_size: %#x\n", erase)
	}
	fmt.Fprintf(&b, "  write_align: %d\n  erase_value: %#x\n", align, ev)
	scheme := "single-bank"
	if dual {
		scheme = "dual-bank"
	}
	fmt.Fprintf(&b, "scheme: %s\npartitions:\n", scheme)
	for i, n := range []string{"bootloader", "params", "app", "ota"} {
		fmt.Fprintf(&b, "  - {name: %s, offset: %#x, size: %#x}\n", n, parts[2*i], parts[2*i+1])
	}
	b.WriteString("image:\n  signature: ed25519\n")
	if attempts != 0 {
		fmt.Fprintf(&b, "  boot_attempts: %d\n", attempts)
	}
	return b.String()
}

// FuzzValidateThenBoot is the property that keeps the generator and the
// bootloader on one set of rules: whatever otagen validate accepts,
// boot.NewPlatform accepts over a device of that geometry (the emulator's
// size limits are its own, and otagen warns of them), and whatever it
// refuses says where and why.
func FuzzValidateThenBoot(f *testing.F) {
	type seed struct {
		size, erase uint64
		c1          int
		s1          uint64
		c2          int
		s2          uint64
		align       uint64
		ev          uint8
		dual        bool
		attempts    int
		parts       [8]uint64
	}
	for _, s := range []seed{
		// Valid boards: single-bank with two runs, dual-bank uniform.
		{1 << 20, 0, 16, 16 << 10, 6, 128 << 10, 4, 0xFF, false, 0, [8]uint64{0, 32 << 10, 32 << 10, 32 << 10, 0x40000, 384 << 10, 0xA0000, 384 << 10}},
		{1 << 20, 4 << 10, 0, 0, 0, 0, 8, 0xFF, true, 2, [8]uint64{0, 32 << 10, 0x8000, 8 << 10, 0x10000, 448 << 10, 0x80000, 448 << 10}},
		// The huge boards of issue 8, past the emulator's limit.
		{1 << 62, 2 << 10, 0, 0, 0, 0, 8, 0xFF, false, 0, [8]uint64{0, 64 << 10, 0x10000, 4 << 10, 0x100000, 1<<61 - 1<<20, 1 << 61, 1 << 61}},
		{1 << 40, 512, 0, 0, 0, 0, 4, 0xFF, true, 0, [8]uint64{0, 64 << 10, 0x10000, 4 << 10, 0x100000, 511 << 30, 0x8000100000, 511 << 30}},
		// 2 GiB: valid, and more than the emulator holds.
		{2 << 30, 128 << 10, 0, 0, 0, 0, 32, 0x00, true, 3, [8]uint64{0, 128 << 10, 128 << 10, 256 << 10, 1 << 20, 1<<30 - 1<<20, 1 << 30, 1<<30 - 1<<20}},
		// Broken ones: params of one sector, overlaps, a bad align.
		{1 << 20, 4 << 10, 0, 0, 0, 0, 8, 0xFF, true, 0, [8]uint64{0, 32 << 10, 0x8000, 4 << 10, 0x10000, 448 << 10, 0x80000, 448 << 10}},
		{1 << 20, 4 << 10, 0, 0, 0, 0, 3, 0xFF, false, 0, [8]uint64{0, 32 << 10, 0x7000, 8 << 10, 0x10000, 448 << 10, 0x80000, 448 << 10}},
		{1 << 20, 0, 4, 16 << 10, 1, 0, 4, 0xFF, false, 5, [8]uint64{0, 1 << 20, 0, 0, 0, 0, 0, 0}},
	} {
		p := s.parts
		f.Add(s.size, s.erase, s.c1, s.s1, s.c2, s.s2, s.align, s.ev, s.dual, s.attempts,
			p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7])
	}
	f.Fuzz(func(t *testing.T, size, erase uint64, c1 int, s1 uint64, c2 int, s2 uint64, align uint64, ev uint8, dual bool, attempts int,
		p0, p1, p2, p3, p4, p5, p6, p7 uint64) {
		src := fuzzBoard(size, erase, c1, s1, c2, s2, align, ev, dual, attempts, [8]uint64{p0, p1, p2, p3, p4, p5, p6, p7})
		boards, err := portgen.Parse("fuzz.yaml", []byte(src))
		if err != nil {
			var probs portgen.Errors
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("refused without problems: %v", err)
			}
			for _, p := range probs {
				if p.Field == "" || p.Line == 0 || !strings.Contains(p.Msg, ";") {
					t.Fatalf("problem without a field, a line or a reason and fix: %+v\n%s", p, src)
				}
			}
			return
		}
		l := boards[0].Layout()
		if _, err := boot.NewPlatform(l, geometryDevice{l.Flash}, boot.Options{}); err != nil {
			t.Fatalf("otagen validate accepts a board boot.NewPlatform refuses: %v\n%s", err, src)
		}
	})
}
