package image

import (
	"bytes"
	"crypto"
	"fmt"
	"testing"
)

// imgtoolCases are the images testdata/imgtool/make.sh made with MCUboot's
// imgtool, with the SignOptions that ask Sign for the same image.
var imgtoolCases = []struct {
	file    string
	key     string // "" for unsigned
	input   string
	opts    SignOptions
	version Version
	secCnt  *uint32
	flags   uint32
	slot    bool // padded to the slot, trailer written
}{
	{"ed25519.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 2, 3, 4}, SlotSize: 0x10000}, Version{1, 2, 3, 4}, nil, 0, false},
	{"ed25519-sec.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 2, 3, 4}, SecurityCounter: ptr[uint32](7), SlotSize: 0x10000}, Version{1, 2, 3, 4}, ptr[uint32](7), 0, false},
	{"ed25519-dep.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 2, 3, 4}, SecurityCounter: ptr[uint32](7), SlotSize: 0x10000,
		Dependencies: []Dependency{{1, Version{2, 0, 0, 0}}, {2, Version{0, 3, 1, 9}}}}, Version{1, 2, 3, 4}, ptr[uint32](7), 0, false},
	{"ecdsa-p256.img", KeyECDSAP256, "payload.bin", SignOptions{Version: Version{2, 0, 1, 0}, SecurityCounter: ptr(AutoSecurityCounter(Version{2, 0, 1, 0})), SlotSize: 0x10000}, Version{2, 0, 1, 0}, ptr[uint32](0x02000001), 0, false},
	{"ecdsa-p256-pubkey.img", KeyECDSAP256, "payload.bin", SignOptions{Version: Version{1, 0, 0, 0}, FullPublicKey: true, SlotSize: 0x10000}, Version{1, 0, 0, 0}, nil, 0, false},
	{"rsa-2048.img", KeyRSA2048, "payload.bin", SignOptions{Version: Version{0, 9, 0, 77}, SlotSize: 0x10000}, Version{0, 9, 0, 77}, nil, 0, false},
	{"rsa-3072.img", KeyRSA3072, "payload.bin", SignOptions{Version: Version{3, 1, 4, 15}, SecurityCounter: ptr[uint32](42), SlotSize: 0x10000}, Version{3, 1, 4, 15}, ptr[uint32](42), 0, false},
	{"ed25519-ramload.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 0, 0, 0}, LoadAddr: 0x20000000, SlotSize: 0x10000}, Version{1, 0, 0, 0}, nil, FlagRAMLoad, false},
	{"unsigned.img", "", "payload.bin", SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20, SlotSize: 0x10000}, Version{1, 0, 0, 0}, nil, 0, false},
	{"ed25519-hdr.img", KeyEd25519, "payload-hdr.bin", SignOptions{Version: Version{1, 2, 3, 0}, HeaderIncluded: true, SlotSize: 0x10000}, Version{1, 2, 3, 0}, nil, 0, false},
	{"ed25519-pad.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 2, 3, 0}, SecurityCounter: ptr[uint32](5), Pad: true, SlotSize: 0x2000, Trailer: TrailerOptions{Align: 4}}, Version{1, 2, 3, 0}, ptr[uint32](5), 0, true},
	{"ed25519-confirm.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 2, 3, 0}, Confirm: true, SlotSize: 0x2000, Trailer: TrailerOptions{Align: 8, MaxAlign: 16}}, Version{1, 2, 3, 0}, nil, 0, true},
	{"ed25519-overwrite.img", KeyEd25519, "payload.bin", SignOptions{Version: Version{1, 2, 3, 0}, Pad: true, SlotSize: 0x2000, Trailer: TrailerOptions{OverwriteOnly: true}}, Version{1, 2, 3, 0}, nil, 0, true},
}

// TestImgtoolImages_Verify checks that otaport verifies, by Verify and by
// the stream verifier, every image imgtool signed, and reads the same
// fields from them.
func TestImgtoolImages_Verify(t *testing.T) {
	for _, tc := range imgtoolCases {
		t.Run(tc.file, func(t *testing.T) {
			b, keys := imgtoolImage(t, tc.file, tc.key)
			img, err := verifyBytes(b, keys...)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if img.Version != tc.version || img.Header.Flags != tc.flags {
				t.Errorf("version %v flags %#x, want %v %#x", img.Version, img.Header.Flags, tc.version, tc.flags)
			}
			if fmt.Sprint(img.Dependencies) != fmt.Sprint(tc.opts.Dependencies) {
				t.Errorf("dependencies %v, want %v", img.Dependencies, tc.opts.Dependencies)
			}
			if (tc.secCnt != nil) != img.HasSecurityCounter || (tc.secCnt != nil && *tc.secCnt != img.SecurityCounter) {
				t.Errorf("security counter %v %d, want %v", img.HasSecurityCounter, img.SecurityCounter, tc.secCnt)
			}
			if tc.key != "" {
				if img.Signature.KeyType() != tc.key || img.Signer == nil {
					t.Errorf("signature %v (%s), signer %v", img.Signature, img.Signature.KeyType(), img.Signer)
				}
			} else if img.Signature != 0 {
				t.Errorf("unsigned image has signature %v", img.Signature)
			}
			if tc.slot != (int64(len(b)) > img.TotalSize) {
				t.Errorf("TotalSize %d, file %d", img.TotalSize, len(b))
			}
			// The stream verifier sees the padded file too and must ignore the
			// padding and trailer.
			for _, chunk := range []int{1, 7, 512, len(b)} {
				simg, err := streamBytes(b, chunk, keys...)
				if err != nil {
					t.Fatalf("stream (chunk %d): %v", chunk, err)
				}
				if simg.TotalSize != img.TotalSize || !bytes.Equal(simg.Hash, img.Hash) {
					t.Fatalf("stream (chunk %d) disagrees: size %d hash %x", chunk, simg.TotalSize, simg.Hash)
				}
			}
		})
	}
}

// TestSign_MatchesImgtool asks Sign for each imgtool image: ed25519 and
// unsigned images must come out byte for byte; for ECDSA and RSA-PSS, whose
// signatures are randomised, everything but the signature bytes.
func TestSign_MatchesImgtool(t *testing.T) {
	for _, tc := range imgtoolCases {
		t.Run(tc.file, func(t *testing.T) {
			want := readTestdata(t, "imgtool", tc.file)
			var key crypto.Signer
			if tc.key != "" {
				key = testKey(t, tc.key)
			}
			got := mustSign(t, readTestdata(t, "imgtool", tc.input), key, tc.opts)
			if tc.key == "" || tc.key == KeyEd25519 {
				if !bytes.Equal(got, want) {
					t.Fatalf("Sign differs from imgtool at 0x%x (len %d vs %d)", firstDiff(got, want), len(got), len(want))
				}
				return
			}
			compareButSignature(t, got, want)
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// compareButSignature checks that two images agree everywhere except in the
// signature value (and the lengths that follow from it).
func compareButSignature(t *testing.T, got, want []byte) {
	t.Helper()
	gi, err := verifyBytes(got)
	if err != nil {
		t.Fatal(err)
	}
	wi, err := verifyBytes(want)
	if err != nil {
		t.Fatal(err)
	}
	hashed := gi.Header.HashedSize()
	if !bytes.Equal(got[:hashed], want[:hashed]) {
		t.Fatalf("hashed region differs at 0x%x", firstDiff(got[:hashed], want[:hashed]))
	}
	if len(gi.TLVs) != len(wi.TLVs) {
		t.Fatalf("%d TLVs, want %d", len(gi.TLVs), len(wi.TLVs))
	}
	for i := range gi.TLVs {
		g, w := gi.TLVs[i], wi.TLVs[i]
		if g.Type != w.Type {
			t.Fatalf("TLV %d is %v, want %v", i, g.Type, w.Type)
		}
		if !g.Type.IsSignature() && !bytes.Equal(g.Value, w.Value) {
			t.Fatalf("TLV %v = %x, want %x", g.Type, g.Value, w.Value)
		}
	}
}

// imgtoolImage reads one of imgtool's images and the public key of key
// ("" for none).
func imgtoolImage(t *testing.T, file, key string) ([]byte, []crypto.PublicKey) {
	t.Helper()
	var keys []crypto.PublicKey
	if key != "" {
		keys = append(keys, testKey(t, key).Public())
	}
	return readTestdata(t, "imgtool", file), keys
}
