package flash

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/otaport/otaport/core/hal"
)

// A file-backed emulator keeps the flash in two files:
//
//   - <path> holds exactly the flash bytes, offset for offset, so any tool
//     (hexdump, cmp, a debugger's flash image loader) reads it as the chip.
//     The emulator maps the file (mmap, shared, read-only) and its pages
//     are the mapping; each operation writes its result to the file with
//     WriteAt, which the mapping sees at once, never as a rewrite of the
//     whole file, so the file after a process exit is the chip after a
//     power cycle. Opening a file reads nothing: a 160 MiB SD card costs a
//     mapping, and only the pages an upgrade touches are ever read. Where
//     mmap is missing the file is read into memory at open and every
//     operation written through the same way.
//   - <path>.wear holds the per-sector erase counters and the geometry they
//     were counted for, so a file reopened with another board's geometry is
//     refused even when the sizes happen to match.
//
// wear file layout, little-endian:
//
//	0  magic "OTAWEAR1"
//	8  flash size u64
//	16 write align u32
//	20 sector count u32
//	24 erase value u8, 7 bytes zero
//	32 fingerprint of the sector starts u64 (FNV-1a)
//	40 erase counts, u32 per sector
const (
	wearMagic  = "OTAWEAR1"
	wearHeader = 40
)

// wearInfo is the geometry part of a wear file.
type wearInfo struct {
	size        uint64
	align       uint32
	sectors     uint32
	erased      byte
	fingerprint uint64
}

func wearInfoOf(g hal.FlashGeometry, t sectorTable) wearInfo {
	h := fnv.New64a()
	var b [8]byte
	for _, s := range t.starts {
		binary.LittleEndian.PutUint64(b[:], uint64(s))
		h.Write(b[:])
	}
	return wearInfo{
		size:        g.Size,
		align:       g.WriteAlign,
		sectors:     uint32(t.count()),
		erased:      g.EraseValue,
		fingerprint: h.Sum64(),
	}
}

func (w wearInfo) String() string {
	return fmt.Sprintf("size %d, %d sectors, write_align %d, erase_value 0x%02x", w.size, w.sectors, w.align, w.erased)
}

// encodeWear returns a wear file for info and counts.
func encodeWear(info wearInfo, counts []uint32) []byte {
	b := make([]byte, wearHeader+4*len(counts))
	copy(b, wearMagic)
	binary.LittleEndian.PutUint64(b[8:], info.size)
	binary.LittleEndian.PutUint32(b[16:], info.align)
	binary.LittleEndian.PutUint32(b[20:], info.sectors)
	b[24] = info.erased
	binary.LittleEndian.PutUint64(b[32:], info.fingerprint)
	for i, c := range counts {
		binary.LittleEndian.PutUint32(b[wearHeader+4*i:], c)
	}
	return b
}

// parseWear decodes a wear file. It checks the file is well formed, not that
// it matches a geometry.
func parseWear(b []byte) (wearInfo, []uint32, error) {
	if len(b) < wearHeader || string(b[:8]) != wearMagic {
		return wearInfo{}, nil, errors.New("not a wear counter file (bad magic or too short)")
	}
	info := wearInfo{
		size:        binary.LittleEndian.Uint64(b[8:]),
		align:       binary.LittleEndian.Uint32(b[16:]),
		sectors:     binary.LittleEndian.Uint32(b[20:]),
		erased:      b[24],
		fingerprint: binary.LittleEndian.Uint64(b[32:]),
	}
	if info.sectors > MaxSectors {
		return wearInfo{}, nil, fmt.Errorf("sector count %d is more than %d", info.sectors, MaxSectors)
	}
	if want := wearHeader + 4*int(info.sectors); len(b) != want {
		return wearInfo{}, nil, fmt.Errorf("file is %d bytes, want %d for %d sectors", len(b), want, info.sectors)
	}
	counts := make([]uint32, info.sectors)
	for i := range counts {
		counts[i] = binary.LittleEndian.Uint32(b[wearHeader+4*i:])
	}
	return info, counts, nil
}

// fileStore is the backing of a file-backed emulator.
type fileStore struct {
	path string
	f    *os.File
	wear *os.File
	sync bool
	// mem is the file mapped shared and read-only, nil where mmap is
	// missing. The emulator's pages are slices of it; writes go to f.
	mem []byte
	// werr is the first failed write to f since the last syncRange,
	// which reports it.
	werr error
	// erasedBuf holds erased bytes for the WriteAt of an erase.
	erasedBuf []byte
}

// mapped reports whether the emulator's pages are the file's mapping.
func (s *fileStore) mapped() bool { return s.mem != nil }

// put writes b at off in a mapped file; an error waits for syncRange.
func (s *fileStore) put(b []byte, off int64) {
	if s.werr == nil {
		_, s.werr = s.f.WriteAt(b, off)
	}
}

// putErased writes n erased bytes (value v) at off in a mapped file.
func (s *fileStore) putErased(v byte, off, n int64) {
	if s.erasedBuf == nil {
		s.erasedBuf = make([]byte, min(len(s.mem), 1<<20))
		fill(s.erasedBuf, v)
	}
	for n > 0 {
		c := min(n, int64(len(s.erasedBuf)))
		s.put(s.erasedBuf[:c], off)
		off, n = off+c, n-c
	}
}

// writeAt writes b, the flash content at off, through to an unmapped file.
func (s *fileStore) writeAt(b []byte, off int64) error {
	if _, err := s.f.WriteAt(b, off); err != nil {
		return err
	}
	if s.sync {
		return s.f.Sync()
	}
	return nil
}

// writeWear writes counts[first..last] to the wear file.
func (s *fileStore) writeWear(counts []uint32, first, last int) error {
	b := make([]byte, 4*(last-first+1))
	for i := first; i <= last; i++ {
		binary.LittleEndian.PutUint32(b[4*(i-first):], counts[i])
	}
	if _, err := s.wear.WriteAt(b, int64(wearHeader+4*first)); err != nil {
		return err
	}
	if s.sync {
		return s.wear.Sync()
	}
	return nil
}

// syncRange ends an operation on a mapped file, whose content is already
// written: it reports the error of those writes, and makes them durable
// when Options.Sync asks. done is false for an unmapped file, whose
// content is still to be written through.
func (s *fileStore) syncRange() (done bool, err error) {
	if !s.mapped() {
		return false, nil
	}
	err, s.werr = s.werr, nil
	if err == nil && s.sync {
		err = s.f.Sync()
	}
	return true, err
}

func (s *fileStore) close() error {
	var unmap error
	if s.mem != nil {
		unmap = unmapFile(s.mem)
		s.mem = nil
	}
	return errors.Join(unmap, s.f.Close(), s.wear.Close())
}

// OpenFile opens the flash persisted in the file at path, creating it erased
// when it does not exist. Reopening the file is a power cycle: the content,
// and the erase counters kept in path+".wear", are as the last operation
// left them. A file whose size or recorded geometry does not match g is
// refused.
func OpenFile(path string, g hal.FlashGeometry) (*Emulator, error) {
	return OpenFileWith(path, g, Options{})
}

// OpenFileWith is OpenFile with options.
func OpenFileWith(path string, g hal.FlashGeometry, opts Options) (*Emulator, error) {
	if err := CheckGeometry(g); err != nil {
		return nil, fmt.Errorf("open flash file %s: %w", path, err)
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := createErased(path, g, opts.Sync); err != nil {
			return nil, fmt.Errorf("create flash file %s: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open flash file: %w", err)
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("open flash file %s: not a regular file", path)
	case uint64(st.Size()) != g.Size:
		return nil, fmt.Errorf("open flash file %s: the file is %d bytes but the board's flash is %d bytes: "+
			"delete the file (a new erased one is made) or pass the board it was made for", path, st.Size(), g.Size)
	}

	e := newEmulator(g, opts)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open flash file: %w", err)
	}
	if err := lockWaiting(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("open flash file %s: %w", path, err)
	}
	mem, err := loadPages(e, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open flash file %s: %w", path, err)
	}
	wear, counts, err := openWear(path+".wear", wearInfoOf(g, e.sectors), path)
	if err != nil {
		if mem != nil {
			_ = unmapFile(mem)
		}
		f.Close()
		return nil, err
	}
	e.counts = counts
	e.file = &fileStore{path: path, f: f, wear: wear, sync: opts.Sync, mem: mem}
	return e, nil
}

// lockWait is how long OpenFile waits for a flash file another process
// holds: a plugin whose host was just killed is on its way out (the kernel
// kills it with its host), and its restarted host should not fail for the
// moments that takes. A holder that is alive is refused after it.
const lockWait = 2 * time.Second

// lockWaiting takes the flash file's lock, waiting up to lockWait for a
// holder that is exiting. The lock goes with the descriptor: closing the
// file, or the process ending however it ends, frees it.
func lockWaiting(f *os.File) error {
	deadline := time.Now().Add(lockWait)
	for {
		err := lockFile(f)
		if err == nil || !errors.Is(err, ErrInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loadPages points e's pages at the content of f: at the pages of its
// mapping, which it returns, or where mmap is missing at copies read from
// it (mem nil).
func loadPages(e *Emulator, f *os.File) (mem []byte, err error) {
	// A file system that cannot map the file (or a system without mmap)
	// gets the copy: slower to open, the same flash.
	if mem, err = mapFile(f, e.size); err == nil {
		for i := range e.pages {
			lo := int64(i) << pageShift
			hi := min(lo+pageSize, e.size)
			// A full slice expression: a page can never grow into the next.
			e.pages[i], e.owned[i] = mem[lo:hi:hi], true
		}
		return mem, nil
	}
	for i := range e.pages {
		pg := make([]byte, min(pageSize, e.size-int64(i)<<pageShift))
		if _, err := f.ReadAt(pg, int64(i)<<pageShift); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		e.pages[i], e.owned[i] = pg, true
	}
	return nil, nil
}

// openWear opens or creates the wear file at path for a flash of info.
func openWear(path string, info wearInfo, flashPath string) (*os.File, []uint32, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("open wear counters: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("read wear counters %s: %w", path, err)
	}
	if len(b) == 0 {
		// A flash file made elsewhere (or a deleted wear file): start
		// counting from zero.
		counts := make([]uint32, info.sectors)
		if _, err := f.WriteAt(encodeWear(info, counts), 0); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("write wear counters %s: %w", path, err)
		}
		return f, counts, nil
	}
	got, counts, err := parseWear(b)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open flash file %s: wear counters %s: %w: delete %s to reset the counters", flashPath, path, err, path)
	}
	if got != info {
		f.Close()
		return nil, nil, fmt.Errorf("open flash file %s: it was made for another geometry (%s) than the board's (%s): "+
			"delete %s and %s (a new erased flash is made) or pass the board it was made for", flashPath, got, info, flashPath, path)
	}
	return f, counts, nil
}

// createErased makes an erased flash file at path, atomically: it is filled
// under a temporary name and renamed, so an interrupted creation leaves no
// half-erased file behind.
func createErased(path string, g hal.FlashGeometry, sync bool) (err error) {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if g.EraseValue == 0 {
		// A sparse file reads as zeros: no write at all.
		err = f.Truncate(int64(g.Size))
	} else {
		buf := make([]byte, min(g.Size, 1<<16))
		fill(buf, g.EraseValue)
		for off := uint64(0); off < g.Size && err == nil; off += uint64(len(buf)) {
			_, err = f.WriteAt(buf[:min(uint64(len(buf)), g.Size-off)], int64(off))
		}
	}
	if err == nil && sync {
		err = f.Sync()
	}
	if err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	// A stale wear file belongs to a flash that no longer exists.
	if err = os.Remove(path + ".wear"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.Rename(tmp, path)
}

// Reopen powers the flash on again after a cut (or at any time): a
// file-backed emulator is closed and its file opened afresh, with the same
// geometry and options; an in-memory one is cloned. The result has no cut
// armed and an operation count of zero. The receiver is closed for a
// file-backed emulator and stays usable (though powered off after a cut)
// for an in-memory one.
func (e *Emulator) Reopen() (*Emulator, error) {
	e.mu.Lock()
	file, opts := e.file, e.opts
	e.mu.Unlock()
	if file == nil {
		return e.Clone(), nil
	}
	if err := e.Close(); err != nil {
		return nil, fmt.Errorf("reopen flash file %s: %w", file.path, err)
	}
	return OpenFileWith(file.path, e.geo, opts)
}
