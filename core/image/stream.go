package image

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
)

// StreamVerifier checks an image as it is written, in order, in chunks of
// any size: it hashes the bytes as they pass and keeps only the header and
// the TLV areas, so a download can go to flash without a second read of the
// payload. Its state can be saved with MarshalBinary and restored with
// UnmarshalBinary, so a download resumed after a restart does not hash the
// part already written again.
//
// Bytes written past the end of the image (a padded image, the slot
// trailer) are counted and ignored.
type StreamVerifier struct {
	keys    keySet
	maxSize int64
	h       hash.Hash
	n       int64 // bytes written so far
	hdr     [HeaderSize]byte
	header  Header
	ready   bool   // header parsed
	tail    []byte // bytes from the end of the payload on, up to total
	total   int64  // 0 until the unprotected TLV info header has arrived
	err     error  // sticky: a stream that went wrong stays wrong
	sum     [sha256.Size]byte
	// dec is the encryption the payload written was decrypted from; nil
	// when it arrives as the image carries it.
	dec *Encryption
}

// SetDecrypted says that the payload is written decrypted, with the AES
// key wrapped in e (the image's key TLV, read ahead of the stream): Finish
// then checks the hash over the plain payload, as the image's hash is,
// and that the image's key TLV is e's. Call it before the first payload
// byte, and again on a verifier restored with UnmarshalBinary.
func (v *StreamVerifier) SetDecrypted(e *Encryption) { v.dec = e }

// checkDecrypted checks the encryption of the streamed image against
// SetDecrypted's.
func (v *StreamVerifier) checkDecrypted(img *Image) error {
	switch e := img.Encryption; {
	case e == nil && v.dec == nil:
		return nil
	case e == nil:
		return fmt.Errorf("image flags %s: not encrypted, but the payload was decrypted as if it were: %w", img.Header.FlagString(), ErrMalformed)
	case v.dec == nil:
		return img.errEncrypted()
	case e.KeyTLV != v.dec.KeyTLV || !bytes.Equal(e.Wrapped, v.dec.Wrapped) || e.KeyLen != v.dec.KeyLen:
		return fmt.Errorf("TLV %s: not the wrapped key the payload was decrypted with (read ahead of the stream): the image changed during the download: %w", e.KeyTLV, ErrHashMismatch)
	}
	return nil
}

// NewStreamVerifier returns a verifier that checks the hash and, when keys
// are given, a signature by one of them (as Verify does).
func NewStreamVerifier(keys []crypto.PublicKey) (*StreamVerifier, error) {
	ks, err := newKeySet(keys)
	if err != nil {
		return nil, err
	}
	return &StreamVerifier{keys: ks, h: sha256.New()}, nil
}

// SetMaxSize makes Write refuse, with ErrTooLarge, an image whose header
// announces more than n bytes (header, payload, protected TLVs and the
// smallest unprotected area) or whose TLV areas take it past n: the engine
// sets it to the slot size so that it stops before writing what cannot fit.
// 0 means no limit.
func (v *StreamVerifier) SetMaxSize(n int64) {
	v.maxSize = n
	if v.ready && v.err == nil {
		need := v.header.HashedSize() + tlvInfoSize
		if v.total != 0 {
			need = v.total
		}
		v.err = v.checkSize(need)
	}
}

func (v *StreamVerifier) checkSize(need int64) error {
	if v.maxSize > 0 && need > v.maxSize {
		return fmt.Errorf("image needs at least 0x%x bytes, the limit is 0x%x: %w", need, v.maxSize, ErrTooLarge)
	}
	return nil
}

// Header returns the image header once the first 32 bytes have been
// written and they parse.
func (v *StreamVerifier) Header() (Header, bool) { return v.header, v.ready }

// Written is the number of bytes written so far, past the image end
// included: the offset at which a resumed download continues.
func (v *StreamVerifier) Written() int64 { return v.n }

// Size is the total image size (Image.TotalSize), known once the
// unprotected TLV info header has been written.
func (v *StreamVerifier) Size() (int64, bool) { return v.total, v.total != 0 }

// Done reports whether the whole image has been written.
func (v *StreamVerifier) Done() bool { return v.total != 0 && v.n >= v.total }

// Write consumes the next bytes of the image. It fails as soon as the
// header or a TLV info header is malformed, or the image exceeds the size
// limit; after an error every call returns it.
func (v *StreamVerifier) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	done := 0
	for len(p) > 0 {
		k, err := v.step(p)
		done += k
		p = p[k:]
		if err != nil {
			v.err = err
			return done, err
		}
	}
	return done, nil
}

// step consumes a prefix of p that lies within one region (header, payload,
// TLV bytes before the sizes are known, the rest) and returns its length.
func (v *StreamVerifier) step(p []byte) (int, error) {
	if !v.ready {
		k := copy(v.hdr[v.n:], p)
		v.h.Write(p[:k])
		v.n += int64(k)
		if v.n < HeaderSize {
			return k, nil
		}
		h, err := ParseHeader(v.hdr[:])
		if err != nil {
			return k, err
		}
		v.header, v.ready = h, true
		if err := v.checkSize(h.HashedSize() + tlvInfoSize); err != nil {
			return k, err
		}
		v.tail = make([]byte, 0, int(h.ProtectedTLVSize)+tlvInfoSize)
		return k, nil
	}
	payloadEnd, hashedEnd := v.header.PayloadEnd(), v.header.HashedSize()
	k := int64(len(p))
	if v.n < payloadEnd {
		k = min(k, payloadEnd-v.n)
	} else if v.total == 0 {
		k = min(k, int64(cap(v.tail)-len(v.tail)))
	}
	chunk := p[:k]
	if v.n < hashedEnd {
		v.h.Write(chunk[:min(k, hashedEnd-v.n)])
	}
	if v.n >= payloadEnd {
		keep := k
		if v.total != 0 {
			keep = max(0, min(k, v.total-v.n))
		}
		v.tail = append(v.tail, chunk[:keep]...)
	}
	v.n += k
	if v.total == 0 && v.n >= payloadEnd && len(v.tail) == cap(v.tail) {
		return int(k), v.learnTotal()
	}
	return int(k), nil
}

// learnTotal reads the unprotected TLV info header, now in the tail, and
// makes room for the area it announces.
func (v *StreamVerifier) learnTotal() error {
	prot := int(v.header.ProtectedTLVSize)
	info := v.tail[prot:]
	off := v.header.HashedSize()
	if m := binary.LittleEndian.Uint16(info); m != TLVInfoMagic {
		if prot == 0 && m == TLVProtectedInfoMagic {
			return fmt.Errorf("protected TLV area at 0x%x: present but the header's ih_protect_tlv_size is 0: %w", v.header.PayloadEnd(), ErrMalformed)
		}
		return fmt.Errorf("unprotected TLV area at 0x%x: magic 0x%04x, want 0x%04x: %w", off, m, TLVInfoMagic, ErrMalformed)
	}
	n := int64(binary.LittleEndian.Uint16(info[2:]))
	if n < tlvInfoSize {
		return fmt.Errorf("unprotected TLV area at 0x%x: length %d is smaller than its own info header: %w", off, n, ErrMalformed)
	}
	v.total = off + n
	if err := v.checkSize(v.total); err != nil {
		return err
	}
	t := make([]byte, len(v.tail), v.total-v.header.PayloadEnd())
	copy(t, v.tail)
	v.tail = t
	return nil
}

// Finish checks the image once all of it has been written: structure, the
// SHA-256 against the SHA256 TLV and the signature. It reads nothing back.
// Errors are those of Verify. Of a compressed image it checks the image as
// sent, not DECOMP_SHA or DECOMP_SIGNATURE (see the package comment).
func (v *StreamVerifier) Finish() (*Image, error) {
	if v.err != nil {
		return nil, v.err
	}
	if !v.ready {
		return nil, fmt.Errorf("image header: stream ended after %d bytes, need %d: %w", v.n, HeaderSize, ErrTruncated)
	}
	if v.total == 0 || v.n < v.total {
		want := "the TLV areas"
		if v.total != 0 {
			want = fmt.Sprintf("0x%x bytes", v.total)
		}
		return nil, fmt.Errorf("image stream ended at 0x%x, before %s (payload ends at 0x%x): %w", v.n, want, v.header.PayloadEnd(), ErrTruncated)
	}
	img, err := parseTail(v.header, v.tail)
	if err != nil {
		return nil, err
	}
	if err := img.checkSupported(); err != nil {
		return img, err
	}
	if err := v.checkDecrypted(img); err != nil {
		return img, err
	}
	return img, img.check(v.h.Sum(v.sum[:0]), v.keys)
}

// Saved state layout, little-endian: magic "otavs1", bytes written (8),
// total (8), hash state (length 2 + bytes), header bytes so far (1 +
// bytes), tail (4 + bytes), CRC-32 (IEEE) of all that precedes it.
var streamMagic = []byte("otavs1")

// MarshalBinary saves the verifier's progress: the hash state and the
// header and TLV bytes gathered so far. Keys and the size limit are not
// saved; they come from the verifier UnmarshalBinary is called on.
func (v *StreamVerifier) MarshalBinary() ([]byte, error) {
	if v.err != nil {
		return nil, fmt.Errorf("save stream verifier: stream already failed: %w", v.err)
	}
	hs, err := v.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("save stream verifier hash: %w", err)
	}
	hdr := v.hdr[:min(v.n, HeaderSize)]
	b := make([]byte, 0, len(streamMagic)+8+8+2+len(hs)+1+len(hdr)+4+len(v.tail)+4)
	b = append(b, streamMagic...)
	b = binary.LittleEndian.AppendUint64(b, uint64(v.n))
	b = binary.LittleEndian.AppendUint64(b, uint64(v.total))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hs)))
	b = append(b, hs...)
	b = append(b, byte(len(hdr)))
	b = append(b, hdr...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v.tail)))
	b = append(b, v.tail...)
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// errState marks saved state that cannot be restored.
var errState = errors.New("bad stream verifier state")

// UnmarshalBinary restores progress saved by MarshalBinary, checking that
// it is intact and consistent; on error v is unchanged.
func (v *StreamVerifier) UnmarshalBinary(b []byte) error {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("restore stream verifier: %s; restart the download from 0: %w", fmt.Sprintf(why, args...), errState)
	}
	if len(b) < len(streamMagic)+4 || !bytes.Equal(b[:len(streamMagic)], streamMagic) {
		return bad("not a saved verifier state")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.ChecksumIEEE(body) != sum {
		return bad("checksum mismatch (torn or corrupt write)")
	}
	r := body[len(streamMagic):]
	take := func(n int) ([]byte, bool) {
		if n < 0 || len(r) < n {
			return nil, false
		}
		out := r[:n]
		r = r[n:]
		return out, true
	}
	f, ok := take(18)
	if !ok {
		return bad("truncated")
	}
	n := int64(binary.LittleEndian.Uint64(f))
	total := int64(binary.LittleEndian.Uint64(f[8:]))
	hs, ok := take(int(binary.LittleEndian.Uint16(f[16:])))
	if !ok {
		return bad("truncated hash state")
	}
	hl, ok := take(1)
	if !ok {
		return bad("truncated")
	}
	hdr, ok := take(int(hl[0]))
	if !ok {
		return bad("truncated header")
	}
	tl, ok := take(4)
	if !ok {
		return bad("truncated")
	}
	tail, ok := take(int(binary.LittleEndian.Uint32(tl)))
	if !ok || len(r) != 0 {
		return bad("tail length does not match the state size")
	}
	if n < 0 || total < 0 || int64(len(hdr)) != min(n, HeaderSize) {
		return bad("offset %d and %d header bytes disagree", n, len(hdr))
	}

	nv := StreamVerifier{keys: v.keys, maxSize: v.maxSize, h: sha256.New(), n: n, total: total, dec: v.dec}
	if err := nv.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(hs); err != nil {
		return bad("hash state: %v", err)
	}
	copy(nv.hdr[:], hdr)
	if n >= HeaderSize {
		h, err := ParseHeader(nv.hdr[:])
		if err != nil {
			return bad("saved header: %v", err)
		}
		nv.header, nv.ready = h, true
		payloadEnd, infoEnd := h.PayloadEnd(), h.HashedSize()+tlvInfoSize
		capacity := infoEnd - payloadEnd
		switch {
		case total == 0 && n >= infoEnd:
			return bad("offset 0x%x is past the TLV info header but the total size is unknown", n)
		case total != 0 && (total < infoEnd || total > infoEnd+maxTLVArea):
			return bad("total size 0x%x does not fit the header", total)
		case total != 0:
			capacity = total - payloadEnd
		}
		if want := max(0, min(n, payloadEnd+capacity)-payloadEnd); int64(len(tail)) != want {
			return bad("%d TLV bytes saved, offset 0x%x needs %d", len(tail), n, want)
		}
		if total != 0 {
			p := h.ProtectedTLVSize
			if n < infoEnd || binary.LittleEndian.Uint16(tail[p:]) != TLVInfoMagic ||
				h.HashedSize()+int64(binary.LittleEndian.Uint16(tail[p+2:])) != total {
				return bad("total size 0x%x does not match the saved TLV info header", total)
			}
		}
		nv.tail = make([]byte, len(tail), capacity)
		copy(nv.tail, tail)
	} else if total != 0 || len(tail) != 0 {
		return bad("TLV bytes saved before the header is complete")
	}
	*v = nv
	return nil
}
