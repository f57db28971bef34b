package portgen

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"strings"
	"text/template"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/templates"
)

// byteCount writes n with the largest binary unit that divides it
// ("16KiB"), else in bytes; sep goes between number and unit.
func byteCount(n uint64, sep string) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d%sGiB", n>>30, sep)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d%sMiB", n>>20, sep)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d%sKiB", n>>10, sep)
	}
	if n == 1 {
		return "1" + sep + "byte"
	}
	return fmt.Sprintf("%d%sbytes", n, sep)
}

// portData is what the templates are filled with: every number already
// formatted, so the templates hold no arithmetic.
type portData struct {
	Name, Package, Vendor, SoC, Source string
	Summary                            string // vendor, SoC and scheme, for doc comments
	Scheme, Signature                  string
	Boot                               string // the scheme, after the bootloader when it is not otaport's
	DualBank                           bool
	ESPIDF                             bool // ESP-IDF's bootloader: otadata holds the boot request
	BootAttempts                       int
	// MCUboot's build, for the C port: the mode's macro (OTA_MCUBOOT_NONE
	// when the bootloader is not MCUboot), BOOT_MAX_ALIGN and
	// BOOT_MAX_IMG_SECTORS.
	MCUbootMode                  string
	MCUbootMaxAlign, MaxImgSects uint64

	// Where the port lives: its import path, its directory as a go
	// command sees it, and, for a port module, the module.
	ImportPath, PkgDir, CPortDir, DocsLink string
	Module, GoVersion, OtaportVersion      string
	Replace                                string

	FlashBase, FlashSizeHuman string
	FlashBaseC, FlashSizeC    string
	SectorsHuman              string
	SectorRuns                []sectorData
	WriteAlign                uint32
	WriteAlignHuman           string
	EraseValue                string
	SourceC                   string // Source, safe in a C comment

	// The same numbers as Go literals.
	SchemeGo, FlashBaseGo, FlashSizeGo, EraseValueGo string
	BootloaderGo                                     string // a hal.Bootloader literal, or empty
	SectorRunsGo                                     []sectorData

	Partitions []partData

	Guard    string // C include guard
	AddrType string // C type wide enough for every address
}

type sectorData struct {
	Count int
	Size  string // literal
}

type partData struct {
	Name, Macro             string
	Offset, Addr, End       string
	AddrC, SizeC, SizeHuman string
	OffsetGo, SizeGo        string
	Sectors                 uint64
}

func cIdent(s string) string {
	var b strings.Builder
	for _, c := range strings.ToUpper(s) {
		if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// sectorsIn counts the erase sectors in [off, off+size), in steps of sector
// runs, not of sectors.
func sectorsIn(m *hal.SectorMap, off, size uint64) uint64 {
	return m.Count(off, off+size)
}

// schemeGo names the hal constant of a scheme when there is one.
func schemeGo(s hal.Scheme) string {
	switch s {
	case hal.SingleBank:
		return "hal.SingleBank"
	case hal.DualBank:
		return "hal.DualBank"
	case hal.Swap:
		return "hal.Swap"
	}
	return fmt.Sprintf("hal.Scheme(%q)", string(s))
}

// bootloaderGo writes b as a hal.Bootloader literal; otaport's own is the
// zero value, written as nothing.
func bootloaderGo(b hal.Bootloader) string {
	if b == (hal.Bootloader{}) {
		return ""
	}
	if b.Mode == "" {
		return fmt.Sprintf("hal.Bootloader{Name: %q}", b.Name)
	}
	return fmt.Sprintf("hal.Bootloader{Name: %q, Mode: %q}", b.Name, b.Mode)
}

// bootSummary is the scheme, and the bootloader when it is not otaport's.
func bootSummary(l hal.Layout) string {
	if l.Bootloader == (hal.Bootloader{}) {
		return string(l.Scheme)
	}
	return fmt.Sprintf("%s, %s", l.Bootloader, l.Scheme)
}

// newPortData computes the data of b's templates; m is the module of a port
// made with GenerateModule, nil for a port of the catalog.
func newPortData(b *Board, m *Module) portData {
	l := b.Layout()
	wide := l.Flash.Base+l.Flash.Size > 1<<32
	addrType, suffix := "uint32_t", "u"
	if wide {
		addrType, suffix = "uint64_t", "ull"
	}
	cHex := func(v uint64) string { return fmt.Sprintf("0x%08X%s", v, suffix) }
	summary := strings.TrimSpace(strings.Join([]string{b.Vendor, b.SoC}, " "))
	if summary != "" {
		summary += ", "
	}
	d := portData{
		Boot: bootSummary(l),
		Name: b.Name, Package: PackageName(b.Name), Vendor: b.Vendor, SoC: b.SoC, Source: b.Source,
		Summary: summary + bootSummary(l),
		Scheme:  string(l.Scheme), Signature: b.Image.Signature, DualBank: l.Scheme == hal.DualBank,
		ESPIDF:          l.Bootloader.Name == hal.BootloaderESPIDF,
		BootAttempts:    l.BootAttempts,
		MCUbootMode:     mcubootModeC(l),
		MCUbootMaxAlign: max(8, uint64(l.Flash.WriteAlign)),
		MaxImgSects:     mcubootMaxImgSectors(l),
		ImportPath:      PortsPath + "/" + b.Name,
		PkgDir:          "./ports/" + b.Name,
		CPortDir:        "`ports/c`, shared by every board",
		DocsLink:        "[docs/porting.md](../../docs/porting.md)",
		FlashBase:       fmt.Sprintf("0x%08X", l.Flash.Base),
		FlashSizeHuman:  byteCount(l.Flash.Size, " "),
		FlashBaseC:      cHex(l.Flash.Base),
		FlashSizeC:      cHex(l.Flash.Size),
		WriteAlign:      l.Flash.WriteAlign,
		WriteAlignHuman: byteCount(uint64(l.Flash.WriteAlign), " "),
		EraseValue:      fmt.Sprintf("0x%02X", l.Flash.EraseValue),
		SourceC:         strings.ReplaceAll(strings.ReplaceAll(b.Source, "*/", "* /"), "\n", " "),
		SchemeGo:        schemeGo(l.Scheme),
		BootloaderGo:    bootloaderGo(l.Bootloader),
		FlashBaseGo:     fmt.Sprintf("0x%08x", l.Flash.Base),
		FlashSizeGo:     fmt.Sprintf("%#x", l.Flash.Size),
		EraseValueGo:    fmt.Sprintf("0x%02x", l.Flash.EraseValue),
		Guard:           "OTA_BOARD_" + cIdent(b.Name) + "_H",
		AddrType:        addrType,
	}
	if m != nil {
		d.ImportPath, d.PkgDir, d.Module = m.Path, ".", m.Path
		d.CPortDir = "`c/ota_hal_plat.h`, `c/ota_port.c`, the same for every board"
		d.DocsLink = "otaport's `docs/porting.md` (" + ModulePath + ")"
		d.GoVersion, d.OtaportVersion, d.Replace = GoVersion, m.Otaport, m.Replace
	}
	var runs []string
	for _, r := range l.Flash.Sectors {
		runs = append(runs, fmt.Sprintf("%d x %s", r.Count, byteCount(r.Size, " ")))
		d.SectorRuns = append(d.SectorRuns, sectorData{Count: r.Count, Size: fmt.Sprintf("0x%X", r.Size)})
		d.SectorRunsGo = append(d.SectorRunsGo, sectorData{Count: r.Count, Size: fmt.Sprintf("%#x", r.Size)})
	}
	d.SectorsHuman = strings.Join(runs, ", ")
	for _, p := range l.Partitions {
		addr := l.Flash.Base + p.Offset
		d.Partitions = append(d.Partitions, partData{
			Name: p.Name, Macro: cIdent(p.Name),
			Offset:    fmt.Sprintf("0x%X", p.Offset),
			Addr:      fmt.Sprintf("0x%08X", addr),
			End:       fmt.Sprintf("0x%08X", addr+p.Size),
			AddrC:     cHex(addr),
			SizeC:     fmt.Sprintf("0x%X%s", p.Size, suffix),
			SizeHuman: byteCount(p.Size, " "),
			OffsetGo:  fmt.Sprintf("%#x", p.Offset),
			SizeGo:    fmt.Sprintf("%#x", p.Size),
			Sectors:   sectorsIn(b.sectorMap(), p.Offset, p.Size),
		})
	}
	return d
}

// OtaportVersion is the version of otaport a port module requires: the one
// this program was built from when the go command recorded it (go install
// ...@version), else a placeholder that a replace directive or
// `go get github.com/otaport/otaport@latest` settles.
func OtaportVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
			if m.Path == ModulePath && strings.HasPrefix(m.Version, "v") {
				return m.Version
			}
		}
	}
	return "v0.0.0-00010101000000-000000000000"
}

// funcs are the functions the templates call.
var funcs = template.FuncMap{
	"quote":   func(s string) string { return fmt.Sprintf("%q", s) },
	"comment": comment,
}

// comment writes text as // lines of at most 80 columns, a blank comment
// line for each line break.
func comment(text string) string {
	var out []string
	for _, para := range strings.Split(text, "\n") {
		line := "//"
		for _, w := range strings.Fields(para) {
			if len(line) > 2 && len(line)+1+len(w) > 80 {
				out = append(out, line)
				line = "//"
			}
			line += " " + w
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}

// output is one generated file: the template that writes it and its path.
type output struct {
	tmpl, path string
	once       bool
}

// render fills the templates of outs with data; Go files are formatted, so
// the templates need not align what gofmt aligns.
func render(data any, outs []output) ([]File, error) {
	t, err := templates.Parse(funcs)
	if err != nil {
		return nil, err
	}
	files := make([]File, 0, len(outs))
	for _, o := range outs {
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, o.tmpl, data); err != nil {
			return nil, fmt.Errorf("%s: %w", o.path, err)
		}
		out := buf.Bytes()
		if strings.HasSuffix(o.path, ".go") {
			if out, err = gofmt(out); err != nil {
				return nil, fmt.Errorf("%s: %w", o.path, err)
			}
		}
		files = append(files, File{Path: o.path, Data: out, Once: o.once})
	}
	return files, nil
}

// mcubootModeC is the C port's macro for the board's MCUboot mode.
func mcubootModeC(l hal.Layout) string {
	if l.Bootloader.Name != hal.BootloaderMCUboot {
		return "OTA_MCUBOOT_NONE"
	}
	switch l.Bootloader.Mode {
	case hal.ModeOverwriteOnly:
		return "OTA_MCUBOOT_OVERWRITE_ONLY"
	case hal.ModeSwapMove:
		return "OTA_MCUBOOT_SWAP_MOVE"
	case hal.ModeDirectXIP:
		return "OTA_MCUBOOT_DIRECT_XIP"
	}
	return "OTA_MCUBOOT_UNKNOWN"
}

// mcubootMaxImgSectors is BOOT_MAX_IMG_SECTORS as core/boot takes it: the
// larger slot's sector count (Zephyr's CONFIG_BOOT_MAX_IMG_SECTORS_AUTO).
func mcubootMaxImgSectors(l hal.Layout) uint64 {
	app, _ := l.Partition(hal.PartApp)
	ota, _ := l.Partition(hal.PartOTA)
	m := l.Flash.Map()
	return max(m.Count(app.Offset, app.End()), m.Count(ota.Offset, ota.End()))
}
