package flash

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/otaport/otaport/core/hal"
)

// The emulator keeps the flash content in fixed pages of pageSize bytes,
// shared copy-on-write between an emulator and its clones: a power-cut sweep
// clones a pre-upgrade flash thousands of times, and a clone then costs a
// slice of page pointers, not a copy of the flash. Pages are independent of
// the erase sectors, which may be smaller or larger and are not uniform.
const (
	pageShift = 12
	pageSize  = 1 << pageShift
)

// Options tunes an emulator. The zero value is what a real part does.
type Options struct {
	// Strict refuses programming over bytes that are not erased, with
	// ErrNotErased naming the first offending offset, as MCUboot's simflash
	// does. Real NOR accepts such a program and ANDs (or ORs) the bits, which
	// is the default here so that a port that forgets to erase reads back
	// wrong data rather than an error.
	Strict bool
	// Sync calls fsync after every Program and Erase of a file-backed
	// emulator. Off by default: the file is only a power cycle across
	// process restarts, and a process exit keeps the page cache. Turn it on
	// to survive a host crash, at the cost of a disk flush per operation.
	Sync bool
}

// Emulator is a NOR flash in memory, optionally persisted to a file. It
// implements Device and is safe for concurrent use.
type Emulator struct {
	mu sync.Mutex

	geo     hal.FlashGeometry
	size    int64
	align   int64
	erased  byte
	sectors sectorTable // immutable, shared with clones
	opts    Options

	pages [][]byte
	owned []bool // pages[i] may be written in place; else copy first
	blank []byte // an erased page, never written, shared with clones

	counts []uint32 // erase count per sector

	ops    int  // valid Program and Erase calls since power-on
	cut    Cut  // the armed cut, if cut.At > 0
	cutOps int  // operations since SetCut
	off    bool // the power cut has happened
	closed bool

	file    *fileStore // nil for an in-memory emulator
	scratch []byte     // reused buffer: no allocation per operation
}

var _ Device = (*Emulator)(nil)

// NewMemory returns an erased in-memory flash of geometry g.
func NewMemory(g hal.FlashGeometry) (*Emulator, error) {
	return NewMemoryWith(g, Options{})
}

// NewMemoryWith is NewMemory with options.
func NewMemoryWith(g hal.FlashGeometry, opts Options) (*Emulator, error) {
	if err := CheckGeometry(g); err != nil {
		return nil, err
	}
	return newEmulator(g, opts), nil
}

// newEmulator builds an erased emulator over a valid geometry. The pages all
// point at one blank page and are copied at their first write, so a fresh
// 16 MiB flash costs 4096 pointers until it is written.
func newEmulator(g hal.FlashGeometry, opts Options) *Emulator {
	g.Sectors = slices.Clone(g.Sectors)
	e := &Emulator{
		geo:     g,
		size:    int64(g.Size),
		align:   int64(g.WriteAlign),
		erased:  g.EraseValue,
		sectors: newSectorTable(g),
		opts:    opts,
	}
	e.blank = make([]byte, pageSize)
	fill(e.blank, e.erased)
	n := int((e.size + pageSize - 1) >> pageShift)
	e.pages = make([][]byte, n)
	for i := range e.pages {
		e.pages[i] = e.blank
	}
	e.owned = make([]bool, n)
	e.counts = make([]uint32, e.sectors.count())
	return e
}

// Geometry returns the flash geometry.
func (e *Emulator) Geometry() hal.FlashGeometry {
	g := e.geo
	g.Sectors = slices.Clone(g.Sectors)
	return g
}

// SetStrict turns strict mode on or off (see Options.Strict).
func (e *Emulator) SetStrict(strict bool) {
	e.mu.Lock()
	e.opts.Strict = strict
	e.mu.Unlock()
}

// Ops returns the number of Program and Erase operations since this power-on
// (creation, Clone or Reopen). Calls refused for bad arguments and empty ones
// do not count: they never reach the flash.
func (e *Emulator) Ops() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ops
}

// PoweredOff reports whether the armed power cut has happened.
func (e *Emulator) PoweredOff() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.off
}

// EraseCounts returns the number of erases of each sector, in address order.
// For a file-backed emulator the counts persist across reopen.
func (e *Emulator) EraseCounts() []uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.counts)
}

// SectorAt returns the bounds of the sector holding off.
func (e *Emulator) SectorAt(off int64) (start, size int64, err error) {
	if off < 0 || off >= e.size {
		return 0, 0, fmt.Errorf("flash sector at 0x%x: past the end of the flash (size 0x%x): %w", off, e.size, ErrOutOfBounds)
	}
	i := e.sectors.index(off)
	return e.sectors.starts[i], e.sectors.starts[i+1] - e.sectors.starts[i], nil
}

// usable returns the error a call gets when the flash cannot be used.
func (e *Emulator) usable(op string, off int64) error {
	if e.closed {
		return fmt.Errorf("flash %s at 0x%x: %w", op, off, ErrClosed)
	}
	if e.off {
		return fmt.Errorf("flash %s at 0x%x: %w", op, off, ErrPowerCut)
	}
	return nil
}

// ReadAt reads len(p) bytes at off. A read that starts in the flash and runs
// past its end reads what there is and returns io.EOF, as io.ReaderAt asks;
// one that starts outside fails with ErrOutOfBounds. After a power cut it
// returns ErrPowerCut: the chip is off.
func (e *Emulator) ReadAt(p []byte, off int64) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable("read", off); err != nil {
		return 0, err
	}
	if off < 0 || off > e.size {
		return 0, fmt.Errorf("flash read at 0x%x: past the end of the flash (size 0x%x): %w", off, e.size, ErrOutOfBounds)
	}
	n := len(p)
	var err error
	if int64(n) > e.size-off {
		n = int(e.size - off)
		err = io.EOF
	}
	e.copyOut(p[:n], off)
	return n, err
}

// copyOut copies the flash content at off into p.
func (e *Emulator) copyOut(p []byte, off int64) {
	for len(p) > 0 {
		pg, in := off>>pageShift, off&(pageSize-1)
		c := copy(p, e.pages[pg][in:])
		p, off = p[c:], off+int64(c)
	}
}

// page returns page i for writing, copying it first when it is shared.
func (e *Emulator) page(i int64) []byte {
	if !e.owned[i] {
		e.pages[i] = slices.Clone(e.pages[i])
		e.owned[i] = true
	}
	return e.pages[i]
}

// Program writes p at off with NOR semantics: programming only moves bits
// away from the erased value, so the result is old AND p on 0xFF-erased
// flash and old OR p on 0x00-erased flash. off and len(p) must be multiples
// of the write alignment.
func (e *Emulator) Program(off int64, p []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable("program", off); err != nil {
		return err
	}
	n := int64(len(p))
	if off < 0 || off > e.size || n > e.size-off {
		return fmt.Errorf("flash program at 0x%x, %d bytes: past the end of the flash (size 0x%x): %w", off, n, e.size, ErrOutOfBounds)
	}
	if off%e.align != 0 || n%e.align != 0 {
		return fmt.Errorf("flash program at 0x%x, %d bytes: offset and length must be multiples of the write alignment %d: %w", off, n, e.align, ErrMisaligned)
	}
	if n == 0 {
		return nil
	}
	if e.opts.Strict {
		if at, ok := e.firstNotErased(off, n); ok {
			return fmt.Errorf("flash program at 0x%x, %d bytes: byte at 0x%x is not erased (strict mode): erase its sector first: %w", off, n, at, ErrNotErased)
		}
	}
	when, cut := e.count()
	switch {
	case cut && when == Before:
		return fmt.Errorf("flash program at 0x%x (operation %d): %w", off, e.cutOps, ErrPowerCut)
	case cut && when == Torn:
		e.tornProgram(off, p)
		if err := e.persist(off, n); err != nil {
			return err
		}
		return fmt.Errorf("flash program at 0x%x (operation %d, torn): %w", off, e.cutOps, ErrPowerCut)
	}
	e.program(off, p)
	return e.persist(off, n)
}

// count records one operation and reports whether it is the one the armed
// cut stops at. For After and Torn the power is off once the operation
// returns.
func (e *Emulator) count() (CutWhen, bool) {
	e.ops++
	if e.cut.At <= 0 {
		return 0, false
	}
	e.cutOps++
	if e.cutOps != e.cut.At {
		return 0, false
	}
	e.off = true
	return e.cut.When, true
}

// program applies p at off, one page at a time.
func (e *Emulator) program(off int64, p []byte) {
	if e.mapped() {
		e.file.put(e.afterProgram(off, p), off)
		return
	}
	for len(p) > 0 {
		pg, in := off>>pageShift, off&(pageSize-1)
		dst := e.page(pg)[in:]
		c := min(len(dst), len(p))
		switch {
		case bytes.Equal(dst[:c], e.blank[:c]):
			// Programming erased bytes gives p: a copy, which runs far
			// faster than the word loops, on the path every download
			// takes.
			copy(dst[:c], p[:c])
		case e.erased == 0xFF:
			andBytes(dst[:c], p[:c])
		default:
			orBytes(dst[:c], p[:c])
		}
		p, off = p[c:], off+int64(c)
	}
}

// afterProgram returns what the flash holds at off once p is programmed
// there: p itself over erased bytes (the case of every download), else
// the AND (or OR) of p and the content, in the scratch buffer.
func (e *Emulator) afterProgram(off int64, p []byte) []byte {
	if _, dirty := e.firstNotErased(off, int64(len(p))); !dirty {
		return p
	}
	if cap(e.scratch) < len(p) {
		e.scratch = make([]byte, len(p))
	}
	res := e.scratch[:len(p)]
	e.copyOut(res, off)
	if e.erased == 0xFF {
		andBytes(res, p)
	} else {
		orBytes(res, p)
	}
	return res
}

// firstNotErased returns the first offset in [off, off+n) that does not read
// as the erased value.
func (e *Emulator) firstNotErased(off, n int64) (int64, bool) {
	end := off + n
	for off < end {
		pg, in := off>>pageShift, off&(pageSize-1)
		c := min(int64(pageSize)-in, end-off)
		if i, ok := findNot(e.pages[pg][in:in+c], e.erased); ok {
			return off + int64(i), true
		}
		off += c
	}
	return 0, false
}

// Erase erases the sectors in [off, off+size); both ends must be sector
// boundaries. Each sector erased counts one toward its wear.
func (e *Emulator) Erase(off, size int64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.usable("erase", off); err != nil {
		return err
	}
	if off < 0 || size < 0 || off > e.size || size > e.size-off {
		return fmt.Errorf("flash erase at 0x%x, %d bytes: past the end of the flash (size 0x%x): %w", off, size, e.size, ErrOutOfBounds)
	}
	end := off + size
	if !e.sectors.boundary(off) {
		lo, hi := e.sectors.around(off)
		return fmt.Errorf("flash erase at 0x%x, %d bytes: start is not a sector boundary (the sector there spans 0x%x-0x%x): %w", off, size, lo, hi, ErrMisaligned)
	}
	if !e.sectors.boundary(end) {
		lo, hi := e.sectors.around(end)
		return fmt.Errorf("flash erase at 0x%x, %d bytes: end 0x%x is not a sector boundary (nearest 0x%x or 0x%x): %w", off, size, end, lo, hi, ErrMisaligned)
	}
	if size == 0 {
		return nil
	}
	first, last := e.sectors.index(off), e.sectors.index(end-1)
	when, cut := e.count()
	switch {
	case cut && when == Before:
		return fmt.Errorf("flash erase at 0x%x (operation %d): %w", off, e.cutOps, ErrPowerCut)
	case cut && when == Torn:
		done := e.tornErase(first, last)
		if err := e.persist(off, size); err != nil {
			return err
		}
		if err := e.persistWear(first, done); err != nil {
			return err
		}
		return fmt.Errorf("flash erase at 0x%x (operation %d, torn): %w", off, e.cutOps, ErrPowerCut)
	}
	e.erase(off, end)
	for i := first; i <= last; i++ {
		e.counts[i]++
	}
	if err := e.persist(off, size); err != nil {
		return err
	}
	return e.persistWear(first, last)
}

// erase sets [off, end) to the erased value. Whole pages go back to the
// shared blank page: no copy, no fill.
func (e *Emulator) erase(off, end int64) {
	if e.mapped() {
		e.file.putErased(e.erased, off, end-off)
		return
	}
	for off < end {
		pg, in := off>>pageShift, off&(pageSize-1)
		c := min(int64(pageSize)-in, end-off)
		// A whole page, or the short last page of the flash.
		if in == 0 && (c == pageSize || off+c == e.size) {
			e.pages[pg] = e.blank
			e.owned[pg] = false
		} else {
			fill(e.page(pg)[in:in+c], e.erased)
		}
		off += c
	}
}

// mapped reports whether the pages are a mapped file's: read-only views of
// the file, which every operation writes with WriteAt, and never shared
// with a clone.
func (e *Emulator) mapped() bool { return e.file != nil && e.file.mapped() }

// persist writes [off, off+n) through to the backing file, if any.
func (e *Emulator) persist(off, n int64) error {
	if e.file == nil {
		return nil
	}
	if done, err := e.file.syncRange(); done || err != nil {
		if err != nil {
			return fmt.Errorf("flash write-through at 0x%x, %d bytes: %w", off, n, err)
		}
		return nil
	}
	if int64(cap(e.scratch)) < n {
		e.scratch = make([]byte, n)
	}
	buf := e.scratch[:n]
	e.copyOut(buf, off)
	if err := e.file.writeAt(buf, off); err != nil {
		return fmt.Errorf("flash write-through at 0x%x, %d bytes: %w", off, n, err)
	}
	return nil
}

// persistWear writes the erase counters of sectors first..last through to the
// wear file, if any.
func (e *Emulator) persistWear(first, last int) error {
	if e.file == nil || last < first {
		return nil
	}
	if err := e.file.writeWear(e.counts, first, last); err != nil {
		return fmt.Errorf("flash wear counters: %w", err)
	}
	return nil
}

// SetCut arms a power cut (see Cut); Cut{} disarms it. Operations are
// counted from this call.
func (e *Emulator) SetCut(c Cut) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cut = c
	e.cutOps = 0
}

// Clone powers on a new, independent in-memory emulator over the current
// content: no cut armed, the operation count at zero, the same options and
// erase counts. It works after a power cut (that is its purpose: the flash
// as the cut left it) and costs a copy of page pointers, not of the flash.
// A clone of a file-backed emulator lives in memory only; it costs a copy
// of the pages that are not erased (the file's pages, which the original
// keeps writing, cannot be shared), and the clone of a closed one is
// closed too.
func (e *Emulator) Clone() *Emulator {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.file != nil && (e.mapped() || e.closed) {
		return e.cloneMapped()
	}
	c := &Emulator{
		geo:     e.geo,
		size:    e.size,
		align:   e.align,
		erased:  e.erased,
		sectors: e.sectors,
		opts:    e.opts,
		pages:   slices.Clone(e.pages),
		owned:   make([]bool, len(e.owned)),
		blank:   e.blank,
		counts:  slices.Clone(e.counts),
	}
	// The pages are now shared: neither side may write them in place.
	clear(e.owned)
	return c
}

// cloneMapped is Clone of a file-backed emulator whose pages are the
// file's mapping: the clone gets copies, and the blank page for every
// erased one. After Close the mapping is gone and the clone is closed as
// well.
func (e *Emulator) cloneMapped() *Emulator {
	c := &Emulator{
		geo:     e.geo,
		size:    e.size,
		align:   e.align,
		erased:  e.erased,
		sectors: e.sectors,
		opts:    e.opts,
		pages:   make([][]byte, len(e.pages)),
		owned:   make([]bool, len(e.owned)),
		blank:   e.blank,
		counts:  slices.Clone(e.counts),
		closed:  e.closed,
	}
	for i, pg := range e.pages {
		if e.closed {
			c.pages[i] = e.blank
			continue
		}
		if _, dirty := findNot(pg, e.erased); !dirty {
			c.pages[i] = e.blank
			continue
		}
		c.pages[i], c.owned[i] = slices.Clone(pg), true
	}
	return c
}

// Close releases the backing file, if any. Later calls fail with ErrClosed.
// Closing twice is not an error.
func (e *Emulator) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	if e.file != nil {
		if e.mapped() {
			// The pages are about to be unmapped: nothing may reach
			// them, and every call now fails with ErrClosed first.
			clear(e.pages)
		}
		return e.file.close()
	}
	return nil
}

// andBytes sets dst[i] &= src[i], eight bytes at a time.
func andBytes(dst, src []byte) {
	src = src[:len(dst)]
	i := 0
	for ; i+8 <= len(dst); i += 8 {
		v := binary.LittleEndian.Uint64(dst[i:]) & binary.LittleEndian.Uint64(src[i:])
		binary.LittleEndian.PutUint64(dst[i:], v)
	}
	for ; i < len(dst); i++ {
		dst[i] &= src[i]
	}
}

// orBytes sets dst[i] |= src[i], eight bytes at a time.
func orBytes(dst, src []byte) {
	src = src[:len(dst)]
	i := 0
	for ; i+8 <= len(dst); i += 8 {
		v := binary.LittleEndian.Uint64(dst[i:]) | binary.LittleEndian.Uint64(src[i:])
		binary.LittleEndian.PutUint64(dst[i:], v)
	}
	for ; i < len(dst); i++ {
		dst[i] |= src[i]
	}
}

// fill sets every byte of b to v.
func fill(b []byte, v byte) {
	if v == 0 {
		clear(b)
		return
	}
	if len(b) == 0 {
		return
	}
	b[0] = v
	for i := 1; i < len(b); i *= 2 {
		copy(b[i:], b[:i])
	}
}

// findNot returns the index of the first byte of b that is not v.
func findNot(b []byte, v byte) (int, bool) {
	w := uint64(v) * 0x0101010101010101
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != w {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != v {
			return i, true
		}
	}
	return 0, false
}
