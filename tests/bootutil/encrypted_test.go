package bootutil

import (
	"bytes"
	"context"
	"crypto"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/image"
)

// TestMCUboot_BootsAnEncryptedInstall installs an image encrypted for the
// device's P-256 key through core/boot's Platform on the nRF52840
// swap-move board, ciphertext in the secondary slot as the engine leaves
// it there, and powers on with MCUboot's own swap-move bootloader built
// with encryption (MCUBOOT_ENC_IMAGES, MCUBOOT_ENCRYPT_EC256) and that key:
// it validates the image decrypted, swaps it in decrypted, and at the next
// power-on swaps it back encrypted again. Beside it core/boot's simulated
// bootloader, given the same key, leaves the same images in both slots.
func TestMCUboot_BootsAnEncryptedInstall(t *testing.T) {
	mcubootTree(t)
	l, g := nrfSwap(t)
	s := newSigner(t)
	dev, err := image.GenerateKey(image.KeyECDSAP256) // the device's encryption key
	if err != nil {
		t.Fatal(err)
	}
	b := compileWith(t, t.TempDir(), mcuboot.SwapMove, g.maxImgSectors(), s, dev)
	old := s.sign(t, payload(1, 50000), "1.0.0")
	plain := payload(2, 61000)
	ver, _ := image.ParseVersion("1.1.0")
	enc, err := image.Sign(plain, s.key, image.SignOptions{Version: ver, Encrypt: dev.Public()})
	if err != nil {
		t.Fatal(err)
	}
	opts := boot.Options{Keys: []crypto.PublicKey{s.key.Public()}, DecryptKey: dev}

	real := newDevice(t, g, mcuboot.SwapMove)
	real.write(t, g.pri, 0, old)
	sim := real.clone(t)
	for _, d := range []*device{real, sim} {
		platform(t, l, d, opts, func(ctx context.Context, pl *boot.Platform) error {
			return call(ctx, pl, "test", enc)
		})
	}
	// The image areas of both slots: what the swap moves.
	span := (len(enc) + int(g.sector) - 1) / int(g.sector) * int(g.sector)
	for i, want := range []string{"1.1.0+0", "1.0.0+0"} {
		r := b.powerOn(t, real)
		if len(r.refused) > 0 || !r.booted || r.slot != "primary" || r.version != want {
			t.Fatalf("power-on %d: MCUboot %s (refused %q), want boots primary %s\nMCUboot's log:\n%s", i+1, r, r.refused, want, r.log)
		}
		res, err := boot.Boot(sim.fl, l, opts)
		if err != nil || res.Version != want {
			t.Errorf("power-on %d: core/boot's bootloader boots %+v (%v), MCUboot %s", i+1, res, err, want)
		}
		if i == 0 && !bytes.Equal(real.read(t, g.pri, 0x200, len(plain)), plain) {
			t.Fatal("after the swap MCUboot's primary slot does not hold the plain payload")
		}
		for _, a := range []area{g.pri, g.sec} {
			if got, want := sim.read(t, a, 0, span), real.read(t, a, 0, span); !bytes.Equal(got, want) {
				t.Errorf("power-on %d: core/boot leaves the %s slot's images other than MCUboot does, from 0x%x", i+1, a.name, firstDiff(got, want))
			}
		}
	}
	// After the swap back the secondary holds the image as installed.
	if got := real.read(t, g.sec, 0, len(enc)); !bytes.Equal(got, enc) {
		t.Fatalf("after the revert MCUboot's secondary slot differs from the encrypted image at 0x%x", firstDiff(got, enc))
	}
}
