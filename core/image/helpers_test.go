package image

import (
	"bytes"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// testKey loads one of the fixed keys made with imgtool keygen.
func testKey(t testing.TB, typ string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "keys", typ+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := LoadPrivateKey(b)
	if err != nil {
		t.Fatalf("load %s: %v", typ, err)
	}
	return k
}

func readTestdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testPayload is the firmware the imgtool test images were signed from.
func testPayload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + 3)
	}
	return b
}

func verifyBytes(b []byte, keys ...crypto.PublicKey) (*Image, error) {
	return Verify(bytes.NewReader(b), int64(len(b)), keys)
}

// streamBytes runs b through a StreamVerifier in chunks of size chunk.
func streamBytes(b []byte, chunk int, keys ...crypto.PublicKey) (*Image, error) {
	v, err := NewStreamVerifier(keys)
	if err != nil {
		return nil, err
	}
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := v.Write(b[:n]); err != nil {
			return nil, err
		}
		b = b[n:]
	}
	return v.Finish()
}

func mustSign(t testing.TB, payload []byte, key crypto.Signer, opts SignOptions) []byte {
	t.Helper()
	img, err := Sign(payload, key, opts)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return img
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func ptr[T any](v T) *T { return &v }
