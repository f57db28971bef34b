package boot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"maps"
	"slices"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// The params partition is split into two areas of whole erase sectors. Each
// area is a log: a snapshot record with the whole state, then records that
// each change one thing. The current area is the valid one whose snapshot
// has the higher sequence number. When the current area is full (or its
// tail holds a torn record) the whole new state is written as a snapshot
// into the other area, after erasing it; it becomes current only once its
// snapshot record is complete, so a power cut at any flash operation leaves
// either the old state or the new one readable. docs/boot-schemes.md has the
// byte layout and the case analysis.

// recordMagic starts every record: "OTAp" in flash byte order, neither all
// 0xFF nor all 0x00, so erased flash never reads as a record.
const recordMagic = 0x7041544F

// Record kinds.
const (
	kindSnapshot = 1 // the whole state: boot parameters and every key
	kindSet      = 2 // one key set
	kindDelete   = 3 // one key deleted
	kindBoot     = 4 // the boot parameters
)

const (
	recordHeader = 16 // magic u32, seq u32, kind u16, reserved u16, length u32
	recordCRC    = 4  // CRC-32 (IEEE) of header and payload
	// MaxKeyLen is the longest key the KV store takes.
	MaxKeyLen = 255
)

// state is what the params partition holds.
type state struct {
	params Params
	kv     map[string][]byte
}

func (st state) clone() state {
	return state{params: st.params, kv: maps.Clone(st.kv)}
}

// store is the power-safe record log in the params partition.
type store struct {
	dev   flash.Device
	areas [2]span
	align int64
	erase byte

	cur   int    // index of the current area, -1 when neither is valid
	pos   int64  // next append position in the current area, relative to it
	clean bool   // the current area is erased from pos to its end
	seq   uint32 // sequence number of the last valid record
	stale bool   // a write failed: the flash may differ from st; reload first
	st    state
}

// openStore reads the params partition of b.
func openStore(dev flash.Device, b *board) (*store, error) {
	s := &store{dev: dev, align: int64(b.geo.WriteAlign), erase: b.geo.EraseValue}
	s.areas = splitAreas(b.sectors, b.params)
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

// splitAreas splits the params partition p into two runs of whole sectors
// as close to equal in size as the sectors allow (the lower split when two
// are as close), at the sector boundary nearest its middle.
func splitAreas(m *hal.SectorMap, p hal.Partition) [2]span {
	off, end := p.Offset, p.End()
	lo, hi, on := m.Boundary(off + p.Size/2)
	split := lo
	switch {
	case on:
	case lo <= off:
		split = hi
	case hi < end && 2*(hi-off)-p.Size < p.Size-2*(lo-off):
		split = hi
	}
	return [2]span{{int64(off), int64(split - off)}, {int64(split), int64(end - split)}}
}

// capacity is the largest snapshot the store accepts: it must fit either
// area, since compaction alternates between them.
func (s *store) capacity() int64 { return min(s.areas[0].size, s.areas[1].size) }

// load reads both areas and makes the newer valid one current.
func (s *store) load() error {
	s.cur, s.pos, s.clean, s.seq, s.stale = -1, 0, false, 0, false
	s.st = state{params: defaultParams(), kv: map[string][]byte{}}
	var scans [2]areaScan
	for i, a := range s.areas {
		buf := make([]byte, a.size)
		if _, err := s.dev.ReadAt(buf, a.off); err != nil {
			return flashErr(fmt.Sprintf("read params at 0x%x", a.off), err)
		}
		scans[i] = scanArea(buf, s.align, s.erase)
	}
	for i, sc := range scans {
		if !sc.valid {
			continue
		}
		if s.cur < 0 || sc.snapSeq > scans[s.cur].snapSeq {
			s.cur = i
		}
	}
	if s.cur >= 0 {
		sc := scans[s.cur]
		s.pos, s.clean, s.seq, s.st = sc.end, sc.clean, sc.lastSeq, sc.st
	} else {
		// Neither area holds a snapshot: a blank partition. The first
		// write compacts, which erases, so the sequence can start
		// anywhere; start above what a torn area could claim.
		s.seq = max(scans[0].snapSeq, scans[1].snapSeq)
	}
	return nil
}

// areaScan is what one area holds.
type areaScan struct {
	valid   bool
	snapSeq uint32
	lastSeq uint32
	end     int64 // first byte after the last valid record
	clean   bool  // everything from end on is erased
	st      state
}

// scanArea replays the log in buf. It stops at the first record that is
// not complete, fails its CRC or breaks the sequence: that is where the
// last write was torn, or the end of the log.
func scanArea(buf []byte, align int64, erase byte) areaScan {
	var sc areaScan
	kind, seq, payload, n, ok := parseRecord(buf, align)
	if !ok || kind != kindSnapshot {
		return sc
	}
	st, err := decodeSnapshot(payload)
	if err != nil {
		return sc
	}
	sc = areaScan{valid: true, snapSeq: seq, lastSeq: seq, end: n, st: st}
	for {
		kind, seq, payload, n, ok := parseRecord(buf[sc.end:], align)
		if !ok || seq != sc.lastSeq+1 || applyRecord(&sc.st, kind, payload) != nil {
			break
		}
		sc.lastSeq = seq
		sc.end += n
	}
	sc.clean = isErased(buf[sc.end:], erase)
	return sc
}

// parseRecord reads the record at the start of buf; n is its padded size.
func parseRecord(buf []byte, align int64) (kind uint16, seq uint32, payload []byte, n int64, ok bool) {
	if len(buf) < recordHeader+recordCRC {
		return 0, 0, nil, 0, false
	}
	if binary.LittleEndian.Uint32(buf) != recordMagic {
		return 0, 0, nil, 0, false
	}
	length := int64(binary.LittleEndian.Uint32(buf[12:]))
	if length > int64(len(buf))-recordHeader-recordCRC {
		return 0, 0, nil, 0, false
	}
	body := buf[:recordHeader+length]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(buf[recordHeader+length:]) {
		return 0, 0, nil, 0, false
	}
	n = roundUp(recordHeader+length+recordCRC, align)
	if n > int64(len(buf)) {
		return 0, 0, nil, 0, false
	}
	return binary.LittleEndian.Uint16(buf[8:]), binary.LittleEndian.Uint32(buf[4:]), body[recordHeader:], n, true
}

// encodeRecord builds a record padded with the erased value to the write
// alignment, so that every record starts on a program unit of its own and no
// unit is ever programmed twice (flash with ECC, as STM32H7's 32-byte words,
// forbids that).
func encodeRecord(kind uint16, seq uint32, payload []byte, align int64, erase byte) []byte {
	n := roundUp(recordHeader+int64(len(payload))+recordCRC, align)
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, recordMagic)
	binary.LittleEndian.PutUint32(b[4:], seq)
	binary.LittleEndian.PutUint16(b[8:], kind)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(payload)))
	copy(b[recordHeader:], payload)
	end := recordHeader + len(payload)
	binary.LittleEndian.PutUint32(b[end:], crc32.ChecksumIEEE(b[:end]))
	for i := end + recordCRC; i < len(b); i++ {
		b[i] = erase
	}
	return b
}

func roundUp(n, align int64) int64 { return (n + align - 1) / align * align }

// encodeSnapshot: the 24-byte boot parameters, a u32 key count, then per key
// in sorted order u16 key length, key, u32 value length, value.
func encodeSnapshot(st state) []byte {
	var b bytes.Buffer
	b.Write(st.params.encode())
	b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(st.kv))))
	for _, k := range slices.Sorted(maps.Keys(st.kv)) {
		v := st.kv[k]
		b.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(k))))
		b.WriteString(k)
		b.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(v))))
		b.Write(v)
	}
	return b.Bytes()
}

var errShort = errors.New("truncated")

func decodeSnapshot(b []byte) (state, error) {
	st := state{kv: map[string][]byte{}}
	if len(b) < paramsSize+4 {
		return st, errShort
	}
	p, err := decodeParams(b[:paramsSize])
	if err != nil {
		return st, err
	}
	st.params = p
	n := binary.LittleEndian.Uint32(b[paramsSize:])
	b = b[paramsSize+4:]
	for range n {
		if len(b) < 2 {
			return st, errShort
		}
		kl := int(binary.LittleEndian.Uint16(b))
		if len(b) < 2+kl+4 {
			return st, errShort
		}
		k := string(b[2 : 2+kl])
		vl := int(binary.LittleEndian.Uint32(b[2+kl:]))
		b = b[2+kl+4:]
		if vl > len(b) {
			return st, errShort
		}
		st.kv[k] = bytes.Clone(b[:vl])
		b = b[vl:]
	}
	if len(b) != 0 {
		return st, fmt.Errorf("%d bytes after the last key", len(b))
	}
	return st, nil
}

// encodeKey: u16 key length, key, then the value (set) or nothing (delete).
func encodeKey(key string, value []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(len(key)))
	b = append(b, key...)
	return append(b, value...)
}

func decodeKey(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errShort
	}
	kl := int(binary.LittleEndian.Uint16(b))
	if len(b) < 2+kl {
		return "", nil, errShort
	}
	return string(b[2 : 2+kl]), b[2+kl:], nil
}

// applyRecord applies a change record to st.
func applyRecord(st *state, kind uint16, payload []byte) error {
	switch kind {
	case kindSet:
		k, v, err := decodeKey(payload)
		if err != nil {
			return err
		}
		st.kv[k] = bytes.Clone(v)
	case kindDelete:
		k, rest, err := decodeKey(payload)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return fmt.Errorf("delete record: %d trailing bytes", len(rest))
		}
		delete(st.kv, k)
	case kindBoot:
		p, err := decodeParams(payload)
		if err != nil {
			return err
		}
		st.params = p
	default:
		// A snapshot in the middle of a log, or a kind from a newer
		// otaport: end the log here rather than misread it.
		return fmt.Errorf("record kind %d not expected in a log", kind)
	}
	return nil
}

// reloadIfStale re-reads the partition after a failed write, whose effect
// on the flash is unknown.
func (s *store) reloadIfStale() error {
	if !s.stale {
		return nil
	}
	return s.load()
}

// params returns the boot parameters.
func (s *store) params() Params { return s.st.params }

// get returns the value of key.
func (s *store) get(key string) ([]byte, bool) {
	v, ok := s.st.kv[key]
	return bytes.Clone(v), ok
}

// setParams records new boot parameters.
func (s *store) setParams(p Params) error {
	if err := s.reloadIfStale(); err != nil {
		return err
	}
	if p == s.st.params {
		return nil
	}
	next := s.st.clone()
	next.params = p
	return s.commit(kindBoot, p.encode(), next)
}

// set records key = value, or deletes key when value is nil.
func (s *store) set(key string, value []byte) error {
	if key == "" || len(key) > MaxKeyLen {
		return hal.Errorf(hal.CodeInvalid, "kv: key %q: want 1 to %d bytes", key, MaxKeyLen)
	}
	if err := s.reloadIfStale(); err != nil {
		return err
	}
	old, had := s.st.kv[key]
	next := s.st.clone()
	if value == nil {
		if !had {
			return nil
		}
		delete(next.kv, key)
		return s.commit(kindDelete, encodeKey(key, nil), next)
	}
	if had && bytes.Equal(old, value) {
		return nil
	}
	next.kv[key] = bytes.Clone(value)
	return s.commit(kindSet, encodeKey(key, value), next)
}

// commit makes next the stored state: appended as one change record when
// the current area has room, else by compaction into the other area.
func (s *store) commit(kind uint16, payload []byte, next state) error {
	snap := encodeSnapshot(next)
	if n := roundUp(recordHeader+int64(len(snap))+recordCRC, s.align); n > s.capacity() {
		return hal.Errorf(hal.CodeOutOfBounds, "params: the new state needs %d bytes, more than the %d bytes of one half of the params partition: store less or give params more sectors", n, s.capacity())
	}
	rec := encodeRecord(kind, s.seq+1, payload, s.align, s.erase)
	if s.cur < 0 || !s.clean || s.pos+int64(len(rec)) > s.areas[s.cur].size {
		return s.compact(snap, next)
	}
	off := s.areas[s.cur].off + s.pos
	if err := s.dev.Program(off, rec); err != nil {
		s.stale = true
		return flashErr(fmt.Sprintf("write params record at 0x%x", off), err)
	}
	s.pos += int64(len(rec))
	s.seq++
	s.st = next
	return nil
}

// compact writes next as a snapshot into the area that is not current. The
// current area is untouched until the next compaction, so until the new
// snapshot is complete the old state stays readable.
func (s *store) compact(snap []byte, next state) error {
	target := 0
	if s.cur == 0 {
		target = 1
	}
	a := s.areas[target]
	rec := encodeRecord(kindSnapshot, s.seq+1, snap, s.align, s.erase)
	if err := s.dev.Erase(a.off, a.size); err != nil {
		s.stale = true
		return flashErr(fmt.Sprintf("erase params area at 0x%x", a.off), err)
	}
	if err := s.dev.Program(a.off, rec); err != nil {
		s.stale = true
		return flashErr(fmt.Sprintf("write params snapshot at 0x%x", a.off), err)
	}
	s.cur, s.pos, s.clean = target, int64(len(rec)), true
	s.seq++
	s.st = next
	return nil
}

// flashErr wraps a flash error with the operation. Errors of core/flash
// carry their hal code already; any other device's errors are classed as
// flash failures so the core can still branch on them.
func flashErr(op string, err error) error {
	if hal.CodeOf(err) != hal.CodeUnknown {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w (%w)", op, err, hal.ErrFlash)
}
