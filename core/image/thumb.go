package image

import "io"

// armThumb runs xz's ARM-Thumb branch/call/jump (BCJ) filter over b, whose
// first byte is at stream position pos, in place, and returns how many
// bytes it finished: the last 0 to 3 bytes may be the start of a BL pair
// whose end is not in b yet, and are left for the next call. The filter
// turns the relative target of every Thumb BL (a 32-bit pair F000-F7FF,
// F800-FFFF) into an absolute one when encoding, and back when decoding:
// calls to one function then look alike, which LZMA2 compresses better.
// It is the loop of xz's liblzma simple/armthumb.c, the filter Python's
// lzma.FILTER_ARMTHUMB and imgtool --compression lzma2armthumb use, with
// no start offset.
func armThumb(b []byte, pos uint32, encode bool) int {
	i := 0
	for ; i+4 <= len(b); i += 2 {
		if b[i+1]&0xf8 != 0xf0 || b[i+3]&0xf8 != 0xf8 {
			continue
		}
		src := uint32(b[i+1]&7)<<19 | uint32(b[i])<<11 | uint32(b[i+3]&7)<<8 | uint32(b[i+2])
		src <<= 1
		var dst uint32
		if encode {
			dst = pos + uint32(i) + 4 + src
		} else {
			dst = src - (pos + uint32(i) + 4)
		}
		dst >>= 1
		b[i+1] = 0xf0 | byte(dst>>19)&7
		b[i] = byte(dst >> 11)
		b[i+3] = 0xf8 | byte(dst>>8)&7
		b[i+2] = byte(dst)
		i += 2
	}
	return i
}

// thumbEncode applies the ARM-Thumb filter to the whole of b, in place, as
// liblzma does to a stream that ends with b.
func thumbEncode(b []byte) { armThumb(b, 0, true) }

// thumbDecoder undoes the ARM-Thumb filter on the stream it reads from r.
type thumbDecoder struct {
	r    io.Reader
	pos  uint32 // stream position of buf[0]
	buf  []byte
	done int // buf[:done] is decoded, not yet returned
	eof  bool
}

func newThumbDecoder(r io.Reader) *thumbDecoder {
	return &thumbDecoder{r: r, buf: make([]byte, 0, 32<<10)}
}

func (d *thumbDecoder) Read(p []byte) (int, error) {
	for d.done == 0 {
		if d.eof {
			if len(d.buf) == 0 {
				return 0, io.EOF
			}
			// The stream ended inside what could have been a BL pair: liblzma
			// passes those bytes on as they are.
			d.done = len(d.buf)
			break
		}
		n, err := d.r.Read(d.buf[len(d.buf):cap(d.buf)])
		d.buf = d.buf[:len(d.buf)+n]
		if err == io.EOF {
			d.eof = true
		} else if err != nil {
			return 0, err
		}
		d.done = armThumb(d.buf, d.pos, false)
	}
	n := copy(p, d.buf[:d.done])
	rest := copy(d.buf, d.buf[n:])
	d.buf = d.buf[:rest]
	d.done -= n
	d.pos += uint32(n)
	return n, nil
}
