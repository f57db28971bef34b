package firmware_test

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/fleet/firmware"
)

// TestCheck_EncryptedImages: an encrypted image, whose hash and signature
// only a device can check, is taken when its signature TLV names one of
// the server's keys of the board's algorithm, and refused when it names
// another key, is signed with another algorithm, or is unsigned.
func TestCheck_EncryptedImages(t *testing.T) {
	key, err := image.GenerateKey(image.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	other, err := image.GenerateKey(image.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := image.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k crypto.Signer) []byte {
		b, err := image.Sign(bytes.Repeat([]byte{7}, 5000), k, image.SignOptions{Version: image.Version{Major: 1, Minor: 2}, Encrypt: dev.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(b []byte, keys []crypto.PublicKey, alg string) (firmware.Meta, error) {
		return firmware.Check(bytes.NewReader(b), int64(len(b)), keys, alg)
	}
	b := sign(key)
	m, err := check(b, []crypto.PublicKey{other.Public(), key.Public()}, image.KeyECDSAP256)
	if err != nil {
		t.Fatalf("an encrypted image signed with the server's key: %v", err)
	}
	kh, _ := image.KeyHash(key.Public())
	if m.Version != "1.2.0+0" || m.SignatureType != image.KeyECDSAP256 || m.KeyID != hex.EncodeToString(kh) {
		t.Fatalf("meta %+v, want 1.2.0+0 signed with ecdsa-p256 key %x", m, kh)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		keys []crypto.PublicKey
		alg  string
		say  string
	}{
		{"another key", b, []crypto.PublicKey{other.Public()}, image.KeyECDSAP256, "none of otaserve's"},
		{"another algorithm", b, []crypto.PublicKey{key.Public()}, image.KeyEd25519, "not ed25519"},
		{"unsigned", sign(nil), []crypto.PublicKey{key.Public()}, image.KeyECDSAP256, "not signed"},
		{"trailing bytes", append(bytes.Clone(b), 0xff), []crypto.PublicKey{key.Public()}, image.KeyECDSAP256, "upload the unpadded image"},
	} {
		_, err := check(tc.b, tc.keys, tc.alg)
		if !errors.Is(err, firmware.ErrRefused) || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("%s: %v, want refused saying %q", tc.name, err, tc.say)
		}
	}
}
