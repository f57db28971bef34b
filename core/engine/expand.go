package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// expander writes the plain image of a compressed download into the update
// slot as the compressed bytes arrive, so that the slot holds what the
// bootloader boots: MCUboot's bootloaders do not decompress a slot (only
// the nRF Connect SDK's does, into the primary slot, and only on swap).
// The slot gets, as that bootloader writes it (boot_copy_region_decompress):
// the header with the compression flags cleared and the plain sizes, the
// header padding, the decompressed payload, the protected TLVs without the
// DECOMP_* ones, and the unprotected TLVs with DECOMP_SHA and
// DECOMP_SIGNATURE as hash and signature. Unlike that bootloader it copies
// the compressed image's own header padding rather than leaving it erased:
// imgtool hashed that padding into DECOMP_SHA, so the slot verifies on any
// flash whatever the padding's value.
//
// The header depends on TLVs at the end of the stream, so the first block
// of the slot is written last: a download cut short leaves no header, and
// the slot reads as empty.
//
// The LZMA2 decoder's state cannot be saved, so a compressed download is
// not checkpointed: after an interruption it starts over from byte 0.
type expander struct {
	pw   *io.PipeWriter
	done chan struct{}
	err  error // the decoding goroutine's, read after done
	// bad is a decoding error: it is reported only once the stream
	// verifier found the image authentic, so that a changed payload is
	// named as such (a hash mismatch) and not by what the decoder made
	// of it.
	bad  error
	sw   *slotWriter
	body int64 // plain payload bytes written
}

// errExpanderStopped ends the decoding goroutine when the download stops.
var errExpanderStopped = errors.New("download stopped")

// newExpander starts the goroutine that decodes what write gives it into
// the slot; finish or stop ends it.
func newExpander(ctx context.Context, p hal.Platform, dev device, chunk int) *expander {
	pr, pw := io.Pipe()
	x := &expander{pw: pw, done: make(chan struct{}),
		sw: &slotWriter{ctx: ctx, p: p, slot: dev.update.Name, max: dev.maxSize, chunk: chunk}}
	go func() {
		defer close(x.done)
		x.err = x.run(pr)
		if x.err != nil {
			pr.CloseWithError(x.err)
		}
	}()
	return x
}

// run decodes the compressed image read from r: header room, payload, and
// the TLV areas, which it drops (the stream verifier has them).
func (x *expander) run(r io.Reader) error {
	hb := make([]byte, image.HeaderSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		return err
	}
	h, err := image.ParseHeader(hb)
	if err != nil {
		x.bad = fmt.Errorf("%w: %w", ErrVerify, err)
		return drain(r)
	}
	room := make([]byte, h.HeaderSize)
	copy(room, hb)
	if _, err := io.ReadFull(r, room[image.HeaderSize:]); err != nil {
		return err
	}
	if _, err := x.sw.Write(room); err != nil {
		return unwrapSlot(err)
	}
	body, err := image.PayloadReader(h, r)
	if err == nil {
		x.body, err = io.Copy(x.sw, body)
	}
	var se slotError
	switch {
	case errors.As(err, &se):
		return se.err
	case err != nil:
		x.bad = fmt.Errorf("%w: decompress: %w", ErrVerify, err)
	}
	return drain(r)
}

// drain reads r to its end: the rest of the stream, which the stream
// verifier checks.
func drain(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

// write hands the next bytes of the compressed image to the decoder; it
// returns once they are decoded (and what they decode to is in the slot or
// buffered).
func (x *expander) write(p []byte) error {
	if _, err := x.pw.Write(p); err != nil {
		return err
	}
	return nil
}

// stop ends the decoding goroutine of a download that failed.
func (x *expander) stop() {
	x.pw.CloseWithError(errExpanderStopped)
	<-x.done
}

// finish completes the slot once the stream verifier has checked the
// compressed image img: it writes the rebuilt TLV areas, then the first
// block with the rebuilt header, and returns the plain image's structure
// (its Hash is DECOMP_SHA, which the read-back of the slot checks).
func (x *expander) finish(img *image.Image) (*image.Image, error) {
	x.pw.Close()
	<-x.done
	if x.err != nil {
		return nil, x.err
	}
	if x.bad != nil {
		return nil, x.bad
	}
	h, prot, tlv, err := img.PlainLayout()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	if x.body != int64(img.Compressed.Size) {
		return nil, fmt.Errorf("%w: compressed payload decompresses to %d bytes, its DECOMP_SIZE says %d", ErrVerify, x.body, img.Compressed.Size)
	}
	if _, err := x.sw.Write(append(prot, tlv...)); err != nil {
		return nil, unwrapSlot(err)
	}
	if err := x.sw.finish(h.Marshal()); err != nil {
		return nil, err
	}
	plain, err := img.PlainImage()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrVerify, err)
	}
	return plain, nil
}

// slotWriter writes a stream to the update slot in blocks of chunk bytes
// (a multiple of the write alignment), holding the first block back until
// finish gives it its header.
type slotWriter struct {
	ctx   context.Context
	p     hal.Platform
	slot  string
	max   int64
	chunk int
	buf   []byte // bytes from off on, not yet written
	off   int64
	head  []byte // the first block, once complete
}

// slotError marks an error of the port, so that it is not taken for a
// decoding error on its way through io.Copy.
type slotError struct{ err error }

func (e slotError) Error() string { return e.err.Error() }
func (e slotError) Unwrap() error { return e.err }

func unwrapSlot(err error) error {
	var se slotError
	if errors.As(err, &se) {
		return se.err
	}
	return err
}

func (w *slotWriter) Write(p []byte) (int, error) {
	if end := w.off + int64(len(w.buf)) + int64(len(p)); end > w.max {
		return 0, slotError{fmt.Errorf("%w: the decompressed image needs more than the %d bytes of %s", ErrRefused, w.max, w.slot)}
	}
	w.buf = append(w.buf, p...)
	for len(w.buf) >= w.chunk {
		if err := w.block(w.buf[:w.chunk]); err != nil {
			return 0, err
		}
		w.buf = w.buf[:copy(w.buf, w.buf[w.chunk:])]
	}
	return len(p), nil
}

// block writes one full block, or keeps it when it is the first.
func (w *slotWriter) block(b []byte) error {
	defer func() { w.off += int64(len(b)) }()
	if w.off == 0 {
		w.head = bytes.Clone(b)
		return nil
	}
	if err := w.p.Write(w.ctx, uint64(w.off), b); err != nil {
		return slotError{fmt.Errorf("write %s at 0x%x: %w", w.slot, w.off, err)}
	}
	return nil
}

// finish writes what is buffered (the port pads a short last block), then
// the first block with hdr at its start.
func (w *slotWriter) finish(hdr []byte) error {
	if len(w.buf) > 0 {
		if w.off == 0 {
			w.head, w.buf = w.buf, nil
		} else if err := w.p.Write(w.ctx, uint64(w.off), w.buf); err != nil {
			return fmt.Errorf("write %s at 0x%x: %w", w.slot, w.off, err)
		}
	}
	copy(w.head, hdr)
	if err := w.p.Write(w.ctx, 0, w.head); err != nil {
		return fmt.Errorf("write %s header block at 0x0: %w", w.slot, err)
	}
	return nil
}
