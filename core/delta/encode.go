package delta

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Options tune the encoder. The zero value is the default.
type Options struct {
	// BlockLog is log2 of the block size, MinBlockLog..MaxBlockLog; 0 is
	// DefaultBlockLog. Smaller blocks resume with less re-sent, larger
	// blocks make smaller patches.
	BlockLog uint8
	// Filters are the instruction-aware models to try; the encoder keeps
	// the smallest patch. Nil tries every one (Filters).
	Filters []Filter
}

// piece is a span of the target: copied from base+difference when old >= 0,
// a literal otherwise.
type piece struct {
	newStart, length, old int64
}

// Encode returns the patch that turns base into target.
func Encode(base, target []byte, opts Options) ([]byte, error) {
	if int64(len(base)) > maxImage || int64(len(target)) > maxImage {
		return nil, fmt.Errorf("encode: images of %d and %d bytes, at most %d each", len(base), len(target), int64(maxImage))
	}
	h := Header{BlockLog: opts.BlockLog, BaseSize: uint32(len(base)), TargetSize: uint32(len(target))}
	if h.BlockLog == 0 {
		h.BlockLog = DefaultBlockLog
	}
	if h.BlockLog < MinBlockLog || h.BlockLog > MaxBlockLog {
		return nil, fmt.Errorf("encode: block size 2^%d outside 2^%d..2^%d", h.BlockLog, MinBlockLog, MaxBlockLog)
	}
	h.BaseHash = sha256.Sum256(base)
	h.TargetHash = sha256.Sum256(target)
	filters := opts.Filters
	if filters == nil {
		filters = Filters
	}
	for _, f := range filters {
		if f > FilterXtensa {
			return nil, fmt.Errorf("encode: unknown filter %d", f)
		}
	}
	var sa []int32
	if len(base) > 0 {
		sa = suffixArray(base)
	}
	var best []byte
	for _, slack := range []int{4, 5, 6, 8} { // match's slack: see there
		pieces := match(base, target, sa, slack)
		for _, f := range filters {
			h.Filter = f
			if p := encodeBlocks(h, base, target, pieces); best == nil || len(p) < len(best) {
				best = p
			}
		}
	}
	return best, nil
}

// encodeBlocks codes the patch for one header.
func encodeBlocks(h Header, base, target []byte, pieces []piece) []byte {
	out, _ := h.MarshalBinary()
	st := new(state)
	for i := int64(0); i < h.Blocks(); i++ {
		bs := i * h.BlockSize()
		be := bs + h.blockLen(i)
		enc := newEncoder()
		st.reset()
		encodeBlock(enc, st, base, target, clip(pieces, bs, be), h.Filter == FilterXtensa)
		payload := enc.finish()
		out = binary.LittleEndian.AppendUint32(out, uint32(len(payload)))
		out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(target[bs:be]))
		out = append(out, payload...)
	}
	return out
}

// clip returns the parts of pieces inside [bs, be).
func clip(pieces []piece, bs, be int64) []piece {
	var out []piece
	for _, p := range pieces {
		s, e := max(p.newStart, bs), min(p.newStart+p.length, be)
		if s >= e {
			continue
		}
		q := piece{newStart: s, length: e - s, old: -1}
		if p.old >= 0 {
			q.old = p.old + (s - p.newStart)
		}
		out = append(out, q)
	}
	return out
}

// encodeBlock codes one block's ops: seek, difference length and bytes,
// literal length and bytes. The base pointer starts at 0 in every block.
func encodeBlock(enc *rcEncoder, st *state, base, target []byte, pieces []piece, xtensa bool) {
	oldPos := int64(0)
	for i := 0; i < len(pieces); i++ {
		var d, x piece
		if pieces[i].old >= 0 {
			d = pieces[i]
			if i+1 < len(pieces) && pieces[i+1].old < 0 {
				i++
				x = pieces[i]
			}
		} else {
			x = pieces[i]
			d.old = oldPos
		}
		st.codeSeek(enc, d.old-oldPos)
		codeUint(enc, &st.m.ints[intDiffLen], uint64(d.length))
		for k := int64(0); k < d.length; k++ {
			q, p := d.old+k, d.newStart+k
			if xtensa && k+3 <= d.length && isCall0(base[q]) {
				if st.codeCallIs(enc, isCall0(target[p])) {
					st.codeCallMove(enc, call0Move(base[q:], q, target[p:], p))
					k += 2
					continue
				}
			}
			if xtensa && k+4 <= d.length && isPtr(base[q:]) {
				m := int32(word(target[p:]) - word(base[q:]))
				if st.codePtrIs(enc, st.ptrWorth(m)) {
					st.codePtrMove(enc, m)
					k += 3
					continue
				}
			}
			st.codeDiff(enc, target[p]-base[q], base[q], p)
		}
		oldPos = d.old + d.length
		codeUint(enc, &st.m.ints[intExtraLen], uint64(x.length))
		for k := int64(0); k < x.length; k++ {
			st.codeExtra(enc, target[x.newStart+k])
		}
	}
}

// match finds bsdiff's approximate matches (Colin Percival, "Naive
// differences of executable code", 2003): exact matches from a suffix array
// of the base, extended forwards and backwards while at least half the bytes
// agree, so that code whose addresses moved still matches with a sparse
// difference. Spans no match covers become literals.
//
// slack is how many more bytes a new exact match must have than the current
// approximate one still matches before the encoder switches to it: bsdiff
// uses 8; smaller values follow moved code more closely at the cost of more
// ops. Which is best depends on the pair, so the encoder tries a few and
// keeps the smallest patch.
func match(old, new []byte, sa []int32, slack int) []piece {
	var pieces []piece
	add := func(p piece) {
		if p.length > 0 {
			pieces = append(pieces, p)
		}
	}
	if len(old) == 0 {
		add(piece{length: int64(len(new)), old: -1})
		return pieces
	}
	oldSize, newSize := len(old), len(new)
	var scan, n, pos, lastScan, lastPos, lastOffset int
	for scan < newSize {
		oldScore := 0
		scan += n
		scsc := scan
		for ; scan < newSize; scan++ {
			pos, n = search(sa, old, new[scan:])
			for ; scsc < scan+n; scsc++ {
				if scsc+lastOffset < oldSize && old[scsc+lastOffset] == new[scsc] {
					oldScore++
				}
			}
			if (n == oldScore && n != 0) || n > oldScore+slack {
				break
			}
			if scan+lastOffset < oldSize && old[scan+lastOffset] == new[scan] {
				oldScore--
			}
		}
		if n == oldScore && scan != newSize {
			continue
		}
		// Extend the previous match forwards...
		s, sf, lenf := 0, 0, 0
		for i := 0; lastScan+i < scan && lastPos+i < oldSize; {
			if old[lastPos+i] == new[lastScan+i] {
				s++
			}
			i++
			if s*2-i > sf*2-lenf {
				sf, lenf = s, i
			}
		}
		// ...and the new one backwards.
		lenb := 0
		if scan < newSize {
			s, sb := 0, 0
			for i := 1; scan >= lastScan+i && pos >= i; i++ {
				if old[pos-i] == new[scan-i] {
					s++
				}
				if s*2-i > sb*2-lenb {
					sb, lenb = s, i
				}
			}
		}
		if lastScan+lenf > scan-lenb {
			overlap := (lastScan + lenf) - (scan - lenb)
			s, ss, lens := 0, 0, 0
			for i := 0; i < overlap; i++ {
				if new[lastScan+lenf-overlap+i] == old[lastPos+lenf-overlap+i] {
					s++
				}
				if new[scan-lenb+i] == old[pos-lenb+i] {
					s--
				}
				if s > ss {
					ss, lens = s, i+1
				}
			}
			lenf += lens - overlap
			lenb -= lens
		}
		add(piece{newStart: int64(lastScan), length: int64(lenf), old: int64(lastPos)})
		add(piece{newStart: int64(lastScan + lenf), length: int64((scan - lenb) - (lastScan + lenf)), old: -1})
		lastScan, lastPos, lastOffset = scan-lenb, pos-lenb, pos-scan
	}
	return pieces
}

// search returns the position in old and length of the longest match of a
// prefix of s, by binary search of the suffix array.
func search(sa []int32, old, s []byte) (pos, n int) {
	lo, hi := 0, len(sa)-1
	for hi-lo >= 2 {
		mid := lo + (hi-lo)/2
		p := int(sa[mid])
		if bytes.Compare(old[p:min(len(old), p+len(s))], s) < 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	x, y := matchLen(old[sa[lo]:], s), matchLen(old[sa[hi]:], s)
	if x > y {
		return int(sa[lo]), x
	}
	return int(sa[hi]), y
}

func matchLen(a, b []byte) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
