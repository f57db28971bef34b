package firmware

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingBlobs is shared Blobs that counts the blobs opened for reading,
// which is what reads a blob's bytes from the database.
type countingBlobs struct {
	Blobs
	opens atomic.Int64
}

func (c *countingBlobs) Open(ctx context.Context, sum string) (io.ReadSeekCloser, time.Time, error) {
	c.opens.Add(1)
	return c.Blobs.Open(ctx, sum)
}

// replicas makes two stores on one PostgreSQL database, as two otaserve
// replicas: a without a cache, uploading, and b with a cache of cacheSize
// bytes, whose reads of the database are counted.
func replicas(t *testing.T, cacheSize int64) (a, b *Store, reads *countingBlobs) {
	t.Helper()
	url := pg.DB(t)
	a, err := NewSharedStore(t.TempDir(), sharedBlobs(t, url), 0)
	if err != nil {
		t.Fatal(err)
	}
	reads = &countingBlobs{Blobs: sharedBlobs(t, url)}
	if b, err = NewSharedStore(t.TempDir(), reads, cacheSize); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b, reads
}

// putBlob uploads size bytes made from seed through s.
func putBlob(t *testing.T, s *Store, size int, seed byte) (Blob, []byte) {
	t.Helper()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7) ^ seed
	}
	b, err := s.Put(context.Background(), bytes.NewReader(data), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b, data
}

// readBlob opens the blob through s and reads it whole.
func readBlob(t *testing.T, s *Store, sum string) ([]byte, time.Time) {
	t.Helper()
	r, at, err := s.Open(context.Background(), sum)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return got, at
}

// TestCache_ServesItsCopy: after its first read a replica serves a blob
// from its local copy, with the saved time the shared store gives, and
// never reads the database's copy again.
func TestCache_ServesItsCopy(t *testing.T) {
	a, b, reads := replicas(t, DefaultCacheSize)
	blob, data := putBlob(t, a, blobSize, 1)
	_, saved := readBlob(t, a, blob.SHA256)
	for i := range 3 {
		got, at := readBlob(t, b, blob.SHA256)
		if !bytes.Equal(got, data) {
			t.Fatalf("read %d: %d bytes, not the %d uploaded", i, len(got), len(data))
		}
		if !at.Equal(saved) {
			t.Errorf("read %d: saved at %v, the shared store says %v", i, at, saved)
		}
	}
	if n := reads.opens.Load(); n != 1 {
		t.Errorf("the blob was read from the database %d times, want 1", n)
	}
	if _, err := os.Stat(b.cache.path(blob.SHA256)); err != nil {
		t.Errorf("no local copy: %v", err)
	}
}

// TestCache_RemovedElsewhere: a blob removed through one replica is not
// served from another's copy, which goes too; the remover's own copy goes
// at once.
func TestCache_RemovedElsewhere(t *testing.T) {
	url := pg.DB(t)
	var s [2]*Store
	for i := range s {
		var err error
		if s[i], err = NewSharedStore(t.TempDir(), sharedBlobs(t, url), DefaultCacheSize); err != nil {
			t.Fatal(err)
		}
	}
	blob, _ := putBlob(t, s[0], blobSize, 2)
	for _, r := range s {
		readBlob(t, r, blob.SHA256)
	}
	ctx := context.Background()
	if err := s[0].Remove(ctx, blob.SHA256); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s[0].cache.path(blob.SHA256)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the remover's copy: %v, want it gone", err)
	}
	if _, _, err := s[1].Open(ctx, blob.SHA256); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open on the other replica after the removal: %v, want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(s[1].cache.path(blob.SHA256)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the other replica's copy: %v, want it gone", err)
	}
	if s[1].cache.used != 0 {
		t.Errorf("the cache counts %d bytes with no file", s[1].cache.used)
	}
}

// TestCache_OneCopyForConcurrentFirstOpens: 50 downloads that start at once
// on a replica without a copy cause one read of the database.
func TestCache_OneCopyForConcurrentFirstOpens(t *testing.T) {
	a, b, reads := replicas(t, DefaultCacheSize)
	blob, data := putBlob(t, a, blobSize, 3)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			r, _, err := b.Open(context.Background(), blob.SHA256)
			if err != nil {
				errs <- err
				return
			}
			defer r.Close()
			if got, err := io.ReadAll(r); err != nil || !bytes.Equal(got, data) {
				errs <- errors.New("wrong bytes")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := reads.opens.Load(); n != 1 {
		t.Errorf("50 first opens read the database %d times, want 1", n)
	}
}

// TestCache_DamagedCopyCopiedAgain: a copy changed after it was made, in
// this process or while no process ran, is found, removed and copied
// again, and the right bytes are served.
func TestCache_DamagedCopyCopiedAgain(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(path string) error
		restart bool // a new process on the same directory
	}{
		{"a byte changed", flipByte, false},
		{"cut short", func(p string) error { return os.Truncate(p, 1000) }, false},
		{"longer", func(p string) error { return appendByte(p) }, false},
		{"gone", os.Remove, false},
		{"a byte changed, time kept, while stopped", flipByteKeepTime, true},
		{"cut short while stopped", func(p string) error { return os.Truncate(p, 1000) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b, reads := replicas(t, DefaultCacheSize)
			blob, data := putBlob(t, a, blobSize, 4)
			readBlob(t, b, blob.SHA256)
			if err := tt.damage(b.cache.path(blob.SHA256)); err != nil {
				t.Fatal(err)
			}
			if tt.restart {
				b.Close()
				var err error
				if b, err = NewSharedStore(b.dir, reads, DefaultCacheSize); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := readBlob(t, b, blob.SHA256); !bytes.Equal(got, data) {
				t.Fatal("served the damaged copy")
			}
			if n := reads.opens.Load(); n != 2 {
				t.Errorf("read the database %d times, want 2 (the copy, and the copy again)", n)
			}
			if got, _ := readBlob(t, b, blob.SHA256); !bytes.Equal(got, data) {
				t.Fatal("the new copy is wrong")
			}
			if b.cache.used != blob.Size {
				t.Errorf("the cache counts %d bytes, its one file has %d", b.cache.used, blob.Size)
			}
		})
	}
}

func flipByte(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, 500); err != nil {
		return err
	}
	b[0] ^= 0xff
	_, err = f.WriteAt(b, 500)
	return err
}

func flipByteKeepTime(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := flipByte(path); err != nil {
		return err
	}
	return os.Chtimes(path, st.ModTime(), st.ModTime())
}

func appendByte(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write([]byte{0})
	return err
}

// TestCache_EvictsLeastRecentlyUsed: the cache stays within its bound by
// removing the copies used longest ago that no download reads; a blob it
// has no room for is served from the database.
func TestCache_EvictsLeastRecentlyUsed(t *testing.T) {
	const size = 100_000
	a, b, reads := replicas(t, 2*size+size/2) // room for two
	var sums [4]string
	for i := range sums {
		blob, _ := putBlob(t, a, size, byte(10+i))
		sums[i] = blob.SHA256
	}
	big, bigData := putBlob(t, a, 3*size, 20)
	ctx := context.Background()
	open := func(i int) io.Closer {
		t.Helper()
		r, _, err := b.Open(ctx, sums[i])
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	steps := []struct {
		name   string
		open   int
		keep   bool  // the download goes on
		cached []int // the copies after the step
	}{
		{"first", 0, false, []int{0}},
		{"second", 1, false, []int{0, 1}},
		{"first again", 0, false, []int{0, 1}},
		{"third evicts the second, used longest ago", 2, true, []int{0, 2}},
		{"fourth evicts the first: the third is read", 3, false, []int{2, 3}},
		{"first again evicts the fourth", 0, false, []int{0, 2}},
	}
	var kept []io.Closer
	for _, st := range steps {
		r := open(st.open)
		if st.keep {
			kept = append(kept, r)
		} else {
			r.Close()
		}
		var have []int
		var bytesOnDisk int64
		for i, sum := range sums {
			if fi, err := os.Stat(b.cache.path(sum)); err == nil {
				have = append(have, i)
				bytesOnDisk += fi.Size()
			}
		}
		if !slices.Equal(have, st.cached) {
			t.Errorf("%s: copies of %v, want %v", st.name, have, st.cached)
		}
		if bytesOnDisk > b.cache.max || b.cache.used > b.cache.max {
			t.Errorf("%s: %d bytes on disk, %d counted, over the bound of %d", st.name, bytesOnDisk, b.cache.used, b.cache.max)
		}
	}
	for _, r := range kept {
		r.Close()
	}
	before := reads.opens.Load()
	if got, _ := readBlob(t, b, big.SHA256); !bytes.Equal(got, bigData) {
		t.Error("a blob larger than the cache: wrong bytes")
	}
	if _, err := os.Stat(b.cache.path(big.SHA256)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a blob larger than the cache was copied: %v", err)
	}
	if n := reads.opens.Load() - before; n != 1 {
		t.Errorf("a blob larger than the cache: %d reads of the database, want 1", n)
	}
}

// TestNewSharedStore_KeepsCopies: a restart keeps the cache's copies
// (served without reading the database again) and removes the copies an
// earlier process left half done; another process on the same directory
// gets a cache directory of its own; a cache of size 0 removes them all.
func TestNewSharedStore_KeepsCopies(t *testing.T) {
	a, b, reads := replicas(t, DefaultCacheSize)
	blob, data := putBlob(t, a, blobSize, 5)
	readBlob(t, b, blob.SHA256)
	left := filepath.Join(b.cache.dir, ".fill-4242")
	if err := os.WriteFile(left, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b2, err := NewSharedStore(b.dir, reads, DefaultCacheSize)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an interrupted copy is still there after a start: %v", err)
	}
	if got, _ := readBlob(t, b2, blob.SHA256); !bytes.Equal(got, data) {
		t.Error("wrong bytes after a restart")
	}
	if n := reads.opens.Load(); n != 1 {
		t.Errorf("the database was read %d times, want 1: the copy outlives a restart", n)
	}
	// Another process on the same directory has a cache of its own.
	other, err := NewSharedStore(b.dir, reads, DefaultCacheSize)
	if err != nil {
		t.Fatal(err)
	}
	if other.cache.dir == b2.cache.dir {
		t.Errorf("two processes share the cache directory %s", b2.cache.dir)
	}
	other.Close()
	b2.Close()
	if _, err := NewSharedStore(b.dir, reads, 0); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{b.cache.dir, other.cache.dir} {
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s with the cache off: %v, want it gone", dir, err)
		}
	}
}
