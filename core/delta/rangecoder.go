package delta

// The binary range coder is LZMA's (11-bit probabilities, 32-bit range, carry
// propagation through a cache byte), chosen because it is small, well
// understood and easy to port to C: its whole decoder state is two words.

const (
	probBits  = 12
	probOne   = 1 << probBits
	probInit  = probOne / 2 << countBits
	countBits = 4
	topValue  = 1 << 24
	rcInitLen = 5 // bytes the decoder reads before the first bit
)

// prob is the probability, out of probOne, that the next bit is 0, in the
// high 12 bits, and how many bits the model has seen (up to 15) in the low
// 4. A model adapts fast while it is young and slower as it learns: the
// models restart at every block, and most of them see few bits.
type prob uint16

// rate is the adaptation shift by the count of bits seen.
var rate = [16]uint8{2, 2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}

// update adapts p to the bit b.
func (p *prob) update(b uint32) {
	v := uint32(*p >> countBits)
	n := uint32(*p) & (1<<countBits - 1)
	sh := rate[n]
	if b == 0 {
		v += (probOne - v) >> sh
	} else {
		v -= v >> sh
	}
	v = min(max(v, 16), probOne-16)
	if n < 1<<countBits-1 {
		n++
	}
	*p = prob(v<<countBits | n)
}

func (p prob) p() uint32 { return uint32(p >> countBits) }

// bitCoder codes one bit under a probability model. The encoder codes b and
// returns it; the decoder ignores b and returns the bit it decoded. Writing
// the models once against this interface keeps encoder and decoder from
// drifting apart.
type bitCoder interface {
	bit(p *prob, b uint32) uint32
}

// rcEncoder is the range encoder; its output accumulates in out.
type rcEncoder struct {
	low       uint64
	rng       uint32
	cache     byte
	cacheSize int64
	out       []byte
}

func newEncoder() *rcEncoder {
	return &rcEncoder{rng: 0xFFFFFFFF, cacheSize: 1}
}

func (e *rcEncoder) shiftLow() {
	if uint32(e.low) < 0xFF000000 || e.low > 0xFFFFFFFF {
		carry := byte(e.low >> 32)
		temp := e.cache
		for {
			e.out = append(e.out, temp+carry)
			temp = 0xFF
			e.cacheSize--
			if e.cacheSize == 0 {
				break
			}
		}
		e.cache = byte(uint32(e.low) >> 24)
	}
	e.cacheSize++
	e.low = uint64(uint32(e.low) << 8)
}

func (e *rcEncoder) bit(p *prob, b uint32) uint32 {
	bound := (e.rng >> probBits) * p.p()
	if b == 0 {
		e.rng = bound
	} else {
		e.low += uint64(bound)
		e.rng -= bound
	}
	p.update(b)
	for e.rng < topValue {
		e.rng <<= 8
		e.shiftLow()
	}
	return b
}

// finish flushes the encoder and returns the coded bytes.
func (e *rcEncoder) finish() []byte {
	for i := 0; i < 5; i++ {
		e.shiftLow()
	}
	return e.out
}

// byteSource is where the decoder takes coded bytes from; past the end of a
// block it yields zeros and remembers the overrun, so a truncated block is an
// error rather than a read of the next block.
type byteSource interface {
	readByte() byte
}

// rcDecoder is the range decoder.
type rcDecoder struct {
	rng  uint32
	code uint32
	src  byteSource
}

// init starts decoding; it reports false when the first byte, which the
// encoder always writes as zero, is not, so that no byte of a patch goes
// unchecked.
func (d *rcDecoder) init(src byteSource) bool {
	d.src = src
	d.rng = 0xFFFFFFFF
	first := src.readByte()
	d.code = 0
	for i := 1; i < rcInitLen; i++ {
		d.code = d.code<<8 | uint32(src.readByte())
	}
	return first == 0
}

func (d *rcDecoder) bit(p *prob, _ uint32) uint32 {
	bound := (d.rng >> probBits) * p.p()
	var b uint32
	if d.code < bound {
		d.rng = bound
	} else {
		d.code -= bound
		d.rng -= bound
		b = 1
	}
	p.update(b)
	for d.rng < topValue {
		d.rng <<= 8
		d.code = d.code<<8 | uint32(d.src.readByte())
	}
	return b
}
