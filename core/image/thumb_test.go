package image

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// thumbGolden regenerates testdata/thumb/armthumb.bin with Python's lzma
// module, the reference for imgtool's filter: Python applies FILTER_ARMTHUMB
// only inside a chain that ends in LZMA2, so the script compresses with
// both and decompresses with LZMA2 alone, which leaves the filtered bytes.
const thumbGolden = `import lzma, sys
d = open(sys.argv[1], 'rb').read()
lz = {"id": lzma.FILTER_LZMA2, "preset": 6}
c = lzma.compress(d, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_ARMTHUMB}, lz])
open(sys.argv[2], 'wb').write(lzma.decompress(c, format=lzma.FORMAT_RAW, filters=[lz]))
`

// TestARMThumb_MatchesLiblzma checks the filter against liblzma's output on
// a Thumb-like payload (imgtool/payload-thumb.bin with 3 bytes that start a
// BL pair the stream never finishes), both ways, and the decoder at every
// read size that splits the stream differently.
func TestARMThumb_MatchesLiblzma(t *testing.T) {
	in := filepath.Join("testdata", "thumb", "input.bin")
	golden := filepath.Join("testdata", "thumb", "armthumb.bin")
	if *update {
		py, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("-update needs python3 for the reference filter")
		}
		if out, err := exec.Command(py, "-c", thumbGolden, in, golden).CombinedOutput(); err != nil {
			t.Fatalf("python3: %v\n%s", err, out)
		}
	}
	plain, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(plain, want) {
		t.Fatal("the golden file is the input: the filter would change nothing")
	}
	enc := bytes.Clone(plain)
	thumbEncode(enc)
	if !bytes.Equal(enc, want) {
		i := firstDiff(enc, want)
		t.Fatalf("encoded differs from liblzma at byte %d", i)
	}
	for _, size := range []int{1, 2, 3, 5, 4096, 1 << 20} {
		var r io.Reader = bytes.NewReader(want)
		if size < len(want) {
			r = iotest.OneByteReader(r)
			if size > 1 {
				r = &chunkReader{b: want, n: size}
			}
		}
		got, err := io.ReadAll(newThumbDecoder(r))
		if err != nil {
			t.Fatalf("read size %d: %v", size, err)
		}
		if !bytes.Equal(got, plain) {
			i := firstDiff(got, plain)
			t.Fatalf("read size %d: decoded differs from the input at byte %d", size, i)
		}
	}
}

// chunkReader returns b n bytes at a time.
type chunkReader struct {
	b []byte
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), c.n)], c.b)
	c.b = c.b[k:]
	return k, nil
}
