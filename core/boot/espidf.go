package boot

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/bootfmt/espidf"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
)

// An esp-idf board runs ESP-IDF's second-stage bootloader built with
// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE, over a partition table without a
// factory app (hal's otadata rule): app is ota_0, ota is ota_1. Every boot
// request is an entry of its otadata partition, written with
// core/bootfmt/espidf exactly as esp_ota_set_boot_partition,
// esp_ota_mark_app_valid_cancel_rollback and
// esp_ota_mark_app_invalid_rollback write it, and the simulated bootloader
// decides from the two entries only (bootloader_utility_get_selected_boot_partition,
// then bootloader_utility_load_boot_image's fallback). The params partition
// keeps what the chip knows outside otadata: the slot the CPU runs from
// (esp_ota_get_running_partition on a device), the security counter (ESP-IDF
// keeps its secure_version in eFuses) and a rollback asked for, to report it.
// docs/boot-schemes.md, "ESP-IDF otadata".

// espConfig is the build and table the simulation is: two OTA app
// partitions, no factory app, app rollback on.
var espConfig = espidf.Config{AppCount: 2, Rollback: true}

// espGeo is an esp-idf board's otadata partition, and the entries last
// read or written there: as slotCache and trailerCache do for the slots,
// a Platform reads otadata once per power-on and then knows what it wrote.
type espGeo struct {
	otadata hal.Partition
	known   bool
	two     [2]espidf.Entry
}

// newESPGeo finds otadata; Layout.Validate has checked its size and sectors.
func newESPGeo(b *board) (*espGeo, error) {
	p, ok := b.layout.Partition(hal.PartOtadata)
	if !ok {
		return nil, fmt.Errorf("esp-idf board without an otadata partition: add {name: otadata, offset: 0xd000, size: 8KiB}")
	}
	return &espGeo{otadata: p}, nil
}

// espSlot is the otaport slot of ESP-IDF's OTA index (ota_0 is app).
func espSlot(index int) Slot {
	if index == 1 {
		return SlotOTA
	}
	return SlotApp
}

// readOtadata reads the two entries. A sector that starts with otaport's own
// record magic is a flash file made when this board kept params at
// otadata's address: refused, with the fix.
func (b *board) readOtadata(r io.ReaderAt) ([2]espidf.Entry, error) {
	if b.esp.known {
		return b.esp.two, nil
	}
	var two [2]espidf.Entry
	var buf [espidf.EntrySize]byte
	for i := range two {
		off := int64(b.esp.otadata.Offset) + int64(i)*espidf.SectorSize
		if _, err := r.ReadAt(buf[:], off); err != nil {
			return two, flashErr(fmt.Sprintf("read otadata entry %d at 0x%x", i, off), err)
		}
		if binary.LittleEndian.Uint32(buf[:]) == recordMagic {
			return two, hal.Errorf(hal.CodeInvalid, "otadata at 0x%x holds otaport's params log: this flash was written when board %q kept params where ESP-IDF's otadata now is (docs/boot-schemes.md, \"Migrating an esp32-devkitc flash file\"); start from a new flash file (remove it, then provision and install again)",
				b.esp.otadata.Offset, b.layout.Board)
		}
		two[i], _ = espidf.ParseEntry(buf[:]) // EntrySize bytes
	}
	b.esp.known, b.esp.two = true, two
	return two, nil
}

// writeOtadata is write_otadata: erase the entry's sector, then program its
// 32 bytes (padded with the erased value to the write unit). A cut between
// the two leaves that entry erased and the other one as it was.
func (b *board) writeOtadata(dev flash.Device, w espidf.Write) error {
	off := int64(b.esp.otadata.Offset) + int64(w.Sector)*espidf.SectorSize
	// Unknown until the write has succeeded: a failed one leaves the
	// sector erased or torn.
	known, two := b.esp.known, b.esp.two
	b.esp.known = false
	if err := dev.Erase(off, espidf.SectorSize); err != nil {
		return flashErr(fmt.Sprintf("erase otadata sector %d at 0x%x", w.Sector, off), err)
	}
	e := w.Entry.Bytes()
	a := int(b.geo.WriteAlign)
	buf := make([]byte, (len(e)+a-1)/a*a)
	fillBytes(buf, b.geo.EraseValue)
	copy(buf, e[:])
	if err := dev.Program(off, buf); err != nil {
		return flashErr(fmt.Sprintf("program otadata entry %d at 0x%x", w.Sector, off), err)
	}
	two[w.Sector] = w.Entry
	b.esp.known, b.esp.two = known, two
	return nil
}

// espView is what otadata says, against the slot that runs.
type espView struct {
	two     [2]espidf.Entry
	active  int  // espidf.Active, -1 for none
	sel     Slot // the slot the active entry selects
	running Slot
}

func newESPView(two [2]espidf.Entry, running Slot) espView {
	v := espView{two: two, active: espidf.Active(two), running: running}
	if v.active >= 0 {
		i, _ := espidf.Slot(two[v.active].Seq, espConfig.AppCount) // AppCount is 2
		v.sel = espSlot(i)
	}
	return v
}

func (v espView) state() espidf.State {
	if v.active < 0 {
		return espidf.StateUndefined
	}
	return v.two[v.active].State
}

// trial: the running image was booted from a new entry and has not marked
// itself valid; the next power-on aborts it.
func (v espView) trial() bool {
	return v.active >= 0 && v.sel == v.running && v.state() == espidf.StatePendingVerify
}

// pending: esp_ota_set_boot_partition named the other slot; the next
// power-on boots it (new: on trial; undefined: for good).
func (v espView) pending() bool {
	return v.active >= 0 && v.sel != v.running && (v.state() == espidf.StateNew || v.state() == espidf.StateUndefined)
}

// selects reports whether a valid entry selects slot s: the bootloader
// boots it once the active entry is given up, and a rollback may return
// to it (esp_ota_check_rollback_is_possible).
func (v espView) selects(s Slot) bool {
	for _, e := range v.two {
		if i, _ := espidf.Slot(e.Seq, espConfig.AppCount); e.Valid() && espSlot(i) == s {
			return true
		}
	}
	return false
}

// confirmed: the running image needs no confirm: its entry is valid or
// undefined (a permanent request), or no entry names it (booted as the
// first image, before otadata had an entry).
func (v espView) confirmed() bool {
	if v.active < 0 || v.sel != v.running {
		return !v.trial()
	}
	return v.state() == espidf.StateValid || v.state() == espidf.StateUndefined
}

// espBootState describes an esp-idf board: the running slot, the pending
// one, the trial; the slot that does not run is bootable only when its
// image verifies and a valid entry still names it or a request does.
func espBootState(v espView, p Params, check func(s Slot, minCounter uint32) (slotImage, error)) (hal.BootState, error) {
	st := hal.BootState{Trial: v.trial(), SecurityCounter: p.SecurityCounter}
	if st.Trial {
		st.BootCount = 1
	}
	for _, s := range []Slot{SlotApp, SlotOTA} {
		si, err := check(s, p.SecurityCounter)
		if err != nil {
			return st, err
		}
		pending := v.pending() && v.sel == s
		if s != v.running && !pending && !v.selects(s) && si.bootable() {
			si = slotImage{img: si.img, err: fmt.Errorf("image %s in %s: no valid otadata entry names it (reverted, rolled back or cancelled): it boots again only when installed again", si.img.Version, s.Name())}
		}
		ss := hal.SlotState{
			Name:      s.Name(),
			Bootable:  si.bootable(),
			Active:    s == v.running,
			Pending:   pending,
			Confirmed: s == v.running && v.confirmed() && si.bootable(),
		}
		if si.bootable() {
			ss.Version = si.version()
		}
		st.Slots = append(st.Slots, ss)
	}
	return st, nil
}

// bootESP is ESP-IDF's bootloader: the entry selection with its rollback
// writes (pending-verify → aborted, new → pending-verify), then the image
// of the chosen slot, or the other one if it does not verify
// (bootloader_utility_load_boot_image tries lower indices, then higher,
// and writes nothing), then set_actual_ota_seq when otadata had no usable
// entry. What runs and the security counter go to params after.
func bootESP(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	res := hal.RebootResult{Action: ActionNone}
	p := s.params()
	// A power-on: the bootloader reads otadata afresh.
	b.esp.known = false
	two, err := b.readOtadata(dev)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	before := newESPView(two, p.Running)
	sel, err := espidf.SelectBoot(two, espConfig)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	aborted := false
	for _, w := range sel.Writes {
		if w.Entry.State == espidf.StateAborted {
			aborted = true
		}
		if err := b.writeOtadata(dev, w); err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		two[w.Sector] = w.Entry
	}
	// No factory app: Index is an OTA slot. Try it, then the other one.
	target := espSlot(sel.Index)
	si, err := checkSlot(dev, b, target, opts.Keys, p.SecurityCounter)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	if !si.bootable() {
		other := target.Other()
		so, err := checkSlot(dev, b, other, opts.Keys, p.SecurityCounter)
		if err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		if !so.bootable() {
			return res, hal.Errorf(hal.CodeNoImage, "boot: no bootable image: %v; %v", si.err, so.err)
		}
		res.Detail = fmt.Sprintf("%v; booted %s instead", si.err, other.Name())
		target, si = other, so
	}
	if sel.Initial {
		w := espidf.Write{Sector: 0, Entry: espidf.NewEntry(uint32(target)+1, espidf.StateValid)}
		if err := b.writeOtadata(dev, w); err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		two[0] = w.Entry
	}
	after := newESPView(two, target)
	switch {
	case target == p.Running && !aborted:
	case p.RolledBack:
		res.Action = ActionRolledBack
	case aborted && before.trial():
		res.Action = ActionReverted
		res.Detail = joinDetail(res.Detail, fmt.Sprintf("image in %s booted without marking itself valid: ESP-IDF aborted its entry; back to %s", p.Running.Name(), target.Name()))
	case after.trial():
		res.Action = ActionTrial
	case target != p.Running:
		res.Action = ActionSwitched
	}
	p.Running, p.Active, p.RolledBack = target, target, false
	p.Trial, p.BootCount, p.Pending = after.trial(), 0, false
	if p.Trial {
		p.BootCount = 1
	}
	p.Confirmed = after.confirmed()
	if p.Confirmed {
		// The counter follows an image once it no longer runs on trial,
		// as ESP-IDF's anti-rollback burns secure_version then.
		p.SecurityCounter = max(p.SecurityCounter, si.img.SecurityCounter)
	}
	if err := s.setParams(p); err != nil {
		return res, fmt.Errorf("boot: record the boot of %s: %w", target.Name(), err)
	}
	res.Slot, res.Version = target.Name(), si.version()
	return res, nil
}

// otadata reads the entries into a view against the slot that runs.
func (pl *Platform) otadata() (espView, error) {
	two, err := pl.b.readOtadata(pl.dev)
	if err != nil {
		return espView{}, err
	}
	return newESPView(two, pl.s.params().Running), nil
}

// setBootESP is SetBoot on an esp-idf board (under the lock): test is
// esp_ota_set_boot_partition with rollback (state new), permanent the
// same call as a build without rollback writes it (state undefined, which
// the bootloader boots without a trial), confirm
// esp_ota_mark_app_valid_cancel_rollback.
func (pl *Platform) setBootESP(req hal.BootRequest) error {
	p := pl.s.params()
	v, err := pl.otadata()
	if err != nil {
		return fmt.Errorf("set boot %s: %w", req.Mode, err)
	}
	var w espidf.Write
	switch req.Mode {
	case hal.BootTest, hal.BootPermanent:
		target := pl.b.updateSlot(p.Running)
		if _, err := pl.checkRequest(req, target, p.SecurityCounter); err != nil {
			return err
		}
		var err error
		if w, err = espidf.SetBootPartition(v.two, int(target), espConfig.AppCount, req.Mode == hal.BootTest); err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
	case hal.BootConfirm:
		if p.RolledBack {
			return hal.Errorf(hal.CodeInvalid, "set boot confirm: the image in %s was rolled back and %s boots at the next power-on: power on (Reboot) first", p.Running.Name(), p.Running.Other().Name())
		}
		if v.active < 0 || v.sel != v.running {
			// Nothing names the running image, or a request for the
			// other slot is the active entry: marking it valid would
			// skip that image's trial. The running image needs no mark.
			return nil
		}
		var ok bool
		if w, ok, err = espidf.MarkValid(v.two); err != nil || !ok {
			return err
		}
		// The entry first: a cut before the counter is raised leaves a
		// valid entry, whose image's counter the next power-on raises.
		if err := pl.b.writeOtadata(pl.dev, w); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		p.Trial, p.BootCount, p.Confirmed = false, 0, true
		if err := pl.raiseCounter(&p, p.Running); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		if err := pl.s.setParams(p); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
		return nil
	default:
		return hal.Errorf(hal.CodeInvalid, "set boot: mode %v: want test, permanent or confirm", req.Mode)
	}
	if err := pl.b.writeOtadata(pl.dev, w); err != nil {
		return fmt.Errorf("set boot %s: %w", req.Mode, err)
	}
	return nil
}

// rollbackESP is Rollback on an esp-idf board (under the lock): the active
// entry rewritten as invalid (esp_ota_mark_app_invalid_rollback's bytes).
// A request not yet booted is cancelled that way; a trial gives up its
// entry; a confirmed image gives up its entry when the other one is valid
// and its image still verifies (esp_ota_check_rollback_is_possible).
func (pl *Platform) rollbackESP() error {
	p := pl.s.params()
	v, err := pl.otadata()
	if err != nil {
		return err
	}
	switch {
	case p.RolledBack:
		return nil
	case v.pending():
		// Cancelled: the running image stays; nothing to report.
	case v.trial():
		p.RolledBack = true
	default:
		other := p.Running.Other()
		if v.active < 0 || v.sel != v.running || !v.selects(other) {
			return hal.Errorf(hal.CodeNoImage, "no image to return to: no valid otadata entry names %s", other.Name())
		}
		si, err := pl.check(other, p.SecurityCounter)
		if err != nil {
			return err
		}
		if !si.bootable() {
			return hal.Errorf(hal.CodeNoImage, "no image to return to: %v", si.err)
		}
		p.RolledBack = true
	}
	w, err := espidf.MarkInvalid(v.two)
	if err != nil {
		return hal.Errorf(hal.CodeNoImage, "no image to return to: %v", err)
	}
	// Recorded before the entry: the next power-on reports the rollback.
	if p.RolledBack {
		if err := pl.s.setParams(p); err != nil {
			return fmt.Errorf("record the rollback: %w", err)
		}
	}
	if err := pl.b.writeOtadata(pl.dev, w); err != nil {
		return fmt.Errorf("record the rollback: %w", err)
	}
	return nil
}

// cancelESP drops a request for the update slot before Init erases it: the
// bootloader must never select a half-written image.
func (pl *Platform) cancelESP(slot Slot) error {
	v, err := pl.otadata()
	if err != nil {
		return err
	}
	if !v.pending() || v.sel != slot {
		return nil
	}
	w, err := espidf.MarkInvalid(v.two)
	if err != nil {
		return err
	}
	return pl.b.writeOtadata(pl.dev, w)
}

// invalidateInactiveESP is what esp_ota_begin does with rollback after it
// erased the update slot (espidf.InvalidateInactive): the entry that still
// names that slot loses its sector, so that no rollback returns to the
// half-written image.
func (pl *Platform) invalidateInactiveESP() error {
	v, err := pl.otadata()
	if err != nil {
		return err
	}
	sector, ok := espidf.InvalidateInactive(v.two, int(v.running), espConfig.AppCount)
	if !ok {
		return nil
	}
	b := pl.b
	off := int64(b.esp.otadata.Offset) + int64(sector)*espidf.SectorSize
	known, two := b.esp.known, b.esp.two
	b.esp.known = false
	if err := pl.dev.Erase(off, espidf.SectorSize); err != nil {
		return flashErr(fmt.Sprintf("erase otadata sector %d at 0x%x", sector, off), err)
	}
	var erased [espidf.EntrySize]byte
	fillBytes(erased[:], b.geo.EraseValue)
	two[sector], _ = espidf.ParseEntry(erased[:])
	b.esp.known, b.esp.two = known, two
	return nil
}
