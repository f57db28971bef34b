//go:build unix

package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrSize is what Map returns when the file is not the size the host said:
// a request to refuse, not a system without shared memory.
var ErrSize = errors.New("size mismatch")

// sharedDir is where the host creates its shared memory files: tmpfs when
// the system has one, so the pages never go to disk.
func sharedDir() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

// Create makes a file of size bytes in a private directory and maps
// it read-write. The caller removes the directory once the plugin mapped
// the file: the mappings outlive the name.
func Create(size uint64) (mem []byte, path, dir string, err error) {
	dir, err = os.MkdirTemp(sharedDir(), "otaport-shm-")
	if err != nil {
		return nil, "", "", fmt.Errorf("create shared memory: %w", err)
	}
	path = filepath.Join(dir, "write")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", "", fmt.Errorf("create shared memory: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(int64(size)); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", "", fmt.Errorf("size shared memory %s: %w", path, err)
	}
	mem, err = unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", "", fmt.Errorf("map shared memory %s: %w", path, err)
	}
	return mem, path, dir, nil
}

// Map is the plugin's side: it maps the host's file read-write (the
// plugin writes results into the control block).
func Map(path string, size uint64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("attach shared memory: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("attach shared memory: %w", err)
	}
	if size == 0 || uint64(fi.Size()) != size {
		return nil, fmt.Errorf("attach shared memory %s: file has %d bytes, request says %d: %w", path, fi.Size(), size, ErrSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("attach shared memory %s: %w", path, err)
	}
	return mem, nil
}

func Unmap(mem []byte) error { return unix.Munmap(mem) }
