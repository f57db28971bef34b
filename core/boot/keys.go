package boot

import (
	"crypto"
	"log/slog"
	"time"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/keyset"
)

// otaport's own bootloader reads the device's key set (core/keyset) from
// the params partition, where the engine keeps it, and checks images with
// the set's image keys instead of the keys it was built with (the anchors,
// Options.Keys): that is how a key is rotated, or revoked, on a device
// without reflashing its bootloader. It trusts the set as it trusts the boot
// request beside it: only the device's own software writes params, and the
// engine takes a set only after checking its signatures against the set
// before it (keyset.Accept). MCUboot and ESP-IDF read no such set: on their
// boards the anchors stay the bootloader's keys, and keyset.Effective keeps
// the engine to them.

// bootKeys returns the keys the bootloader of b checks images with.
func bootKeys(b *board, s *store, anchors []crypto.PublicKey, log *slog.Logger) []crypto.PublicKey {
	if !keyset.ReadsSet(b.layout.Bootloader.Name) {
		return anchors
	}
	raw, ok := s.get(keyset.StoreKey)
	if !ok {
		return anchors
	}
	keys, err := setKeys(raw, anchors)
	if err != nil {
		// Only flash damage gets here (the set is parsed before it is
		// kept): booting with the built-in keys beats booting nothing.
		log.Warn("the key set in params does not parse: checking images with the built-in keys", "err", err)
		return anchors
	}
	return keys
}

// setKeys returns the image keys of the stored set raw. The bootloader has
// no clock: expiry is the engine's to check.
func setKeys(raw []byte, anchors []crypto.PublicKey) ([]crypto.PublicKey, error) {
	set, err := keyset.Parse(raw)
	if err != nil {
		return nil, err
	}
	return keyset.Effective(set, anchors, true, time.Time{})
}

// checkKeySet refuses a key set under which the device could end up with
// nothing to boot: while a boot request or a trial is pending (the image to
// fall back to may be signed with a key the set drops), or when the running
// image does not verify with the set's image keys. Called under pl.mu.
func (pl *Platform) checkKeySet(value []byte) error {
	if !keyset.ReadsSet(pl.b.layout.Bootloader.Name) {
		return nil // the bootloader never reads it: a record for the engine only
	}
	if value == nil {
		return hal.Errorf(hal.CodeInvalid, "kv %s: a key set cannot be removed: its revocations are permanent", keyset.StoreKey)
	}
	keys, err := setKeys(value, pl.opts.Keys)
	if err != nil {
		return hal.Errorf(hal.CodeInvalid, "kv %s: %v", keyset.StoreKey, err)
	}
	p := pl.s.params()
	if p.Pending || p.Trial || p.Copy != CopyNone {
		return hal.Errorf(hal.CodeBusy, "kv %s: a boot request or a trial is pending; the image to fall back to may be signed with a key the set drops: take the set once the running image is confirmed", keyset.StoreKey)
	}
	si, err := checkSlot(pl.dev, pl.b, p.Running, keys, p.SecurityCounter)
	if err != nil {
		return err
	}
	if !si.bootable() {
		return hal.Errorf(hal.CodeInvalid, "kv %s: the running image does not verify with the set's image keys, so the device would not boot again: install an image signed with one of them first (%v)", keyset.StoreKey, si.err)
	}
	return nil
}

// keys returns the keys the platform checks slots with now.
func (pl *Platform) keys() []crypto.PublicKey {
	return bootKeys(pl.b, pl.s, pl.opts.Keys, pl.opts.logger())
}
