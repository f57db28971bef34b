// Package portgen reads and validates board descriptions (YAML) and generates
// a port from them, filling the templates of package templates.
package portgen

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/otaport/otaport/core/hal"
)

// Size is a byte count that YAML may write as 4096, 0x1000, 4KiB or 1MiB.
type Size uint64

// Board is one board description as written in YAML. Field names are the
// user-facing format: keep them.
type Board struct {
	Name       string      `yaml:"name" json:"name"`
	Vendor     string      `yaml:"vendor" json:"vendor"`
	SoC        string      `yaml:"soc" json:"soc"`
	Source     string      `yaml:"source" json:"source"`
	Flash      Flash       `yaml:"flash" json:"flash"`
	Scheme     string      `yaml:"scheme,omitempty" json:"scheme,omitempty"`
	Bootloader Bootloader  `yaml:"bootloader,omitempty" json:"bootloader,omitzero"`
	Partitions []Partition `yaml:"partitions" json:"partitions"`
	Image      Image       `yaml:"image" json:"image"`

	// Module is, for a catalog entry of a port in its own Go module, the
	// module's path; the other fields but Name are then empty (ModuleEntry).
	Module string `yaml:"-" json:"module,omitempty"`

	// Line is the line of the board's entry in its file, for messages.
	Line int `yaml:"-" json:"-"`

	// smap is the sector map of Flash as it was when the map was built
	// (smapOf): the validator and the generator share it, and tests count
	// its steps.
	smap   *hal.SectorMap
	smapOf Flash
}

// sectorMap returns the sector map of the board's flash, built again when
// Flash changed since the last call.
func (b *Board) sectorMap() *hal.SectorMap {
	f := b.Flash
	if b.smap == nil || f.Size != b.smapOf.Size || f.EraseSize != b.smapOf.EraseSize || !slices.Equal(f.Sectors, b.smapOf.Sectors) {
		b.smap = b.Layout().Flash.Map()
		b.smapOf = f
		b.smapOf.Sectors = slices.Clone(f.Sectors)
	}
	return b.smap
}

// Flash is the flash geometry of a board.
type Flash struct {
	Base       Size        `yaml:"base" json:"base"`
	Size       Size        `yaml:"size" json:"size"`
	Sectors    []SectorRun `yaml:"sectors,omitempty" json:"sectors,omitempty"`
	EraseSize  Size        `yaml:"erase_size,omitempty" json:"erase_size,omitempty"`
	WriteAlign Size        `yaml:"write_align" json:"write_align"`
	EraseValue Size        `yaml:"erase_value" json:"erase_value"`
}

// SectorRun is Count erase sectors of Size bytes.
type SectorRun struct {
	Count int  `yaml:"count" json:"count"`
	Size  Size `yaml:"size" json:"size"`
}

// Partition is a named region of the flash.
type Partition struct {
	Name   string `yaml:"name" json:"name"`
	Offset Size   `yaml:"offset" json:"offset"`
	Size   Size   `yaml:"size" json:"size"`
}

// Bootloader is the second-stage bootloader the board runs, as its SDK
// builds it: it decides the bytes of the boot requests and, when the board
// gives no scheme, the scheme.
type Bootloader struct {
	Name string `yaml:"name" json:"name"`
	Mode string `yaml:"mode,omitempty" json:"mode,omitempty"`
}

// Image is the board's image policy.
type Image struct {
	Signature    string `yaml:"signature" json:"signature"`
	BootAttempts int    `yaml:"boot_attempts,omitempty" json:"boot_attempts,omitempty"`
}

// Layout converts a validated board to the port contract's layout type.
func (b *Board) Layout() hal.Layout {
	l := hal.Layout{
		Board:  b.Name,
		Vendor: b.Vendor,
		SoC:    b.SoC,
		Scheme: hal.Scheme(b.Scheme),
		// otaport's own bootloader is the zero value: one spelling of it.
		Bootloader: hal.Bootloader{Name: b.Bootloader.Name, Mode: b.Bootloader.Mode},
		Flash: hal.FlashGeometry{
			Base:       uint64(b.Flash.Base),
			Size:       uint64(b.Flash.Size),
			WriteAlign: uint32(b.Flash.WriteAlign),
			EraseValue: byte(b.Flash.EraseValue),
		},
		Signature:    b.Image.Signature,
		BootAttempts: b.Image.BootAttempts,
	}
	if len(b.Flash.Sectors) > 0 {
		for _, s := range b.Flash.Sectors {
			l.Flash.Sectors = append(l.Flash.Sectors, hal.SectorRun{Count: s.Count, Size: uint64(s.Size)})
		}
	} else if b.Flash.EraseSize > 0 {
		l.Flash.Sectors = []hal.SectorRun{{Count: int(uint64(b.Flash.Size) / uint64(b.Flash.EraseSize)), Size: uint64(b.Flash.EraseSize)}}
	}
	if l.Bootloader == (hal.Bootloader{Name: hal.BootloaderOtaport}) {
		l.Bootloader = hal.Bootloader{}
	}
	if l.Scheme == "" {
		// The bootloader decides the scheme; a board that names both is
		// checked for agreement by the layout's rules.
		if s, ok := hal.SchemeOf(l.Bootloader); ok {
			l.Scheme = s
		}
	}
	if l.BootAttempts == 0 {
		l.BootAttempts = 1
	}
	for _, p := range b.Partitions {
		l.Partitions = append(l.Partitions, hal.Partition{Name: p.Name, Offset: uint64(p.Offset), Size: uint64(p.Size)})
	}
	return l
}

// CheckPortDir refuses to let b's port overwrite dir when dir holds the port
// of another board (its generated layout names another vendor or SoC: a
// board that reuses a catalog name) or files that are not a port at all. A
// directory that does not exist, is empty, or holds b's own port
// (regenerated after an edit) is fine.
func CheckPortDir(dir string, b *Board) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(entries) == 0) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	path := filepath.Join(dir, generatedGo)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s exists and holds no otagen port (no %s); generating %s there would mix its files with the port's: choose another -o, or pass --force", dir, generatedGo, b.Name)
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	m := portIdentity.FindSubmatch(data)
	if m == nil {
		// otagen's own file, edited by hand: regenerating restores it.
		return nil
	}
	vendor, _ := strconv.Unquote(string(m[1]))
	soc, _ := strconv.Unquote(string(m[2]))
	if vendor != b.Vendor || soc != b.SoC {
		return fmt.Errorf("%s holds the port of another board named %s (%s %s, not %s %s): generating would overwrite it; rename the board, choose another -o, or pass --force to overwrite it",
			dir, b.Name, vendor, soc, b.Vendor, b.SoC)
	}
	return nil
}

// generatedGo is the file of a port that otagen owns; its layout literal
// says whose port it is.
const generatedGo = "zz_generated.go"

// portIdentity finds the vendor and SoC in a generated layout literal.
var portIdentity = regexp.MustCompile(`Vendor: ("(?:[^"\\]|\\.)*"), SoC: ("(?:[^"\\]|\\.)*")`)
