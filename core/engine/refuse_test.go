package engine_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/hal"
)

// TestInstall_Refused covers the images a device must refuse, each with the
// reason, leaving the running image and the next upgrade untouched
// (AliOS Things #981: after one failure, upgrades never succeeded again).
func TestInstall_Refused(t *testing.T) {
	const size = 12 << 10
	cases := []struct {
		name string
		// image returns the file to install and the order.
		image          func(d *device) ([]byte, engine.Source)
		allowDowngrade bool
		want           error
		say            string
		// untouched: refused before any write to the update slot, and
		// before any change of the engine's state.
		untouched bool
	}{
		{"wrong key", func(d *device) ([]byte, engine.Source) {
			return signed(t, boardKeys(t, d.layout.Board).priv, "1.2.0", size, 6), engine.Source{}
		}, false, engine.ErrVerify, "unknown key", false},
		{"unsigned", func(d *device) ([]byte, engine.Source) {
			return signed(t, nil, "1.2.0", size, 6), engine.Source{}
		}, false, engine.ErrVerify, "not signed", false},
		{"downgrade", func(d *device) ([]byte, engine.Source) {
			return signed(t, d.keys.priv, "1.0.5", size, 6), engine.Source{}
		}, false, engine.ErrRefused, "older than the running 1.1.0", true},
		{"same version", func(d *device) ([]byte, engine.Source) {
			return signed(t, d.keys.priv, "1.1.0", size, 6), engine.Source{}
		}, false, engine.ErrRefused, "1.1.0+0 already runs (in ", true},
		{"security counter below the device's", func(d *device) ([]byte, engine.Source) {
			return signed(t, d.keys.priv, "1.2.0", size, 4), engine.Source{}
		}, false, engine.ErrRefused, "security counter 4, below the device's 5", false},
		{"allowed downgrade, counter below", func(d *device) ([]byte, engine.Source) {
			return signed(t, d.keys.priv, "1.0.5", size, 4), engine.Source{}
		}, true, engine.ErrRefused, "security counter 4", false},
		{"larger than the slot", func(d *device) ([]byte, engine.Source) {
			ota, _ := d.layout.Partition(hal.PartOTA)
			return signed(t, d.keys.priv, "1.2.0", int(ota.Size), 6), engine.Source{}
		}, false, engine.ErrRefused, "update slot takes", true},
		{"another version than the order", func(d *device) ([]byte, engine.Source) {
			return signed(t, d.keys.priv, "1.2.0", size, 6), engine.Source{Version: "1.3.0"}
		}, false, engine.ErrRefused, "not the 1.3.0+0 the order announced", true},
		{"digest of another file", func(d *device) ([]byte, engine.Source) {
			sum := sha256.Sum256([]byte("another file"))
			return signed(t, d.keys.priv, "1.2.0", size, 6), engine.Source{Digest: "sha256:" + hex.EncodeToString(sum[:])}
		}, false, engine.ErrVerify, "the order announced", false},
		{"md5 digest of another file", func(d *device) ([]byte, engine.Source) {
			sum := md5.Sum([]byte("another file"))
			return signed(t, d.keys.priv, "1.2.0", size, 6), engine.Source{Digest: "md5:" + strings.ToUpper(hex.EncodeToString(sum[:]))}
		}, false, engine.ErrVerify, "md5", false},
		{"tampered payload", func(d *device) ([]byte, engine.Source) {
			img := signed(t, d.keys.priv, "1.2.0", size, 6)
			img[0x200+size/2] ^= 0x40
			return img, engine.Source{}
		}, false, engine.ErrVerify, "hash mismatch", false},
		{"truncated file", func(d *device) ([]byte, engine.Source) {
			img := signed(t, d.keys.priv, "1.2.0", size, 6)
			return img[:len(img)/2], engine.Source{}
		}, false, engine.ErrVerify, "truncated", false},
		{"not an image", func(d *device) ([]byte, engine.Source) {
			return payload(size, 99), engine.Source{}
		}, false, engine.ErrVerify, "magic", true},
		{"announced size differs", func(d *device) ([]byte, engine.Source) {
			img := signed(t, d.keys.priv, "1.2.0", size, 6)
			return img, engine.Source{Size: int64(len(img)) + 1}
		}, false, engine.ErrDownload, "announced", true},
	}
	for _, board := range []string{"esp32-devkitc", "nrf52840-dk"} {
		for _, c := range cases {
			t.Run(board+"/"+c.name, func(t *testing.T) {
				ctx := context.Background()
				d := newDevice(t, board, boardKeys(t, board))
				d.factory("1.0.0", size)
				e := d.engine(engine.Options{})
				if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", size, 5))}); err != nil {
					t.Fatal(err)
				}
				d.expectRuns("1.1.0+0")
				if err := e.Confirm(ctx); err != nil {
					t.Fatal(err)
				}
				upd := hal.PartOTA
				if d.layout.Scheme == hal.DualBank && d.status().RunningSlot == hal.PartOTA {
					upd = hal.PartApp
				}
				before := d.region(upd)

				img, src := c.image(d)
				src.URL = writeFile(t, img)
				err := d.engine(engine.Options{AllowDowngrade: c.allowDowngrade}).Install(ctx, src)
				wantIs(t, err, c.want)
				if !strings.Contains(err.Error(), c.say) {
					t.Errorf("error %q does not say %q", err, c.say)
				}
				// Words for the user: the command-line flag, not a Go
				// option; an equal version is no downgrade.
				if strings.Contains(err.Error(), "Options.") {
					t.Errorf("error %q names a Go option", err)
				}
				if c.name == "same version" && strings.Contains(err.Error(), "downgrade:") {
					t.Errorf("error %q calls an equal version a downgrade", err)
				}
				if c.name == "downgrade" || c.name == "same version" {
					if !strings.Contains(err.Error(), "--allow-downgrade") {
						t.Errorf("error %q does not name the flag that allows it", err)
					}
				}
				st := d.status()
				switch {
				case c.untouched:
					// Refused before the first write: nothing changed,
					// the record included (issue 9, reproduction 3).
					if st.State != engine.Confirmed || st.Image != "1.1.0+0" || st.LastError != "" {
						t.Errorf("state %s, image %s, last error %q; want confirmed 1.1.0+0 as before", st.State, st.Image, st.LastError)
					}
				case st.State != engine.Failed || st.LastError != err.Error():
					t.Errorf("state %s, last error %q; want failed with the error", st.State, st.LastError)
				}
				for _, s := range st.Slots {
					if s.Pending {
						t.Errorf("slot %s is pending after a refused image", s.Name)
					}
				}
				if c.untouched && !equalBytes(before, d.region(upd)) {
					t.Errorf("the update slot %s was written before the image was refused", upd)
				}
				d.expectRuns("1.1.0+0")

				// The next good upgrade goes through.
				if err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.3.0", size, 6))}); err != nil {
					t.Fatalf("good install after a refused one: %v", err)
				}
				if st := d.expectRuns("1.3.0+0"); st.State != engine.Testing {
					t.Fatalf("state %s, want testing", st.State)
				}
			})
		}
	}
}

func TestInstall_AllowDowngrade(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("2.0.0", 8<<10)
	err := d.engine(engine.Options{AllowDowngrade: true}).Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.9.0", 8<<10, 1))})
	if err != nil {
		t.Fatal(err)
	}
	if st := d.expectRuns("1.9.0+0"); st.State != engine.Testing || st.Previous != "2.0.0+0" {
		t.Fatalf("status %+v", st)
	}
}

// TestInstall_DirectXIPRefusesNotHigher: MCUboot direct-xip boots the slot
// with the higher version, so an image not above the running one would
// never boot: refused before the download, --allow-downgrade or not, and
// the slot that holds the image to return to is left as it is.
func TestInstall_DirectXIPRefusesNotHigher(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "nrf52840-dk-xip", boardKeys(t, "nrf52840-dk-xip"))
	d.factory("2.0.0", 8<<10)
	d.factory("2.1.0", 8<<10)
	// 2.0.0 went to ota (a blank device's update slot), 2.1.0 to app.
	before := d.region(hal.PartOTA)
	for _, v := range []string{"1.9.0", "2.1.0"} {
		err := d.engine(engine.Options{AllowDowngrade: true}).Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, v, 8<<10, 1))})
		wantIs(t, err, engine.ErrRefused)
	}
	if !bytes.Equal(d.region(hal.PartOTA), before) {
		t.Fatal("a refused install changed ota, which holds 2.0.0 to return to")
	}
	d.expectRuns("2.1.0+0")
}

// lyingFlash is a port whose Read returns other bytes than the flash holds
// at one offset: a flash (or a port) that lies about what it wrote.
type lyingFlash struct {
	hal.Platform
	at uint64
}

func (l lyingFlash) Read(ctx context.Context, off uint64, n int) ([]byte, error) {
	b, err := l.Platform.Read(ctx, off, n)
	if err == nil && l.at >= off && l.at < off+uint64(len(b)) {
		b[l.at-off] ^= 1
	}
	return b, err
}

func TestInstall_ReadBackCatchesALyingFlash(t *testing.T) {
	ctx := context.Background()
	d := newDevice(t, "esp32-devkitc", newKeys(t))
	d.factory("1.0.0", 8<<10)
	e := d.engineOn(lyingFlash{Platform: d.plat, at: 0x200 + 5000}, engine.Options{})
	err := e.Install(ctx, engine.Source{URL: writeFile(t, signed(t, d.keys.priv, "1.1.0", 8<<10, 1))})
	wantIs(t, err, engine.ErrVerify)
	if !strings.Contains(err.Error(), "read back") {
		t.Fatalf("error %q does not say read back", err)
	}
	st := d.status()
	if st.State != engine.Failed {
		t.Fatalf("state %s", st.State)
	}
	for _, s := range st.Slots {
		if s.Pending {
			t.Fatalf("slot %s pending: an image that failed its read-back was marked bootable", s.Name)
		}
	}
	d.expectRuns("1.0.0+0")
}
