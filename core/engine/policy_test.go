package engine_test

import (
	"context"
	"crypto"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/image"
)

// TestInstall_RefusesAnotherSignatureAlgorithm is issue 9's reproduction 4:
// a board whose image.signature is ecdsa-p256 installed and booted an
// ed25519-signed image because that key was trusted too.
func TestInstall_RefusesAnotherSignatureAlgorithm(t *testing.T) {
	const size = 12 << 10
	ctx := context.Background()
	ecdsaKey, err := image.GenerateKey(image.KeyECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	both := keys{priv: ecdsaKey, pub: []crypto.PublicKey{ecdsaKey.Public(), edKey.Public()}}

	t.Run("both keys trusted", func(t *testing.T) {
		d := newDevice(t, "nrf52840-dk", both) // image.signature: ecdsa-p256
		d.factory("1.0.0", size)
		err := d.engine(engine.Options{}).Install(ctx, engine.Source{URL: writeFile(t, signed(t, edKey, "1.1.0", size, 1))})
		wantIs(t, err, engine.ErrRefused)
		for _, say := range []string{"ed25519", "ecdsa-p256", "nrf52840-dk"} {
			if !strings.Contains(err.Error(), say) {
				t.Errorf("error %q does not name %s", err, say)
			}
		}
		for _, s := range d.status().Slots {
			if s.Pending {
				t.Errorf("slot %s is pending after an image of another algorithm", s.Name)
			}
		}
		d.expectRuns("1.0.0+0")
	})

	t.Run("only a key of another algorithm trusted", func(t *testing.T) {
		d := newDevice(t, "nrf52840-dk", both)
		d.factory("1.0.0", size)
		before := d.region("ota")
		e := d.engine(engine.Options{Keys: []crypto.PublicKey{edKey.Public()}})
		err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, edKey, "1.1.0", size, 1))})
		wantIs(t, err, engine.ErrRefused)
		for _, say := range []string{"ed25519", "ecdsa-p256"} {
			if !strings.Contains(err.Error(), say) {
				t.Errorf("error %q does not name %s", err, say)
			}
		}
		if !equalBytes(before, d.region("ota")) {
			t.Errorf("the update slot was written before the image was refused")
		}
		d.expectRuns("1.0.0+0")
	})

	// The sequence tester's find on nrf5340-dk (seed 1000472): a key set
	// revoked the ed25519 key, so every trusted key was ecdsa-p256; an
	// ed25519 image was then refused only once written, and the install
	// pending before it was cancelled to make room for it.
	for _, board := range []string{"nrf5340-dk", "nrf52840-dk", "b-l475e-iot01a"} {
		t.Run("pending install kept on "+board, func(t *testing.T) {
			d := newDevice(t, board, both)
			d.factory("1.0.0", size)
			only := engine.Options{Keys: []crypto.PublicKey{ecdsaKey.Public()}}
			if err := d.engine(only).Install(ctx, engine.Source{URL: writeFile(t, signed(t, ecdsaKey, "1.1.0", size, 1))}); err != nil {
				t.Fatal(err)
			}
			err := d.engine(only).Install(ctx, engine.Source{URL: writeFile(t, signed(t, edKey, "1.2.0", size, 1))})
			wantIs(t, err, engine.ErrRefused)
			var pending []string
			for _, s := range d.status().Slots {
				if s.Pending {
					pending = append(pending, s.Version)
				}
			}
			if len(pending) != 1 || pending[0] != "1.1.0+0" {
				t.Errorf("pending after the refused image: %v, want [1.1.0+0]", pending)
			}
		})
	}
}
