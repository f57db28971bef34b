package engine_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// imageTestdata is core/image's test data: imgtool's compressed images and
// the fixed keys they are signed with.
func imageTestdata(t testing.TB, parts ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(append([]string{"..", "image", "testdata"}, parts...)...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixedKeys are the keys imgtool signed core/image/testdata/imgtool with.
func fixedKeys(t testing.TB, typ string) keys {
	t.Helper()
	k, err := image.LoadPrivateKey(imageTestdata(t, "keys", typ+".pem"))
	if err != nil {
		t.Fatal(err)
	}
	return keys{priv: k, pub: []crypto.PublicKey{k.Public()}}
}

// updateSlot returns the bytes of the slot an install writes to now.
func (d *device) updateSlot() []byte {
	d.t.Helper()
	upd := hal.PartOTA
	if d.layout.Scheme == hal.DualBank && d.status().RunningSlot == hal.PartOTA {
		upd = hal.PartApp
	}
	return d.region(upd)
}

// TestInstall_ImgtoolCompressed installs imgtool's compressed images
// (lzma2 and lzma2armthumb, ed25519 and ECDSA, header padding 0xff and 0x00)
// on a dual-bank and a single-bank board: the update slot must then hold
// the plain image, byte for byte the one imgtool signs from the same input
// without compression where the signature is deterministic, and the
// bootloader must boot it.
func TestInstall_ImgtoolCompressed(t *testing.T) {
	cases := []struct {
		file, key, plain, version string
	}{
		{"ed25519-lzma2.img", image.KeyEd25519, "ed25519-thumb.img", "1.3.0+0"},
		{"ed25519-lzma2armthumb.img", image.KeyEd25519, "ed25519-thumb-sec.img", "1.3.0+0"},
		{"ecdsa-p256-lzma2armthumb-hdr.img", image.KeyECDSAP256, "", "2.1.0+0"},
	}
	boardsOf := map[string][]string{
		image.KeyEd25519:   {"esp32-devkitc", "longan-nano"},
		image.KeyECDSAP256: {"b-l475e-iot01a", "nrf52840-dk", "nrf5340-dk"},
	}
	for _, tc := range cases {
		for _, board := range boardsOf[tc.key] {
			t.Run(tc.file+"/"+board, func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, board, fixedKeys(t, tc.key))
				d.factoryCounter("1.0.0", 8<<10, 0) // imgtool's images have none (0)
				before := d.updateSlot()
				img := imageTestdata(t, "imgtool", tc.file)
				if err := d.engine(engine.Options{ChunkSize: 4 << 10}).Install(ctx, engine.Source{URL: writeFile(t, img)}); err != nil {
					t.Fatalf("install: %v", err)
				}
				slot := d.updateSlot()
				if bytes.Equal(slot, before) {
					t.Fatal("the update slot did not change")
				}
				if tc.plain != "" {
					want := imageTestdata(t, "imgtool", tc.plain)
					if !bytes.Equal(slot[:len(want)], want) {
						t.Fatalf("the slot differs from imgtool's plain image at byte %d", firstDiffAt(slot, want))
					}
				}
				plain, err := image.Verify(bytes.NewReader(slot), int64(len(slot)), d.keys.pub)
				if err != nil || plain.Compressed != nil || plain.Header.Flags != 0 {
					t.Fatalf("the slot holds no plain image: %v (flags %#x)", err, plain.Header.Flags)
				}
				if st := d.expectRuns(tc.version); st.State != engine.Testing {
					t.Fatalf("state %s (%s), want testing", st.State, st.LastError)
				}
			})
		}
	}
}

func firstDiffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// compressedImage is a Thumb-like payload signed by otaport with
// compression method.
func compressedImage(t testing.TB, key crypto.Signer, v string, cnt uint32, method string) []byte {
	t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	// Four copies of imgtool's Thumb-like input: 48 KiB, several chunks.
	body := bytes.Repeat(imageTestdata(t, "imgtool", "payload-thumb.bin"), 4)
	b, err := image.Sign(body, key, image.SignOptions{Version: ver, SecurityCounter: &cnt, Compression: method})
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := image.ParseHeader(b); h.Flags&image.FlagCompressedLZMA2 == 0 {
		t.Fatal("the test image is not compressed")
	}
	return b
}

// TestInstall_Compressed installs otaport's own compressed images, both
// methods, on each scheme, in chunks smaller and larger than the write
// buffer.
func TestInstall_Compressed(t *testing.T) {
	for _, board := range []string{"esp32-devkitc", "longan-nano", "nucleo-h743zi", "stm32f407-disco"} {
		for _, method := range []string{image.CompressionLZMA2, image.CompressionLZMA2ARMThumb} {
			t.Run(board+"/"+method, func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, board, boardKeys(t, board))
				d.factory("1.0.0", 8<<10)
				src := writeFile(t, compressedImage(t, d.keys.priv, "1.1.0", 2, method))
				rec := &events{}
				if err := d.engine(engine.Options{ChunkSize: 4 << 10, Observer: rec}).Install(ctx, engine.Source{URL: src}); err != nil {
					t.Fatalf("install: %v", err)
				}
				if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing || st.SecurityCounter > 2 {
					t.Fatalf("state %s (%s)", st.State, st.LastError)
				}
			})
		}
	}
}

// resignEd25519 recomputes the hash of an ed25519 image after a change to
// its hashed region and signs it again: an image whose outer signature is
// good, so that only the checks of the decompressed image can refuse it.
func resignEd25519(t *testing.T, b []byte, key crypto.Signer) []byte {
	t.Helper()
	img, err := image.Parse(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	d := sha256.Sum256(b[:img.Header.HashedSize()])
	sig, err := key.Sign(nil, d[:], crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range img.TLVs {
		switch tl.Type {
		case image.TLVSHA256:
			copy(b[tl.Offset:], d[:])
		case image.TLVEd25519:
			copy(b[tl.Offset:], sig)
		}
	}
	return b
}

// TestInstall_CompressedRefused: a compressed image with a changed payload,
// or whose DECOMP_SHA, DECOMP_SIGNATURE or payload does not match the
// decompressed image although its own signature is good, is refused before
// the boot request; the device keeps running its image and takes the next
// upgrade.
func TestInstall_CompressedRefused(t *testing.T) {
	for _, board := range []string{"esp32-devkitc", "longan-nano"} {
		k := boardKeys(t, board)
		good := compressedImage(t, k.priv, "1.1.0", 2, image.CompressionLZMA2ARMThumb)
		img, err := image.Verify(bytes.NewReader(good), int64(len(good)), k.pub)
		if err != nil {
			t.Fatal(err)
		}
		at := func(tt image.TLVType) int64 {
			tl, ok := img.Find(tt)
			if !ok {
				t.Fatalf("no %s", tt)
			}
			return tl.Offset
		}
		payload := int64(img.Header.HeaderSize)
		cases := []struct {
			name   string
			change func(b []byte)
			resign bool
			say    string
		}{
			{"payload byte", func(b []byte) { b[payload+300] ^= 1 }, false, "image hash"},
			{"DECOMP_SHA", func(b []byte) { b[at(image.TLVDecompSHA)] ^= 1 }, false, "image hash"},
			{"DECOMP_SHA, re-signed", func(b []byte) { b[at(image.TLVDecompSHA)] ^= 1 }, true, "read back"},
			{"DECOMP_SIGNATURE, re-signed", func(b []byte) { b[at(image.TLVDecompSignature)+3] ^= 1 }, true, "read back"},
			{"DECOMP_SIZE, re-signed", func(b []byte) { b[at(image.TLVDecompSize)]++ }, true, "DECOMP_SIZE"},
			{"LZMA2 stream, re-signed", func(b []byte) { b[payload+300] ^= 0x5a }, true, "LZMA2"},
		}
		for _, tc := range cases {
			t.Run(board+"/"+tc.name, func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, board, k)
				d.factory("1.0.0", 8<<10)
				b := bytes.Clone(good)
				tc.change(b)
				if tc.resign {
					b = resignEd25519(t, b, k.priv)
				}
				e := d.engine(engine.Options{ChunkSize: 4 << 10})
				err := e.Install(ctx, engine.Source{URL: writeFile(t, b)})
				wantIs(t, err, engine.ErrVerify)
				if !strings.Contains(err.Error(), tc.say) {
					t.Fatalf("error %q does not say %q", err, tc.say)
				}
				st := d.status()
				if st.State != engine.Failed {
					t.Errorf("state %s, want failed", st.State)
				}
				for _, s := range st.Slots {
					if s.Pending {
						t.Fatalf("slot %s pending: SetBoot ran for a refused image", s.Name)
					}
				}
				d.expectRuns("1.0.0+0")
				if err := e.Install(ctx, engine.Source{URL: writeFile(t, good)}); err != nil {
					t.Fatalf("the good compressed image after a refused one: %v", err)
				}
				d.expectRuns("1.1.0+0")
			})
		}
	}
}

// TestPowerCut_CompressedInstall cuts the power at every flash operation of
// a compressed install (torn: the operation half done) and checks that the
// device boots a valid image, that the interrupted download starts over
// (it is never checkpointed) and that it then completes.
func TestPowerCut_CompressedInstall(t *testing.T) {
	for _, board := range []string{"longan-nano", "esp32-devkitc"} {
		t.Run(board, func(t *testing.T) {
			k := boardKeys(t, board)
			base := newDevice(t, board, k)
			base.factory("1.0.0", 8<<10)
			src := writeFile(t, compressedImage(t, k.priv, "1.1.0", 2, image.CompressionLZMA2ARMThumb))
			opts := engine.Options{ChunkSize: 4 << 10, CheckpointEvery: 4 << 10, Retries: -1}
			ctx := context.Background()

			clean := &device{t: t, layout: base.layout, keys: k}
			clean.powerOn(base.dev.Clone())
			if err := clean.engine(opts).Install(ctx, engine.Source{URL: src}); err != nil {
				t.Fatal(err)
			}
			ops := clean.dev.Ops()
			t.Logf("%s: %d flash operations in a clean compressed install", board, ops)
			if ops < 10 {
				t.Fatalf("a clean install took %d flash operations", ops)
			}
			step := max(1, ops/60) // every operation in -short would take minutes
			for at := 1; at <= ops; at += step {
				name := fmt.Sprintf("cut op %d of %d", at, ops)
				d := &device{t: t, layout: base.layout, keys: k}
				d.powerOn(base.dev.Clone())
				d.dev.SetCut(flash.Cut{At: at, When: flash.Torn, Seed: uint64(at)})
				if err := d.engine(opts).Install(ctx, engine.Source{URL: src}); err == nil {
					t.Fatalf("%s: install succeeded through the cut", name)
				}
				d.powerOn(d.dev.Clone())
				res, err := d.plat.Reboot(ctx)
				if err != nil {
					t.Fatalf("%s: the device does not boot: %v", name, err)
				}
				if res.Version != "1.0.0+0" && res.Version != "1.1.0+0" {
					t.Fatalf("%s: boots %q", name, res.Version)
				}
				st, err := d.engine(opts).Recover(ctx)
				if err != nil {
					t.Fatalf("%s: recover: %v", name, err)
				}
				if res.Version == "1.1.0+0" {
					continue
				}
				switch st.State {
				case engine.Downloading, engine.Verifying:
					err = d.engine(opts).Resume(ctx)
				default:
					err = d.engine(opts).Install(ctx, engine.Source{URL: src})
				}
				if err != nil {
					t.Fatalf("%s: finishing after the cut (state %s): %v", name, st.State, err)
				}
				if st := d.expectRuns("1.1.0+0"); st.State != engine.Testing {
					t.Fatalf("%s: state %s (%s)", name, st.State, st.LastError)
				}
			}
		})
	}
}

// TestHTTP_CompressedDroppedConnections: a connection dropped in the middle
// of a compressed image is resumed by the fetcher without sending a byte
// twice (the decoder sees one continuous stream); an install that gives up
// leaves no checkpoint, and its Resume downloads from byte 0 again.
func TestHTTP_CompressedDroppedConnections(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "esp32-devkitc", boardKeys(t, "esp32-devkitc"))
	d.factory("1.0.0", 8<<10)
	img := compressedImage(t, d.keys.priv, "1.1.0", 2, image.CompressionLZMA2ARMThumb)
	s, srv := newFaultServer(t, img)
	url := srv.URL + "/fw/1.1.0.img"
	s.dropAt = []int64{100, 5000, int64(len(img)) - 10}
	if err := d.engine(fastOpts).Install(ctx, engine.Source{URL: url}); err != nil {
		t.Fatalf("install: %v", err)
	}
	if got := s.bytesServed(); got != int64(len(img)) {
		t.Errorf("served %d bytes for an image of %d", got, len(img))
	}
	d.expectRuns("1.1.0+0")

	// Another device; its server fails once the download is under way.
	d = newDevice(t, "esp32-devkitc", d.keys)
	d.factory("1.0.0", 8<<10)
	s, srv = newFaultServer(t, img)
	url = srv.URL + "/fw/1.1.0.img"
	s.truncateAt = int64(len(img)) / 2
	opts := fastOpts
	opts.ChunkSize, opts.CheckpointEvery, opts.Retries = 4<<10, 4<<10, 0
	err := d.engine(opts).Install(ctx, engine.Source{URL: url})
	if err == nil {
		t.Fatal("install through a server that cuts every response succeeded")
	}
	if st := d.status(); st.State != engine.Downloading || st.Offset != 0 {
		t.Fatalf("after the failed attempt: state %s offset %d, want downloading at 0 (no checkpoint)", st.State, st.Offset)
	}
	s.mu.Lock()
	s.truncateAt, s.requests = 0, nil
	s.mu.Unlock()
	if err := d.engine(opts).Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if len(s.requests) != 1 || strings.Contains(s.requests[0], "bytes=") {
		t.Errorf("resume requests %v, want one for the whole file", s.requests)
	}
	d.expectRuns("1.1.0+0")
}

// TestInstall_CompressedLargerThanSlot: an image whose compressed form
// fits the slot but whose plain form does not is refused, and nothing is
// marked bootable.
func TestInstall_CompressedLargerThanSlot(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "longan-nano", boardKeys(t, "longan-nano"))
	d.factory("1.0.0", 8<<10)
	ota, _ := d.layout.Partition(hal.PartOTA)
	body := bytes.Repeat([]byte("0123456789abcdef"), int(ota.Size)/16+1)
	cnt := uint32(2)
	b, err := image.Sign(body, d.keys.priv, image.SignOptions{Version: image.Version{Major: 1, Minor: 1}, SecurityCounter: &cnt, Compression: image.CompressionLZMA2})
	if err != nil {
		t.Fatal(err)
	}
	err = d.engine(engine.Options{ChunkSize: 4 << 10}).Install(ctx, engine.Source{URL: writeFile(t, b)})
	wantIs(t, err, engine.ErrRefused)
	if !strings.Contains(err.Error(), "decompressed image needs more than") {
		t.Fatalf("error %q", err)
	}
	for _, s := range d.status().Slots {
		if s.Pending {
			t.Fatalf("slot %s pending", s.Name)
		}
	}
	d.expectRuns("1.0.0+0")
}
