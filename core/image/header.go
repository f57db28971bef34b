package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Magic is ih_magic, the first word of every MCUboot image.
const Magic = 0x96f3b83d

// HeaderSize is the size of the fixed part of the header. The payload starts
// at Header.HeaderSize, which is at least this and usually 0x200 so that the
// vector table that follows stays aligned.
const HeaderSize = 32

// Header flags (ih_flags), as MCUboot's image.h defines them.
const (
	FlagPIC              = 0x00000001
	FlagEncryptedAES128  = 0x00000004
	FlagEncryptedAES256  = 0x00000008
	FlagNonBootable      = 0x00000010
	FlagRAMLoad          = 0x00000020
	FlagROMFixed         = 0x00000100
	FlagCompressedLZMA1  = 0x00000200
	FlagCompressedLZMA2  = 0x00000400
	FlagCompressedARMThm = 0x00000800
)

var flagNames = []struct {
	bit  uint32
	name string
}{
	{FlagPIC, "PIC"},
	{FlagEncryptedAES128, "ENCRYPTED_AES128"},
	{FlagEncryptedAES256, "ENCRYPTED_AES256"},
	{FlagNonBootable, "NON_BOOTABLE"},
	{FlagRAMLoad, "RAM_LOAD"},
	{FlagROMFixed, "ROM_FIXED"},
	{FlagCompressedLZMA1, "COMPRESSED_LZMA1"},
	{FlagCompressedLZMA2, "COMPRESSED_LZMA2"},
	{FlagCompressedARMThm, "COMPRESSED_ARM_THUMB"},
	{FlagDelta, "OTAPORT_DELTA"},
}

// FlagNames lists the names of the flags set in f, unknown bits as hex.
func FlagNames(f uint32) []string {
	var out []string
	for _, fl := range flagNames {
		if f&fl.bit != 0 {
			out = append(out, fl.name)
			f &^= fl.bit
		}
	}
	if f != 0 {
		out = append(out, fmt.Sprintf("0x%x", f))
	}
	return out
}

// Header is the MCUboot image header (struct image_header), little-endian.
type Header struct {
	Magic uint32
	// LoadAddr is where a RAM_LOAD image is copied before it runs, or the
	// flash address of a ROM_FIXED image.
	LoadAddr uint32
	// HeaderSize is ih_hdr_size: the offset of the payload.
	HeaderSize uint16
	// ProtectedTLVSize is the size of the protected TLV area, its 4-byte
	// info header included, or 0 when there is none.
	ProtectedTLVSize uint16
	// ImageSize is the size of the payload alone.
	ImageSize uint32
	Flags     uint32
	Version   Version
}

// HashedSize is how many bytes from the start of the image the SHA-256
// covers: header, payload and protected TLV area. The unprotected TLV area
// starts there.
func (h Header) HashedSize() int64 {
	return int64(h.HeaderSize) + int64(h.ImageSize) + int64(h.ProtectedTLVSize)
}

// PayloadEnd is the offset of the first TLV area.
func (h Header) PayloadEnd() int64 {
	return int64(h.HeaderSize) + int64(h.ImageSize)
}

// FlagString names the set flags, "none" if there are none.
func (h Header) FlagString() string {
	if h.Flags == 0 {
		return "none"
	}
	return strings.Join(FlagNames(h.Flags), "|")
}

// ParseHeader decodes the first 32 bytes of b and checks the magic and the
// header size. It does not look past the header.
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("image header: %d bytes, need %d: %w", len(b), HeaderSize, ErrTruncated)
	}
	le := binary.LittleEndian
	h := Header{
		Magic:            le.Uint32(b[0:]),
		LoadAddr:         le.Uint32(b[4:]),
		HeaderSize:       le.Uint16(b[8:]),
		ProtectedTLVSize: le.Uint16(b[10:]),
		ImageSize:        le.Uint32(b[12:]),
		Flags:            le.Uint32(b[16:]),
		Version: Version{
			Major:    b[20],
			Minor:    b[21],
			Revision: le.Uint16(b[22:]),
			Build:    le.Uint32(b[24:]),
		},
	}
	if h.Magic != Magic {
		if le.Uint32(b[0:]) == 0xffffffff || le.Uint32(b[0:]) == 0 {
			return h, fmt.Errorf("image header: magic 0x%08x (erased flash?), want 0x%08x: %w", h.Magic, uint32(Magic), ErrNoImage)
		}
		return h, fmt.Errorf("image header: magic 0x%08x, want 0x%08x; is this a raw binary that still needs signing (otaimg sign)?: %w", h.Magic, uint32(Magic), ErrMalformed)
	}
	if h.HeaderSize < HeaderSize {
		return h, fmt.Errorf("image header: ih_hdr_size %d is smaller than the %d-byte header: %w", h.HeaderSize, HeaderSize, ErrMalformed)
	}
	if h.ProtectedTLVSize != 0 && h.ProtectedTLVSize < tlvInfoSize {
		return h, fmt.Errorf("image header: ih_protect_tlv_size %d is smaller than a TLV info header (%d): %w", h.ProtectedTLVSize, tlvInfoSize, ErrMalformed)
	}
	return h, checkCompressionFlags(h)
}

// Marshal encodes h as the 32 bytes of struct image_header.
func (h Header) Marshal() []byte {
	b := make([]byte, HeaderSize)
	h.put(b)
	return b
}

func (h Header) put(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], h.Magic)
	le.PutUint32(b[4:], h.LoadAddr)
	le.PutUint16(b[8:], h.HeaderSize)
	le.PutUint16(b[10:], h.ProtectedTLVSize)
	le.PutUint32(b[12:], h.ImageSize)
	le.PutUint32(b[16:], h.Flags)
	b[20] = h.Version.Major
	b[21] = h.Version.Minor
	le.PutUint16(b[22:], h.Version.Revision)
	le.PutUint32(b[24:], h.Version.Build)
	le.PutUint32(b[28:], 0)
}

// Errors callers branch on. Each error returned by this package wraps one of
// them and says, in its text, which field or offset was wrong.
var (
	// ErrNoImage: the bytes read as erased flash, not an image.
	ErrNoImage = errors.New("no image")
	// ErrTruncated: the data ends before the structure the header announces.
	ErrTruncated = errors.New("image truncated")
	// ErrMalformed: a field is out of range or inconsistent.
	ErrMalformed = errors.New("malformed image")
	// ErrUnsupported: a well-formed image this package cannot verify
	// (encrypted, another hash, another signature scheme).
	ErrUnsupported = errors.New("unsupported image")
	// ErrHashMismatch: the SHA-256 of header, payload and protected TLVs
	// differs from the one the image carries: corrupt or tampered.
	ErrHashMismatch = errors.New("image hash mismatch")
	// ErrUnsigned: keys were given but the image has no signature.
	ErrUnsigned = errors.New("image not signed")
	// ErrUnknownKey: the image is signed, but by a key that is not one of
	// those given.
	ErrUnknownKey = errors.New("image signed by an unknown key")
	// ErrBadSignature: the signature does not verify with the key it names.
	ErrBadSignature = errors.New("bad image signature")
	// ErrAlgorithm: the image is signed, but with another algorithm than
	// the one asked for (a board's image.signature).
	ErrAlgorithm = errors.New("image signed with another algorithm")
	// ErrTooLarge: the header announces an image larger than the stream
	// verifier's limit (the slot it is written to).
	ErrTooLarge = errors.New("image too large")
)
