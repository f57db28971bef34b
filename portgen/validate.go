package portgen

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/spell"
)

// Signature types a board may ask images to carry (MCUboot's TLV types).
const (
	SigEd25519   = "ed25519"
	SigECDSAP256 = "ecdsa-p256"
	SigRSA2048   = "rsa-2048"
	SigRSA3072   = "rsa-3072"
)

// Schemes returns the boot schemes a board may name.
func Schemes() []string {
	return []string{string(hal.SingleBank), string(hal.DualBank), string(hal.Swap)}
}

// Bootloaders returns the bootloaders a board may name.
func Bootloaders() []string {
	return []string{hal.BootloaderMCUboot, hal.BootloaderESPIDF, hal.BootloaderOtaport}
}

// MCUbootModes returns MCUboot's upgrade modes, as a board names them.
func MCUbootModes() []string {
	return []string{hal.ModeOverwriteOnly, hal.ModeSwapMove, hal.ModeSwapScratch, hal.ModeSwapOffset, hal.ModeDirectXIP}
}

// Signatures returns the image signature types a board may name.
func Signatures() []string { return []string{SigEd25519, SigECDSAP256, SigRSA2048, SigRSA3072} }

// MaxNameLen bounds a board name: it is a directory, a Go package and part of
// a binary name.
const MaxNameLen = 40

var (
	// boardNameRe: a board name becomes ports/<name>/, the plugin
	// otaport-<name> and, without '-', a Go package name, so it must start
	// with a letter.
	boardNameRe = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)
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

// Validate checks a board built in code (not parsed from YAML) against every
// rule Parse enforces. It returns nil or an Errors; problems carry b.Line,
// which is 0 for a board that was never in a file.
func (b *Board) Validate() error {
	pos := positions{"": b.Line}
	mark := func(path string) { pos[path] = b.Line }
	if b.Scheme != "" {
		mark("scheme")
	}
	if b.Bootloader != (Bootloader{}) {
		mark("bootloader")
		mark("bootloader.name")
		if b.Bootloader.Mode != "" {
			mark("bootloader.mode")
		}
	}
	for _, f := range []string{"name", "source", "flash", "flash.base", "flash.size", "flash.write_align", "flash.erase_value", "image", "image.signature", "partitions"} {
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

// validator applies the rules to one decoded board: the rules of the file
// format here, the rules of a valid layout through hal.Layout.Validate, whose
// problems it places on the board's lines. pos says which fields were present
// (and where); bad lists those that were missing or did not decode, already
// reported: rules that need them are skipped.
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

// refuse records a problem with a field and marks it unusable, so that the
// layout rules that need it are skipped.
func (v *validator) refuse(path, format string, args ...any) {
	v.add(path, format, args...)
	v.skip(path)
}

// skip marks a field unusable without a message.
func (v *validator) skip(path string) {
	if v.bad == nil {
		v.bad = map[string]bool{}
	}
	v.bad[path] = true
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
	v.flashForm()
	v.bootloader()
	v.image()
	v.layout()
}

func (v *validator) name() {
	if !v.usable("name") {
		return
	}
	n := v.b.Name
	switch {
	case n == "":
		// A layout rule: reported by hal.
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

// uniform is true when the board gives its sectors as erase_size.
func (v *validator) uniform() bool {
	return !v.present("flash.sectors") && v.present("flash.erase_size")
}

// flashForm checks how the file writes the sectors: a list or, for uniform
// flash, erase_size, which must divide the size. What the sectors then are is
// checked with the layout.
func (v *validator) flashForm() {
	f := &v.b.Flash
	if !v.usable("flash") {
		return
	}
	hasS, hasE := v.present("flash.sectors"), v.present("flash.erase_size")
	switch {
	case hasS && hasE:
		v.skip("flash.sectors")
		v.refuse("flash.erase_size", "is set together with sectors; keep sectors for non-uniform flash or erase_size for uniform flash, not both")
	case !hasS && !hasE:
		v.add("flash", "has neither sectors nor erase_size; add erase_size: 4KiB for uniform flash, or sectors: [{count: 4, size: 16KiB}, ...] for non-uniform flash")
	case hasE && v.usable("flash.erase_size"):
		switch {
		case f.EraseSize == 0:
			v.refuse("flash.erase_size", "is 0; write the erase unit of the datasheet, such as 4KiB")
		case !v.usable("flash.size") || f.Size == 0:
			// Without a size there are no sectors to check.
			v.skip("flash.erase_size")
		case f.Size%f.EraseSize != 0:
			v.refuse("flash.erase_size", "%s does not divide flash.size %s (%s left over); use the erase unit of the datasheet, or correct flash.size", formatSize(uint64(f.EraseSize)), formatSize(uint64(f.Size)), formatSize(uint64(f.Size%f.EraseSize)))
		}
	}
}

// bootloader checks that the board says how it boots: a scheme, or a
// bootloader that implies one. Whether the two agree, and whether the name
// and mode are known, are layout rules (hal).
func (v *validator) bootloader() {
	if v.present("scheme") || v.bad["scheme"] {
		return
	}
	b := v.b.Bootloader
	switch {
	case !v.present("bootloader"):
		v.add("", "has neither bootloader nor scheme; name the bootloader the board runs, such as bootloader: {name: mcuboot, mode: swap-move}, or write scheme: single-bank or dual-bank for otaport's own")
	case b.Name == hal.BootloaderOtaport && v.usable("bootloader.name"):
		v.refuse("bootloader", "is otaport's own, which has no scheme of its own; add scheme: single-bank, dual-bank or swap")
	}
}

func (v *validator) image() {
	if !v.usable("image") {
		return
	}
	if v.usable("image.signature") && !slices.Contains(Signatures(), v.b.Image.Signature) {
		v.add("image.signature", "unknown signature %q%s; write one of %s", v.b.Image.Signature, didYouMean(v.b.Image.Signature, Signatures()), strings.Join(Signatures(), ", "))
	}
	// 0 means the default in a layout; written in a file it is a mistake.
	if v.usable("image.boot_attempts") && v.b.Image.BootAttempts == 0 {
		v.refuse("image.boot_attempts", "is 0; a dual-bank bootloader allows 1 to %d unconfirmed boots before it falls back: write 1, 2 or 3 (or leave it out for 1)", hal.MaxBootAttempts)
	}
}

func didYouMean(s string, known []string) string {
	if n := spell.Nearest(s, known); n != "" {
		return fmt.Sprintf(" (did you mean %s?)", n)
	}
	return ""
}

// yamlPath is the field of the board file a layout path comes from.
func (v *validator) yamlPath(p string) string {
	switch {
	case p == "board":
		return "name"
	case p == "boot_attempts":
		return "image.boot_attempts"
	case p == "signature":
		return "image.signature"
	case p == "scheme" && !v.present("scheme") && v.present("bootloader"):
		// The bootloader implied the scheme.
		return "bootloader"
	case strings.HasPrefix(p, "flash.sectors") && v.uniform():
		return "flash.erase_size"
	}
	return p
}

// known tells hal.Layout.Validate which fields hold what the file says.
func (v *validator) known(p string) bool {
	y := v.yamlPath(p)
	if p == "flash.base" && !v.present(y) {
		return true // optional, 0
	}
	return v.usable(y)
}

// layout runs the rules of a valid layout and places each problem on the
// line of its field. A partition's problems are labelled with its name.
func (v *validator) layout() {
	l := v.b.Layout()
	for _, p := range l.ValidateWith(hal.ValidateOptions{Known: v.known, Map: v.b.sectorMap()}) {
		path := v.yamlPath(p.Path)
		field, msg := path, p.Msg
		if i, ok := partIndex(path); ok {
			field = fmt.Sprintf("partitions[%d]", i)
			if n := v.b.Partitions[i].Name; n != "" {
				field = fmt.Sprintf("%s (%s)", field, n)
			}
		}
		if p.Ref != "" {
			msg = strings.Replace(msg, p.Ref, fmt.Sprintf("line %d, %s", v.pos.line(v.yamlPath(p.Ref)), p.Ref), 1)
		}
		switch path {
		case "scheme":
			q := fmt.Sprintf("%q", v.b.Scheme)
			msg = strings.Replace(msg, q, q+didYouMean(v.b.Scheme, Schemes()), 1)
		case "bootloader.name":
			q := fmt.Sprintf("%q", v.b.Bootloader.Name)
			msg = strings.Replace(msg, q, q+didYouMean(v.b.Bootloader.Name, Bootloaders()), 1)
		case "bootloader.mode":
			if v.b.Bootloader.Name != hal.BootloaderMCUboot {
				break
			}
			q := fmt.Sprintf("%q", v.b.Bootloader.Mode)
			msg = strings.Replace(msg, q, q+didYouMean(v.b.Bootloader.Mode, MCUbootModes()), 1)
		}
		v.addAt(v.pos.line(path), field, "%s", msg)
	}
}

// partIndex returns i for a path under partitions[i].
func partIndex(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "partitions[")
	if !ok {
		return 0, false
	}
	n, _, ok := strings.Cut(rest, "]")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}
