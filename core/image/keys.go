package image

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// Key types, named as boards and `otaimg keygen --type` name them (and as
// imgtool's keygen does).
const (
	KeyEd25519   = "ed25519"
	KeyECDSAP256 = "ecdsa-p256"
	KeyRSA2048   = "rsa-2048"
	KeyRSA3072   = "rsa-3072"
)

// KeyTypes lists the key types GenerateKey accepts.
func KeyTypes() []string {
	return []string{KeyEd25519, KeyECDSAP256, KeyRSA2048, KeyRSA3072}
}

// GenerateKey makes a new signing key of type typ (one of KeyTypes).
func GenerateKey(typ string) (crypto.Signer, error) {
	switch typ {
	case KeyEd25519:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	case KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
	return nil, fmt.Errorf("key type %q: want one of %s", typ, strings.Join(KeyTypes(), ", "))
}

// KeyType names the type of a public key (one of KeyTypes), or returns an
// error saying why MCUboot's otaport subset cannot use it.
func KeyType(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return "", fmt.Errorf("ed25519 public key of %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return KeyEd25519, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on curve %s: otaport signs and verifies with P-256 only; make one with otaimg keygen --type ecdsa-p256", k.Curve.Params().Name)
		}
		return KeyECDSAP256, nil
	case *rsa.PublicKey:
		switch k.Size() * 8 {
		case 2048:
			return KeyRSA2048, nil
		case 3072:
			return KeyRSA3072, nil
		}
		return "", fmt.Errorf("RSA key of %d bits: MCUboot takes 2048 or 3072; make one with otaimg keygen --type rsa-2048", k.Size()*8)
	}
	return "", fmt.Errorf("key type %T: want ed25519, ECDSA P-256 or RSA 2048/3072", pub)
}

// sigType is the signature TLV a key of type kt produces.
func sigType(kt string) TLVType {
	switch kt {
	case KeyEd25519:
		return TLVEd25519
	case KeyECDSAP256:
		return TLVECDSASig
	case KeyRSA2048:
		return TLVRSA2048PSS
	case KeyRSA3072:
		return TLVRSA3072PSS
	}
	return 0
}

// PublicKeyBytes returns the public key as MCUboot embeds it in the
// bootloader and imgtool's getpub prints it: PKCS#1 DER for RSA,
// SubjectPublicKeyInfo DER for ECDSA and ed25519.
func PublicKeyBytes(pub crypto.PublicKey) ([]byte, error) {
	if _, err := KeyType(pub); err != nil {
		return nil, err
	}
	if k, ok := pub.(*rsa.PublicKey); ok {
		return x509.MarshalPKCS1PublicKey(k), nil
	}
	return x509.MarshalPKIXPublicKey(pub)
}

// KeyHash returns the SHA-256 of PublicKeyBytes: the KEYHASH TLV by which an
// image names its signing key, and what imgtool's getpubhash prints.
func KeyHash(pub crypto.PublicKey) ([]byte, error) {
	b, err := PublicKeyBytes(pub)
	if err != nil {
		return nil, err
	}
	s := sha256.Sum256(b)
	return s[:], nil
}

// LoadPublicKey reads a public key from PEM. It accepts a public key
// (PUBLIC KEY / RSA PUBLIC KEY) or a private key (PRIVATE KEY as PKCS#8,
// RSA PRIVATE KEY, EC PRIVATE KEY), from which it takes the public half, so
// that the key file imgtool or otaimg keygen wrote works for verifying too.
func LoadPublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	k, err := loadPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	if s, ok := k.(crypto.Signer); ok {
		k = s.Public()
	}
	if _, err := KeyType(k); err != nil {
		return nil, err
	}
	return k, nil
}

// LoadPrivateKey reads a signing key from PEM: PKCS#8 (as imgtool and otaimg
// keygen write it), PKCS#1 RSA or SEC1 EC.
func LoadPrivateKey(pemBytes []byte) (crypto.Signer, error) {
	k, err := loadPEM(pemBytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("PEM holds a public key; signing needs the private key (the file otaimg keygen wrote)")
	}
	if _, err := KeyType(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

// What to do about a key whose PEM block holds no valid key.
const (
	damagedPublic  = "the file is damaged: write it again (otaimg getpub --key key.pem)"
	damagedPrivate = "the file is damaged: use the key file otaimg keygen or imgtool keygen wrote"
)

func loadPEM(b []byte) (any, error) {
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			if bytes.Equal(rest, b) {
				return nil, fmt.Errorf("no PEM block found; want a key file from otaimg keygen or imgtool keygen")
			}
			return nil, fmt.Errorf("no key in the PEM blocks found")
		}
		switch blk.Type {
		case "EC PARAMETERS":
			continue // openssl ecparam -genkey writes this before the key
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("PEM key is password-protected; otaport reads unencrypted keys only (imgtool keygen without -p, or openssl pkcs8 -nocrypt)")
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM PUBLIC KEY: %w; %s", err, damagedPublic)
			}
			return k, nil
		case "RSA PUBLIC KEY":
			k, err := x509.ParsePKCS1PublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM RSA PUBLIC KEY: %w; %s", err, damagedPublic)
			}
			return k, nil
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM PRIVATE KEY: %w; %s", err, damagedPrivate)
			}
			return k, nil
		case "RSA PRIVATE KEY":
			if _, enc := blk.Headers["Proc-Type"]; enc {
				return nil, fmt.Errorf("PEM RSA PRIVATE KEY is password-protected; otaport reads unencrypted keys only")
			}
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM RSA PRIVATE KEY: %w; %s", err, damagedPrivate)
			}
			return k, nil
		case "EC PRIVATE KEY":
			if _, enc := blk.Headers["Proc-Type"]; enc {
				return nil, fmt.Errorf("PEM EC PRIVATE KEY is password-protected; otaport reads unencrypted keys only")
			}
			k, err := x509.ParseECPrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM EC PRIVATE KEY: %w; %s", err, damagedPrivate)
			}
			return k, nil
		default:
			return nil, fmt.Errorf("PEM block %q is not a key; want PRIVATE KEY or PUBLIC KEY", blk.Type)
		}
	}
}

// MarshalPrivateKeyPEM writes key as a PKCS#8 "PRIVATE KEY" PEM, the form
// imgtool keygen writes and reads.
func MarshalPrivateKeyPEM(key crypto.Signer) ([]byte, error) {
	if _, err := KeyType(key.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM writes pub as a SubjectPublicKeyInfo "PUBLIC KEY"
// PEM, as imgtool getpub --encoding pem does for every key type.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if _, err := KeyType(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Source languages for FormatPublicKey.
const (
	LangPEM  = "pem"
	LangC    = "c"
	LangRust = "rust"
	LangGo   = "go"
)

// FormatPublicKey renders pub for embedding in a bootloader or a device
// build, as imgtool getpub does: PEM, or PublicKeyBytes as a C array
// (`ed25519_pub_key[]` and `_len`, the names MCUboot's keys.c expects), a
// Rust slice, or a Go byte slice.
func FormatPublicKey(pub crypto.PublicKey, lang string) ([]byte, error) {
	if lang == LangPEM || lang == "" {
		return MarshalPublicKeyPEM(pub)
	}
	kt, err := KeyType(pub)
	if err != nil {
		return nil, err
	}
	raw, err := PublicKeyBytes(pub)
	if err != nil {
		return nil, err
	}
	short := strings.SplitN(kt, "-", 2)[0] // ed25519, ecdsa, rsa: MCUboot's symbol prefixes
	var b strings.Builder
	var indent, open, close string
	switch lang {
	case LangC:
		b.WriteString("/* Generated by otaimg getpub, do not edit. */\n")
		open, close, indent = fmt.Sprintf("const unsigned char %s_pub_key[] = {", short), "};", "    "
	case LangRust:
		b.WriteString("/* Generated by otaimg getpub, do not edit. */\n")
		open, close, indent = fmt.Sprintf("static %s_PUB_KEY: &[u8] = &[", strings.ToUpper(short)), "];", "    "
	case LangGo:
		b.WriteString("// Generated by otaimg getpub, do not edit.\n\n")
		fmt.Fprintf(&b, "// %sPubKey is the %s public key in the form MCUboot embeds (%d bytes).\n", short, kt, len(raw))
		open, close, indent = fmt.Sprintf("var %sPubKey = []byte{", short), "}", "\t"
	default:
		return nil, fmt.Errorf("language %q: want pem, c, rust or go", lang)
	}
	b.WriteString(open)
	for i, c := range raw {
		if i%8 == 0 {
			b.WriteString("\n" + indent)
		} else {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "0x%02x,", c)
	}
	b.WriteString("\n" + close + "\n")
	if lang == LangC {
		fmt.Fprintf(&b, "const unsigned int %s_pub_key_len = %d;\n", short, len(raw))
	}
	return []byte(b.String()), nil
}
