package portgen

import (
	"fmt"
	"math/bits"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/otaport/otaport/core/hal"
)

// Signature types a board may ask images to carry (MCUboot's TLV types).
const (
	SigEd25519   = "ed25519"
	SigECDSAP256 = "ecdsa-p256"
	SigRSA2048   = "rsa-2048"
	SigRSA3072   = "rsa-3072"
)

// Schemes returns the boot schemes a board may name.
func Schemes() []string { return []string{string(hal.SingleBank), string(hal.DualBank)} }

// Signatures returns the image signature types a board may name.
func Signatures() []string { return []string{SigEd25519, SigECDSAP256, SigRSA2048, SigRSA3072} }

// MaxBootAttempts is the most unconfirmed boots a dual-bank board may allow a
// new image, as AliOS Things' REC_MAX_NUM: past it a faulty image that
// crashes early keeps the device off the network too long.
const MaxBootAttempts = 3

// MaxNameLen bounds a board name: it is a directory, a Go package and part of
// a binary name.
const MaxNameLen = 40

var (
	// boardNameRe: a board name becomes ports/<name>/, the plugin
	// otaport-<name> and, without '-', a Go package name, so it must start
	// with a letter.
	boardNameRe = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
	partNameRe  = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
)

// reservedNames cannot be board names: Go keywords (the package name would
// not compile), and directory names the go tool or the catalog treat
// specially under ports/.
var reservedNames = []string{
	"all", "internal", "main", "testdata", "vendor",
	"break", "case", "chan", "const", "continue", "default", "defer", "else",
	"fallthrough", "for", "func", "go", "goto", "if", "import", "interface",
	"map", "package", "range", "return", "select", "struct", "switch", "type", "var",
}

// boardPackage is the Go package name of a board's port: the name without '-'.
func boardPackage(name string) string { return strings.ReplaceAll(name, "-", "") }

// requiredParts are the partitions every board has, with what each is for
// (said in the message when one is missing).
var requiredParts = []struct{ name, purpose string }{
	{hal.PartBootloader, "the bootloader that copies or switches images"},
	{hal.PartParams, "at least two erase sectors for the boot record"},
	{hal.PartApp, "the running image, slot A"},
	{hal.PartOTA, "where a new image is downloaded, slot B"},
}

// Validate checks a board built in code (not parsed from YAML) against every
// rule Parse enforces. It returns nil or an Errors; problems carry b.Line,
// which is 0 for a board that was never in a file.
func (b *Board) Validate() error {
	pos := positions{"": b.Line}
	mark := func(path string) { pos[path] = b.Line }
	for _, f := range []string{"name", "source", "scheme", "flash", "flash.size", "flash.write_align", "flash.erase_value", "image", "image.signature", "partitions"} {
		mark(f)
	}
	if len(b.Flash.Sectors) > 0 {
		mark("flash.sectors")
	}
	if b.Flash.EraseSize != 0 {
		mark("flash.erase_size")
	}
	if b.Image.BootAttempts != 0 {
		mark("image.boot_attempts")
	}
	for i := range b.Flash.Sectors {
		for _, f := range []string{"", ".count", ".size"} {
			mark(fmt.Sprintf("flash.sectors[%d]%s", i, f))
		}
	}
	for i := range b.Partitions {
		for _, f := range []string{"", ".name", ".offset", ".size"} {
			mark(fmt.Sprintf("partitions[%d]%s", i, f))
		}
	}
	v := &validator{b: b, pos: pos}
	v.run()
	if len(v.probs) > 0 {
		return v.probs
	}
	return nil
}

// validator applies the rules to one decoded board. pos says which fields
// were present (and where); bad lists those that were missing or did not
// decode, already reported: rules that need them are skipped.
type validator struct {
	b     *Board
	pos   positions
	bad   map[string]bool
	file  string
	probs Errors
}

func (v *validator) add(path, format string, args ...any) {
	v.addAt(v.pos.line(path), path, format, args...)
}

func (v *validator) addAt(line int, field, format string, args ...any) {
	v.probs = append(v.probs, Problem{File: v.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) present(path string) bool { _, ok := v.pos[path]; return ok }

// usable is true when path was given and decoded (as did its parents).
func (v *validator) usable(path string) bool {
	if !v.present(path) {
		return false
	}
	for p := path; ; {
		if v.bad[p] {
			return false
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return true
		}
		p = p[:i]
	}
}

func (v *validator) run() {
	v.name()
	if v.usable("source") && strings.TrimSpace(v.b.Source) == "" {
		v.add("source", "is empty; say where the geometry comes from (datasheet title and section, or SDK file)")
	}
	g := v.geometry()
	v.scheme()
	v.image()
	v.partitions(g)
}

func (v *validator) name() {
	if !v.usable("name") {
		return
	}
	n := v.b.Name
	switch {
	case n == "":
		v.add("name", "is empty; give the board a name such as stm32f407-disco")
	case len(n) > MaxNameLen:
		v.add("name", "%q is %d characters; keep it to %d (it names a directory, a package and a binary)", n, len(n), MaxNameLen)
	case !boardNameRe.MatchString(n):
		v.add("name", "%q: use lower-case letters, digits and single '-', starting with a letter (it becomes ports/<name>/ and otaport-<name>); for example %q", n, suggestName(n))
	case slices.Contains(reservedNames, boardPackage(n)) || slices.Contains(reservedNames, n):
		v.add("name", "%q is reserved (a Go keyword or a directory name the tools treat specially); add the vendor or board, such as %q", n, n+"-board")
	}
}

// suggestName turns an invalid board name into a valid one for the message.
func suggestName(n string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(n) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		} else {
			dash = true
		}
	}
	s := b.String()
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		s = "board-" + s
	}
	return strings.TrimSuffix(s, "-")
}

// span is count erase sectors of size bytes from start.
type span struct{ start, count, size uint64 }

func (r span) end() uint64 { return r.start + r.count*r.size }

// geom is a checked sector layout: runs in address order covering [0, size).
type geom struct {
	size uint64
	runs []span
}

// boundary reports whether off is on an erase-sector boundary, and the
// nearest boundaries below and above it otherwise.
func (g *geom) boundary(off uint64) (below, above uint64, on bool) {
	if off >= g.size {
		return g.size, g.size, off == g.size
	}
	for _, r := range g.runs {
		if off < r.end() {
			below = r.start + (off-r.start)/r.size*r.size
			return below, below + r.size, below == off
		}
	}
	return g.size, g.size, false
}

// layout lists the sector runs of [off, end), both on boundaries.
func (g *geom) layout(off, end uint64) []span {
	var out []span
	for _, r := range g.runs {
		lo, hi := max(off, r.start), min(end, r.end())
		if lo >= hi {
			continue
		}
		n := (hi - lo) / r.size
		// Merge runs of one sector size, however the YAML split them.
		if k := len(out) - 1; k >= 0 && out[k].size == r.size {
			out[k].count += n
			continue
		}
		out = append(out, span{start: lo - off, count: n, size: r.size})
	}
	return out
}

func (g *geom) sectors(off, end uint64) uint64 {
	var n uint64
	for _, r := range g.layout(off, end) {
		n += r.count
	}
	return n
}

func layoutString(rs []span) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%dx%s", r.count, formatSize(r.size))
	}
	return strings.Join(parts, " + ")
}

// geometry checks the flash fields and returns the sector layout when it can
// be trusted, else nil (and partition rules that need it are skipped).
func (v *validator) geometry() *geom {
	f := &v.b.Flash
	if !v.usable("flash") {
		return nil
	}
	var g *geom
	sizeOK := v.usable("flash.size")
	if sizeOK && f.Size == 0 {
		v.add("flash.size", "is 0; write the size of the flash, such as 1MiB")
		sizeOK = false
	}
	hasS, hasE := v.present("flash.sectors"), v.present("flash.erase_size")
	switch {
	case hasS && hasE:
		v.add("flash.erase_size", "is set together with sectors; keep sectors for non-uniform flash or erase_size for uniform flash, not both")
	case !hasS && !hasE:
		v.add("flash", "has neither sectors nor erase_size; add erase_size: 4KiB for uniform flash, or sectors: [{count: 4, size: 16KiB}, ...] for non-uniform flash")
	case hasS && v.usable("flash.sectors"):
		g = v.sectorRuns(sizeOK)
	case hasE && v.usable("flash.erase_size"):
		g = v.eraseSize(sizeOK)
	}
	v.writeAlign(g)
	if v.usable("flash.erase_value") && f.EraseValue != 0x00 && f.EraseValue != 0xFF {
		v.add("flash.erase_value", "is %s; an erased byte reads 0xFF on most NOR flash and 0x00 on a few (STM32L0/L1): write 0xFF or 0x00", hexOff(uint64(f.EraseValue)))
	}
	return g
}

func (v *validator) sectorRuns(sizeOK bool) *geom {
	f := &v.b.Flash
	if len(f.Sectors) == 0 {
		v.add("flash.sectors", "is empty; list the erase sectors in address order ({count: 4, size: 16KiB}), or use erase_size for uniform flash")
		return nil
	}
	ok := true
	var total uint64
	var runs []span
	for i, s := range f.Sectors {
		p := fmt.Sprintf("flash.sectors[%d]", i)
		if !v.usable(p) || !v.usable(p+".count") || !v.usable(p+".size") {
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
		hi, n := bits.Mul64(uint64(s.Count), uint64(s.Size))
		if hi != 0 || n > MaxSize-total {
			v.add(p, "the sectors add up to more than 2^63 bytes; check count and size")
			return nil
		}
		runs = append(runs, span{start: total, count: uint64(s.Count), size: uint64(s.Size)})
		total += n
	}
	if !ok {
		return nil
	}
	// With a flash.size that did not decode, the sectors alone still
	// describe the flash well enough to check the partitions.
	if sizeOK && total != uint64(f.Size) {
		v.add("flash.sectors", "add up to %s (%s) but flash.size is %s (%s); correct the counts or sizes so that they sum to the flash size", formatSize(total), hexOff(total), formatSize(uint64(f.Size)), hexOff(uint64(f.Size)))
		return nil
	}
	return &geom{size: total, runs: runs}
}

func (v *validator) eraseSize(sizeOK bool) *geom {
	f := &v.b.Flash
	if f.EraseSize == 0 {
		v.add("flash.erase_size", "is 0; write the erase unit of the datasheet, such as 4KiB")
		return nil
	}
	if !sizeOK {
		return nil
	}
	if f.Size%f.EraseSize != 0 {
		v.add("flash.erase_size", "%s does not divide flash.size %s (%s left over); use the erase unit of the datasheet, or correct flash.size", formatSize(uint64(f.EraseSize)), formatSize(uint64(f.Size)), formatSize(uint64(f.Size%f.EraseSize)))
		return nil
	}
	n := uint64(f.Size / f.EraseSize)
	return &geom{size: uint64(f.Size), runs: []span{{start: 0, count: n, size: uint64(f.EraseSize)}}}
}

func (v *validator) writeAlign(g *geom) {
	f := &v.b.Flash
	if !v.usable("flash.write_align") {
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
	smallest := g.runs[0].size
	for _, r := range g.runs {
		smallest = min(smallest, r.size)
	}
	if w > smallest {
		v.add("flash.write_align", "%s is larger than the smallest erase sector (%s); a write unit lies within one sector: check both in the datasheet", formatSize(w), formatSize(smallest))
		return
	}
	for i, r := range g.runs {
		if r.size%w != 0 {
			p := "flash.erase_size"
			if len(v.b.Flash.Sectors) > 0 {
				p = fmt.Sprintf("flash.sectors[%d].size", i)
			}
			v.add(p, "%s is not a multiple of write_align %d; a sector holds a whole number of write units", formatSize(r.size), w)
		}
	}
}

func (v *validator) scheme() {
	if !v.usable("scheme") {
		return
	}
	if !slices.Contains(Schemes(), v.b.Scheme) {
		v.add("scheme", "unknown scheme %q%s; write single-bank (the bootloader copies ota over app) or dual-bank (it boots either slot)", v.b.Scheme, didYouMean(v.b.Scheme, Schemes()))
	}
}

func (v *validator) image() {
	if !v.usable("image") {
		return
	}
	if v.usable("image.signature") && !slices.Contains(Signatures(), v.b.Image.Signature) {
		v.add("image.signature", "unknown signature %q%s; write one of %s", v.b.Image.Signature, didYouMean(v.b.Image.Signature, Signatures()), strings.Join(Signatures(), ", "))
	}
	if !v.usable("image.boot_attempts") {
		return
	}
	n := v.b.Image.BootAttempts
	if n < 1 || n > MaxBootAttempts {
		v.add("image.boot_attempts", "is %d; a dual-bank bootloader allows 1 to %d unconfirmed boots before it falls back: write 1, 2 or 3 (or leave it out for 1)", n, MaxBootAttempts)
		return
	}
	if v.b.Scheme == string(hal.SingleBank) {
		v.add("image.boot_attempts", "is set on a single-bank board, which cannot fall back once the image is copied; remove it, or use scheme: dual-bank")
	}
}

func didYouMean(s string, known []string) string {
	if n := nearest(s, known); n != "" {
		return fmt.Sprintf(" (did you mean %s?)", n)
	}
	return ""
}

// part is a partition with what the rules need to know about it.
type partInfo struct {
	Partition
	idx    int
	path   string // partitions[i]
	label  string // partitions[i] (name)
	sized  bool   // offset and size decoded, size > 0
	inside bool   // sized and within the flash
}

func (v *validator) partitions(g *geom) {
	if !v.usable("partitions") {
		return
	}
	ps := v.b.Partitions
	if len(ps) == 0 {
		v.add("partitions", "is empty; add bootloader, params, app and ota")
		return
	}
	flashSize, sizeKnown := uint64(v.b.Flash.Size), v.usable("flash.size") && v.b.Flash.Size > 0
	if g != nil {
		flashSize, sizeKnown = g.size, true
	}
	var parts []*partInfo
	byName := map[string]*partInfo{}
	for i, p := range ps {
		pt := &partInfo{Partition: p, idx: i, path: fmt.Sprintf("partitions[%d]", i)}
		pt.label = pt.path
		if p.Name != "" {
			pt.label = fmt.Sprintf("%s (%s)", pt.path, p.Name)
		}
		parts = append(parts, pt)
		line := v.pos.line(pt.path)
		if v.usable(pt.path + ".name") {
			switch {
			case !partNameRe.MatchString(p.Name):
				v.addAt(line, pt.label, "name %q: use lower-case letters, digits, '-' and '_', starting with a letter; rename it", p.Name)
			case byName[p.Name] != nil:
				first := byName[p.Name]
				v.addAt(line, pt.label, "duplicate partition name (first at line %d, %s); rename one", v.pos.line(first.path), first.path)
			default:
				byName[p.Name] = pt
			}
		}
		if !v.usable(pt.path+".offset") || !v.usable(pt.path+".size") {
			continue
		}
		if p.Size == 0 {
			v.addAt(line, pt.label, "size is 0; give the partition its size, such as 64KiB")
			continue
		}
		pt.sized = true
		end := uint64(p.Offset) + uint64(p.Size)
		if !sizeKnown {
			continue
		}
		switch {
		case uint64(p.Offset) >= flashSize:
			v.addAt(line, pt.label, "starts at %s, past the end of the flash (%s, size %s); move it below %s or correct flash.size", hexOff(uint64(p.Offset)), hexOff(flashSize), formatSize(flashSize), hexOff(flashSize))
		case end > flashSize:
			v.addAt(line, pt.label, "ends at %s, past the end of the flash (%s); shrink it to %s or move it", hexOff(end), hexOff(flashSize), formatSize(flashSize-uint64(p.Offset)))
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
		if byName[r.name] == nil && !v.anyBadName() {
			v.add("partitions", "has no %s partition (%s); add {name: %s, offset: ..., size: ...}", r.name, r.purpose, r.name)
		}
	}
	v.params(g, byName[hal.PartParams])
	v.slots(g, byName[hal.PartApp], byName[hal.PartOTA])
}

// anyBadName is true when a partition name did not decode: a "missing"
// partition may then just be that one.
func (v *validator) anyBadName() bool {
	for i := range v.b.Partitions {
		p := fmt.Sprintf("partitions[%d]", i)
		if v.bad[p] || v.bad[p+".name"] {
			return true
		}
	}
	return false
}

// bounds: a partition starts and ends on erase-sector boundaries, or erasing
// it would erase a neighbour's data too.
func (v *validator) bounds(g *geom, pt *partInfo) {
	line := v.pos.line(pt.path)
	off, end := uint64(pt.Offset), uint64(pt.Offset)+uint64(pt.Size)
	if lo, hi, on := g.boundary(off); !on {
		v.addAt(line, pt.label, "starts at %s, not on an erase-sector boundary (nearest %s below, %s above); move it to one of them", hexOff(off), hexOff(lo), hexOff(hi))
		return
	}
	if lo, hi, on := g.boundary(end); !on {
		v.addAt(line, pt.label, "ends at %s, not on an erase-sector boundary (nearest %s below, %s above); make its size %s or %s", hexOff(end), hexOff(lo), hexOff(hi), hexOff(lo-off), hexOff(hi-off))
	}
}

func (v *validator) overlaps(parts []*partInfo) {
	var sized []*partInfo
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
	const maxReports = 20 // a badly shifted table would otherwise repeat itself
	n := 0
	for j, b := range sized {
		for _, a := range sized[:j] {
			aEnd := uint64(a.Offset) + uint64(a.Size)
			if uint64(b.Offset) >= aEnd {
				continue
			}
			if n++; n > maxReports {
				return
			}
			shrink := ""
			if b.Offset > a.Offset {
				shrink = " to " + formatSize(uint64(b.Offset-a.Offset))
			}
			v.addAt(v.pos.line(b.path), b.label, "overlaps %s (%s..%s) at %s; move %s to %s or shrink %s%s",
				nameOr(a), hexOff(uint64(a.Offset)), hexOff(aEnd), hexOff(uint64(b.Offset)), nameOr(b), hexOff(aEnd), nameOr(a), shrink)
		}
	}
}

func nameOr(p *partInfo) string {
	if p.Name != "" {
		return p.Name
	}
	return p.path
}

// params: the boot record is kept in two copies, one per erase sector, so a
// power cut while one is erased leaves the other readable.
func (v *validator) params(g *geom, p *partInfo) {
	if g == nil || p == nil || !p.inside {
		return
	}
	off, end := uint64(p.Offset), uint64(p.Offset)+uint64(p.Size)
	if _, _, on := g.boundary(off); !on {
		return
	}
	if _, _, on := g.boundary(end); !on {
		return
	}
	n := g.sectors(off, end)
	if n >= 2 {
		return
	}
	// Two sectors from off: the end of the sector after the one at off.
	_, second, _ := g.boundary(end)
	if second <= end || second > g.size {
		v.addAt(v.pos.line(p.path), p.label, "spans %d erase sector (%s..%s); it needs at least 2 so that the boot record survives a power cut during an erase, and the flash has no room after it: move params", n, hexOff(off), hexOff(end))
		return
	}
	v.addAt(v.pos.line(p.path), p.label, "spans %d erase sector (%s..%s); it needs at least 2 so that the boot record survives a power cut during an erase: make its size %s", n, hexOff(off), hexOff(end), formatSize(second-off))
}

// slots: dual-bank app and ota are the two slots of one image; single-bank
// ota receives an image that is then copied over app.
func (v *validator) slots(g *geom, app, ota *partInfo) {
	if app == nil || ota == nil || !app.sized || !ota.sized || !v.usable("scheme") {
		return
	}
	line := v.pos.line(ota.path)
	switch hal.Scheme(v.b.Scheme) {
	case hal.DualBank:
		if app.Size != ota.Size {
			v.addAt(line, ota.label, "is %s but app is %s; in dual-bank they are the two slots of one image and must be the same size: make both %s", formatSize(uint64(ota.Size)), formatSize(uint64(app.Size)), formatSize(uint64(min(app.Size, ota.Size))))
			return
		}
		if g == nil || !app.inside || !ota.inside {
			return
		}
		la := g.layout(uint64(app.Offset), uint64(app.Offset)+uint64(app.Size))
		lo := g.layout(uint64(ota.Offset), uint64(ota.Offset)+uint64(ota.Size))
		if !slices.Equal(la, lo) {
			v.addAt(line, ota.label, "has sectors %s but app has %s; in dual-bank an image must erase the same way in either slot: place ota where the sectors match app's", layoutString(lo), layoutString(la))
		}
	case hal.SingleBank:
		if ota.Size < app.Size {
			v.addAt(line, ota.label, "is %s, smaller than app (%s); the bootloader copies ota over app, so an image that fills app would not fit: make ota at least %s", formatSize(uint64(ota.Size)), formatSize(uint64(app.Size)), formatSize(uint64(app.Size)))
		}
	}
}
