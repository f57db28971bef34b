package main

import (
	"fmt"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/fleet/api"
	"github.com/otaport/otaport/ports/all"
)

// catalogBoards returns what otaserve checks devices and images against:
// every board of the catalog, with the largest image it takes and the
// signature algorithm its bootloader checks.
func catalogBoards() (map[string]api.Board, error) {
	out := map[string]api.Board{}
	for _, e := range all.Catalog() {
		l := e.Layout()
		n, err := maxImageSize(l)
		if err != nil {
			return nil, fmt.Errorf("catalog board %s: %w", e.Name, err)
		}
		out[e.Name] = api.Board{MaxImageSize: int64(n), Signature: l.Signature}
	}
	return out, nil
}

// maxImageSize is the largest image the board takes whichever slot runs:
// an order goes to every device of a campaign, and in dual-bank which slot
// an image lands in depends on the one that runs (hal.Info.MaxImageSize).
func maxImageSize(l hal.Layout) (uint64, error) {
	var n uint64
	for i, running := range []string{hal.PartApp, hal.PartOTA} {
		info := hal.Info{Layout: l, Boot: hal.BootState{Slots: []hal.SlotState{{Name: running, Active: true}}}}
		m, err := info.MaxImageSize()
		if err != nil {
			return 0, err
		}
		if i == 0 || m < n {
			n = m
		}
	}
	return n, nil
}
