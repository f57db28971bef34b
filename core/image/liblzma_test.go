package image

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// liblzmaDecode is what MCUboot's imgtool compresses with, Python's lzma
// (liblzma), reading the raw LZMA2 stream of an image's payload with
// imgtool's filters.
const liblzmaDecode = `import lzma, sys
b = open(sys.argv[1], 'rb').read()[int(sys.argv[2]):int(sys.argv[3])]
f = [{"id": lzma.FILTER_LZMA2, "dict_size": 131072, "lc": 3, "lp": 1, "pb": 2}]
if sys.argv[4] == "lzma2armthumb":
    f.insert(0, {"id": lzma.FILTER_ARMTHUMB})
sys.stdout.buffer.write(lzma.decompress(b[2:], format=lzma.FORMAT_RAW, filters=f))
`

// TestCompressed_LiblzmaDecodesOurPayload: liblzma, which imgtool and the
// tools around MCUboot use, decodes the payload of an image this package
// compressed, with and without the ARM Thumb filter, to the plain payload.
// It needs python3 (its standard library has lzma): it skips without one on
// a developer's machine and fails in CI (CI=true), which installs it.
func TestCompressed_LiblzmaDecodesOurPayload(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("python3 is missing and CI=true: install it (apt-get install python3; .ci/run does)")
		}
		t.Skip("python3 not found: liblzma cannot be asked")
	}
	payload := thumbPayload(t)
	key, err := GenerateKey(KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{CompressionLZMA2, CompressionLZMA2ARMThumb} {
		t.Run(method, func(t *testing.T) {
			img, err := Sign(payload, key, SignOptions{Version: Version{1, 0, 0, 0}, Compression: method})
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := Parse(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Compressed == nil {
				t.Fatal("the image is not compressed")
			}
			file := filepath.Join(t.TempDir(), "c.img")
			if err := os.WriteFile(file, img, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(py, "-c", liblzmaDecode, file,
				fmt.Sprint(parsed.Header.HeaderSize), fmt.Sprint(parsed.Header.PayloadEnd()), method).Output()
			if err != nil {
				t.Fatalf("liblzma on our payload: %v", err)
			}
			if !bytes.Equal(out, payload) {
				t.Fatalf("liblzma decodes our payload to %d bytes other than the %d of the input", len(out), len(payload))
			}
		})
	}
}
