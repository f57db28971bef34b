package agent

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// A module's version reports carry the hash of the image it runs
// (cloud.InformParams.ImageHash): the hash TLV a delta image made from that
// image names as its base, so that the fleet sends the module the delta
// that applies to it and the full image otherwise.

// slotReader is a port that can read its running slot (hal's SlotReader:
// Platform.Read reaches only the update slot). A port without it reports
// no hash, and is sent full images.
type slotReader interface {
	ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error)
}

// imageHashLink is a Link whose version reports can carry a module's
// running image hash; *cloud.Client is one.
type imageHashLink interface {
	SetImageHash(module, hash string) error
}

// runningHash returns the lower-case hex of the hash TLV of the image
// that runs, read from its slot through the port; "" when no image the
// bootloader can verify runs.
func runningHash(ctx context.Context, port Port, info hal.Info) (string, error) {
	run, ok := info.Boot.Running()
	if !ok || !run.Bootable {
		return "", nil
	}
	sr, ok := port.(slotReader)
	if !ok {
		return "", fmt.Errorf("the port (%T) cannot read its running slot", port)
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

// slotAt reads one slot through a slotReader as an io.ReaderAt.
type slotAt struct {
	ctx  context.Context
	r    slotReader
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
