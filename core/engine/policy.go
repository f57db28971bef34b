package engine

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"

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

// keysFor returns the keys an image for dev is verified with: the device's
// trusted keys (trustedKeys) of the board's signature algorithm, or all of
// them when the board names none.
func (e *Engine) keysFor(ctx context.Context, dev device) ([]crypto.PublicKey, error) {
	trusted, err := e.trustedKeys(ctx, dev)
	if err != nil {
		return nil, err
	}
	alg := dev.info.Layout.Signature
	if alg == "" {
		return trusted, nil
	}
	keys := image.KeysOfType(trusted, alg)
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: board %s takes %s images only (image.signature) and none of the verification keys is %s (given: %s): give the board's %s public key (otarun install --key pub.pem)",
			ErrRefused, dev.info.Layout.Board, alg, alg, image.DescribeKeys(trusted), alg)
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
	return refuseAlgorithm(img.CheckAlgorithm(alg), dev)
}

// refuseAlgorithm words an image.ErrAlgorithm for the board, whichever
// check found it; other errors and nil pass through.
func refuseAlgorithm(err error, dev device) error {
	if !errors.Is(err, image.ErrAlgorithm) {
		return err
	}
	alg := dev.info.Layout.Signature
	return fmt.Errorf("%w: board %s takes %s images only (image.signature): %w: sign it with the board's %s key (otaimg sign --key)",
		ErrRefused, dev.info.Layout.Board, alg, err, alg)
}

// probeSpan is how much of the signature area probeAlgorithm reads: the
// TLV info header, the key hash and the largest signature (RSA-3072 is 384
// bytes) with room to spare.
const probeSpan = 4 << 10

// probeAlgorithm reads the image's signature area from the source before a
// byte goes to the slot, and refuses an image signed with another algorithm
// than the board's, when the device trusts keys of other algorithms too or
// when the update slot holds a pending image: the signatures come after
// the payload, so the stream alone learns them only once the slot is
// written, and a pending image would be lost to an image the board never
// takes. A source that cannot read ahead (no Range, a changed file, a
// short area) is no refusal: the check after the stream still applies.
func (e *Engine) probeAlgorithm(ctx context.Context, op opener, v validators, hdr image.Header, dev device) error {
	alg := dev.info.Layout.Signature
	trusted, err := e.trustedKeys(ctx, dev)
	if err != nil {
		return nil // keysFor refused before the stream began
	}
	pending := false
	if s, ok := dev.slot(dev.update.Name); ok {
		pending = s.Pending
	}
	if alg == "" || len(image.KeysOfType(trusted, alg)) == len(trusted) && !pending {
		// Every trusted key is of the board's algorithm and the slot
		// holds nothing to keep: an image signed another way verifies
		// with none of them and is refused at the end like any image of
		// an unknown key, at no extra request. With a pending image
		// (say, once a key set revoked the only key of another
		// algorithm) the read ahead is worth it: the refusal must come
		// before begin cancels the pending request.
		return nil
	}
	at := hdr.HashedSize()
	s, err := op.open(ctx, at, v)
	if err != nil {
		e.log.Debug("install: the signature area could not be read ahead", "err", err)
		return nil
	}
	defer s.body.Close()
	if s.start != at {
		return nil // the source starts over: the file is not the one whose header we hold
	}
	b, err := io.ReadAll(io.LimitReader(s.body, probeSpan))
	if err != nil {
		return nil
	}
	if err := image.CheckAreaAlgorithm(b, hdr.Version, alg); errors.Is(err, image.ErrAlgorithm) {
		return refuseAlgorithm(err, dev)
	}
	return nil // a short or malformed area: the stream's own checks say so
}
