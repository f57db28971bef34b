package image

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
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

// thumbPayload is imgtool/payload-thumb.bin: Thumb-like code with BL calls.
func thumbPayload(t testing.TB) []byte { return readTestdata(t, "imgtool", "payload-thumb.bin") }

// TestSign_Compressed signs with each compression and key type and checks
// the image: flags, that it is smaller, that it verifies (outer and
// decompressed) and that it decompresses to the image Sign makes without
// compression (byte for byte where the signature is deterministic).
func TestSign_Compressed(t *testing.T) {
	for _, method := range []string{CompressionLZMA2, CompressionLZMA2ARMThumb} {
		for _, kt := range []string{"", KeyEd25519, KeyECDSAP256, KeyRSA2048} {
			for _, hdrIncluded := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/hdr=%v", method, kt, hdrIncluded), func(t *testing.T) {
					var key crypto.Signer
					var keys []crypto.PublicKey
					if kt != "" {
						key = testKey(t, kt)
						keys = append(keys, key.Public())
					}
					payload := thumbPayload(t)
					if hdrIncluded {
						payload = append(make([]byte, DefaultHeaderSize), payload...)
					}
					opts := SignOptions{Version: Version{1, 3, 0, 0}, SecurityCounter: ptr[uint32](3), HeaderIncluded: hdrIncluded, Compression: method}
					b := mustSign(t, payload, key, opts)
					img, err := verifyBytes(b, keys...)
					if err != nil {
						t.Fatalf("Verify: %v", err)
					}
					wantFlags := uint32(FlagCompressedLZMA2)
					if method == CompressionLZMA2ARMThumb {
						wantFlags |= FlagCompressedARMThm
					}
					if img.Header.Flags != wantFlags || img.Compressed == nil || img.Compressed.Method() != method {
						t.Fatalf("flags %s", img.Header.FlagString())
					}
					if hdr := b[img.Header.HeaderSize : img.Header.HeaderSize+2]; !bytes.Equal(hdr, []byte{0x0a, 0x66}) {
						t.Errorf("LZMA2 header % x, want imgtool's 0a 66", hdr)
					}
					var out bytes.Buffer
					if _, err := Decompress(bytes.NewReader(b), img, &out); err != nil {
						t.Fatal(err)
					}
					opts.Compression = CompressionNone
					plain := mustSign(t, payload, key, opts)
					if len(b) >= len(plain)*3/5 {
						t.Errorf("compressed image %d bytes, plain %d: not even 40 %% smaller", len(b), len(plain))
					}
					if kt == KeyEd25519 || kt == "" {
						if !bytes.Equal(out.Bytes(), plain) {
							t.Fatalf("decompressed image differs from the plain one at byte %d", firstDiff(out.Bytes(), plain))
						}
					} else {
						compareButSignature(t, out.Bytes(), plain)
					}
				})
			}
		}
	}
}

// TestSign_CompressionFallsBack: a payload that does not compress gives
// the plain image, as imgtool's does, padded when asked.
func TestSign_CompressionFallsBack(t *testing.T) {
	noise := make([]byte, 4000)
	x := uint32(1)
	for i := range noise {
		x = x*1664525 + 1013904223
		noise[i] = byte(x >> 24)
	}
	key := testKey(t, KeyEd25519)
	for _, pad := range []bool{false, true} {
		opts := SignOptions{Version: Version{1, 0, 0, 0}, Pad: pad, SlotSize: 0x2000}
		plain := mustSign(t, noise, key, opts)
		opts.Compression = CompressionLZMA2ARMThumb
		if got := mustSign(t, noise, key, opts); !bytes.Equal(got, plain) {
			t.Fatalf("pad %v: compressed sign of noise differs from the plain image", pad)
		}
	}
	if _, err := Sign(noise, key, SignOptions{Compression: "zstd"}); err == nil || !strings.Contains(err.Error(), "lzma2armthumb") {
		t.Fatalf("unknown compression: %v", err)
	}
}

// resign recomputes the hash of an ed25519 image after a change to its
// hashed region and signs it again with key, as a holder of the signing key
// could: the outer checks pass, only the DECOMP_* checks can catch it.
func resign(t *testing.T, b []byte, key crypto.Signer) []byte {
	t.Helper()
	img, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(b[:img.Header.HashedSize()])
	sig, err := key.Sign(nil, d[:], crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range img.TLVs {
		switch tl.Type {
		case TLVSHA256:
			copy(b[tl.Offset:], d[:])
		case TLVEd25519:
			copy(b[tl.Offset:], sig)
		}
	}
	return b
}

// TestVerify_CompressedRefusals: each broken part of a compressed image is
// refused with the error that names it, also when the outer signature is
// good (re-signed after the change).
func TestVerify_CompressedRefusals(t *testing.T) {
	key := testKey(t, KeyEd25519)
	good := mustSign(t, thumbPayload(t), key, SignOptions{Version: Version{1, 0, 0, 0}, Compression: CompressionLZMA2ARMThumb})
	img, err := verifyBytes(good, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	find := func(tt TLVType) int64 {
		tl, ok := img.Find(tt)
		if !ok {
			t.Fatalf("no %s", tt)
		}
		return tl.Offset
	}
	payload := int64(img.Header.HeaderSize)
	cases := []struct {
		name   string
		change func(b []byte)
		resign bool
		want   error
		text   string
	}{
		{"payload byte", func(b []byte) { b[payload+40] ^= 1 }, false, ErrHashMismatch, "image hash"},
		{"DECOMP_SHA", func(b []byte) { b[find(TLVDecompSHA)] ^= 1 }, false, ErrHashMismatch, "image hash"},
		{"DECOMP_SHA re-signed", func(b []byte) { b[find(TLVDecompSHA)] ^= 1 }, true, ErrHashMismatch, "decompressed image"},
		{"DECOMP_SIGNATURE re-signed", func(b []byte) { b[find(TLVDecompSignature)] ^= 1 }, true, ErrBadSignature, "decompressed image"},
		{"DECOMP_SIZE re-signed", func(b []byte) { b[find(TLVDecompSize)]++ }, true, ErrMalformed, "DECOMP_SIZE"},
		{"LZMA2 stream re-signed", func(b []byte) { b[payload+40] ^= 0x55 }, true, ErrMalformed, "LZMA2"},
		{"dictionary re-signed", func(b []byte) { b[payload] = 0x30 }, true, ErrMalformed, "dictionary size"},
		{"LZMA1 flag", func(b []byte) { b[17] |= 0x02 }, false, ErrMalformed, "both LZMA1 and LZMA2"},
		{"thumb without LZMA2", func(b []byte) { b[17] &^= 0x04 }, false, ErrMalformed, "ARM-Thumb filter without"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(good)
			tc.change(b)
			if tc.resign {
				b = resign(t, b, key)
			}
			_, err := verifyBytes(b, key.Public())
			wantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not say %q", err, tc.text)
			}
		})
	}
}

// FuzzDecompress feeds arbitrary bytes to Parse and, for what parses as a
// compressed image, to Decompress: no panic, every error a sentinel, and
// the output no longer than the rebuilt image. Seeds: imgtool's compressed
// images.
func FuzzDecompress(f *testing.F) {
	for _, tc := range compressedCases {
		f.Add(readTestdata(f, "imgtool", tc.file))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := Parse(bytes.NewReader(b), int64(len(b)))
		// A few bytes of LZMA2 can claim megabytes of output: bound the
		// work per input (Decompress itself stops at DECOMP_SIZE).
		if err != nil || img.Compressed == nil || img.Compressed.Size > 256<<10 {
			return
		}
		var n countWriter
		plain, err := Decompress(bytes.NewReader(b), img, &n)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decompress error without a sentinel: %v", err)
			}
			return
		}
		if int64(n) != plain.TotalSize {
			t.Fatalf("wrote %d bytes, the rebuilt image is %d", n, plain.TotalSize)
		}
	})
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
