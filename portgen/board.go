// Package portgen reads and validates board descriptions (YAML) and generates
// a port from them, filling the templates of package templates.
package portgen

import "github.com/otaport/otaport/core/hal"

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
	Scheme     string      `yaml:"scheme" json:"scheme"`
	Partitions []Partition `yaml:"partitions" json:"partitions"`
	Image      Image       `yaml:"image" json:"image"`

	// Module is, for a catalog entry of a port in its own Go module, the
	// module's path; the other fields but Name are then empty (ModuleEntry).
	Module string `yaml:"-" json:"module,omitempty"`

	// Line is the line of the board's entry in its file, for messages.
	Line int `yaml:"-" json:"-"`
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
	if l.BootAttempts == 0 {
		l.BootAttempts = 1
	}
	for _, p := range b.Partitions {
		l.Partitions = append(l.Partitions, hal.Partition{Name: p.Name, Offset: uint64(p.Offset), Size: uint64(p.Size)})
	}
	return l
}
