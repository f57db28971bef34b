package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// DefaultCacheSize bounds a replica's local copies of shared blobs unless
// it is told otherwise (otaserve run --firmware-cache).
const DefaultCacheSize = 1 << 30

// cacheDir is the directory, under a shared store's upload directory, of
// its local copies of shared blobs; cacheDir.1 to cacheDir.15 are those of
// other processes on the same data directory (replicas on one machine may
// share it), each held by the lock on its lockName.
const (
	cacheDir   = "cache"
	cacheSlots = 16
	lockName   = ".lock"
)

// fillPattern names the temporary file of a copy in progress.
const fillPattern = ".fill-*"

// fillTimeout bounds a copy into the cache, which no download's end
// cancels: a copy that takes longer has stalled.
const fillTimeout = 10 * time.Minute

// errNoRoom is why a blob is not copied: it is larger than the cache, or
// the cache is full of files being read.
var errNoRoom = errors.New("no room in the firmware cache")

// cache keeps local copies of shared blobs in a directory, at most max
// bytes, so that a replica serves a download from a file (the page cache,
// sendfile) and reads each blob from the shared store once. The bytes
// under a SHA-256 never change, so a copy is good for as long as the blob
// exists; a copy's modification time is set to the blob's saved time, so
// that a write to the file after it was checked shows as a changed time.
type cache struct {
	dir    string
	max    int64
	shared Blobs
	lock   *os.File // holds dir for this process while open

	mu      sync.Mutex
	entries map[string]*cacheEntry
	filling map[string]*cacheFill // one copy or check per blob at a time
	used    int64                 // bytes of entries and of copies reserved
	tick    uint64                // the clock of lastUse
}

// cacheEntry is a file of the cache.
type cacheEntry struct {
	size    int64
	open    int    // readers; an open file is never evicted
	lastUse uint64 // cache.tick at the last open, for least recently used
	// checked is set once this process has hashed the file: a file found
	// at start may have been cut short or damaged while no one watched.
	checked bool
	// modTime is the file's modification time, as its file system keeps
	// it (perhaps coarser than the blob's saved time it was set to), since
	// it was checked: a write since changes it.
	modTime time.Time
}

// cacheFill is a copy or check in progress, which other first readers of
// the same blob wait for.
type cacheFill struct {
	done chan struct{}
	err  error
}

// newCache takes the first cache directory under parent no other process
// holds (made if missing), removes the copies an earlier process left half
// done there, and takes the files it holds, evicting the oldest (by the
// blob's saved time: their last use is not known) past max.
func newCache(parent string, max int64, shared Blobs) (*cache, error) {
	dir, lock, err := holdSlot(parent, true)
	if err != nil {
		return nil, err
	}
	c := &cache{dir: dir, max: max, shared: shared, lock: lock, entries: map[string]*cacheEntry{}, filling: map[string]*cacheFill{}}
	if err := c.load(); err != nil {
		lock.Close()
		return nil, err
	}
	return c, nil
}

// holdSlot returns the first cache directory under parent that no other
// process holds, made if missing when create is set, and the open file that
// holds its lock; "" when there is none.
func holdSlot(parent string, create bool) (string, *os.File, error) {
	for i := range cacheSlots {
		dir := filepath.Join(parent, cacheDir)
		if i > 0 {
			dir += fmt.Sprintf(".%d", i)
		}
		if create {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return "", nil, fmt.Errorf("open firmware cache %s: %w", dir, err)
			}
		}
		f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600)
		if errors.Is(err, fs.ErrNotExist) && !create {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("open firmware cache %s: %w", dir, err)
		}
		ok, err := lockFile(f)
		if err != nil {
			f.Close()
			return "", nil, fmt.Errorf("open firmware cache %s: %w", dir, err)
		}
		if ok {
			return dir, f, nil
		}
		f.Close()
	}
	if !create {
		return "", nil, nil
	}
	return "", nil, fmt.Errorf("open firmware cache: the %d cache directories of %s are all held by other processes: give this one a data directory of its own (--data)", cacheSlots, parent)
}

// removeCaches removes the cache directories under parent that no process
// holds.
func removeCaches(parent string) error {
	for {
		dir, lock, err := holdSlot(parent, false)
		if err != nil || dir == "" {
			return err
		}
		err = os.RemoveAll(dir)
		lock.Close()
		if err != nil {
			return fmt.Errorf("remove firmware cache %s: %w", dir, err)
		}
	}
}

// load takes the files of the cache directory.
func (c *cache) load() error {
	dir := c.dir
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("open firmware cache %s: %w", dir, err)
	}
	type found struct {
		sum string
		at  time.Time
	}
	var files []found
	for _, e := range ents {
		name := e.Name()
		if ok, _ := filepath.Match(fillPattern, name); ok {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("open firmware cache %s: remove an interrupted copy: %w", dir, err)
			}
			continue
		}
		if !sumPattern.MatchString(name) || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("open firmware cache %s: %w", dir, err)
		}
		c.entries[name] = &cacheEntry{size: info.Size()}
		c.used += info.Size()
		files = append(files, found{name, info.ModTime()})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].at.Before(files[j].at) })
	for _, f := range files {
		c.tick++
		c.entries[f.sum].lastUse = c.tick
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.evict(0); err != nil && !errors.Is(err, errNoRoom) {
		return fmt.Errorf("open firmware cache %s: %w", dir, err)
	}
	return nil
}

func (c *cache) path(sum string) string { return filepath.Join(c.dir, sum) }

// cachedFile is an open copy; Close lets the cache evict it again.
type cachedFile struct {
	*os.File
	c    *cache
	e    *cacheEntry
	once sync.Once
}

func (f *cachedFile) Close() error {
	f.once.Do(func() {
		f.c.mu.Lock()
		f.e.open--
		f.c.mu.Unlock()
	})
	return f.File.Close()
}

// open returns the local copy of the blob, made if missing, after the
// shared store confirmed the blob still exists (another replica may have
// removed it). A blob the cache has no room for is read from the shared
// store.
func (c *cache) open(ctx context.Context, sum string) (io.ReadSeekCloser, time.Time, error) {
	size, saved, err := c.shared.Stat(ctx, sum)
	if errors.Is(err, fs.ErrNotExist) {
		if err := c.remove(sum); err != nil {
			return nil, time.Time{}, err
		}
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	f, err := c.acquire(ctx, sum, size, saved)
	if errors.Is(err, errNoRoom) {
		return c.shared.Open(ctx, sum)
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	return f, saved, nil
}

// acquire opens the checked copy of the blob, or becomes the one caller
// that checks or copies it while the others wait.
func (c *cache) acquire(ctx context.Context, sum string, size int64, saved time.Time) (*cachedFile, error) {
	for {
		c.mu.Lock()
		if fl := c.filling[sum]; fl != nil {
			c.mu.Unlock()
			select {
			case <-fl.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("wait for the copy of blob %s: %w", sum, ctx.Err())
			}
			if fl.err != nil {
				return nil, fl.err
			}
			continue
		}
		if e := c.entries[sum]; e != nil && e.checked && e.size == size {
			e.open++
			c.tick++
			e.lastUse = c.tick
			c.mu.Unlock()
			if f := c.openChecked(sum, e.size, e.modTime); f != nil {
				return &cachedFile{File: f, c: c, e: e}, nil
			}
			// Changed since it was checked: check it again.
			c.mu.Lock()
			e.open--
			e.checked = false
			c.mu.Unlock()
			continue
		}
		fl := &cacheFill{done: make(chan struct{})}
		c.filling[sum] = fl
		c.mu.Unlock()
		// The copy serves every waiting reader: the first one leaving
		// must not cancel it. A copy that takes longer than fillTimeout
		// has stalled.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fillTimeout)
		fl.err = c.fill(fctx, sum, size, saved)
		cancel()
		c.mu.Lock()
		delete(c.filling, sum)
		c.mu.Unlock()
		close(fl.done)
		if fl.err != nil {
			return nil, fl.err
		}
	}
}

// openChecked opens the copy if it still has the size and the time it had
// when checked, nil otherwise.
func (c *cache) openChecked(sum string, size int64, modTime time.Time) *os.File {
	f, err := os.Open(c.path(sum))
	if err != nil {
		return nil
	}
	st, err := f.Stat()
	if err != nil || st.Size() != size || !st.ModTime().Equal(modTime) {
		f.Close()
		return nil
	}
	return f
}

// fill makes the copy of the blob checked: it hashes a copy already there
// and keeps it if it is right, else copies the blob from the shared store.
// The caller holds the blob's cacheFill, so no one else touches its file.
func (c *cache) fill(ctx context.Context, sum string, size int64, saved time.Time) error {
	c.mu.Lock()
	e := c.entries[sum]
	c.mu.Unlock()
	if e != nil {
		if mt, err := c.check(sum, size, saved); err == nil {
			c.mu.Lock()
			e.checked, e.modTime = true, mt
			c.mu.Unlock()
			return nil
		}
		// Cut short, changed or unreadable: copy it again.
		if err := c.remove(sum); err != nil {
			return err
		}
	}
	c.mu.Lock()
	err := c.evict(size)
	if err == nil {
		c.used += size // reserved for the copy
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	mt, err := c.copy(ctx, sum, size, saved)
	if err != nil {
		c.mu.Lock()
		c.used -= size
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	c.tick++
	c.entries[sum] = &cacheEntry{size: size, lastUse: c.tick, checked: true, modTime: mt}
	c.mu.Unlock()
	return nil
}

// check hashes the copy of the blob and gives it the blob's saved time,
// which it returns as the file system keeps it.
func (c *cache) check(sum string, size int64, saved time.Time) (time.Time, error) {
	f, err := os.Open(c.path(sum))
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return time.Time{}, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != size || got != sum {
		return time.Time{}, fmt.Errorf("cached blob %s: %d bytes hashing to %s, want %d", sum, n, got, size)
	}
	return setTime(c.path(sum), saved)
}

// setTime sets the file's modification time to t and returns it as the
// file system keeps it.
func setTime(path string, t time.Time) (time.Time, error) {
	if err := os.Chtimes(path, t, t); err != nil {
		return time.Time{}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

// copy copies the blob from the shared store into a temporary file of the
// cache, hashing it, and renames it to the blob's name if its size and
// SHA-256 are the blob's. It returns the copy's modification time (saved).
func (c *cache) copy(ctx context.Context, sum string, size int64, saved time.Time) (time.Time, error) {
	r, _, err := c.shared.Open(ctx, sum)
	if err != nil {
		return time.Time{}, fmt.Errorf("cache blob %s: %w", sum, err)
	}
	defer r.Close()
	tmp, err := os.CreateTemp(c.dir, fillPattern)
	if err != nil {
		return time.Time{}, fmt.Errorf("cache blob %s: %w", sum, err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // a no-op once renamed
	}()
	h := sha256.New()
	// One byte past size tells a longer blob from a right one.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(ctxReader{ctx, r}, size+1))
	if err != nil {
		return time.Time{}, fmt.Errorf("cache blob %s: copy: %w", sum, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != size || got != sum {
		return time.Time{}, fmt.Errorf("cache blob %s: the shared store gave %d bytes hashing to %s, not the %d bytes of its name", sum, n, got, size)
	}
	if err := tmp.Close(); err != nil {
		return time.Time{}, fmt.Errorf("cache blob %s: %w", sum, err)
	}
	mt, err := setTime(tmp.Name(), saved)
	if err != nil {
		return time.Time{}, fmt.Errorf("cache blob %s: %w", sum, err)
	}
	if err := os.Rename(tmp.Name(), c.path(sum)); err != nil {
		return time.Time{}, fmt.Errorf("cache blob %s: %w", sum, err)
	}
	return mt, nil
}

// evict removes the least recently used files that no one reads until
// need more bytes fit; errNoRoom when they cannot. c.mu is held.
func (c *cache) evict(need int64) error {
	if need > c.max {
		return errNoRoom
	}
	for c.used+need > c.max {
		var victim string
		var oldest *cacheEntry
		for sum, e := range c.entries {
			if e.open > 0 || c.filling[sum] != nil {
				continue
			}
			if oldest == nil || e.lastUse < oldest.lastUse {
				victim, oldest = sum, e
			}
		}
		if oldest == nil {
			return errNoRoom
		}
		if err := c.drop(victim); err != nil {
			return err
		}
	}
	return nil
}

// remove deletes the copy of the blob, if there is one. A reader of it
// keeps its open file to the end.
func (c *cache) remove(sum string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drop(sum)
}

// drop is remove with c.mu held: the file goes while no copy can take its
// name.
func (c *cache) drop(sum string) error {
	if err := os.Remove(c.path(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cached blob %s: %w", sum, err)
	}
	if e := c.entries[sum]; e != nil {
		c.used -= e.size
		delete(c.entries, sum)
	}
	return nil
}
