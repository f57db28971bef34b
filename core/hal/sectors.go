package hal

// SectorMap answers where the erase sectors of a flash lie in time
// proportional to its sector runs (a handful), never to its sectors: a 1 TiB
// part of 512-byte sectors has 2^31 of them, and a generator or a bootloader
// that walked them one by one would hang on a board it had accepted.
//
// Its answers hold for a geometry that FlashGeometry.Validate accepts; for
// any other it returns without panicking, but what it says is unspecified.
type SectorMap struct {
	runs []mapRun
	size uint64
	// Steps counts the sector runs the lookups have visited so far. Tests
	// read it to show that work is bounded by the number of runs.
	Steps int
}

// mapRun is count sectors of size bytes starting at start.
type mapRun struct{ start, count, size uint64 }

func (r mapRun) end() uint64 { return r.start + r.count*r.size }

// Map returns the sector map of g. Runs with no sectors are skipped.
func (g FlashGeometry) Map() *SectorMap {
	m := &SectorMap{runs: make([]mapRun, 0, len(g.Sectors))}
	for _, r := range g.Sectors {
		if r.Count <= 0 || r.Size == 0 {
			continue
		}
		m.runs = append(m.runs, mapRun{start: m.size, count: uint64(r.Count), size: r.Size})
		m.size += uint64(r.Count) * r.Size
	}
	return m
}

// Size is where the last sector ends.
func (m *SectorMap) Size() uint64 { return m.size }

// Boundary reports whether off is a sector boundary (0 and the end of the
// flash are) and, when it is not, the nearest boundaries below and above it.
// Past the end both are the end.
func (m *SectorMap) Boundary(off uint64) (below, above uint64, on bool) {
	for _, r := range m.runs {
		m.Steps++
		if off < r.end() {
			below = r.start + (off-r.start)/r.size*r.size
			return below, below + r.size, below == off
		}
	}
	return m.size, m.size, off == m.size
}

// Runs returns the sectors of [off, end) as runs in address order, adjacent
// runs of one sector size merged however the geometry split them. off and end
// should be boundaries; a sector that straddles either is left out.
func (m *SectorMap) Runs(off, end uint64) []SectorRun {
	var out []SectorRun
	for _, r := range m.runs {
		m.Steps++
		if r.start >= end {
			break
		}
		lo, hi := max(off, r.start), min(end, r.end())
		if lo >= hi {
			continue
		}
		// Whole sectors of this run inside [lo, hi).
		first := (lo - r.start + r.size - 1) / r.size
		last := (hi - r.start) / r.size
		if last <= first {
			continue
		}
		n := int(last - first)
		if k := len(out) - 1; k >= 0 && out[k].Size == r.size {
			out[k].Count += n
			continue
		}
		out = append(out, SectorRun{Count: n, Size: r.size})
	}
	return out
}

// Count returns the number of whole sectors in [off, end).
func (m *SectorMap) Count(off, end uint64) uint64 {
	var n uint64
	for _, r := range m.Runs(off, end) {
		n += uint64(r.Count)
	}
	return n
}

// Normal returns the geometry's runs with adjacent runs of one sector size
// merged: two geometries that put their sectors in the same places have equal
// normal forms, however their runs were written.
func (m *SectorMap) Normal() []SectorRun { return m.Runs(0, m.size) }
