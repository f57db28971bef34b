package flash

import (
	"math/bits"
	"math/rand/v2"
)

// CutWhen says where, relative to the chosen operation, the power goes.
type CutWhen int

const (
	// Before: operation k never happens; it returns ErrPowerCut. This is
	// MCUboot's simulator reset. It is the zero value.
	Before CutWhen = iota
	// After: operation k completes and returns nil, then the power is gone:
	// every later call returns ErrPowerCut.
	After
	// Torn: operation k is interrupted midway and returns ErrPowerCut,
	// leaving the flash neither as before nor as after it (see Cut).
	Torn
)

func (w CutWhen) String() string {
	switch w {
	case Before:
		return "before"
	case After:
		return "after"
	case Torn:
		return "torn"
	}
	return "CutWhen(?)"
}

// Cut is a power cut armed on an emulator with SetCut. At is 1-based and
// counts Program and Erase operations from the SetCut call, so a sweep over
// k = 1..N, where N is Ops() of a clean run from the same starting flash,
// visits every operation. After the cut every call, reads included, returns
// ErrPowerCut; Clone or Reopen powers the flash on again as the cut left it.
//
// How faithful a torn operation is:
//
//   - Program: NOR programs its write units in address order. A torn program
//     leaves the units before the cut point fully programmed, the units after
//     it untouched, and the unit at the cut point with a prefix of its
//     changing bits moved. Among the bits the operation would change, the cut
//     falls strictly inside (if there are at least two), so the result always
//     differs from both the old and the new content. Not modelled: cells left
//     weakly programmed that read differently from one read to the next.
//   - Erase: a sector erase acts on every cell at once, and an interrupted
//     one leaves cells partly erased. A torn erase of several sectors erases
//     the sectors before the cut sector, leaves those after it untouched, and
//     in the cut sector moves a pseudo-random subset (about 1/4, 1/2 or 3/4,
//     chosen from the seed) of the bits that are not yet erased, again
//     strictly between old and erased when the sector has two such bits or
//     more. Not modelled: the pre-program phase of parts that first program
//     the sector to all-zeros (a cut there moves bits away from the erased
//     value), and unstable reads of half-erased cells. Both are covered in
//     effect: software must detect any non-erased garbage by its checksums.
//
// The torn point and the subset are a function of Seed and At only, so a
// failing sweep point reproduces exactly.
type Cut struct {
	At   int
	When CutWhen
	Seed uint64
}

// rng returns the deterministic random source of this cut.
func (c Cut) rng() *rand.Rand {
	return rand.New(rand.NewPCG(c.Seed, uint64(c.At)*0x9e3779b97f4a7c15+uint64(c.When)))
}

// tornProgram applies a prefix, in address and bit order, of the bit moves
// that programming p at off would make.
func (e *Emulator) tornProgram(off int64, p []byte) {
	old := make([]byte, len(p))
	e.copyOut(old, off)
	var changing int
	for i, o := range old {
		changing += bits.OnesCount8(o ^ e.programmed(o, p[i]))
	}
	if changing == 0 {
		return
	}
	// Move k of the changing bits, 0 < k < changing when possible.
	k := 1
	if changing > 2 {
		k = 1 + e.cut.rng().IntN(changing-1)
	} else if changing == 1 {
		k = 0
	}
	res := old
	for i, o := range old {
		if k == 0 {
			break
		}
		d := o ^ e.programmed(o, p[i])
		if n := bits.OnesCount8(d); n <= k {
			res[i] = o ^ d
			k -= n
			continue
		}
		for ; k > 0; k-- {
			low := d & -d
			res[i] ^= low
			d &^= low
		}
	}
	e.store(off, res)
}

// programmed returns what programming byte v over byte o gives.
func (e *Emulator) programmed(o, v byte) byte {
	if e.erased == 0xFF {
		return o & v
	}
	return o | v
}

// tornErase erases sectors first..last up to a cut sector, which it erases
// partially (see Cut), and returns the index of the cut sector. The erase
// counters of the sectors it touched go up by one.
func (e *Emulator) tornErase(first, last int) int {
	r := e.cut.rng()
	// Cut in a sector that has something to lose, so the tear shows.
	var dirty []int
	for i := first; i <= last; i++ {
		s, end := e.sectors.starts[i], e.sectors.starts[i+1]
		if _, ok := e.firstNotErased(s, end-s); ok {
			dirty = append(dirty, i)
		}
	}
	j := first + r.IntN(last-first+1)
	if len(dirty) > 0 {
		j = dirty[r.IntN(len(dirty))]
	}
	for i := first; i <= j; i++ {
		e.counts[i]++
	}
	if j > first {
		e.erase(e.sectors.starts[first], e.sectors.starts[j])
	}

	s, end := e.sectors.starts[j], e.sectors.starts[j+1]
	old := make([]byte, end-s)
	e.copyOut(old, s)
	res := make([]byte, len(old))
	copy(res, old)
	density := r.IntN(3)
	var total, moved int
	for i, o := range old {
		d := o ^ e.erased
		if d == 0 {
			continue
		}
		a, b := byte(r.Uint32()), byte(r.Uint32())
		mask := a
		switch density {
		case 0:
			mask = a & b
		case 2:
			mask = a | b
		}
		m := d & mask
		res[i] = o ^ m
		total += bits.OnesCount8(d)
		moved += bits.OnesCount8(m)
	}
	// Keep the result strictly between old and erased.
	if total >= 2 && (moved == 0 || moved == total) {
		for i, o := range old {
			d := o ^ e.erased
			if d == 0 {
				continue
			}
			low := d & -d
			res[i] ^= low // moved==0: erase one bit; moved==total: restore one
			break
		}
	}
	e.store(s, res)
	return j
}

// store overwrites the flash at off with b (no NOR semantics: the caller
// computed the result).
func (e *Emulator) store(off int64, b []byte) {
	if e.mapped() {
		e.file.put(b, off)
		return
	}
	for len(b) > 0 {
		pg, in := off>>pageShift, off&(pageSize-1)
		c := copy(e.page(pg)[in:], b)
		b, off = b[c:], off+int64(c)
	}
}
