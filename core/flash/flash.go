// Package flash is the flash device abstraction of otaport (geometry, Read,
// Program, Erase) and a NOR flash emulator persisted in an image file, with
// the semantics of real parts: erase before write, program alignment, bits
// that only move away from the erased value, per-sector erase counters, and a
// power-cut injector that stops it before, after, or in the middle of any
// operation.
//
// It knows nothing of partitions, images or boot: those are core/boot's.
package flash

import "github.com/otaport/otaport/core/hal"

// Device is a flash part. Offsets are relative to the start of the part.
type Device interface {
	// Geometry returns the part's size, erase sectors, write alignment and
	// erased value.
	Geometry() hal.FlashGeometry
	// ReadAt reads len(p) bytes at off.
	ReadAt(p []byte, off int64) (int, error)
	// Program writes p at off; off and len(p) must be multiples of the write
	// alignment. Programming can only move bits away from the erased value.
	Program(off int64, p []byte) error
	// Erase erases the whole sectors in [off, off+size); both ends must be
	// sector boundaries.
	Erase(off, size int64) error
}
