package delta

import "math/bits"

// maxIntBits bounds every integer of the op stream: no length or seek in a
// patch needs more than 2^40, and a decoder must not loop on a corrupt one.
const maxIntBits = 40

// intModel codes an unsigned integer as its bit length (a 6-bit tree), the
// three bits below the leading one under adaptive models, and the rest as
// plain bits: lengths cluster by magnitude, their low bits are noise.
type intModel struct {
	length [64]prob
	top    [maxIntBits + 1][8]prob
}

// Integers of the op stream, each with its own model.
const (
	intSeek = iota
	intDiffLen
	intExtraLen
	numInts
)

// models is every adaptive probability of one block. It is reset at the start
// of each block, which is what makes a block decodable on its own.
type models struct {
	seekSign [2]prob
	ints     [numInts]intModel
	// diffZero: is the difference byte zero, by whether the last two were
	// and by the target offset mod 4 (instructions and pointers are aligned).
	diffZero [4][4]prob
	// diffByte: a non-zero difference, by whether the previous one was
	// non-zero and the offset mod 4.
	diffByte [2][4][256]prob
	// extra: a literal byte, by the high nibble of the previous literal.
	extra [16][256]prob
}

// state is the models plus the little history their contexts read.
type state struct {
	m         models
	prevDiff  [2]byte
	prevExtra byte
}

func (s *state) reset() {
	p := &s.m
	for i := range p.seekSign {
		p.seekSign[i] = probInit
	}
	for i := range p.ints {
		for j := range p.ints[i].length {
			p.ints[i].length[j] = probInit
		}
		for j := range p.ints[i].top {
			for k := range p.ints[i].top[j] {
				p.ints[i].top[j][k] = probInit
			}
		}
	}
	for i := range p.diffZero {
		for j := range p.diffZero[i] {
			p.diffZero[i][j] = probInit
		}
	}
	for i := range p.diffByte {
		for j := range p.diffByte[i] {
			for k := range p.diffByte[i][j] {
				p.diffByte[i][j][k] = probInit
			}
		}
	}
	for i := range p.extra {
		for j := range p.extra[i] {
			p.extra[i][j] = probInit
		}
	}
	s.prevDiff = [2]byte{}
	s.prevExtra = 0
}

// tree8 codes a byte MSB first down a 256-leaf binary tree.
func tree8(c bitCoder, probs *[256]prob, v uint32) uint32 {
	m := uint32(1)
	for i := 7; i >= 0; i-- {
		m = m<<1 | c.bit(&probs[m], (v>>uint(i))&1)
	}
	return m - 256
}

// codeUint codes v (< 2^maxIntBits) and returns it, or the decoded value and
// false when the decoded length is out of range.
func codeUint(c bitCoder, m *intModel, v uint64) (uint64, bool) {
	n := uint32(bits.Len64(v))
	t := uint32(1)
	for i := 5; i >= 0; i-- {
		t = t<<1 | c.bit(&m.length[t], (n>>uint(i))&1)
	}
	n = t - 64
	if n > maxIntBits {
		return 0, false
	}
	if n <= 1 {
		return uint64(n), true
	}
	out := uint64(1)
	ctx := uint32(1)
	for i := int(n) - 2; i >= 0; i-- {
		b := uint32(v>>uint(i)) & 1
		if ctx < 8 {
			b = c.bit(&m.top[n][ctx], b)
			ctx = ctx<<1 | b
		} else {
			p := prob(probInit) // a plain bit: a model that never learns
			b = c.bit(&p, b)
		}
		out = out<<1 | uint64(b)
	}
	return out, true
}

// codeSeek codes a signed relative move of the base pointer.
func (s *state) codeSeek(c bitCoder, v int64) (int64, bool) {
	var sign uint32
	mag := uint64(v)
	if v < 0 {
		sign, mag = 1, uint64(-v)
	}
	neg := c.bit(&s.m.seekSign[0], sign)
	mag, ok := codeUint(c, &s.m.ints[intSeek], mag)
	if neg == 1 {
		return -int64(mag), ok
	}
	return int64(mag), ok
}

// codeDiff codes the difference byte d (new - base) at target offset pos.
func (s *state) codeDiff(c bitCoder, d byte, pos int64) byte {
	ph := pos & 3
	zctx := 0
	if s.prevDiff[0] != 0 {
		zctx |= 1
	}
	if s.prevDiff[1] != 0 {
		zctx |= 2
	}
	nz := uint32(0)
	if d != 0 {
		nz = 1
	}
	out := byte(0)
	if c.bit(&s.m.diffZero[zctx][ph], nz) == 1 {
		out = byte(tree8(c, &s.m.diffByte[zctx&1][ph], uint32(d)))
	}
	s.prevDiff[1] = s.prevDiff[0]
	s.prevDiff[0] = out
	return out
}

// codeExtra codes a literal byte of the target.
func (s *state) codeExtra(c bitCoder, v byte) byte {
	out := byte(tree8(c, &s.m.extra[s.prevExtra>>4], uint32(v)))
	s.prevExtra = out
	return out
}
