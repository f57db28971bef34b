package agent

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"slices"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// A module's version reports carry the hash of the image it runs
// (cloud.InformParams.ImageHash): the hash TLV a delta image made from that
// image names as its base, so that the fleet sends the module the delta
// that applies to it and the full image otherwise.

// imageHashLink is a Link whose version reports can carry a module's
// running image hash; *cloud.Client is one.
type imageHashLink interface {
	SetImageHash(module, hash string) error
}

// runningHash returns the lower-case hex of the hash TLV of the image
// that runs, read from its slot through the port (hal.SlotReader), as the
// engine reads it to check a delta's base; "" when no image the bootloader
// can verify runs. A port that cannot read its running slot reports no
// hash, and is sent full images, which are all it can take.
func runningHash(ctx context.Context, port Port, info hal.Info) (string, error) {
	run, ok := info.Boot.Running()
	if !ok || !run.Bootable {
		return "", nil
	}
	sr, ok := port.(hal.SlotReader)
	if !ok || !slices.Contains(info.Capabilities, hal.CapReadSlot) {
		return "", fmt.Errorf("the port cannot read its running slot (it lists no %q capability)", hal.CapReadSlot)
	}
	p, ok := info.Layout.Partition(run.Name)
	if !ok {
		return "", fmt.Errorf("board %s describes no %s partition, the running slot", info.Layout.Board, run.Name)
	}
	img, err := image.Parse(slotAt{ctx: ctx, r: sr, slot: run.Name}, int64(p.Size))
	if err != nil {
		return "", fmt.Errorf("the image in %s: %w", run.Name, err)
	}
	if img.HashType != image.TLVSHA256 {
		// A delta's base is always a SHA256 hash TLV (image.SignDelta).
		return "", fmt.Errorf("the image in %s carries a %s hash, not SHA256", run.Name, img.HashType)
	}
	return hex.EncodeToString(img.Hash), nil
}

// slotAt reads one slot through the port as an io.ReaderAt.
type slotAt struct {
	ctx  context.Context
	r    hal.SlotReader
	slot string
}

func (s slotAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", s.slot, off)
	}
	b, err := s.r.ReadSlot(s.ctx, s.slot, uint64(off), len(p))
	n := copy(p, b)
	if err == nil && n < len(p) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
