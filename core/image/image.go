package image

import (
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// maxTLVArea bounds an unprotected TLV area: its length field is 16 bits.
const maxTLVArea = 0xffff

// Image is the structure of a parsed image. Values in TLVs alias the bytes
// Parse read, not the caller's reader.
type Image struct {
	Header  Header
	Version Version
	// TotalSize is header + payload + both TLV areas: the bytes a download
	// carries and a slot must hold (before any trailer).
	TotalSize int64
	// ProtectedTLVs and TLVs are the entries of the protected and the
	// unprotected area, in image order.
	ProtectedTLVs []TLV
	TLVs          []TLV
	// HashType is the hash TLV found (TLVSHA256 for images otaport makes),
	// Hash its value.
	HashType TLVType
	Hash     []byte
	// KeyHash is the KEYHASH TLV (the SHA-256 of the signing key's public
	// bytes, see KeyHash), PublicKey the PUBKEY TLV; imgtool writes one of
	// the two when it signs.
	KeyHash   []byte
	PublicKey []byte
	// Signature is the type of the first signature TLV, 0 if unsigned.
	Signature TLVType
	// SecurityCounter is the SEC_CNT TLV, 0 when HasSecurityCounter is
	// false; MCUboot refuses an image whose counter is below the one the
	// device stores.
	SecurityCounter    uint32
	HasSecurityCounter bool
	// Signer is the key that verified the signature; nil from Parse and
	// from a hash-only verification.
	Signer crypto.PublicKey
	// Compressed is set when the payload is LZMA2-compressed (flag
	// COMPRESSED_LZMA2): what its DECOMP_* TLVs say of the plain image.
	Compressed *Compressed
	// Dependencies are the DEPENDENCY TLVs: other images of the device (by
	// MCUboot's image index) that must run at least a version before this
	// one may (imgtool sign -d).
	Dependencies []Dependency
	// Encryption is set when the header flags say the payload is AES-CTR
	// encrypted (ENCRYPTED_AES128 or _AES256): the key size and the TLV
	// carrying the wrapped key.
	Encryption *Encryption
	// Delta is set when the image is an otaport delta (flag OTAPORT_DELTA):
	// what its TLVs say of the base and the target.
	Delta *Delta
}

// Parse reads the structure of the image in the first size bytes of r:
// header, payload bounds and both TLV areas. It checks no hash or signature
// (see Verify). size may exceed the image, as with a padded image or a whole
// flash slot; the bytes past TotalSize are not read.
func Parse(r io.ReaderAt, size int64) (*Image, error) {
	if size < HeaderSize {
		return nil, fmt.Errorf("image header: %d bytes, need %d: %w", max(size, 0), HeaderSize, ErrTruncated)
	}
	hb := make([]byte, HeaderSize)
	if err := readFull(r, hb, 0); err != nil {
		return nil, fmt.Errorf("read image header: %w", err)
	}
	h, err := ParseHeader(hb)
	if err != nil {
		return nil, err
	}
	end := h.PayloadEnd()
	if end > size {
		return nil, fmt.Errorf("image payload: header says it ends at 0x%x (ih_hdr_size 0x%x + ih_img_size 0x%x) but the data is 0x%x bytes: %w",
			end, h.HeaderSize, h.ImageSize, size, ErrTruncated)
	}
	// Read what the TLV areas take, not the 64 KiB they could: the
	// protected area and the unprotected area's info header first, then
	// the length that header gives. A port parses each slot's image at
	// every boot and keeps it, so the bytes read are both garbage and,
	// through the TLV values that point into them, memory kept.
	avail := size - end
	p := int64(h.ProtectedTLVSize)
	tail := make([]byte, min(avail, p+tlvInfoSize))
	if err := readFull(r, tail, end); err != nil {
		return nil, fmt.Errorf("read TLV areas at 0x%x: %w", end, err)
	}
	if int64(len(tail)) == p+tlvInfoSize && binary.LittleEndian.Uint16(tail[p:]) == TLVInfoMagic {
		total := min(avail, p+int64(binary.LittleEndian.Uint16(tail[p+2:])))
		if total > int64(len(tail)) {
			tail = append(tail, make([]byte, total-int64(len(tail)))...)
			if err := readFull(r, tail[p+tlvInfoSize:], end+p+tlvInfoSize); err != nil {
				return nil, fmt.Errorf("read TLV areas at 0x%x: %w", end, err)
			}
		}
	}
	return parseTail(h, tail)
}

// ParseTail is Parse for a reader that has the header and the bytes that
// follow the payload (tail: both TLV areas, possibly more) but not the
// payload: the engine reads a delta image's base hash this way, ahead of
// the stream, to refuse a delta for another base before it writes a byte.
// Like Parse, it checks no hash or signature.
func ParseTail(h Header, tail []byte) (*Image, error) { return parseTail(h, tail) }

func readFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("%d of %d bytes at 0x%x: %w", n, len(b), off, ErrTruncated)
	}
	return err
}

// parseTail decodes the TLV areas from tail, the bytes that follow the
// payload (possibly more than the areas take).
func parseTail(h Header, tail []byte) (*Image, error) {
	img := &Image{Header: h, Version: h.Version}
	end := h.PayloadEnd()
	off := 0
	if len(tail) >= 2 && binary.LittleEndian.Uint16(tail) == TLVProtectedInfoMagic && h.ProtectedTLVSize == 0 {
		return nil, fmt.Errorf("protected TLV area at 0x%x: present but the header's ih_protect_tlv_size is 0: %w", end, ErrMalformed)
	}
	if h.ProtectedTLVSize != 0 {
		p := int(h.ProtectedTLVSize)
		if p > len(tail) {
			return nil, fmt.Errorf("protected TLV area at 0x%x: header says %d bytes, only %d follow the payload: %w", end, p, len(tail), ErrTruncated)
		}
		tlvs, total, err := parseArea(tail[:p], end, true)
		if err != nil {
			return nil, err
		}
		if total != p {
			return nil, fmt.Errorf("protected TLV area at 0x%x: length %d, header's ih_protect_tlv_size %d: %w", end, total, p, ErrMalformed)
		}
		img.ProtectedTLVs = tlvs
		off = p
	}
	tlvs, total, err := parseArea(tail[off:], end+int64(off), false)
	if err != nil {
		return nil, err
	}
	img.TLVs = tlvs
	img.TotalSize = end + int64(off) + int64(total)
	if err := img.interpret(); err != nil {
		return nil, err
	}
	return img, nil
}

// interpret fills the fields that come from TLVs and refuses entries in the
// wrong area: a security counter outside the hash could be rewritten at
// will, and a hash or signature inside it would have to cover itself.
func (img *Image) interpret() error {
	for _, t := range img.ProtectedTLVs {
		switch {
		case t.Type.isHash(), t.Type.IsSignature(), t.Type == TLVKeyHash, t.Type == TLVPubKey, t.Type == TLVSigPure:
			return fmt.Errorf("TLV %s at 0x%x: in the protected TLV area, which the hash covers; it belongs in the unprotected area: %w", t.Type, t.Offset-tlvHeaderSize, ErrMalformed)
		case t.Type == TLVDependency:
			d, err := parseDependency(t.Value)
			if err != nil {
				return fmt.Errorf("TLV DEPENDENCY at 0x%x: %w", t.Offset-tlvHeaderSize, err)
			}
			img.Dependencies = append(img.Dependencies, d)
		case t.Type == TLVSecCnt:
			if img.HasSecurityCounter {
				return fmt.Errorf("TLV SEC_CNT at 0x%x: a second security counter: %w", t.Offset-tlvHeaderSize, ErrMalformed)
			}
			if len(t.Value) != 4 {
				return fmt.Errorf("TLV SEC_CNT at 0x%x: length %d, want 4: %w", t.Offset-tlvHeaderSize, len(t.Value), ErrMalformed)
			}
			img.SecurityCounter = binary.LittleEndian.Uint32(t.Value)
			img.HasSecurityCounter = true
		}
	}
	for _, t := range img.TLVs {
		switch {
		case t.Type == TLVSecCnt, t.Type == TLVDependency, t.Type == TLVBootRecord:
			return fmt.Errorf("TLV %s at 0x%x: in the unprotected TLV area, where the hash does not cover it: %w", t.Type, t.Offset-tlvHeaderSize, ErrMalformed)
		case t.Type.isHash():
			if img.HashType != 0 {
				return fmt.Errorf("TLV %s at 0x%x: a second hash (already %s): %w", t.Type, t.Offset-tlvHeaderSize, img.HashType, ErrMalformed)
			}
			want := map[TLVType]int{TLVSHA256: 32, TLVSHA384: 48, TLVSHA512: 64}[t.Type]
			if len(t.Value) != want {
				return fmt.Errorf("TLV %s at 0x%x: length %d, want %d: %w", t.Type, t.Offset-tlvHeaderSize, len(t.Value), want, ErrMalformed)
			}
			img.HashType, img.Hash = t.Type, t.Value
		case t.Type == TLVKeyHash:
			if img.KeyHash == nil {
				img.KeyHash = t.Value
			}
		case t.Type == TLVPubKey:
			if img.PublicKey == nil {
				img.PublicKey = t.Value
			}
		case t.Type.IsSignature():
			if img.Signature == 0 {
				img.Signature = t.Type
			}
		}
	}
	if img.HashType == 0 {
		return fmt.Errorf("unprotected TLV area at 0x%x: no SHA256 TLV, so the image cannot be checked: %w", img.Header.HashedSize(), ErrMalformed)
	}
	if err := img.interpretEncryption(); err != nil {
		return err
	}
	if err := img.interpretDelta(); err != nil {
		return err
	}
	return img.interpretCompression()
}

// Find returns the first TLV of type t in either area.
func (img *Image) Find(t TLVType) (TLV, bool) {
	for _, area := range [][]TLV{img.ProtectedTLVs, img.TLVs} {
		for _, v := range area {
			if v.Type == t {
				return v, true
			}
		}
	}
	return TLV{}, false
}
