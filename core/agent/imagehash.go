package agent

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/otaport/otaport/core/engine"
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
// that runs, read as the engine reads a delta's base; "" when no image the
// bootloader can verify runs. A port that cannot read its running slot
// reports no hash, and is sent full images, which are all it can take.
func runningHash(ctx context.Context, port Port, info hal.Info) (string, error) {
	img, err := engine.RunningImage(ctx, port, info)
	if err != nil || img == nil {
		return "", err
	}
	if img.HashType != image.TLVSHA256 {
		// A delta's base is always a SHA256 hash TLV (image.SignDelta).
		return "", fmt.Errorf("the running image carries a %s hash, not SHA256", img.HashType)
	}
	return hex.EncodeToString(img.Hash), nil
}
