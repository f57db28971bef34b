//go:build unix

package flash

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the n bytes of f read-write and shared: stores into the
// mapping are stores into the file (its page cache), which is what makes
// the file the chip without a write-through copy per operation.
func mapFile(f *os.File, n int64) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
}

func unmapFile(mem []byte) error { return unix.Munmap(mem) }

// syncMapped flushes mem[off:off+n] to the disk (Options.Sync). msync takes
// a page-aligned start.
func syncMapped(mem []byte, off, n int64) error {
	ps := int64(os.Getpagesize())
	start := off &^ (ps - 1)
	return unix.Msync(mem[start:off+n], unix.MS_SYNC)
}
