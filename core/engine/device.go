package engine

import (
	"context"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// device is what the engine needs to know of the board before an install:
// where images go, how large they may be, what runs now.
type device struct {
	info    hal.Info
	scheme  hal.Scheme
	update  hal.Partition // the slot new images are written to
	running hal.SlotState // the slot that runs now; Name "" when none does
	// version is the running image's version, ok false when no image
	// runs that the bootloader can tell the version of.
	version   image.Version
	versionOK bool
	// maxSize is the largest image the board takes: the update slot, and
	// in single-bank also app, which it is copied over.
	maxSize int64
	align   int
	trial   bool
}

// describe asks the port for its layout and boot state.
func (e *Engine) describe(ctx context.Context) (device, error) {
	info, err := e.p.Describe(ctx)
	if err != nil {
		return device{}, fmt.Errorf("describe the port: %w", err)
	}
	return deviceOf(info)
}

// deviceOf interprets a port's Info.
func deviceOf(info hal.Info) (device, error) {
	l := info.Layout
	d := device{info: info, scheme: l.Scheme, trial: info.Boot.Trial, align: int(max(1, l.Flash.WriteAlign))}
	d.running, _ = info.Boot.Running()
	if d.running.Version != "" {
		if v, err := image.ParseVersion(d.running.Version); err == nil {
			d.version, d.versionOK = v, true
		}
	}
	p, err := info.UpdateSlot()
	if err != nil {
		return device{}, fmt.Errorf("port of %w", err)
	}
	d.update = p
	n, _ := info.MaxImageSize() // fails only as UpdateSlot does
	d.maxSize = int64(n)
	return d, nil
}

// slot returns the state of the slot called name.
func (d device) slot(name string) (hal.SlotState, bool) {
	for _, s := range d.info.Boot.Slots {
		if s.Name == name {
			return s, true
		}
	}
	return hal.SlotState{}, false
}

// canWrite refuses an install while the update slot holds the image to fall
// back to (a trial on a dual-bank or swap board).
func (d device) canWrite() error {
	if d.scheme.Reverts() && d.trial {
		return fmt.Errorf("%w: the running image %s in %s is on trial and %s holds the image to fall back to: confirm it (otarun confirm) or roll back (otarun rollback) before a new install",
			ErrBusy, d.running.Version, d.running.Name, d.update.Name)
	}
	return nil
}

// slotReader is an io.ReaderAt over the update slot, through the port's
// Read: it reads whole blocks and fetches the next block while the caller
// hashes this one, so the read-back costs little more than the hashing.
// With a port that reads into the caller's buffer (plugin.Client's ReadInto)
// it reuses two block buffers instead of allocating one per block: a
// 64 MiB image read back in 1 MiB blocks would otherwise hand the garbage
// collector 64 MiB to reclaim while the hash runs.
type slotReader struct {
	ctx   context.Context
	p     hal.Platform
	into  blockReader // p's ReadInto, nil when it has none
	size  int64
	block int64

	buf    []byte
	bufOff int64  // -1: buf holds nothing
	spare  []byte // the other block buffer (with into), or nil

	pre    chan blockResult // the block being prefetched, nil if none
	preOff int64
}

// blockReader is a port that reads into the caller's buffer (plugin.Client).
type blockReader interface {
	ReadInto(ctx context.Context, off uint64, p []byte) error
}

type blockResult struct {
	data []byte
	err  error
}

const readBlock = 1 << 20

func newSlotReader(ctx context.Context, p hal.Platform, size int64) *slotReader {
	r := &slotReader{ctx: ctx, p: p, size: size, block: readBlock, bufOff: -1}
	if br, ok := p.(blockReader); ok {
		r.into = br
		n := min(r.block, size)
		r.buf, r.spare = make([]byte, n), make([]byte, n)
	}
	return r
}

// ReadAt reads len(b) bytes at off; past size it returns io.EOF.
func (r *slotReader) ReadAt(b []byte, off int64) (int, error) {
	n := 0
	for n < len(b) {
		o := off + int64(n)
		if o >= r.size {
			return n, io.EOF
		}
		if r.bufOff < 0 || o < r.bufOff || o >= r.bufOff+int64(len(r.buf)) {
			if err := r.load(o - o%r.block); err != nil {
				return n, err
			}
		}
		n += copy(b[n:], r.buf[o-r.bufOff:])
	}
	return n, nil
}

// fetch reads the block at off, into dst when the port reads into buffers.
func (r *slotReader) fetch(off int64, dst []byte) blockResult {
	n := min(r.block, r.size-off)
	var data []byte
	var err error
	if r.into != nil {
		data = dst[:n]
		err = r.into.ReadInto(r.ctx, uint64(off), data)
	} else {
		data, err = r.p.Read(r.ctx, uint64(off), int(n))
		if err == nil && int64(len(data)) != n {
			err = fmt.Errorf("port read %d bytes at 0x%x, asked for %d", len(data), off, n)
		}
	}
	if err != nil {
		err = fmt.Errorf("read back the update slot at 0x%x: %w", off, err)
	}
	return blockResult{data, err}
}

func (r *slotReader) load(start int64) error {
	var res blockResult
	if r.pre != nil && r.preOff == start {
		res = <-r.pre
		r.pre = nil
	} else {
		r.wait()
		res = r.fetch(start, r.spare)
	}
	if res.err != nil {
		return res.err
	}
	// The block read went to the spare buffer: the current one becomes
	// the spare, which the next prefetch fills.
	r.buf, r.spare, r.bufOff = res.data, r.buf, start
	if next := start + r.block; next < r.size {
		ch := make(chan blockResult, 1)
		dst := r.spare
		go func() { ch <- r.fetch(next, dst) }()
		r.pre, r.preOff = ch, next
	}
	return nil
}

// wait ends a prefetch in flight.
func (r *slotReader) wait() {
	if r.pre != nil {
		<-r.pre
		r.pre = nil
	}
}
