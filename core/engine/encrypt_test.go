package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// decKey and encPubKey load a decryption or an encryption key from
// core/image's test keys.
func decKey(t testing.TB, name string) any { return loadKey(t, name, image.LoadDecryptionKey) }

func encPubKey(t testing.TB, name string) any { return loadKey(t, name, image.LoadEncryptionKey) }

func loadKey(t testing.TB, name string, load func([]byte) (any, error)) any {
	t.Helper()
	k, err := load(imageTestdata(t, "keys", name+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestInstall_ImgtoolEncrypted installs imgtool's encrypted images: on
// boards whose bootloader does not decrypt (otaport's own, single- and
// dual-bank, and ESP-IDF) the slot gets the plain payload under the image's
// own header and TLVs and the bootloader boots it; on an MCUboot board the
// slot keeps the ciphertext byte for byte, which MCUboot decrypts.
func TestInstall_ImgtoolEncrypted(t *testing.T) {
	cases := []struct {
		file, sig, dec string
		boards         []string
	}{
		{"ed25519-enc-x25519.img", image.KeyEd25519, "enc-x25519", []string{"esp32-devkitc", "longan-nano"}},
		{"ed25519-enc-x25519-sha512-aes256.img", image.KeyEd25519, "enc-x25519", []string{"longan-nano"}},
		{"ed25519-lzma2armthumb-enc-x25519.img", image.KeyEd25519, "enc-x25519", []string{"esp32-devkitc"}},
		{"ecdsa-p256-enc-ec256.img", image.KeyECDSAP256, "ecdsa-p256", []string{"b-l475e-iot01a", "stm32f407-disco", "nrf52840-dk", "nrf5340-dk"}},
		{"ecdsa-p256-enc-ec256-aes256.img", image.KeyECDSAP256, "ecdsa-p256", []string{"nucleo-h743zi", "nrf5340-dk"}},
	}
	for _, tc := range cases {
		for _, board := range tc.boards {
			t.Run(tc.file+"/"+board, func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, board, fixedKeys(t, tc.sig))
				d.decKey = decKey(t, tc.dec) // MCUboot's, compiled in
				d.powerOn(d.dev)
				d.factoryCounter("1.0.0", 8<<10, 0)
				file := imageTestdata(t, "imgtool", tc.file)
				opts := engine.Options{ChunkSize: 4 << 10, DecryptKey: decKey(t, tc.dec)}
				if err := d.engine(opts).Install(ctx, engine.Source{URL: writeFile(t, file)}); err != nil {
					t.Fatalf("install: %v", err)
				}
				slot := d.updateSlot()
				if mcuboot := d.layout.Bootloader.Name == hal.BootloaderMCUboot; mcuboot {
					if !bytes.Equal(slot[:len(file)], file) {
						t.Fatalf("the MCUboot slot differs from the image received at byte %d: it must keep the ciphertext", firstDiffAt(slot, file))
					}
					if st := d.status(); st.State != engine.Installed {
						t.Fatalf("state %s (%s)", st.State, st.LastError)
					}
					// MCUboot decrypts it into app as it swaps or copies.
					if st := d.expectRuns("1.4.0+0"); st.State != engine.Testing {
						t.Fatalf("state %s (%s), want testing", st.State, st.LastError)
					}
					app := d.region("app")
					if !bytes.Equal(app[0x200:0x200+3000], imageTestdata(t, "imgtool", "payload.bin")) {
						t.Fatal("after the swap or the copy app does not hold the plain payload")
					}
					return
				}
				img, err := image.VerifyWith(bytes.NewReader(slot), int64(len(slot)), image.VerifyOptions{Keys: d.keys.pub, Decrypted: true})
				if err != nil {
					t.Fatalf("the slot does not hold the plain image: %v", err)
				}
				plain := imageTestdata(t, "imgtool", "payload.bin")
				if img.Encryption.KeyTLV == 0 { // the plain image of a compressed one
					plain = imageTestdata(t, "imgtool", "payload-thumb.bin")
				} else if !bytes.Equal(slot[img.Header.HashedSize():img.TotalSize], file[img.Header.HashedSize():img.TotalSize]) {
					t.Fatal("the slot's TLVs are not the image's")
				}
				if !bytes.Equal(slot[0x200:0x200+len(plain)], plain) {
					t.Fatal("the slot's payload is not the plain payload")
				}
				if st := d.expectRuns("1.4.0+0"); st.State != engine.Testing {
					t.Fatalf("state %s (%s), want testing", st.State, st.LastError)
				}
			})
		}
	}
}

// encryptedImage is otaport's own encrypted image of a payload of n
// bytes.
func encryptedImage(t testing.TB, k keys, v string, n int, pub any, comp string) []byte {
	t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	cnt := uint32(2)
	body := payload(n, 99)
	if comp != "" {
		body = bytes.Repeat(imageTestdata(t, "imgtool", "payload-thumb.bin"), 4)
	}
	b, err := image.Sign(body, k.priv, image.SignOptions{Version: ver, SecurityCounter: &cnt, Encrypt: pub, Compression: comp})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInstall_EncryptedRefused: an encrypted image is refused before
// anything is written when the device has no decryption key, and before
// the boot request when the key is another one, its payload was changed or,
// on an MCUboot board, it is compressed too; the device keeps running its
// image.
func TestInstall_EncryptedRefused(t *testing.T) {
	x := encPubKey(t, "enc-x25519.pub")
	cases := []struct {
		name, board string
		dec         any
		comp        string
		change      func(b []byte)
		is          error
		say         string
	}{
		{"no key", "longan-nano", nil, "", nil, engine.ErrRefused, "the device has no decryption key"},
		{"another key", "longan-nano", decKey(t, "ecdsa-p256"), "", nil, engine.ErrVerify, "image encrypted for another key: ENC_X25519 TLV does not unwrap"},
		{"payload byte", "longan-nano", decKey(t, "enc-x25519"), "", func(b []byte) { b[0x800] ^= 1 }, engine.ErrVerify, "image hash"},
		{"payload byte, MCUboot", "nrf52840-dk", decKey(t, "enc-x25519"), "", func(b []byte) { b[0x800] ^= 1 }, engine.ErrVerify, "image hash"},
		{"key TLV", "longan-nano", decKey(t, "enc-x25519"), "", func(b []byte) { b[len(b)-1] ^= 1 }, engine.ErrVerify, "HMAC tag does not match"},
		{"compressed, MCUboot", "nrf52840-dk", decKey(t, "enc-x25519"), image.CompressionLZMA2, nil, engine.ErrRefused, "sign it without --compression"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			k := boardKeys(t, tc.board)
			d := newDevice(t, tc.board, k)
			d.decKey = tc.dec
			d.powerOn(d.dev)
			d.factory("1.0.0", 8<<10)
			b := encryptedImage(t, k, "1.1.0", 20000, x, tc.comp)
			if tc.change != nil {
				tc.change(b)
			}
			err := d.engine(engine.Options{ChunkSize: 4 << 10, DecryptKey: tc.dec}).Install(ctx, engine.Source{URL: writeFile(t, b)})
			wantIs(t, err, tc.is)
			if !strings.Contains(err.Error(), tc.say) {
				t.Fatalf("error %q does not say %q", err, tc.say)
			}
			for _, s := range d.status().Slots {
				if s.Pending {
					t.Fatalf("slot %s pending: SetBoot ran for a refused image", s.Name)
				}
			}
			d.expectRuns("1.0.0+0")
		})
	}
}

// TestInstall_EncryptedOwn installs otaport's own encrypted images with
// every kind of key, compressed too, on each scheme.
func TestInstall_EncryptedOwn(t *testing.T) {
	kek := image.KEK(bytes.Repeat([]byte{3}, 32))
	for _, kc := range []struct {
		name     string
		pub, dec any
	}{
		{"x25519", encPubKey(t, "enc-x25519.pub"), decKey(t, "enc-x25519")},
		{"p256", encPubKey(t, "ecdsa-p256.pub"), decKey(t, "ecdsa-p256")},
		{"rsa-2048", encPubKey(t, "rsa-2048.pub"), decKey(t, "rsa-2048")},
		{"kw", kek, kek},
	} {
		for _, board := range []string{"esp32-devkitc", "longan-nano", "nucleo-h743zi", "stm32f407-disco"} {
			for _, comp := range []string{"", image.CompressionLZMA2ARMThumb} {
				t.Run(kc.name+"/"+board+"/"+comp, func(t *testing.T) {
					k := boardKeys(t, board)
					d := newDevice(t, board, k)
					d.factory("1.0.0", 8<<10)
					b := encryptedImage(t, k, "1.1.0", 30001, kc.pub, comp)
					opts := engine.Options{ChunkSize: 4 << 10, DecryptKey: kc.dec}
					if err := d.engine(opts).Install(context.Background(), engine.Source{URL: writeFile(t, b)}); err != nil {
						t.Fatalf("install: %v", err)
					}
					if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing {
						t.Fatalf("state %s (%s)", st.State, st.LastError)
					}
				})
			}
		}
	}
}

// TestHTTP_EncryptedResume: a download of an encrypted image that stops
// half way resumes from its checkpoint (a Range request), not from 0: the
// AES-CTR keystream starts at any offset and the key TLV is read ahead
// again; the slot then holds the plain image, which boots.
func TestHTTP_EncryptedResume(t *testing.T) {
	for _, board := range []string{"longan-nano", "nrf52840-dk"} {
		t.Run(board, func(t *testing.T) {
			ctx := context.Background()
			k := boardKeys(t, board)
			d := newDevice(t, board, k)
			d.decKey = decKey(t, "enc-x25519")
			d.powerOn(d.dev)
			d.factory("1.0.0", 8<<10)
			img := encryptedImage(t, k, "1.1.0", 40000, encPubKey(t, "enc-x25519.pub"), "")
			s, srv := newFaultServer(t, img)
			url := srv.URL + "/fw/1.1.0.img"
			s.truncateAt = int64(len(img)) / 2
			opts := fastOpts
			opts.ChunkSize, opts.CheckpointEvery, opts.Retries, opts.DecryptKey = 4<<10, 4<<10, 0, decKey(t, "enc-x25519")
			if err := d.engine(opts).Install(ctx, engine.Source{URL: url}); err == nil {
				t.Fatal("install through a server that cuts every response succeeded")
			} else {
				t.Logf("first attempt: %v", err)
			}
			st := d.status()
			if st.State != engine.Downloading || st.Offset < 8<<10 {
				t.Fatalf("after the failed attempt: state %s offset %d, want downloading past 8 KiB", st.State, st.Offset)
			}
			s.mu.Lock()
			s.truncateAt, s.requests = 0, nil
			s.mu.Unlock()
			if err := d.engine(opts).Resume(ctx); err != nil {
				t.Fatalf("resume: %v", err)
			}
			ranged := false
			for _, r := range s.requests {
				ranged = ranged || strings.Contains(r, fmt.Sprintf("bytes=%d-", st.Offset))
			}
			if !ranged {
				t.Errorf("resume requests %v, want one from the checkpoint at %d", s.requests, st.Offset)
			}
			if board == "nrf52840-dk" && !bytes.Equal(d.updateSlot()[:len(img)], img) {
				t.Fatal("the MCUboot slot does not hold the ciphertext received")
			}
			d.expectRuns("1.1.0+0")
		})
	}
}

// TestSwap_EncryptedUpgradeAndRevert follows encrypted images through
// MCUboot swap-move on nrf52840-dk: each swap decrypts the new image into
// app and encrypts the one it moves out with that image's own key, so ota
// then holds, byte for byte, the encrypted image that was installed before
// (AES-CTR under the same key at the same offsets), and a revert brings
// back the plain image.
func TestSwap_EncryptedUpgradeAndRevert(t *testing.T) {
	ctx := context.Background()
	k := boardKeys(t, "nrf52840-dk")
	d := newDevice(t, "nrf52840-dk", k)
	d.decKey = decKey(t, "enc-x25519")
	d.powerOn(d.dev)
	d.factory("1.0.0", 8<<10)
	pub := encPubKey(t, "enc-x25519.pub")
	img11 := encryptedImage(t, k, "1.1.0", 20000, pub, "")
	img12 := encryptedImage(t, k, "1.2.0", 30000, pub, "")
	opts := engine.Options{ChunkSize: 4 << 10, DecryptKey: d.decKey}
	plainApp := func(n int) {
		t.Helper()
		if !bytes.Equal(d.region("app")[0x200:0x200+n], payload(n, 99)) {
			t.Fatal("app does not hold the plain payload")
		}
	}
	if err := d.engine(opts).Install(ctx, engine.Source{URL: writeFile(t, img11)}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("1.1.0+0")
	plainApp(20000)
	if err := d.engine(opts).Confirm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := d.engine(opts).Install(ctx, engine.Source{URL: writeFile(t, img12)}); err != nil {
		t.Fatal(err)
	}
	d.expectRuns("1.2.0+0")
	plainApp(30000)
	if ota := d.region("ota"); !bytes.Equal(ota[:len(img11)], img11) {
		t.Fatalf("ota does not hold 1.1.0 encrypted as installed (differs at %d)", firstDiffAt(ota, img11))
	}
	// Not confirmed: the next power-on swaps back.
	d.expectRuns("1.1.0+0")
	plainApp(20000)
	if ota := d.region("ota"); !bytes.Equal(ota[:len(img12)], img12) {
		t.Fatalf("ota does not hold 1.2.0 encrypted as installed (differs at %d)", firstDiffAt(ota, img12))
	}
}

// TestPowerCut_EncryptedSwap cuts the power at every flash operation of
// the power-on that swaps an encrypted image in (torn), powers on again
// and checks that MCUboot, resuming the swap with the keys it reads again
// from wherever the swap has moved each image's TLVs, ends with the plain
// image in app.
func TestPowerCut_EncryptedSwap(t *testing.T) {
	ctx := context.Background()
	k := boardKeys(t, "nrf52840-dk")
	base := newDevice(t, "nrf52840-dk", k)
	base.decKey = decKey(t, "enc-x25519")
	base.powerOn(base.dev)
	base.factory("1.0.0", 12<<10)
	img := encryptedImage(t, k, "1.1.0", 20000, encPubKey(t, "enc-x25519.pub"), "")
	if err := base.engine(engine.Options{ChunkSize: 4 << 10, DecryptKey: base.decKey}).Install(ctx, engine.Source{URL: writeFile(t, img)}); err != nil {
		t.Fatal(err)
	}
	clean := &device{t: t, layout: base.layout, keys: k, decKey: base.decKey}
	clean.powerOn(base.dev.Clone())
	before := clean.dev.Ops()
	clean.expectRuns("1.1.0+0")
	ops := clean.dev.Ops() - before
	if ops < 10 {
		t.Fatalf("the swap took %d flash operations", ops)
	}
	for at := 1; at <= ops; at++ {
		d := &device{t: t, layout: base.layout, keys: k, decKey: base.decKey}
		d.powerOn(base.dev.Clone())
		d.dev.SetCut(flash.Cut{At: d.dev.Ops() + at, When: flash.Torn, Seed: uint64(at)})
		if res, err := d.plat.Reboot(ctx); err == nil {
			// The cut came after the swap (the counter's write): the
			// trial runs; the next power-on would revert it.
			if res.Version != "1.1.0+0" {
				t.Fatalf("cut at op %d of %d: runs %s", at, ops, res.Version)
			}
		} else if d.powerOn(d.dev.Clone()); d.reboot().Version != "1.1.0+0" {
			t.Fatalf("cut at op %d of %d: the swap resumed does not run 1.1.0", at, ops)
		}
		if !bytes.Equal(d.region("app")[0x200:0x200+20000], payload(20000, 99)) {
			t.Fatalf("cut at op %d of %d: app does not hold the plain payload", at, ops)
		}
	}
}
