package image

import (
	"bytes"
	"crypto"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenCases are images Sign makes from the fixed test keys with otaport's
// own defaults (header 0x200 filled with 0xff). ed25519 and unsigned images
// are deterministic and compared byte for byte; ECDSA and RSA-PSS
// signatures are randomised, so only the other bytes are compared and the
// golden signature must still verify.
var goldenCases = []struct {
	name string
	key  string
	opts SignOptions
}{
	{"unsigned", "", SignOptions{Version: Version{0, 0, 1, 0}}},
	{"ed25519", KeyEd25519, SignOptions{Version: Version{1, 2, 3, 4}, SecurityCounter: ptr[uint32](1)}},
	{"ed25519-slot", KeyEd25519, SignOptions{Version: Version{1, 2, 3, 4}, Confirm: true, SlotSize: 0x1800, Trailer: TrailerOptions{Align: 4, MaxSectors: 8}}},
	{"ecdsa-p256", KeyECDSAP256, SignOptions{Version: Version{2, 0, 0, 0}, SecurityCounter: ptr[uint32](2)}},
	{"rsa-2048", KeyRSA2048, SignOptions{Version: Version{2, 0, 0, 0}}},
	{"ed25519-lzma2armthumb", KeyEd25519, SignOptions{Version: Version{1, 3, 0, 0}, SecurityCounter: ptr[uint32](3), Compression: CompressionLZMA2ARMThumb}},
	{"rsa-3072", KeyRSA3072, SignOptions{Version: Version{3, 0, 0, 0}, HeaderSize: 0x400}},
}

func TestSign_Golden(t *testing.T) {
	payload := testPayload(1500)
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			var key crypto.Signer
			var keys []crypto.PublicKey
			if tc.key != "" {
				key = testKey(t, tc.key)
				keys = append(keys, key.Public())
			}
			got := mustSign(t, payload, key, tc.opts)
			path := filepath.Join("testdata", "golden", tc.name+".img")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestSign_Golden -update)", err)
			}
			if _, err := verifyBytes(want, keys...); err != nil {
				t.Fatalf("golden image no longer verifies: %v", err)
			}
			if tc.key == "" || tc.key == KeyEd25519 {
				if !bytes.Equal(got, want) {
					t.Fatalf("differs from %s at 0x%x (len %d vs %d); run with -update if the change is intended", path, firstDiff(got, want), len(got), len(want))
				}
				return
			}
			compareButSignature(t, got, want)
		})
	}
}
