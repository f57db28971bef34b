package mcuboot

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from MCUboot's own code (needs MCUBOOT_DIR)")

// build is one MCUboot build and flash the harness runs on; name is its golden
// file. The -D flags are the harness's compile-time configuration, the rest
// its command line.
type build struct {
	name      string
	defines   []string
	mode      Mode
	maxAlign  uint32
	writeSize uint32
	erased    byte
}

// goldenSlotSize and goldenMaxImgSectors match the harness: slot size on its
// command line, MCUBOOT_MAX_IMG_SECTORS in its mcuboot_config.h.
const (
	goldenSlotSize      = 0x20000
	goldenMaxImgSectors = 128
)

var builds = []build{
	{"a8-scratch-w1-ff", nil, SwapScratch, 8, 1, 0xff},
	{"a8-scratch-w4-ff", nil, SwapScratch, 8, 4, 0xff},
	{"a8-scratch-w8-00", nil, SwapScratch, 8, 8, 0x00},
	{"a8-move-w4-00", []string{"-DMCUBOOT_SWAP_USING_MOVE=1"}, SwapMove, 8, 4, 0x00},
	{"a8-offset-w4-ff", []string{"-DMCUBOOT_SWAP_USING_OFFSET=1"}, SwapOffset, 8, 4, 0xff},
	{"a16-move-w16-ff", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=16", "-DMCUBOOT_SWAP_USING_MOVE=1"}, SwapMove, 16, 16, 0xff},
	{"a32-scratch-w32-ff", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=32"}, SwapScratch, 32, 32, 0xff},
	{"a32-move-w4-00", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=32", "-DMCUBOOT_SWAP_USING_MOVE=1"}, SwapMove, 32, 4, 0x00},
	{"a32-offset-w32-00", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=32", "-DMCUBOOT_SWAP_USING_OFFSET=1"}, SwapOffset, 32, 32, 0x00},
	{"a4-overwrite-w4-ff", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=4", "-DMCUBOOT_OVERWRITE_ONLY=1"}, OverwriteOnly, 4, 4, 0xff},
	{"a1-overwrite-w1-00", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=1", "-DMCUBOOT_OVERWRITE_ONLY=1"}, OverwriteOnly, 1, 1, 0x00},
	{"a8-directxip-w4-ff", []string{"-DMCUBOOT_DIRECT_XIP=1", "-DMCUBOOT_BOOTUTIL_LIB_FOR_DIRECT_XIP=1"}, DirectXIP, 8, 4, 0xff},
	{"a32-directxip-w32-00", []string{"-DMCUBOOT_BOOT_MAX_ALIGN=32", "-DMCUBOOT_DIRECT_XIP=1", "-DMCUBOOT_BOOTUTIL_LIB_FOR_DIRECT_XIP=1"}, DirectXIP, 32, 32, 0x00},
}

func (b build) layout() Layout {
	return Layout{Mode: b.mode, SlotSize: goldenSlotSize, MaxAlign: b.maxAlign, WriteSize: b.writeSize,
		Erased: b.erased, MaxImgSectors: goldenMaxImgSectors}
}

func goldenPath(name string) string { return filepath.Join("testdata", "golden", name+".txt") }

// TestGolden_GoMatchesMCUboot renders, with this package, the same report the
// C harness prints from MCUboot's bootutil_public.c, and compares it with the
// committed output of that harness, byte for byte.
func TestGolden_GoMatchesMCUboot(t *testing.T) {
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			want, err := os.ReadFile(goldenPath(b.name))
			if err != nil {
				t.Fatalf("%v (regenerate with MCUBOOT_DIR=<mcuboot tree> go test -run TestMCUbootHarness -update)", err)
			}
			got := render(t, b.layout())
			if d := firstDiff(got, want); d != "" {
				t.Errorf("%s: Go differs from MCUboot's code: %s", goldenPath(b.name), d)
			}
		})
	}
}

// TestMCUbootHarness compiles the harness against MCUboot's own sources and
// checks that they print what the golden files hold; with -update it rewrites
// them. It needs an MCUboot source tree and gcc.
func TestMCUbootHarness(t *testing.T) {
	dir := os.Getenv("MCUBOOT_DIR")
	if dir == "" {
		t.Skip("MCUBOOT_DIR is not set: to check the golden trailers against MCUboot's own C, run " +
			"MCUBOOT_DIR=<mcuboot source tree> go test ./core/bootfmt/mcuboot -run TestMCUbootHarness (add -update to rewrite them)")
	}
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: the harness is compiled with the system gcc")
	}
	src := filepath.Join(dir, "boot", "bootutil", "src")
	if _, err := os.Stat(filepath.Join(src, "bootutil_public.c")); err != nil {
		t.Fatalf("MCUBOOT_DIR=%s is not an MCUboot source tree: %v", dir, err)
	}
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			bin := filepath.Join(t.TempDir(), "harness")
			args := append([]string{"-std=c11", "-Wall", "-Wno-unused-function", "-o", bin},
				b.defines...)
			args = append(args, "-Itestdata/harness/include",
				"-I"+filepath.Join(dir, "boot", "bootutil", "include"), "-I"+src,
				"testdata/harness/harness.c",
				filepath.Join(src, "bootutil_public.c"), filepath.Join(src, "bootutil_area.c"))
			if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
				t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			out, err := exec.Command(bin, fmt.Sprint(b.writeSize), fmt.Sprintf("0x%02x", b.erased),
				fmt.Sprintf("0x%x", goldenSlotSize)).Output()
			if err != nil {
				t.Fatalf("harness: %v", err)
			}
			if *update {
				if err := os.WriteFile(goldenPath(b.name), out, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath(b.name))
			if err != nil {
				t.Fatal(err)
			}
			if d := firstDiff(out, want); d != "" {
				t.Errorf("MCUboot at %s prints other than %s: %s", dir, goldenPath(b.name), d)
			}
		})
	}
}

func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d: got %q, want %q", i+1, gl, wl)
		}
	}
	return ""
}

// slot is a trailer in memory for the report: the last InfoSize bytes of a
// slot, written through the layout's Writes with the harness's strictness.
type slot struct {
	l    Layout
	tail []byte
}

func newSlot(l Layout) *slot {
	s := &slot{l: l, tail: bytes.Repeat([]byte{l.Erased}, int(l.InfoSize()))}
	return s
}

func (s *slot) base() uint32 { return s.l.SlotSize - s.l.InfoSize() }

// program applies w as the harness's flash does and says why it would refuse.
func (s *slot) program(w Write) string {
	if w.Off%s.l.WriteSize != 0 || uint32(len(w.Data))%s.l.WriteSize != 0 {
		return "misaligned"
	}
	if w.Off < s.base() || uint64(w.Off)+uint64(len(w.Data)) > uint64(s.l.SlotSize) {
		return "out-of-bounds"
	}
	dst := s.tail[w.Off-s.base():][:len(w.Data)]
	if !allBytes(dst, s.l.Erased) {
		return "not-erased"
	}
	copy(dst, w.Data)
	return ""
}

func (s *slot) raw(off uint32, b []byte) { copy(s.tail[off-s.base():], b) }

func (s *slot) mustProgram(t *testing.T, ws ...Write) {
	t.Helper()
	for _, w := range ws {
		if why := s.program(w); why != "" {
			t.Fatalf("write at 0x%x refused: %s", w.Off, why)
		}
	}
}

// rc is the value MCUboot's call returns for err.
func rc(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrBadImage):
		return 3
	case errors.Is(err, ErrBadVect):
		return 4
	default:
		return -1
	}
}

var starts = []string{"blank", "magic", "magic+image_ok", "magic+copy_done", "magic+copy_done+image_ok", "bad-magic"}

func (s *slot) setup(t *testing.T, name string) {
	l := s.l
	switch name {
	case "blank":
	case "magic":
		s.mustProgram(t, l.MagicWrite())
	case "magic+image_ok":
		s.mustProgram(t, l.MagicWrite(), l.ImageOKWrite())
	case "magic+copy_done":
		s.mustProgram(t, l.MagicWrite(), l.CopyDoneWrite())
	case "magic+copy_done+image_ok":
		s.mustProgram(t, l.MagicWrite(), l.CopyDoneWrite(), l.ImageOKWrite())
	case "bad-magic":
		m := Magic(l.MaxAlign)
		m[MagicSize-1] ^= 0x01
		s.raw(l.MagicOff(), m[:])
	default:
		t.Fatalf("unknown start %q", name)
	}
}

func stateLine(t *testing.T, area int, s *slot) string {
	st, err := s.l.Decode(s.tail)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("state %d rc=0 magic=%d swap_type=%d image_num=%d copy_done=%d image_ok=%d\n",
		area, st.Magic, st.SwapType, st.ImageNum, st.CopyDone, st.ImageOK)
}

// putState is the harness's put_state: 0 unset, 1 good/set, 2 bad.
func (s *slot) putState(magic, imageOK, copyDone int) {
	l := s.l
	if magic != 0 {
		m := Magic(l.MaxAlign)
		if magic == 2 {
			m[0] ^= 0x80
		}
		s.raw(l.MagicOff(), m[:])
	}
	flagByte := func(v int) []byte {
		if v == 1 {
			return []byte{byte(FlagSet)}
		}
		return []byte{0x02}
	}
	if imageOK != 0 {
		s.raw(l.ImageOKOff(), flagByte(imageOK))
	}
	if copyDone != 0 {
		s.raw(l.CopyDoneOff(), flagByte(copyDone))
	}
}

// render prints, from this package, what testdata/harness/harness.c prints
// from MCUboot's code.
func render(t *testing.T, l Layout) []byte {
	t.Helper()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	m := Magic(l.MaxAlign)
	fmt.Fprintf(&b, "boot_max_align %d\nmagic %x\n", l.MaxAlign, m[:])
	fmt.Fprintf(&b, "magic_off 0x%x\nimage_ok_off 0x%x\ncopy_done_off 0x%x\nswap_info_off 0x%x\n",
		l.MagicOff(), l.ImageOKOff(), l.CopyDoneOff(), l.SwapInfoOff())
	if off, ok := l.UnprotectedTLVSizesOff(); ok {
		fmt.Fprintf(&b, "unprotected_tlv_sizes_off 0x%x\n", off)
	}
	fmt.Fprintf(&b, "swap_size_off 0x%x\nstatus_sz 0x%x\ntrailer_sz 0x%x\n", l.SwapSizeOff(), l.StatusSize(), l.TrailerSize())

	ops := []struct {
		op    string
		image uint8
		area  int
	}{
		{"set_pending(0)", 0, 2}, {"set_pending(1)", 0, 2}, {"set_confirmed", 0, 1},
		{"set_pending(0)", 1, 4}, {"set_pending(1)", 1, 4}, {"set_confirmed", 1, 3},
	}
	for _, o := range ops {
		for _, start := range starts {
			s := newSlot(l)
			s.setup(t, start)
			fmt.Fprintf(&b, "case %s image=%d area=%d from=%s\n", o.op, o.image, o.area, start)
			var ws []Write
			var err error
			if o.op == "set_confirmed" {
				ws, err = l.SetConfirmed(s.tail, o.image)
			} else {
				ws, err = l.SetPending(s.tail, o.image, o.op == "set_pending(1)")
			}
			code := rc(err)
			for _, w := range ws {
				why := s.program(w)
				fmt.Fprintf(&b, "write %d 0x%x %x", o.area, w.Off, w.Data)
				if why != "" {
					// MCUboot stops at the first refused write and returns BOOT_EFLASH.
					fmt.Fprintf(&b, " refused %s\n", why)
					code = 1
					break
				}
				b.WriteString("\n")
			}
			fmt.Fprintf(&b, "rc %d\n", code)
			b.WriteString(stateLine(t, o.area, s))
		}
	}

	for p := 0; p < 27; p++ {
		for q := 0; q < 27; q++ {
			pri, sec := newSlot(l), newSlot(l)
			pri.putState(p/9, p/3%3, p%3)
			sec.putState(q/9, q/3%3, q%3)
			ps, err := l.Decode(pri.tail)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := l.Decode(sec.tail)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "table %d%d%d %d%d%d %d\n", p/9, p/3%3, p%3, q/9, q/3%3, q%3, Decide(l.Mode, ps, ss))
		}
	}

	for _, v := range []int{-1, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0f, 0x12, 0x13, 0x14, 0x15, 0xe4, 0xf2, 0xff} {
		s := newSlot(l)
		c := l.Erased
		if v >= 0 {
			c = byte(v)
		}
		s.raw(l.SwapInfoOff(), []byte{c})
		fmt.Fprintf(&b, "swap_info %02x: %s", c, stateLine(t, 1, s))
	}
	return b.Bytes()
}
