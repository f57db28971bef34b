package image

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadPublicKeys(t *testing.T) {
	dir := t.TempDir()
	notKey := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notKey, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := func(name string) string { return filepath.Join("testdata", "keys", name) }
	hash := func(typ string) []byte {
		h, err := KeyHash(testKey(t, typ).Public())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	missing := filepath.Join(dir, "absent.pem")
	for _, tc := range []struct {
		name  string
		files []string
		want  [][]byte // key hashes, in order
		err   []string // substrings of the error
	}{
		{"public keys in order", []string{key("rsa-2048.pub.pem"), key("ed25519.pub.pem")}, [][]byte{hash(KeyRSA2048), hash(KeyEd25519)}, nil},
		{"a private key file gives its public half", []string{key("ecdsa-p256.pem")}, [][]byte{hash(KeyECDSAP256)}, nil},
		{"none", nil, nil, nil},
		{"missing file names it and the fix", []string{key("ed25519.pub.pem"), missing}, nil, []string{missing, "otaimg getpub"}},
		{"not a key names the file and the fix", []string{notKey}, nil, []string{"key " + notKey, "no PEM block", "otaimg keygen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ReadPublicKeys(tc.files)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("ReadPublicKeys = %d keys, no error; want %q", len(keys), tc.err)
				}
				for _, want := range tc.err {
					if !strings.Contains(err.Error(), want) {
						t.Fatalf("err = %v, want it to contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tc.want) {
				t.Fatalf("%d keys, want %d", len(keys), len(tc.want))
			}
			for i, k := range keys {
				h, err := KeyHash(k)
				if err != nil || !bytes.Equal(h, tc.want[i]) {
					t.Fatalf("key %d: hash %x, %v; want %x", i, h, err, tc.want[i])
				}
			}
		})
	}
}

func TestReadPrivateKey(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "absent.pem")
	pub := filepath.Join("testdata", "keys", "ed25519.pub.pem")
	for _, tc := range []struct {
		name, path string
		err        []string
	}{
		{"signing key", filepath.Join("testdata", "keys", "rsa-3072.pem"), nil},
		{"missing file names it and the fix", missing, []string{missing, "otaimg keygen"}},
		{"public key names the file and the fix", pub, []string{"key " + pub, "needs the private key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ReadPrivateKey(tc.path)
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := KeyType(k.Public()); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ReadPrivateKey(%s) gave a key, want an error", tc.path)
			}
			for _, want := range tc.err {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

// FuzzLoadKey: whatever LoadPublicKey accepts is a key otaport can use and
// survives a PEM round trip; whatever LoadPrivateKey accepts, LoadPublicKey
// accepts too, as the same key.
func FuzzLoadKey(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "keys", "*.pem"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed keys: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nMA==\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		pub, err := LoadPublicKey(b)
		if err != nil {
			if _, perr := LoadPrivateKey(b); perr == nil {
				t.Fatalf("LoadPrivateKey accepts what LoadPublicKey refuses (%v)", err)
			}
			return
		}
		h := mustHash(t, pub)
		again, err := MarshalPublicKeyPEM(pub)
		if err != nil {
			t.Fatalf("accepted key does not marshal: %v", err)
		}
		back, err := LoadPublicKey(again)
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if !bytes.Equal(mustHash(t, back), h) {
			t.Fatal("round trip changed the key")
		}
		if priv, err := LoadPrivateKey(b); err == nil && !bytes.Equal(mustHash(t, priv.Public()), h) {
			t.Fatal("the private key's public half is not the key LoadPublicKey read")
		}
	})
}

func mustHash(t *testing.T, k crypto.PublicKey) []byte {
	t.Helper()
	h, err := KeyHash(k)
	if err != nil {
		t.Fatalf("accepted key has no key hash: %v", err)
	}
	return h
}
