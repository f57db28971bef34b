package boot_test

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/core/image"
)

// imgtoolTestdata reads a file of core/image's test data: imgtool's
// images and the keys they were made with (core/image/testdata/README.md).
func imgtoolTestdata(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "image", "testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encBoard is the catalog's nRF5340-DK, whose MCUboot is built
// overwrite-only, with its factory image 1.0.0 in app signed with key and
// MCUboot's decryption key dec (nil: built without MCUBOOT_ENC_IMAGES).
type encBoard struct {
	layout hal.Layout
	dev    *flash.Emulator
	opts   boot.Options
}

func newEncBoard(t testing.TB, key crypto.Signer, dec any) *encBoard {
	t.Helper()
	l, ok := haltest.Layout("nrf5340-dk")
	if !ok || l.Bootloader != (hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeOverwriteOnly}) {
		t.Fatalf("haltest's nrf5340-dk is %+v (found %v), want MCUboot overwrite-only", l.Bootloader, ok)
	}
	alg, err := image.KeyType(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	l.Signature = alg // the fixture's key: MCUboot is built for it
	dev, err := flash.NewMemoryWith(l.Flash, flash.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	b := &encBoard{layout: l, dev: dev, opts: boot.Options{Keys: []crypto.PublicKey{key.Public()}, DecryptKey: dec}}
	ver, _ := image.ParseVersion("1.0.0")
	old, err := image.Sign(bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 9000), key, image.SignOptions{Version: ver})
	if err != nil {
		t.Fatal(err)
	}
	app, _ := l.Partition(hal.PartApp)
	for len(old)%int(l.Flash.WriteAlign) != 0 {
		old = append(old, l.Flash.EraseValue)
	}
	if err := dev.Program(int64(app.Offset), old); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *encBoard) slot(t testing.TB, name string) []byte {
	t.Helper()
	p, _ := b.layout.Partition(name)
	out := make([]byte, p.Size)
	if _, err := b.dev.ReadAt(out, int64(p.Offset)); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOverwriteOnly_DecryptsImgtoolImages installs imgtool's encrypted
// images (ECIES-P256 and X25519, AES-128 and AES-256) through the Platform
// on the nRF5340-DK, the ciphertext in ota as the engine leaves it for
// MCUboot, and powers on: the copy decrypts the payload into app as
// MCUboot's boot_copy_region does, header and TLVs copied as they are (the
// encrypted flag and the key TLV stay, as MCUboot leaves them), so that
// app holds imgtool's plain payload and boots. MCUboot built without the
// key refuses the image and erases ota; app keeps the old image.
func TestOverwriteOnly_DecryptsImgtoolImages(t *testing.T) {
	payload := imgtoolTestdata(t, "imgtool", "payload.bin")
	cases := []struct{ file, sig, dec string }{
		{"ed25519-enc-x25519.img", "ed25519", "enc-x25519"},
		{"ed25519-enc-x25519-sha512-aes256.img", "ed25519", "enc-x25519"},
		{"ecdsa-p256-enc-ec256.img", "ecdsa-p256", "ecdsa-p256"},
		{"ecdsa-p256-enc-ec256-aes256.img", "ecdsa-p256", "ecdsa-p256"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			key, err := image.LoadPrivateKey(imgtoolTestdata(t, "keys", tc.sig+".pem"))
			if err != nil {
				t.Fatal(err)
			}
			dec, err := image.LoadDecryptionKey(imgtoolTestdata(t, "keys", tc.dec+".pem"))
			if err != nil {
				t.Fatal(err)
			}
			file := imgtoolTestdata(t, "imgtool", tc.file)
			img, err := image.Parse(bytes.NewReader(file), int64(len(file)))
			if err != nil || img.Encryption == nil {
				t.Fatalf("parse %s: %v (encryption %v)", tc.file, err, img.Encryption)
			}
			hdr := int(img.Header.HeaderSize)

			b := newEncBoard(t, key, dec)
			pl, err := boot.NewPlatform(b.layout, b.dev, b.opts)
			if err != nil {
				t.Fatal(err)
			}
			install(t, pl, file, hal.BootTest)
			res := reboot(t, pl)
			if res.Action != boot.ActionCopied || res.Slot != hal.PartApp || res.Version != img.Version.String() {
				t.Fatalf("power-on: %+v, want %s copied into app", res, img.Version)
			}
			app := b.slot(t, hal.PartApp)
			if !bytes.Equal(app[:hdr], file[:hdr]) {
				t.Error("app's header differs from the image's: MCUboot copies it as it is, the encrypted flag with it")
			}
			if !bytes.Equal(app[hdr:hdr+len(payload)], payload) {
				t.Fatalf("app's payload differs from imgtool's plain payload at byte %d", firstDiff(app[hdr:hdr+len(payload)], payload))
			}
			tlv := int(img.Header.HashedSize())
			if !bytes.Equal(app[tlv:img.TotalSize], file[tlv:img.TotalSize]) {
				t.Error("app's TLVs differ from the image's: MCUboot copies them as they are, the key TLV with them")
			}
			st := describe(t, pl)
			if a := slotState(st, hal.PartApp); !a.Active || !a.Bootable || a.Version != img.Version.String() {
				t.Errorf("app after the copy: %+v, want active, bootable %s", a, img.Version)
			}
			if o := slotState(st, hal.PartOTA); o.Bootable || o.Pending {
				t.Errorf("ota after the copy: %+v, want no image", o)
			}
			// A second power-on boots app as it is: nothing left to copy.
			if res := reboot(t, pl); res.Action != boot.ActionNone || res.Version != img.Version.String() {
				t.Errorf("second power-on: %+v, want %s without a copy", res, img.Version)
			}

			// The same install powered on by an MCUboot built without the
			// key: boot_validate_slot fails on ota, which it erases.
			nokey := newEncBoard(t, key, dec)
			pl, err = boot.NewPlatform(nokey.layout, nokey.dev, nokey.opts)
			if err != nil {
				t.Fatal(err)
			}
			install(t, pl, file, hal.BootTest)
			without := nokey.opts
			without.DecryptKey = nil
			if res, err := boot.Boot(nokey.dev, nokey.layout, without); err != nil || res.Action == boot.ActionCopied || res.Version != "1.0.0+0" {
				t.Fatalf("power-on without the decryption key: %+v, %v; want 1.0.0 kept", res, err)
			}
			if ota := nokey.slot(t, hal.PartOTA); !bytes.Equal(ota[:hdr], bytes.Repeat([]byte{0xff}, hdr)) {
				t.Error("ota's header after a refused image: want it erased")
			}
		})
	}
}

// TestOverwriteOnly_CutEncryptedCopyStartsOver cuts the power before,
// after and in each flash operation of the copy of an encrypted image: ota
// keeps the ciphertext and its request until the copy has ended, so the
// next power-on starts the copy again from the start and leaves app as a
// copy that no cut stopped does, the plain payload booting.
func TestOverwriteOnly_CutEncryptedCopyStartsOver(t *testing.T) {
	key := mustKey(t, 7)
	dec, err := image.GenerateEncryptionKey()
	if err != nil {
		t.Fatal(err)
	}
	b := newEncBoard(t, key, dec)
	plain := bytes.Repeat([]byte("plain payload of 1.1.0 "), 2000) // 46 KB: a dozen sectors
	ver, _ := image.ParseVersion("1.1.0")
	enc, err := image.Sign(plain, key, image.SignOptions{Version: ver, Encrypt: dec.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	pl, err := boot.NewPlatform(b.layout, b.dev, b.opts)
	if err != nil {
		t.Fatal(err)
	}
	install(t, pl, enc, hal.BootPermanent)
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	h, err := image.ParseHeader(enc)
	if err != nil {
		t.Fatal(err)
	}
	app := cutEveryCopyOp(t, b.dev, b.layout, b.opts, "1.1.0+0")
	hdr := int(h.HeaderSize)
	if !bytes.Equal(app[hdr:hdr+len(plain)], plain) {
		t.Fatal("after the copy app does not hold the plain payload")
	}
}
