package image

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encKey loads a decryption key from testdata/keys.
func encKey(t testing.TB, name string) any {
	t.Helper()
	k, err := LoadDecryptionKey(readTestdata(t, "keys", name+".pem"))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return k
}

// encPub loads an encryption key from testdata/keys.
func encPub(t testing.TB, name string) any {
	t.Helper()
	k, err := LoadEncryptionKey(readTestdata(t, "keys", name+".pem"))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	return k
}

// imgtoolEncCases are the encrypted images testdata/imgtool/make.sh made
// with imgtool -E.
var imgtoolEncCases = []struct {
	file, sig, dec string
	keyTLV         TLVType
	keyLen         int
	compressed     bool
}{
	{"ed25519-enc-x25519.img", KeyEd25519, "enc-x25519", TLVEncX25519, 16, false},
	{"ed25519-enc-x25519-sha512-aes256.img", KeyEd25519, "enc-x25519", TLVEncX25519SHA512, 32, false},
	{"ecdsa-p256-enc-ec256.img", KeyECDSAP256, "ecdsa-p256", TLVEncEC256, 16, false},
	{"ecdsa-p256-enc-ec256-aes256.img", KeyECDSAP256, "ecdsa-p256", TLVEncEC256, 32, false},
	{"rsa-2048-enc-rsa.img", KeyRSA2048, "rsa-2048", TLVEncRSA2048, 16, false},
	{"ed25519-enc-x25519-pad.img", KeyEd25519, "enc-x25519", TLVEncX25519, 16, false},
	// A header size that is no multiple of 16: imgtool pads header and
	// payload together to the AES block.
	{"ed25519-enc-x25519-h28.img", KeyEd25519, "enc-x25519", TLVEncX25519, 16, false},
	{"ed25519-lzma2armthumb-enc-x25519.img", KeyEd25519, "enc-x25519", TLVEncX25519, 16, true},
}

// TestImgtoolEncrypted_Verify checks that every image imgtool encrypted
// verifies once decrypted with the device's key, and not without it.
func TestImgtoolEncrypted_Verify(t *testing.T) {
	for _, tc := range imgtoolEncCases {
		t.Run(tc.file, func(t *testing.T) {
			b, keys := imgtoolImage(t, tc.file, tc.sig)
			img, err := VerifyWith(bytes.NewReader(b), int64(len(b)), VerifyOptions{Keys: keys, DecryptKey: encKey(t, tc.dec)})
			if err != nil {
				t.Fatalf("VerifyWith: %v", err)
			}
			e := img.Encryption
			if e == nil || e.KeyTLV != tc.keyTLV || e.KeyLen != tc.keyLen || (img.Compressed != nil) != tc.compressed {
				t.Fatalf("encryption %+v compressed %v, want %s AES-%d", e, img.Compressed != nil, tc.keyTLV, tc.keyLen*8)
			}
			if _, err := verifyBytes(b, keys...); !errors.Is(err, ErrEncrypted) {
				t.Errorf("Verify without the key: %v, want ErrEncrypted", err)
			}
		})
	}
}

// TestSignEncrypted_MatchesImgtool: an image Sign encrypts as imgtool -E
// does carries, apart from the random key and what it encrypts, imgtool's
// image: same header (flags, padded size), same hash over the same plain
// payload, same TLV types in the same order; ed25519 signatures are equal.
func TestSignEncrypted_MatchesImgtool(t *testing.T) {
	for _, tc := range imgtoolEncCases {
		t.Run(tc.file, func(t *testing.T) {
			want, keys := imgtoolImage(t, tc.file, tc.sig)
			pub := encPub(t, strings.TrimSuffix(tc.dec, ".pem"))
			opts := SignOptions{Version: Version{1, 4, 0, 0}, SlotSize: 0x10000, Encrypt: pub,
				EncryptKeyLen: tc.keyLen * 8, HMACSHA512: tc.keyTLV == TLVEncX25519SHA512}
			input := "payload.bin"
			switch tc.file {
			case "ecdsa-p256-enc-ec256.img":
				opts.SecurityCounter = ptr[uint32](9)
			case "ed25519-enc-x25519-h28.img":
				opts.HeaderSize = 0x28
			case "ed25519-enc-x25519-pad.img":
				opts.SlotSize, opts.Pad, opts.Trailer = 0x2000, true, TrailerOptions{Align: 4}
			case "ed25519-lzma2armthumb-enc-x25519.img":
				opts.Compression, input = CompressionLZMA2ARMThumb, "payload-thumb.bin"
			}
			got := mustSign(t, readTestdata(t, "imgtool", input), testKey(t, tc.sig), opts)
			dk := encKey(t, tc.dec)
			gi, err := VerifyWith(bytes.NewReader(got), int64(len(got)), VerifyOptions{Keys: keys, DecryptKey: dk})
			if err != nil {
				t.Fatalf("our image: %v", err)
			}
			wi, _ := Parse(bytes.NewReader(want), int64(len(want)))
			if tc.compressed {
				// Our LZMA2 encoder is not liblzma: the compressed streams
				// differ, the plain image they stand for must not.
				for _, typ := range []TLVType{TLVDecompSize, TLVDecompSHA, TLVDecompSignature} {
					g, _ := gi.Find(typ)
					w, _ := wi.Find(typ)
					if !bytes.Equal(g.Value, w.Value) {
						t.Errorf("TLV %v = %x, imgtool's %x", typ, g.Value, w.Value)
					}
				}
				return
			}
			if gi.Header != wi.Header {
				t.Fatalf("header %+v, imgtool's %+v", gi.Header, wi.Header)
			}
			gp, wp := decryptAll(t, got, dk), decryptAll(t, want, dk)
			if h := gi.Header.HashedSize(); !bytes.Equal(gp[:h], wp[:h]) {
				t.Fatalf("decrypted hashed region differs from imgtool's at 0x%x", firstDiff(gp, wp))
			}
			if len(gi.TLVs) != len(wi.TLVs) {
				t.Fatalf("%d TLVs, imgtool %d", len(gi.TLVs), len(wi.TLVs))
			}
			for i := range gi.TLVs {
				g, w := gi.TLVs[i], wi.TLVs[i]
				if g.Type != w.Type || (!g.Type.IsSignature() && len(g.Value) != len(w.Value)) {
					t.Fatalf("TLV %d is %v (%d bytes), imgtool's %v (%d)", i, g.Type, len(g.Value), w.Type, len(w.Value))
				}
				if (g.Type.isHash() || tc.sig == KeyEd25519 && g.Type.IsSignature()) && !bytes.Equal(g.Value, w.Value) {
					t.Errorf("TLV %v differs from imgtool's", g.Type)
				}
			}
			if tc.file == "ed25519-enc-x25519-pad.img" && !bytes.Equal(got[gi.TotalSize:], want[gi.TotalSize:]) {
				t.Errorf("padding and trailer differ from imgtool's")
			}
		})
	}
}

// decryptAll returns b with the payload of the image in it decrypted.
func decryptAll(t *testing.T, b []byte, dk any) []byte {
	t.Helper()
	img, err := Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := DecryptingReader(bytes.NewReader(b), img, dk)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(b))
	if _, err := r.ReadAt(out, 0); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEncrypted_RoundTrip signs, encrypts and verifies with every key type,
// both AES key sizes and with compression, by Verify and by the stream
// verifier fed the decrypted payload.
func TestEncrypted_RoundTrip(t *testing.T) {
	kek := KEK(bytes.Repeat([]byte{0x5a}, 16))
	cases := []struct {
		name   string
		pub    any
		dec    any
		want   TLVType
		sha512 bool
	}{
		{"x25519", encPub(t, "enc-x25519.pub"), encKey(t, "enc-x25519"), TLVEncX25519, false},
		{"x25519-sha512", encPub(t, "enc-x25519.pub"), encKey(t, "enc-x25519"), TLVEncX25519SHA512, true},
		{"p256", encPub(t, "ecdsa-p256.pub"), encKey(t, "ecdsa-p256"), TLVEncEC256, false},
		{"rsa-2048", encPub(t, "rsa-2048.pub"), encKey(t, "rsa-2048"), TLVEncRSA2048, false},
		{"kw", kek, kek, TLVEncKW, false},
	}
	payload := thumbPayload(t)
	key := testKey(t, KeyEd25519)
	for _, tc := range cases {
		for _, bits := range []int{128, 256} {
			for _, comp := range []string{CompressionNone, CompressionLZMA2} {
				t.Run(fmt.Sprintf("%s-%d-%s", tc.name, bits, comp), func(t *testing.T) {
					b := mustSign(t, payload, key, SignOptions{Version: Version{1, 0, 0, 0}, Encrypt: tc.pub, EncryptKeyLen: bits, HMACSHA512: tc.sha512, Compression: comp})
					img, err := VerifyWith(bytes.NewReader(b), int64(len(b)), VerifyOptions{Keys: []crypto.PublicKey{key.Public()}, DecryptKey: tc.dec})
					if err != nil {
						t.Fatal(err)
					}
					if img.Encryption.KeyTLV != tc.want || img.Encryption.KeyLen*8 != bits || (img.Compressed != nil) != (comp != "") {
						t.Fatalf("encryption %v AES-%d compressed %v", img.Encryption.KeyTLV, img.Encryption.KeyLen*8, img.Compressed != nil)
					}
					if bytes.Contains(b, payload[1000:1064]) {
						t.Fatal("the image carries the plain payload")
					}
					// The stream verifier, fed the payload decrypted.
					plain := decryptAll(t, b, tc.dec)
					v, _ := NewStreamVerifier([]crypto.PublicKey{key.Public()})
					v.SetDecrypted(img.Encryption)
					v.Write(plain)
					if _, err := v.Finish(); err != nil {
						t.Fatalf("stream: %v", err)
					}
				})
			}
		}
	}
}

// TestEncrypted_Refusals: a changed payload fails the hash, another key
// fails to unwrap with a message naming the TLV and the key, and a stream
// fed the ciphertext says the image is encrypted.
func TestEncrypted_Refusals(t *testing.T) {
	key := testKey(t, KeyECDSAP256)
	keys := []crypto.PublicKey{key.Public()}
	b := mustSign(t, testPayload(3000), key, SignOptions{Version: Version{1, 0, 0, 0}, Encrypt: encPub(t, "ecdsa-p256.pub")})
	dk := encKey(t, "ecdsa-p256")
	verify := func(b []byte, dk any) error {
		_, err := VerifyWith(bytes.NewReader(b), int64(len(b)), VerifyOptions{Keys: keys, DecryptKey: dk})
		return err
	}
	if err := verify(b, dk); err != nil {
		t.Fatal(err)
	}
	t.Run("tampered payload", func(t *testing.T) {
		c := bytes.Clone(b)
		c[0x300] ^= 1
		wantErr(t, verify(c, dk), ErrHashMismatch)
	})
	t.Run("another P-256 key", func(t *testing.T) {
		other, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		err = verify(b, other)
		wantErr(t, err, ErrDecryptKey)
		if !strings.Contains(err.Error(), "ENC_EC256 TLV does not unwrap with the P-256 private key") {
			t.Errorf("message %q does not name the TLV and the key", err)
		}
	})
	t.Run("an X25519 key", func(t *testing.T) {
		wantErr(t, verify(b, encKey(t, "enc-x25519")), ErrDecryptKey)
	})
	t.Run("changed key TLV", func(t *testing.T) {
		c := bytes.Clone(b)
		c[len(c)-3] ^= 1 // the wrapped key ends the image
		wantErr(t, verify(c, dk), ErrDecryptKey)
	})
	t.Run("no key", func(t *testing.T) {
		wantErr(t, verify(b, nil), ErrEncrypted)
		_, err := streamBytes(b, 100, keys...)
		wantErr(t, err, ErrEncrypted)
	})
	t.Run("flag without key TLV", func(t *testing.T) {
		plain := mustSign(t, testPayload(3000), key, SignOptions{Version: Version{1, 0, 0, 0}})
		plain[16] |= FlagEncryptedAES128
		_, err := Parse(bytes.NewReader(plain), int64(len(plain)))
		if err != nil {
			t.Fatal(err)
		}
		wantErr(t, verify(plain, dk), ErrEncrypted)
	})
}

// TestAESKeyWrap_RFC3394 checks the key wrap against RFC 3394's test
// vector 4.1 (128-bit KEK, 128-bit key).
func TestAESKeyWrap_RFC3394(t *testing.T) {
	kek, _ := hex.DecodeString("000102030405060708090A0B0C0D0E0F")
	key, _ := hex.DecodeString("00112233445566778899AABBCCDDEEFF")
	want, _ := hex.DecodeString("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
	got, err := aesKeyWrap(kek, key)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("wrap %x %v, want %x", got, err, want)
	}
	back, err := aesKeyUnwrap(kek, got)
	if err != nil || !bytes.Equal(back, key) {
		t.Fatalf("unwrap %x %v", back, err)
	}
	got[5] ^= 1
	if _, err := aesKeyUnwrap(kek, got); err == nil {
		t.Fatal("a changed wrapped key unwraps")
	}
}

// TestSign_GoldenEncrypted: the encrypted images Sign makes, decrypted,
// are the golden ones decrypted, byte for byte up to the key TLV's value
// (the AES key and the ephemeral key are random at each signing); the
// golden images still decrypt and verify. go test -run
// TestSign_GoldenEncrypted -update rewrites them.
func TestSign_GoldenEncrypted(t *testing.T) {
	pub, dk := encPub(t, "enc-x25519.pub"), encKey(t, "enc-x25519")
	key := testKey(t, KeyEd25519)
	keys := []crypto.PublicKey{key.Public()}
	for _, tc := range []struct {
		name string
		opts SignOptions
	}{
		{"ed25519-enc-x25519", SignOptions{Version: Version{1, 4, 0, 0}, SecurityCounter: ptr[uint32](4), Encrypt: pub}},
		{"ed25519-enc-x25519-aes256-lzma2armthumb", SignOptions{Version: Version{1, 4, 0, 0}, Encrypt: pub, EncryptKeyLen: 256, Compression: CompressionLZMA2ARMThumb}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := testPayload(1500)
			if tc.opts.Compression != "" {
				payload = readTestdata(t, "imgtool", "payload-thumb.bin")
			}
			got := mustSign(t, payload, key, tc.opts)
			path := filepath.Join("testdata", "golden", tc.name+".img")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestSign_GoldenEncrypted -update)", err)
			}
			img, err := VerifyWith(bytes.NewReader(want), int64(len(want)), VerifyOptions{Keys: keys, DecryptKey: dk})
			if err != nil {
				t.Fatalf("golden image no longer verifies: %v", err)
			}
			kt, _ := img.Find(img.Encryption.KeyTLV)
			g, w := decryptAll(t, got, dk), decryptAll(t, want, dk)
			if len(g) != len(w) || !bytes.Equal(g[:kt.Offset], w[:kt.Offset]) {
				t.Fatalf("decrypted, differs from %s at 0x%x (len %d vs %d); run with -update if the change is intended", path, firstDiff(g, w), len(g), len(w))
			}
		})
	}
}
