package engine

import (
	"crypto"
	"fmt"

	"github.com/otaport/otaport/core/image"
)

// The board's image policy: a bootloader is built for one signature
// algorithm (the board's image.signature), so an image signed with another
// one must not be installed there, even when a key of that algorithm is
// among Options.Keys.
//
// The signature's algorithm is in the image's unprotected TLV area, after
// the payload (docs/image-format.md): a stream cannot know it before the
// payload has gone by. So the policy is applied twice: up front, before the
// source is opened, the keys are narrowed to the board's algorithm and an
// install with none left is refused (no image could pass); at the end of the
// stream, before the read-back and SetBoot, an image signed with another
// algorithm is refused naming both. The bootloader (core/boot) applies the
// same rule at every boot.

// keysFor returns the keys an image for dev is verified with: those of the
// board's signature algorithm, or all of them when the board names none.
func (e *Engine) keysFor(dev device) ([]crypto.PublicKey, error) {
	alg := dev.info.Layout.Signature
	if alg == "" {
		return e.opts.Keys, nil
	}
	keys := image.KeysOfType(e.opts.Keys, alg)
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: board %s takes %s images only (image.signature) and none of the verification keys is %s (given: %s): give the board's %s public key (otarun install --key pub.pem)",
			ErrRefused, dev.info.Layout.Board, alg, alg, image.DescribeKeys(e.opts.Keys), alg)
	}
	return keys, nil
}

// checkAlgorithm refuses an image signed with another algorithm than the
// board's. img may be nil (an image that did not parse): nothing to say.
func checkAlgorithm(img *image.Image, dev device) error {
	alg := dev.info.Layout.Signature
	if img == nil || alg == "" {
		return nil
	}
	if err := img.CheckAlgorithm(alg); err != nil {
		return fmt.Errorf("%w: board %s takes %s images only (image.signature): %w: sign it with the board's %s key (otaimg sign --key)",
			ErrRefused, dev.info.Layout.Board, alg, err, alg)
	}
	return nil
}
