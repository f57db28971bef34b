package image

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
)

func TestSignVerify_RoundTripEveryKeyType(t *testing.T) {
	payload := testPayload(5000)
	for _, typ := range KeyTypes() {
		for _, opts := range []SignOptions{
			{Version: Version{1, 2, 3, 4}},
			{Version: Version{9, 0, 0, 1}, SecurityCounter: ptr[uint32](3), HeaderSize: 0x20},
			{Version: Version{0, 1, 0, 0}, FullPublicKey: true, Pad: true, SlotSize: 0x4000, Trailer: TrailerOptions{Align: 8}},
		} {
			t.Run(typ, func(t *testing.T) {
				key := testKey(t, typ)
				b := mustSign(t, payload, key, opts)
				for name, verify := range map[string]func([]byte, ...crypto.PublicKey) (*Image, error){
					"Verify": verifyBytes,
					"stream": func(b []byte, k ...crypto.PublicKey) (*Image, error) { return streamBytes(b, 4096, k...) },
				} {
					img, err := verify(b, key.Public())
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if img.Version != opts.Version || img.Signature != sigType(typ) || img.Signer == nil {
						t.Fatalf("%s: version %v signature %v signer %v", name, img.Version, img.Signature, img.Signer)
					}
					hs := opts.HeaderSize
					if hs == 0 {
						hs = DefaultHeaderSize
					}
					if int(img.Header.HeaderSize) != hs || int(img.Header.ImageSize) != len(payload) {
						t.Fatalf("%s: header %+v", name, img.Header)
					}
					if opts.SecurityCounter != nil && (!img.HasSecurityCounter || img.SecurityCounter != *opts.SecurityCounter) {
						t.Fatalf("%s: security counter %v %d", name, img.HasSecurityCounter, img.SecurityCounter)
					}
					if opts.FullPublicKey != (img.PublicKey != nil) || opts.FullPublicKey == (img.KeyHash != nil) {
						t.Fatalf("%s: key hash %x public key %x", name, img.KeyHash, img.PublicKey)
					}
					if !bytes.Equal(b[hs:hs+len(payload)], payload) {
						t.Fatalf("payload not at the header size")
					}
				}
				if opts.Pad {
					if len(b) != int(opts.SlotSize) {
						t.Fatalf("padded image %d bytes, slot %d", len(b), opts.SlotSize)
					}
					tr, ok, err := ReadTrailer(bytes.NewReader(b), int64(len(b)))
					if err != nil || !ok || tr.MaxAlign != 8 || tr.ImageOK != 0xff {
						t.Fatalf("trailer %+v %v %v", tr, ok, err)
					}
				}
			})
		}
	}
}

func TestVerify_HashOnly(t *testing.T) {
	b := mustSign(t, testPayload(100), nil, SignOptions{})
	img, err := verifyBytes(b)
	if err != nil || img.Signature != 0 || img.Signer != nil {
		t.Fatalf("%+v %v", img, err)
	}
	_, err = verifyBytes(b, testKey(t, KeyEd25519).Public())
	wantErr(t, err, ErrUnsigned)
	if !strings.Contains(err.Error(), "no signature TLV") {
		t.Fatalf("unhelpful: %v", err)
	}
	// A signed image verifies by hash alone when no key is given.
	if _, err := verifyBytes(mustSign(t, testPayload(100), testKey(t, KeyEd25519), SignOptions{})); err != nil {
		t.Fatal(err)
	}
}

func TestVerify_WrongKey(t *testing.T) {
	b := mustSign(t, testPayload(300), testKey(t, KeyEd25519), SignOptions{})
	other, err := GenerateKey(KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keys []crypto.PublicKey
		want error
		text string
	}{
		{"other ed25519", []crypto.PublicKey{other.Public()}, ErrUnknownKey, "matches none of the given keys"},
		{"other type", []crypto.PublicKey{testKey(t, KeyRSA2048).Public()}, ErrUnknownKey, "ED25519 with key hash"},
		{"right among others", []crypto.PublicKey{other.Public(), testKey(t, KeyECDSAP256).Public(), testKey(t, KeyEd25519).Public()}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := verifyBytes(b, tc.keys...)
			if tc.want == nil {
				if err != nil || img.Signer == nil {
					t.Fatalf("err %v", err)
				}
				return
			}
			wantErr(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("error %q does not say %q", err, tc.text)
			}
			if _, err := streamBytes(b, 100, tc.keys...); !errors.Is(err, tc.want) {
				t.Fatalf("stream: %v", err)
			}
		})
	}
}

// TestVerify_Tampered flips bytes in each part of a signed image and
// checks that the failure names the part that broke.
func TestVerify_Tampered(t *testing.T) {
	for _, typ := range KeyTypes() {
		t.Run(typ, func(t *testing.T) {
			key := testKey(t, typ)
			b := mustSign(t, testPayload(1000), key, SignOptions{SecurityCounter: ptr[uint32](1), Version: Version{1, 0, 0, 0}})
			img, err := verifyBytes(b)
			if err != nil {
				t.Fatal(err)
			}
			tlv := func(typ TLVType) TLV {
				v, ok := img.Find(typ)
				if !ok {
					t.Fatalf("no %v", typ)
				}
				return v
			}
			tests := []struct {
				name string
				off  int64
				want error
			}{
				{"header version", 20, ErrHashMismatch},
				{"header pad bytes", 0x100, ErrHashMismatch},
				{"payload first", int64(img.Header.HeaderSize), ErrHashMismatch},
				{"payload last", img.Header.PayloadEnd() - 1, ErrHashMismatch},
				{"security counter", tlv(TLVSecCnt).Offset, ErrHashMismatch},
				{"hash TLV", tlv(TLVSHA256).Offset + 5, ErrHashMismatch},
				{"key hash TLV", tlv(TLVKeyHash).Offset, ErrUnknownKey},
				{"signature first byte", tlv(sigType(typ)).Offset + 8, ErrBadSignature},
				{"signature last byte", tlv(sigType(typ)).Offset + int64(len(tlv(sigType(typ)).Value)) - 1, ErrBadSignature},
				{"header magic", 0, ErrMalformed},
				{"header image size", 13, ErrMalformed},
				{"TLV info magic", img.Header.HashedSize(), ErrMalformed},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					bad := bytes.Clone(b)
					bad[tc.off] ^= 0x01
					_, err := verifyBytes(bad, key.Public())
					if !errors.Is(err, tc.want) {
						// A flipped ECDSA DER byte may break the encoding rather
						// than the value: still a bad signature.
						t.Fatalf("Verify: %v, want %v", err, tc.want)
					}
					_, serr := streamBytes(bad, 333, key.Public())
					if !errors.Is(serr, tc.want) && !(tc.want == ErrMalformed && errors.Is(serr, ErrTruncated)) {
						t.Fatalf("stream: %v, want %v", serr, tc.want)
					}
				})
			}
		})
	}
}

// TestParse_TruncatedAtEveryLength cuts a small image at every length: each
// must fail with ErrTruncated (never a panic, never success).
func TestParse_TruncatedAtEveryLength(t *testing.T) {
	key := testKey(t, KeyEd25519)
	b := mustSign(t, testPayload(40), key, SignOptions{HeaderSize: 0x20, SecurityCounter: ptr[uint32](9)})
	for n := range len(b) {
		cut := b[:n]
		if _, err := Parse(bytes.NewReader(cut), int64(n)); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Parse(%d of %d bytes): %v", n, len(b), err)
		}
		if _, err := verifyBytes(cut, key.Public()); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Verify(%d of %d bytes): %v", n, len(b), err)
		}
		if _, err := streamBytes(cut, 3, key.Public()); !errors.Is(err, ErrTruncated) {
			t.Fatalf("stream(%d of %d bytes): %v", n, len(b), err)
		}
	}
	if _, err := verifyBytes(b, key.Public()); err != nil {
		t.Fatal(err)
	}
}

// buildImage assembles an image by hand, for structures Sign never makes.
func buildImage(h Header, payload []byte, prot, unprot []byte) []byte {
	b := make([]byte, h.HeaderSize)
	h.Magic = Magic
	h.ImageSize = uint32(len(payload))
	h.ProtectedTLVSize = uint16(len(prot))
	h.put(b)
	b = append(b, payload...)
	b = append(b, prot...)
	return append(b, unprot...)
}

func TestParse_Malformed(t *testing.T) {
	sha := appendTLV(nil, TLVSHA256, make([]byte, 32))
	secCnt := appendTLV(nil, TLVSecCnt, []byte{1, 0, 0, 0})
	hdr := Header{HeaderSize: 0x20}
	tests := []struct {
		name string
		img  []byte
		want error
		text string
	}{
		{"erased flash", bytes.Repeat([]byte{0xff}, 64), ErrNoImage, "erased flash"},
		{"raw binary", append([]byte{1, 2, 3, 4}, make([]byte, 60)...), ErrMalformed, "otaimg sign"},
		{"header size below 32", func() []byte { b := buildImage(hdr, nil, nil, appendInfo(sha, TLVInfoMagic)); b[8] = 16; return b }(), ErrMalformed, "ih_hdr_size 16"},
		{"no unprotected area", buildImage(hdr, []byte{1, 2, 3}, nil, make([]byte, 40)), ErrMalformed, "magic 0x0000, want 0x6907"},
		{"no hash", buildImage(hdr, nil, nil, appendInfo(nil, TLVInfoMagic)), ErrMalformed, "no SHA256 TLV"},
		{"two hashes", buildImage(hdr, nil, nil, appendInfo(append(bytes.Clone(sha), sha...), TLVInfoMagic)), ErrMalformed, "a second hash"},
		{"short hash", buildImage(hdr, nil, nil, appendInfo(appendTLV(nil, TLVSHA256, make([]byte, 20)), TLVInfoMagic)), ErrMalformed, "length 20, want 32"},
		{"TLV past area", buildImage(hdr, nil, nil, func() []byte {
			a := appendInfo(sha, TLVInfoMagic)
			binary.LittleEndian.PutUint16(a[6:], 40)
			return a
		}()), ErrMalformed, "past the area's end"},
		{"stray bytes", buildImage(hdr, nil, nil, appendInfo(append(bytes.Clone(sha), 1, 2), TLVInfoMagic)), ErrMalformed, "stray bytes"},
		{"area length below 4", buildImage(hdr, nil, nil, []byte{0x07, 0x69, 2, 0}), ErrMalformed, "smaller than its own info header"},
		{"protected area not announced", buildImage(hdr, nil, nil, append(appendInfo(secCnt, TLVProtectedInfoMagic), appendInfo(sha, TLVInfoMagic)...)), ErrMalformed, "ih_protect_tlv_size is 0"},
		{"protected size mismatch", func() []byte {
			p := appendInfo(secCnt, TLVProtectedInfoMagic)
			binary.LittleEndian.PutUint16(p[2:], 4)
			return buildImage(hdr, nil, append(p, 0, 0, 0, 0, 0, 0, 0, 0), appendInfo(sha, TLVInfoMagic))
		}(), ErrMalformed, "header's ih_protect_tlv_size 20"},
		{"security counter unprotected", buildImage(hdr, nil, nil, appendInfo(append(bytes.Clone(sha), secCnt...), TLVInfoMagic)), ErrMalformed, "where the hash does not cover it"},
		{"hash in protected area", buildImage(hdr, nil, appendInfo(sha, TLVProtectedInfoMagic), appendInfo(sha, TLVInfoMagic)), ErrMalformed, "in the protected TLV area"},
		{"two security counters", buildImage(hdr, nil, appendInfo(append(bytes.Clone(secCnt), secCnt...), TLVProtectedInfoMagic), appendInfo(sha, TLVInfoMagic)), ErrMalformed, "a second security counter"},
		{"security counter length", buildImage(hdr, nil, appendInfo(appendTLV(nil, TLVSecCnt, []byte{1}), TLVProtectedInfoMagic), appendInfo(sha, TLVInfoMagic)), ErrMalformed, "length 1, want 4"},
		{"payload past data", func() []byte { b := buildImage(hdr, nil, nil, appendInfo(sha, TLVInfoMagic)); b[14] = 1; return b }(), ErrTruncated, "ih_img_size 0x10000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(bytes.NewReader(tc.img), int64(len(tc.img)))
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Parse: %v; want %v saying %q", err, tc.want, tc.text)
			}
			_, serr := streamBytes(tc.img, 5)
			if serr == nil {
				t.Fatalf("stream accepted what Parse refused (%v)", err)
			}
		})
	}
}

func TestVerify_Unsupported(t *testing.T) {
	sha384 := appendTLV(nil, TLVSHA384, make([]byte, 48))
	b := buildImage(Header{HeaderSize: 0x20}, []byte{1}, nil, appendInfo(sha384, TLVInfoMagic))
	if _, err := Parse(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Parse should accept a SHA384 image: %v", err)
	}
	_, err := verifyBytes(b)
	wantErr(t, err, ErrUnsupported)

	enc := mustSign(t, []byte{1, 2, 3}, nil, SignOptions{})
	enc[16] |= FlagEncryptedAES128
	// Encrypted images verify with the device's private key (see
	// encrypt_test.go); without one they are refused as encrypted.
	_, err = verifyBytes(enc)
	wantErr(t, err, ErrEncrypted)
	_, err = streamBytes(enc, 10)
	wantErr(t, err, ErrEncrypted)
}

func TestSign_Refusals(t *testing.T) {
	key := testKey(t, KeyEd25519)
	tests := []struct {
		name    string
		payload []byte
		opts    SignOptions
		text    string
	}{
		{"header too small", []byte{1}, SignOptions{HeaderSize: 16}, "header size 0x10"},
		{"no header room", []byte{1, 2, 3}, SignOptions{HeaderIncluded: true, HeaderSize: 0x20}, "--pad-header"},
		{"header room not zero", append(make([]byte, 0x1f), 1, 5), SignOptions{HeaderIncluded: true, HeaderSize: 0x20}, "zero bytes"},
		{"pad without slot", []byte{1}, SignOptions{Pad: true}, "--slot-size"},
		{"does not fit", make([]byte, 0x1000), SignOptions{SlotSize: 0x1000}, "exceed the slot size 0x1000"},
		{"bad align", []byte{1}, SignOptions{Trailer: TrailerOptions{Align: 3}}, "align 3"},
		{"max align below align", []byte{1}, SignOptions{Trailer: TrailerOptions{Align: 32, MaxAlign: 16}}, "below align 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Sign(tc.payload, key, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("err %v, want it to say %q", err, tc.text)
			}
		})
	}
}

func TestTrailerSize(t *testing.T) {
	tests := []struct {
		o    TrailerOptions
		want int
	}{
		{TrailerOptions{}, 128*3 + 8*4 + 16},
		{TrailerOptions{Align: 4}, 128*3*4 + 8*4 + 16},
		{TrailerOptions{Align: 8, MaxAlign: 16}, 128*3*8 + 16*4 + 16},
		{TrailerOptions{Align: 32}, 128*3*32 + 32*4 + 32},
		{TrailerOptions{OverwriteOnly: true}, 8*2 + 16},
		{TrailerOptions{MaxSectors: 16, Align: 2}, 16*3*2 + 8*4 + 16},
	}
	for _, tc := range tests {
		if got, err := TrailerSize(tc.o); err != nil || got != tc.want {
			t.Errorf("TrailerSize(%+v) = %d, %v; want %d", tc.o, got, err, tc.want)
		}
	}
}

func TestReadTrailer_ImgtoolImages(t *testing.T) {
	tests := []struct {
		file string
		want Trailer
	}{
		{"ed25519-pad.img", Trailer{MaxAlign: 8, ImageOK: 0xff, CopyDone: 0xff, SwapInfo: 0xff, SwapSize: 0xffffffff}},
		{"ed25519-confirm.img", Trailer{MaxAlign: 16, ImageOK: 0x01, CopyDone: 0xff, SwapInfo: 0xff, SwapSize: 0xffffffff}},
	}
	for _, tc := range tests {
		b := readTestdata(t, "imgtool", tc.file)
		got, ok, err := ReadTrailer(bytes.NewReader(b), int64(len(b)))
		if err != nil || !ok || got != tc.want {
			t.Errorf("%s: %+v %v %v, want %+v", tc.file, got, ok, err, tc.want)
		}
	}
	b := readTestdata(t, "imgtool", "ed25519.img")
	if _, ok, err := ReadTrailer(bytes.NewReader(b), int64(len(b))); ok || err != nil {
		t.Errorf("unpadded image has a trailer: %v %v", ok, err)
	}
}

func TestCheckAlgorithm_NamesBoth(t *testing.T) {
	ed, err := GenerateKey(KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := GenerateKey(KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Sign([]byte("firmware"), ed, SignOptions{Version: Version{Major: 1}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Verify(bytes.NewReader(b), int64(len(b)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.CheckAlgorithm(KeyEd25519); err != nil {
		t.Errorf("ed25519 image against ed25519: %v", err)
	}
	err = img.CheckAlgorithm(KeyECDSAP256)
	if !errors.Is(err, ErrAlgorithm) || !strings.Contains(err.Error(), "signed with ed25519, not ecdsa-p256") {
		t.Errorf("ed25519 image against ecdsa-p256: %v", err)
	}
	keys := KeysOfType([]crypto.PublicKey{ed.Public(), ec.Public(), ec}, KeyECDSAP256)
	if len(keys) != 2 {
		t.Errorf("KeysOfType kept %d keys, want the 2 ecdsa-p256 ones", len(keys))
	}
}

// A port keeps the parsed image of each slot for as long as it runs, so a
// parsed image must not keep alive the 64 KiB Parse reads the TLV areas
// into (its TLV values point into that buffer). 64 images parsed from slots
// much larger than they are hold less than 8 KiB each once collected.
func TestParse_KeepsOnlyTheTLVAreas(t *testing.T) {
	b := mustSign(t, testPayload(100), testKey(t, KeyECDSAP256), SignOptions{})
	slot := append(b, bytes.Repeat([]byte{0xff}, 256<<10)...)
	const n = 64
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	imgs := make([]*Image, n)
	for i := range imgs {
		img, err := Parse(bytes.NewReader(slot), int64(len(slot)))
		if err != nil {
			t.Fatal(err)
		}
		imgs[i] = img
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if kept := int64(after.HeapAlloc) - int64(before.HeapAlloc); kept > n*8<<10 {
		t.Errorf("%d parsed images keep %d bytes of heap (%d each), want under 8 KiB each", n, kept, kept/n)
	}
	runtime.KeepAlive(imgs)
}
