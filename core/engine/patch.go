package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// A delta image (FlagDelta, core/image/delta.go) carries a patch (the format
// of core/delta) that rebuilds the target image from the image the device
// runs. The engine applies it as it streams, through the same pipeline as a
// full image: the fetcher and the stream verifier see the delta image's
// bytes, and the port goroutine hands the patch to a decoder, which reads
// the base from the running slot through the port (hal.SlotReader) and
// writes the target to the update slot. Before Init, the base hash the
// delta names (read ahead of the stream, as an encrypted image's key TLV
// is) must be the running image's: a delta for another base is refused
// before a byte is written. After the stream, the delta image's signature
// vouches for the target's size and hash, and the read-back checks the
// target in the slot as a full image (its hash, and its signature with the
// device's keys) before SetBoot.
//
// Memory: the decoder's fixed state (delta.StateSize, about 29 KiB) and
// one erase sector of target (patchBuffer), whatever the image sizes.
//
// Resume: the decoder can be checkpointed between blocks of the patch, and
// between blocks it has read exactly PatchOffset bytes (core/delta reads no
// further), so at a block boundary the download is at a known byte of the
// delta image. The port goroutine computes the verifier's and the digest's
// states at that byte (from their states at the start of the chunk, plus
// the chunk's bytes up to it) and saves them with the decoder's checkpoint
// in the record, as a full image's download saves its offset: one record,
// one KV Set, one resume path. A resumed download asks the source from that
// byte on (Range), so at most one checkpoint interval is sent again.

// patchBuffer bounds the target buffer: one erase sector, at most this
// many bytes, at least a write unit.
const patchBuffer = 64 << 10

// patcher applies the patch of one download. The port goroutine calls
// write and finish (or stop); the decoding goroutine runs the decoder.
type patcher struct {
	f    *feed
	done chan struct{}
	// payload is the image offsets of the patch: [payload, end).
	payload, end int64
	// err is a failure of the port (reading the base, writing the
	// target): the download stops on it. bad is a decoding error,
	// reported once the stream verifier found the delta image authentic,
	// so that a changed payload is named as such (a hash mismatch) and not
	// by what the decoder made of it. Both are the decoding goroutine's
	// until done is closed.
	err, bad error
	// finished is set when the decoder produced the whole target.
	finished bool
	align    int
	hdr      delta.Header
	sw       *targetWriter
}

// mark is a block boundary the decoder reached within a slice of patch:
// the slice's first pos bytes come before it. ck is the decoder's
// checkpoint there.
type mark struct {
	ok  bool
	pos int
	ck  []byte
	// err is why the decoder stopped on a failure of the port (or ctx):
	// the download stops on it.
	err error
}

// feed hands the patch to the decoder one slice at a time, and answers
// each slice, once the decoder has read all of it, with the last block
// boundary reached within it.
type feed struct {
	in      chan []byte
	back    chan mark
	cur     []byte
	pos     int
	m       mark
	pending bool // cur is a slice not yet answered
}

func (f *feed) Read(p []byte) (int, error) {
	for f.pos == len(f.cur) {
		f.answer()
		s, ok := <-f.in
		if !ok {
			f.cur, f.pos = nil, 0
			return 0, io.EOF
		}
		f.cur, f.pos, f.pending = s, 0, true
	}
	n := copy(p, f.cur[f.pos:])
	f.pos += n
	return n, nil
}

// answer tells the port goroutine the current slice is consumed.
func (f *feed) answer() {
	if f.pending {
		f.back <- f.m
		f.pending, f.m = false, mark{}
	}
}

// drain answers the slice in hand and every later one, once the decoder has
// stopped (with err when the port failed it), until the port goroutine
// closes the feed.
func (f *feed) drain(err error) {
	if err != nil {
		f.m = mark{err: err}
	}
	f.answer()
	for range f.in {
		f.back <- mark{err: err}
	}
}

// baseReader reads the running image through the port.
type baseReader struct {
	ctx  context.Context
	sr   hal.SlotReader
	slot string
}

func (r baseReader) ReadAt(p []byte, off int64) (int, error) {
	b, err := r.sr.ReadSlot(r.ctx, r.slot, uint64(off), len(p))
	if err != nil {
		return 0, slotError{fmt.Errorf("read the base in %s at 0x%x: %w", r.slot, off, err)}
	}
	n := copy(p, b)
	if n < len(p) {
		return n, slotError{fmt.Errorf("read the base in %s at 0x%x: the port returned %d of %d bytes", r.slot, off, n, len(p))}
	}
	return n, nil
}

// targetWriter writes the target to the update slot in aligned pieces of
// its buffer, from off on.
type targetWriter struct {
	ctx    context.Context
	p      hal.Platform
	slot   string
	max    int64
	resume bool // the slot may already hold what is written (a resumed download)
	buf    []byte
	n      int
	off    int64
}

func (w *targetWriter) Write(p []byte) (int, error) {
	if w.off+int64(w.n)+int64(len(p)) > w.max {
		return 0, slotError{fmt.Errorf("%w: the delta's target needs more than the %d bytes of %s", ErrRefused, w.max, w.slot)}
	}
	done := 0
	for done < len(p) {
		k := copy(w.buf[w.n:], p[done:])
		w.n += k
		done += k
		if w.n == len(w.buf) {
			if err := w.flush(); err != nil {
				return done, err
			}
		}
	}
	return done, nil
}

// flush writes what is buffered: at a block boundary of the patch, which
// is on the write alignment, before the decoder's checkpoint there is
// taken, so that a checkpoint never names target bytes the slot lacks.
func (w *targetWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	if err := w.p.Write(w.ctx, uint64(w.off), w.buf[:w.n]); err != nil {
		if w.resume && errors.Is(err, hal.ErrNotErased) {
			return slotError{errStartOver{why: fmt.Sprintf("the slot holds other bytes at 0x%x than the resumed delta's target (a write torn by a crash)", w.off)}}
		}
		return slotError{fmt.Errorf("write %s at 0x%x: %w", w.slot, w.off, err)}
	}
	w.off += int64(w.n)
	w.n = 0
	return nil
}

// deltaBase is what prepareDelta learnt: the delta image's TLVs and the
// running image it applies to.
type deltaBase struct {
	d    *image.Delta
	slot string // the running slot
	sr   hal.SlotReader
}

// prepareDelta checks, before anything is written, that the delta image
// with header hdr applies to the running image: its base hash (TLV
// DELTA_BASE, read ahead of the stream) must be the hash TLV of the image
// in the running slot, and its target must fit the update slot. It returns
// the target's size, which Init prepares.
func (t *transfer) prepareDelta(ctx context.Context, hdr image.Header, v validators) (int64, error) {
	sr, err := runningSlotReader(t.e.p, t.dev.info)
	if err != nil {
		return 0, fmt.Errorf("%w: image %s is a delta image and %w: install the full image", ErrRefused, hdr.Version, err)
	}
	tail, err := t.readTail(ctx, hdr, v, "a delta image's base hash")
	if err != nil {
		return 0, err
	}
	di, err := image.ParseTail(hdr, tail)
	if err != nil {
		return 0, fmt.Errorf("%w: delta image %s: %w", ErrVerify, hdr.Version, err)
	}
	if di.Delta == nil {
		return 0, fmt.Errorf("%w: delta image %s: no delta TLVs", ErrVerify, hdr.Version)
	}
	run := t.dev.running
	if run.Name == "" || !run.Bootable {
		return 0, fmt.Errorf("%w: image %s is a delta image and no verified image runs to apply it to: install the full image", ErrRefused, hdr.Version)
	}
	base, err := readRunning(ctx, sr, t.dev.info.Layout, run.Name)
	if err != nil {
		var se slotError
		if errors.As(err, &se) {
			return 0, se.err
		}
		return 0, fmt.Errorf("%w: image %s is a delta image and %w: install the full image", ErrRefused, hdr.Version, err)
	}
	if !bytes.Equal(base.Hash, di.Delta.BaseHash) {
		return 0, fmt.Errorf("%w: delta image %s applies to the image with hash %x, but the running image %s in %s has hash %x: install the full image, or the delta made from %s",
			ErrRefused, hdr.Version, di.Delta.BaseHash, base.Version, run.Name, base.Hash, base.Version)
	}
	size := int64(di.Delta.TargetSize)
	if size > t.dev.maxSize {
		return 0, fmt.Errorf("%w: delta image %s rebuilds an image of %d bytes, larger than the %d bytes %s takes", ErrRefused, hdr.Version, size, t.dev.maxSize, t.dev.update.Name)
	}
	t.base = &deltaBase{d: di.Delta, slot: run.Name, sr: sr}
	return size, nil
}

// RunningImage is the image in the slot that runs, read through the port
// (hal.SlotReader): the image a delta must be made from, whose hash a
// device reports so that the fleet sends it the delta that applies. It is
// nil, without error, when no image the bootloader can verify runs; a port
// that cannot read its running slot is an error (such a device takes full
// images only).
func RunningImage(ctx context.Context, p hal.Platform, info hal.Info) (*image.Image, error) {
	run, ok := info.Boot.Running()
	if !ok || !run.Bootable {
		return nil, nil
	}
	sr, err := runningSlotReader(p, info)
	if err != nil {
		return nil, err
	}
	return readRunning(ctx, sr, info.Layout, run.Name)
}

// runningSlotReader is the port's SlotReader when it lists the capability.
func runningSlotReader(p hal.Platform, info hal.Info) (hal.SlotReader, error) {
	sr, ok := p.(hal.SlotReader)
	if !ok || !slices.Contains(info.Capabilities, hal.CapReadSlot) {
		return nil, fmt.Errorf("the port cannot read the running slot (it lists no %q capability)", hal.CapReadSlot)
	}
	return sr, nil
}

// readRunning parses the image in the running slot; a failure to read
// the slot is a slotError, kept apart from an image that does not parse.
func readRunning(ctx context.Context, sr hal.SlotReader, l hal.Layout, slot string) (*image.Image, error) {
	rp, ok := l.Partition(slot)
	if !ok {
		return nil, fmt.Errorf("the running slot %s is not in the board's layout", slot)
	}
	img, err := image.Parse(io.NewSectionReader(baseReader{ctx: ctx, sr: sr, slot: slot}, 0, int64(rp.Size)), int64(rp.Size))
	if err != nil {
		var se slotError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, fmt.Errorf("the running image in %s does not parse (%w)", slot, err)
	}
	return img, nil
}

// DeltaMemory is the working memory with which the engine applies a delta
// image on the board info describes: the patch decoder's fixed state
// (delta.StateSize) and its buffer of target, one erase sector of the
// update slot, at most 64 KiB, at least a write unit. Neither depends on
// the images' sizes.
func DeltaMemory(info hal.Info) (decoder, buffer int) {
	align := int64(max(1, info.Layout.Flash.WriteAlign))
	n := int64(patchBuffer)
	if p, err := info.UpdateSlot(); err == nil {
		if runs := info.Layout.Flash.Map().Runs(p.Offset, p.Offset+1); len(runs) == 1 {
			n = min(n, int64(runs[0].Size))
		}
	}
	return delta.StateSize(), int(max(n/align*align, align))
}

// newPatcher starts the decoder for the delta image with header hdr: from
// the patch's start, or from the checkpoint ck of a resumed download.
func (t *transfer) newPatcher(ctx context.Context, hdr image.Header, ck []byte) (*patcher, error) {
	_, bufSize := DeltaMemory(t.dev.info)
	x := &patcher{
		f:       &feed{in: make(chan []byte), back: make(chan mark)},
		done:    make(chan struct{}),
		payload: int64(hdr.HeaderSize), end: hdr.PayloadEnd(), align: t.dev.align,
		sw: &targetWriter{ctx: ctx, p: t.e.p, slot: t.dev.update.Name, max: t.dev.maxSize, resume: ck != nil,
			buf: make([]byte, bufSize)},
	}
	base := baseReader{ctx: ctx, sr: t.base.sr, slot: t.base.slot}
	var dec *delta.Decoder
	if ck != nil {
		d, err := delta.Resume(ck, x.f, base, x.sw)
		if err != nil {
			return nil, errStartOver{why: fmt.Sprintf("the delta checkpoint is unusable: %v", err)}
		}
		if got := x.payload + d.PatchOffset(); got != t.written {
			return nil, errStartOver{why: fmt.Sprintf("the delta checkpoint is at byte %d of the image, the download at %d", got, t.written)}
		}
		x.sw.off, dec = d.TargetOffset(), d
	}
	go x.run(ctx, dec, base)
	return x, nil
}

// run is the decoding goroutine.
func (x *patcher) run(ctx context.Context, dec *delta.Decoder, base io.ReaderAt) {
	defer close(x.done)
	defer func() { x.f.drain(x.err) }()
	fail := func(err error) {
		var se slotError
		if errors.As(err, &se) {
			x.err = se.err
		} else if ctx.Err() == nil {
			x.bad = fmt.Errorf("%w: apply the patch: %w", ErrVerify, err)
		} else {
			x.err = ctx.Err()
		}
	}
	if dec == nil {
		d, err := delta.NewDecoder(x.f, base, x.sw)
		if err != nil {
			fail(err)
			return
		}
		dec = d
	}
	x.hdr = dec.Header()
	if x.hdr.BlockSize()%int64(x.align) != 0 {
		x.bad = fmt.Errorf("%w: the patch's blocks of %d bytes are not on the write alignment %d", ErrVerify, x.hdr.BlockSize(), x.align)
		return
	}
	for {
		err := dec.Next(ctx)
		if errors.Is(err, io.EOF) {
			err = x.sw.flush()
			if err == nil {
				x.finished = true
				return
			}
		}
		if err == nil {
			err = x.sw.flush()
		}
		if err != nil {
			fail(err)
			return
		}
		ck, err := dec.Checkpoint()
		if err != nil {
			fail(err)
			return
		}
		x.f.m = mark{ok: true, pos: x.f.pos, ck: ck}
	}
}

// write hands the decoder the patch bytes among data, the bytes at image
// offset off, and returns once it has read them: at the image offset of
// the last block boundary among them (at 0 when none) with the decoder's
// checkpoint there.
func (x *patcher) write(data []byte, off int64) (at int64, ck []byte, err error) {
	lo, hi := max(off, x.payload), min(off+int64(len(data)), x.end)
	if lo >= hi {
		return 0, nil, nil
	}
	x.f.in <- data[lo-off : hi-off]
	m := <-x.f.back
	if m.err != nil {
		return 0, nil, m.err
	}
	if m.ok {
		at, ck = lo+int64(m.pos), m.ck
	}
	return at, ck, nil
}

// stop ends the decoding goroutine of a download that will not finish.
func (x *patcher) stop() {
	select {
	case <-x.done:
		return
	default:
	}
	close(x.f.in)
	<-x.done
}

// finish waits for the decoder once the stream verifier has found the
// delta image img authentic, and returns the target image the slot now
// holds as the delta describes it: its size and hash, which the read-back
// checks, with the version and security counter of the delta (the
// target's, as SignDelta writes them).
func (x *patcher) finish(img *image.Image, b *deltaBase) (*image.Image, error) {
	x.stop()
	switch {
	case x.err != nil:
		return nil, x.err
	case x.bad != nil:
		return nil, x.bad
	case !x.finished:
		return nil, fmt.Errorf("%w: the patch of delta image %s ends before its target does", ErrVerify, img.Version)
	}
	d := img.Delta
	if d == nil || !bytes.Equal(d.BaseHash, b.d.BaseHash) || d.TargetSize != b.d.TargetSize {
		return nil, fmt.Errorf("%w: delta image %s: its signed TLVs are not the ones read ahead of the download", ErrVerify, img.Version)
	}
	if int64(x.hdr.TargetSize) != int64(d.TargetSize) || x.sw.off != int64(d.TargetSize) {
		return nil, fmt.Errorf("%w: delta image %s: the patch rebuilt %d bytes, the delta names a target of %d", ErrVerify, img.Version, x.sw.off, d.TargetSize)
	}
	return &image.Image{Header: img.Header, Version: img.Version, TotalSize: int64(d.TargetSize), Hash: d.TargetHash,
		HashType: image.TLVSHA256, SecurityCounter: img.SecurityCounter, HasSecurityCounter: img.HasSecurityCounter}, nil
}

// readTail reads the TLV areas of the image with header hdr ahead of the
// stream (the source must read from an offset: a file, or HTTP with
// Range): what, which the error names, is what the caller needs there.
func (t *transfer) readTail(ctx context.Context, hdr image.Header, v validators, what string) ([]byte, error) {
	at := hdr.PayloadEnd()
	cannot := func(why string) error {
		return fmt.Errorf("%w: image %s: %s, in the TLVs at 0x%x after the payload, cannot be read ahead (%s): it needs a source that reads from an offset (a file, or HTTP with Range)",
			ErrDownload, hdr.Version, what, at, why)
	}
	s, err := t.op.open(ctx, at, v)
	if err != nil {
		return nil, cannot(err.Error())
	}
	defer s.body.Close()
	if s.start != at {
		return nil, cannot("the source answered from another offset")
	}
	tail := make([]byte, int(hdr.ProtectedTLVSize)+4)
	if _, err := io.ReadFull(s.body, tail); err != nil {
		return nil, cannot(err.Error())
	}
	info := tail[hdr.ProtectedTLVSize:]
	n := int(binary.LittleEndian.Uint16(info[2:]))
	if n > 4 {
		tail = append(tail, make([]byte, n-4)...)
		if _, err := io.ReadFull(s.body, tail[len(tail)-(n-4):]); err != nil {
			return nil, cannot(err.Error())
		}
	}
	return tail, nil
}
