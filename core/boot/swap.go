package boot

import (
	"bytes"
	"cmp"
	"crypto"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// The swap scheme is MCUboot built with MCUBOOT_SWAP_USING_MOVE: app is its
// primary slot, ota its secondary. Every boot request is MCUboot's image
// trailer at the end of a slot, written with core/bootfmt/mcuboot, and the
// simulated bootloader decides from the two trailers only, as
// boot/bootutil/src/loader.c does, then swaps as swap_move.c does, with the
// swap status records in the primary's trailer. The params partition keeps
// what MCUboot keeps outside the slots (the hardware security counter), the
// key-value store, and what otaport's contract promises beyond MCUboot: which
// image a revert or a rollback gave up (Params.Rejected) and a rollback asked
// for (Params.RolledBack). docs/boot-schemes.md, "Swap (MCUboot swap-move)".

// swapGeo is a swap-move board's geometry as MCUboot sees it.
type swapGeo struct {
	sector uint64 // every sector of both slots has this size
	np, ns int    // sectors of the primary (app) and the secondary (ota)
	// lay is each slot's trailer layout, by Slot.
	lay [2]mcuboot.Layout
	// trailerSecs is how many sectors at the end of a slot hold its
	// trailer (boot_trailer_scramble_offset to the end).
	trailerSecs int
	// maxImage is MCUboot's app_max_size: the primary less its trailer
	// sectors and the sector the move shifts the image into, the
	// secondary less its trailer sectors, whichever is smaller.
	maxImage uint64
}

// Status record operations and the first index and state of each
// (BOOT_STATUS_OP_*, BOOT_STATUS_IDX_0, BOOT_STATUS_STATE_0 in bootutil_priv.h).
const (
	opMove   = 1
	opSwap   = 2
	idx0     = 1
	state0   = 1
	moveStep = 1 // BOOT_STATUS_MOVE_STATE_COUNT
	swapStep = 2 // BOOT_STATUS_SWAP_STATE_COUNT
)

// newSwapGeo checks that the board runs MCUboot swap-move and that MCUboot
// could run on its slots, and returns their geometry. Layout.Validate has
// already checked the sectors (hal's slots rule), newMCUbootGeo the trailers.
func newSwapGeo(b *board) (*swapGeo, error) {
	l := b.layout
	if b.mcub == nil || b.mcub.mode != mcuboot.SwapMove {
		return nil, fmt.Errorf("scheme swap: bootloader is %q; the simulated bootloader swaps as MCUboot swap-move only: write bootloader: {name: mcuboot, mode: swap-move}", l.Bootloader)
	}
	app, ota := b.slots[SlotApp], b.slots[SlotOTA]
	runs := b.sectors.Runs(app.Offset, app.End())
	if len(runs) != 1 {
		return nil, fmt.Errorf("scheme swap: app has sectors of several sizes; MCUboot swap-move moves the image by one sector of one size")
	}
	g := &swapGeo{sector: runs[0].Size, np: runs[0].Count, ns: int(ota.Size / runs[0].Size), lay: b.mcub.lay}
	trailer := uint64(g.lay[SlotApp].TrailerSize())
	g.trailerSecs = int((trailer + g.sector - 1) / g.sector)
	pri := int64(g.np-g.trailerSecs-1) * int64(g.sector)
	sec := int64(g.ns-g.trailerSecs) * int64(g.sector)
	if min(pri, sec) <= 0 {
		return nil, fmt.Errorf("scheme swap: app of %d sectors and ota of %d leave no room for an image beside MCUboot's trailer (%d bytes, %d sector(s)) and the sector the move needs: make both slots larger",
			g.np, g.ns, trailer, g.trailerSecs)
	}
	g.maxImage = uint64(min(pri, sec))
	return g, nil
}

// trailer reads slot s's trailer fields (its last InfoSize bytes) and what
// MCUboot makes of them (boot_read_swap_state).
func (b *board) trailer(r io.ReaderAt, s Slot) (mcuboot.State, []byte, error) {
	l := b.mcub.lay[s]
	p := b.slots[s]
	tail := make([]byte, l.InfoSize())
	if _, err := r.ReadAt(tail, int64(p.End())-int64(len(tail))); err != nil {
		return mcuboot.State{}, nil, flashErr(fmt.Sprintf("read the trailer of %s", p.Name), err)
	}
	st, err := l.Decode(tail)
	if err != nil {
		return mcuboot.State{}, nil, fmt.Errorf("trailer of %s: %w", p.Name, err)
	}
	return st, tail, nil
}

// trailers reads both.
func (b *board) trailers(r io.ReaderAt) (pri, sec mcuboot.State, err error) {
	if pri, _, err = b.trailer(r, SlotApp); err != nil {
		return pri, sec, err
	}
	sec, _, err = b.trailer(r, SlotOTA)
	return pri, sec, err
}

// writeTrailer programs ws, offsets in slot s.
func (b *board) writeTrailer(dev flash.Device, s Slot, ws []mcuboot.Write) error {
	p := b.slots[s]
	for _, w := range ws {
		if err := dev.Program(int64(p.Offset)+int64(w.Off), w.Data); err != nil {
			return flashErr(fmt.Sprintf("write the trailer of %s at 0x%x", p.Name, w.Off), err)
		}
	}
	return nil
}

// scrambleTrailer is swap_scramble_trailer_sectors on a flash that needs
// erasing: the sectors that hold slot s's trailer, erased one by one from
// the last (boot_erase_region backwards).
func (b *board) scrambleTrailer(dev flash.Device, s Slot) error {
	p := b.slots[s]
	secs := b.mcub.trailer[s]
	for i := len(secs) - 1; i >= 0; i-- {
		if err := dev.Erase(secs[i].off, secs[i].size); err != nil {
			return flashErr(fmt.Sprintf("erase the trailer of %s at 0x%x", p.Name, secs[i].off), err)
		}
	}
	return nil
}

// scrambleSlot is boot_scramble_slot: the whole slot erased, sector by
// sector from the first, as MCUboot does to an image that fails validation.
func (b *board) scrambleSlot(dev flash.Device, s Slot) error {
	p := b.slots[s]
	off := p.Offset
	for _, r := range b.sectors.Runs(p.Offset, p.End()) {
		for range r.Count {
			if err := dev.Erase(int64(off), int64(r.Size)); err != nil {
				return flashErr(fmt.Sprintf("erase %s at 0x%x", p.Name, off), err)
			}
			off += r.Size
		}
	}
	return nil
}

// swapTrial reports whether the image in app runs on trial: MCUboot swapped
// it in as a test (copy_done set) and nothing confirmed it (image_ok
// unset). The next power-on reverts it (the REVERT row of the table).
func swapTrial(pri mcuboot.State) bool {
	return pri.Magic == mcuboot.MagicGood && pri.CopyDone == mcuboot.FlagSet && pri.ImageOK == mcuboot.FlagUnset
}

// swapPending reports whether the secondary's trailer asks for a swap
// (test or permanent) at the next power-on.
func swapPending(sec mcuboot.State) bool {
	return sec.Magic == mcuboot.MagicGood && sec.ImageOK != mcuboot.FlagBad
}

// swapBootState describes a swap board: the image always runs from app; ota
// holds the image installed and requested, or after a swap the previous one.
// pri and sec are the trailers' states.
func swapBootState(pri, sec mcuboot.State, p Params, check func(s Slot, minCounter uint32) (slotImage, error)) (hal.BootState, error) {
	st := hal.BootState{SecurityCounter: p.SecurityCounter}
	st.Trial = swapTrial(pri) && !p.RolledBack
	if st.Trial {
		st.BootCount = 1
	}
	for _, s := range []Slot{SlotApp, SlotOTA} {
		si, err := check(s, p.SecurityCounter)
		if err != nil {
			return st, err
		}
		si = p.reject(s, si)
		ss := hal.SlotState{Name: s.Name(), Bootable: si.bootable(), Active: s == SlotApp}
		if s == SlotApp {
			ss.Confirmed = si.bootable() && !swapTrial(pri)
		} else {
			// A rollback's own request back is no install awaiting its boot.
			ss.Pending = swapPending(sec) && si.bootable() && !p.RolledBack
		}
		if si.bootable() {
			ss.Version = si.version()
		}
		st.Slots = append(st.Slots, ss)
	}
	return st, nil
}

// swapStatus is struct boot_status of a swap-move build.
type swapStatus struct {
	op, idx, state int
	swapType       mcuboot.SwapType
	swapSize       uint32
	fromPrimary    bool // BOOT_STATUS_SOURCE_PRIMARY_SLOT
}

func resetStatus() swapStatus {
	return swapStatus{op: opMove, idx: idx0, state: state0, swapType: mcuboot.SwapNone}
}

// isReset is boot_status_is_reset.
func (bs swapStatus) isReset() bool { return bs.op == opMove && bs.idx == idx0 && bs.state == state0 }

// statusOff is boot_status_off + boot_status_internal_off: where the record
// of (op, idx, state) sits in the primary slot.
func (g *swapGeo) statusOff(bs swapStatus) uint64 {
	l := g.lay[SlotApp]
	elem := uint64(l.WriteSize)
	off := uint64(l.StatusOff())
	if bs.op == opMove {
		return off + uint64(bs.idx-idx0)*moveStep*elem + uint64(bs.state-state0)*elem
	}
	return off + uint64(l.MaxImgSectors)*moveStep*elem + uint64(bs.idx-idx0)*swapStep*elem + uint64(bs.state-state0)*elem
}

// readStatus is swap_read_status for a primary-slot source: the last record
// written (swap_read_status_bytes), swap_info's type, and swap_size.
func (b *board) readStatus(r io.ReaderAt, bs *swapStatus) error {
	l := b.swap.lay[SlotApp]
	p := b.slots[SlotApp]
	elem := int(l.WriteSize)
	entries := int(l.MaxImgSectors) * (moveStep + swapStep)
	area := make([]byte, entries*elem)
	if _, err := r.ReadAt(area, int64(p.Offset)+int64(l.StatusOff())); err != nil {
		return flashErr("read the swap status of app", err)
	}
	found := -1
	for i := entries; i > 0; i-- {
		if area[(i-1)*elem] != l.Erased {
			found = i
			break
		}
	}
	moves := int(l.MaxImgSectors) * moveStep
	switch {
	case found < 0:
	case found < moves:
		bs.op, bs.idx, bs.state = opMove, found/moveStep+idx0, found%moveStep+state0
	default:
		bs.op, bs.idx, bs.state = opSwap, (found-moves)/swapStep+idx0, (found-moves)%swapStep+state0
	}
	_, tail, err := b.trailer(r, SlotApp)
	if err != nil {
		return err
	}
	base := l.SlotSize - l.InfoSize()
	info := tail[l.SwapInfoOff()-base]
	bs.swapType = mcuboot.SwapType(info & 0x0f)
	if info == l.Erased {
		bs.swapType = mcuboot.SwapNone
	}
	bs.swapSize = binary.LittleEndian.Uint32(tail[l.SwapSizeOff()-base:])
	return nil
}

// writeStatus is boot_write_status: bs.state in the first byte of one
// write unit, the rest erased.
func (b *board) writeStatus(dev flash.Device, bs swapStatus) error {
	l := b.swap.lay[SlotApp]
	buf := make([]byte, l.WriteSize)
	fillBytes(buf, l.Erased)
	buf[0] = byte(bs.state)
	off := b.slots[SlotApp].Offset + b.swap.statusOff(bs)
	if err := dev.Program(int64(off), buf); err != nil {
		return flashErr(fmt.Sprintf("write the swap status at 0x%x", off), err)
	}
	return nil
}

// copySector is boot_erase_region then boot_copy_region of one sector: the
// destination erased, then programmed with the source's bytes (in one
// program operation, where MCUboot copies through a small buffer: a cut
// anywhere in it leaves the same work to redo, as the sector's status
// record comes after it).
//
// c, when not nil, is the AES-CTR of the image the sector belongs to, at
// image offset (fromIdx or toIdx, whichever is the image's own) times the
// sector size: MCUboot decrypts as it copies into the primary and
// encrypts as it copies out of it (see swapCrypt).
func (b *board) copySector(dev flash.Device, from Slot, fromIdx int, to Slot, toIdx int, c *image.PayloadCipher, imgIdx int) error {
	sz := b.swap.sector
	src := b.slots[from].Offset + uint64(fromIdx)*sz
	dst := b.slots[to].Offset + uint64(toIdx)*sz
	if err := dev.Erase(int64(dst), int64(sz)); err != nil {
		return flashErr(fmt.Sprintf("swap: erase %s at 0x%x", b.slots[to].Name, dst), err)
	}
	buf := make([]byte, sz)
	if _, err := dev.ReadAt(buf, int64(src)); err != nil {
		return flashErr(fmt.Sprintf("swap: read %s at 0x%x", b.slots[from].Name, src), err)
	}
	if isErased(buf, b.geo.EraseValue) {
		return nil
	}
	if c != nil {
		c.XORKeyStreamAt(buf, buf, int64(imgIdx)*int64(sz))
	}
	if err := dev.Program(int64(dst), buf); err != nil {
		return flashErr(fmt.Sprintf("swap: program %s at 0x%x", b.slots[to].Name, dst), err)
	}
	return nil
}

// lastIdx is find_last_idx: how many sectors a swap of size bytes moves.
func (g *swapGeo) lastIdx(size uint32) int {
	n := int((uint64(size) + g.sector - 1) / g.sector)
	return max(n, 1)
}

// statusInit is swap_status_init on the primary: swap_info, image_ok when
// the secondary's is set, swap_size, then the magic that makes the record
// count.
func (b *board) statusInit(dev flash.Device, bs swapStatus) error {
	l := b.swap.lay[SlotApp]
	sec, _, err := b.trailer(dev, SlotOTA)
	if err != nil {
		return err
	}
	var ws []mcuboot.Write
	if bs.swapType != mcuboot.SwapNone {
		w, err := l.SwapInfoWrite(bs.swapType, 0)
		if err != nil {
			return err
		}
		ws = append(ws, w)
	}
	if sec.ImageOK == mcuboot.FlagSet {
		ws = append(ws, l.ImageOKWrite())
	}
	ws = append(ws, l.SwapSizeWrite(bs.swapSize), l.MagicWrite())
	return b.writeTrailer(dev, SlotApp, ws)
}

// fixupRevert is fixup_revert: at the start of a revert, the secondary gets
// image_ok, swap_size and magic, so that a cut after the primary's trailer
// is erased makes the next power-on finish the revert as a permanent swap.
func (b *board) fixupRevert(dev flash.Device, bs swapStatus) error {
	if bs.swapType != mcuboot.SwapRevert || bs.op != opMove || bs.idx != idx0 {
		return nil
	}
	sec, _, err := b.trailer(dev, SlotOTA)
	if err != nil || sec.Magic != mcuboot.MagicUnset {
		return err
	}
	if err := b.scrambleTrailer(dev, SlotOTA); err != nil {
		return err
	}
	l := b.swap.lay[SlotOTA]
	return b.writeTrailer(dev, SlotOTA, []mcuboot.Write{l.ImageOKWrite(), l.SwapSizeWrite(bs.swapSize), l.MagicWrite()})
}

// swapRun is swap_run after its space check: the primary's sectors moved up
// by one from the last, then per sector the secondary's into the primary
// and the moved primary's into the secondary, each step followed by its
// status record, from wherever bs says the last power-on stopped.
func (b *board) swapRun(dev flash.Device, bs *swapStatus) error {
	last := b.swap.lastIdx(bs.swapSize)
	if err := b.fixupRevert(dev, *bs); err != nil {
		return err
	}
	if bs.op == opMove {
		for idx := last; idx > 0; idx-- {
			if idx > last-bs.idx+1 {
				continue
			}
			// boot_move_sector_up
			if bs.idx == idx0 {
				if !bs.fromPrimary {
					if err := b.scrambleTrailer(dev, SlotApp); err != nil {
						return err
					}
					if err := b.statusInit(dev, *bs); err != nil {
						return err
					}
				}
				if err := b.scrambleTrailer(dev, SlotOTA); err != nil {
					return err
				}
			}
			if err := b.copySector(dev, SlotApp, idx-1, SlotApp, idx, nil, 0); err != nil {
				return err
			}
			if err := b.writeStatus(dev, *bs); err != nil {
				return err
			}
			bs.idx++
		}
		bs.idx = idx0
	}
	bs.op = opSwap
	sc, err := b.swapCiphers(dev, *bs)
	if err != nil {
		return err
	}
	for idx := 1; idx <= last; idx++ {
		if idx < bs.idx {
			continue
		}
		// boot_swap_sectors
		if bs.state == state0 {
			if err := b.copySector(dev, SlotOTA, idx-1, SlotApp, idx-1, sc.in, idx-1); err != nil {
				return err
			}
			if err := b.writeStatus(dev, *bs); err != nil {
				return err
			}
			bs.state = state0 + 1
		}
		if bs.state == state0+1 {
			if err := b.copySector(dev, SlotApp, idx, SlotOTA, idx-1, sc.out, idx-1); err != nil {
				return err
			}
			if err := b.writeStatus(dev, *bs); err != nil {
				return err
			}
			bs.idx++
			bs.state = state0
		}
	}
	return nil
}

// finishSwap is what boot_perform_update and boot_complete_partial_swap do
// after the swap: image_ok for a revert or a permanent swap
// (swap_set_image_ok, when unset), then copy_done.
func (b *board) finishSwap(dev flash.Device, t mcuboot.SwapType) error {
	l := b.swap.lay[SlotApp]
	if t == mcuboot.SwapRevert || t == mcuboot.SwapPerm {
		if err := b.setImageOK(dev); err != nil {
			return err
		}
	}
	return b.writeTrailer(dev, SlotApp, []mcuboot.Write{l.CopyDoneWrite()})
}

// setImageOK is swap_set_image_ok: image_ok on the primary when unset.
func (b *board) setImageOK(dev flash.Device) error {
	pri, _, err := b.trailer(dev, SlotApp)
	if err != nil || pri.ImageOK != mcuboot.FlagUnset {
		return err
	}
	return b.writeTrailer(dev, SlotApp, []mcuboot.Write{b.swap.lay[SlotApp].ImageOKWrite()})
}

// headerErased is boot_check_header_erased: the image magic is erased.
func (b *board) headerErased(r io.ReaderAt, s Slot) (bool, error) {
	m := make([]byte, 4)
	if _, err := r.ReadAt(m, int64(b.slots[s].Offset)); err != nil {
		return false, flashErr(fmt.Sprintf("read the header of %s", b.slots[s].Name), err)
	}
	return isErased(m, b.geo.EraseValue), nil
}

// validateSecondary is boot_validate_slot on the secondary: an erased
// header drops the trailer (and, in a revert, the primary's too: the stuck
// revert fix); an image that fails its hash, signature or security counter
// has the whole slot erased. ok reports a valid image; why says what failed.
func (b *board) validateSecondary(dev flash.Device, keys []crypto.PublicKey, minCounter uint32, t mcuboot.SwapType) (ok bool, why string, err error) {
	erased, err := b.headerErased(dev, SlotOTA)
	if err != nil {
		return false, "", err
	}
	if erased {
		if err := b.scrambleTrailer(dev, SlotOTA); err != nil {
			return false, "", err
		}
		if t == mcuboot.SwapRevert {
			if err := b.scrambleTrailer(dev, SlotApp); err != nil {
				return false, "", err
			}
		}
		return false, "ota holds no image", nil
	}
	si, err := checkSlot(dev, b, SlotOTA, keys, minCounter)
	if err != nil {
		return false, "", err
	}
	if si.bootable() {
		return true, "", nil
	}
	if err := b.scrambleSlot(dev, SlotOTA); err != nil {
		return false, "", err
	}
	return false, si.err.Error() + "; MCUboot erased ota", nil
}

// imageSize is boot_read_image_size for a slot whose header has the image
// magic: header, payload and TLVs; 0 when there is none.
func (b *board) imageSize(r io.ReaderAt, s Slot) uint32 {
	p := b.slots[s]
	img, err := image.Parse(io.NewSectionReader(r, int64(p.Offset), int64(p.Size)), int64(p.Size))
	if err != nil || img == nil {
		return 0
	}
	return uint32(img.TotalSize)
}

// bootSwap is MCUboot swap-move's boot_go for one image: resume a swap a
// power cut stopped, or decide from the trailers, validate the secondary,
// swap; then raise the security counter as MCUBOOT_HW_ROLLBACK_PROT does and
// boot app if its image verifies.
func bootSwap(dev flash.Device, b *board, s *store, opts Options) (hal.RebootResult, error) {
	res := hal.RebootResult{Action: ActionNone}
	p := s.params()
	pri, sec, err := b.trailers(dev)
	if err != nil {
		return res, fmt.Errorf("boot: %w", err)
	}
	bs := resetStatus()
	// swap_status_source: a swap started (primary's magic) and not done
	// (copy_done) while the secondary's request is gone.
	if pri.Magic == mcuboot.MagicGood && pri.CopyDone == mcuboot.FlagUnset && sec.Magic != mcuboot.MagicGood {
		bs.fromPrimary = true
		if err := b.readStatus(dev, &bs); err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
	}
	rolledBack := p.RolledBack
	var t mcuboot.SwapType
	switch {
	case !bs.isReset():
		// boot_complete_partial_swap: swap_size and the type come from
		// the primary's trailer.
		t = bs.swapType
		res.Detail = fmt.Sprintf("resumed the %s swap at %s step %d of %d sectors", swapName(t), opName(bs.op), min(bs.idx, b.swap.lastIdx(bs.swapSize)+1), b.swap.lastIdx(bs.swapSize))
	default:
		if bs.fromPrimary && bs.swapType != mcuboot.SwapNone {
			t = bs.swapType
		} else {
			t = mcuboot.Decide(mcuboot.SwapMove, pri, sec)
		}
		if t == mcuboot.SwapNone {
			break
		}
		ok, why, err := b.validateSecondary(dev, opts.Keys, p.SecurityCounter, t)
		if err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		if !ok {
			res.Detail = fmt.Sprintf("%s swap not done: %s", swapName(t), why)
			if bs.fromPrimary && bs.swapType != mcuboot.SwapNone {
				// BOOT_SWAP_TYPE_FAIL: pretend the revert happened.
				if err := b.setImageOK(dev); err != nil {
					return res, fmt.Errorf("boot: %w", err)
				}
			}
			t = mcuboot.SwapNone
			break
		}
		bs.swapSize = max(b.imageSize(dev, SlotApp), b.imageSize(dev, SlotOTA))
		if last, first := b.swap.lastIdx(bs.swapSize), b.swap.np-b.swap.trailerSecs; last >= first {
			res.Detail = fmt.Sprintf("%s swap not done: it needs %d bytes, app has %d beside its trailer and the move's sector (MCUboot: not enough free space)",
				swapName(t), (last+1)*int(b.swap.sector), first*int(b.swap.sector))
			t = mcuboot.SwapNone
			break
		}
		bs.swapType = t
		// Before the first flash operation of the swap: a revert, or the
		// permanent swap a rollback asked for, gives up the image it
		// moves into ota. No swap lifts that: only SetBoot does, before
		// it writes a request. (A revert cut after app's trailer was
		// erased finishes as a permanent swap, fixup_revert's doing: the
		// image it moves into ota is still the one given up.)
		p.Rejected = p.Rejected || t == mcuboot.SwapRevert || p.RolledBack
		p.RolledBack = false
		if err := s.setParams(p); err != nil {
			return res, fmt.Errorf("boot: record the %s swap: %w", swapName(t), err)
		}
	}
	if t != mcuboot.SwapNone {
		if err := b.swapRun(dev, &bs); err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		if err := b.finishSwap(dev, t); err != nil {
			return res, fmt.Errorf("boot: %w", err)
		}
		switch {
		case t == mcuboot.SwapTest:
			res.Action = ActionTrial
		case rolledBack:
			res.Action = ActionRolledBack
		case t == mcuboot.SwapRevert:
			res.Action = ActionReverted
			res.Detail = joinDetail(res.Detail, "the image did not confirm itself: swapped back")
		default:
			res.Action = ActionSwitched
		}
	}
	p = s.params()
	if t == mcuboot.SwapNone && p.RolledBack {
		// The rollback's request never reached the trailers (a power
		// cut between the two writes): nothing was given up.
		p.RolledBack = false
	}
	app, err := b.bootPrimary(dev, opts.Keys, &p)
	if err != nil {
		return res, err
	}
	if err := s.setParams(p); err != nil {
		return res, fmt.Errorf("boot: record the boot: %w", err)
	}
	res.Slot, res.Version = hal.PartApp, app.version()
	return res, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func swapName(t mcuboot.SwapType) string {
	switch t {
	case mcuboot.SwapTest:
		return "test"
	case mcuboot.SwapPerm:
		return "permanent"
	case mcuboot.SwapRevert:
		return "revert"
	}
	return fmt.Sprintf("type-%d", t)
}

func opName(op int) string {
	if op == opMove {
		return "move"
	}
	return "swap"
}

// requestSwap is boot_set_pending on ota's trailer: test, or permanent.
// MCUboot cannot turn one request into another (boot_set_next leaves a
// good magic alone) nor write over a bad magic (BOOT_EBADIMAGE): the
// trailer's sectors are erased first then, as an application does.
//
// okFirst writes image_ok before the magic: the same bytes, in an order
// where a cut leaves a permanent request or none, never the test request
// boot_set_pending's order leaves after its magic. A rollback asks for it:
// the image it returns to must not come back on trial, to be swapped out
// again at the power-on after.
//
// It returns the state the trailer holds after it.
func (b *board) requestSwap(dev flash.Device, permanent, okFirst bool) (mcuboot.State, error) {
	st, tail, err := b.trailer(dev, SlotOTA)
	if err != nil {
		return st, err
	}
	if st.Magic == mcuboot.MagicGood && swapPending(st) && (st.ImageOK == mcuboot.FlagSet) == permanent {
		return st, nil
	}
	if st.Magic != mcuboot.MagicUnset || st.ImageOK != mcuboot.FlagUnset || st.CopyDone != mcuboot.FlagUnset {
		if err := b.scrambleTrailer(dev, SlotOTA); err != nil {
			return st, err
		}
		if _, tail, err = b.trailer(dev, SlotOTA); err != nil {
			return st, err
		}
	}
	l := b.mcub.lay[SlotOTA]
	ws, err := l.SetPending(tail, 0, permanent)
	if err != nil {
		return st, fmt.Errorf("request the swap: %w", err)
	}
	if okFirst {
		slices.SortStableFunc(ws, func(a, b mcuboot.Write) int {
			return cmp.Compare(boolInt(a.Off != l.ImageOKOff()), boolInt(b.Off != l.ImageOKOff()))
		})
	}
	if err := b.writeTrailer(dev, SlotOTA, ws); err != nil {
		return st, err
	}
	return b.afterWrites(SlotOTA, tail, ws)
}

// trailerCache is a Platform's reading of the two trailers, kept as
// slotCache keeps its verification of the slots: what the Platform writes
// to a trailer it records as the state those bytes decode to, so that
// Describe reads the flash no more often on a swap board than on the
// others; a power-on forgets it all.
type trailerCache struct {
	valid [2]bool
	st    [2]mcuboot.State
}

// trailers returns the states of both trailers, from the cache when valid.
func (pl *Platform) trailers() (pri, sec mcuboot.State, err error) {
	for _, s := range []Slot{SlotApp, SlotOTA} {
		if !pl.trl.valid[s] {
			st, _, err := pl.b.trailer(pl.dev, s)
			if err != nil {
				return pri, sec, err
			}
			pl.noteTrailer(s, st)
		}
	}
	return pl.trl.st[SlotApp], pl.trl.st[SlotOTA], nil
}

// noteTrailer records the state slot s's trailer now holds.
func (pl *Platform) noteTrailer(s Slot, st mcuboot.State) { pl.trl.valid[s], pl.trl.st[s] = true, st }

// dropTrailer forgets slot s's trailer: call it before writing to it (a
// write that fails leaves it unknown).
func (pl *Platform) dropTrailer(s Slot) { pl.trl.valid[s] = false }

// afterWrites is the state of slot s's trailer once ws are programmed over
// tail (its last InfoSize bytes): NOR programming only moves bits away from
// the erased value.
func (b *board) afterWrites(s Slot, tail []byte, ws []mcuboot.Write) (mcuboot.State, error) {
	l := b.mcub.lay[s]
	out := bytes.Clone(tail)
	base := l.SlotSize - l.InfoSize()
	for _, w := range ws {
		for i, c := range w.Data {
			at := &out[w.Off-base+uint32(i)]
			if l.Erased == 0xFF {
				*at &= c
			} else {
				*at |= c
			}
		}
	}
	return l.Decode(out)
}

// erasedTrailer is the state of an erased trailer of slot s.
func (b *board) erasedTrailer(s Slot) mcuboot.State {
	l := b.mcub.lay[s]
	tail := make([]byte, l.InfoSize())
	fillBytes(tail, l.Erased)
	st, _ := l.Decode(tail) // a tail of InfoSize bytes on a valid layout
	return st
}

// setBootSwap is SetBoot on a swap board (under the lock).
func (pl *Platform) setBootSwap(req hal.BootRequest) error {
	p := pl.s.params()
	switch req.Mode {
	case hal.BootTest, hal.BootPermanent:
		if err := pl.checkTrailerRequest(req, p); err != nil {
			return err
		}
		// A new install of ota ends its rejection; recorded before the
		// request, so that the image MCUboot swaps in is never one
		// otaport still counts as given up.
		p.RolledBack, p.Rejected = false, false
		if err := pl.s.setParams(p); err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
		if err := pl.writeRequest(req.Mode == hal.BootPermanent, false); err != nil {
			return fmt.Errorf("set boot %s: %w", req.Mode, err)
		}
		return nil
	case hal.BootConfirm:
		if p.RolledBack {
			return hal.Errorf(hal.CodeInvalid, "set boot confirm: the image in app was rolled back and the image in ota boots at the next power-on: power on (Reboot) first")
		}
		return pl.confirmTrailer(p)
	}
	return hal.Errorf(hal.CodeInvalid, "set boot: mode %v: want test, permanent or confirm", req.Mode)
}

// rollbackSwap is Rollback on a swap board (under the lock): a request not
// yet acted on is cancelled by erasing the image's first sector (MCUboot
// then drops the request itself) and the trailer; a trial is reverted by
// the next power-on anyway, and the rollback is recorded; after a confirm
// the previous image, in ota, is requested permanent, MCUboot's own way
// back.
func (pl *Platform) rollbackSwap() error {
	p := pl.s.params()
	pri, sec, err := pl.trailers()
	if err != nil {
		return err
	}
	switch {
	case p.RolledBack:
		// Asked for already: the next power-on carries it out.
		return nil
	case swapPending(sec):
		return pl.cancelRequest()
	case swapTrial(pri):
		p.RolledBack = true
	default:
		si, err := pl.check(SlotOTA, p.SecurityCounter)
		if err != nil {
			return err
		}
		si = p.reject(SlotOTA, si)
		if !si.bootable() {
			return hal.Errorf(hal.CodeNoImage, "no image to return to: %v", si.err)
		}
		// Recorded before the request: the swap that returns to it
		// then knows it gives up the image in app.
		p.RolledBack = true
		if err := pl.s.setParams(p); err != nil {
			return fmt.Errorf("record the rollback: %w", err)
		}
		if err := pl.writeRequest(true, true); err != nil {
			return fmt.Errorf("request the swap back: %w", err)
		}
		return nil
	}
	if err := pl.s.setParams(p); err != nil {
		return fmt.Errorf("record the rollback: %w", err)
	}
	return nil
}

// swapCrypt is the AES-CTR of the two images of a swap, as MCUboot keeps
// them in its boot_status (boot_enc_load on each slot's ENC_* TLV): in
// decrypts the secondary's image as its sectors go into the primary, out
// encrypts the primary's as they go out, when that image carries the
// encrypted flag and a key TLV (MCUboot's primary keeps both after it
// decrypted the image in). nil when the image is plain or there is no key.
//
// MCUboot saves the two AES keys in the primary's trailer, for a swap a
// power cut interrupts; this simulation keeps MCUboot's unencrypted
// trailer layout (core/bootfmt/mcuboot) and reads the keys again from the
// TLVs instead, wherever the swap has moved them so far: a divergence in
// the trailer's bytes, not in what the swap does.
type swapCrypt struct {
	in, out *image.PayloadCipher
}

// swapCiphers returns the ciphers of a swap at bs (op swap): where each
// image's sectors are at that step (see sectorView) gives its header and
// TLVs, which no swap encrypts.
func (b *board) swapCiphers(r io.ReaderAt, bs swapStatus) (swapCrypt, error) {
	var sc swapCrypt
	if b.decKey == nil {
		return sc, nil
	}
	last := b.swap.lastIdx(bs.swapSize)
	app, ota := b.slots[SlotApp].Offset, b.slots[SlotOTA].Offset
	sz := b.swap.sector
	done := bs.idx - idx0 // sectors of the old image out, of the new in
	in := sectorView{r: r, sz: sz, n: last, at: func(k int) uint64 {
		if k < done || k == done && bs.state > state0 {
			return app + uint64(k)*sz
		}
		return ota + uint64(k)*sz
	}}
	out := in
	out.at = func(k int) uint64 {
		if k < done {
			return ota + uint64(k)*sz
		}
		return app + uint64(k+1)*sz
	}
	var err error
	if sc.in, err = b.imageCipher(&in); err != nil {
		return sc, err
	}
	if sc.out, err = b.imageCipher(&out); err != nil {
		return sc, err
	}
	return sc, nil
}

// imageCipher is the cipher of the image v shows, nil for one that is not
// encrypted or whose key does not unwrap (MCUboot then copies it as it is).
func (b *board) imageCipher(v *sectorView) (*image.PayloadCipher, error) {
	img, err := image.Parse(v, int64(v.n)*int64(v.sz))
	if v.err != nil {
		return nil, flashErr("swap: read an image's key TLV", v.err)
	}
	if err != nil || img.Encryption == nil || img.Encryption.KeyTLV == 0 {
		return nil, nil
	}
	key, err := image.UnwrapKey(img, b.decKey)
	if err != nil {
		return nil, nil
	}
	return image.NewPayloadCipher(img.Header, key)
}

// sectorView reads an image whose sector k is at flash offset at(k).
type sectorView struct {
	r   io.ReaderAt
	sz  uint64
	n   int
	at  func(k int) uint64
	err error // a read of the flash that failed
}

func (v *sectorView) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for len(p) > 0 {
		k := int(uint64(off) / v.sz)
		if off < 0 || k >= v.n {
			return done, io.EOF
		}
		in := uint64(off) % v.sz
		n := min(len(p), int(v.sz-in))
		if _, err := v.r.ReadAt(p[:n], int64(v.at(k)+in)); err != nil {
			v.err = err
			return done, err
		}
		p, off, done = p[n:], off+int64(n), done+n
	}
	return done, nil
}
