package engine

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"hash"
	"time"

	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// Install downloads the image of src into the update slot, verifies it and
// asks the bootloader to boot it at the next reboot (state Installed). An
// interrupted install of the same order is resumed rather than started
// over; any other earlier attempt is dropped.
//
// The image is refused before anything is written when it cannot fit the
// board, is not newer than the running one (unless Options.AllowDowngrade)
// or is not the version the order announced; such a refusal, and any
// error before the first change to the slot, leaves the state as it was
// (an install pending before stays pending). Its digest, hash, signature
// and security counter are checked before SetBoot, on the stream and again
// on a read-back of the slot. An error that a later attempt may not have
// (a dropped network, a crashed port, ctx) leaves a resumable download; a
// bad image leaves state Failed. Neither blocks the next Install.
func (e *Engine) Install(ctx context.Context, src Source) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.opts.Keys) == 0 {
		return fmt.Errorf("install: no verification key: give the device's public key (Options.Keys, otarun install --key pub.pem)")
	}
	dg, err := ParseDigest(src.Digest)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if src.Version != "" {
		if _, err := image.ParseVersion(src.Version); err != nil {
			return fmt.Errorf("install: announced %w", err)
		}
	}
	if src.Size < 0 {
		return fmt.Errorf("install: announced size %d is negative", src.Size)
	}
	op, err := e.newOpener(src.URL)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	rec, err := e.load(ctx)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	dev, err := e.describe(ctx)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if err := dev.canWrite(); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	if rec.State == RolledBack && rec.Reboot && dev.scheme.Reverts() {
		// The image the rollback returns to is in the slot this install
		// would erase: writing now would leave nothing to boot.
		return fmt.Errorf("install: %w: a rollback awaits the next reboot, and %s holds the image it returns to: reboot first (otarun boot), then install",
			ErrBusy, dev.update.Name)
	}
	if _, err := e.keysFor(ctx, dev); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	same := rec.Source == src.URL && rec.Digest == dg.String() && rec.Announced == src.Version &&
		rec.Permanent == src.Permanent && rec.Slot == dev.update.Name && src.Size == rec.Size
	if same && (rec.State == Downloading || rec.State == Verifying) {
		e.log.Info("install: resuming the interrupted install of the same order", "state", rec.State, "offset", rec.Offset)
		return e.resume(ctx, &rec, dev, op, dg)
	}
	// The new record is saved only when the install is about to change
	// the slot (transfer.begin): an image refused before that (too big,
	// a downgrade, another version than the order's) leaves the record,
	// and a pending install in it, as they were.
	n := rec.fresh()
	n.State, n.Source, n.Digest, n.Announced, n.Permanent = Downloading, src.URL, dg.String(), src.Version, src.Permanent
	n.Size, n.Slot, n.Previous, n.Base = src.Size, dev.update.Name, dev.running.Version, baseOf(rec)
	n.draft, n.was, n.announce = true, rec.State, fmt.Sprintf("download %s into %s", src.URL, dev.update.Name)
	return e.resume(ctx, &n, dev, op, dg)
}

// Resume continues an interrupted install (state Downloading or Verifying)
// from its last checkpoint, with the order it was started with.
func (e *Engine) Resume(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.opts.Keys) == 0 {
		return fmt.Errorf("resume: no verification key: give the device's public key (Options.Keys, otarun install --key pub.pem)")
	}
	rec, err := e.load(ctx)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if rec.State != Downloading && rec.State != Verifying {
		return fmt.Errorf("resume: %w: the engine is %s, not in an interrupted install: start one with Install (otarun install SOURCE)", ErrNothingToResume, rec.State)
	}
	dg, err := ParseDigest(rec.Digest)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	op, err := e.newOpener(rec.Source)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	dev, err := e.describe(ctx)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := dev.canWrite(); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if _, err := e.keysFor(ctx, dev); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	return e.resume(ctx, &rec, dev, op, dg)
}

// resume runs an install from the state in rec.
func (e *Engine) resume(ctx context.Context, rec *record, dev device, op opener, dg Digest) error {
	if rec.Slot != dev.update.Name {
		// The bootloader switched slots since the download began: what
		// was written is now the running image's slot, or gone.
		e.log.Warn("install: the update slot changed since the download began, starting over", "was", rec.Slot, "now", dev.update.Name)
		rec.Slot, rec.Offset, rec.State = dev.update.Name, 0, Downloading
		rec.clearDownload()
	}
	if rec.State == Verifying {
		err := e.verifyAndBoot(ctx, rec, dev, nil)
		var gone errSlotChanged
		if !errors.As(err, &gone) {
			return err
		}
		// Every byte was written once, but the slot no longer holds the
		// image: the bootloader erased it (MCUboot gives up an
		// unconfirmed trial so, when a cut kept Recover from noting that
		// it ran), or a cut tore that erase. Verifying it would only fail
		// the install; it starts over from the order's source.
		e.log.Warn("install: the slot no longer holds the image the record names, starting the download over", "slot", rec.Slot, "image", rec.Image, "err", gone.err)
		rec.State, rec.Offset, rec.ETag, rec.LastModified, rec.Total = Downloading, 0, "", "", 0
		rec.clearDownload()
		// Saved before the download's Init erases the slot, so that a cut
		// in between leaves no record of an image in it.
		if err := e.save(ctx, rec); err != nil {
			return err
		}
	}
	var streamed *image.Image
	if rec.State == Downloading {
		img, err := e.download(ctx, rec, dev, op, dg)
		if err != nil {
			return err
		}
		streamed = img
	}
	return e.verifyAndBoot(ctx, rec, dev, streamed)
}

// errSlotChanged is verifyAndBoot's answer when a resumed verification
// (no stream behind it) finds the slot no longer holding an image that
// verifies: err says what the read-back found.
type errSlotChanged struct{ err error }

func (e errSlotChanged) Error() string {
	return "the slot changed since its download: " + e.err.Error()
}

// slotChanged reports whether a read-back error says the slot's bytes are
// not those written (erased, torn, overwritten), rather than that the image
// is not to be trusted (a key revoked since, another algorithm): only the
// former is mended by writing the image again.
func slotChanged(err error) bool {
	for _, target := range []error{image.ErrNoImage, image.ErrTruncated, image.ErrMalformed, image.ErrHashMismatch, image.ErrBadSignature} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// errStartOver asks the download to begin again from byte 0 with a fresh
// slot: the source's file changed, or a resumed slot holds bytes that
// cannot be written over.
type errStartOver struct{ why string }

func (e errStartOver) Error() string { return "start over: " + e.why }

// maxStartOvers bounds how often one Install starts over (a server whose
// file changes on every request).
const maxStartOvers = 3

// download streams the source into the update slot from rec's checkpoint
// and returns the image the stream verified.
func (e *Engine) download(ctx context.Context, rec *record, dev device, op opener, dg Digest) (*image.Image, error) {
	for attempt := 0; ; attempt++ {
		t, err := e.newTransfer(ctx, rec, dev, op, dg)
		if err != nil {
			return nil, e.stop(ctx, rec, nil, err)
		}
		img, err := t.run(ctx)
		var over errStartOver
		if errors.As(err, &over) && attempt < maxStartOvers {
			e.log.Warn("install: starting the download over", "why", over.why)
			e.emit(Event{Kind: event.State, State: Downloading, Percent: -1, Message: "starting over: " + over.why})
			rec.Offset, rec.ETag, rec.LastModified = 0, "", ""
			rec.Total = 0
			rec.clearDownload()
			// Persist before the next attempt's Init erases the slot: a power
			// cut after that erase must not find a checkpoint claiming bytes
			// the slot no longer holds.
			if err := e.save(ctx, rec); err != nil {
				return nil, err
			}
			continue
		}
		if errors.As(err, &over) {
			err = fmt.Errorf("%w: %s: gave up after starting over %d times; the last time: %s", ErrDownload, op, maxStartOvers, over.why)
		}
		if err != nil {
			return nil, e.stop(ctx, rec, t, err)
		}
		return img, nil
	}
}

// transfer is one pass of the download pipeline, three goroutines deep so
// that the network, the hashing and the port overlap (on a device with two
// cores the port's own work runs in the plugin process beside them):
//
//   - the fetcher fills chunk buffers from the source and hashes each with
//     the order's digest as it arrives;
//   - run's goroutine feeds each chunk to the image's stream verifier and
//     checks the header before the first write;
//   - the port goroutine writes each chunk through the port, in order, and
//     persists the checkpoints.
//
// Every chunk is hashed by both before it is written and its buffer is not
// filled again before the port has written it: the bytes hashed are the
// bytes written. Each chunk carries the hash states at its end, so that a
// checkpoint (and the resume after an error) names exactly the states of
// the bytes the port has written, however far ahead the hashing runs.
type transfer struct {
	e   *Engine
	rec *record
	dev device
	op  opener
	dg  Digest

	v      *image.StreamVerifier
	dh     hash.Hash
	resume bool // the slot holds rec.Offset bytes of this image
	// x decompresses a compressed image into the slot; nil for a plain
	// one. Set by the verifying stage before the first chunk goes to the
	// port goroutine.
	x *expander
	// dec decrypts the payload of an encrypted image; nil for a plain
	// one. Set by the verifying stage before the first chunk goes on, as
	// x is; off is the image offset of the next chunk that stage takes.
	dec *decryptor
	off int64
	// pt applies the patch of a delta image; nil for a full one. Set by
	// the verifying stage before the first chunk goes on, as x is, after
	// prepareDelta found the delta's base running (base).
	pt   *patcher
	base *deltaBase
	keys []crypto.PublicKey // the verifier's, for the states at a block boundary

	// Owned by the port goroutine while run runs; by the caller after.
	written int64  // bytes written to the slot, all hashed
	vstate  []byte // the verifier's state at written
	dstate  []byte // the digest's state at written
	lastCk  int64
	total   int64 // the download's size, -1 while unknown
	val     validators
	chunk   int
	// mark is a delta's latest block boundary that the port goroutine
	// reached, with the states there: what its checkpoint saves.
	mark boundary
}

// boundary is a point of a delta's download where the decoder can resume:
// the image offset, the verifier's and digest's states there, and the
// decoder's checkpoint.
type boundary struct {
	off            int64
	vstate, dstate []byte
	patch          []byte
}

func (e *Engine) newTransfer(ctx context.Context, rec *record, dev device, op opener, dg Digest) (*transfer, error) {
	keys, err := e.keysFor(ctx, dev)
	if err != nil {
		return nil, err
	}
	v, err := image.NewStreamVerifier(keys)
	if err != nil {
		return nil, fmt.Errorf("install: keys: %w", err)
	}
	v.SetMaxSize(dev.maxSize)
	t := &transfer{e: e, rec: rec, dev: dev, op: op, dg: dg, v: v, total: -1, keys: keys,
		val: validators{etag: rec.ETag, lastModified: rec.LastModified}}
	if rec.Size > 0 {
		t.total = rec.Size
	}
	t.chunk = chunkSize(max(e.opts.ChunkSize, 4<<10), t.total, dev.align)
	t.dh = dg.newHash()
	if rec.Offset > 0 {
		err := v.UnmarshalBinary(rec.Verifier)
		if err == nil && v.Written() != rec.Offset {
			err = fmt.Errorf("the verifier is at %d bytes, the checkpoint at %d", v.Written(), rec.Offset)
		}
		var dh hash.Hash
		if err == nil {
			dh, err = dg.restore(rec.DigestState)
		}
		if err == nil && rec.Patch == nil && rec.Offset%int64(dev.align) != 0 {
			err = fmt.Errorf("checkpoint offset %d is not on the write alignment %d", rec.Offset, dev.align)
		}
		if err != nil {
			e.log.Warn("install: checkpoint unusable, starting the download over", "err", err)
			v, _ = image.NewStreamVerifier(keys)
			v.SetMaxSize(dev.maxSize)
			t.v, t.dh = v, dg.newHash()
			rec.Offset, rec.ETag, rec.LastModified, rec.Patch = 0, "", "", nil
			t.val = validators{}
		} else {
			t.dh, t.resume, t.written, t.lastCk = dh, true, rec.Offset, rec.Offset
			t.vstate, t.dstate = rec.Verifier, rec.DigestState
		}
	}
	return t, nil
}

// chunkSize is the buffer size for chunks of at most chunk bytes of a
// file of total bytes (unknown below 1) on flash of the given alignment:
// a small image needs no buffers bigger than itself.
func chunkSize(chunk int, total int64, align int) int {
	if total > 0 {
		chunk = min(chunk, max(int(total), 4<<10))
	}
	return (chunk + align - 1) / align * align
}

// chunkMsg is a buffer the fetcher filled, on its way through the stages.
type chunkMsg struct {
	buf   []byte
	n     int
	last  bool
	total int64
	val   validators
	err   error
	// dstate and vstate are the digest's and the verifier's states once
	// this chunk is hashed; dstate is nil without a digest.
	dstate []byte
	vstate []byte
}

// pipelineDepth is the number of chunk buffers: one being filled, one
// being hashed, one being written, one ready between two of them.
const pipelineDepth = 4

// run streams the source into the slot and returns the image the stream
// verified. It returns only once the fetcher and the port goroutine have
// stopped, with t.written, t.vstate and t.dstate describing what the slot
// holds.
func (t *transfer) run(ctx context.Context) (*image.Image, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t.off = t.written
	f := &fetcher{e: t.e, op: t.op, pos: t.written, total: t.total, max: t.dev.maxSize, v: t.val, dh: t.dh}
	// The source is opened before the pipeline starts: until the server
	// answers, the install holds no chunk buffer and no goroutine of its
	// own, which counts when it waits its turn behind a firmware server's
	// other downloads (a fleet simulator's thousands of devices). The
	// answer may tell the file's size, which then bounds the buffers as
	// the order's does (newTransfer).
	if err := f.open(ctx); err != nil {
		t.total, t.val = f.total, f.v
		return nil, err
	}
	size := chunkSize(t.chunk, f.total, t.dev.align)
	// The buffers are made as the pipeline needs them, up to
	// pipelineDepth: while the network is slower than hashing and writing
	// (the usual case) one or two go round, and a fleet simulator running
	// thousands of installs at once holds that many, not four each.
	free := make(chan []byte, pipelineDepth)
	full := make(chan chunkMsg, pipelineDepth)
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		defer f.close()
		made := 0 // buffers made; only this goroutine makes them
		for {
			var buf []byte
			select {
			case buf = <-free:
			default:
				if made < pipelineDepth {
					made++
					buf = make([]byte, size)
					break
				}
				select {
				case buf = <-free:
				case <-ctx.Done():
					return
				}
			}
			c := f.next(ctx, buf)
			full <- c
			if c.last || c.err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-fetched
	}()

	jobs := make(chan chunkMsg, pipelineDepth)
	failed := make(chan struct{}) // closed when a port write failed
	var perr error
	ported := make(chan struct{})
	go func() {
		defer close(ported)
		for c := range jobs {
			if perr != nil {
				continue // drain: the slot stays as the failed write left it
			}
			if err := t.port(ctx, c); err != nil {
				perr = err
				close(failed)
				continue
			}
			if !c.last {
				free <- c.buf
			}
		}
	}()

	learnt, serr := t.stream(ctx, full, jobs, failed)
	// What was hashed and handed to the port is written before the
	// pipeline stops, so an error of the source keeps all the progress.
	close(jobs)
	<-ported
	// A decompression or a patch that did not finish stops with the
	// pipeline (finish has already ended one that did).
	defer t.stopExpander()
	defer t.stopPatcher()
	switch {
	case perr != nil:
		return nil, perr
	case serr != nil:
		// The size and validators learnt so far go into the checkpoint.
		if learnt.total != 0 || !learnt.val.empty() {
			t.total, t.val = learnt.total, learnt.val
		}
		return nil, serr
	}
	<-fetched // the digest is the fetcher's until it has stopped
	// The order's digest first: a file that is not the order's is named
	// as such, whatever else is wrong with it.
	if t.dh != nil {
		if err := t.dg.check(t.dh); err != nil {
			return nil, err
		}
	}
	img, err := t.v.Finish()
	if aerr := checkAlgorithm(img, t.dev); aerr != nil {
		return nil, aerr
	}
	if err != nil {
		return nil, streamError(err)
	}
	if t.x != nil {
		// The compressed image is authentic: complete the plain one in
		// the slot, whose hash and signature (DECOMP_SHA and
		// DECOMP_SIGNATURE) the read-back checks before SetBoot.
		if img, err = t.x.finish(img); err != nil {
			return nil, err
		}
	}
	if t.pt != nil {
		// The delta image is authentic: what it says of its target is
		// what the read-back checks the slot against before SetBoot.
		if img, err = t.pt.finish(img, t.base); err != nil {
			return nil, err
		}
	}
	t.rec.Offset, t.rec.Total = t.written, max(t.total, t.written)
	return img, nil
}

// stopExpander ends the decompression of a download that will not finish.
func (t *transfer) stopExpander() {
	if t.x != nil {
		t.x.stop()
	}
}

// stopPatcher ends the patching of a download that will not finish.
func (t *transfer) stopPatcher() {
	if t.pt != nil {
		t.pt.stop()
	}
}

// stream is the verifying stage: it feeds each chunk to the stream
// verifier, checks the header and prepares the slot (Init) before the
// first chunk goes to the port, and hands every chunk on to jobs. It
// returns at the last chunk, at the first error, or when the port failed;
// with an error of the source it returns that chunk, whose size and
// validators are the latest known.
func (t *transfer) stream(ctx context.Context, full <-chan chunkMsg, jobs chan<- chunkMsg, failed <-chan struct{}) (chunkMsg, error) {
	inited := false
	for {
		var c chunkMsg
		select {
		case c = <-full:
		case <-failed:
			return chunkMsg{}, nil
		case <-ctx.Done():
			return chunkMsg{}, ctx.Err()
		}
		if c.err != nil {
			return c, c.err
		}
		data := c.buf[:c.n]
		if !inited {
			if err := t.prepareDecrypt(ctx, data, t.off, c.val); err != nil {
				return chunkMsg{}, err
			}
		}
		plain := data
		if t.dec != nil {
			// The hash covers the plain payload; the slot gets the plain
			// bytes or, on an MCUboot board, the chunk as received.
			plain = t.dec.apply(data, t.off)
		}
		t.off += int64(len(data))
		if _, err := t.v.Write(plain); err != nil {
			return chunkMsg{}, streamError(err)
		}
		if !inited {
			if _, ok := t.v.Header(); !ok {
				if c.last {
					return chunkMsg{}, nil // too short for a header: Finish says so
				}
				return chunkMsg{}, fmt.Errorf("%w: the first %d bytes do not hold the image header", ErrVerify, c.n)
			}
			if err := t.e.checkHeader(t.v, t.dev, t.rec); err != nil {
				return chunkMsg{}, err
			}
			if hdr, ok := t.v.Header(); ok && !t.resume {
				if err := t.e.probeAlgorithm(ctx, t.op, c.val, hdr, t.dev); err != nil {
					return chunkMsg{}, err
				}
			}
			size := t.dev.maxSize
			if c.total > 0 {
				size = c.total
			}
			if hdr, _ := t.v.Header(); hdr.Flags&image.FlagCompressedLZMA2 != 0 {
				if t.resume {
					return chunkMsg{}, errStartOver{why: "a compressed image's download cannot resume (the LZMA2 decoder's state is not saved)"}
				}
				// The plain image's size is in TLVs at the end of the
				// stream: prepare the whole slot.
				size = t.dev.maxSize
				t.x = newExpander(ctx, t.e.p, t.dev, t.chunk)
			}
			if hdr, _ := t.v.Header(); hdr.Flags&image.FlagDelta != 0 {
				n, err := t.prepareDelta(ctx, hdr, c.val)
				if err != nil {
					return chunkMsg{}, err
				}
				var ck []byte
				if t.resume {
					if ck = t.rec.Patch; ck == nil {
						return chunkMsg{}, errStartOver{why: "the delta's checkpoint holds no decoder state"}
					}
				}
				if t.pt, err = t.newPatcher(ctx, hdr, ck); err != nil {
					return chunkMsg{}, err
				}
				size = n
			}
			if err := t.begin(ctx); err != nil {
				return chunkMsg{}, err
			}
			if err := t.e.p.Init(ctx, hal.InitRequest{Size: uint64(size), Resume: t.resume}); err != nil {
				return chunkMsg{}, fmt.Errorf("init %s for %d bytes: %w", t.dev.update.Name, size, err)
			}
			inited = true
		}
		vs, err := t.v.MarshalBinary()
		if err != nil {
			return chunkMsg{}, fmt.Errorf("checkpoint: %w", err)
		}
		c.vstate = vs
		select {
		case jobs <- c:
		case <-failed:
			return chunkMsg{}, nil
		}
		if c.last {
			return chunkMsg{}, nil
		}
	}
}

// begin saves the record of a new install before its first change to the
// slot (Init erases it, and cancels a pending request for it): from here
// on the install replaces whatever the record held.
//
// A request pending for the slot is cancelled first: saved the other way
// round, a power cut in between would leave the bootloader a request for
// the old image under the new install's record (a reboot would then try an
// image the record does not name). Cancelled first, the cut leaves the old
// record, which Recover turns into failed (the request is gone).
func (t *transfer) begin(ctx context.Context) error {
	if !t.rec.draft {
		return nil
	}
	if s, ok := t.dev.slot(t.dev.update.Name); ok && s.Pending {
		if err := t.e.p.Rollback(ctx); err != nil {
			return fmt.Errorf("cancel the request pending for %s %s: %w", s.Name, s.Version, err)
		}
	}
	t.rec.draft = false
	return t.e.announce(ctx, t.rec, t.rec.announce)
}

// port is the port goroutine's work on one chunk: write it, report the
// progress, and persist a checkpoint when one is due.
func (t *transfer) port(ctx context.Context, c chunkMsg) error {
	t.total, t.val = c.total, c.val
	data := c.buf[:c.n]
	if len(data) > 0 && t.pt != nil {
		at, ck, err := t.pt.write(data, t.written)
		if err != nil {
			return err
		}
		if ck != nil {
			if err := t.markAt(at, ck, data[:at-t.written]); err != nil {
				return err
			}
		}
	} else if len(data) > 0 && t.x != nil {
		if err := t.x.write(data); err != nil {
			return err
		}
	} else if len(data) > 0 {
		if err := t.e.p.Write(ctx, uint64(t.written), data); err != nil {
			if t.resume && errors.Is(err, hal.ErrNotErased) {
				return errStartOver{why: fmt.Sprintf("the slot holds other bytes at 0x%x than the resumed download (a write torn by a crash)", t.written)}
			}
			return fmt.Errorf("write %s at 0x%x: %w", t.dev.update.Name, t.written, err)
		}
	}
	t.written += int64(len(data))
	t.vstate, t.dstate = c.vstate, c.dstate
	t.e.emit(Event{Kind: event.Progress, State: Downloading, Offset: t.written, Total: max(t.total, 0), Percent: percent(t.written, t.total)})
	// A compressed download is not checkpointed: see expander. A
	// delta's is, at the block boundaries of its patch: see patcher.
	switch {
	case c.last:
	case t.pt != nil:
		if t.mark.patch != nil && t.mark.off-t.lastCk >= t.e.opts.CheckpointEvery {
			return t.checkpointMark(ctx)
		}
	case t.x == nil && t.written-t.lastCk >= t.e.opts.CheckpointEvery:
		return t.checkpoint(ctx)
	}
	return nil
}

// markAt records the delta's block boundary at image offset at, which
// prefix, the first bytes of the chunk the port goroutine holds, reach
// from t.written: the verifier's and the digest's states there are their
// states at t.written with prefix hashed on.
func (t *transfer) markAt(at int64, ck, prefix []byte) error {
	v, err := image.NewStreamVerifier(t.keys)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	v.SetMaxSize(t.dev.maxSize)
	if t.vstate != nil {
		if err := v.UnmarshalBinary(t.vstate); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	if _, err := v.Write(prefix); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	vs, err := v.MarshalBinary()
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	dh, err := t.dg.restore(t.dstate)
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	var ds []byte
	if dh != nil {
		dh.Write(prefix)
		if ds, err = saveHash(dh); err != nil {
			return fmt.Errorf("checkpoint: %w", err)
		}
	}
	t.mark = boundary{off: at, vstate: vs, dstate: ds, patch: ck}
	return nil
}

// checkpointMark persists a delta's download at its latest block boundary.
func (t *transfer) checkpointMark(ctx context.Context) error {
	m := t.mark
	return t.saveAt(ctx, m.off, m.vstate, m.dstate, m.patch)
}

// checkpoint persists the download's progress: the offset written and the
// hash states at exactly that offset.
func (t *transfer) checkpoint(ctx context.Context) error {
	if t.vstate == nil {
		return nil // nothing written yet in this pass
	}
	return t.saveAt(ctx, t.written, t.vstate, t.dstate, nil)
}

// saveAt persists the download at image offset off, with the verifier's
// and digest's states there and, for a delta, the decoder's checkpoint.
func (t *transfer) saveAt(ctx context.Context, off int64, vstate, dstate, patch []byte) error {
	prev := *t.rec
	t.rec.Offset, t.rec.Verifier, t.rec.DigestState, t.rec.Patch = off, vstate, dstate, patch
	t.rec.ETag, t.rec.LastModified = t.val.etag, t.val.lastModified
	if t.total > 0 {
		t.rec.Total = t.total
	}
	if err := t.e.save(ctx, t.rec); err != nil {
		if hal.CodeOf(err) == hal.CodeOutOfBounds {
			// The params partition is too small for this checkpoint
			// (the TLVs of a large signature at the end of a small
			// board's slot): go on without it, a resume sends more.
			t.e.log.Warn("checkpoint skipped", "err", err)
			seq := t.rec.Seq
			*t.rec = prev
			t.rec.Seq = seq
			return nil
		}
		return err
	}
	t.lastCk = off
	return nil
}

// streamError classifies an error of the stream verifier.
func streamError(err error) error {
	if errors.Is(err, image.ErrTooLarge) {
		return fmt.Errorf("%w: %w: it does not fit the update slot", ErrRefused, err)
	}
	return fmt.Errorf("%w: %w", ErrVerify, err)
}

// checkHeader applies the version policy to the header, before any write.
func (e *Engine) checkHeader(v *image.StreamVerifier, dev device, rec *record) error {
	h, _ := v.Header()
	rec.Image = h.Version.String()
	if err := e.checkVersion(h.Version, dev, rec); err != nil {
		return err
	}
	if h.Flags&image.FlagNonBootable != 0 && h.Flags&image.FlagDelta == 0 {
		return fmt.Errorf("%w: image %s has the NON_BOOTABLE flag: it is not an application image", ErrRefused, h.Version)
	}
	return nil
}

// checkVersion refuses another version than the order's and, unless
// downgrades are allowed, a version not newer than the running one.
func (e *Engine) checkVersion(ver image.Version, dev device, rec *record) error {
	if rec.Announced != "" {
		want, err := image.ParseVersion(rec.Announced)
		if err == nil && ver.Compare(want) != 0 {
			return fmt.Errorf("%w: image version %s is not the %s the order announced: the file on the server is not the one the order is for", ErrRefused, ver, want)
		}
	}
	if dev.info.Layout.Bootloader == (hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeDirectXIP}) &&
		dev.versionOK && ver.Core().Compare(dev.version.Core()) <= 0 {
		// The port refuses the request too, but only after the download.
		return fmt.Errorf("%w: image version %s is not above the running %s (in %s): MCUboot direct-xip boots the slot with the higher version and would never boot it, --allow-downgrade or not; install a higher version",
			ErrRefused, ver, dev.version, dev.running.Name)
	}
	if !e.opts.AllowDowngrade && dev.versionOK && ver.Compare(dev.version) <= 0 {
		if ver.Compare(dev.version) == 0 {
			return fmt.Errorf("%w: image version %s already runs (in %s): not an upgrade; to install the same version again: otarun install --allow-downgrade",
				ErrRefused, ver, dev.running.Name)
		}
		return fmt.Errorf("%w: image version %s is older than the running %s (in %s): a downgrade; to install it anyway: otarun install --allow-downgrade",
			ErrRefused, ver, dev.version, dev.running.Name)
	}
	return nil
}

// checkImage applies the policy that needs the whole image: the security
// counter, which MCUboot keeps in the protected TLVs at the end, against
// the bootloader's (the one copy of it, in hal.BootState).
func (e *Engine) checkImage(img *image.Image, dev device) error {
	if min := dev.info.Boot.SecurityCounter; img.SecurityCounter < min {
		return fmt.Errorf("%w: image %s has security counter %d, below the device's %d: a rollback to a version with known flaws, refused always",
			ErrRefused, img.Version, img.SecurityCounter, min)
	}
	return nil
}

// checkDependencies refuses an image whose dependencies on the device's
// other images are not met (Options.Dependencies): with them, the modules
// of one release go together, and an order withheld for one module cannot
// leave another running an image that needs it (Uptane's partial bundle).
func (e *Engine) checkDependencies(ctx context.Context, img *image.Image) error {
	if len(img.Dependencies) == 0 {
		return nil
	}
	if e.opts.Dependencies == nil {
		return fmt.Errorf("%w: image %s depends on %v, and this install cannot see the device's other images: install it through the agent (otarun agent), which runs every module", ErrRefused, img.Version, img.Dependencies)
	}
	if err := e.opts.Dependencies(ctx, img.Dependencies); err != nil {
		return fmt.Errorf("%w: image %s: %w", ErrRefused, img.Version, err)
	}
	return nil
}

// verifyAndBoot reads the slot back, verifies it, and asks the bootloader
// to boot it.
func (e *Engine) verifyAndBoot(ctx context.Context, rec *record, dev device, streamed *image.Image) error {
	if streamed != nil {
		if err := e.checkImage(streamed, dev); err != nil {
			return e.stop(ctx, rec, nil, err)
		}
		rec.Image, rec.ImageSize, rec.Counter = streamed.Version.String(), streamed.TotalSize, streamed.SecurityCounter
	}
	if rec.ImageSize <= 0 {
		return e.stop(ctx, rec, nil, fmt.Errorf("%w: no image size recorded for the verification: install again", ErrVerify))
	}
	rec.State, rec.Error = Verifying, ""
	rec.clearDownload()
	if err := e.announce(ctx, rec, "read back and verify "+rec.Slot); err != nil {
		return err
	}
	keys, err := e.keysFor(ctx, dev)
	if err != nil {
		return e.stop(ctx, rec, nil, err)
	}
	sr := newSlotReader(ctx, e.p, rec.ImageSize)
	// An encrypted image is in the slot as the bootloader takes it (see
	// decrypt.go): decrypted again here where the slot keeps ciphertext.
	img, err := image.VerifyWith(sr, rec.ImageSize, image.VerifyOptions{Keys: keys, DecryptKey: e.opts.DecryptKey, Decrypted: !slotKeepsCiphertext(dev)})
	sr.wait()
	if aerr := checkAlgorithm(img, dev); aerr != nil {
		return e.stop(ctx, rec, nil, aerr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return e.stop(ctx, rec, nil, ctx.Err())
		}
		if streamed == nil && slotChanged(err) {
			// A resumed verification: the record says every byte is in
			// the slot, the slot says otherwise (resume starts over).
			return errSlotChanged{err: err}
		}
		return e.stop(ctx, rec, nil, fmt.Errorf("%w: read back of %s: %w", ErrVerify, rec.Slot, err))
	}
	if streamed != nil && !bytes.Equal(img.Hash, streamed.Hash) {
		return e.stop(ctx, rec, nil, fmt.Errorf("%w: read back of %s: the slot holds another image than the one written", ErrVerify, rec.Slot))
	}
	if err := e.checkVersion(img.Version, dev, rec); err != nil {
		return e.stop(ctx, rec, nil, err)
	}
	if err := e.checkImage(img, dev); err != nil {
		return e.stop(ctx, rec, nil, err)
	}
	if err := e.checkDependencies(ctx, img); err != nil {
		return e.stop(ctx, rec, nil, err)
	}
	rec.Image, rec.Counter = img.Version.String(), img.SecurityCounter
	mode := hal.BootTest
	if rec.Permanent {
		mode = hal.BootPermanent
	}
	if err := e.p.SetBoot(ctx, hal.BootRequest{Mode: mode, Size: uint64(rec.ImageSize)}); err != nil {
		return e.stop(ctx, rec, nil, fmt.Errorf("set boot %s for image %s: %w", mode, rec.Image, err))
	}
	rec.State, rec.Reboot = Installed, true
	return e.announce(ctx, rec, fmt.Sprintf("image %s installed in %s (%s boot): reboot to apply", rec.Image, rec.Slot, mode))
}

// terminal reports whether err ends the attempt (state Failed) rather than
// leaving it resumable.
func terminal(err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, ErrRefused), errors.Is(err, ErrVerify):
		return true
	case errors.Is(err, ErrDownload):
		return !isTransient(err)
	}
	// A port process that died (plugin.ExitError) left the attempt
	// resumable with the next one.
	var gone interface{ PortGone() bool }
	if errors.As(err, &gone) && gone.PortGone() {
		return false
	}
	c := hal.CodeOf(err)
	return c != hal.CodeUnknown && c != hal.CodeBusy
}

// stop ends an attempt on err: Failed with the reason when the error is
// terminal, else a download left resumable at the last offset fully
// written (t, when the pipeline ran). The returned error is err, with a
// note when the state could not be saved (a port that died cannot store
// it: the last checkpoint stays).
func (e *Engine) stop(ctx context.Context, rec *record, t *transfer, err error) error {
	if rec.draft {
		// Stopped before it changed anything: the record stays as it
		// was (a pending install stays pending), and so does the slot.
		e.emit(Event{Kind: event.Error, State: rec.was, Version: rec.Image, Error: err.Error()})
		// Info, not Error: the error is returned, and the caller says it.
		e.log.Info("install stopped before anything was written; the state stays", "state", rec.was, "err", err)
		return err
	}
	if terminal(err) {
		rec.State, rec.Error, rec.Reboot = Failed, err.Error(), false
		rec.clearDownload()
		rec.Offset = 0
		e.emit(Event{Kind: event.Error, State: Failed, Version: rec.Image, Error: err.Error()})
		// A failure must not leave the bootloader a request for what
		// was written: there is none, SetBoot comes last.
		if serr := e.save(context.WithoutCancel(ctx), rec); serr != nil {
			e.log.Error("install failed and its state could not be saved", "err", err, "save", serr)
		} else {
			// The caller gets err: logged at Info, not said twice.
			e.log.Info("install failed", "err", err)
		}
		return err
	}
	state := rec.State
	rec.Error = err.Error()
	e.emit(Event{Kind: event.Error, State: state, Version: rec.Image, Offset: rec.Offset, Total: rec.Total, Percent: percent(rec.Offset, rec.Total), Error: err.Error()})
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var serr error
	switch {
	case t != nil && t.pt != nil && state == Downloading && t.mark.patch != nil && t.mark.off > rec.Offset:
		serr = t.checkpointMark(sctx)
	case t != nil && t.x == nil && t.pt == nil && state == Downloading && t.written > rec.Offset && t.written%int64(t.dev.align) == 0:
		serr = t.checkpoint(sctx)
	default:
		serr = e.save(sctx, rec)
	}
	if serr != nil {
		e.log.Warn("install interrupted; its state stays at the last checkpoint", "err", err, "save", serr)
	} else {
		e.log.Info("install interrupted, resumable", "err", err, "offset", rec.Offset)
	}
	return fmt.Errorf("%w (interrupted at byte %d: resume with Resume, otarun install --resume)", err, rec.Offset)
}
