package hal

import (
	"fmt"
	"math"
	"math/bits"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// MaxBootAttempts is the most unconfirmed boots a dual-bank board may allow a
// new image, as AliOS Things' REC_MAX_NUM: past it a faulty image that
// crashes early keeps the device off the network too long.
const MaxBootAttempts = 3

// Limits of a valid layout beyond the rules of flash itself. Real boards are
// far below each; the limits keep a corrupt or hostile description from
// making a generator or a bootloader work without bound.
const (
	// MaxFlashSize is the largest flash: offsets reach devices as int64
	// (io.ReaderAt).
	MaxFlashSize = math.MaxInt64
	// MaxSectorRuns is the most runs of sectors a flash may list: a run is
	// a stretch of one sector size, and real parts have one to five.
	MaxSectorRuns = 256
	// MaxPartitions is the most partitions a layout may list.
	MaxPartitions = 128
	// MaxParamsSize is the largest params partition: the bootloader reads
	// it whole at every power-on.
	MaxParamsSize = 16 << 20
)

// Problem is one rule a layout breaks.
type Problem struct {
	// Path is the field, written as in the layout's JSON form:
	// "flash.sectors[1].size", "partitions[2].offset", "boot_attempts".
	Path string
	// Msg says what is wrong and, after a semicolon, how to fix it.
	Msg string
	// Ref is another field the message names (the first of two partitions
	// with one name), or "".
	Ref string
}

// Error formats the problem as path: message.
func (p Problem) Error() string { return p.Path + ": " + p.Msg }

// Problems is every rule a layout breaks, in the order the rules run.
type Problems []Problem

// Error prints one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns ps as an error, or nil when there are no problems.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// ValidateOptions adjust Validate for callers that know more than the
// layout does.
type ValidateOptions struct {
	// Known reports whether the field at a path holds a real value. A
	// reader of a file says no for fields that were missing or did not
	// decode (and that it has reported): the rules that need them are
	// skipped instead of reporting their zero values. Nil means every
	// field is known.
	Known func(path string) bool
	// Map is the sector map of the layout's flash, for a caller that keeps
	// one (to reuse it, or count its steps); nil builds one.
	Map *SectorMap
}

// Validate checks the geometry against the rules every flash follows: erase
// sectors that add up to the size, a write unit that is a power of two and
// divides every sector, an erased value of 0x00 or 0xFF.
func (g FlashGeometry) Validate() Problems {
	v := &validator{known: func(string) bool { return true }}
	v.geometry(g, g.Map())
	return v.probs
}

// Validate checks l against every rule of a valid layout: a valid flash
// geometry, a known scheme, the partitions bootloader, params, app and ota
// inside the flash, on erase-sector boundaries and apart from each other,
// params of two sectors or more, slots that fit the scheme, and a boot
// attempt limit in range. It is the one place these rules live: the
// generator, the bootloader and the conformance kit all ask it.
func (l Layout) Validate() Problems { return l.ValidateWith(ValidateOptions{}) }

// ValidateWith is Validate with options.
func (l Layout) ValidateWith(opts ValidateOptions) Problems {
	v := &validator{known: opts.Known}
	if v.known == nil {
		v.known = func(string) bool { return true }
	}
	m := opts.Map
	if m == nil {
		m = l.Flash.Map()
	}
	if v.known("board") && l.Board == "" {
		v.add("board", "is empty; give the board a name such as stm32f407-disco")
	}
	g := v.geometry(l.Flash, m)
	v.scheme(l)
	v.bootAttempts(l)
	v.partitions(l, g)
	return v.probs
}

type validator struct {
	known func(path string) bool
	probs Problems
}

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// geom is a geometry the partition rules may rely on.
type geom struct {
	m    *SectorMap
	size uint64
}

// geometry checks g and returns its sector map when the partition rules can
// trust it, else nil (and the rules that need it are skipped).
func (v *validator) geometry(g FlashGeometry, m *SectorMap) *geom {
	sizeOK := v.known("flash.size")
	switch {
	case !sizeOK:
	case g.Size == 0:
		v.add("flash.size", "is 0; write the size of the flash, such as 1MiB")
		sizeOK = false
	case g.Size > MaxFlashSize:
		v.add("flash.size", "is %s, more than 2^63-1 bytes, the most an offset can address; write the real size", formatSize(g.Size))
		sizeOK = false
	case v.known("flash.base") && g.Base > math.MaxUint64-g.Size:
		v.add("flash.base", "%s plus flash.size %s passes the end of the 64-bit address space; check both", hexOff(g.Base), formatSize(g.Size))
	}
	out := v.sectorRuns(g, m, sizeOK)
	v.writeAlign(g, out)
	if v.known("flash.erase_value") && g.EraseValue != 0x00 && g.EraseValue != 0xFF {
		v.add("flash.erase_value", "is %s; an erased byte reads 0xFF on most NOR flash and 0x00 on a few (STM32L0/L1): write 0xFF or 0x00", hexOff(uint64(g.EraseValue)))
	}
	return out
}

func (v *validator) sectorRuns(g FlashGeometry, m *SectorMap, sizeOK bool) *geom {
	if !v.known("flash.sectors") {
		return nil
	}
	switch {
	case len(g.Sectors) == 0:
		v.add("flash.sectors", "is empty; list the erase sectors in address order, such as {count: 4, size: 16KiB}; uniform flash is one run")
		return nil
	case len(g.Sectors) > MaxSectorRuns:
		v.add("flash.sectors", "lists %d runs, more than %d; a run is every sector of one size in a row, and real parts have a few: merge runs of one size", len(g.Sectors), MaxSectorRuns)
		return nil
	}
	ok := true
	var total uint64
	for i, s := range g.Sectors {
		p := fmt.Sprintf("flash.sectors[%d]", i)
		if !v.known(p) || !v.known(p+".count") || !v.known(p+".size") {
			ok = false
			continue
		}
		if s.Count <= 0 {
			v.add(p+".count", "is %d; a run has at least 1 sector", s.Count)
			ok = false
		}
		if s.Size == 0 {
			v.add(p+".size", "is 0; write the size of one erase sector of this run, such as 16KiB")
			ok = false
		}
		if !ok {
			continue
		}
		hi, n := bits.Mul64(uint64(s.Count), s.Size)
		if hi != 0 || n > MaxFlashSize-total {
			v.add(p, "the sectors add up to more than 2^63 bytes; check count and size")
			return nil
		}
		total += n
	}
	if !ok {
		return nil
	}
	// With a size that is not known, the sectors alone still describe the
	// flash well enough to check the partitions.
	if sizeOK && total != g.Size {
		v.add("flash.sectors", "add up to %s (%s) but flash.size is %s (%s); correct the counts or sizes so that they sum to the flash size", formatSize(total), hexOff(total), formatSize(g.Size), hexOff(g.Size))
		return nil
	}
	return &geom{m: m, size: total}
}

func (v *validator) writeAlign(f FlashGeometry, g *geom) {
	if !v.known("flash.write_align") {
		return
	}
	w := uint64(f.WriteAlign)
	switch {
	case w == 0:
		v.add("flash.write_align", "is 0; write the smallest programmable unit in bytes (1 for byte-programmable NOR, 4, 8, 16, 32, or 256 for page-programmed SPI NOR)")
		return
	case w&(w-1) != 0:
		v.add("flash.write_align", "%d is not a power of two; flash programs in units of 1, 2, 4, 8 ... bytes: check the datasheet (8 on STM32L4, 32 on STM32H7)", w)
		return
	}
	if g == nil {
		return
	}
	smallest := f.Sectors[0].Size
	for _, r := range f.Sectors {
		smallest = min(smallest, r.Size)
	}
	if w > smallest {
		v.add("flash.write_align", "%s is larger than the smallest erase sector (%s); a write unit lies within one sector: check both in the datasheet", formatSize(w), formatSize(smallest))
		return
	}
	for i, r := range f.Sectors {
		if r.Size%w != 0 {
			v.add(fmt.Sprintf("flash.sectors[%d].size", i), "%s is not a multiple of write_align %d; a sector holds a whole number of write units", formatSize(r.Size), w)
		}
	}
}

func (v *validator) scheme(l Layout) {
	b := l.Bootloader
	if b != (Bootloader{}) && b.Name != BootloaderOtaport {
		want, ok := SchemeOf(b)
		switch {
		case !v.known("bootloader.name"):
			// Reported where it was read.
		case !ok && b.Name == BootloaderMCUboot:
			v.add("bootloader.mode", "unknown MCUboot mode %q; write %s, %s, %s, %s or %s, as the MCUBOOT_* option the bootloader is built with",
				b.Mode, ModeOverwriteOnly, ModeSwapMove, ModeSwapScratch, ModeSwapOffset, ModeDirectXIP)
		case !ok && b.Name == BootloaderESPIDF:
			v.add("bootloader.mode", "is %q, but ESP-IDF's bootloader has no modes; remove it", b.Mode)
		case !ok:
			v.add("bootloader.name", "unknown bootloader %q; write %s, %s or %s", b.Name, BootloaderMCUboot, BootloaderESPIDF, BootloaderOtaport)
		case v.known("scheme") && l.Scheme != want:
			v.add("scheme", "is %s, but %s boots as %s; remove scheme, or name the bootloader that boots this way", l.Scheme, b, want)
		}
		return
	}
	if b.Mode != "" {
		v.add("bootloader.mode", "is %q, but otaport's own bootloader has no modes; remove it", b.Mode)
	}
	if v.known("scheme") && l.Scheme != SingleBank && l.Scheme != DualBank && l.Scheme != Swap {
		v.add("scheme", "unknown scheme %q; write single-bank (the bootloader copies ota over app), dual-bank (it boots either slot) or swap (it swaps them and swaps back an unconfirmed image)", l.Scheme)
	}
}

func (v *validator) bootAttempts(l Layout) {
	if !v.known("boot_attempts") {
		return
	}
	// 0 is the default, one boot, as MCUboot's test mode.
	n := l.BootAttempts
	_, real := SchemeOf(l.Bootloader)
	switch {
	case n < 0 || n > MaxBootAttempts:
		v.add("boot_attempts", "is %d; a dual-bank bootloader allows 1 to %d unconfirmed boots before it falls back: write 1, 2 or 3 (or leave it out for 1)", n, MaxBootAttempts)
	case n > 1 && real && v.known("bootloader.name"):
		v.add("boot_attempts", "is %d, but %s boots a new image once and takes it back at the next power-on unless it confirmed itself; remove it (only otaport's own bootloader counts boots)", n, l.Bootloader)
	case n > 1 && l.Scheme == Swap && v.known("scheme"):
		v.add("boot_attempts", "is %d on a swap board, whose bootloader swaps a new image back at the power-on after its trial; remove it", n)
	case n > 1 && l.Scheme == SingleBank && v.known("scheme"):
		v.add("boot_attempts", "is %d on a single-bank board, which cannot fall back once the image is copied; remove it, or use scheme: dual-bank", n)
	}
}

// Required partitions, with what each is for (said when one is missing).
var requiredParts = []struct{ name, purpose string }{
	{PartBootloader, "the bootloader that copies or switches images"},
	{PartParams, "at least two erase sectors for the boot record"},
	{PartApp, "the running image, slot A"},
	{PartOTA, "where a new image is downloaded, slot B"},
}

// PartitionNamePattern is the regular expression a partition name matches:
// names become C macros and Go identifiers' parts in generated ports.
const PartitionNamePattern = `^[a-z][a-z0-9_-]*$`

var partNameRe = regexp.MustCompile(PartitionNamePattern)

// part is a partition with what the rules found out about it.
type part struct {
	Partition
	idx    int
	path   string // partitions[i]
	sized  bool   // offset and size known, size > 0
	inside bool   // sized and within the flash
}

// label names a partition in messages that mention another one.
func (p *part) label() string {
	if p.Name != "" {
		return p.Name
	}
	return p.path
}

func (v *validator) partitions(l Layout, g *geom) {
	if !v.known("partitions") {
		return
	}
	ps := l.Partitions
	switch {
	case len(ps) == 0:
		v.add("partitions", "is empty; add bootloader, params, app and ota")
		return
	case len(ps) > MaxPartitions:
		v.add("partitions", "lists %d partitions, more than %d; a board has a handful: merge or remove some", len(ps), MaxPartitions)
		return
	}
	flashSize, sizeKnown := l.Flash.Size, v.known("flash.size") && l.Flash.Size > 0 && l.Flash.Size <= MaxFlashSize
	if g != nil {
		flashSize, sizeKnown = g.size, true
	}
	var parts []*part
	byName := map[string]*part{}
	badName := false
	for i, p := range ps {
		pt := &part{Partition: p, idx: i, path: fmt.Sprintf("partitions[%d]", i)}
		parts = append(parts, pt)
		if !v.known(pt.path + ".name") {
			badName = true
		} else {
			switch {
			case !partNameRe.MatchString(p.Name):
				v.add(pt.path+".name", "name %q: use lower-case letters, digits, '-' and '_', starting with a letter; rename it", p.Name)
				badName = true
			case byName[p.Name] != nil:
				first := byName[p.Name]
				v.probs = append(v.probs, Problem{Path: pt.path + ".name", Ref: first.path,
					Msg: fmt.Sprintf("duplicate partition name (first at %s); rename one", first.path)})
			default:
				byName[p.Name] = pt
			}
		}
		if !v.known(pt.path+".offset") || !v.known(pt.path+".size") {
			continue
		}
		if p.Size == 0 {
			v.add(pt.path+".size", "size is 0; give the partition its size, such as 64KiB")
			continue
		}
		if p.Offset > MaxFlashSize || p.Size > MaxFlashSize-p.Offset {
			v.add(pt.path, "ends past 2^63-1 bytes, the most an offset can address; correct offset and size")
			continue
		}
		pt.sized = true
		if !sizeKnown {
			continue
		}
		end := p.End()
		switch {
		case p.Offset >= flashSize:
			v.add(pt.path+".offset", "starts at %s, past the end of the flash (%s, size %s); move it below %s or correct flash.size", hexOff(p.Offset), hexOff(flashSize), formatSize(flashSize), hexOff(flashSize))
		case end > flashSize:
			v.add(pt.path+".size", "ends at %s, past the end of the flash (%s); shrink it to %s or move it", hexOff(end), hexOff(flashSize), formatSize(flashSize-p.Offset))
		default:
			pt.inside = true
		}
	}
	if g != nil {
		for _, pt := range parts {
			if pt.inside {
				v.bounds(g, pt)
			}
		}
	}
	v.overlaps(parts)
	for _, r := range requiredParts {
		if byName[r.name] == nil && !badName {
			v.add("partitions", "has no %s partition (%s); add {name: %s, offset: ..., size: ...}", r.name, r.purpose, r.name)
		}
	}
	v.params(g, byName[PartParams])
	v.otadata(l, g, byName)
	if v.known("scheme") {
		v.slots(l.Scheme, g, byName[PartApp], byName[PartOTA])
	}
}

// bounds: a partition starts and ends on erase-sector boundaries, or erasing
// it would erase a neighbour's data too.
func (v *validator) bounds(g *geom, pt *part) {
	off, end := pt.Offset, pt.End()
	if lo, hi, on := g.m.Boundary(off); !on {
		v.add(pt.path+".offset", "starts at %s, not on an erase-sector boundary (nearest %s below, %s above); move it to one of them", hexOff(off), hexOff(lo), hexOff(hi))
		pt.inside = false
		return
	}
	if lo, hi, on := g.m.Boundary(end); !on {
		v.add(pt.path+".size", "ends at %s, not on an erase-sector boundary (nearest %s below, %s above); make its size %s or %s", hexOff(end), hexOff(lo), hexOff(hi), hexOff(lo-off), hexOff(hi-off))
		pt.inside = false
	}
}

// overlaps reports each partition that overlaps one before it (in address
// order) once, naming the first it overlaps: a shifted table then gives one
// line per partition, not one per pair.
func (v *validator) overlaps(parts []*part) {
	var sized []*part
	for _, pt := range parts {
		if pt.sized {
			sized = append(sized, pt)
		}
	}
	sort.SliceStable(sized, func(i, j int) bool {
		if sized[i].Offset != sized[j].Offset {
			return sized[i].Offset < sized[j].Offset
		}
		return sized[i].idx < sized[j].idx
	})
	for j, b := range sized {
		var first *part
		others := 0
		for _, a := range sized[:j] {
			if b.Offset >= a.End() {
				continue
			}
			if first == nil {
				first = a
			} else {
				others++
			}
		}
		if first == nil {
			continue
		}
		a := first
		shrink := ""
		if b.Offset > a.Offset {
			shrink = " to " + formatSize(b.Offset-a.Offset)
		}
		more := ""
		if others > 0 {
			more = fmt.Sprintf(" (and %d more before it)", others)
		}
		v.add(b.path+".offset", "overlaps %s (%s..%s) at %s%s; move %s to %s or shrink %s%s",
			a.label(), hexOff(a.Offset), hexOff(a.End()), hexOff(b.Offset), more, b.label(), hexOff(a.End()), a.label(), shrink)
	}
}

// params: the boot record is kept in two copies, one per erase sector, so a
// power cut while one is erased leaves the other readable; and it is read
// whole at every power-on, so it is bounded.
func (v *validator) params(g *geom, p *part) {
	if g == nil || p == nil || !p.inside {
		return
	}
	off, end := p.Offset, p.End()
	if p.Size > MaxParamsSize {
		v.add(p.path+".size", "is %s, more than %s; the bootloader reads params whole at every power-on, and two erase sectors are enough: make it smaller", formatSize(p.Size), formatSize(MaxParamsSize))
		return
	}
	n := g.m.Count(off, end)
	if n >= 2 {
		return
	}
	// Two sectors from off: the end of the sector after the one at off.
	_, second, _ := g.m.Boundary(end)
	if second <= end || second > g.size {
		v.add(p.path+".size", "spans %d erase sector (%s..%s); it needs at least 2 so that the boot record survives a power cut during an erase, and the flash has no room after it: move params", n, hexOff(off), hexOff(end))
		return
	}
	v.add(p.path+".size", "spans %d erase sector (%s..%s); it needs at least 2 so that the boot record survives a power cut during an erase: make its size %s", n, hexOff(off), hexOff(end), formatSize(second-off))
}

// slots: dual-bank app and ota are the two slots of one image; single-bank
// ota receives an image that is then copied over app.
func (v *validator) slots(s Scheme, g *geom, app, ota *part) {
	if app == nil || ota == nil || !app.sized || !ota.sized {
		return
	}
	switch s {
	case DualBank:
		if app.Size != ota.Size {
			v.add(ota.path+".size", "is %s but app is %s; in dual-bank they are the two slots of one image and must be the same size: make both %s", formatSize(ota.Size), formatSize(app.Size), formatSize(min(app.Size, ota.Size)))
			return
		}
		if g == nil || !app.inside || !ota.inside {
			return
		}
		la := g.m.Runs(app.Offset, app.End())
		lo := g.m.Runs(ota.Offset, ota.End())
		if !slices.Equal(la, lo) {
			v.add(ota.path+".offset", "has sectors %s but app has %s; in dual-bank an image must erase the same way in either slot: place ota where the sectors match app's", runsString(lo), runsString(la))
		}
	case Swap:
		v.swapSlots(g, app, ota)
	case SingleBank:
		if ota.Size < app.Size {
			v.add(ota.path+".size", "is %s, smaller than app (%s); the bootloader copies ota over app, so an image that fills app would not fit: make ota at least %s", formatSize(ota.Size), formatSize(app.Size), formatSize(app.Size))
		}
	}
}

// swapSlots: MCUboot swap-move (boot_slots_compatible in swap_move.c)
// moves the primary's sectors up by one and then exchanges them one by one
// with the secondary's, so every sector of both slots has one size, and app
// has as many sectors as ota or, as MCUboot recommends, one more: the one
// the move shifts the image into.
func (v *validator) swapSlots(g *geom, app, ota *part) {
	if g == nil || !app.inside || !ota.inside {
		return
	}
	la := g.m.Runs(app.Offset, app.End())
	lo := g.m.Runs(ota.Offset, ota.End())
	if len(la) != 1 || len(lo) != 1 || la[0].Size != lo[0].Size {
		v.add(ota.path+".offset", "has sectors %s and app has %s; MCUboot swap-move exchanges the slots sector by sector, so every sector of both must be one size: place app and ota in sectors of one size", runsString(lo), runsString(la))
		return
	}
	s, np, ns := la[0].Size, la[0].Count, lo[0].Count
	if np != ns && np != ns+1 {
		v.add(app.path+".size", "is %s (%d sectors) and ota %s (%d); MCUboot swap-move needs app to have one sector more than ota (the sector it moves the image into) or as many: make app %s",
			formatSize(app.Size), np, formatSize(ota.Size), ns, formatSize(uint64(ns+1)*s))
	}
}

func runsString(rs []SectorRun) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%dx%s", r.Count, formatSize(r.Size))
	}
	return strings.Join(parts, " + ")
}

// formatSize writes a byte count the way a user would: with the largest
// binary unit that divides it, else in hex.
func formatSize(v uint64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if v != 0 && v%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", v>>u.shift, u.suffix)
		}
	}
	if v < 1024 {
		return fmt.Sprintf("%d", v)
	}
	return fmt.Sprintf("0x%x", v)
}

// hexOff writes an offset in hex, as datasheets and linker scripts do.
func hexOff(v uint64) string { return fmt.Sprintf("0x%x", v) }
