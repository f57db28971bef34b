package flash

import (
	"bytes"
	"hash/maphash"
	"sync"
	"weak"
)

// PagePool shares identical pages between in-memory emulators, as a
// kernel's same-page merging shares identical memory between processes.
// A fleet simulator runs tens of thousands of devices, each over its own
// emulator: after an upgrade every device holds the same image, written
// page by page into pages of its own, and without sharing they cost a copy
// of the image each. An emulator hands its pages to the pool with
// SharePages; a shared page is copied again at its next write, as a page
// shared with a clone is, so each emulator keeps its own flash semantics.
//
// The pool holds its pages weakly: a page no emulator uses any more (a
// device rewrote its key-value store) is collected. It is safe for
// concurrent use.
type PagePool struct {
	mu    sync.Mutex
	seed  maphash.Seed
	pages map[uint64][]weak.Pointer[[pageSize]byte]
	adds  int // pages added since the last sweep of collected ones
	next  int // adds that make the next sweep: twice the pages then live
}

// minSweep is the fewest adds between two sweeps.
const minSweep = 16

// NewPagePool returns an empty pool.
func NewPagePool() *PagePool {
	return &PagePool{seed: maphash.MakeSeed(), pages: map[uint64][]weak.Pointer[[pageSize]byte]{}}
}

// Len is the number of distinct pages the pool holds, collected ones
// not yet swept included.
func (p *PagePool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.pages {
		n += len(b)
	}
	return n
}

// intern returns the pool's page equal to pg, adding pg when there is
// none. The caller must not write pg in place afterwards.
func (p *PagePool) intern(pg *[pageSize]byte) *[pageSize]byte {
	h := maphash.Bytes(p.seed, pg[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	bucket := p.pages[h]
	live := bucket[:0]
	var found *[pageSize]byte
	for _, w := range bucket {
		v := w.Value()
		if v == nil {
			continue // collected: drop it
		}
		live = append(live, w)
		if found == nil && *v == *pg {
			found = v
		}
	}
	if found == nil {
		live = append(live, weak.Make(pg))
		found = pg
		p.adds++
	}
	p.pages[h] = live
	if p.adds >= max(p.next, minSweep) {
		p.sweep()
	}
	return found
}

// sweep drops the collected pages of every bucket, so that a pool fed
// pages that die (key-value stores rewritten) stays the size of the
// pages in use.
func (p *PagePool) sweep() {
	n := 0
	defer func() { p.adds, p.next = 0, 2*n }()
	for h, bucket := range p.pages {
		live := bucket[:0]
		for _, w := range bucket {
			if w.Value() != nil {
				live = append(live, w)
			}
		}
		n += len(live)
		if len(live) == 0 {
			delete(p.pages, h)
		} else {
			p.pages[h] = live
		}
	}
}

// SharePages hands the pages this emulator wrote to pool: each is replaced
// by the pool's equal page when it has one, and is otherwise added to it;
// an erased page becomes the shared blank page. It returns how many pages
// now point at another emulator's (or the blank) copy. A file-backed
// emulator shares nothing: its pages are the file's.
func (e *Emulator) SharePages(pool *PagePool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.file != nil {
		return 0
	}
	shared := 0
	for i, pg := range e.pages {
		if !e.owned[i] || len(pg) != pageSize {
			continue
		}
		e.owned[i] = false // from now on the page may be another's too
		if bytes.Equal(pg, e.blank) {
			e.pages[i] = e.blank
			shared++
			continue
		}
		own := (*[pageSize]byte)(pg)
		if got := pool.intern(own); got != own {
			e.pages[i] = got[:]
			shared++
		}
	}
	return shared
}
