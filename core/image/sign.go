package image

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
)

// DefaultHeaderSize is the header size Sign uses when SignOptions leaves it
// zero. imgtool has no default (-H is required; 0x20 is the smallest); 0x200
// is what Zephyr and most MCUboot targets use, because the vector table that
// follows the header must stay aligned.
const DefaultHeaderSize = 0x200

// SignOptions are the choices imgtool sign takes as flags.
type SignOptions struct {
	Version Version
	// SecurityCounter, when set, adds a SEC_CNT TLV to the protected area
	// (imgtool --security-counter). AutoSecurityCounter derives one from
	// the version as imgtool's "auto" does.
	SecurityCounter *uint32
	// Dependencies add DEPENDENCY TLVs to the protected area (imgtool -d).
	Dependencies []Dependency
	// HeaderSize is the payload offset (imgtool -H); 0 means
	// DefaultHeaderSize.
	HeaderSize int
	// HeaderIncluded says the payload already starts with HeaderSize zero
	// bytes for the header, as a binary linked for MCUboot does (imgtool
	// without --pad-header). Otherwise Sign prepends the header room,
	// filled with the erased value (imgtool --pad-header).
	HeaderIncluded bool
	// LoadAddr, when non-zero, is stored in the header and sets RAM_LOAD
	// (imgtool --load-addr).
	LoadAddr uint32
	// NonBootable sets the NON_BOOTABLE flag.
	NonBootable bool
	// FullPublicKey stores the whole public key (PUBKEY TLV) instead of
	// its hash (imgtool --public-key-format full).
	FullPublicKey bool
	// SlotSize, when non-zero, is the size of the slot the image is for:
	// Sign refuses an image that leaves no room for the trailer.
	SlotSize int64
	// Pad fills the image up to SlotSize with the erased value and writes
	// the trailer magic, so the bootloader takes it as a pending upgrade
	// (imgtool --pad). Confirm also marks it image_ok (imgtool --confirm)
	// and implies Pad.
	Pad     bool
	Confirm bool
	// Trailer is the flash geometry the trailer is laid out for (imgtool
	// --align, --max-align, --max-sectors, --overwrite-only).
	Trailer TrailerOptions
	// ErasedZero says erased flash reads 0x00, not 0xff (imgtool -R 0).
	ErasedZero bool
	// Compression is CompressionLZMA2 or CompressionLZMA2ARMThumb to
	// compress the payload as imgtool --compression does, or "" (none).
	// Sign falls back to the plain image when compression does not make
	// it smaller, as imgtool does.
	Compression string
	// Encrypt, when set, encrypts the payload for this key (imgtool -E):
	// an X25519, P-256 or RSA-2048 public key (see EncryptKeyType) or a
	// KEK. Header room and payload are padded with zeros to 16 bytes, hashed and
	// signed plain, then AES-CTR encrypted under a random key that an
	// unprotected ENC_* TLV carries wrapped for this key.
	Encrypt any
	// EncryptKeyLen is the AES key size in bits, 128 or 256 (imgtool
	// --encrypt-keylen); 0 means 128.
	EncryptKeyLen int
	// HMACSHA512 wraps the key of an X25519 encryption key with
	// HKDF/HMAC-SHA512, TLV ENC_X25519_SHA512 (imgtool --hmac-sha 512).
	HMACSHA512 bool
}

// encFlag is the header flag of the AES key size opts asks for, 0 when it
// does not encrypt.
func (opts SignOptions) encFlag() uint32 {
	switch {
	case opts.Encrypt == nil:
		return 0
	case opts.EncryptKeyLen == 256:
		return FlagEncryptedAES256
	}
	return FlagEncryptedAES128
}

// AutoSecurityCounter is the counter imgtool derives from a version with
// --security-counter auto: major<<24 | minor<<16 | revision.
func AutoSecurityCounter(v Version) uint32 {
	return uint32(v.Major)<<24 | uint32(v.Minor)<<16 | uint32(v.Revision)
}

// Sign builds an MCUboot image from payload: header, payload, protected
// TLVs (security counter), then SHA256, KEYHASH (or PUBKEY) and the
// signature. A nil key makes a hash-only image. The result is byte for byte
// what imgtool sign makes with the same options (ECDSA and RSA-PSS
// signatures are randomised, so only those bytes differ).
func Sign(payload []byte, key crypto.Signer, opts SignOptions) ([]byte, error) {
	switch opts.Compression {
	case CompressionNone:
		return signPlain(payload, key, opts)
	case CompressionLZMA2, CompressionLZMA2ARMThumb:
		return signCompressed(payload, key, opts)
	}
	return nil, fmt.Errorf("sign: compression %q: want %s or %s", opts.Compression, CompressionLZMA2, CompressionLZMA2ARMThumb)
}

// signPlain is Sign without compression.
func signPlain(payload []byte, key crypto.Signer, opts SignOptions) ([]byte, error) {
	return signPlainFlags(payload, key, opts, 0)
}

// signPlainFlags is signPlain with extra header flags.
func signPlainFlags(payload []byte, key crypto.Signer, opts SignOptions, flags uint32) ([]byte, error) {
	hs, erased, kt, err := opts.prepare(key)
	if err != nil {
		return nil, err
	}
	var buf []byte
	if opts.HeaderIncluded {
		if len(payload) < hs || !allBytes(payload[:hs], 0) {
			return nil, fmt.Errorf("sign: payload does not start with 0x%x zero bytes of header room; link it with room for the header or let otaimg add it (--pad-header)", hs)
		}
		buf = bytes.Clone(payload)
	} else {
		buf = make([]byte, hs, hs+len(payload)+1024)
		fill(buf, erased)
		buf = append(buf, payload...)
	}
	return assemble(buf, hs, erased, key, kt, opts, flags, nil)
}

// prepare checks the options and returns the header size, the erased
// value and the key's type.
func (opts SignOptions) prepare(key crypto.Signer) (hs int, erased byte, kt string, err error) {
	hs = opts.HeaderSize
	if hs == 0 {
		hs = DefaultHeaderSize
	}
	if hs < HeaderSize || hs > math.MaxUint16 {
		return 0, 0, "", fmt.Errorf("sign: header size 0x%x: want 0x%x to 0xffff", hs, HeaderSize)
	}
	erased = 0xff
	if opts.ErasedZero {
		erased = 0
	}
	if key != nil {
		if kt, err = KeyType(key.Public()); err != nil {
			return 0, 0, "", fmt.Errorf("sign: %w", err)
		}
	}
	if _, err := TrailerSize(opts.Trailer); err != nil {
		return 0, 0, "", fmt.Errorf("sign: %w", err)
	}
	if opts.Encrypt != nil {
		if _, err := EncryptKeyType(opts.Encrypt, opts.HMACSHA512); err != nil {
			return 0, 0, "", fmt.Errorf("sign: %w", err)
		}
		if opts.EncryptKeyLen != 0 && opts.EncryptKeyLen != 128 && opts.EncryptKeyLen != 256 {
			return 0, 0, "", fmt.Errorf("sign: encryption key length %d: want 128 or 256 (bits)", opts.EncryptKeyLen)
		}
	} else if opts.HMACSHA512 || opts.EncryptKeyLen != 0 {
		return 0, 0, "", fmt.Errorf("sign: an encryption key length or HMAC without an encryption key (--encrypt PUB.pem)")
	}
	if (opts.Pad || opts.Confirm) && opts.SlotSize <= 0 {
		return 0, 0, "", fmt.Errorf("sign: padding needs the slot size (--slot-size)")
	}
	return hs, erased, kt, nil
}

// assemble finishes an image whose header room and payload are in buf:
// header (with extra flags), protected TLVs (the security counter, then
// the entries in prot), hash, key and signature TLVs, and the padding to
// the slot.
func assemble(buf []byte, hs int, erased byte, key crypto.Signer, kt string, opts SignOptions, flags uint32, extra []byte) ([]byte, error) {
	trailer, err := TrailerSize(opts.Trailer)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	pad := opts.Pad || opts.Confirm
	encFlag := opts.encFlag()
	if encFlag != 0 {
		// imgtool pads header room and payload together to the AES block
		// with zeros (len(self.payload) % 16 in its create), which the
		// hash covers, and reserves two key slots in the trailer for the
		// swap (16 bytes each whatever the key size, as imgtool does).
		if r := len(buf) % 16; r != 0 {
			buf = append(buf, make([]byte, 16-r)...)
		}
		if t, err := opts.Trailer.normalize(); err == nil && !t.OverwriteOnly {
			trailer += 2 * alignUp(16, t.MaxAlign)
		}
	}
	imgSize := len(buf) - hs
	if uint64(imgSize) > math.MaxUint32 {
		return nil, fmt.Errorf("sign: payload of %d bytes does not fit the header's 32-bit size", imgSize)
	}

	var prot []byte
	if opts.SecurityCounter != nil {
		prot = appendTLV(prot, TLVSecCnt, binary.LittleEndian.AppendUint32(nil, *opts.SecurityCounter))
	}
	for _, d := range opts.Dependencies { // after SEC_CNT, as imgtool orders them
		prot = appendTLV(prot, TLVDependency, d.bytes())
	}
	prot = append(prot, extra...)
	if len(prot) > 0 {
		prot = appendInfo(prot, TLVProtectedInfoMagic)
	}
	h := Header{
		Magic:            Magic,
		LoadAddr:         opts.LoadAddr,
		HeaderSize:       uint16(hs),
		ProtectedTLVSize: uint16(len(prot)),
		ImageSize:        uint32(imgSize),
		Version:          opts.Version,
		Flags:            flags | encFlag,
	}
	if opts.LoadAddr != 0 {
		h.Flags |= FlagRAMLoad
	}
	if opts.NonBootable {
		h.Flags |= FlagNonBootable
	}
	h.put(buf)
	buf = append(buf, prot...)
	digest := sha256.Sum256(buf)

	var tlv []byte
	tlv = appendTLV(tlv, TLVSHA256, digest[:])
	if key != nil {
		raw, err := PublicKeyBytes(key.Public())
		if err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
		if opts.FullPublicKey {
			tlv = appendTLV(tlv, TLVPubKey, raw)
		} else {
			kh := sha256.Sum256(raw)
			tlv = appendTLV(tlv, TLVKeyHash, kh[:])
		}
		sig, err := signDigest(key, digest[:])
		if err != nil {
			return nil, fmt.Errorf("sign with %s key: %w", kt, err)
		}
		tlv = appendTLV(tlv, sigType(kt), sig)
	}
	if encFlag != 0 {
		if tlv, err = encryptPayload(buf[hs:hs+imgSize], tlv, opts); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	}
	if len(tlv)+tlvInfoSize > maxTLVArea {
		return nil, fmt.Errorf("sign: unprotected TLV area of %d bytes exceeds 0xffff", len(tlv)+tlvInfoSize)
	}
	buf = append(buf, appendInfo(tlv, TLVInfoMagic)...)

	if opts.SlotSize > 0 && int64(len(buf))+int64(trailer) > opts.SlotSize {
		return nil, fmt.Errorf("sign: image (0x%x bytes) + trailer (0x%x) exceed the slot size 0x%x; use a larger slot or a smaller image", len(buf), trailer, opts.SlotSize)
	}
	if pad {
		t, _ := opts.Trailer.normalize()
		start := len(buf)
		buf = append(buf, make([]byte, int(opts.SlotSize)-start)...)
		fill(buf[start:], erased)
		magic := TrailerMagic(t.MaxAlign)
		copy(buf[len(buf)-len(magic):], magic)
		if opts.Confirm && !t.OverwriteOnly {
			buf[len(buf)-alignUp(trailerMagicSize, t.MaxAlign)-t.MaxAlign] = 0x01
		}
	}
	return buf, nil
}

// signCompressed is Sign with compression, in imgtool's two passes: the
// plain image is signed first, and its hash, signature and payload size go
// into the DECOMP_* TLVs of the compressed image, which is signed in turn.
func signCompressed(payload []byte, key crypto.Signer, opts SignOptions) ([]byte, error) {
	hs, erased, kt, err := opts.prepare(key)
	if err != nil {
		return nil, err
	}
	first := opts
	first.Compression, first.Pad, first.Confirm = CompressionNone, false, false
	// imgtool's first pass flags the plain image encrypted but neither
	// pads nor encrypts it: DECOMP_SHA covers that header.
	first.Encrypt, first.EncryptKeyLen, first.HMACSHA512 = nil, 0, false
	plainImg, err := signPlainFlags(payload, key, first, opts.encFlag())
	if err != nil {
		return nil, err
	}
	plain, err := Parse(bytes.NewReader(plainImg), int64(len(plainImg)))
	if err != nil {
		return nil, fmt.Errorf("sign: the plain image: %w", err)
	}
	body := payload
	if opts.HeaderIncluded {
		body = payload[hs:]
	}
	comp, err := compressPayload(body, opts.Compression == CompressionLZMA2ARMThumb)
	if err != nil {
		return nil, fmt.Errorf("sign: compress: %w", err)
	}
	var sig []byte
	for _, t := range plain.TLVs {
		if t.Type.IsSignature() {
			sig = t.Value
			break
		}
	}
	// imgtool's test (main.py, sign): the raw LZMA2 stream and the three
	// TLV values against the plain payload; when compression does not win
	// it writes the plain image without a word, and so do we.
	if len(comp)-2+4+len(plain.Hash)+len(sig) >= len(body) {
		if !opts.Pad && !opts.Confirm && opts.Encrypt == nil {
			return plainImg, nil
		}
		// imgtool would write its first pass here, flagged encrypted but
		// plain and without a key TLV, which MCUboot cannot boot; an
		// encrypted image is what was asked for.
		plainOpts := opts
		plainOpts.Compression = CompressionNone
		return signPlain(payload, key, plainOpts)
	}
	// imgtool fills the compressed image's header room as it filled the
	// plain one's (load_compressed): the erased value with --pad-header,
	// zeros without, so both hashes cover the same padding bytes.
	buf := make([]byte, hs, hs+len(comp)+1024)
	if !opts.HeaderIncluded {
		fill(buf, erased)
	}
	buf = append(buf, comp...)
	var extra []byte
	extra = appendTLV(extra, TLVDecompSize, binary.LittleEndian.AppendUint32(nil, uint32(len(body))))
	extra = appendTLV(extra, TLVDecompSHA, plain.Hash)
	if sig != nil {
		extra = appendTLV(extra, TLVDecompSignature, sig)
	}
	if opts.Encrypt != nil {
		// The compressed stream is padded to the AES block: COMP_DEC_SIZE
		// says where it ends (imgtool's keep_comp_size).
		extra = appendTLV(extra, TLVCompDecSize, binary.LittleEndian.AppendUint32(nil, uint32(len(comp))))
	}
	flags := uint32(FlagCompressedLZMA2)
	if opts.Compression == CompressionLZMA2ARMThumb {
		flags |= FlagCompressedARMThm
	}
	return assemble(buf, hs, erased, key, kt, opts, flags, extra)
}

// encryptPayload encrypts payload in place under a new random AES key and
// appends to tlv the key TLV that carries it wrapped for opts.Encrypt.
func encryptPayload(payload, tlv []byte, opts SignOptions) ([]byte, error) {
	t, err := EncryptKeyType(opts.Encrypt, opts.HMACSHA512)
	if err != nil {
		return nil, err
	}
	aesKey := make([]byte, 16)
	if opts.EncryptKeyLen == 256 {
		aesKey = make([]byte, 32)
	}
	if _, err := rand.Read(aesKey); err != nil {
		return nil, err
	}
	w, err := wrapKey(opts.Encrypt, t, aesKey)
	if err != nil {
		return nil, fmt.Errorf("wrap the payload key: %w", err)
	}
	c, err := NewPayloadCipher(Header{HeaderSize: 0, ImageSize: uint32(len(payload))}, aesKey)
	if err != nil {
		return nil, err
	}
	c.XORKeyStreamAt(payload, payload, 0)
	return appendTLV(tlv, t, w), nil
}

// SignDigest signs a SHA-256 digest as an image's signature is made, so
// that an image key can sign otaport's other documents (a key set) with the
// same algorithms the bootloader checks; VerifyDigest checks it.
func SignDigest(key crypto.Signer, digest []byte) ([]byte, error) { return signDigest(key, digest) }

// signDigest signs as MCUboot verifies: ed25519 over the digest as the
// message, ECDSA over the digest (DER), RSA-PSS with a 32-byte salt.
func signDigest(key crypto.Signer, digest []byte) ([]byte, error) {
	switch key.Public().(type) {
	case ed25519.PublicKey:
		return key.Sign(rand.Reader, digest, crypto.Hash(0))
	case *ecdsa.PublicKey:
		return key.Sign(rand.Reader, digest, crypto.SHA256)
	case *rsa.PublicKey:
		return key.Sign(rand.Reader, digest, &rsa.PSSOptions{SaltLength: pssSaltLength, Hash: crypto.SHA256})
	}
	return nil, fmt.Errorf("key type %T cannot sign MCUboot images", key.Public())
}

func appendTLV(b []byte, t TLVType, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(t))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// appendInfo prefixes the TLV entries in body with their info header.
func appendInfo(body []byte, magic uint16) []byte {
	out := binary.LittleEndian.AppendUint16(make([]byte, 0, len(body)+tlvInfoSize), magic)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(body)+tlvInfoSize))
	return append(out, body...)
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

func allBytes(b []byte, v byte) bool {
	for _, c := range b {
		if c != v {
			return false
		}
	}
	return true
}
