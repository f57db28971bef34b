package image

import (
	"bytes"
	"testing"
)

// compressedCases are imgtool's compressed images (testdata/imgtool/make.sh)
// and, where make.sh also signed the same input without compression, that
// plain image: ed25519 signatures are deterministic, so the image the
// bootloader rebuilds must be it byte for byte.
var compressedCases = []struct {
	file   string
	key    string
	plain  string
	thumb  bool
	secCnt bool
}{
	{"ed25519-lzma2.img", KeyEd25519, "ed25519-thumb.img", false, false},
	{"ed25519-lzma2armthumb.img", KeyEd25519, "ed25519-thumb-sec.img", true, true},
	{"ecdsa-p256-lzma2armthumb-hdr.img", KeyECDSAP256, "", true, false},
	{"unsigned-lzma2.img", "", "", false, false},
}

func TestImgtoolCompressed_VerifyAndDecompress(t *testing.T) {
	for _, tc := range compressedCases {
		t.Run(tc.file, func(t *testing.T) {
			b, keys := imgtoolImage(t, tc.file, tc.key)
			img, err := verifyBytes(b, keys...)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			c := img.Compressed
			if c == nil || c.ARMThumb != tc.thumb || c.Size != 12288 || img.HasSecurityCounter != tc.secCnt {
				t.Fatalf("Compressed %+v, security counter %v", c, img.HasSecurityCounter)
			}
			if _, err := streamBytes(b, 100, keys...); err != nil {
				t.Fatalf("stream: %v", err)
			}
			var out bytes.Buffer
			plain, err := Decompress(bytes.NewReader(b), img, &out)
			if err != nil {
				t.Fatalf("Decompress: %v", err)
			}
			if int64(out.Len()) != plain.TotalSize || !bytes.Equal(plain.Hash, c.SHA) {
				t.Fatalf("decompressed %d bytes, TotalSize %d, hash %x want %x", out.Len(), plain.TotalSize, plain.Hash, c.SHA)
			}
			if _, err := verifyBytes(out.Bytes(), keys...); err != nil {
				t.Fatalf("the decompressed image does not verify: %v", err)
			}
			if want := readTestdata(t, "imgtool", "payload-thumb.bin"); !bytes.Equal(out.Bytes()[0x200:0x200+len(want)], want) {
				t.Fatal("decompressed payload differs from the input")
			}
			if tc.plain != "" {
				want := readTestdata(t, "imgtool", tc.plain)
				if !bytes.Equal(out.Bytes(), want) {
					t.Fatalf("decompressed image differs from imgtool's plain %s", tc.plain)
				}
			}
		})
	}
}
