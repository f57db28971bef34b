package portgen

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

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

// sizeValue writes a Size for board.yaml: a unit when one divides it, else
// hex (or a plain number when small).
func sizeValue(n uint64) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return byteCount(n, "")
	}
	if n < 1<<10 {
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%#x", n)
}

// yamlAddressKeys are written in hex in board.yaml, as datasheets write
// addresses; yamlSizeKeys with a unit.
var (
	yamlAddressKeys = map[string]bool{"base": true, "offset": true, "erase_value": true}
	yamlSizeKeys    = map[string]bool{"size": true, "erase_size": true}
	yamlFlowKeys    = map[string]bool{"sectors": true, "partitions": true}
)

// boardYAML renders the board alone as a board file that Parse reads back to
// the same board. Encoding the struct (rather than writing the fields by
// hand) keeps fields added to Board; the walk then restores the forms people
// write: hex addresses, sizes with units, one line per partition.
func boardYAML(b *Board) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(b); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	styleBoardNode(&doc, "")
	var buf bytes.Buffer
	buf.WriteString("# " + generatedHeader + "\n")
	buf.WriteString("# The description of the " + b.Name + " board this port was generated from.\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

func styleBoardNode(n *yaml.Node, key string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			styleBoardNode(n.Content[i+1], n.Content[i].Value)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if yamlFlowKeys[key] && c.Kind == yaml.MappingNode {
				c.Style = yaml.FlowStyle
			}
			styleBoardNode(c, key)
		}
	case yaml.ScalarNode:
		if n.Tag != "!!int" {
			return
		}
		var v uint64
		if err := n.Decode(&v); err != nil {
			return
		}
		switch {
		case key == "erase_value":
			n.Value = fmt.Sprintf("0x%02X", v)
		case yamlAddressKeys[key]:
			n.Value = fmt.Sprintf("%#x", v)
		case yamlSizeKeys[key]:
			n.Value = sizeValue(v)
		default:
			return
		}
		n.Tag = ""
		n.Style = 0
	}
}

// portData is what the README and C templates are filled with: every number
// already formatted, so the templates hold no arithmetic.
type portData struct {
	Name, Package, Vendor, SoC, Source string
	Scheme, Signature                  string
	DualBank                           bool
	BootAttempts                       int

	FlashBase, FlashSizeHuman string
	FlashBaseC, FlashSizeC    string
	SectorsHuman              string
	SectorRuns                []sectorData
	WriteAlign                uint32
	WriteAlignHuman           string
	EraseValue                string

	Partitions []partData
	Map        string

	Guard    string // C include guard
	AddrType string // C type wide enough for every address
}

type sectorData struct {
	Count int
	Size  string // C literal
}

type partData struct {
	Name, Macro                string
	Offset, Addr, End          string
	AddrC, SizeC, SizeHuman    string
	Sectors                    uint64
	offset, size, addr, endAdr uint64
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

func newPortData(b *Board) portData {
	l := b.Layout()
	wide := l.Flash.Base+l.Flash.Size > 1<<32
	addrType, suffix := "uint32_t", "u"
	if wide {
		addrType, suffix = "uint64_t", "ull"
	}
	cHex := func(v uint64) string { return fmt.Sprintf("0x%08X%s", v, suffix) }
	d := portData{
		Name: b.Name, Package: PackageName(b.Name), Vendor: b.Vendor, SoC: b.SoC, Source: b.Source,
		Scheme: b.Scheme, Signature: b.Image.Signature, DualBank: l.Scheme == hal.DualBank,
		BootAttempts:    l.BootAttempts,
		FlashBase:       fmt.Sprintf("0x%08X", l.Flash.Base),
		FlashSizeHuman:  byteCount(l.Flash.Size, " "),
		FlashBaseC:      cHex(l.Flash.Base),
		FlashSizeC:      cHex(l.Flash.Size),
		WriteAlign:      l.Flash.WriteAlign,
		WriteAlignHuman: byteCount(uint64(l.Flash.WriteAlign), " "),
		EraseValue:      fmt.Sprintf("0x%02X", l.Flash.EraseValue),
		Guard:           "OTA_HAL_PLAT_" + cIdent(b.Name) + "_H",
		AddrType:        addrType,
	}
	var runs []string
	for _, r := range l.Flash.Sectors {
		runs = append(runs, fmt.Sprintf("%d x %s", r.Count, byteCount(r.Size, " ")))
		d.SectorRuns = append(d.SectorRuns, sectorData{Count: r.Count, Size: fmt.Sprintf("0x%X", r.Size)})
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
			Sectors:   sectorsIn(b.sectorMap(), p.Offset, p.Size),
			offset:    p.Offset, size: p.Size, addr: addr, endAdr: addr + p.Size,
		})
	}
	d.Map = partitionMap(l, d.Partitions)
	return d
}

// partitionMap draws the flash as a column of boxes, one per partition or
// gap, with heights that grow with the size (log scale, so a 16 KiB
// bootloader and a 2 MiB app both stay readable).
func partitionMap(l hal.Layout, parts []partData) string {
	type region struct {
		label      string
		start, end uint64
	}
	var regions []region
	at := l.Flash.Base
	sorted := append([]partData(nil), parts...)
	for i := 1; i < len(sorted); i++ { // insertion sort by address: partitions are few
		for j := i; j > 0 && sorted[j].addr < sorted[j-1].addr; j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	for _, p := range sorted {
		if p.addr > at {
			regions = append(regions, region{"(free)", at, p.addr})
		}
		regions = append(regions, region{p.Name, p.addr, p.endAdr})
		at = max(at, p.endAdr)
	}
	if end := l.Flash.Base + l.Flash.Size; end > at {
		regions = append(regions, region{"(free)", at, end})
	}

	nameW, sizeW := 0, 0
	for _, r := range regions {
		nameW = max(nameW, len(r.label))
		sizeW = max(sizeW, len(byteCount(r.end-r.start, " ")))
	}
	inner := max(30, nameW+sizeW+4)
	var smallest uint64
	for _, r := range regions {
		if s := r.end - r.start; smallest == 0 || s < smallest {
			smallest = s
		}
	}
	border := "+" + strings.Repeat("-", inner) + "+"
	pad := strings.Repeat(" ", 10)
	var sb strings.Builder
	for _, r := range regions {
		size := r.end - r.start
		rows := 1
		for s := smallest * 4; s <= size && rows < 6; s *= 4 {
			rows++
		}
		fmt.Fprintf(&sb, "0x%08X %s\n", r.start, border)
		label := fmt.Sprintf(" %-*s%*s ", inner-sizeW-2, r.label, sizeW, byteCount(size, " "))
		fmt.Fprintf(&sb, "%s |%-*s|\n", pad, inner, label)
		for i := 1; i < rows; i++ {
			fmt.Fprintf(&sb, "%s |%s|\n", pad, strings.Repeat(" ", inner))
		}
	}
	fmt.Fprintf(&sb, "0x%08X %s\n", l.Flash.Base+l.Flash.Size, border)
	return sb.String()
}

// genText fills the templates: README.md and the C port.
func genText(b *Board) ([]File, error) {
	t, err := templates.Parse()
	if err != nil {
		return nil, err
	}
	data := newPortData(b)
	outs := []struct{ tmpl, path string }{
		{templates.README, "README.md"},
		{templates.CHeader, "c/ota_hal_plat.h"},
		{templates.CSource, "c/ota_port.c"},
	}
	files := make([]File, 0, len(outs))
	for _, o := range outs {
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, o.tmpl, data); err != nil {
			return nil, fmt.Errorf("%s: %w", o.path, err)
		}
		files = append(files, File{Path: o.path, Data: buf.Bytes()})
	}
	return files, nil
}
