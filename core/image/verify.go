package image

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// pssSaltLength is the RSA-PSS salt length MCUboot accepts: the hash
// length (imgtool signs with salt_length=32; bootutil checks for it).
const pssSaltLength = 32

// Verify parses the image in the first size bytes of r, recomputes the
// SHA-256 over header, payload and protected TLVs, compares it with the
// image's SHA256 TLV and, when keys are given, checks that a signature TLV
// verifies with one of them. With no keys only the hash is checked.
//
// For a compressed image (COMPRESSED_LZMA2) it then decompresses the
// payload and checks the plain image the bootloader rebuilds against
// DECOMP_SHA and, with keys, DECOMP_SIGNATURE; those errors say
// "decompressed image".
//
// The error wraps ErrHashMismatch, ErrUnsigned, ErrUnknownKey,
// ErrBadSignature or ErrUnsupported to say which check failed, or the
// errors of Parse for a broken structure.
func Verify(r io.ReaderAt, size int64, keys []crypto.PublicKey) (*Image, error) {
	return VerifyWith(r, size, VerifyOptions{Keys: keys})
}

// VerifyOptions are the keys an image is checked with.
type VerifyOptions struct {
	// Keys are the public keys one of which must have signed the image;
	// none checks the hash only.
	Keys []crypto.PublicKey
	// DecryptKey is the device's private key (see UnwrapKey): the payload
	// of an encrypted image is decrypted with the AES key it unwraps
	// before it is hashed, since the hash and the signature cover the
	// plain payload.
	DecryptKey any
	// Decrypted says the payload of an image flagged encrypted is plain
	// already: what MCUboot's primary slot holds after it decrypted the
	// image in, or a slot otaport wrote decrypted. The header keeps its
	// flags and key TLV, which the hash covers.
	Decrypted bool
}

// VerifyWith is Verify with the options of an encrypted image: it
// decrypts the payload with o.DecryptKey, unless o.Decrypted says it is
// plain. An encrypted image with neither fails with ErrEncrypted, one
// encrypted for another key with ErrDecryptKey.
func VerifyWith(r io.ReaderAt, size int64, o VerifyOptions) (*Image, error) {
	ks, err := newKeySet(o.Keys)
	if err != nil {
		return nil, err
	}
	img, err := Parse(r, size)
	if err != nil {
		return nil, err
	}
	if err := img.checkSupported(); err != nil {
		return img, err
	}
	if img.Encryption != nil && !o.Decrypted {
		if o.DecryptKey == nil || img.Encryption.KeyTLV == 0 {
			return img, img.errEncrypted()
		}
		if r, err = DecryptingReader(r, img, o.DecryptKey); err != nil {
			return img, err
		}
	}
	h := sha256.New()
	// 8 KiB reads: a port verifies each slot at every boot, and a fleet
	// simulation runs thousands of ports; larger reads hash no faster.
	buf := make([]byte, 8<<10)
	if _, err := io.CopyBuffer(h, io.NewSectionReader(r, 0, img.Header.HashedSize()), buf); err != nil {
		return img, fmt.Errorf("hash image: %w", err)
	}
	if err := img.check(h.Sum(nil), ks); err != nil {
		return img, err
	}
	if img.Compressed != nil {
		if _, err := img.checkDecompressed(r, ks); err != nil {
			return img, err
		}
	}
	return img, nil
}

// errEncrypted says that img's payload cannot be checked without its key.
func (img *Image) errEncrypted() error {
	e := img.Encryption
	if e.KeyTLV == 0 {
		return fmt.Errorf("image flags %s: flagged encrypted but carries no wrapped key (the plain image of an encrypted compressed one): only a slot that holds it decrypted verifies: %w", img.Header.FlagString(), ErrEncrypted)
	}
	return fmt.Errorf("image flags %s: the payload is AES-%d encrypted (key in %s) and the hash covers the plain payload: give the device's private key to decrypt it (--enc-key): %w",
		img.Header.FlagString(), e.KeyLen*8, e.KeyTLV, ErrEncrypted)
}

// checkSupported refuses what this package cannot verify, before any
// hashing is spent on it.
func (img *Image) checkSupported() error {
	if img.Header.Flags&FlagCompressedLZMA1 != 0 {
		return fmt.Errorf("image flags %s: LZMA1 compression, which neither imgtool nor MCUboot makes or reads; sign with --compression lzma2: %w", img.Header.FlagString(), ErrUnsupported)
	}
	if img.HashType != TLVSHA256 {
		return fmt.Errorf("image hash TLV %s: otaport verifies SHA256 images only (ed25519, ecdsa-p256, rsa-2048, rsa-3072 keys): %w", img.HashType, ErrUnsupported)
	}
	if _, ok := img.Find(TLVSigPure); ok {
		return fmt.Errorf("image has a SIG_PURE TLV (imgtool --pure): otaport verifies signatures over the SHA-256 only; sign without --pure: %w", ErrUnsupported)
	}
	return nil
}

// keySet is the verification keys with what is needed to match them to an
// image's KEYHASH, computed once.
type keySet []keyInfo

type keyInfo struct {
	pub  crypto.PublicKey
	typ  string
	sig  TLVType
	hash []byte
}

func newKeySet(keys []crypto.PublicKey) (keySet, error) {
	ks := make(keySet, 0, len(keys))
	for i, k := range keys {
		if s, ok := k.(crypto.Signer); ok {
			k = s.Public() // a private key passed by mistake still names its public half
		}
		kt, err := KeyType(k)
		if err != nil {
			return nil, fmt.Errorf("verification key %d: %w", i, err)
		}
		raw, err := PublicKeyBytes(k)
		if err != nil {
			return nil, fmt.Errorf("verification key %d: %w", i, err)
		}
		h := sha256.Sum256(raw)
		ks = append(ks, keyInfo{pub: k, typ: kt, sig: sigType(kt), hash: h[:]})
	}
	return ks, nil
}

func (ks keySet) describe() string {
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s %s", k.typ, hex.EncodeToString(k.hash[:4])))
	}
	return strings.Join(parts, ", ")
}

// check compares digest (computed over the hashed region) with the image's
// hash TLV and then looks for a signature by one of ks. A KEYHASH or PUBKEY
// TLV applies to the signatures that follow it, as in MCUboot's bootutil.
func (img *Image) check(digest []byte, ks keySet) error {
	if !hmac.Equal(digest, img.Hash) {
		return fmt.Errorf("image hash: computed %x, image carries %x; header, payload or protected TLVs changed after signing, or the data is corrupt: %w", digest, img.Hash, ErrHashMismatch)
	}
	if len(ks) == 0 {
		return nil
	}
	var named []byte // key hash named by the last KEYHASH/PUBKEY TLV
	var sigs, tried int
	var sigNames []string
	for _, t := range img.TLVs {
		switch {
		case t.Type == TLVKeyHash:
			named = t.Value
		case t.Type == TLVPubKey:
			h := sha256.Sum256(t.Value)
			named = h[:]
		case t.Type.IsSignature():
			sigs++
			sigNames = append(sigNames, t.Type.String())
			for _, k := range ks {
				if k.sig != t.Type || (named != nil && !hmac.Equal(named, k.hash)) {
					continue
				}
				tried++
				if verifySignature(k, t.Type, digest, t.Value) {
					img.Signer = k.pub
					return nil
				}
			}
			named = nil
		}
	}
	switch {
	case sigs == 0:
		return fmt.Errorf("image has no signature TLV but a key was given (%s); sign it with otaimg sign --key: %w", ks.describe(), ErrUnsigned)
	case tried == 0:
		who := ""
		if img.KeyHash != nil {
			who = fmt.Sprintf(" with key hash %x", img.KeyHash[:min(4, len(img.KeyHash))])
		}
		return fmt.Errorf("image signature %s%s matches none of the given keys (%s); verify with the public key of the signing key (otaimg getpub): %w", strings.Join(sigNames, ", "), who, ks.describe(), ErrUnknownKey)
	default:
		return fmt.Errorf("image signature %s does not verify with the key it names (%s): the signature TLV is corrupt or was made over other data: %w", strings.Join(sigNames, ", "), ks.describe(), ErrBadSignature)
	}
}

// VerifyDigest reports whether sig is pub's signature over digest, made as
// SignDigest makes it.
func VerifyDigest(pub crypto.PublicKey, digest, sig []byte) bool {
	ks, err := newKeySet([]crypto.PublicKey{pub})
	if err != nil {
		return false
	}
	return verifySignature(ks[0], ks[0].sig, digest, sig)
}

// verifySignature checks sig over digest the way MCUboot does: ed25519 over
// the 32-byte digest as the message, ECDSA and RSA-PSS (salt 32) over the
// digest as a SHA-256 hash.
func verifySignature(k keyInfo, t TLVType, digest, sig []byte) bool {
	switch pub := k.pub.(type) {
	case ed25519.PublicKey:
		return t == TLVEd25519 && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, digest, sig)
	case *ecdsa.PublicKey:
		// imgtool --pad-sig appends zeros to reach 72 bytes; the DER length
		// says where the signature ends (as imgtool's verify strips it).
		if len(sig) >= 2 && sig[0] == 0x30 && sig[1] < 0x80 && int(sig[1])+2 <= len(sig) {
			sig = sig[:int(sig[1])+2]
		}
		return t == TLVECDSASig && ecdsa.VerifyASN1(pub, digest, sig)
	case *rsa.PublicKey:
		return t == k.sig && rsa.VerifyPSS(pub, crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: pssSaltLength, Hash: crypto.SHA256}) == nil
	}
	return false
}
