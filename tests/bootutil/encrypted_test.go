package bootutil

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"os"
	"path/filepath"
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

// TestMCUboot_OverwriteOnlyDecryptsAnEncryptedInstall installs encrypted
// images through core/boot's Platform on the nRF5340-DK, ciphertext in the
// secondary slot as the engine leaves it there: one otaimg made for a
// fresh P-256 key, and imgtool's ECIES-P256 image of core/image's test
// data (its signing key is its encryption key). MCUboot's own
// overwrite-only bootloader built with encryption and that key copies it
// over the primary slot decrypted (boot_copy_image); core/boot's, given
// the same key, leaves both slots byte for byte as MCUboot does, the
// primary holding the plain payload under the image's header and TLVs.
// Then a power cut before each of MCUboot's flash operations of the copy:
// the next power-on, by either bootloader, copies again from the
// ciphertext still in the secondary and leaves the same slots.
func TestMCUboot_OverwriteOnlyDecryptsAnEncryptedInstall(t *testing.T) {
	mcubootTree(t)
	l, g := boardGeo(t, "nrf5340-dk")
	fixedPEM, err := os.ReadFile(filepath.Join("..", "..", "core", "image", "testdata", "keys", "ecdsa-p256.pem"))
	if err != nil {
		t.Fatal(err)
	}
	fixed, err := image.LoadPrivateKey(fixedPEM)
	if err != nil {
		t.Fatal(err)
	}
	imgtoolImg, err := os.ReadFile(filepath.Join("..", "..", "core", "image", "testdata", "imgtool", "ecdsa-p256-enc-ec256.img"))
	if err != nil {
		t.Fatal(err)
	}
	imgtoolPlain, err := os.ReadFile(filepath.Join("..", "..", "core", "image", "testdata", "imgtool", "payload.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var fresh [2]crypto.Signer // otaimg's signing key and the device's encryption key
	for i := range fresh {
		if fresh[i], err = image.GenerateKey(image.KeyECDSAP256); err != nil {
			t.Fatal(err)
		}
	}
	ownPlain := payload(2, 61000)
	cases := []struct {
		name     string
		sig, dev crypto.Signer // the signing key, the device's encryption key
		enc      func(s signer) []byte
		plain    []byte
		version  string
	}{
		{"otaimg", fresh[0], fresh[1], func(s signer) []byte {
			ver, _ := image.ParseVersion("1.1.0")
			b, err := image.Sign(ownPlain, s.key, image.SignOptions{Version: ver, Encrypt: fresh[1].Public()})
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, ownPlain, "1.1.0+0"},
		{"imgtool", fixed, fixed, func(signer) []byte { return imgtoolImg }, imgtoolPlain, "1.4.0+0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := signerOf(t, tc.sig)
			b := compileWith(t, t.TempDir(), mcuboot.OverwriteOnly, g.maxImgSectors(), s, tc.dev)
			enc := tc.enc(s)
			opts := boot.Options{Keys: []crypto.PublicKey{s.key.Public()}, DecryptKey: tc.dev}
			installed := newDevice(t, g, mcuboot.OverwriteOnly)
			installed.write(t, g.pri, 0, s.sign(t, payload(1, 50000), "1.0.0"))
			platform(t, l, installed, opts, func(ctx context.Context, pl *boot.Platform) error {
				return call(ctx, pl, "test", enc)
			})
			hdr, err := image.ParseHeader(enc)
			if err != nil {
				t.Fatal(err)
			}
			at := uint64(hdr.HeaderSize)
			// alike powers on d with MCUboot and a copy of it with core/boot's
			// bootloader: both boot tc.version from the plain payload and
			// leave the same slots.
			alike := func(what string, d *device) {
				t.Helper()
				sim := d.clone(t)
				res, simErr := boot.Boot(sim.fl, l, opts)
				r := b.powerOn(t, d)
				if len(r.refused) > 0 || !r.booted || r.slot != "primary" || r.version != tc.version {
					t.Fatalf("%s: MCUboot %s (refused %q), want boots primary %s\nMCUboot's log:\n%s", what, r, r.refused, tc.version, r.log)
				}
				if simErr != nil || res.Version != tc.version {
					t.Errorf("%s: core/boot's bootloader boots %+v (%v), MCUboot %s", what, res, simErr, r.version)
				}
				if !bytes.Equal(d.read(t, g.pri, at, len(tc.plain)), tc.plain) {
					t.Fatalf("%s: MCUboot's primary slot does not hold the plain payload", what)
				}
				for _, a := range []area{g.pri, g.sec} {
					got, want := sim.read(t, a, 0, int(a.size)), d.read(t, a, 0, int(a.size))
					if i := firstDiff(got, want); i < len(got) {
						t.Errorf("%s: core/boot leaves the %s slot other than MCUboot does: at 0x%x it holds %02x, MCUboot %02x", what, a.name, i, got[i], want[i])
					}
				}
			}
			alike("the power-on", installed.clone(t))
			// MCUboot copies through a 1 KiB buffer (BUF_SZ in loader.c):
			// its count of writes and erases is the finer one to cut in.
			n := b.powerOn(t, installed.clone(t)).ops
			for k := 1; k <= n; k++ {
				d := installed.clone(t)
				if r := b.powerOnCut(t, d, k); !r.cut {
					t.Fatalf("cut at %d of %d: MCUboot %s", k, n, r)
				}
				alike(fmt.Sprintf("after a cut at operation %d of %d", k, n), d)
			}
		})
	}
}
