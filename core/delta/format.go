package delta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Magic opens every patch.
var Magic = [4]byte{'O', 'T', 'D', 'P'}

const (
	// Version is the patch format's version; a decoder refuses others.
	Version = 1
	// HeaderSize is the fixed size of a patch header.
	HeaderSize = 84
	// blockHeaderSize is a block's coded length and its target CRC-32.
	blockHeaderSize = 8
	// MinBlockLog and MaxBlockLog bound the block size (4 KiB .. 1 MiB): a
	// block is the resume interval, and its size only changes how much a
	// resume re-sends, never the decoder's memory.
	MinBlockLog = 12
	MaxBlockLog = 20
	// DefaultBlockLog is 256 KiB: the models relearn at every block, so
	// larger blocks are smaller patches.
	DefaultBlockLog = 18
	// maxImage bounds the declared sizes (4 GiB - 1): u32 fields.
	maxImage = 1<<32 - 1
)

// ErrCorrupt is wrapped by every error about a malformed patch.
var ErrCorrupt = errors.New("corrupt patch")

// Header is the fixed start of a patch. The two digests let an applier
// refuse a patch for another base before it writes a byte, and check the
// target it built.
type Header struct {
	BlockLog   uint8    // the block size is 1<<BlockLog bytes of target
	Filter     Filter   // the instruction-aware model the diffs are coded with
	BaseSize   uint32   // bytes of base the patch was made against
	TargetSize uint32   // bytes the patch produces
	BaseHash   [32]byte // SHA-256 of the base
	TargetHash [32]byte // SHA-256 of the target
}

// BlockSize is the bytes of target each block produces (the last may be
// shorter).
func (h Header) BlockSize() int64 { return 1 << h.BlockLog }

// Blocks is the number of blocks in the patch.
func (h Header) Blocks() int64 {
	return (int64(h.TargetSize) + h.BlockSize() - 1) / h.BlockSize()
}

// blockLen is the bytes of target block i produces.
func (h Header) blockLen(i int64) int64 {
	return min(h.BlockSize(), int64(h.TargetSize)-i*h.BlockSize())
}

// MarshalBinary encodes the header as it starts a patch.
func (h Header) MarshalBinary() ([]byte, error) {
	b := make([]byte, HeaderSize)
	copy(b, Magic[:])
	b[4] = Version
	b[5] = h.BlockLog
	b[6] = byte(h.Filter)
	binary.LittleEndian.PutUint32(b[8:], h.BaseSize)
	binary.LittleEndian.PutUint32(b[12:], h.TargetSize)
	copy(b[16:48], h.BaseHash[:])
	copy(b[48:80], h.TargetHash[:])
	binary.LittleEndian.PutUint32(b[80:], crc32.ChecksumIEEE(b[:80]))
	return b, nil
}

// ParseHeader decodes and checks a patch header.
func ParseHeader(b []byte) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, fmt.Errorf("patch header: %d bytes, want %d: %w", len(b), HeaderSize, ErrCorrupt)
	}
	if [4]byte(b[:4]) != Magic {
		return h, fmt.Errorf("patch header: magic % x, want %q (not an otaport patch): %w", b[:4], Magic[:], ErrCorrupt)
	}
	if b[4] != Version {
		return h, fmt.Errorf("patch header: version %d, this decoder reads %d: %w", b[4], Version, ErrCorrupt)
	}
	if got, want := binary.LittleEndian.Uint32(b[80:]), crc32.ChecksumIEEE(b[:80]); got != want {
		return h, fmt.Errorf("patch header: CRC-32 0x%08x, computed 0x%08x: %w", got, want, ErrCorrupt)
	}
	h.BlockLog = b[5]
	if h.BlockLog < MinBlockLog || h.BlockLog > MaxBlockLog {
		return h, fmt.Errorf("patch header: block size 2^%d outside 2^%d..2^%d: %w", h.BlockLog, MinBlockLog, MaxBlockLog, ErrCorrupt)
	}
	h.Filter = Filter(b[6])
	if h.Filter > FilterXtensa {
		return h, fmt.Errorf("patch header: filter %d unknown (this decoder knows 0 none, 1 xtensa): %w", b[6], ErrCorrupt)
	}
	if b[7] != 0 {
		return h, fmt.Errorf("patch header: reserved byte 0x%02x not zero: %w", b[7], ErrCorrupt)
	}
	h.BaseSize = binary.LittleEndian.Uint32(b[8:])
	h.TargetSize = binary.LittleEndian.Uint32(b[12:])
	copy(h.BaseHash[:], b[16:48])
	copy(h.TargetHash[:], b[48:80])
	return h, nil
}

// Filter names the instruction-aware model a patch's differences use.
type Filter uint8

// Filters.
const (
	// FilterNone codes every difference byte by byte.
	FilterNone Filter = 0
	// FilterXtensa codes the moves of Xtensa CALL0 targets (ESP8266,
	// ESP32) as moves of the callee, from a cache of recent moves.
	FilterXtensa Filter = 1
)

// Filters is every filter, in the order the encoder tries them.
var Filters = []Filter{FilterNone, FilterXtensa}

func (f Filter) String() string {
	switch f {
	case FilterNone:
		return "none"
	case FilterXtensa:
		return "xtensa"
	}
	return fmt.Sprintf("filter(%d)", uint8(f))
}
