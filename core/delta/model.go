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
	// plain is set to one half before every plain bit: a model that
	// never learns, kept here so that coding one allocates nothing.
	plain prob
}

// Integers of the op stream, each with its own model.
const (
	intSeek = iota
	intDiffLen
	intExtraLen
	intCall
	intPtr
	numInts
)

// models is every adaptive probability of one block. It is reset at the start
// of each block, which is what makes a block decodable on its own.
type models struct {
	seekSign [numInts]prob
	ints     [numInts]intModel
	// diffZero: is the difference byte zero, by which of the last four
	// were, and by the high nibble of the base byte (what changes between
	// builds is mostly code and addresses, not strings or padding).
	diffZero [16][16]prob
	// diffByte: a non-zero difference, by whether the previous one was
	// non-zero and the offset mod 4.
	diffByte [2][4][256]prob
	// callIs: does an Xtensa CALL0 in the base stay a CALL0 in the target.
	callIs [2]prob
	// callSym: the move of the call's target, as an index into the recent
	// moves (0..callCache-1) or callCache for a new one (a 4-bit tree).
	callSym [16]prob
	// ptrIs, ptrSym: the same for 32-bit pointers into the address space.
	ptrIs  [2]prob
	ptrSym [16]prob
	// extra: a literal byte, by the low nibble of the previous literal
	// (Xtensa's op0: what kind of instruction the bytes belong to).
	extra [16][256]prob
}

// state is the models plus the little history their contexts read.
type state struct {
	m         models
	prevDiff  [4]byte
	prevExtra byte
	calls     [callCache]int32 // recent moves of call targets, most recent first
	lastCall  uint32
	ptrs      [callCache]int32 // recent moves of pointers
	lastPtr   uint32
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
	for i := range p.callIs {
		p.callIs[i] = probInit
	}
	for i := range p.callSym {
		p.callSym[i] = probInit
	}
	for i := range p.ptrIs {
		p.ptrIs[i] = probInit
	}
	for i := range p.ptrSym {
		p.ptrSym[i] = probInit
	}
	s.ptrs = [callCache]int32{}
	s.lastPtr = 0
	s.calls = [callCache]int32{}
	s.lastCall = 0
	for i := range p.extra {
		for j := range p.extra[i] {
			p.extra[i][j] = probInit
		}
	}
	s.prevDiff = [4]byte{}
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
			m.plain = probInit
			b = c.bit(&m.plain, b)
		}
		out = out<<1 | uint64(b)
	}
	return out, true
}

// codeSeek codes a signed relative move of the base pointer.
func (s *state) codeSeek(c bitCoder, v int64) (int64, bool) {
	return s.codeSigned(c, intSeek, v)
}

// codeSigned codes a signed integer with the sign and magnitude models of
// one field.
func (s *state) codeSigned(c bitCoder, field int, v int64) (int64, bool) {
	var sign uint32
	mag := uint64(v)
	if v < 0 {
		sign, mag = 1, uint64(-v)
	}
	neg := c.bit(&s.m.seekSign[field], sign)
	mag, ok := codeUint(c, &s.m.ints[field], mag)
	if neg == 1 {
		return -int64(mag), ok
	}
	return int64(mag), ok
}

// codeDiff codes the difference byte d (new - base) at target offset pos.
func (s *state) codeDiff(c bitCoder, d, old byte, pos int64) byte {
	ph := pos & 3
	zctx := 0
	if s.prevDiff[0] != 0 {
		zctx |= 1
	}
	if s.prevDiff[1] != 0 {
		zctx |= 2
	}
	if s.prevDiff[2] != 0 {
		zctx |= 4
	}
	if s.prevDiff[3] != 0 {
		zctx |= 8
	}
	nz := uint32(0)
	if d != 0 {
		nz = 1
	}
	out := byte(0)
	if c.bit(&s.m.diffZero[zctx][old>>4], nz) == 1 {
		out = byte(tree8(c, &s.m.diffByte[zctx&1][ph], uint32(d)))
	}
	copy(s.prevDiff[1:], s.prevDiff[:3])
	s.prevDiff[0] = out
	return out
}

// codeExtra codes a literal byte of the target.
func (s *state) codeExtra(c bitCoder, v byte) byte {
	out := byte(tree8(c, &s.m.extra[s.prevExtra&15], uint32(v)))
	s.prevExtra = out
	return out
}

// Xtensa CALL0 (Xtensa ISA reference, "CALL0"): op0 = 5 and n = 0 in the low
// six bits of the first byte, an 18-bit signed word offset in the other 18
// bits of the 3-byte instruction; the callee is at (PC & ~3) + 4 + offset*4.
// When code moves, a call's offset changes by the difference of the moves of
// caller and callee, a different byte pattern at every call site. Coded as the
// move of the callee's absolute word address instead, the same few values
// repeat across every call to every function that moved together: a cache of
// recent moves catches most of them (detools' data formats, Courgette and
// xz's BCJ filters rest on the same observation).
const (
	callCache = 15
	callMask  = 1<<18 - 1
)

func isCall0(b byte) bool { return b&0x3F == 0x05 }

// call0Field returns a CALL0's 18-bit offset field, unsigned.
func call0Field(b []byte) uint32 {
	return (uint32(b[0])>>6 | uint32(b[1])<<2 | uint32(b[2])<<10) & callMask
}

// call0Move is the move of the callee's word address between a base CALL0 at
// q and a target CALL0 at p, wrapped to 18 bits signed.
func call0Move(oldIns []byte, q int64, newIns []byte, p int64) int32 {
	m := (uint32(p>>2) + call0Field(newIns) - uint32(q>>2) - call0Field(oldIns)) & callMask
	return int32(m<<14) >> 14
}

// call0Apply returns the target CALL0 at p whose callee moved by m from the
// base CALL0 at q.
func call0Apply(oldIns []byte, q int64, m int32, p int64) [3]byte {
	f := (uint32(m) + uint32(q>>2) + call0Field(oldIns) - uint32(p>>2)) & callMask
	return [3]byte{oldIns[0]&0x3F | byte(f<<6), byte(f >> 2), byte(f >> 10)}
}

// codeCallIs codes whether a base CALL0 is a CALL0 in the target too.
func (s *state) codeCallIs(c bitCoder, is bool) bool {
	return codeFlag(c, &s.m.callIs, &s.lastCall, is)
}

// codeFlag codes a yes/no under a model conditioned on the previous answer.
func codeFlag(c bitCoder, probs *[2]prob, last *uint32, is bool) bool {
	b := uint32(0)
	if is {
		b = 1
	}
	b = c.bit(&probs[*last], b)
	*last = b
	return b == 1
}

// codeCallMove codes a callee's move through the cache of recent moves.
func (s *state) codeCallMove(c bitCoder, m int32) (int32, bool) {
	m, ok := s.codeMove(c, &s.calls, &s.m.callSym, intCall, m)
	return m, ok && m >= -(1<<17) && m < 1<<17
}

// codePtrIs codes whether a base pointer is coded as a moved pointer.
func (s *state) codePtrIs(c bitCoder, is bool) bool {
	return codeFlag(c, &s.m.ptrIs, &s.lastPtr, is)
}

// codePtrMove codes a pointer's move through the cache of recent moves.
func (s *state) codePtrMove(c bitCoder, m int32) (int32, bool) {
	return s.codeMove(c, &s.ptrs, &s.m.ptrSym, intPtr, m)
}

// codeMove codes m as an index into cache or as a new value, and moves it
// to the front of the cache.
func (s *state) codeMove(c bitCoder, cache *[callCache]int32, probs *[16]prob, field int, m int32) (int32, bool) {
	sym := uint32(callCache)
	for i, v := range cache {
		if v == m {
			sym = uint32(i)
			break
		}
	}
	t := uint32(1)
	for i := 3; i >= 0; i-- {
		t = t<<1 | c.bit(&probs[t], (sym>>uint(i))&1)
	}
	sym = t - 16
	switch {
	case sym < callCache:
		m = cache[sym]
	case sym == callCache:
		v, ok := s.codeSigned(c, field, int64(m))
		if !ok || v < -(1<<31) || v >= 1<<31 {
			return 0, false
		}
		m = int32(v)
		sym = callCache - 1
	default:
		return 0, false
	}
	copy(cache[1:sym+1], cache[:sym])
	cache[0] = m
	return m, true
}

// A pointer is a little-endian 32-bit word whose top byte is that of the
// ESP8266's and ESP32's code and data regions (0x3F.., 0x40..): the literal
// pools of L32R hold them. A pointer to something that moved changes by the
// move, which repeats across all pointers into the same region.
func isPtr(b []byte) bool { return b[3] == 0x40 || b[3] == 0x3F }

func word(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// ptrWorth reports whether the encoder codes a pointer's change as a move: a
// move it has seen, or one small enough to be a move at all.
func (s *state) ptrWorth(m int32) bool {
	for _, v := range s.ptrs {
		if v == m {
			return true
		}
	}
	return m > -(1<<20) && m < 1<<20
}
