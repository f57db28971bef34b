package firmware_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
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

// signedPair returns a base and a target full image and a delta image
// between them, all signed with key.
func signedPair(t *testing.T, key crypto.Signer) (base, target, delta []byte) {
	t.Helper()
	img := func(v uint8, fill byte) ([]byte, *image.Image) {
		b, err := image.Sign(bytes.Repeat([]byte{fill}, 6000), key, image.SignOptions{Version: image.Version{Major: 1, Minor: v}})
		if err != nil {
			t.Fatal(err)
		}
		parsed, err := image.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		return b, parsed
	}
	base, bi := img(0, 1)
	target, ti := img(1, 2)
	// The server does not apply a delta, so any patch bytes do here.
	delta, err := image.SignDelta(bi, ti, bytes.Repeat([]byte{9}, 700), key, image.SignOptions{HeaderSize: 0x20})
	if err != nil {
		t.Fatal(err)
	}
	return base, target, delta
}

// TestCheck_DeltaImage: a delta image is checked as any image (its own
// signature with the server's keys) and reported with the hashes of its
// base and target, which are the hashes the full images report.
func TestCheck_DeltaImage(t *testing.T) {
	key, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	other, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	base, target, delta := signedPair(t, key)
	check := func(b []byte, k crypto.Signer) (firmware.Meta, error) {
		return firmware.Check(bytes.NewReader(b), int64(len(b)), []crypto.PublicKey{k.Public()}, image.KeyEd25519)
	}
	mb, err := check(base, key)
	if err != nil || mb.IsDelta() || len(mb.Hash) != 64 {
		t.Fatalf("base: %+v, %v", mb, err)
	}
	mt, err := check(target, key)
	if err != nil {
		t.Fatal(err)
	}
	md, err := check(delta, key)
	if err != nil {
		t.Fatalf("delta image signed with the server's key: %v", err)
	}
	if !md.IsDelta() || md.DeltaBase != mb.Hash || md.DeltaTarget != mt.Hash || md.Version != mt.Version || md.Hash == mt.Hash {
		t.Errorf("delta meta %+v; want base %s and target %s, version %s", md, mb.Hash, mt.Hash, mt.Version)
	}
	if _, err := check(delta, other); !errors.Is(err, firmware.ErrRefused) {
		t.Errorf("a delta image signed with a key the server does not have: %v, want refused", err)
	}
}

// TestHandler_ServesDeltaLikeFullImages: a delta image stored through an
// upload's check is served as a full image is: by its SHA-256, with its
// strong ETag, resumed by Range with If-Range.
func TestHandler_ServesDeltaLikeFullImages(t *testing.T) {
	key, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	_, _, delta := signedPair(t, key)
	s, err := firmware.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var m firmware.Meta
	blob, err := s.Put(context.Background(), bytes.NewReader(delta), 0, func(f *os.File, size int64) (err error) {
		m, err = firmware.Check(f, size, []crypto.PublicKey{key.Public()}, image.KeyEd25519)
		return err
	})
	if err != nil || !m.IsDelta() {
		t.Fatalf("store the delta image: %+v, %v", m, err)
	}
	srv := httptest.NewServer(http.StripPrefix("/firmware", firmware.Handler(s)))
	defer srv.Close()
	etag := `"` + blob.SHA256 + `"`
	for _, c := range []struct {
		name   string
		hdr    map[string]string
		status int
		body   []byte
	}{
		{"whole", nil, http.StatusOK, delta},
		{"resumed", map[string]string{"Range": "bytes=300-", "If-Range": etag}, http.StatusPartialContent, delta[300:]},
		{"changed under its name", map[string]string{"Range": "bytes=300-", "If-Range": `"00"`}, http.StatusOK, delta},
	} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/firmware/"+blob.SHA256, nil)
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != c.status || !bytes.Equal(body, c.body) || resp.Header.Get("ETag") != etag {
			t.Errorf("%s: %s, %d bytes, ETag %s; want %d, %d bytes, ETag %s", c.name, resp.Status, len(body), resp.Header.Get("ETag"), c.status, len(c.body), etag)
		}
	}
}
