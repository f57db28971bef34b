package delta

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Buffer sizes of the decoder. They are the decoder's only buffers: with the
// models they make StateSize, whatever the size of the images.
const (
	patchBufSize = 4096 // coded bytes read ahead from the patch
	baseBufSize  = 4096 // a window of the base, read with ReadAt
	outBufSize   = 4096 // target bytes gathered before a Write
)

// StateSize is the decoder's working memory in bytes: the models, the three
// buffers and the counters, digests and coder words beside them (an upper
// bound of 512 bytes for those). It is what a C applier needs besides its
// erase-sector buffer.
func StateSize() int {
	return binary.Size(models{}) + patchBufSize + baseBufSize + outBufSize + 512
}

// patchSource feeds the range decoder from the patch, one block's coded
// bytes at a time, and counts what it consumed so a checkpoint can name the
// patch offset to resume from.
type patchSource struct {
	r        io.Reader
	buf      [patchBufSize]byte
	start    int
	end      int
	left     int64 // coded bytes of the current block not yet consumed
	consumed int64 // patch bytes consumed in all
	overrun  bool  // the coder wanted bytes past the block's end
	err      error
}

// fill reads at most limit bytes: never more than the header or the
// block being decoded needs, so that between two blocks the decoder has
// read exactly PatchOffset bytes of the patch. A caller that feeds the
// patch from its own stream (the engine, from a download it hashes) can
// then checkpoint that stream at the same byte as the decoder.
func (s *patchSource) fill(limit int64) bool {
	if s.err != nil {
		return false
	}
	n, err := s.r.Read(s.buf[:min(int64(len(s.buf)), max(limit, 1))])
	s.start, s.end = 0, n
	if n == 0 {
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.err = err
		return false
	}
	return true
}

// read reads exactly len(p) raw bytes (headers), outside any block.
func (s *patchSource) read(p []byte) error {
	for len(p) > 0 {
		if s.start == s.end && !s.fill(int64(len(p))) {
			return s.err
		}
		n := copy(p, s.buf[s.start:s.end])
		s.start += n
		s.consumed += int64(n)
		p = p[n:]
	}
	return nil
}

func (s *patchSource) readByte() byte {
	if s.left == 0 {
		s.overrun = true
		return 0
	}
	if s.start == s.end && !s.fill(s.left) {
		s.left = 0
		return 0
	}
	s.left--
	s.consumed++
	b := s.buf[s.start]
	s.start++
	return b
}

// skip consumes what is left of the block's coded bytes.
func (s *patchSource) skip() error {
	for s.left > 0 {
		if s.start == s.end && !s.fill(s.left) {
			return s.err
		}
		n := min(int64(s.end-s.start), s.left)
		s.start += int(n)
		s.left -= n
		s.consumed += n
	}
	return s.err
}

// Decoder applies a patch as it streams: the patch is read once, in order;
// the base is read at random through an io.ReaderAt (the running slot); the
// target is written in order to an io.Writer (the update slot).
type Decoder struct {
	h      Header
	src    patchSource
	base   io.ReaderAt
	out    io.Writer
	st     state
	rc     rcDecoder
	win    [baseBufSize]byte
	winOff int64
	winLen int
	obuf   [outBufSize]byte
	on     int
	sha    hash.Hash
	block  int64 // the next block to decode
	crc    uint32
}

// NewDecoder reads the patch header and returns a decoder positioned at the
// first block.
func NewDecoder(patch io.Reader, base io.ReaderAt, target io.Writer) (*Decoder, error) {
	d := &Decoder{base: base, out: target, sha: sha256.New()}
	d.src.r = patch
	var hb [HeaderSize]byte
	if err := d.src.read(hb[:]); err != nil {
		return nil, fmt.Errorf("read patch header: %w", err)
	}
	h, err := ParseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	d.h = h
	return d, nil
}

// Header returns the patch's header.
func (d *Decoder) Header() Header { return d.h }

// TargetOffset is the bytes of target written so far: where the target
// writer must be positioned when resuming from a checkpoint taken now.
func (d *Decoder) TargetOffset() int64 { return min(d.block*d.h.BlockSize(), int64(d.h.TargetSize)) }

// PatchOffset is the bytes of patch consumed so far: where the patch reader
// given to Resume must start.
func (d *Decoder) PatchOffset() int64 { return d.src.consumed }

// Done reports whether every block has been applied and the target checked.
func (d *Decoder) Done() bool { return d.block == d.h.Blocks() }

// Next decodes one block and writes its target bytes. It returns io.EOF once
// the last block is written and the target's SHA-256 matches the header.
// Between two calls the decoder can be checkpointed.
func (d *Decoder) Next(ctx context.Context) error {
	if d.Done() {
		return io.EOF
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.decodeBlock(); err != nil {
		return fmt.Errorf("apply block %d of %d: %w", d.block, d.h.Blocks(), err)
	}
	d.block++
	if !d.Done() {
		return nil
	}
	var sum [32]byte
	if got := d.sha.Sum(sum[:0]); [32]byte(got) != d.h.TargetHash {
		return fmt.Errorf("apply: target SHA-256 %x, the patch declares %x: %w", got, d.h.TargetHash, ErrCorrupt)
	}
	return io.EOF
}

// Apply applies a whole patch.
func Apply(ctx context.Context, patch io.Reader, base io.ReaderAt, target io.Writer) error {
	d, err := NewDecoder(patch, base, target)
	if err != nil {
		return err
	}
	return d.Run(ctx)
}

// Run decodes the remaining blocks.
func (d *Decoder) Run(ctx context.Context) error {
	for {
		if err := d.Next(ctx); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func (d *Decoder) decodeBlock() error {
	var bh [blockHeaderSize]byte
	if err := d.src.read(bh[:]); err != nil {
		return fmt.Errorf("read block header: %w", err)
	}
	d.src.left = int64(binary.LittleEndian.Uint32(bh[:]))
	d.src.overrun = false
	wantCRC := binary.LittleEndian.Uint32(bh[4:])
	d.crc = 0
	d.st.reset()
	if !d.rc.init(&d.src) {
		return fmt.Errorf("block's coded bytes do not start with 0: %w", ErrCorrupt)
	}

	blockStart := d.block * d.h.BlockSize()
	remaining := d.h.blockLen(d.block)
	pos := blockStart // target offset
	oldPos := int64(0)
	for remaining > 0 {
		seek, ok := d.st.codeSeek(&d.rc, 0)
		if !ok {
			return fmt.Errorf("seek at target 0x%x: length out of range: %w", pos, ErrCorrupt)
		}
		oldPos += seek
		dl, ok := codeUint(&d.rc, &d.st.m.ints[intDiffLen], 0)
		if !ok || int64(dl) > remaining || oldPos < 0 || oldPos+int64(dl) > int64(d.h.BaseSize) {
			return fmt.Errorf("copy of %d bytes from base 0x%x at target 0x%x: outside the base (%d bytes) or the block (%d left): %w",
				dl, oldPos, pos, d.h.BaseSize, remaining, ErrCorrupt)
		}
		for k := int64(0); k < int64(dl); k++ {
			b, err := d.baseByte(oldPos + k)
			if err != nil {
				return err
			}
			if d.h.Filter == FilterXtensa && k+3 <= int64(dl) && isCall0(b) {
				done, err := d.call0(oldPos+k, pos)
				if err != nil {
					return err
				}
				if done {
					k += 2
					pos += 3
					continue
				}
			}
			if d.h.Filter == FilterXtensa && k+4 <= int64(dl) {
				done, err := d.ptr(oldPos+k, pos)
				if err != nil {
					return err
				}
				if done {
					k += 3
					pos += 4
					continue
				}
			}
			if err := d.emit(b + d.st.codeDiff(&d.rc, 0, b, pos)); err != nil {
				return err
			}
			pos++
		}
		oldPos += int64(dl)
		remaining -= int64(dl)
		xl, ok := codeUint(&d.rc, &d.st.m.ints[intExtraLen], 0)
		if !ok || int64(xl) > remaining || dl == 0 && xl == 0 {
			return fmt.Errorf("literal of %d bytes at target 0x%x: empty or longer than the block's %d bytes left: %w",
				xl, pos, remaining, ErrCorrupt)
		}
		for k := int64(0); k < int64(xl); k++ {
			if err := d.emit(d.st.codeExtra(&d.rc, 0)); err != nil {
				return err
			}
			pos++
		}
		remaining -= int64(xl)
		if d.src.err != nil {
			return fmt.Errorf("read patch: %w", d.src.err)
		}
		if d.src.overrun {
			return fmt.Errorf("block's coded bytes end before its target does: %w", ErrCorrupt)
		}
	}
	if err := d.src.skip(); err != nil {
		return fmt.Errorf("read patch: %w", err)
	}
	if err := d.flush(); err != nil {
		return err
	}
	if d.crc != wantCRC {
		return fmt.Errorf("target CRC-32 0x%08x, block declares 0x%08x: %w", d.crc, wantCRC, ErrCorrupt)
	}
	return nil
}

// call0 decodes a CALL0 at target offset p from the one at base offset q;
// false when the target holds something else there.
func (d *Decoder) call0(q, p int64) (bool, error) {
	if !d.st.codeCallIs(&d.rc, false) {
		return false, nil
	}
	var ins [3]byte
	if err := d.baseBytes(q, ins[:]); err != nil {
		return false, err
	}
	m, ok := d.st.codeCallMove(&d.rc, 0)
	if !ok {
		return false, fmt.Errorf("call at target 0x%x: move out of range: %w", p, ErrCorrupt)
	}
	for _, b := range call0Apply(ins[:], q, m, p) {
		if err := d.emit(b); err != nil {
			return false, err
		}
	}
	return true, nil
}

// ptr decodes a pointer at target offset p from the base word at q, when the
// base holds a pointer there and the patch codes it as moved.
func (d *Decoder) ptr(q, p int64) (bool, error) {
	var w [4]byte
	if err := d.baseBytes(q, w[:]); err != nil {
		return false, err
	}
	if !isPtr(w[:]) || !d.st.codePtrIs(&d.rc, false) {
		return false, nil
	}
	m, ok := d.st.codePtrMove(&d.rc, 0)
	if !ok {
		return false, fmt.Errorf("pointer at target 0x%x: move out of range: %w", p, ErrCorrupt)
	}
	v := word(w[:]) + uint32(m)
	for _, b := range [4]byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} {
		if err := d.emit(b); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (d *Decoder) baseBytes(q int64, dst []byte) error {
	for i := range dst {
		b, err := d.baseByte(q + int64(i))
		if err != nil {
			return err
		}
		dst[i] = b
	}
	return nil
}

func (d *Decoder) baseByte(p int64) (byte, error) {
	if p < d.winOff || p >= d.winOff+int64(d.winLen) {
		n := int(min(int64(baseBufSize), int64(d.h.BaseSize)-p))
		got, err := d.base.ReadAt(d.win[:n], p)
		if got < n {
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return 0, fmt.Errorf("read base at 0x%x: %w", p, err)
		}
		d.winOff, d.winLen = p, n
	}
	return d.win[p-d.winOff], nil
}

func (d *Decoder) emit(b byte) error {
	d.obuf[d.on] = b
	d.on++
	if d.on == outBufSize {
		return d.flush()
	}
	return nil
}

func (d *Decoder) flush() error {
	if d.on == 0 {
		return nil
	}
	p := d.obuf[:d.on]
	d.crc = crc32.Update(d.crc, crc32.IEEETable, p)
	d.sha.Write(p)
	d.on = 0
	if _, err := d.out.Write(p); err != nil {
		return fmt.Errorf("write target: %w", err)
	}
	return nil
}

// Checkpoint magic and bounds.
var checkpointMagic = [4]byte{'O', 'T', 'D', 'C'}

// MaxCheckpointSize bounds a serialized checkpoint.
const MaxCheckpointSize = 4096

// Checkpoint returns the decoder's state between two blocks, to persist and
// resume from with Resume. It holds the patch header, the next block, the
// patch and target offsets and the target digest's state; about 240 bytes.
func (d *Decoder) Checkpoint() ([]byte, error) {
	hs, err := d.sha.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("checkpoint: target digest: %w", err)
	}
	hb, _ := d.h.MarshalBinary()
	b := append([]byte{}, checkpointMagic[:]...)
	b = append(b, hb...)
	b = binary.LittleEndian.AppendUint32(b, uint32(d.block))
	b = binary.LittleEndian.AppendUint64(b, uint64(d.src.consumed))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hs)))
	b = append(b, hs...)
	b = binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b))
	return b, nil
}

// Resume rebuilds a decoder from a checkpoint. patch must yield the patch
// from the checkpoint's PatchOffset on, and target must take bytes from its
// TargetOffset on.
func Resume(checkpoint []byte, patch io.Reader, base io.ReaderAt, target io.Writer) (*Decoder, error) {
	b := checkpoint
	const fixed = 4 + HeaderSize + 4 + 8 + 2
	if len(b) < fixed+4 || len(b) > MaxCheckpointSize || [4]byte(b[:4]) != checkpointMagic {
		return nil, fmt.Errorf("resume: checkpoint of %d bytes is not a delta checkpoint: %w", len(b), ErrCorrupt)
	}
	body := b[:len(b)-4]
	if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.ChecksumIEEE(body); got != want {
		return nil, fmt.Errorf("resume: checkpoint CRC-32 0x%08x, computed 0x%08x (torn write?): %w", got, want, ErrCorrupt)
	}
	h, err := ParseHeader(body[4:])
	if err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	p := body[4+HeaderSize:]
	block := int64(binary.LittleEndian.Uint32(p))
	consumed := int64(binary.LittleEndian.Uint64(p[4:]))
	hl := int(binary.LittleEndian.Uint16(p[12:]))
	if len(p) != 14+hl || block > h.Blocks() || consumed < HeaderSize {
		return nil, fmt.Errorf("resume: checkpoint fields out of range (block %d of %d): %w", block, h.Blocks(), ErrCorrupt)
	}
	d := &Decoder{h: h, base: base, out: target, sha: sha256.New(), block: block}
	if err := d.sha.(encoding.BinaryUnmarshaler).UnmarshalBinary(p[14:]); err != nil {
		return nil, fmt.Errorf("resume: target digest state: %w: %w", err, ErrCorrupt)
	}
	d.src.r = patch
	d.src.consumed = consumed
	return d, nil
}

// CheckBase refuses a base whose SHA-256 is not the one the patch was made
// against, naming both, before any byte is written.
func (h Header) CheckBase(sum [32]byte) error {
	if sum != h.BaseHash {
		return fmt.Errorf("the patch's base has SHA-256 %x but the base given has %x: %w", h.BaseHash, sum, ErrWrongBase)
	}
	return nil
}

// ErrWrongBase is returned when a patch is applied to another base than the
// one it was made against.
var ErrWrongBase = errors.New("wrong base for patch")
