package engine_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/engine"
	"github.com/otaport/otaport/core/event"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/haltest"
	"github.com/otaport/otaport/core/image"
)

// catalogLayout returns the layout of a catalog board. The engine never
// imports a port, and neither do its tests: they use haltest's copies of
// the catalog's layouts for real geometries.
func catalogLayout(t testing.TB, name string) hal.Layout {
	t.Helper()
	l, ok := haltest.Layout(name)
	if !ok {
		t.Fatalf("board %q is not among core/hal/haltest's boards %v", name, haltest.Boards())
	}
	return l
}

// keys is one signing key and the public half the engine and the
// bootloader check with.
type keys struct {
	priv crypto.Signer
	pub  []crypto.PublicKey
}

func newKeys(t testing.TB) keys {
	t.Helper()
	return newKeysOf(t, image.KeyEd25519)
}

// boardKeys returns a key of the signature algorithm board takes (its
// image.signature): the bootloader and the engine refuse any other.
func boardKeys(t testing.TB, board string) keys {
	t.Helper()
	return newKeysOf(t, catalogLayout(t, board).Signature)
}

func newKeysOf(t testing.TB, typ string) keys {
	t.Helper()
	k, err := image.GenerateKey(typ)
	if err != nil {
		t.Fatal(err)
	}
	return keys{priv: k, pub: []crypto.PublicKey{k.Public()}}
}

// payload returns n bytes that differ with seed.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// signed returns an image of version v with an n-byte payload, signed by
// key (nil: unsigned) with security counter cnt.
func signed(t testing.TB, key crypto.Signer, v string, n int, cnt uint32) []byte {
	t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	img, err := image.Sign(payload(n, uint64(ver.Major)<<16|uint64(ver.Minor)<<8|uint64(ver.Revision)), key, image.SignOptions{Version: ver, SecurityCounter: &cnt})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// device is an emulated board: a flash, the generic platform over it with
// the bootloader checking signatures, and an engine.
type device struct {
	t      testing.TB
	layout hal.Layout
	dev    *flash.Emulator
	plat   *boot.Platform
	keys   keys
	// alien, when a test sets it, is a trusted key of another algorithm
	// than the board's.
	alien keys
	// decKey is the private key the simulated MCUboot decrypts
	// encrypted images with (boot.Options.DecryptKey).
	decKey any
}

func newDevice(t testing.TB, board string, k keys) *device {
	t.Helper()
	l := catalogLayout(t, board)
	dev, err := flash.NewMemory(l.Flash)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{t: t, layout: l, dev: dev, keys: k}
	d.powerOn(dev)
	return d
}

// powerOn makes a new platform over dev (a fresh process on the device).
func (d *device) powerOn(dev *flash.Emulator) {
	d.t.Helper()
	p, err := boot.NewPlatform(d.layout, dev, boot.Options{Keys: d.keys.pub, DecryptKey: d.decKey})
	if err != nil {
		d.t.Fatal(err)
	}
	d.dev, d.plat = dev, p
}

// reboot runs the bootloader and returns what runs.
func (d *device) reboot() hal.RebootResult {
	d.t.Helper()
	res, err := d.plat.Reboot(context.Background())
	if err != nil {
		d.t.Fatalf("reboot: %v", err)
	}
	return res
}

func (d *device) engine(opts engine.Options) *engine.Engine {
	d.t.Helper()
	return d.engineOn(d.plat, opts)
}

func (d *device) engineOn(p hal.Platform, opts engine.Options) *engine.Engine {
	d.t.Helper()
	if opts.Keys == nil {
		opts.Keys = d.keys.pub
	}
	if opts.RetryBackoff == 0 {
		opts.RetryBackoff = 1
	}
	kv, _ := p.(hal.KV)
	if kv == nil {
		kv = d.plat
	}
	e, err := engine.New(p, kv, opts)
	if err != nil {
		d.t.Fatal(err)
	}
	return e
}

// status returns the engine's status.
func (d *device) status() engine.Status {
	d.t.Helper()
	st, err := d.engine(engine.Options{}).Status(context.Background())
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

// recover runs a power-on: the bootloader, then the engine's recovery.
func (d *device) recover() (hal.RebootResult, engine.Status) {
	d.t.Helper()
	res := d.reboot()
	st, err := d.engine(engine.Options{}).Recover(context.Background())
	if err != nil {
		d.t.Fatalf("recover: %v", err)
	}
	return res, st
}

// factory installs version v permanently from a file and boots it, as a
// device leaves the factory.
func (d *device) factory(v string, size int) {
	d.t.Helper()
	d.factoryCounter(v, size, 1)
}

// factoryCounter is factory with the image's security counter.
func (d *device) factoryCounter(v string, size int, cnt uint32) {
	d.t.Helper()
	d.factoryImage(signed(d.t, d.keys.priv, v, size, cnt), v)
}

// factoryImage is factory with the image's bytes, of version v.
func (d *device) factoryImage(img []byte, v string) {
	d.t.Helper()
	src := writeFile(d.t, img)
	e := d.engine(engine.Options{AllowDowngrade: true})
	if err := e.Install(context.Background(), engine.Source{URL: src, Permanent: true}); err != nil {
		d.t.Fatalf("factory install %s: %v", v, err)
	}
	res, st := d.recover()
	if want, _ := image.ParseVersion(v); res.Version != want.String() || st.State != engine.Confirmed {
		d.t.Fatalf("factory image: booted %+v, state %s (%s), want %s confirmed", res, st.State, st.LastError, v)
	}
}

// region returns a copy of the bytes of partition name.
func (d *device) region(name string) []byte {
	d.t.Helper()
	p, ok := d.layout.Partition(name)
	if !ok {
		d.t.Fatalf("no partition %s", name)
	}
	b := make([]byte, p.Size)
	if _, err := d.dev.ReadAt(b, int64(p.Offset)); err != nil {
		d.t.Fatal(err)
	}
	return b
}

// expectRuns reboots and checks the version that runs.
func (d *device) expectRuns(v string) engine.Status {
	d.t.Helper()
	res, st := d.recover()
	if res.Version != v {
		d.t.Fatalf("after reboot %s %s runs (%s: %s), want %s", res.Slot, res.Version, res.Action, res.Detail, v)
	}
	return st
}

var fileSeq sync.Mutex

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	fileSeq.Lock()
	defer fileSeq.Unlock()
	f, err := os.CreateTemp(t.TempDir(), "image-*.img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Clean(f.Name())
}

// wantIs fails unless err wraps target.
func wantIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want one that wraps %v", err, target)
	}
}

// events records the events of an engine.
type events struct {
	mu sync.Mutex
	ev []engine.Event
}

func (r *events) Event(ev engine.Event) {
	r.mu.Lock()
	r.ev = append(r.ev, ev)
	r.mu.Unlock()
}

// states returns the states announced, in order.
func (r *events) states() []engine.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []engine.State
	for _, ev := range r.ev {
		if ev.Kind == event.State {
			s = append(s, ev.State)
		}
	}
	return s
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }

var fixedTime = time.Unix(1_700_000_000, 0)

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
