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
// size, and in single-bank no more than app's either, since the bootloader
// copies the image over app. It fails as UpdateSlot does.
func (i Info) MaxImageSize() (uint64, error) {
	p, err := i.UpdateSlot()
	if err != nil {
		return 0, err
	}
	n := p.Size
	if i.Layout.Scheme == SingleBank {
		if app, ok := i.Layout.Partition(PartApp); ok {
			n = min(n, app.Size)
		}
	}
	return n, nil
}
