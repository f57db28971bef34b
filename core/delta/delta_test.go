package delta

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// firmwareLike returns a base of pseudo-code and a target made from it the
// way a rebuild changes firmware: a block inserted (everything after it moves),
// 32-bit pointers into the moved part adjusted, a few bytes edited, a tail
// appended.
func firmwareLike(seed uint64, size int) (base, target []byte) {
	r := rand.New(rand.NewPCG(seed, 1))
	base = make([]byte, size)
	for i := range base {
		// Skewed bytes, like instructions: a few opcodes dominate.
		base[i] = byte(r.IntN(16) * r.IntN(16))
	}
	for i := 0; i+4 <= size; i += 64 {
		v := uint32(0x40200000 + r.IntN(size))
		base[i], base[i+1], base[i+2], base[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	ins := size / 3
	target = append(target, base[:ins]...)
	extra := make([]byte, 700)
	for i := range extra {
		extra[i] = byte(r.Uint32())
	}
	target = append(target, extra...)
	target = append(target, base[ins:]...)
	for i := 0; i+4 <= len(target); i += 64 {
		v := uint32(target[i]) | uint32(target[i+1])<<8 | uint32(target[i+2])<<16 | uint32(target[i+3])<<24
		if v >= 0x40200000 && v < 0x40200000+uint32(size) && v-0x40200000 >= uint32(ins) {
			v += uint32(len(extra))
			target[i], target[i+1], target[i+2], target[i+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		}
	}
	for k := 0; k < 20; k++ {
		target[r.IntN(len(target))] ^= byte(1 + r.IntN(255))
	}
	tail := make([]byte, 300)
	for i := range tail {
		tail[i] = byte(r.IntN(4))
	}
	return base, append(target, tail...)
}

func random(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type pair struct {
	name         string
	base, target []byte
	blockLog     uint8
	filters      []Filter
}

func pairs(t testing.TB) []pair {
	fwBase, fwTarget := firmwareLike(1, 200_000)
	smallBase, smallTarget := firmwareLike(2, 5000)
	return []pair{
		{name: "both empty"},
		{name: "empty base", target: random(3, 10_000)},
		{name: "empty target", base: random(4, 10_000)},
		{name: "identical", base: fwBase, target: fwBase},
		{name: "unrelated", base: random(5, 30_000), target: random(6, 40_000)},
		{name: "one byte", base: []byte{7}, target: []byte{9}},
		{name: "firmware-like", base: fwBase, target: fwTarget},
		{name: "firmware-like, 4 KiB blocks", base: fwBase, target: fwTarget, blockLog: 12},
		{name: "small, exact block multiple", base: smallBase, target: smallTarget[:4096], blockLog: 12},
		{name: "shrunk", base: fwTarget, target: fwBase[:50_000]},
		{name: "esp8266 fixture", base: fixture(t, "esp8266-old.bin"), target: fixture(t, "esp8266-new.bin"), blockLog: 13},
		{name: "esp8266 fixture, xtensa filter", base: fixture(t, "esp8266-old.bin"), target: fixture(t, "esp8266-new.bin"), blockLog: 12, filters: []Filter{FilterXtensa}},
		{name: "firmware-like, xtensa filter", base: fwBase, target: fwTarget, filters: []Filter{FilterXtensa}},
	}
}

func TestEncodeApply_RoundTrip(t *testing.T) {
	for _, p := range pairs(t) {
		t.Run(p.name, func(t *testing.T) {
			patch, err := Encode(p.base, p.target, Options{BlockLog: p.blockLog, Filters: p.filters})
			if err != nil {
				t.Fatal(err)
			}
			if h, _ := ParseHeader(patch); p.filters != nil && h.Filter != p.filters[0] {
				t.Fatalf("patch made with filter %s, asked for %s", h.Filter, p.filters[0])
			}
			var out bytes.Buffer
			if err := Apply(context.Background(), bytes.NewReader(patch), bytes.NewReader(p.base), &out); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), p.target) {
				t.Fatalf("applied target differs: %d bytes, want %d", out.Len(), len(p.target))
			}
			t.Logf("%d -> %d bytes: patch %d", len(p.base), len(p.target), len(patch))
		})
	}
}

// TestEncode_SmallerThanTarget holds the encoder to doing its job on data
// with matches: a patch that is not far smaller than the target is a bug.
func TestEncode_SmallerThanTarget(t *testing.T) {
	for _, tc := range []struct {
		name         string
		base, target []byte
		maxShare     float64
	}{
		{"identical", fixture(t, "esp8266-new.bin"), fixture(t, "esp8266-new.bin"), 0.01},
		{"esp8266 fixture", fixture(t, "esp8266-old.bin"), fixture(t, "esp8266-new.bin"), 0.15},
	} {
		patch, err := Encode(tc.base, tc.target, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if share := float64(len(patch)) / float64(len(tc.target)); share > tc.maxShare {
			t.Errorf("%s: patch is %.1f %% of the target, want at most %.1f %%", tc.name, 100*share, 100*tc.maxShare)
		}
	}
}

// TestEncode_XtensaFilterPays holds the Xtensa filter to its purpose: on
// real ESP8266 code, coding call and pointer moves must beat byte-wise
// differences clearly.
func TestEncode_XtensaFilterPays(t *testing.T) {
	base, target := fixture(t, "esp8266-old.bin"), fixture(t, "esp8266-new.bin")
	size := map[Filter]int{}
	for _, f := range Filters {
		p, err := Encode(base, target, Options{Filters: []Filter{f}})
		if err != nil {
			t.Fatal(err)
		}
		size[f] = len(p)
	}
	if size[FilterXtensa] > size[FilterNone]*95/100 {
		t.Fatalf("xtensa filter: %d bytes, none: %d; want at least 5 %% smaller", size[FilterXtensa], size[FilterNone])
	}
	t.Logf("none %d bytes, xtensa %d", size[FilterNone], size[FilterXtensa])
}

// TestResume_AtEveryBlock stops the apply after every block, serializes the
// checkpoint, and resumes in a fresh decoder from the patch offset it names
// into a target truncated to the offset it names: the result must be the
// target, whatever the block the cut fell on.
func TestResume_AtEveryBlock(t *testing.T) {
	base, target := fixture(t, "esp8266-old.bin"), fixture(t, "esp8266-new.bin")
	for _, f := range Filters {
		t.Run(f.String(), func(t *testing.T) { testResume(t, base, target, f) })
	}
	fwBase, fwTarget := firmwareLike(7, 100_000)
	t.Run("firmware-like", func(t *testing.T) { testResume(t, fwBase, fwTarget, FilterNone) })
}

func testResume(t *testing.T, base, target []byte, f Filter) {
	patch, err := Encode(base, target, Options{BlockLog: 12, Filters: []Filter{f}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, _ := ParseHeader(patch)
	for cut := int64(0); cut <= h.Blocks(); cut++ {
		var out bytes.Buffer
		d, err := NewDecoder(bytes.NewReader(patch), bytes.NewReader(base), &out)
		if err != nil {
			t.Fatal(err)
		}
		for i := int64(0); i < cut; i++ {
			if err := d.Next(ctx); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
		}
		cp, err := d.Checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		if len(cp) > MaxCheckpointSize {
			t.Fatalf("checkpoint of %d bytes, the bound is %d", len(cp), MaxCheckpointSize)
		}
		// The power cut: everything after the checkpoint is lost, and
		// some garbage written after it is discarded by the truncation.
		out.WriteString("written after the checkpoint")
		off, toff := d.PatchOffset(), d.TargetOffset()
		out.Truncate(int(toff))
		r, err := Resume(cp, bytes.NewReader(patch[off:]), bytes.NewReader(base), &out)
		if err != nil {
			t.Fatalf("cut after block %d: %v", cut, err)
		}
		if r.TargetOffset() != toff || r.PatchOffset() != off {
			t.Fatalf("cut after block %d: resumed at target %d patch %d, checkpointed at %d %d", cut, r.TargetOffset(), r.PatchOffset(), toff, off)
		}
		if err := r.Run(ctx); err != nil {
			t.Fatalf("cut after block %d: %v", cut, err)
		}
		if !bytes.Equal(out.Bytes(), target) {
			t.Fatalf("cut after block %d: resumed target differs", cut)
		}
	}
}

func TestResume_RefusesTornCheckpoint(t *testing.T) {
	base, target := firmwareLike(8, 20_000)
	patch, _ := Encode(base, target, Options{BlockLog: 12})
	d, err := NewDecoder(bytes.NewReader(patch), bytes.NewReader(base), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Next(context.Background()); err != nil {
		t.Fatal(err)
	}
	cp, _ := d.Checkpoint()
	for _, bad := range [][]byte{cp[:len(cp)-1], append(append([]byte{}, cp[:20]...), append([]byte{cp[20] ^ 1}, cp[21:]...)...), nil} {
		if _, err := Resume(bad, bytes.NewReader(nil), bytes.NewReader(base), io.Discard); !errors.Is(err, ErrCorrupt) {
			t.Errorf("Resume of a damaged checkpoint: %v, want ErrCorrupt", err)
		}
	}
}

// TestApply_RefusesCorruptPatch flips every byte of a small patch in turn:
// each flip must give an error (the header CRC, the block CRC, the range
// checks or the target digest catch it), never a wrong target. A flip in the
// slack of the range coder's final bytes may change nothing at all: then the
// target must be exact.
func TestApply_RefusesCorruptPatch(t *testing.T) {
	base, target := firmwareLike(9, 3000)
	patch, err := Encode(base, target, Options{BlockLog: 12})
	if err != nil {
		t.Fatal(err)
	}
	for i := range patch {
		bad := append([]byte{}, patch...)
		bad[i] ^= 0x55
		var out bytes.Buffer
		err := Apply(context.Background(), bytes.NewReader(bad), bytes.NewReader(base), &out)
		if err == nil && !bytes.Equal(out.Bytes(), target) {
			t.Fatalf("flip at %d: applied without error to a wrong target", i)
		}
		if out.Len() > len(target) {
			t.Fatalf("flip at %d: wrote %d bytes, the target has %d", i, out.Len(), len(target))
		}
	}
	if err := Apply(context.Background(), bytes.NewReader(patch[:len(patch)-3]), bytes.NewReader(base), io.Discard); err == nil {
		t.Fatal("truncated patch applied without error")
	}
}

func TestCheckBase_NamesBothHashes(t *testing.T) {
	base, target := firmwareLike(10, 3000)
	patch, _ := Encode(base, target, Options{})
	h, err := ParseHeader(patch)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.CheckBase(sha256.Sum256(base)); err != nil {
		t.Fatalf("right base refused: %v", err)
	}
	other := sha256.Sum256(target)
	err = h.CheckBase(other)
	if !errors.Is(err, ErrWrongBase) {
		t.Fatalf("wrong base: %v, want ErrWrongBase", err)
	}
	want := sha256.Sum256(base)
	for _, sum := range [][32]byte{want, other} {
		if !strings.Contains(err.Error(), string(hexs(sum[:]))) {
			t.Errorf("error %q does not name %x", err, sum)
		}
	}
}

func hexs(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

// shuffled returns a base and a target made of chunks of the base taken
// from all over it, with an edit in each: many ops with long seeks, the
// integers whose low bits the coder codes plainly.
func shuffled(seed uint64, size int) (base, target []byte) {
	r := rand.New(rand.NewPCG(seed, 3))
	base = make([]byte, size)
	for i := range base {
		base[i] = byte(r.IntN(16) * r.IntN(16))
	}
	for len(target) < size {
		p := r.IntN(size - 300)
		chunk := append([]byte{}, base[p:p+200+r.IntN(100)]...)
		chunk[r.IntN(len(chunk))] ^= 0x5a
		target = append(target, chunk...)
	}
	return base, target
}

// applyAlloc applies a patch and returns the bytes the apply allocated.
func applyAlloc(t *testing.T, pair func() ([]byte, []byte)) uint64 {
	t.Helper()
	base, target := pair()
	patch, err := Encode(base, target, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pr, br := bytes.NewReader(patch), bytes.NewReader(base)
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err = Apply(context.Background(), pr, br, io.Discard)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	return after.TotalAlloc - before.TotalAlloc
}

// TestApply_MemoryBounded counts what applies of small and large targets
// allocate: the decoder's state once, the same whatever the image size
// (nothing per block, per op or per bit), and within the 64 KiB the format
// promises a C applier.
func TestApply_MemoryBounded(t *testing.T) {
	if StateSize() > 64<<10 {
		t.Fatalf("StateSize %d bytes, the bound is 64 KiB", StateSize())
	}
	small := applyAlloc(t, func() ([]byte, []byte) { return firmwareLike(11, 64<<10) })
	for _, tc := range []struct {
		name string
		pair func() ([]byte, []byte)
	}{
		{"firmware-like 2 MiB", func() ([]byte, []byte) { return firmwareLike(11, 2<<20) }},
		{"shuffled 1 MiB", func() ([]byte, []byte) { return shuffled(12, 1<<20) }},
	} {
		got := applyAlloc(t, tc.pair)
		if got > 64<<10 || got > small+1024 {
			t.Errorf("%s: apply allocated %d bytes; a 64 KiB target %d; the bound is 64 KiB and no growth", tc.name, got, small)
		} else {
			t.Logf("%s: apply allocated %d bytes (64 KiB target: %d); StateSize %d", tc.name, got, small, StateSize())
		}
	}
}

// countingReader counts the bytes it has given.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestDecoder_ReadsNoFurtherThanPatchOffset: between two blocks the
// decoder has read exactly PatchOffset bytes of the patch, so a caller
// that feeds the patch from a download can checkpoint the download at
// the same byte as the decoder (the engine saves its hash states there).
func TestDecoder_ReadsNoFurtherThanPatchOffset(t *testing.T) {
	base, target := firmwareLike(5, 200_000)
	patch, err := Encode(base, target, Options{BlockLog: 12})
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReader{r: bytes.NewReader(patch)}
	d, err := NewDecoder(cr, bytes.NewReader(base), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if cr.n != d.PatchOffset() {
			t.Fatalf("before block %d: the decoder read %d bytes of the patch, PatchOffset is %d", i, cr.n, d.PatchOffset())
		}
		if err := d.Next(t.Context()); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if cr.n != int64(len(patch)) {
		t.Fatalf("the decoder read %d bytes of a %d-byte patch", cr.n, len(patch))
	}
}
