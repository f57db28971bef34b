package engine

import (
	"context"
	"crypto"
	"fmt"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/keyset"
)

// The device's key set (core/keyset) lives in the port's key-value store
// under keyset.StoreKey, beside the device record, where otaport's own
// bootloader reads it too. Options.Keys are the anchors: the keys the
// device was provisioned with, trusted until a key set replaces them.

// keySet returns the device's current key set, nil when it has none.
func (e *Engine) keySet(ctx context.Context) (*keyset.Set, error) {
	b, ok, err := e.kv.Get(ctx, keyset.StoreKey)
	if err != nil {
		return nil, fmt.Errorf("read the key set (kv %q): %w", keyset.StoreKey, err)
	}
	if !ok {
		return nil, nil
	}
	s, err := keyset.Parse(b)
	if err != nil {
		// Only the engine writes it, after Parse: flash damage, which
		// CRC-checked records make unlikely; refusing every image is
		// the safe side, and a fresh set from the operator mends it.
		return nil, fmt.Errorf("the stored key set (kv %q) does not parse: %w; publish the current set again", keyset.StoreKey, err)
	}
	return s, nil
}

// now returns the trusted time, zero when the device has no trusted clock.
func (e *Engine) now() time.Time {
	if e.opts.Clock == nil {
		return time.Time{}
	}
	return e.opts.Clock()
}

// trustedKeys returns the keys an image for dev may be signed with: the
// key set's image keys when the device has one, else Options.Keys, both
// as keyset.Effective narrows them for the board's bootloader.
func (e *Engine) trustedKeys(ctx context.Context, dev device) ([]crypto.PublicKey, error) {
	return e.trustedKeysOf(ctx, dev.info.Layout.Bootloader.Name)
}

// trustedKeysOf is trustedKeys for a board whose bootloader is called
// bootloader.
func (e *Engine) trustedKeysOf(ctx context.Context, bootloader string) ([]crypto.PublicKey, error) {
	set, err := e.keySet(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	keys, err := keyset.Effective(set, e.opts.Keys, keyset.ReadsSet(bootloader), e.now())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return keys, nil
}

// TrustedKeys returns the keys an image may be signed with on a device of
// layout l now: the key set's image keys as l's bootloader can use them, or
// Options.Keys while there is no set. The caller has described the port
// already, so it gives the layout rather than the engine asking again.
func (e *Engine) TrustedKeys(ctx context.Context, l hal.Layout) ([]crypto.PublicKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.trustedKeysOf(ctx, l.Bootloader.Name)
}

// KeySet returns the device's current key set, nil when it has none.
func (e *Engine) KeySet(ctx context.Context) (*keyset.Set, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keySet(ctx)
}

// ApplyKeySet takes a new key set if the device's current trust allows it
// (keyset.Accept, Options.Keys as the anchors) and keeps it in the port's
// key-value store, one atomic Set: a power cut leaves the old set or the
// new one. It returns the set taken; a refusal wraps keyset.ErrRefused.
func (e *Engine) ApplyKeySet(ctx context.Context, raw []byte) (*keyset.Set, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	next, err := keyset.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	cur, err := e.keySet(ctx)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	if err := keyset.Accept(cur, e.opts.Keys, next, e.now()); err != nil {
		return nil, err
	}
	if err := e.kv.Set(ctx, keyset.StoreKey, next.Raw()); err != nil {
		return nil, fmt.Errorf("key set: keep version %d (kv %q, %d bytes): %w", next.Version, keyset.StoreKey, len(next.Raw()), err)
	}
	e.log.Info("key set taken", "version", next.Version, "image_keys", len(next.ImageKeys), "revoked", len(next.Revoked))
	return next, nil
}
