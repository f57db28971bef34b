package mcuboot

import (
	"bytes"
	"strings"
	"testing"
)

func TestLayout_OffsetsFromTheEnd(t *testing.T) {
	// The table of design.md's "Image trailer", for a 128 KiB slot of 4 KiB sectors.
	const s = 0x20000
	secs := make([]uint32, 32)
	for i := range secs {
		secs[i] = 0x1000
	}
	for _, c := range []struct {
		mode                                  Mode
		align, write                          uint32
		imageOK, copyDone, swapInfo, swapSize uint32
		trailer                               uint32
		trailerSectors                        int
	}{
		{SwapScratch, 8, 4, s - 24, s - 32, s - 40, s - 48, 32*3*4 + 4*8 + 16, 1},
		{SwapMove, 16, 16, s - 32, s - 48, s - 64, s - 80, 32*3*16 + 4*16 + 16, 1},
		{SwapOffset, 32, 32, s - 64, s - 96, s - 128, s - 192, 32*2*32 + 5*32 + 32, 1},
		{OverwriteOnly, 4, 4, s - 20, s - 24, s - 28, s - 32, 32*3*4 + 4*4 + 16, 1},
	} {
		l := Layout{Mode: c.mode, SlotSize: s, Sectors: secs, MaxAlign: c.align, WriteSize: c.write, Erased: 0xff}
		if err := l.Validate(); err != nil {
			t.Fatalf("%s a%d: %v", c.mode, c.align, err)
		}
		got := []uint32{l.MagicOff(), l.ImageOKOff(), l.CopyDoneOff(), l.SwapInfoOff(), l.SwapSizeOff(), l.TrailerSize()}
		want := []uint32{s - 16, c.imageOK, c.copyDone, c.swapInfo, c.swapSize, c.trailer}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s a%d w%d: offsets %#x, want %#x", c.mode, c.align, c.write, got, want)
				break
			}
		}
		if n := l.TrailerSectors(); n != c.trailerSectors {
			t.Errorf("%s a%d: trailer sectors %d, want %d", c.mode, c.align, n, c.trailerSectors)
		}
	}
}

func TestLayout_TrailerSpansSectors(t *testing.T) {
	// 512-byte pages: the 1584-byte trailer of an 8-aligned, 4-byte-write build
	// with 128 sectors covers the last 4 pages.
	secs := make([]uint32, 128)
	for i := range secs {
		secs[i] = 512
	}
	l := Layout{Mode: SwapScratch, SlotSize: 128 * 512, Sectors: secs, MaxAlign: 8, WriteSize: 4, Erased: 0xff}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.TrailerSize() != 1584 || l.TrailerSectors() != 4 {
		t.Errorf("trailer %d bytes over %d sectors, want 1584 over 4", l.TrailerSize(), l.TrailerSectors())
	}
}

func TestLayout_ValidateNamesTheField(t *testing.T) {
	ok := Layout{Mode: SwapMove, SlotSize: 0x20000, MaxAlign: 8, WriteSize: 4, Erased: 0xff, MaxImgSectors: 32}
	for _, c := range []struct {
		name string
		edit func(*Layout)
		want string
	}{
		{"mode", func(l *Layout) { l.Mode = 0 }, "mode 0"},
		{"max align not power", func(l *Layout) { l.MaxAlign = 12 }, "max_align 12"},
		{"swap below 8", func(l *Layout) { l.MaxAlign, l.WriteSize = 4, 4 }, "needs 8 to 32"},
		{"swap above 32", func(l *Layout) { l.MaxAlign = 64 }, "needs 8 to 32"},
		{"write above align", func(l *Layout) { l.WriteSize = 16 }, "write size 16"},
		{"erased", func(l *Layout) { l.Erased = 0x5a }, "erased value 0x5a"},
		{"slot", func(l *Layout) { l.SlotSize = 0x20004 }, "slot size"},
		{"sectors sum", func(l *Layout) { l.Sectors = []uint32{0x1000} }, "add up"},
		{"no sectors", func(l *Layout) { l.MaxImgSectors = 0 }, "status area size is unknown"},
		{"too small", func(l *Layout) { l.SlotSize = 0x100 }, "does not fit"},
	} {
		l := ok
		c.edit(&l)
		err := l.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid layout: %v", err)
	}
}

func TestMagic_Variants(t *testing.T) {
	for _, c := range []struct {
		align uint32
		want  string
	}{
		{8, "77c295f360d2ef7f3552500f2cb67980"},
		{16, "10002de15d29410b8d77679c110f1f8a"},
		{32, "20002de15d29410b8d77679c110f1f8a"},
	} {
		m := Magic(c.align)
		if got := bytesHex(m[:]); got != c.want {
			t.Errorf("Magic(%d) = %s, want %s", c.align, got, c.want)
		}
	}
}

func bytesHex(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&0xf])
	}
	return s.String()
}

// TestSetPending_PowerCutLeavesARequestOrNone cuts a permanent request after
// each of its writes: the secondary then asks for nothing (before the magic),
// a test (magic only) or the permanent swap (once image_ok is set; swap_info,
// written last, is not in the table), never anything else.
func TestSetPending_PowerCutLeavesARequestOrNone(t *testing.T) {
	for _, b := range builds {
		l := b.layout()
		if l.Mode == DirectXIP {
			continue
		}
		s := newSlot(l)
		ws, err := l.SetPending(s.tail, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		want := []SwapType{SwapNone, SwapTest, SwapPerm, SwapPerm}
		empty := State{Magic: MagicUnset, SwapType: SwapNone, CopyDone: FlagUnset, ImageOK: FlagUnset}
		for k := 0; k <= len(ws); k++ {
			cut := newSlot(l)
			cut.mustProgram(t, ws[:k]...)
			st, err := l.Decode(cut.tail)
			if err != nil {
				t.Fatal(err)
			}
			if got := Decide(l.Mode, empty, st); got != want[k] {
				t.Errorf("%s: cut after %d of %d writes: swap %d, want %d", b.name, k, len(ws), got, want[k])
			}
		}
	}
}

func TestDecode_RejectsWrongLength(t *testing.T) {
	l := builds[1].layout()
	if _, err := l.Decode(make([]byte, l.InfoSize()-1)); err == nil || !strings.Contains(err.Error(), "want the slot's last") {
		t.Errorf("short tail: %v", err)
	}
}

// FuzzDecode reads any bytes as a trailer of any valid layout: Decode never
// panics, returns only MCUboot's states, and a request made from what it read
// only programs erased, aligned units that leave the request readable.
func FuzzDecode(f *testing.F) {
	f.Add(uint8(3), uint8(2), uint8(1), false, []byte{})
	f.Add(uint8(5), uint8(5), uint8(0), true, bytes.Repeat([]byte{0xff}, 96))
	f.Add(uint8(1), uint8(0), uint8(1), false, []byte{0x01, 0x02, 0x77, 0xc2})
	f.Fuzz(func(t *testing.T, alignLog, writeLog, mode uint8, zeroErased bool, data []byte) {
		l := Layout{Mode: Mode(mode%5 + 1), SlotSize: 0x10000, MaxAlign: 1 << (alignLog % 6),
			WriteSize: 1 << (writeLog % 6), MaxImgSectors: 16, Erased: 0xff}
		if zeroErased {
			l.Erased = 0
		}
		if l.Validate() != nil {
			return
		}
		tail := bytes.Repeat([]byte{l.Erased}, int(l.InfoSize()))
		copy(tail, data)
		st, err := l.Decode(tail)
		if err != nil {
			t.Fatal(err)
		}
		if st.Magic < MagicGood || st.Magic > MagicUnset || st.CopyDone < FlagSet || st.CopyDone > FlagUnset ||
			st.ImageOK < FlagSet || st.ImageOK > FlagUnset || st.SwapType > SwapRevert || st.ImageNum > 15 {
			t.Fatalf("state out of range: %+v", st)
		}
		ws, err := l.SetPending(tail, 1, true)
		if err != nil {
			if st.Magic != MagicBad {
				t.Fatalf("request refused with magic %d: %v", st.Magic, err)
			}
			return
		}
		s := &slot{l: l, tail: tail}
		for _, w := range ws {
			switch why := s.program(w); why {
			case "":
			case "not-erased":
				// A field the request writes already holds a value: the
				// flash refuses, as it would refuse MCUboot (BOOT_EFLASH).
				return
			default:
				t.Fatalf("write at 0x%x: %s (state %+v)", w.Off, why, st)
			}
		}
		after, err := l.Decode(s.tail)
		if err != nil {
			t.Fatal(err)
		}
		if after.Magic != MagicGood {
			t.Fatalf("after the request the magic reads %d", after.Magic)
		}
	})
}
