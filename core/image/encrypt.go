package image

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
)

// Encrypted images follow MCUboot's docs/encrypted_images.md: the payload
// alone (not the header, not the TLVs) is AES-CTR encrypted with a random
// key and a counter that starts at 0 at the first payload byte; the hash
// and the signature cover the plain payload; the AES key travels wrapped
// for the device's key in one unprotected TLV.

// encryptionFlags are the header flags of an encrypted image.
const encryptionFlags = FlagEncryptedAES128 | FlagEncryptedAES256

// eciesInfo is the HKDF info string of MCUboot's ECIES key wrap.
const eciesInfo = "MCUBoot_ECIES_v1"

// KEK is a symmetric key-encryption key (AES-KW, RFC 3394): the device's
// secret for ENCKW images, 16 or 32 bytes. MCUboot's newt writes such
// images; imgtool does not.
type KEK []byte

// Encryption describes the encryption of an image: the AES key size its
// header flags name and the TLV that carries the wrapped key.
type Encryption struct {
	// KeyLen is the AES key size in bytes: 16 (ENCRYPTED_AES128) or 32
	// (ENCRYPTED_AES256).
	KeyLen int
	// KeyTLV is the type of the wrapped key's TLV (ENC_EC256, ENC_X25519,
	// ENC_X25519_SHA512, ENC_RSA2048 or ENC_KW); 0 in the plain image of
	// an encrypted compressed one, which imgtool flags but gives no key.
	KeyTLV TLVType
	// Wrapped is that TLV's value.
	Wrapped []byte
}

// isEncTLV reports whether t carries a wrapped AES key.
func isEncTLV(t TLVType) bool {
	return t >= TLVEncRSA2048 && t <= TLVEncX25519SHA512
}

// wrappedLen is the length MCUboot wants of the key TLV t for an AES key
// of keyLen bytes (enc_key_public.h).
func wrappedLen(t TLVType, keyLen int) int {
	switch t {
	case TLVEncRSA2048:
		return 256
	case TLVEncKW:
		return keyLen + 8
	case TLVEncEC256:
		return 65 + sha256.Size + keyLen
	case TLVEncX25519:
		return 32 + sha256.Size + keyLen
	case TLVEncX25519SHA512:
		return 32 + sha512.Size + keyLen
	}
	return -1
}

// interpretEncryption fills img.Encryption from the header flags and the
// key TLV, and checks that they agree.
func (img *Image) interpretEncryption() error {
	at := func(t TLV) int64 { return t.Offset - tlvHeaderSize }
	for _, t := range img.ProtectedTLVs {
		if isEncTLV(t.Type) {
			return fmt.Errorf("TLV %s at 0x%x: in the protected TLV area; imgtool writes the wrapped key in the unprotected one: %w", t.Type, at(t), ErrMalformed)
		}
	}
	f := img.Header.Flags & encryptionFlags
	var key *TLV
	for i, t := range img.TLVs {
		if !isEncTLV(t.Type) {
			continue
		}
		if key != nil {
			return fmt.Errorf("TLV %s at 0x%x: a second wrapped key (already %s): %w", t.Type, at(t), key.Type, ErrMalformed)
		}
		key = &img.TLVs[i]
	}
	switch {
	case f == 0 && key != nil:
		return fmt.Errorf("TLV %s at 0x%x: a wrapped AES key, but the header flags (%s) say the payload is not encrypted: %w", key.Type, at(*key), img.Header.FlagString(), ErrMalformed)
	case f == 0:
		return nil
	case f == encryptionFlags:
		return fmt.Errorf("image header: flags %s: both AES-128 and AES-256: %w", img.Header.FlagString(), ErrMalformed)
	}
	e := &Encryption{KeyLen: 16}
	if f == FlagEncryptedAES256 {
		e.KeyLen = 32
	}
	if key != nil {
		if want := wrappedLen(key.Type, e.KeyLen); len(key.Value) != want {
			return fmt.Errorf("TLV %s at 0x%x: length %d, want %d for an AES-%d key (flags %s): %w", key.Type, at(*key), len(key.Value), want, e.KeyLen*8, img.Header.FlagString(), ErrMalformed)
		}
		e.KeyTLV, e.Wrapped = key.Type, key.Value
	}
	img.Encryption = e
	return nil
}

// EncryptKeyType names the key TLV an image encrypted for pub carries, or
// says why pub cannot encrypt images. pub is an *ecdh.PublicKey (P-256 or
// X25519), an *ecdsa.PublicKey on P-256, an RSA-2048 *rsa.PublicKey or a
// KEK. sha512 picks ENC_X25519_SHA512 for an X25519 key (imgtool
// --hmac-sha 512).
func EncryptKeyType(pub any, sha512 bool) (TLVType, error) {
	k, err := encPublic(pub)
	if err != nil {
		return 0, err
	}
	var t TLVType
	switch k := k.(type) {
	case *ecdh.PublicKey:
		t = TLVEncEC256
		if k.Curve() == ecdh.X25519() {
			t = TLVEncX25519
			if sha512 {
				t = TLVEncX25519SHA512
			}
		}
	case *rsa.PublicKey:
		t = TLVEncRSA2048
	case KEK:
		t = TLVEncKW
	}
	if sha512 && t != TLVEncX25519SHA512 {
		return 0, fmt.Errorf("HMAC-SHA512 key wrap: MCUboot has it for X25519 keys only, not %s", t)
	}
	return t, nil
}

// encPublic normalises an encryption key: ECDSA P-256 keys become ECDH
// ones, and anything MCUboot cannot decrypt for is refused.
func encPublic(pub any) (any, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		e, err := k.ECDH()
		if err != nil || e.Curve() != ecdh.P256() {
			return nil, fmt.Errorf("encryption key: ECDSA key on %s: MCUboot's ECIES uses P-256 (otaimg keygen --type ecdsa-p256)", k.Curve.Params().Name)
		}
		return e, nil
	case *ecdh.PublicKey:
		if k.Curve() != ecdh.P256() && k.Curve() != ecdh.X25519() {
			return nil, fmt.Errorf("encryption key: ECDH curve %v: want P-256 or X25519", k.Curve())
		}
		return k, nil
	case *rsa.PublicKey:
		if k.Size() != 256 {
			return nil, fmt.Errorf("encryption key: RSA key of %d bits: MCUboot's ENC_RSA2048 wants 2048 (otaimg keygen --type rsa-2048)", k.Size()*8)
		}
		return k, nil
	case KEK:
		if len(k) != 16 && len(k) != 32 {
			return nil, fmt.Errorf("encryption key: AES-KW key of %d bytes: want 16 or 32", len(k))
		}
		return k, nil
	}
	return nil, fmt.Errorf("encryption key: type %T: want an X25519, P-256 or RSA-2048 public key, or an AES-KW key", pub)
}

// wrapKey wraps the AES key aesKey for pub as MCUboot's key TLV t.
func wrapKey(pub any, t TLVType, aesKey []byte) ([]byte, error) {
	k, err := encPublic(pub)
	if err != nil {
		return nil, err
	}
	switch k := k.(type) {
	case *rsa.PublicKey:
		return rsa.EncryptOAEP(sha256.New(), rand.Reader, k, aesKey, nil)
	case KEK:
		return aesKeyWrap(k, aesKey)
	case *ecdh.PublicKey:
		eph, err := k.Curve().GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		shared, err := eph.ECDH(k)
		if err != nil {
			return nil, err
		}
		enc, mac, err := eciesSeal(eciesHash(t), shared, aesKey)
		if err != nil {
			return nil, err
		}
		return append(append(eph.PublicKey().Bytes(), mac...), enc...), nil
	}
	return nil, fmt.Errorf("encryption key: type %T", pub)
}

func eciesHash(t TLVType) func() hash.Hash {
	if t == TLVEncX25519SHA512 {
		return sha512.New
	}
	return sha256.New
}

// eciesKeys derives the key-encryption key and the MAC key from the ECDH
// secret: HKDF without salt, info "MCUBoot_ECIES_v1", keyLen + hash size
// bytes, the AES key first.
func eciesKeys(h func() hash.Hash, shared []byte, keyLen int) (aesKey, macKey []byte, err error) {
	n := keyLen + h().Size()
	km, err := hkdf.Key(h, shared, nil, eciesInfo, n)
	if err != nil {
		return nil, nil, fmt.Errorf("HKDF: %w", err)
	}
	return km[:keyLen], km[keyLen:], nil
}

func eciesSeal(h func() hash.Hash, shared, aesKey []byte) (enc, mac []byte, err error) {
	kek, mk, err := eciesKeys(h, shared, len(aesKey))
	if err != nil {
		return nil, nil, err
	}
	enc, err = ctrXOR(kek, aesKey)
	if err != nil {
		return nil, nil, err
	}
	m := hmac.New(h, mk)
	m.Write(enc)
	return enc, m.Sum(nil), nil
}

// ctrXOR is AES-CTR with a zero counter block over b.
func ctrXOR(key, b []byte) ([]byte, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(b))
	cipher.NewCTR(blk, make([]byte, aes.BlockSize)).XORKeyStream(out, b)
	return out, nil
}

// ErrEncrypted: the image's payload is encrypted and no key to decrypt it
// was given.
var ErrEncrypted = errors.New("image encrypted")

// ErrDecryptKey: the image is encrypted for another key than the one
// given, or its key TLV was changed.
var ErrDecryptKey = errors.New("image encrypted for another key")

// UnwrapKey returns the AES key of the encrypted image img, unwrapped with
// the device's private key priv: an *ecdh.PrivateKey (P-256 or X25519), an
// *ecdsa.PrivateKey on P-256, an RSA-2048 *rsa.PrivateKey or a KEK. An
// image wrapped for another key, or whose key TLV was changed, fails with
// ErrDecryptKey.
func UnwrapKey(img *Image, priv any) ([]byte, error) {
	if img.Encryption == nil {
		return nil, fmt.Errorf("image flags %s: not an encrypted image: %w", img.Header.FlagString(), ErrMalformed)
	}
	return img.Encryption.Unwrap(priv)
}

// AreaEncryption reads the encryption of an image with header h from its
// unprotected TLV area, given from its start (Header.HashedSize()) before
// the image is whole: an installer reads the key TLV ahead of the payload
// to decrypt it as it streams. It returns nil when h is not encrypted.
func AreaEncryption(h Header, b []byte) (*Encryption, error) {
	tlvs, _, err := parseArea(b, h.HashedSize(), false)
	if err != nil {
		return nil, err
	}
	img := &Image{Header: h, TLVs: tlvs}
	if err := img.interpretEncryption(); err != nil {
		return nil, err
	}
	return img.Encryption, nil
}

// Unwrap returns the AES key of e, unwrapped with priv as UnwrapKey says.
func (e *Encryption) Unwrap(priv any) ([]byte, error) {
	if e.KeyTLV == 0 {
		return nil, fmt.Errorf("AES-%d encrypted image without an ENC_* TLV to carry its key: %w", e.KeyLen*8, ErrEncrypted)
	}
	k, err := decPrivate(priv)
	if err != nil {
		return nil, err
	}
	other := func(why string) error {
		return fmt.Errorf("%w: %s TLV does not unwrap with the %s (%s); give the private key the image was encrypted for (otaimg sign --encrypt PUB.pem)", ErrDecryptKey, e.KeyTLV, DecryptKeyName(k), why)
	}
	w := e.Wrapped
	switch k := k.(type) {
	case *rsa.PrivateKey:
		if e.KeyTLV != TLVEncRSA2048 {
			return nil, other("an RSA key unwraps ENC_RSA2048 only")
		}
		key, err := rsa.DecryptOAEP(sha256.New(), nil, k, w, nil)
		if err != nil || len(key) != e.KeyLen {
			return nil, other("RSA-OAEP decryption fails")
		}
		return key, nil
	case KEK:
		if e.KeyTLV != TLVEncKW {
			return nil, other("an AES-KW key unwraps ENC_KW only")
		}
		key, err := aesKeyUnwrap(k, w)
		if err != nil {
			return nil, other(err.Error())
		}
		return key, nil
	case *ecdh.PrivateKey:
		want := TLVEncEC256
		if k.Curve() == ecdh.X25519() {
			want = TLVEncX25519
			if e.KeyTLV == TLVEncX25519SHA512 {
				want = TLVEncX25519SHA512
			}
		}
		if e.KeyTLV != want {
			return nil, other(fmt.Sprintf("this key unwraps %s", want))
		}
		h := eciesHash(e.KeyTLV)
		pl := 32
		if want == TLVEncEC256 {
			pl = 65
		}
		tagLen := h().Size()
		eph, err := k.Curve().NewPublicKey(w[:pl])
		if err != nil {
			return nil, other("its ephemeral public key is not a point of the curve")
		}
		shared, err := k.ECDH(eph)
		if err != nil {
			return nil, other("ECDH fails")
		}
		kek, mk, err := eciesKeys(h, shared, e.KeyLen)
		if err != nil {
			return nil, err
		}
		enc := w[pl+tagLen:]
		m := hmac.New(h, mk)
		m.Write(enc)
		if !hmac.Equal(m.Sum(nil), w[pl:pl+tagLen]) {
			return nil, other("its HMAC tag does not match")
		}
		return ctrXOR(kek, enc)
	}
	return nil, fmt.Errorf("decryption key: type %T", priv)
}

// decPrivate normalises a decryption key as encPublic does a public one.
func decPrivate(priv any) (any, error) {
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		e, err := k.ECDH()
		if err != nil || e.Curve() != ecdh.P256() {
			return nil, fmt.Errorf("decryption key: ECDSA key on %s: MCUboot's ECIES uses P-256", k.Curve.Params().Name)
		}
		return e, nil
	case *ecdh.PrivateKey, *rsa.PrivateKey, KEK:
		pub := any(nil)
		switch k := k.(type) {
		case *ecdh.PrivateKey:
			pub = k.PublicKey()
		case *rsa.PrivateKey:
			pub = &k.PublicKey
		case KEK:
			pub = k
		}
		if _, err := encPublic(pub); err != nil {
			return nil, errors.New(strings.Replace(err.Error(), "encryption key", "decryption key", 1))
		}
		return priv, nil
	}
	return nil, fmt.Errorf("decryption key: type %T: want an X25519, P-256 or RSA-2048 private key, or an AES-KW key", priv)
}

// DecryptKeyName describes a decryption key for messages: its type and the
// first bytes of the SHA-256 of its public half, so that two keys of one
// type tell apart.
func DecryptKeyName(priv any) string {
	var typ string
	var pub []byte
	switch k := priv.(type) {
	case *ecdsa.PrivateKey:
		if e, err := k.ECDH(); err == nil {
			return DecryptKeyName(e)
		}
		return "ECDSA private key"
	case *ecdh.PrivateKey:
		typ, pub = "P-256 private key", k.PublicKey().Bytes()
		if k.Curve() == ecdh.X25519() {
			typ = "X25519 private key"
		}
	case *rsa.PrivateKey:
		typ, pub = "RSA private key", x509.MarshalPKCS1PublicKey(&k.PublicKey)
	case KEK:
		typ, pub = "AES-KW key", k
	default:
		return fmt.Sprintf("%T", priv)
	}
	s := sha256.Sum256(pub)
	return fmt.Sprintf("%s %x", typ, s[:4])
}

// aesKeyWrap is RFC 3394's key wrap with the default IV.
func aesKeyWrap(kek, key []byte) ([]byte, error) {
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, fmt.Errorf("AES-KW: key of %d bytes", len(key))
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(key) / 8
	out := make([]byte, 8+len(key))
	copy(out[8:], key)
	a := kwIV
	var b [16]byte
	for j := range 6 {
		for i := 1; i <= n; i++ {
			copy(b[:8], a[:])
			copy(b[8:], out[8*i:8*i+8])
			blk.Encrypt(b[:], b[:])
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(a[:], binary.BigEndian.Uint64(b[:8])^t)
			copy(out[8*i:], b[8:])
		}
	}
	copy(out, a[:])
	return out, nil
}

var kwIV = [8]byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}

// aesKeyUnwrap reverses aesKeyWrap and checks the integrity value.
func aesKeyUnwrap(kek, w []byte) ([]byte, error) {
	if len(w)%8 != 0 || len(w) < 24 {
		return nil, fmt.Errorf("AES-KW: wrapped key of %d bytes", len(w))
	}
	blk, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(w)/8 - 1
	out := bytes.Clone(w[8:])
	var a [8]byte
	copy(a[:], w[:8])
	var b [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := uint64(n*j + i)
			binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(a[:])^t)
			copy(b[8:], out[8*(i-1):8*i])
			blk.Decrypt(b[:], b[:])
			copy(a[:], b[:8])
			copy(out[8*(i-1):], b[8:])
		}
	}
	if subtle.ConstantTimeCompare(a[:], kwIV[:]) != 1 {
		return nil, errors.New("AES-KW integrity check fails")
	}
	return out, nil
}

// PayloadCipher decrypts (or encrypts: CTR is its own inverse) the payload
// of one image at any offset, so that a resumed download or a read of the
// slot starts anywhere.
type PayloadCipher struct {
	blk        cipher.Block
	start, end int64 // the payload's bounds in the image
}

// NewPayloadCipher returns the cipher of the payload of an image with
// header h under the AES key key.
func NewPayloadCipher(h Header, key []byte) (*PayloadCipher, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("payload key: %w", err)
	}
	return &PayloadCipher{blk: blk, start: int64(h.HeaderSize), end: h.PayloadEnd()}, nil
}

// XORKeyStreamAt puts in dst the bytes of src, which sit at image offset
// off, with those that fall in the payload decrypted; dst and src may be
// the same slice.
func (c *PayloadCipher) XORKeyStreamAt(dst, src []byte, off int64) {
	copy(dst, src)
	lo, hi := max(off, c.start), min(off+int64(len(src)), c.end)
	if lo >= hi {
		return
	}
	rel := lo - c.start
	var iv [aes.BlockSize]byte
	binary.BigEndian.PutUint64(iv[8:], uint64(rel/aes.BlockSize))
	s := cipher.NewCTR(c.blk, iv[:])
	if skip := rel % aes.BlockSize; skip != 0 {
		var junk [aes.BlockSize]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	p := dst[lo-off : hi-off]
	s.XORKeyStream(p, p)
}

// decryptingReader reads an encrypted image with its payload decrypted.
type decryptingReader struct {
	r io.ReaderAt
	c *PayloadCipher
}

func (d decryptingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.r.ReadAt(p, off)
	d.c.XORKeyStreamAt(p[:n], p[:n], off)
	return n, err
}

// DecryptingReader returns a reader of the image img, read from r, with
// its payload decrypted under the key priv unwraps (see UnwrapKey).
func DecryptingReader(r io.ReaderAt, img *Image, priv any) (io.ReaderAt, error) {
	key, err := UnwrapKey(img, priv)
	if err != nil {
		return nil, err
	}
	c, err := NewPayloadCipher(img.Header, key)
	if err != nil {
		return nil, err
	}
	return decryptingReader{r: r, c: c}, nil
}

// Encryption key files. MCUboot's docs make X25519 keys with imgtool
// keygen -t x25519 (PKCS#8), P-256 and RSA ones as for signing, and AES-KW
// keys as base64 of 16 or 32 random bytes.

// LoadEncryptionKey reads the key an image is encrypted for: a PEM public
// key, or a private key whose public half it takes (X25519, P-256,
// RSA-2048), or a base64 AES-KW key.
func LoadEncryptionKey(b []byte) (any, error) {
	k, err := loadEncPEM(b)
	if err != nil {
		return nil, err
	}
	switch p := k.(type) {
	case *ecdh.PrivateKey:
		k = p.PublicKey()
	case crypto.Signer:
		k = p.Public()
	}
	return encPublic(k)
}

// LoadDecryptionKey reads the device's decryption key: a PEM private key
// (X25519, P-256, RSA-2048) or a base64 AES-KW key.
func LoadDecryptionKey(b []byte) (any, error) {
	k, err := loadEncPEM(b)
	if err != nil {
		return nil, err
	}
	switch k.(type) {
	case *ecdsa.PublicKey, *ecdh.PublicKey, *rsa.PublicKey:
		return nil, fmt.Errorf("PEM holds a public key; decrypting needs the device's private key")
	}
	return decPrivate(k)
}

// loadEncPEM reads a PEM key, X25519 included, or a base64 KEK.
func loadEncPEM(b []byte) (any, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || (len(raw) != 16 && len(raw) != 32) {
			return nil, fmt.Errorf("neither a PEM key nor an AES-KW key (base64 of 16 or 32 bytes)")
		}
		return KEK(raw), nil
	}
	return loadPEM(b)
}

// ReadEncryptionKey reads the key file at path as LoadEncryptionKey does.
func ReadEncryptionKey(path string) (any, error) {
	return readKey(path, LoadEncryptionKey, "give the device's encryption public key, e.g. otaimg getpub --key enc.pem")
}

// ReadDecryptionKey reads the key file at path as LoadDecryptionKey does.
func ReadDecryptionKey(path string) (any, error) {
	return readKey(path, LoadDecryptionKey, "give the device's encryption private key, made with otaimg keygen --type x25519")
}

// KeyX25519 is the type of an X25519 encryption key, as imgtool keygen
// names it.
const KeyX25519 = "x25519"

// GenerateEncryptionKey makes a new X25519 key pair for encrypted images:
// the device keeps the private half, sign --encrypt takes the public one.
func GenerateEncryptionKey() (*ecdh.PrivateKey, error) {
	return ecdh.X25519().GenerateKey(rand.Reader)
}

// MarshalEncryptionPEM is the PEM of an X25519 key pair's public or
// private half (PKCS#8 / SubjectPublicKeyInfo, as imgtool keygen and
// getpub write them).
func MarshalEncryptionPEM(k any) ([]byte, error) {
	switch k := k.(type) {
	case *ecdh.PrivateKey:
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	case *ecdh.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
	}
	return nil, fmt.Errorf("encode key: type %T", k)
}
