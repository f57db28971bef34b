package image

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// Compression names, as imgtool's --compression takes them.
const (
	CompressionNone          = ""
	CompressionLZMA2         = "lzma2"
	CompressionLZMA2ARMThumb = "lzma2armthumb"
)

// compressionFlags are the header flags of a compressed image.
const compressionFlags = FlagCompressedLZMA1 | FlagCompressedLZMA2 | FlagCompressedARMThm

// The LZMA2 settings imgtool compresses with (comp_default_* in its
// main.py): a 128 KiB dictionary, so that the bootloader's decoder fits a
// microcontroller's RAM, lc 3, lp 1 (Thumb code is 2-byte aligned), pb 2.
const (
	lzmaDictSize = 128 << 10
	lzmaLC       = 3
	lzmaLP       = 1
	lzmaPB       = 2
)

// maxDictSize bounds the dictionary a compressed image may ask for: the
// decoder allocates it whole, before the first byte, and MCUboot's own
// decoder has far less RAM than this.
const maxDictSize = 16 << 20

// Compressed is what the protected TLVs of a compressed image
// (COMPRESSED_LZMA2) say of the plain image the bootloader boots from it.
type Compressed struct {
	// ARMThumb says the payload went through the ARM-Thumb BCJ filter
	// before LZMA2 (imgtool --compression lzma2armthumb).
	ARMThumb bool
	// Size is DECOMP_SIZE: the plain payload's size, header and TLVs
	// excluded.
	Size uint32
	// SHA is DECOMP_SHA: the hash of the plain image (header, header
	// padding, payload, protected TLVs), the SHA256 TLV it carries.
	SHA []byte
	// Signature is DECOMP_SIGNATURE, the plain image's signature; nil in
	// an unsigned image.
	Signature []byte
	// StreamSize is COMP_DEC_SIZE: the size of the compressed stream,
	// its 2-byte header included, which an encrypted image pads with
	// zeros to the AES block; 0 when the image has none.
	StreamSize uint32
}

// Method is the compression's name, as imgtool's --compression takes it.
func (c *Compressed) Method() string {
	if c.ARMThumb {
		return CompressionLZMA2ARMThumb
	}
	return CompressionLZMA2
}

// checkCompressionFlags refuses flag combinations no tool writes and no
// bootloader accepts (boot_check_header_valid in bootutil_loader.c).
func checkCompressionFlags(h Header) error {
	f := h.Flags
	switch {
	case f&FlagCompressedLZMA1 != 0 && f&FlagCompressedLZMA2 != 0:
		return fmt.Errorf("image header: flags %s: both LZMA1 and LZMA2 compression, which MCUboot refuses: %w", h.FlagString(), ErrMalformed)
	case f&FlagCompressedARMThm != 0 && f&FlagCompressedLZMA2 == 0:
		return fmt.Errorf("image header: flags %s: the ARM-Thumb filter without LZMA2 compression: %w", h.FlagString(), ErrMalformed)
	}
	return nil
}

// isDecompTLV reports whether t describes the plain image of a compressed
// one: these TLVs are dropped when the image is decompressed.
func isDecompTLV(t TLVType) bool {
	return t == TLVDecompSize || t == TLVDecompSHA || t == TLVDecompSignature || t == TLVCompDecSize
}

// interpretCompression fills img.Compressed from the protected TLVs and
// checks them against the header flags, as the bootloader does before it
// decompresses (bootutil_img_validate wants all three in the protected
// area).
func (img *Image) interpretCompression() error {
	at := func(t TLV) int64 { return t.Offset - tlvHeaderSize }
	for _, t := range img.TLVs {
		if isDecompTLV(t.Type) {
			return fmt.Errorf("TLV %s at 0x%x: in the unprotected TLV area, where the hash does not cover it: %w", t.Type, at(t), ErrMalformed)
		}
	}
	h := img.Header
	if h.Flags&FlagCompressedLZMA2 == 0 {
		for _, t := range img.ProtectedTLVs {
			if t.Type == TLVDecompSize || t.Type == TLVDecompSHA || t.Type == TLVDecompSignature {
				return fmt.Errorf("TLV %s at 0x%x: describes a decompressed image, but the header flags (%s) say the payload is not compressed: %w", t.Type, at(t), h.FlagString(), ErrMalformed)
			}
		}
		return nil
	}
	c := &Compressed{ARMThumb: h.Flags&FlagCompressedARMThm != 0}
	var haveSize bool
	for _, t := range img.ProtectedTLVs {
		var dup bool
		switch t.Type {
		case TLVDecompSize:
			if len(t.Value) != 4 {
				return fmt.Errorf("TLV DECOMP_SIZE at 0x%x: length %d, want 4: %w", at(t), len(t.Value), ErrMalformed)
			}
			dup, haveSize = haveSize, true
			c.Size = binary.LittleEndian.Uint32(t.Value)
		case TLVDecompSHA:
			dup, c.SHA = c.SHA != nil, t.Value
		case TLVDecompSignature:
			dup, c.Signature = c.Signature != nil, t.Value
		case TLVCompDecSize:
			if len(t.Value) != 4 {
				return fmt.Errorf("TLV COMP_DEC_SIZE at 0x%x: length %d, want 4: %w", at(t), len(t.Value), ErrMalformed)
			}
			dup = c.StreamSize != 0
			c.StreamSize = binary.LittleEndian.Uint32(t.Value)
			if c.StreamSize > h.ImageSize || h.ImageSize-c.StreamSize > maxStreamPad(h) {
				return fmt.Errorf("TLV COMP_DEC_SIZE at 0x%x: %d, but the payload (ih_img_size) is %d bytes: %w", at(t), c.StreamSize, h.ImageSize, ErrMalformed)
			}
		}
		if dup {
			return fmt.Errorf("TLV %s at 0x%x: a second one: %w", t.Type, at(t), ErrMalformed)
		}
	}
	switch {
	case h.ImageSize < 2:
		return fmt.Errorf("compressed payload: ih_img_size %d, too small for the 2-byte LZMA2 header: %w", h.ImageSize, ErrMalformed)
	case !haveSize:
		return fmt.Errorf("compressed image (flags %s): no DECOMP_SIZE TLV in the protected area: %w", h.FlagString(), ErrMalformed)
	case c.SHA == nil:
		return fmt.Errorf("compressed image (flags %s): no DECOMP_SHA TLV in the protected area: %w", h.FlagString(), ErrMalformed)
	case len(c.SHA) != len(img.Hash):
		return fmt.Errorf("TLV DECOMP_SHA: length %d, but the image's hash %s is %d bytes: %w", len(c.SHA), img.HashType, len(img.Hash), ErrMalformed)
	case img.Signature != 0 && c.Signature == nil:
		return fmt.Errorf("compressed image signed with %s: no DECOMP_SIGNATURE TLV for the decompressed image: %w", img.Signature, ErrMalformed)
	case int64(c.Size)+int64(h.HeaderSize) > int64(^uint32(0)):
		return fmt.Errorf("TLV DECOMP_SIZE: %d bytes do not fit a 32-bit image: %w", c.Size, ErrMalformed)
	}
	img.Compressed = c
	return nil
}

// maxStreamPad is how many zero bytes may follow the LZMA2 stream in the
// payload: up to an AES block in an encrypted image, none otherwise.
func maxStreamPad(h Header) uint32 {
	if h.Flags&encryptionFlags != 0 {
		return 15
	}
	return 0
}

// lzma2Header is the 2-byte header imgtool puts before the raw LZMA2
// stream (create_lzma2_header in its main.py): the dictionary size code of
// xz's LZMA2 filter properties, then the lc/lp/pb byte.
func lzma2Header(dict, lc, lp, pb int) [2]byte {
	var code byte
	for code = 0; code < 40; code++ {
		if dict <= dictSizeOf(code) {
			break
		}
	}
	return [2]byte{code, byte((pb*5+lp)*9 + lc)}
}

// dictSizeOf decodes an LZMA2 dictionary size code (xz's .xz format
// specification, 5.3.1); 40 is 4 GiB - 1.
func dictSizeOf(code byte) int {
	if code >= 40 {
		return 1<<32 - 1
	}
	return (2 | int(code&1)) << (code/2 + 11)
}

// PayloadReader returns a reader of the plain payload of a compressed image
// with header h, given r, the compressed payload: ih_img_size bytes, the
// 2-byte LZMA2 header first. It reads no more of r than that and fails when
// the LZMA2 stream ends before those bytes do, or they end before it.
func PayloadReader(h Header, r io.Reader) (io.Reader, error) {
	if h.Flags&FlagCompressedLZMA2 == 0 {
		return nil, fmt.Errorf("image flags %s: the payload is not LZMA2-compressed: %w", h.FlagString(), ErrMalformed)
	}
	if h.ImageSize < 2 {
		return nil, fmt.Errorf("compressed payload: ih_img_size %d, too small for the 2-byte LZMA2 header: %w", h.ImageSize, ErrMalformed)
	}
	lr := &io.LimitedReader{R: r, N: int64(h.ImageSize)}
	var hdr [2]byte
	if _, err := io.ReadFull(lr, hdr[:]); err != nil {
		return nil, fmt.Errorf("compressed payload: LZMA2 header: %w", truncated(err))
	}
	if hdr[0] > 40 || dictSizeOf(hdr[0]) > maxDictSize {
		return nil, fmt.Errorf("compressed payload at 0x%x: dictionary size code 0x%02x asks for more than the %d MiB otaport allows (imgtool uses 0x%02x, 128 KiB): %w",
			h.HeaderSize, hdr[0], maxDictSize>>20, lzma2Header(lzmaDictSize, 0, 0, 0)[0], ErrMalformed)
	}
	p, err := lzma.PropertiesForCode(hdr[1])
	if err != nil || p.LC+p.LP > 4 {
		return nil, fmt.Errorf("compressed payload at 0x%x: LZMA properties byte 0x%02x: want lc+lp <= 4 and pb <= 4: %w", h.HeaderSize+1, hdr[1], ErrMalformed)
	}
	br := bufio.NewReaderSize(lr, 16<<10)
	dec, err := lzma.Reader2Config{DictCap: max(dictSizeOf(hdr[0]), lzma.MinDictCap)}.NewReader2(br)
	if err != nil {
		return nil, fmt.Errorf("compressed payload: LZMA2 decoder: %w", err)
	}
	var out io.Reader = &payloadReader{h: h, dec: dec, lr: lr, br: br}
	if h.Flags&FlagCompressedARMThm != 0 {
		out = newThumbDecoder(out)
	}
	return out, nil
}

// payloadReader checks, when the LZMA2 stream ends, that it ended where
// the payload does.
type payloadReader struct {
	h   Header
	dec *lzma.Reader2
	lr  *io.LimitedReader
	br  *bufio.Reader
	err error
}

func (p *payloadReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n, err := p.dec.Read(b)
	switch {
	case err == io.EOF:
		if rest := p.lr.N + int64(p.br.Buffered()); rest != 0 && !p.zeroPad(rest) {
			err = fmt.Errorf("compressed payload: the LZMA2 stream ends %d bytes before the payload (ih_img_size %d): %w", rest, p.h.ImageSize, ErrMalformed)
		}
	case err != nil:
		if p.lr.N == 0 && p.br.Buffered() == 0 && errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("compressed payload: the LZMA2 stream goes on past the payload's %d bytes: %w", p.h.ImageSize, ErrTruncated)
		} else {
			err = fmt.Errorf("compressed payload: LZMA2: %v: %w", err, ErrMalformed)
		}
	}
	p.err = err
	return n, err
}

// zeroPad reports whether the rest bytes left after the LZMA2 stream are
// the zero padding of an encrypted image, reading them.
func (p *payloadReader) zeroPad(rest int64) bool {
	if rest > int64(maxStreamPad(p.h)) {
		return false
	}
	b, err := io.ReadAll(p.br)
	return err == nil && int64(len(b)) == rest && allBytes(b, 0)
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// PlainLayout returns what the bootloader writes around the decompressed
// payload (boot_copy_region_decompress in the nRF Connect SDK's MCUboot,
// the one bootloader that decompresses): the header with the compression
// flags cleared, ih_img_size = DECOMP_SIZE and the protected area without
// the DECOMP_* TLVs; that protected area; and the unprotected area with
// the hash replaced by DECOMP_SHA and the signature by DECOMP_SIGNATURE.
// The header padding is not in it: see Decompress.
func (img *Image) PlainLayout() (Header, []byte, []byte, error) {
	c := img.Compressed
	if c == nil {
		return Header{}, nil, nil, fmt.Errorf("image flags %s: not a compressed image: %w", img.Header.FlagString(), ErrMalformed)
	}
	h := img.Header
	h.Flags &^= compressionFlags
	h.ImageSize = c.Size
	var prot []byte
	for _, t := range img.ProtectedTLVs {
		if !isDecompTLV(t.Type) {
			prot = appendTLV(prot, t.Type, t.Value)
		}
	}
	if prot != nil {
		prot = appendInfo(prot, TLVProtectedInfoMagic)
	}
	if len(prot) > maxTLVArea {
		return Header{}, nil, nil, fmt.Errorf("protected TLV area of the decompressed image: %d bytes: %w", len(prot), ErrMalformed)
	}
	h.ProtectedTLVSize = uint16(len(prot))
	var tlv []byte
	signed := false
	for _, t := range img.TLVs {
		v := t.Value
		switch {
		case isEncTLV(t.Type):
			continue // imgtool's plain pass carries no wrapped key
		case t.Type.isHash():
			v = c.SHA
		case t.Type.IsSignature() && signed:
			continue // DECOMP_SIGNATURE is one signature
		case t.Type.IsSignature():
			v, signed = c.Signature, true
		}
		tlv = appendTLV(tlv, t.Type, v)
	}
	tlv = appendInfo(tlv, TLVInfoMagic)
	if len(tlv) > maxTLVArea {
		return Header{}, nil, nil, fmt.Errorf("unprotected TLV area of the decompressed image: %d bytes: %w", len(tlv), ErrMalformed)
	}
	return h, prot, tlv, nil
}

// PlainImage is the structure of the image img decompresses to, from its
// TLVs alone: its Hash is DECOMP_SHA and its TotalSize the bytes the update
// slot holds once it is decompressed there.
func (img *Image) PlainImage() (*Image, error) {
	h, prot, tlv, err := img.PlainLayout()
	if err != nil {
		return nil, err
	}
	p, err := parseTail(h, append(prot, tlv...))
	if err != nil {
		return nil, fmt.Errorf("decompressed image: %w", err)
	}
	return p, nil
}

// Decompress writes to w the plain image of the compressed image img,
// which Parse or Verify read from r: the rebuilt header, the compressed
// image's own header padding (imgtool hashed the same padding in both
// passes: the erased value with --pad-header, the input's zeros without),
// the decompressed payload and the rebuilt TLV areas (see PlainLayout). It
// checks the payload's size against DECOMP_SIZE but no hash: see Verify.
func Decompress(r io.ReaderAt, img *Image, w io.Writer) (*Image, error) {
	h, prot, tlv, err := img.PlainLayout()
	if err != nil {
		return nil, err
	}
	head := make([]byte, img.Header.HeaderSize)
	if err := readFull(r, head, 0); err != nil {
		return nil, fmt.Errorf("read image header: %w", err)
	}
	h.put(head)
	if _, err := w.Write(head); err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	body, err := PayloadReader(img.Header, io.NewSectionReader(r, int64(img.Header.HeaderSize), int64(img.Header.ImageSize)))
	if err != nil {
		return nil, err
	}
	want := int64(img.Compressed.Size)
	n, err := io.Copy(w, io.LimitReader(body, want+1))
	if err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	if n != want {
		return nil, fmt.Errorf("compressed payload: decompresses to %d bytes, DECOMP_SIZE says %d: %w", n, want, ErrMalformed)
	}
	// The stream must also end here: a reader past DECOMP_SIZE errs.
	if _, err := body.Read(make([]byte, 1)); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("compressed payload: decompresses to more than DECOMP_SIZE (%d bytes): %w", want, ErrMalformed)
		}
		return nil, err
	}
	if _, err := w.Write(append(prot, tlv...)); err != nil {
		return nil, fmt.Errorf("decompress: %w", err)
	}
	p, err := parseTail(h, append(prot, tlv...))
	if err != nil {
		return nil, fmt.Errorf("decompressed image: %w", err)
	}
	return p, nil
}

// checkDecompressed decompresses img and checks the plain image's hash
// against DECOMP_SHA and, with keys, DECOMP_SIGNATURE: what the bootloader
// checks before it copies the image (bootutil_img_hash_decompress).
func (img *Image) checkDecompressed(r io.ReaderAt, ks keySet) (*Image, error) {
	plain, err := img.PlainImage()
	if err != nil {
		return nil, err
	}
	hw := &hashWriter{h: sha256.New(), n: plain.Header.HashedSize()}
	if _, err := Decompress(r, img, hw); err != nil {
		return nil, err
	}
	if err := plain.check(hw.h.Sum(nil), ks); err != nil {
		return plain, fmt.Errorf("decompressed image (DECOMP_SHA, DECOMP_SIGNATURE): %w", err)
	}
	return plain, nil
}

// hashWriter hashes the first n bytes written to it and drops the rest.
type hashWriter struct {
	h hash.Hash
	n int64
}

func (w *hashWriter) Write(p []byte) (int, error) {
	k := min(int64(len(p)), w.n)
	w.h.Write(p[:k])
	w.n -= k
	return len(p), nil
}

// compressPayload compresses body as imgtool does: the ARM-Thumb filter
// first when thumb, then raw LZMA2 with imgtool's settings, behind the
// 2-byte LZMA2 header.
func compressPayload(body []byte, thumb bool) ([]byte, error) {
	if thumb {
		body = bytes.Clone(body)
		thumbEncode(body)
	}
	hdr := lzma2Header(lzmaDictSize, lzmaLC, lzmaLP, lzmaPB)
	out := bytes.NewBuffer(append(make([]byte, 0, len(body)/2+64), hdr[:]...))
	w, err := lzma.Writer2Config{
		Properties: &lzma.Properties{LC: lzmaLC, LP: lzmaLP, PB: lzmaPB},
		DictCap:    lzmaDictSize,
		// Not lzma.BinaryTree: in v0.5.17 its output fails to decode
		// ("writeMatch: distance out of range") on Thumb code.
		Matcher: lzma.HashTable4,
	}.NewWriter2(out)
	if err != nil {
		return nil, fmt.Errorf("LZMA2 encoder: %w", err)
	}
	if _, err := w.Write(body); err != nil {
		return nil, fmt.Errorf("LZMA2 encoder: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("LZMA2 encoder: %w", err)
	}
	return out.Bytes(), nil
}
