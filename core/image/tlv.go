package image

import (
	"encoding/binary"
	"fmt"
)

// TLV info header magics: the protected area's is covered by the hash, the
// unprotected one's is not.
const (
	TLVInfoMagic          = 0x6907
	TLVProtectedInfoMagic = 0x6908
	tlvInfoSize           = 4
	tlvHeaderSize         = 4
)

// TLVType is the type of one TLV entry (it_type).
type TLVType uint16

// TLV types from MCUboot's image.h.
const (
	TLVKeyHash         TLVType = 0x01
	TLVPubKey          TLVType = 0x02
	TLVSHA256          TLVType = 0x10
	TLVSHA384          TLVType = 0x11
	TLVSHA512          TLVType = 0x12
	TLVRSA2048PSS      TLVType = 0x20
	TLVECDSASig        TLVType = 0x22
	TLVRSA3072PSS      TLVType = 0x23
	TLVEd25519         TLVType = 0x24
	TLVSigPure         TLVType = 0x25
	TLVEncRSA2048      TLVType = 0x30
	TLVEncKW           TLVType = 0x31
	TLVEncEC256        TLVType = 0x32
	TLVEncX25519       TLVType = 0x33
	TLVEncX25519SHA512 TLVType = 0x34
	TLVDependency      TLVType = 0x40
	TLVSecCnt          TLVType = 0x50
	TLVBootRecord      TLVType = 0x60
	TLVDecompSize      TLVType = 0x70
	TLVDecompSHA       TLVType = 0x71
	TLVDecompSignature TLVType = 0x72
	TLVCompDecSize     TLVType = 0x73
	TLVUUIDVID         TLVType = 0x74
	TLVUUIDCID         TLVType = 0x75
)

var tlvNames = map[TLVType]string{
	TLVKeyHash:         "KEYHASH",
	TLVPubKey:          "PUBKEY",
	TLVSHA256:          "SHA256",
	TLVSHA384:          "SHA384",
	TLVSHA512:          "SHA512",
	TLVRSA2048PSS:      "RSA2048_PSS",
	TLVECDSASig:        "ECDSA_SIG",
	TLVRSA3072PSS:      "RSA3072_PSS",
	TLVEd25519:         "ED25519",
	TLVSigPure:         "SIG_PURE",
	TLVEncRSA2048:      "ENC_RSA2048",
	TLVEncKW:           "ENC_KW",
	TLVEncEC256:        "ENC_EC256",
	TLVEncX25519:       "ENC_X25519",
	TLVEncX25519SHA512: "ENC_X25519_SHA512",
	TLVDependency:      "DEPENDENCY",
	TLVSecCnt:          "SEC_CNT",
	TLVBootRecord:      "BOOT_RECORD",
	TLVDecompSize:      "DECOMP_SIZE",
	TLVDecompSHA:       "DECOMP_SHA",
	TLVDecompSignature: "DECOMP_SIGNATURE",
	TLVCompDecSize:     "COMP_DEC_SIZE",
	TLVUUIDVID:         "UUID_VID",
	TLVUUIDCID:         "UUID_CID",
	TLVDeltaBase:       "OTAPORT_DELTA_BASE",
	TLVDeltaTargetSize: "OTAPORT_DELTA_TARGET_SIZE",
	TLVDeltaTargetSHA:  "OTAPORT_DELTA_TARGET_SHA",
	TLVDeltaTargetSig:  "OTAPORT_DELTA_TARGET_SIG",
}

// String is MCUboot's name for t without the IMAGE_TLV_ prefix, or its
// number for a vendor type.
func (t TLVType) String() string {
	if n, ok := tlvNames[t]; ok {
		return n
	}
	return fmt.Sprintf("0x%04x", uint16(t))
}

// IsSignature reports whether t holds a signature.
func (t TLVType) IsSignature() bool {
	switch t {
	case TLVRSA2048PSS, TLVECDSASig, TLVRSA3072PSS, TLVEd25519:
		return true
	}
	return false
}

func (t TLVType) isHash() bool {
	return t == TLVSHA256 || t == TLVSHA384 || t == TLVSHA512
}

// KeyType is the key type (as GenerateKey and board descriptions name it)
// that makes signatures of type t, or "" if t is not a signature.
// ECDSA_SIG is also used by P-384 keys, which otaport does not support.
func (t TLVType) KeyType() string {
	switch t {
	case TLVEd25519:
		return KeyEd25519
	case TLVECDSASig:
		return KeyECDSAP256
	case TLVRSA2048PSS:
		return KeyRSA2048
	case TLVRSA3072PSS:
		return KeyRSA3072
	}
	return ""
}

// TLV is one entry of a TLV area.
type TLV struct {
	Type TLVType
	// Offset is where the value starts, from the start of the image.
	Offset int64
	Value  []byte
}

// parseArea decodes the TLV area whose info header is at the start of b, at
// image offset base. It returns the entries and the area's total length.
func parseArea(b []byte, base int64, protected bool) ([]TLV, int, error) {
	area, magic := "unprotected TLV area", uint16(TLVInfoMagic)
	if protected {
		area, magic = "protected TLV area", TLVProtectedInfoMagic
	}
	if len(b) < tlvInfoSize {
		return nil, 0, fmt.Errorf("%s at 0x%x: info header needs %d bytes, %d left: %w", area, base, tlvInfoSize, len(b), ErrTruncated)
	}
	le := binary.LittleEndian
	if got := le.Uint16(b); got != magic {
		return nil, 0, fmt.Errorf("%s at 0x%x: magic 0x%04x, want 0x%04x: %w", area, base, got, magic, ErrMalformed)
	}
	total := int(le.Uint16(b[2:]))
	if total < tlvInfoSize {
		return nil, 0, fmt.Errorf("%s at 0x%x: length %d is smaller than its own info header: %w", area, base, total, ErrMalformed)
	}
	if total > len(b) {
		return nil, 0, fmt.Errorf("%s at 0x%x: length %d runs past the end of the data (0x%x): %w", area, base, total, base+int64(len(b)), ErrTruncated)
	}
	var tlvs []TLV
	for off := tlvInfoSize; off < total; {
		if total-off < tlvHeaderSize {
			return nil, 0, fmt.Errorf("%s at 0x%x: %d stray bytes at 0x%x, too short for a TLV header: %w", area, base, total-off, base+int64(off), ErrMalformed)
		}
		t := TLVType(le.Uint16(b[off:]))
		n := int(le.Uint16(b[off+2:]))
		start := off + tlvHeaderSize
		if n > total-start {
			return nil, 0, fmt.Errorf("%s at 0x%x: TLV %s at 0x%x has length %d, past the area's end at 0x%x: %w", area, base, t, base+int64(off), n, base+int64(total), ErrMalformed)
		}
		tlvs = append(tlvs, TLV{Type: t, Offset: base + int64(start), Value: b[start : start+n : start+n]})
		off = start + n
	}
	return tlvs, total, nil
}
