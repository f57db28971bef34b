package hal

import "fmt"

// UpdateSlot names the partition a new image is written to while the
// partition called running runs ("" when no image runs). In dual-bank that
// is the slot that does not run: app while ota runs, ota otherwise. In
// single-bank it is always ota, the download area the bootloader copies
// over app. This is the one place the rule lives: the engine, the
// simulated bootloader, the conformance kit and the tools ask here.
func (l Layout) UpdateSlot(running string) string {
	if l.Scheme == DualBank && running == PartOTA {
		return PartApp
	}
	return PartOTA
}

// Running returns the state of the slot that runs now (the first one
// marked Active); ok is false when none does.
func (b BootState) Running() (slot SlotState, ok bool) {
	for _, s := range b.Slots {
		if s.Active {
			return s, true
		}
	}
	return SlotState{}, false
}

// UpdateSlot returns the partition Write and Read address now: the layout's
// update slot (Layout.UpdateSlot) for the slot the boot state says runs. It
// fails when the layout has no such partition, which leaves the board
// unable to take an update.
func (i Info) UpdateSlot() (Partition, error) {
	running, _ := i.Boot.Running()
	name := i.Layout.UpdateSlot(running.Name)
	p, ok := i.Layout.Partition(name)
	if !ok {
		return Partition{}, fmt.Errorf("board %q describes no %s partition: it cannot take an update", i.Layout.Board, name)
	}
	return p, nil
}

// MaxImageSize is the largest image the board takes now: the update slot's
// size, in single-bank no more than app's either, since the bootloader
// copies the image over app, and in swap MCUboot swap-move's limit
// (SwapMoveMaxImage). It fails as UpdateSlot does.
func (i Info) MaxImageSize() (uint64, error) {
	p, err := i.UpdateSlot()
	if err != nil {
		return 0, err
	}
	n := p.Size
	switch i.Layout.Scheme {
	case SingleBank:
		if app, ok := i.Layout.Partition(PartApp); ok {
			n = min(n, app.Size)
		}
	case Swap:
		n = min(n, i.Layout.SwapMoveMaxImage())
	}
	if i.Layout.Bootloader.Name == BootloaderMCUboot && i.Layout.Scheme != Swap {
		n = min(n, i.Layout.MCUbootMaxImage())
	}
	return n, nil
}

// MCUbootMaxImage is the most bytes an image takes on a board that runs
// MCUboot overwrite-only or direct-xip: each of app and ota less the erase
// sectors that hold any of its trailer (boot_trailer_sz without encryption,
// BOOT_MAX_IMG_SECTORS the larger slot's sector count, 3 status records a
// sector as those builds size it), whichever is smaller; 0 when the layout
// lacks a slot. core/boot computes the same through core/bootfmt/mcuboot.
func (l Layout) MCUbootMaxImage() uint64 {
	app, ok1 := l.Partition(PartApp)
	ota, ok2 := l.Partition(PartOTA)
	if !ok1 || !ok2 || l.Flash.WriteAlign == 0 {
		return 0
	}
	m := l.Flash.Map()
	w := uint64(l.Flash.WriteAlign)
	maxAlign := max(8, w)
	secs := max(m.Count(app.Offset, app.End()), m.Count(ota.Offset, ota.End()))
	trailer := secs*3*w + 4*maxAlign + (16+maxAlign-1)/maxAlign*maxAlign
	n := uint64(0)
	for i, p := range []Partition{app, ota} {
		if trailer >= p.Size {
			return 0
		}
		below, _, _ := m.Boundary(p.End() - trailer)
		if i == 0 || below-p.Offset < n {
			n = below - p.Offset
		}
	}
	return n
}

// SwapMoveMaxImage is app_max_size of MCUboot's swap_move.c for the layout's
// slots: app (the primary) less the sector the move shifts the image into
// and the sectors of its trailer, or ota (the secondary) less its trailer's
// sectors, whichever is smaller; 0 when the slots are not a valid swap-move
// pair (Validate says why). The trailer is boot_trailer_sz without
// encryption: BOOT_MAX_IMG_SECTORS (app's sector count) x 3 status records
// of one write unit, then swap size, swap info, copy_done and image_ok each
// BOOT_MAX_ALIGN (the write unit, at least 8) apart, and the 16-byte magic
// in a BOOT_MAX_ALIGN block. core/boot, which writes those bytes through
// core/bootfmt/mcuboot, checks that this arithmetic agrees with it.
func (l Layout) SwapMoveMaxImage() uint64 {
	app, ok1 := l.Partition(PartApp)
	ota, ok2 := l.Partition(PartOTA)
	if !ok1 || !ok2 || l.Flash.WriteAlign == 0 {
		return 0
	}
	m := l.Flash.Map()
	ra, ro := m.Runs(app.Offset, app.End()), m.Runs(ota.Offset, ota.End())
	if len(ra) != 1 || len(ro) != 1 || ra[0].Size != ro[0].Size {
		return 0
	}
	s, np, ns := ra[0].Size, uint64(ra[0].Count), uint64(ro[0].Count)
	w := uint64(l.Flash.WriteAlign)
	maxAlign := max(8, w)
	trailer := np*3*w + 4*maxAlign + (16+maxAlign-1)/maxAlign*maxAlign
	t := (trailer + s - 1) / s
	if np < t+2 || ns < t+1 {
		return 0
	}
	return min((np-1-t)*s, (ns-t)*s)
}
