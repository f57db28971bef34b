package image

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestGenerateKey_RoundTripsThroughPEM(t *testing.T) {
	for _, typ := range KeyTypes() {
		if typ == KeyRSA3072 && testing.Short() {
			continue // slow to generate
		}
		t.Run(typ, func(t *testing.T) {
			k, err := GenerateKey(typ)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := KeyType(k.Public()); err != nil || got != typ {
				t.Fatalf("KeyType = %q, %v", got, err)
			}
			priv, err := MarshalPrivateKeyPEM(k)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(priv, []byte("-----BEGIN PRIVATE KEY-----")) {
				t.Fatalf("private PEM is not PKCS#8:\n%s", priv)
			}
			back, err := LoadPrivateKey(priv)
			if err != nil {
				t.Fatal(err)
			}
			pubPEM, err := MarshalPublicKeyPEM(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			for name, in := range map[string][]byte{"private": priv, "public": pubPEM} {
				pub, err := LoadPublicKey(in)
				if err != nil {
					t.Fatalf("LoadPublicKey(%s): %v", name, err)
				}
				if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
					t.Fatalf("LoadPublicKey(%s) returned another key", name)
				}
			}
		})
	}
}

func TestGenerateKey_UnknownType(t *testing.T) {
	_, err := GenerateKey("dsa")
	if err == nil || !strings.Contains(err.Error(), "ed25519, ecdsa-p256, rsa-2048, rsa-3072") {
		t.Fatalf("err = %v", err)
	}
}

// The key bytes, hashes and getpub output must be those imgtool computes
// for the same key: the bootloader matches the KEYHASH TLV against them.
func TestKeys_MatchImgtool(t *testing.T) {
	for _, typ := range KeyTypes() {
		t.Run(typ, func(t *testing.T) {
			k := testKey(t, typ)
			h, err := KeyHash(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			if want := readTestdata(t, "keys", typ+".pubhash"); !bytes.Equal(h, want) {
				t.Errorf("KeyHash = %x, imgtool getpubhash = %x", h, want)
			}
			pemOut, err := FormatPublicKey(k.Public(), LangPEM)
			if err != nil {
				t.Fatal(err)
			}
			if want := readTestdata(t, "keys", typ+".pub.pem"); !bytes.Equal(pemOut, want) {
				t.Errorf("PEM:\n%s\nimgtool getpub -e pem:\n%s", pemOut, want)
			}
			for lang, file := range map[string]string{LangC: ".pub.c", LangRust: ".pub.rs"} {
				got, err := FormatPublicKey(k.Public(), lang)
				if err != nil {
					t.Fatal(err)
				}
				want := readTestdata(t, "keys", typ+file)
				if dropFirstLine(got) != dropFirstLine(want) { // the first line is the generator's comment
					t.Errorf("%s:\n%s\nimgtool getpub -l %s:\n%s", lang, got, lang, want)
				}
			}
		})
	}
}

func dropFirstLine(b []byte) string {
	_, rest, _ := strings.Cut(string(b), "\n")
	return rest
}

func TestFormatPublicKey_Go(t *testing.T) {
	got, err := FormatPublicKey(testKey(t, KeyEd25519).Public(), LangGo)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "var ed25519PubKey = []byte{\n\t0x30, 0x2a,") || !strings.HasSuffix(string(got), "\n}\n") {
		t.Fatalf("Go output:\n%s", got)
	}
	if _, err := FormatPublicKey(testKey(t, KeyEd25519).Public(), "java"); err == nil {
		t.Fatal("unknown language accepted")
	}
}

func TestLoadKey_Formats(t *testing.T) {
	rsaKey := testKey(t, KeyRSA2048).(*rsa.PrivateKey)
	ecKey := testKey(t, KeyECDSAP256).(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tests := []struct {
		name    string
		in      []byte
		private bool
	}{
		{"PKCS#1 RSA private", enc("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), true},
		{"PKCS#1 RSA public", enc("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), false},
		{"SEC1 EC private", enc("EC PRIVATE KEY", sec1), true},
		{"SEC1 after EC PARAMETERS", append(enc("EC PARAMETERS", []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}), enc("EC PRIVATE KEY", sec1)...), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub, err := LoadPublicKey(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := KeyHash(pub); err != nil {
				t.Fatal(err)
			}
			_, err = LoadPrivateKey(tc.in)
			if tc.private != (err == nil) {
				t.Fatalf("LoadPrivateKey err = %v, private %v", err, tc.private)
			}
		})
	}
}

func TestLoadKey_Refusals(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalPKCS8PrivateKey(p384)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallDER, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	enc := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }
	tests := []struct {
		name, want string
		in         []byte
	}{
		{"not PEM", "no PEM block", []byte("hello")},
		{"encrypted", "password-protected", enc("ENCRYPTED PRIVATE KEY", []byte{1})},
		{"certificate", `"CERTIFICATE" is not a key`, enc("CERTIFICATE", []byte{1})},
		{"P-384", "P-256 only", enc("PRIVATE KEY", p384DER)},
		{"RSA-1024", "2048 or 3072", enc("PUBLIC KEY", smallDER)},
		{"garbage DER", "PEM PRIVATE KEY", enc("PRIVATE KEY", []byte{0x30, 1, 2})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPublicKey(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := LoadPrivateKey(readTestdata(t, "keys", "ed25519.pub.pem")); err == nil || !strings.Contains(err.Error(), "needs the private key") {
		t.Fatalf("LoadPrivateKey(public) err = %v", err)
	}
}
