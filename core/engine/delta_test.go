package engine_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/otaport/otaport/core/delta"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// nextBuild returns the payload of the next build of the firmware whose
// payload is old: a byte changed every 997, a few bytes inserted and a
// few removed, as a rebuild with a small change moves code.
func nextBuild(old []byte, seed uint64) []byte {
	b := bytes.Clone(old)
	for i := int(seed % 997); i < len(b); i += 997 {
		b[i] ^= byte(seed) | 1
	}
	third := len(b) / 3
	b = append(b[:third:third], append(payload(37, seed), b[third:]...)...)
	cut := 2 * len(b) / 3
	return append(b[:cut:cut], b[cut+29:]...)
}

// signPayload signs p as an image of version v with counter cnt.
func signPayload(t testing.TB, key crypto.Signer, p []byte, v string, cnt uint32) []byte {
	t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Sign(p, key, image.SignOptions{Version: ver, SecurityCounter: &cnt})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// makeDelta returns the delta image that rebuilds target on a device
// running base, its patch in blocks of 2^blockLog bytes, signed by k.
func makeDelta(t testing.TB, k keys, base, target []byte, blockLog uint8) []byte {
	t.Helper()
	bi, err := image.Parse(bytes.NewReader(base), int64(len(base)))
	if err != nil {
		t.Fatal(err)
	}
	ti, err := image.Parse(bytes.NewReader(target), int64(len(target)))
	if err != nil {
		t.Fatal(err)
	}
	patch, err := delta.Encode(base, target, delta.Options{BlockLog: blockLog})
	if err != nil {
		t.Fatal(err)
	}
	out, err := image.SignDelta(bi, ti, patch, k.priv, image.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// deltaCase is a device running base 1.0.0 of n bytes, the target 1.1.0
// and the delta between them.
type deltaCase struct {
	d                   *device
	base, target, delta []byte
}

func newDeltaCase(t testing.TB, board string, n int, blockLog uint8) deltaCase {
	t.Helper()
	return newDeltaCaseFar(t, board, n, blockLog, false)
}

// newDeltaCaseFar is newDeltaCase with, when far, a target whose second
// half is new: a delta of about half the target, many blocks of patch to
// cut a download in.
func newDeltaCaseFar(t testing.TB, board string, n int, blockLog uint8, far bool) deltaCase {
	t.Helper()
	d := newDevice(t, board, boardKeys(t, board))
	p0 := payload(n, 1)
	p1 := nextBuild(p0, 2)
	if far {
		copy(p1[len(p1)/2:], payload(len(p1)-len(p1)/2, 5))
	}
	base := signPayload(t, d.keys.priv, p0, "1.0.0", 1)
	target := signPayload(t, d.keys.priv, p1, "1.1.0", 2)
	d.factoryImage(base, "1.0.0")
	return deltaCase{d: d, base: base, target: target, delta: makeDelta(t, d.keys, base, target, blockLog)}
}

// runningSlot returns the bytes of the slot that runs.
func (d *device) runningSlot() []byte {
	d.t.Helper()
	return d.region(d.status().RunningSlot)
}

// TestInstall_DeltaApplies installs a delta image on a board of each
// scheme: the slot that runs afterwards holds the target byte for byte, and
// on dual-bank a second delta applies against the image now running from
// ota, the other slot.
func TestInstall_DeltaApplies(t *testing.T) {
	for _, board := range []string{"rpi-pico", "nucleo-l152re", "b-l475e-iot01a", "esp32-devkitc", "nrf52840-dk", "nrf52840-dk-swap"} {
		t.Run(board, func(t *testing.T) {
			ctx := context.Background()
			c := newDeltaCase(t, board, 150<<10, delta.DefaultBlockLog)
			if len(c.delta) > len(c.target)/3 {
				t.Fatalf("delta of %d bytes for a target of %d: the test's builds are too far apart", len(c.delta), len(c.target))
			}
			if err := c.d.engine(fastOpts).Install(ctx, engine.Source{URL: writeFile(t, c.delta)}); err != nil {
				t.Fatalf("install the delta: %v", err)
			}
			c.d.expectRuns("1.1.0+0")
			if got := c.d.runningSlot(); !bytes.Equal(got[:len(c.target)], c.target) {
				t.Fatalf("the running slot does not hold the target")
			}
			if c.d.layout.Scheme != hal.DualBank {
				return
			}
			if err := c.d.engine(engine.Options{}).Confirm(ctx); err != nil {
				t.Fatal(err)
			}
			third := signPayload(t, c.d.keys.priv, nextBuild(nextBuild(payload(150<<10, 1), 2), 3), "1.2.0", 3)
			d2 := makeDelta(t, c.d.keys, c.target, third, delta.DefaultBlockLog)
			if err := c.d.engine(fastOpts).Install(ctx, engine.Source{URL: writeFile(t, d2)}); err != nil {
				t.Fatalf("install the second delta, against %s: %v", c.d.status().RunningSlot, err)
			}
			c.d.expectRuns("1.2.0+0")
			if got := c.d.runningSlot(); !bytes.Equal(got[:len(third)], third) {
				t.Fatalf("the running slot does not hold the second target")
			}
		})
	}
}

// TestInstall_DeltaWrongBaseRefusedBeforeAnyWrite: a delta made against
// another image than the running one is refused, naming both hashes,
// before the update slot or the record change.
func TestInstall_DeltaWrongBaseRefusedBeforeAnyWrite(t *testing.T) {
	ctx := context.Background()
	c := newDeltaCase(t, "esp32-devkitc", 64<<10, delta.DefaultBlockLog)
	other := signPayload(t, c.d.keys.priv, payload(64<<10, 9), "1.0.0", 1)
	wrong := makeDelta(t, c.d.keys, other, c.target, delta.DefaultBlockLog)
	before, st0 := c.d.updateSlot(), c.d.status()
	err := c.d.engine(fastOpts).Install(ctx, engine.Source{URL: writeFile(t, wrong)})
	wantIs(t, err, engine.ErrRefused)
	oi, _ := image.Parse(bytes.NewReader(other), int64(len(other)))
	bi, _ := image.Parse(bytes.NewReader(c.base), int64(len(c.base)))
	for _, h := range [][]byte{oi.Hash, bi.Hash} {
		if !strings.Contains(err.Error(), hex.EncodeToString(h)) {
			t.Errorf("error %q does not name hash %x", err, h)
		}
	}
	if !bytes.Equal(c.d.updateSlot(), before) {
		t.Errorf("the update slot changed")
	}
	if st := c.d.status(); st.State != st0.State || st.Image != st0.Image {
		t.Errorf("state %s %s, was %s %s", st.State, st.Image, st0.State, st0.Image)
	}
	c.d.expectRuns("1.0.0+0")
}

// TestInstall_DeltaTamperedRefused: a delta whose patch was changed fails
// the delta image's hash, and an authentic delta whose target is signed by
// a key the device does not trust fails the read-back of the target; both
// before SetBoot, so the old image runs.
func TestInstall_DeltaTamperedRefused(t *testing.T) {
	ctx := context.Background()
	c := newDeltaCase(t, "nrf52840-dk", 64<<10, 12)
	bad := bytes.Clone(c.delta)
	h, _ := image.ParseHeader(bad)
	bad[int(h.HeaderSize)+int(h.ImageSize)/2] ^= 0x40
	err := c.d.engine(fastOpts).Install(ctx, engine.Source{URL: writeFile(t, bad)})
	wantIs(t, err, engine.ErrVerify)

	untrusted := boardKeys(t, "nrf52840-dk")
	p1 := nextBuild(payload(64<<10, 1), 2)
	target := signPayload(t, untrusted.priv, p1, "1.1.0", 2)
	forged := makeDelta(t, c.d.keys, c.base, target, 12)
	err = c.d.engine(fastOpts).Install(ctx, engine.Source{URL: writeFile(t, forged)})
	wantIs(t, err, engine.ErrVerify)
	if !strings.Contains(err.Error(), "read back") {
		t.Errorf("error %q: want the read-back of the target to refuse it", err)
	}
	if st := c.d.status(); st.State != engine.Failed {
		t.Errorf("state %s, want failed", st.State)
	}
	c.d.expectRuns("1.0.0+0")
}

// readsOnlyUpdate is a port that reads only its update slot, though it
// claims more: the engine must refuse a delta rather than call what is
// not there.
type readsOnlyUpdate struct {
	hal.Platform
	hal.KV
}

// TestInstall_DeltaNeedsReadSlot: without hal.SlotReader a delta is
// refused before any write, saying to send the full image.
func TestInstall_DeltaNeedsReadSlot(t *testing.T) {
	c := newDeltaCase(t, "esp32-devkitc", 32<<10, 12)
	before := c.d.updateSlot()
	e := c.d.engineOn(readsOnlyUpdate{c.d.plat, c.d.plat}, fastOpts)
	err := e.Install(context.Background(), engine.Source{URL: writeFile(t, c.delta)})
	wantIs(t, err, engine.ErrRefused)
	if !strings.Contains(err.Error(), "full image") {
		t.Errorf("error %q does not say to install the full image", err)
	}
	if !bytes.Equal(c.d.updateSlot(), before) {
		t.Errorf("the update slot changed")
	}
}

// deltaOpts checkpoints often, in chunks smaller than a block of target.
var deltaOpts = engine.Options{ChunkSize: 4 << 10, CheckpointEvery: 8 << 10, Retries: 0, RetryBackoff: 1}

// resendBound is the most a resume may send again: one checkpoint
// interval, the block of patch it ends in, and the chunks in flight.
func resendBound(o engine.Options, blockLog uint8) int64 {
	return o.CheckpointEvery + 2<<blockLog + 5*int64(o.ChunkSize)
}

// TestInstall_DeltaResumesAfterDrop: a download that breaks with no retry
// left stops resumable at the delta's last block boundary; Resume asks the
// server from that byte (Range) and the delta applies, having sent at
// most one checkpoint interval again.
func TestInstall_DeltaResumesAfterDrop(t *testing.T) {
	ctx := context.Background()
	const blockLog = 12
	c := newDeltaCaseFar(t, "stm32f769i-disco", 400<<10, blockLog, true)
	s, srv := newFaultServer(t, c.delta)
	url := srv.URL + "/fw/1.1.0.img"
	cut := int64(len(c.delta)) / 2
	s.truncateAt = cut
	err := c.d.engine(deltaOpts).Install(ctx, engine.Source{URL: url})
	if err == nil {
		t.Fatal("install through a server that stops half-way succeeded")
	}
	if !strings.Contains(err.Error(), "resume with Resume") {
		t.Errorf("error %q does not say the install resumes", err)
	}
	st := c.d.status()
	if st.State != engine.Downloading || st.Offset == 0 || st.Offset > cut {
		t.Fatalf("after the drop: state %s at %d (cut at %d), want downloading from a checkpoint", st.State, st.Offset, cut)
	}
	s.mu.Lock()
	s.truncateAt, s.requests = 0, nil
	first := s.served
	s.mu.Unlock()
	if err := c.d.engine(deltaOpts).Resume(ctx); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if want := fmt.Sprintf("GET range=%q", fmt.Sprintf("bytes=%d-", st.Offset)); len(s.requests) == 0 || !strings.HasPrefix(s.requests[0], want) {
		t.Errorf("resume requests %v, want the first to start %s", s.requests, want)
	}
	resent := s.bytesServed() - int64(len(c.delta))
	t.Logf("delta %d bytes, first attempt %d, checkpoint at %d, sent again %d", len(c.delta), first, st.Offset, resent)
	if bound := resendBound(deltaOpts, blockLog); resent > bound {
		t.Errorf("sent %d bytes again, want at most %d", resent, bound)
	}
	c.d.expectRuns("1.1.0+0")
}

// TestInstall_DeltaResumesAfterPowerCut: the power goes in the middle of
// a delta's download, with blocks of target half written; after the
// power-on the engine resumes from the checkpoint in the KV store and
// finishes, and the target boots.
func TestInstall_DeltaResumesAfterPowerCut(t *testing.T) {
	for _, board := range []string{"nucleo-l152re", "esp32-devkitc", "nrf52840-dk"} {
		t.Run(board, func(t *testing.T) {
			ctx := context.Background()
			const blockLog = 12
			c := newDeltaCaseFar(t, board, 200<<10, blockLog, true)
			s, srv := newFaultServer(t, c.delta)
			url := srv.URL + "/fw/1.1.0.img"
			opts := deltaOpts
			// reached is the most the port goroutine took before the
			// cut: what a resume from the checkpoint sends again is the
			// bytes between them.
			var reached int64
			cut := false
			opts.Observer = engine.ObserverFunc(func(ev engine.Event) {
				if ev.Kind != event.Progress {
					return
				}
				if ev.Offset >= int64(len(c.delta))/2 && !cut {
					cut = true
					c.d.dev.SetCut(flash.Cut{At: 3})
				}
				reached = max(reached, ev.Offset)
			})
			err := c.d.engine(opts).Install(ctx, engine.Source{URL: url})
			wantIs(t, err, flash.ErrPowerCut)
			c.d.powerOn(c.d.dev.Clone())
			res, st := c.d.recover()
			if res.Version != "1.0.0+0" || st.State != engine.Downloading || st.Offset == 0 {
				t.Fatalf("after the power cut: %s runs, state %s at %d", res.Version, st.State, st.Offset)
			}
			s.mu.Lock()
			s.requests = nil
			s.mu.Unlock()
			if err := c.d.engine(deltaOpts).Resume(ctx); err != nil {
				t.Fatalf("resume: %v", err)
			}
			if want := fmt.Sprintf("GET range=%q", fmt.Sprintf("bytes=%d-", st.Offset)); len(s.requests) == 0 || !strings.HasPrefix(s.requests[0], want) {
				t.Errorf("resume requests %v, want the first to start %s", s.requests, want)
			}
			if resent, bound := reached-st.Offset, resendBound(deltaOpts, blockLog); resent < 0 || resent > bound {
				t.Errorf("cut with %d bytes taken, resumed from %d: %d bytes sent again, want at most %d", reached, st.Offset, resent, bound)
			} else {
				t.Logf("cut with %d of %d bytes taken, resumed from %d: %d bytes sent again", reached, len(c.delta), st.Offset, resent)
			}
			c.d.expectRuns("1.1.0+0")
			if got := c.d.runningSlot(); !bytes.Equal(got[:len(c.target)], c.target) {
				t.Fatalf("the running slot does not hold the target")
			}
		})
	}
}
