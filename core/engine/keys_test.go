package engine_test

import (
	"context"
	"crypto"
	"errors"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
)

// TestKeySet_RotateAndRevoke rotates a device's image key over the air and
// revokes the old one, on every kind of bootloader: otaport's own reads the
// set, so the new key needs no reflash; MCUboot and ESP-IDF read none, so
// the new key must be one the bootloader already holds.
func TestKeySet_RotateAndRevoke(t *testing.T) {
	for _, b := range boards {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			l := catalogLayout(t, b.name)
			reads := keyset.ReadsSet(l.Bootloader.Name)
			a, nb, root := newKeysOf(t, l.Signature), newKeysOf(t, l.Signature), newKeysOf(t, image.KeyEd25519)
			k := a
			if !reads {
				// The bootloader holds both keys from the factory; the
				// second one is dormant until a set puts it to work.
				k.pub = []crypto.PublicKey{a.priv.Public(), nb.priv.Public()}
			}
			d := newDevice(t, b.name, k)
			d.factory("1.0.0", b.payload)
			e := d.engine(engine.Options{})

			mk := func(sp keyset.Spec, signers ...crypto.Signer) []byte {
				t.Helper()
				raw, err := keyset.Sign(sp, signers...)
				if err != nil {
					t.Fatal(err)
				}
				return raw
			}
			// v2 retires a for good, with a new root; taken too early it
			// would leave the running image (signed with a) unbootable.
			v2 := mk(keyset.Spec{Version: 2, Roots: []crypto.PublicKey{root.priv.Public()}, ImageKeys: []crypto.PublicKey{nb.priv.Public()}, Revoked: []crypto.PublicKey{a.priv.Public()}}, a.priv, root.priv)
			if reads {
				if _, err := e.ApplyKeySet(ctx, v2); err == nil || !strings.Contains(err.Error(), "running image") {
					t.Fatalf("a set that revokes the running image's key: got %v, want a refusal naming the running image", err)
				}
			}
			v1 := mk(keyset.Spec{Version: 1, Roots: []crypto.PublicKey{a.priv.Public()}, ImageKeys: []crypto.PublicKey{a.priv.Public(), nb.priv.Public()}}, a.priv)
			if s, err := e.ApplyKeySet(ctx, v1); err != nil || s.Version != 1 {
				t.Fatalf("apply v1: %v", err)
			}
			if _, err := e.ApplyKeySet(ctx, v1); !errors.Is(err, keyset.ErrRefused) {
				t.Fatalf("v1 again: got %v, want refused as a replay", err)
			}

			// An image signed with the new key installs, and the
			// bootloader boots it.
			if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, nb.priv, "1.1.0", b.payload, 2))}); err != nil {
				t.Fatalf("install 1.1.0 signed with the new key: %v", err)
			}
			d.expectRuns("1.1.0+0")
			if err := e.Confirm(ctx); err != nil {
				t.Fatal(err)
			}
			if s, err := e.ApplyKeySet(ctx, v2); err != nil || s.Version != 2 {
				t.Fatalf("apply v2: %v", err)
			}
			if s, err := d.engine(engine.Options{}).KeySet(ctx); err != nil || s == nil || s.Version != 2 {
				t.Fatalf("the set kept: %v, %v", s, err)
			}
			if st := d.status(); st.KeySet != 2 {
				t.Fatalf("status says key set %d, want 2", st.KeySet)
			}

			// The revoked key's image is refused before a byte is
			// written; the new key's installs.
			err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, a.priv, "1.2.0", b.payload, 3))})
			if !errors.Is(err, engine.ErrRefused) && !errors.Is(err, image.ErrUnknownKey) {
				t.Fatalf("install of an image signed with the revoked key: got %v, want refused", err)
			}
			d.expectRuns("1.1.0+0")
			if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, nb.priv, "1.2.0", b.payload, 3))}); err != nil {
				t.Fatalf("install 1.2.0 signed with the new key: %v", err)
			}
			d.expectRuns("1.2.0+0")
		})
	}
}
