package bootutil

import (
	"fmt"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
)

// powerOn is one power-on of the device and what must follow it. before is
// what the running image does before this power-on: "" nothing, "confirm"
// boot_set_confirmed on the slot it runs from (written by
// core/bootfmt/mcuboot). boots is the slot and version MCUboot must start, or
// "none"; primary and secondary are what each slot must hold afterwards:
// "old", "new", "erased", "dropped" (device.holds) or "" (not
// checked).
type powerOn struct {
	before             string
	boots              string
	primary, secondary string
}

// bootCase is one device: the mode of its MCUboot build, its flash, the
// request otaport writes for the new image, and its power-ons.
type bootCase struct {
	name    string
	mode    mcuboot.Mode
	write   uint32
	erased  byte
	request string // test or permanent
	tamper  bool   // flip one payload byte of the new image
	blank   bool   // no old image in the primary slot
	ons     []powerOn
}

// swapCases are the flows every swap mode runs alike. reverted is where the
// new image is after a revert: MCUboot swaps it back to where it was
// written.
func swapCases(mode mcuboot.Mode, reverted string) []bootCase {
	swapped := powerOn{boots: "primary 1.1.0+0", primary: "new", secondary: "old"}
	back := powerOn{boots: "primary 1.0.0+0", primary: "old", secondary: reverted}
	confirmed := swapped
	confirmed.before = "confirm"
	return []bootCase{
		{name: mode.String() + " reverts an unconfirmed image", mode: mode, write: 4, erased: 0xff, request: "test",
			ons: []powerOn{swapped, back, back}},
		{name: mode.String() + " keeps a confirmed image", mode: mode, write: 8, erased: 0x00, request: "test",
			ons: []powerOn{swapped, confirmed, swapped}},
		{name: mode.String() + " keeps a permanent image", mode: mode, write: 4, erased: 0x00, request: "permanent",
			ons: []powerOn{swapped, swapped}},
		{name: mode.String() + " refuses a tampered image", mode: mode, write: 8, erased: 0xff, request: "test", tamper: true,
			ons: []powerOn{{boots: "primary 1.0.0+0", primary: "old", secondary: "erased"}}},
	}
}

// TestMCUboot_BootsOtaportImages installs an old image in the primary slot
// and a new one in the secondary, both signed by core/image, writes the boot
// request with core/bootfmt/mcuboot, and powers the device on with MCUboot's
// own bootloader, once per row of powerOns.
func TestMCUboot_BootsOtaportImages(t *testing.T) {
	cases := []bootCase{
		{name: "overwrite-only copies the new image and keeps it", mode: mcuboot.OverwriteOnly, write: 4, erased: 0xff, request: "test",
			ons: []powerOn{
				{boots: "primary 1.1.0+0", primary: "new", secondary: "dropped"},
				{boots: "primary 1.1.0+0", primary: "new", secondary: "dropped"},
			}},
		{name: "overwrite-only refuses a tampered image", mode: mcuboot.OverwriteOnly, write: 8, erased: 0x00, request: "permanent", tamper: true,
			ons: []powerOn{{boots: "primary 1.0.0+0", primary: "old", secondary: "erased"}}},
		{name: "direct-xip boots the higher version and reverts it unconfirmed", mode: mcuboot.DirectXIP, write: 4, erased: 0xff, request: "test",
			ons: []powerOn{
				{boots: "secondary 1.1.0+0", primary: "old", secondary: "new"},
				{boots: "primary 1.0.0+0", primary: "old", secondary: "erased"},
			}},
		{name: "direct-xip keeps a confirmed image", mode: mcuboot.DirectXIP, write: 8, erased: 0x00, request: "test",
			ons: []powerOn{
				{boots: "secondary 1.1.0+0", primary: "old", secondary: "new"},
				{before: "confirm", boots: "secondary 1.1.0+0", primary: "old", secondary: "new"},
			}},
		{name: "direct-xip refuses a tampered image", mode: mcuboot.DirectXIP, write: 4, erased: 0xff, request: "test", tamper: true,
			ons: []powerOn{{boots: "primary 1.0.0+0", primary: "old", secondary: "erased"}}},
	}
	// An empty primary slot (a blank device given its first image through
	// the secondary): overwrite-only, swap-scratch and direct-xip boot the
	// new image; swap-move and swap-offset read the primary's header before
	// anything else ("Failed reading image headers") and boot nothing.
	blank := func(mode mcuboot.Mode, on powerOn) bootCase {
		return bootCase{name: mode.String() + " with an empty primary slot", mode: mode, write: 4, erased: 0xff,
			request: "test", blank: true, ons: []powerOn{on}}
	}
	cases = append(cases,
		blank(mcuboot.OverwriteOnly, powerOn{boots: "primary 1.1.0+0", primary: "new", secondary: "dropped"}),
		blank(mcuboot.SwapScratch, powerOn{boots: "primary 1.1.0+0", primary: "new"}),
		blank(mcuboot.DirectXIP, powerOn{boots: "secondary 1.1.0+0", primary: "erased", secondary: "new"}),
		blank(mcuboot.SwapMove, powerOn{boots: "none", primary: "erased", secondary: "new"}),
		blank(mcuboot.SwapOffset, powerOn{boots: "none", primary: "erased", secondary: "new@1"}),
	)
	cases = append(cases, swapCases(mcuboot.SwapMove, "new")...)
	cases = append(cases, swapCases(mcuboot.SwapScratch, "new")...)
	// swap-offset swaps the new image back one sector into the secondary.
	cases = append(cases, swapCases(mcuboot.SwapOffset, "new@1")...)
	mcubootTree(t)
	s := newSigner(t)
	images := map[string][]byte{
		"old": s.sign(t, payload(1, 40000), "1.0.0"),
		"new": s.sign(t, payload(2, 47000), "1.1.0"),
	}
	out := t.TempDir()
	builds := map[mcuboot.Mode]bootloader{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := slots(c.mode, 32, c.write, c.erased)
			b, ok := builds[c.mode]
			if !ok {
				b = compile(t, out, c.mode, g.maxImgSectors(), s)
				builds[c.mode] = b
			}
			d := newDevice(t, g, c.mode)
			if !c.blank {
				d.write(t, g.pri, 0, images["old"])
			}
			if c.mode == mcuboot.DirectXIP && !c.blank {
				// The running image confirmed itself: in direct-xip with
				// revert, a slot without the magic is not bootable.
				d.confirm(t, g.pri)
			}
			newImg := images["new"]
			if c.tamper {
				newImg = append([]byte(nil), newImg...)
				newImg[0x200+1000] ^= 0x01
			}
			d.write(t, g.sec, g.updateOff(c.mode), newImg)
			imgs := map[string][]byte{"old": images["old"], "new": newImg}
			d.request(t, c.request == "permanent")

			running := g.pri
			for i, on := range c.ons {
				if on.before == "confirm" {
					d.confirm(t, running)
				}
				// The Go package's reading of the trailers, MCUboot's own
				// writes included, must foresee what MCUboot does. (Direct-xip
				// has no swap table; a tampered image fails after the table,
				// an empty primary before it in swap-move and swap-offset.)
				predicted := ""
				if c.mode != mcuboot.DirectXIP && !c.tamper && !c.blank {
					predicted = d.predict(t)
				}
				r := b.powerOn(t, d)
				if predicted != "" && r.version != predicted {
					t.Errorf("power-on %d: core/bootfmt/mcuboot's swap table foresees %s, MCUboot boots %s\nMCUboot's log:\n%s", i+1, predicted, r.version, r.log)
				}
				got := "none"
				if r.booted {
					got = r.slot + " " + r.version
					running = g.pri
					if r.slot == "secondary" {
						running = g.sec
					}
				}
				if len(r.refused) > 0 {
					t.Errorf("power-on %d: MCUboot made flash operations a real flash refuses:\n%s\nMCUboot's log:\n%s",
						i+1, strings.Join(r.refused, "\n"), r.log)
				}
				if got != on.boots {
					t.Fatalf("power-on %d: MCUboot boots %s, want %s\nMCUboot's log:\n%s", i+1, got, on.boots, r.log)
				}
				for _, w := range []struct {
					a    area
					want string
				}{{g.pri, on.primary}, {g.sec, on.secondary}} {
					if w.want == "" {
						continue
					}
					if err := d.holds(t, w.a, w.want, imgs); err != nil {
						t.Errorf("power-on %d: %v\nMCUboot's log:\n%s", i+1, err, r.log)
					}
				}
			}
		})
	}
}

// TestMCUboot_FlashRefusesWhatNORRefuses shows that the harness's flash is
// as strict as a NOR part: direct-xip writes copy_done in the trailer of the
// slot it first boots, and when that byte is already programmed (0x02, a
// "bad" flag, here written by the test) the write is refused, reported, and
// MCUboot goes on (boot_select_or_erase only warns).
func TestMCUboot_FlashRefusesWhatNORRefuses(t *testing.T) {
	mcubootTree(t)
	s := newSigner(t)
	g := slots(mcuboot.DirectXIP, 32, 4, 0xff)
	b := compile(t, t.TempDir(), mcuboot.DirectXIP, g.maxImgSectors(), s)
	d := newDevice(t, g, mcuboot.DirectXIP)
	d.write(t, g.pri, 0, s.sign(t, payload(1, 30000), "1.0.0"))
	d.confirm(t, g.pri)
	d.write(t, g.sec, 0, s.sign(t, payload(2, 30000), "1.1.0"))
	d.request(t, false)
	l := g.layout(mcuboot.DirectXIP, g.sec)
	d.apply(t, g.sec, []mcuboot.Write{{Off: l.CopyDoneOff(), Data: []byte{0x02, 0xff, 0xff, 0xff}}})

	r := b.powerOn(t, d)
	want := fmt.Sprintf("refused write secondary 0x%x 0x4 not-erased", l.CopyDoneOff())
	if len(r.refused) != 1 || r.refused[0] != want {
		t.Errorf("refused %q, want [%q]\nMCUboot's log:\n%s", r.refused, want, r.log)
	}
	if !r.booted || r.slot != "secondary" || r.version != "1.1.0+0" {
		t.Errorf("MCUboot %s, want boots secondary 1.1.0+0\nMCUboot's log:\n%s", r, r.log)
	}
}

// TestMCUboot_RequestCutShort cuts the power after each write of a
// permanent request (magic, image_ok, swap_info, in core/bootfmt/mcuboot's
// order) and powers on MCUboot twice: what the order promises (docs/boot-
// schemes.md) must hold for the real bootloader: no write, no request; the
// magic alone, a test request that MCUboot reverts; with image_ok, the
// permanent request.
func TestMCUboot_RequestCutShort(t *testing.T) {
	mcubootTree(t)
	s := newSigner(t)
	imgs := map[string][]byte{
		"old": s.sign(t, payload(1, 30000), "1.0.0"),
		"new": s.sign(t, payload(2, 35000), "1.1.0"),
	}
	g := slots(mcuboot.SwapMove, 32, 4, 0xff)
	b := compile(t, t.TempDir(), mcuboot.SwapMove, g.maxImgSectors(), s)
	for _, c := range []struct {
		writes int      // of the request, before the cut
		boots  []string // the versions of two power-ons
	}{
		{0, []string{"1.0.0+0", "1.0.0+0"}},
		{1, []string{"1.1.0+0", "1.0.0+0"}},
		{2, []string{"1.1.0+0", "1.1.0+0"}},
		{3, []string{"1.1.0+0", "1.1.0+0"}},
	} {
		t.Run(fmt.Sprintf("after %d writes", c.writes), func(t *testing.T) {
			d := newDevice(t, g, mcuboot.SwapMove)
			d.write(t, g.pri, 0, imgs["old"])
			d.write(t, g.sec, 0, imgs["new"])
			ws := d.pending(t, true)
			if len(ws) != 3 {
				t.Fatalf("a permanent request is %d writes, want 3 (magic, image_ok, swap_info)", len(ws))
			}
			d.apply(t, g.sec, ws[:c.writes])
			for i, want := range c.boots {
				r := b.powerOn(t, d)
				if len(r.refused) > 0 || !r.booted || r.slot != "primary" || r.version != want {
					t.Fatalf("power-on %d: MCUboot %s (refused %q), want boots primary %s\nMCUboot's log:\n%s", i+1, r, r.refused, want, r.log)
				}
			}
		})
	}
}
