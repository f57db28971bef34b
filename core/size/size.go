// Package size reads and writes byte counts the way otaport's users write
// them, in board files and on command lines alike: 4096, 0x1000, 4KiB,
// 1.5MiB. It is the one parser of sizes, so that a value a board file takes
// is a value every flag takes. It is not for counts that are not bytes, nor
// for addresses.
package size

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// Max is the largest byte count accepted. Offsets reach the flash emulator
// as int64 (io.ReaderAt), so anything past that cannot be addressed; no real
// part comes near it.
const Max = math.MaxInt64

// Binary unit suffixes accepted in sizes. Decimal units (KB, MB) are refused
// on purpose: datasheets mix 1000 and 1024, and a flash geometry off by 2.4 %
// puts every partition off its sector boundaries.
var sizeUnits = []struct {
	suffix string
	shift  uint
}{
	{"KiB", 10},
	{"MiB", 20},
	{"GiB", 30},
	{"TiB", 40},
}

// errSize is the reason a size was refused; the message is written for users.
type errSize struct{ msg string }

func (e *errSize) Error() string { return e.msg }

// Pattern is a regular expression that matches the text forms Parse
// accepts, for schemas. (That a fraction gives a whole number of bytes is
// checked by the parser, not the pattern.)
const Pattern = `^\s*(0|[1-9][0-9]*|0[xX][0-9a-fA-F]+|(0|[1-9][0-9]*)(\.[0-9]+)?\s*[KMGT]iB)\s*$`

// Parse parses a byte count: decimal (4096), hexadecimal (0x1000), or a
// number with a binary unit (4KiB, 1MiB, 2GiB, 1TiB, also with a space:
// 4 KiB). A fraction is accepted with a unit when it
// comes out as a whole number of bytes (1.5MiB = 1572864, 0.5KiB = 512), so
// that sizes can be copied from datasheets that write them that way.
// Negative numbers, decimal units (KB), octal-looking numbers (010), numbers
// past Max and anything else are refused with a message that says what to
// write instead.
func Parse(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, &errSize{"empty size; write a byte count such as 4096, 0x1000, 4KiB or 1MiB"}
	}
	if strings.HasPrefix(t, "-") {
		return 0, &errSize{fmt.Sprintf("negative size %q; sizes and offsets count bytes from 0", s)}
	}
	if strings.HasPrefix(t, "+") {
		return 0, &errSize{fmt.Sprintf("size %q has a sign; write the number alone", s)}
	}
	if strings.HasPrefix(t, "0x") || strings.HasPrefix(t, "0X") {
		return parseHex(s, t[2:])
	}
	num, shift := t, uint(0)
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			num, shift = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.shift
			break
		}
	}
	if shift == 0 {
		if i := strings.IndexFunc(t, func(r rune) bool { return r != '.' && (r < '0' || r > '9') }); i >= 0 {
			return 0, unitError(s, strings.TrimSpace(t[i:]))
		}
	}
	intPart, frac, hasFrac := strings.Cut(num, ".")
	if intPart == "" || !allDigits(intPart) || (hasFrac && (frac == "" || !allDigits(frac))) {
		return 0, &errSize{fmt.Sprintf("size %q is not a number; write 4096, 0x1000, 4KiB or 1MiB", s)}
	}
	if len(intPart) > 1 && intPart[0] == '0' {
		return 0, &errSize{fmt.Sprintf("size %q has a leading zero, which reads as octal in some tools; write %s or 0x%s", s, strings.TrimLeft(intPart, "0"), intPart)}
	}
	if hasFrac && shift == 0 {
		return 0, &errSize{fmt.Sprintf("size %q is not a whole number of bytes; write an integer", s)}
	}
	v, err := decimal(s, intPart)
	if err != nil {
		return 0, err
	}
	hi, lo := bits.Mul64(v, 1<<shift)
	if hi != 0 || lo > Max {
		return 0, tooLarge(s)
	}
	v = lo
	if hasFrac {
		// frac/10^len(frac) * 2^shift must be a whole number: only as many
		// decimal digits as the unit's power of two can carry are meaningful.
		frac = strings.TrimRight(frac, "0")
		if len(frac) > 18 {
			return 0, &errSize{fmt.Sprintf("size %q is not a whole number of bytes; write the exact byte count", s)}
		}
		f, _ := decimal(s, "0"+frac)
		den := uint64(1)
		for range frac {
			den *= 10
		}
		hi, lo := bits.Mul64(f, 1<<shift)
		if hi >= den { // cannot happen with f < den, kept as a guard for Div64
			return 0, tooLarge(s)
		}
		q, r := bits.Div64(hi, lo, den)
		if r != 0 {
			return 0, &errSize{fmt.Sprintf("size %q is not a whole number of bytes; write the exact byte count", s)}
		}
		if v+q > Max {
			return 0, tooLarge(s)
		}
		v += q
	}
	return v, nil
}

func parseHex(s, digits string) (uint64, error) {
	if digits == "" {
		return 0, &errSize{fmt.Sprintf("size %q has no hex digits after 0x", s)}
	}
	var v uint64
	for _, c := range digits {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		default:
			return 0, &errSize{fmt.Sprintf("size %q is not a hex number; a hex size is 0x followed by 0-9 and a-f only (no unit)", s)}
		}
		if v > (Max-d)/16 {
			return 0, tooLarge(s)
		}
		v = v*16 + d
	}
	return v, nil
}

func decimal(s, digits string) (uint64, error) {
	var v uint64
	for _, c := range digits {
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, tooLarge(s)
		}
		v = v*10 + d
	}
	return v, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func tooLarge(s string) error {
	return &errSize{fmt.Sprintf("size %q is too large (the limit is 2^63-1 bytes); write the real size", s)}
}

func unitError(s, unit string) error {
	switch strings.ToLower(unit) {
	case "k", "kb":
		return &errSize{fmt.Sprintf("size %q uses %q, which may mean 1000 or 1024; write KiB (1024 bytes)", s, unit)}
	case "m", "mb":
		return &errSize{fmt.Sprintf("size %q uses %q, which may mean 10^6 or 2^20; write MiB (1048576 bytes)", s, unit)}
	case "g", "gb":
		return &errSize{fmt.Sprintf("size %q uses %q, which may mean 10^9 or 2^30; write GiB", s, unit)}
	case "t", "tb":
		return &errSize{fmt.Sprintf("size %q uses %q, which may mean 10^12 or 2^40; write TiB", s, unit)}
	case "kib", "mib", "gib", "tib":
		return &errSize{fmt.Sprintf("size %q: write the unit as KiB, MiB, GiB or TiB (that case exactly)", s)}
	}
	return &errSize{fmt.Sprintf("size %q is not a byte count; write 4096, 0x1000, 4KiB or 1MiB", s)}
}

// Format writes a byte count the way a user would, in a form Parse reads
// back: with the largest binary unit that divides it, else in decimal below
// 1 KiB and in hex above.
func Format(v uint64) string {
	for i := len(sizeUnits) - 1; i >= 0; i-- {
		u := sizeUnits[i]
		if v != 0 && v%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", v>>u.shift, u.suffix)
		}
	}
	if v < 1024 {
		return fmt.Sprintf("%d", v)
	}
	return fmt.Sprintf("0x%x", v)
}
