//go:build unix

package flash

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps the n bytes of f shared and read-only: the emulator reads
// the file's page cache in place and writes with WriteAt, which the mapping
// sees at once. Read-only because a store into a shared file mapping costs
// a page fault per 4 KiB page the first time (the kernel tracks which
// pages are dirty that way): erasing a 64 MiB slot through the mapping
// takes ten times as long as writing it.
func mapFile(f *os.File, n int64) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED)
}

func unmapFile(mem []byte) error { return unix.Munmap(mem) }
