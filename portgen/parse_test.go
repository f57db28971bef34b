package portgen

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/hal"
)

// The -update flag rewrites golden files. The generator's tests in this
// package may define it too; whichever file defines it first wins and both
// read it through flag.Lookup.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files and docs/board.schema.json")
	}
}

func updating() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// singleBase is a valid single-bank board with non-uniform sectors; the rule
// cases edit one line of it, so the line numbers below hold.
const singleBase = `name: test-board
vendor: Example
soc: EX1
source: "Example datasheet, 3.1 Flash"
flash:
  base: 0x08000000
  size: 1MiB
  sectors:
    - {count: 4, size: 16KiB}
    - {count: 1, size: 64KiB}
    - {count: 7, size: 128KiB}
  write_align: 4
  erase_value: 0xFF
scheme: single-bank
partitions:
  - {name: bootloader, offset: 0x0, size: 32KiB}
  - {name: params, offset: 0x8000, size: 32KiB}
  - {name: app, offset: 0x20000, size: 384KiB}
  - {name: ota, offset: 0x80000, size: 512KiB}
image:
  signature: ecdsa-p256
`

// dualBase is a valid dual-bank board with uniform 4 KiB sectors.
const dualBase = `name: dual-board
vendor: Example
soc: EX2
source: "Example datasheet, 3.1 Flash"
flash:
  size: 1MiB
  erase_size: 4KiB
  write_align: 8
  erase_value: 0xFF
scheme: dual-bank
partitions:
  - {name: bootloader, offset: 0x0, size: 32KiB}
  - {name: params, offset: 0x8000, size: 8KiB}
  - {name: app, offset: 0x10000, size: 448KiB}
  - {name: ota, offset: 0x80000, size: 448KiB}
image:
  signature: ed25519
  boot_attempts: 2
`

// espBase is dualBase on ESP-IDF's bootloader, with its otadata partition;
// boot_attempts 2 is one problem of it (ESP-IDF allows one trial boot).
func espBase(t *testing.T) string {
	return edit(t, edit(t, dualBase, "scheme: dual-bank", "bootloader: {name: esp-idf}"),
		"  - {name: app,", "  - {name: otadata, offset: 0xa000, size: 8KiB}\n  - {name: app,")
}

// edit replaces the one occurrence of old in base.
func edit(t *testing.T, base, old, new string) string {
	t.Helper()
	if n := strings.Count(base, old); n != 1 {
		t.Fatalf("edit: %q occurs %d times in the base, want once", old, n)
	}
	return strings.Replace(base, old, new, 1)
}

func problems(t *testing.T, err error) Errors {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %v (%T) is not an Errors", err, err)
	}
	return errs
}

func TestParse_BasesAreValid(t *testing.T) {
	for name, src := range map[string]string{"single": singleBase, "dual": dualBase} {
		boards, err := Parse(name+".yaml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(boards) != 1 {
			t.Fatalf("%s: %d boards, want 1", name, len(boards))
		}
	}
	boards, _ := Parse("single.yaml", []byte(singleBase))
	b := boards[0]
	if b.Name != "test-board" || b.Flash.Base != 0x08000000 || b.Flash.Size != 1<<20 || b.Flash.WriteAlign != 4 ||
		b.Flash.EraseValue != 0xFF || len(b.Flash.Sectors) != 3 || b.Flash.Sectors[2] != (SectorRun{Count: 7, Size: 128 << 10}) ||
		len(b.Partitions) != 4 || b.Partitions[3] != (Partition{Name: "ota", Offset: 0x80000, Size: 512 << 10}) ||
		b.Scheme != "single-bank" || b.Image.Signature != "ecdsa-p256" || b.Line != 1 {
		t.Errorf("decoded board %+v differs from the YAML", b)
	}
	l := b.Layout()
	if got := l.Flash.Sectors; len(got) != 3 || got[0] != (hal.SectorRun{Count: 4, Size: 16 << 10}) {
		t.Errorf("layout sectors %+v", got)
	}
	if l.BootAttempts != 1 {
		t.Errorf("layout boot attempts %d, want the default 1", l.BootAttempts)
	}
}

// dualLayoutMismatch has app and ota of one size but different sectors.
const dualLayoutMismatch = `name: mismatch
source: "test"
flash:
  size: 1MiB
  sectors:
    - {count: 4, size: 16KiB}
    - {count: 1, size: 64KiB}
    - {count: 7, size: 128KiB}
  write_align: 1
  erase_value: 0xFF
scheme: dual-bank
partitions:
  - {name: app, offset: 0x0, size: 128KiB}
  - {name: ota, offset: 0x20000, size: 128KiB}
  - {name: bootloader, offset: 0x40000, size: 128KiB}
  - {name: params, offset: 0x60000, size: 256KiB}
image: {signature: ed25519}
`

// TestParse_Rules has one case per rule of the format: each asserts the
// line and a fragment of the message, and how many problems the file has.
func TestParse_Rules(t *testing.T) {
	tests := []struct {
		name  string
		src   func(t *testing.T) string
		line  int
		field string
		msg   string
		n     int // problems in the file; 0 means 1
	}{
		// Decoding.
		{"unknown field with suggestion", func(t *testing.T) string { return edit(t, singleBase, "vendor: Example", "vendr: Example") },
			2, "vendr", "unknown field; did you mean vendor?", 0},
		{"unknown nested field with suggestion", func(t *testing.T) string { return edit(t, singleBase, "  write_align: 4", "  write_algin: 4") },
			12, "flash.write_algin", "did you mean write_align?", 0},
		{"unknown field without suggestion", func(t *testing.T) string { return edit(t, singleBase, "vendor: Example", "colour: blue") },
			2, "colour", "known fields here: name, vendor, soc, source, flash, scheme, bootloader, partitions, image", 0},
		{"unknown partition field", func(t *testing.T) string {
			return edit(t, singleBase, "{name: app, offset: 0x20000, size: 384KiB}", "{name: app, offset: 0x20000, size: 384KiB, flags: ro}")
		}, 18, "partitions[2].flags", "unknown field; known fields here: name, offset, size", 0},
		{"field set twice", func(t *testing.T) string {
			return edit(t, singleBase, "  size: 1MiB\n", "  size: 1MiB\n  size: 2MiB\n")
		},
			8, "flash.size", "set twice (first at line 7)", 0},
		{"missing required field", func(t *testing.T) string { return edit(t, singleBase, "  erase_value: 0xFF\n", "") },
			5, "flash.erase_value", "missing; write erase_value: 0xFF", 0},
		{"missing source", func(t *testing.T) string {
			return edit(t, singleBase, "source: \"Example datasheet, 3.1 Flash\"\n", "")
		},
			1, "source", "missing; say where the geometry comes from", 0},
		{"missing partition offset", func(t *testing.T) string {
			return edit(t, singleBase, "{name: app, offset: 0x20000, size: 384KiB}", "{name: app, size: 384KiB}")
		}, 18, "partitions[2].offset", "missing", 0},
		{"flash not a mapping", func(t *testing.T) string {
			return "name: x-board\nsource: s\nflash: 1MiB\nscheme: single-bank\npartitions: []\nimage: {signature: ed25519}\n"
		}, 3, "flash", "is a single value (\"1MiB\"); write a mapping (base, size, sectors, erase_size, write_align, erase_value)", 2},
		{"partitions not a list", func(t *testing.T) string {
			return edit(t, dualBase, "partitions:\n  - {name: bootloader, offset: 0x0, size: 32KiB}\n  - {name: params, offset: 0x8000, size: 8KiB}\n  - {name: app, offset: 0x10000, size: 448KiB}\n  - {name: ota, offset: 0x80000, size: 448KiB}\n", "partitions: bootloader\n")
		}, 11, "partitions", `is a single value ("bootloader"); write a list`, 0},
		{"alias refused", func(t *testing.T) string {
			return edit(t, singleBase, "  size: 1MiB\n", "  size: &s 1MiB\n")
		}, 7, "flash.size", "anchors (&s) are not supported", 0},

		// Sizes.
		{"size not a number", func(t *testing.T) string { return edit(t, singleBase, "size: 1MiB", "size: lots") },
			7, "flash.size", `size "lots" is not a byte count`, 0},
		{"negative size", func(t *testing.T) string {
			return edit(t, singleBase, "offset: 0x8000, size: 32KiB", "offset: 0x8000, size: -32KiB")
		},
			17, "partitions[1].size", "negative size", 0},
		{"size overflow", func(t *testing.T) string { return edit(t, singleBase, "size: 1MiB", "size: 0x8000000000000000") },
			7, "flash.size", "too large", 0},
		{"decimal unit", func(t *testing.T) string { return edit(t, singleBase, "size: 1MiB", "size: 1MB") },
			7, "flash.size", "write MiB", 0},
		{"fraction that is not whole bytes", func(t *testing.T) string {
			return edit(t, singleBase, "{count: 4, size: 16KiB}", "{count: 4, size: 16.0001KiB}")
		}, 9, "flash.sectors[0].size", "not a whole number of bytes", 0},
		{"size is a list", func(t *testing.T) string { return edit(t, singleBase, "size: 1MiB", "size: [1MiB]") },
			7, "flash.size", "is a list; write a size such as 4096", 0},

		// Geometry.
		{"sectors do not add up", func(t *testing.T) string {
			return edit(t, singleBase, "{count: 7, size: 128KiB}", "{count: 6, size: 128KiB}")
		},
			8, "flash.sectors", "add up to 896KiB (0xe0000) but flash.size is 1MiB (0x100000)", 0},
		{"fractional flash size is read exactly", func(t *testing.T) string { return edit(t, singleBase, "size: 1MiB", "size: 1.5MiB") },
			8, "flash.sectors", "but flash.size is 1536KiB (0x180000)", 0},
		{"sector count 0", func(t *testing.T) string {
			return edit(t, singleBase, "{count: 1, size: 64KiB}", "{count: 0, size: 64KiB}")
		},
			10, "flash.sectors[1].count", "is 0; a run has at least 1 sector", 0},
		{"sector count not a number", func(t *testing.T) string {
			return edit(t, singleBase, "{count: 1, size: 64KiB}", "{count: one, size: 64KiB}")
		},
			10, "flash.sectors[1].count", `"one" is not a whole number`, 0},
		{"sector size 0", func(t *testing.T) string {
			return edit(t, singleBase, "{count: 1, size: 64KiB}", "{count: 1, size: 0}")
		},
			10, "flash.sectors[1].size", "is 0", 0},
		{"sectors overflow", func(t *testing.T) string {
			return edit(t, singleBase, "{count: 1, size: 64KiB}", "{count: 2000000000, size: 0x7fffffffffffffff}")
		}, 10, "flash.sectors[1]", "more than 2^63 bytes", 0},
		{"sectors and erase_size", func(t *testing.T) string {
			return edit(t, singleBase, "  write_align: 4", "  erase_size: 4KiB\n  write_align: 4")
		},
			12, "flash.erase_size", "set together with sectors", 0},
		{"neither sectors nor erase_size", func(t *testing.T) string {
			return edit(t, singleBase, "  sectors:\n    - {count: 4, size: 16KiB}\n    - {count: 1, size: 64KiB}\n    - {count: 7, size: 128KiB}\n", "")
		}, 5, "flash", "has neither sectors nor erase_size", 0},
		{"empty sectors", func(t *testing.T) string {
			return edit(t, singleBase, "  sectors:\n    - {count: 4, size: 16KiB}\n    - {count: 1, size: 64KiB}\n    - {count: 7, size: 128KiB}\n", "  sectors: []\n")
		}, 8, "flash.sectors", "is empty", 0},
		{"erase_size does not divide size", func(t *testing.T) string { return edit(t, dualBase, "erase_size: 4KiB", "erase_size: 3KiB") },
			7, "flash.erase_size", "3KiB does not divide flash.size 1MiB (1KiB left over)", 0},
		{"flash size 0", func(t *testing.T) string { return edit(t, dualBase, "size: 1MiB", "size: 0") },
			6, "flash.size", "is 0", 0},
		{"write_align not a power of two", func(t *testing.T) string { return edit(t, singleBase, "write_align: 4", "write_align: 6") },
			12, "flash.write_align", "6 is not a power of two", 0},
		{"write_align 0", func(t *testing.T) string { return edit(t, singleBase, "write_align: 4", "write_align: 0") },
			12, "flash.write_align", "is 0", 0},
		{"write_align larger than a sector", func(t *testing.T) string { return edit(t, dualBase, "write_align: 8", "write_align: 8KiB") },
			8, "flash.write_align", "8KiB is larger than the smallest erase sector (4KiB)", 0},
		{"sector not a multiple of write_align", func(t *testing.T) string {
			src := edit(t, dualBase, "erase_size: 4KiB", "erase_size: 0x1800")
			src = edit(t, src, "write_align: 8", "write_align: 4KiB")
			return edit(t, src, "size: 1MiB", "size: 0x180000")
		}, 7, "flash.erase_size", "6KiB is not a multiple of write_align 4096", 5},
		{"erase_value", func(t *testing.T) string { return edit(t, singleBase, "erase_value: 0xFF", "erase_value: 0x7F") },
			13, "flash.erase_value", "is 0x7f; an erased byte reads 0xFF on most NOR flash and 0x00 on a few", 0},

		// Partitions.
		{"overlap", func(t *testing.T) string {
			return edit(t, dualBase, "offset: 0x80000, size: 448KiB", "offset: 0x7f000, size: 448KiB")
		},
			15, "partitions[3] (ota)", "overlaps app (0x10000..0x80000) at 0x7f000; move ota to 0x80000 or shrink app", 0},
		{"start off a sector boundary", func(t *testing.T) string {
			return edit(t, singleBase, "offset: 0x8000, size: 32KiB", "offset: 0x9000, size: 28KiB")
		},
			17, "partitions[1] (params)", "starts at 0x9000, not on an erase-sector boundary (nearest 0x8000 below, 0xc000 above)", 0},
		{"end off a sector boundary", func(t *testing.T) string { return edit(t, singleBase, "size: 384KiB", "size: 380KiB") },
			18, "partitions[2] (app)", "ends at 0x7f000, not on an erase-sector boundary (nearest 0x60000 below, 0x80000 above); make its size 0x40000 or 0x60000", 0},
		{"partition ends past the flash", func(t *testing.T) string {
			return edit(t, singleBase, "offset: 0x80000, size: 512KiB", "offset: 0x80000, size: 1MiB")
		},
			19, "partitions[3] (ota)", "ends at 0x180000, past the end of the flash (0x100000); shrink it to 512KiB", 0},
		{"partition starts past the flash", func(t *testing.T) string {
			return edit(t, singleBase, "offset: 0x80000, size: 512KiB", "offset: 0x100000, size: 512KiB")
		}, 19, "partitions[3] (ota)", "starts at 0x100000, past the end of the flash", 0},
		{"partition size 0", func(t *testing.T) string {
			return edit(t, singleBase, "offset: 0x0, size: 32KiB", "offset: 0x0, size: 0")
		},
			16, "partitions[0] (bootloader)", "size is 0", 0},
		{"duplicate partition name", func(t *testing.T) string { return edit(t, singleBase, "name: ota", "name: app") },
			19, "partitions[3] (app)", "duplicate partition name (first at line 18, partitions[2])", 2},
		{"bad partition name", func(t *testing.T) string { return edit(t, singleBase, "name: bootloader", "name: Boot Loader") },
			16, "partitions[0] (Boot Loader)", "use lower-case letters, digits, '-' and '_'", 0},
		{"missing bootloader", func(t *testing.T) string {
			return edit(t, singleBase, "  - {name: bootloader, offset: 0x0, size: 32KiB}\n", "")
		},
			15, "partitions", "has no bootloader partition", 0},
		{"missing ota", func(t *testing.T) string {
			return edit(t, singleBase, "  - {name: ota, offset: 0x80000, size: 512KiB}\n", "")
		},
			15, "partitions", "has no ota partition", 0},
		{"no partitions", func(t *testing.T) string {
			return edit(t, dualBase, "partitions:\n  - {name: bootloader, offset: 0x0, size: 32KiB}\n  - {name: params, offset: 0x8000, size: 8KiB}\n  - {name: app, offset: 0x10000, size: 448KiB}\n  - {name: ota, offset: 0x80000, size: 448KiB}\n", "partitions: []\n")
		}, 11, "partitions", "is empty", 0},
		{"params of one sector", func(t *testing.T) string {
			return edit(t, dualBase, "offset: 0x8000, size: 8KiB", "offset: 0x8000, size: 4KiB")
		},
			13, "partitions[1] (params)", "spans 1 erase sector (0x8000..0x9000); it needs at least 2 so that the boot record survives a power cut during an erase: make its size 8KiB", 0},
		{"dual-bank slots of different sizes", func(t *testing.T) string {
			return edit(t, dualBase, "offset: 0x80000, size: 448KiB", "offset: 0x80000, size: 444KiB")
		},
			15, "partitions[3] (ota)", "is 444KiB but app is 448KiB; in dual-bank they are the two slots of one image and must be the same size", 0},
		{"dual-bank slots of different sector layouts", func(t *testing.T) string { return dualLayoutMismatch },
			14, "partitions[1] (ota)", "has sectors 1x128KiB but app has 4x16KiB + 1x64KiB", 0},
		{"single-bank ota smaller than app", func(t *testing.T) string {
			return edit(t, singleBase, "offset: 0x80000, size: 512KiB", "offset: 0x80000, size: 256KiB")
		},
			19, "partitions[3] (ota)", "is 256KiB, smaller than app (384KiB)", 0},

		// Scheme and image.
		{"unknown scheme", func(t *testing.T) string { return edit(t, singleBase, "scheme: single-bank", "scheme: single_bank") },
			14, "scheme", `unknown scheme "single_bank" (did you mean single-bank?)`, 0},
		{"neither scheme nor bootloader", func(t *testing.T) string { return edit(t, singleBase, "scheme: single-bank\n", "") },
			1, "", "has neither bootloader nor scheme; name the bootloader", 0},
		{"unknown bootloader", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "bootloader: {name: mcuboat, mode: overwrite-only}")
		},
			14, "bootloader.name", `unknown bootloader "mcuboat" (did you mean mcuboot?)`, 0},
		{"unknown MCUboot mode", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "bootloader: {name: mcuboot, mode: swap-mov}")
		},
			14, "bootloader.mode", `unknown MCUboot mode "swap-mov" (did you mean swap-move?)`, 0},
		{"MCUboot without a mode", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "bootloader: {name: mcuboot}")
		},
			14, "bootloader.mode", `unknown MCUboot mode ""; write overwrite-only`, 0},
		{"esp-idf with a mode", func(t *testing.T) string {
			return edit(t, espBase(t), "bootloader: {name: esp-idf}", "bootloader: {name: esp-idf, mode: swap-move}")
		},
			10, "bootloader.mode", `is "swap-move", but ESP-IDF's bootloader has no modes`, 0},
		{"scheme the bootloader does not boot", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "scheme: single-bank\nbootloader: {name: mcuboot, mode: direct-xip}")
		},
			14, "scheme", "is single-bank, but mcuboot direct-xip boots as dual-bank", 0},
		{"otaport's bootloader without a scheme", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "bootloader: {name: otaport}")
		},
			14, "bootloader", "is otaport's own, which has no scheme of its own; add scheme", 0},
		{"otaport's bootloader with a mode", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "scheme: single-bank\nbootloader: {name: otaport, mode: swap-move}")
		},
			15, "bootloader.mode", "but otaport's own bootloader has no modes", 0},
		{"bootloader without a name", func(t *testing.T) string {
			return edit(t, singleBase, "scheme: single-bank", "bootloader: {mode: swap-move}")
		},
			14, "bootloader.name", "missing; write name: mcuboot, esp-idf or otaport", 0},
		{"boot_attempts beyond a real bootloader's one trial", func(t *testing.T) string {
			return espBase(t)
		},
			19, "image.boot_attempts", "is 2, but esp-idf boots a new image once", 0},
		{"esp-idf without otadata", func(t *testing.T) string {
			return edit(t, espBase(t), "  - {name: otadata, offset: 0xa000, size: 8KiB}\n", "")
		},
			11, "partitions", "has no otadata partition, where ESP-IDF's bootloader reads which slot to boot; add {name: otadata, offset: 0xd000, size: 8KiB}", 2},
		{"esp-idf otadata of one sector", func(t *testing.T) string {
			return edit(t, espBase(t), "{name: otadata, offset: 0xa000, size: 8KiB}", "{name: otadata, offset: 0xa000, size: 4KiB}")
		},
			14, "partitions[2] (otadata)", "is 4KiB; ESP-IDF's otadata is two 4 KiB sectors, one entry at the start of each: make it 8KiB", 2},
		{"esp-idf otadata of three sectors", func(t *testing.T) string {
			return edit(t, espBase(t), "{name: otadata, offset: 0xa000, size: 8KiB}", "{name: otadata, offset: 0xa000, size: 12KiB}")
		},
			14, "partitions[2] (otadata)", "is 12KiB; ESP-IDF's otadata is two 4 KiB sectors", 2},
		{"esp-idf otadata in a sector of 8 KiB", func(t *testing.T) string {
			return edit(t, edit(t, espBase(t), "erase_size: 4KiB", "erase_size: 8KiB"), "{name: params, offset: 0x8000, size: 8KiB}", "{name: params, offset: 0xc000, size: 16KiB}")
		},
			14, "partitions[2] (otadata)", "lies in sectors 1x8KiB; ESP-IDF erases and writes each otadata entry as one 4 KiB sector", 2},
		{"esp-idf with a factory partition", func(t *testing.T) string {
			return edit(t, espBase(t), "  - {name: app,", "  - {name: factory, offset: 0xc000, size: 16KiB}\n  - {name: app,")
		},
			15, "partitions[3] (factory)", "is ESP-IDF's factory app partition, but otaport installs into ota_0 (app) and ota_1 (ota) only", 2},
		{"unknown signature", func(t *testing.T) string {
			return edit(t, singleBase, "signature: ecdsa-p256", "signature: ecdsa-p384")
		},
			21, "image.signature", `unknown signature "ecdsa-p384" (did you mean ecdsa-p256?)`, 0},
		{"boot_attempts too many", func(t *testing.T) string { return edit(t, dualBase, "boot_attempts: 2", "boot_attempts: 4") },
			18, "image.boot_attempts", "is 4; a dual-bank bootloader allows 1 to 3", 0},
		{"boot_attempts zero", func(t *testing.T) string { return edit(t, dualBase, "boot_attempts: 2", "boot_attempts: 0") },
			18, "image.boot_attempts", "is 0", 0},
		{"boot_attempts not a number", func(t *testing.T) string { return edit(t, dualBase, "boot_attempts: 2", "boot_attempts: two") },
			18, "image.boot_attempts", `"two" is not a whole number`, 0},
		{"boot_attempts on single-bank", func(t *testing.T) string {
			return edit(t, singleBase, "  signature: ecdsa-p256\n", "  signature: ecdsa-p256\n  boot_attempts: 2\n")
		}, 22, "image.boot_attempts", "is 2 on a single-bank board, which cannot fall back", 0},

		// Names.
		{"bad board name", func(t *testing.T) string { return edit(t, singleBase, "name: test-board", "name: Test_Board") },
			1, "name", `"Test_Board": use lower-case letters, digits and single '-', starting with a letter (it becomes ports/<name>/ and otaport-<name>); for example "test-board"`, 0},
		{"board name starting with a digit", func(t *testing.T) string { return edit(t, singleBase, "name: test-board", "name: 8266-board") },
			1, "name", `for example "board-8266-board"`, 0},
		{"reserved board name", func(t *testing.T) string { return edit(t, singleBase, "name: test-board", "name: all") },
			1, "name", `"all" is reserved`, 0},
		{"board name that is a Go keyword once '-' is removed", func(t *testing.T) string { return edit(t, singleBase, "name: test-board", "name: fu-nc") },
			1, "name", `"fu-nc" is reserved`, 0},
		{"board name too long", func(t *testing.T) string {
			return edit(t, singleBase, "name: test-board", "name: "+strings.Repeat("a", 41))
		}, 1, "name", "is 41 characters; keep it to 40", 0},

		// Files.
		{"empty file", func(t *testing.T) string { return "" }, 0, "", "file is empty", 0},
		{"comments only", func(t *testing.T) string { return "# nothing yet\n" }, 0, "", "file is empty", 0},
		{"not a mapping", func(t *testing.T) string { return "- a\n- b\n" }, 1, "", "the file holds a list; a board file is a mapping", 0},
		{"YAML syntax error", func(t *testing.T) string { return edit(t, singleBase, "soc: EX1", "soc: [EX1") },
			2, "", "YAML syntax near this line: did not find expected ',' or ']'", 0},
		{"second document", func(t *testing.T) string { return singleBase + "---\nname: other\n" }, 22, "", "a second YAML document", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			boards, err := Parse("board.yaml", []byte(tt.src(t)))
			if err == nil {
				t.Fatalf("no error; want line %d %q", tt.line, tt.msg)
			}
			if boards != nil {
				t.Errorf("got %d boards with an error; want none", len(boards))
			}
			errs := problems(t, err)
			want := max(tt.n, 1)
			if len(errs) != want {
				t.Errorf("%d problems, want %d:\n%v", len(errs), want, err)
			}
			for _, p := range errs {
				if p.Line == tt.line && p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					if p.File != "board.yaml" {
						t.Errorf("problem names file %q, want board.yaml", p.File)
					}
					if !strings.Contains(p.Msg, ";") {
						t.Errorf("message %q has no fix after ';'", p.Msg)
					}
					return
				}
			}
			t.Errorf("no problem at line %d, field %q containing %q; got:\n%v", tt.line, tt.field, tt.msg, err)
		})
	}
}

// The overlap message has the shape the format documentation shows.
func TestParse_OverlapMessageExample(t *testing.T) {
	src := edit(t, edit(t, dualBase, "{name: app, offset: 0x10000, size: 448KiB}", "{name: app, offset: 0x20000, size: 384KiB}"),
		"{name: ota, offset: 0x80000, size: 448KiB}", "{name: ota, offset: 0x7f000, size: 384KiB}")
	_, err := Parse("boards.yaml", []byte(src))
	want := "boards.yaml:15: partitions[3] (ota): overlaps app (0x20000..0x80000) at 0x7f000; move ota to 0x80000 or shrink app to 380KiB"
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
}

func TestParse_AllProblemsInOnePass(t *testing.T) {
	src := singleBase
	src = edit(t, src, "name: test-board", "name: Test")
	src = edit(t, src, "size: 1MiB", "size: 1MB")
	src = edit(t, src, "write_align: 4", "write_align: 3")
	src = edit(t, src, "scheme: single-bank", "scheme: triple-bank")
	src = edit(t, src, "signature: ecdsa-p256", "signature: md5")
	src = edit(t, src, "offset: 0x8000, size: 32KiB", "offset: 0x8000, size: 16KiB")
	_, err := Parse("b.yaml", []byte(src))
	errs := problems(t, err)
	wantLines := []int{1, 7, 12, 14, 17, 21}
	if len(errs) != len(wantLines) {
		t.Fatalf("%d problems, want %d:\n%v", len(errs), len(wantLines), err)
	}
	for i, p := range errs {
		if p.Line != wantLines[i] {
			t.Errorf("problem %d at line %d, want %d: %v", i, p.Line, wantLines[i], p)
		}
	}
	// The bad flash size leaves the sector sum unchecked but not the rest:
	// the one-sector params (16 KiB) is still reported.
	if !strings.Contains(errs[4].Msg, "spans 1 erase sector") {
		t.Errorf("params problem %q", errs[4].Msg)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(wantLines) || !strings.HasPrefix(lines[0], "b.yaml:1: name: ") {
		t.Errorf("Error() = %q, want one b.yaml:line: field: message per problem", err.Error())
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if i == 0 {
			lines[i] = "  - " + l
		} else {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

func catalogOf(boards ...string) string {
	var b strings.Builder
	b.WriteString("boards:\n")
	for _, s := range boards {
		b.WriteString(indent(s, "    "))
	}
	return b.String()
}

func TestParse_Catalog(t *testing.T) {
	boards, err := Parse("c.yaml", []byte(catalogOf(singleBase, dualBase)))
	if err != nil {
		t.Fatal(err)
	}
	if len(boards) != 2 || boards[0].Name != "test-board" || boards[1].Name != "dual-board" {
		t.Fatalf("boards %v", boards)
	}
	if boards[0].Line != 2 || boards[1].Line != 23 {
		t.Errorf("board lines %d, %d; want 2, 23", boards[0].Line, boards[1].Line)
	}

	tests := []struct {
		name, src string
		line      int
		field     string
		msg       string
	}{
		{"duplicate names", catalogOf(singleBase, singleBase), 23, "name", `duplicate board name "test-board" (first at line 2)`},
		{"same Go package", catalogOf(singleBase, strings.Replace(singleBase, "name: test-board", "name: testboard", 1)), 23, "name",
			`board name "testboard" gives Go package "testboard", as "test-board" does (line 2)`},
		{"empty catalog", "boards: []\n", 1, "boards", "the catalog is empty"},
		{"entry not a mapping", "boards:\n  - stm32\n", 2, "boards[0]", "each entry of boards is a board mapping"},
		{"boards not a list", "boards: stm32\n", 1, "boards", "write a list of boards"},
		{"other top-level field", "vendor: x\n" + catalogOf(singleBase), 1, "vendor", "a catalog holds only boards:"},
		{"one bad board spoils the file", catalogOf(singleBase, strings.Replace(dualBase, "erase_value: 0xFF", "erase_value: 0x01", 1)), 31, "flash.erase_value", "is 0x1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			boards, err := Parse("c.yaml", []byte(tt.src))
			if err == nil || boards != nil {
				t.Fatalf("got %d boards, error %v; want no boards and an error", len(boards), err)
			}
			for _, p := range problems(t, err) {
				if p.Line == tt.line && p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Errorf("no problem at line %d %q %q; got:\n%v", tt.line, tt.field, tt.msg, err)
		})
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(path, []byte(edit(t, singleBase, "erase_value: 0xFF", "erase_value: 0x00")), 0o644); err != nil {
		t.Fatal(err)
	}
	boards, err := ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(boards) != 1 || boards[0].Flash.EraseValue != 0 || boards[0].Layout().Flash.EraseValue != 0 {
		t.Errorf("boards %+v, want one erasing to 0x00", boards)
	}
	_, err = ParseFile(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want an error wrapping os.ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(edit(t, singleBase, "scheme: single-bank", "scheme: ab")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseFile(bad)
	if err == nil || !strings.HasPrefix(err.Error(), filepath.ToSlash(bad)+":14: scheme: ") {
		t.Errorf("error %v, want it to start with the path and line", err)
	}
}

func TestBoard_Validate(t *testing.T) {
	b := &Board{
		Name: "code-board", Source: "test",
		Flash: Flash{Size: 64 << 10, EraseSize: 1 << 10, WriteAlign: 4, EraseValue: 0xFF},
		// Partitions out of order on purpose: order is not a rule.
		Scheme: "dual-bank",
		Partitions: []Partition{
			{Name: "app", Offset: 0x4000, Size: 0x6000},
			{Name: "ota", Offset: 0xA000, Size: 0x6000},
			{Name: "bootloader", Offset: 0, Size: 0x2000},
			{Name: "params", Offset: 0x2000, Size: 0x2000},
		},
		Image: Image{Signature: SigEd25519},
	}
	if err := b.Validate(); err != nil {
		t.Fatalf("valid board: %v", err)
	}
	b.Partitions[0].Offset = 0x4100
	b.Flash.EraseValue = 0x10
	err := b.Validate()
	errs := problems(t, err)
	if len(errs) != 3 {
		t.Fatalf("%d problems, want 3 (erase_value, start off boundary, overlap):\n%v", len(errs), err)
	}
	if errs[0].Line != 0 || !strings.HasPrefix(err.Error(), "flash.erase_value: is 0x10") {
		t.Errorf("Error() = %q, want problems without file or line", err)
	}
}

func TestErrors_Format(t *testing.T) {
	errs := Errors{
		{File: "b.yaml", Line: 3, Field: "flash.size", Msg: "is 0; write it"},
		{File: "b.yaml", Field: "", Msg: "file is empty; write one"},
		{Line: 7, Field: "name", Msg: "bad; fix"},
	}
	want := "b.yaml:3: flash.size: is 0; write it\nb.yaml: file is empty; write one\nline 7: name: bad; fix"
	if got := errs.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	var p Problem
	if !errors.As(error(errs), &p) || p.Line != 3 {
		t.Errorf("errors.As(Errors, *Problem) = %+v, want the first problem", p)
	}
}

// TestParse_Golden checks the whole error output for the files under
// testdata/errors (go test -run Golden -update rewrites the .golden files).
func TestParse_Golden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "errors", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/errors/*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, perr := Parse(filepath.Base(f), data)
			if perr == nil {
				t.Fatal("file parses; an errors case must fail")
			}
			got := perr.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if updating() {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("error output differs from %s (run with -update if intended):\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func ExampleParse() {
	_, err := Parse("boards.yaml", []byte(`name: demo
source: "demo"
flash: {size: 64KiB, erase_size: 4KiB, write_align: 4, erase_value: 0xFF}
scheme: single-bank
partitions:
  - {name: bootloader, offset: 0x0, size: 16KiB}
  - {name: params, offset: 0x4000, size: 4KiB}
  - {name: app, offset: 0x6000, size: 20KiB}
  - {name: ota, offset: 0xa000, size: 24KiB}
image: {signature: ed25519}
`))
	fmt.Println(err)
	// Output:
	// boards.yaml:7: partitions[1] (params): spans 1 erase sector (0x4000..0x5000); it needs at least 2 so that the boot record survives a power cut during an erase: make its size 8KiB
	// boards.yaml:9: partitions[3] (ota): overlaps app (0x6000..0xb000) at 0xa000; move ota to 0xb000 or shrink app to 16KiB
}
