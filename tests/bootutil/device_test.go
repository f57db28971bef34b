package bootutil

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// area is a flash area: a slot or the scratch area.
type area struct {
	name      string
	off, size uint64
}

// geometry is the flash MCUboot runs on: one sector size throughout, as
// MCUboot's swap modes need in the slots.
type geometry struct {
	sector   uint64
	write    uint32
	erased   byte
	pri, sec area
	scr      area   // size 0: no scratch area
	size     uint64 // of the flash; 0: up to the end of the last area
}

func (g geometry) flashSize() uint64 {
	return max(g.size, g.pri.off+g.pri.size, g.sec.off+g.sec.size, g.scr.off+g.scr.size)
}

// maxImgSectors is MCUBOOT_MAX_IMG_SECTORS as Zephyr's
// CONFIG_BOOT_MAX_IMG_SECTORS_AUTO sets it: the larger slot's sector count.
func (g geometry) maxImgSectors() int { return int(max(g.pri.size, g.sec.size) / g.sector) }

// layout is the trailer layout of slot a as MCUboot in mode sees it.
func (g geometry) layout(mode mcuboot.Mode, a area) mcuboot.Layout {
	secs := make([]uint32, a.size/g.sector)
	for i := range secs {
		secs[i] = uint32(g.sector)
	}
	return mcuboot.Layout{Mode: mode, SlotSize: uint32(a.size), Sectors: secs, MaxAlign: max(8, g.write),
		WriteSize: g.write, Erased: g.erased, MaxImgSectors: uint32(g.maxImgSectors())}
}

// slots returns a geometry of two slots of n sectors of 4 KiB each, the
// primary one sector larger for swap-move and the secondary for swap-offset
// (boot_slots_compatible's recommendations) and a one-sector scratch area after them for swap-scratch.
func slots(mode mcuboot.Mode, n int, write uint32, erased byte) geometry {
	const sector = 0x1000
	g := geometry{sector: sector, write: write, erased: erased}
	np, ns := n, n
	switch mode {
	case mcuboot.SwapMove:
		np++
	case mcuboot.SwapOffset:
		ns++ // boot_slots_compatible in swap_offset.c: the secondary one sector larger
	}
	g.pri = area{"primary", 0, uint64(np) * sector}
	g.sec = area{"secondary", g.pri.size, uint64(ns) * sector}
	if mode == mcuboot.SwapScratch {
		g.scr = area{"scratch", g.sec.off + g.sec.size, sector}
	}
	return g
}

// device is a flash that otaport writes through core/flash, strict as a
// real NOR part: programs only erased bytes, whole write units.
type device struct {
	g    geometry
	mode mcuboot.Mode
	fl   *flash.Emulator
}

func (g geometry) hal() hal.FlashGeometry {
	return hal.FlashGeometry{Size: g.flashSize(), Sectors: []hal.SectorRun{{Count: int(g.flashSize() / g.sector), Size: g.sector}},
		WriteAlign: g.write, EraseValue: g.erased}
}

func newDevice(t *testing.T, g geometry, mode mcuboot.Mode) *device {
	t.Helper()
	fl, err := flash.NewMemoryWith(g.hal(), flash.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	return &device{g: g, mode: mode, fl: fl}
}

// bytes is the whole flash.
func (d *device) bytes(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, d.g.flashSize())
	if _, err := d.fl.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// clone is a copy of d on a flash of its own.
func (d *device) clone(t *testing.T) *device {
	t.Helper()
	c := &device{g: d.g, mode: d.mode}
	c.load(t, d.bytes(t))
	return c
}

// load replaces the flash with b, what the bootloader left.
func (d *device) load(t *testing.T, b []byte) {
	t.Helper()
	fl, err := flash.NewMemoryWith(d.g.hal(), flash.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := fl.Program(0, b); err != nil {
		t.Fatal(err)
	}
	d.fl = fl
}

// updateOff is where in the secondary slot an update image goes: one
// sector in for swap-offset (which moves it down by one sector as it swaps),
// else the start.
func (g geometry) updateOff(mode mcuboot.Mode) uint64 {
	if mode == mcuboot.SwapOffset {
		return g.sector
	}
	return 0
}

// write programs img at off in slot a, its last write unit padded with the
// erased value.
func (d *device) write(t *testing.T, a area, off uint64, img []byte) {
	t.Helper()
	n := (len(img) + int(d.g.write) - 1) / int(d.g.write) * int(d.g.write)
	b := bytes.Repeat([]byte{d.g.erased}, n)
	copy(b, img)
	if err := d.fl.Program(int64(a.off+off), b); err != nil {
		t.Fatalf("write the image to %s: %v", a.name, err)
	}
}

// read returns n bytes at off in slot a.
func (d *device) read(t *testing.T, a area, off uint64, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := d.fl.ReadAt(b, int64(a.off+off)); err != nil {
		t.Fatal(err)
	}
	return b
}

// request writes what boot_set_pending_multi(0, permanent) writes in the
// secondary slot's trailer.
func (d *device) request(t *testing.T, permanent bool) {
	t.Helper()
	d.apply(t, d.g.sec, d.pending(t, permanent))
}

// pending returns the writes of boot_set_pending_multi(0, permanent) on the
// secondary slot as it is, in MCUboot's order.
func (d *device) pending(t *testing.T, permanent bool) []mcuboot.Write {
	t.Helper()
	l := d.g.layout(d.mode, d.g.sec)
	ws, err := l.SetPending(d.read(t, d.g.sec, 0, int(d.g.sec.size))[l.SlotSize-l.InfoSize():], 0, permanent)
	if err != nil {
		t.Fatalf("set pending: %v", err)
	}
	return ws
}

// confirm writes what boot_set_confirmed_multi(0) writes in slot a's
// trailer, a the slot the image runs from.
func (d *device) confirm(t *testing.T, a area) {
	t.Helper()
	l := d.g.layout(d.mode, a)
	ws, err := l.SetConfirmed(d.read(t, a, 0, int(a.size))[l.SlotSize-l.InfoSize():], 0)
	if err != nil {
		t.Fatalf("set confirmed in %s: %v", a.name, err)
	}
	if len(ws) == 0 {
		t.Fatalf("set confirmed in %s: nothing to write; the slot is not an unconfirmed image", a.name)
	}
	d.apply(t, a, ws)
}

func (d *device) apply(t *testing.T, a area, ws []mcuboot.Write) {
	t.Helper()
	for _, w := range ws {
		if err := d.fl.Program(int64(a.off)+int64(w.Off), w.Data); err != nil {
			t.Fatalf("trailer write in %s at 0x%x: %v", a.name, w.Off, err)
		}
	}
}

// holds says why slot a does not hold want: "old", "new" (an image of imgs:
// the slot starts with its bytes; "new@1": one sector in), "erased" (every byte of the slot), or
// "dropped" (its first and last sectors erased: the image header and the
// trailer, what MCUboot erases of an image it has copied or refused).
func (d *device) holds(t *testing.T, a area, want string, imgs map[string][]byte) error {
	t.Helper()
	erased := func(off, n uint64) error {
		b := make([]byte, n)
		if _, err := d.fl.ReadAt(b, int64(a.off+off)); err != nil {
			t.Fatal(err)
		}
		for i, c := range b {
			if c != d.g.erased {
				return fmt.Errorf("%s is not %s: byte 0x%x is 0x%02x", a.name, want, off+uint64(i), c)
			}
		}
		return nil
	}
	switch want {
	case "erased":
		return erased(0, a.size)
	case "dropped":
		if err := erased(0, d.g.sector); err != nil {
			return err
		}
		return erased(a.size-d.g.sector, d.g.sector)
	}
	name, at, _ := strings.Cut(want, "@")
	img, ok := imgs[name]
	if !ok {
		t.Fatalf("no image %q", want)
	}
	off := uint64(0)
	if at == "1" {
		off = d.g.sector
	}
	if got := d.read(t, a, off, len(img)); !bytes.Equal(got, img) {
		return fmt.Errorf("%s does not hold the %s image at 0x%x (first difference at 0x%x)", a.name, name, off, firstDiff(got, img))
	}
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// version is the version in the image header at the start of slot a, or one
// sector in (where swap-offset keeps an update), "" when neither holds one.
func (d *device) version(t *testing.T, a area) string {
	t.Helper()
	for _, off := range []uint64{0, d.g.sector} {
		if h, err := image.ParseHeader(d.read(t, a, off, image.HeaderSize)); err == nil {
			return h.Version.String()
		}
	}
	return ""
}

// predict is what core/bootfmt/mcuboot says the next power-on of a swap or
// overwrite-only build boots, from the two trailers as they are: the
// secondary's image when its swap-type table asks for a test, permanent or
// revert swap (or copy), else the primary's.
func (d *device) predict(t *testing.T) string {
	t.Helper()
	st := func(a area) mcuboot.State {
		l := d.g.layout(d.mode, a)
		s, err := l.Decode(d.read(t, a, uint64(l.SlotSize-l.InfoSize()), int(l.InfoSize())))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if mcuboot.Decide(d.mode, st(d.g.pri), st(d.g.sec)) == mcuboot.SwapNone {
		return d.version(t, d.g.pri)
	}
	return d.version(t, d.g.sec)
}
