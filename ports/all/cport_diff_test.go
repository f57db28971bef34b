package all

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/ports/cport"
)

// diffPort is what the differential test drives on both sides.
type diffPort interface {
	hal.Platform
	hal.KV
	hal.Rebooter
	Close() error
}

// diffPair is one board twice: the Go port over one flash, the C port over
// another, driven by the same calls.
type diffPair struct {
	t      *testing.T
	l      hal.Layout
	devs   [2]*flash.Emulator
	ports  [2]diffPort
	step   int
	cOnDev int // which device the C port runs on: 1, or 0 once swapped
}

func (d *diffPair) open(i int, c bool) diffPort {
	d.t.Helper()
	var p diffPort
	var err error
	if c {
		p, err = cport.New(d.l, d.devs[i], boot.Options{})
	} else {
		p, err = boot.NewPlatform(d.l, d.devs[i], boot.Options{})
	}
	if err != nil {
		d.t.Fatalf("open port %d (C %v): %v", i, c, err)
	}
	return p
}

// do runs f on both ports and checks that they answer alike (the same
// error code, or both nil) and leave the same bytes, flash operation
// counts and sector wear behind.
func (d *diffPair) do(what string, f func(p diffPort) (any, error)) {
	d.t.Helper()
	d.step++
	var res [2]any
	var errs [2]error
	for i, p := range d.ports {
		res[i], errs[i] = f(p)
	}
	name := [2]string{"Go", "C"}
	if d.cOnDev == 0 {
		name = [2]string{"C", "Go"}
	}
	if (errs[0] == nil) != (errs[1] == nil) || hal.CodeOf(errs[0]) != hal.CodeOf(errs[1]) {
		d.t.Fatalf("step %d, %s: %s port: %v; %s port: %v", d.step, what, name[0], errs[0], name[1], errs[1])
	}
	if fmt.Sprint(res[0]) != fmt.Sprint(res[1]) {
		d.t.Fatalf("step %d, %s: %s port returned %v; %s port %v", d.step, what, name[0], res[0], name[1], res[1])
	}
	if a, b := d.devs[0].Ops(), d.devs[1].Ops(); a != b {
		d.t.Fatalf("step %d, %s: %s port made %d flash operations so far, %s port %d", d.step, what, name[0], a, name[1], b)
	}
	if !slices.Equal(d.devs[0].EraseCounts(), d.devs[1].EraseCounts()) {
		d.t.Fatalf("step %d, %s: the sectors' erase counts differ", d.step, what)
	}
	size := d.l.Flash.Size
	for off := uint64(0); off < size; off += 1 << 20 {
		n := min(1<<20, size-off)
		a, b := make([]byte, n), make([]byte, n)
		if _, err := d.devs[0].ReadAt(a, int64(off)); err != nil {
			d.t.Fatal(err)
		}
		if _, err := d.devs[1].ReadAt(b, int64(off)); err != nil {
			d.t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			i := 0
			for a[i] == b[i] {
				i++
			}
			d.t.Fatalf("step %d, %s: the flash differs first at 0x%x: %s port wrote %#02x, %s port %#02x",
				d.step, what, off+uint64(i), name[0], a[i], name[1], b[i])
		}
	}
}

// swap reopens each flash under the other port: the C port now reads and
// continues what the Go port wrote, and the other way round.
func (d *diffPair) swap() {
	d.t.Helper()
	for _, p := range d.ports {
		if err := p.Close(); err != nil {
			d.t.Fatal(err)
		}
	}
	d.cOnDev = 1 - d.cOnDev
	d.ports[d.cOnDev] = d.open(d.cOnDev, true)
	d.ports[1-d.cOnDev] = d.open(1-d.cOnDev, false)
}

func diffImage(t *testing.T, l hal.Layout, key crypto.Signer, v string, n int, seed uint64) []byte {
	t.Helper()
	ver, err := image.ParseVersion(v)
	if err != nil {
		t.Fatal(err)
	}
	payload := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range payload {
		payload[i] = byte(r.Uint32())
	}
	img, err := image.Sign(payload, key, image.SignOptions{Version: ver, ErasedZero: l.Flash.EraseValue == 0})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestCPort_SameBytesAsGo is the proof that the C port is the Go port in
// C: for every catalog board, the same calls on core/boot's Platform and on
// the C port, over two flash images, leave the same bytes, the same flash
// operation counts and the same answers after every call, through
// downloads, resumes, refusals, boot requests, rollbacks, power-ons, the
// key-value store and its compactions. Half-way the two swap flashes, so
// each port reads, and goes on from, what the other one wrote.
func TestCPort_SameBytesAsGo(t *testing.T) {
	key, err := image.GenerateKey(image.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, e := range Catalog() {
		t.Run(e.Name, func(t *testing.T) {
			t.Parallel()
			l := e.Layout()
			d := &diffPair{t: t, l: l, cOnDev: 1}
			for i := range d.devs {
				dev, err := flash.NewMemoryWith(l.Flash, flash.Options{Strict: true})
				if err != nil {
					t.Fatal(err)
				}
				d.devs[i] = dev
			}
			d.ports[0], d.ports[1] = d.open(0, false), d.open(1, true)
			defer func() {
				for _, p := range d.ports {
					p.Close()
				}
			}()
			sameCalls(ctx, t, d, key)
		})
	}
}

// sameCalls is the sequence of calls TestCPort_SameBytesAsGo makes on both ports.
func sameCalls(ctx context.Context, t *testing.T, d *diffPair, key crypto.Signer) {
	l := d.l
	app, _ := l.Partition(hal.PartApp)
	a := int(l.Flash.WriteAlign)
	old := diffImage(t, l, key, "1.0.0", 3000, 1)
	d.do("factory image", func(p diffPort) (any, error) {
		dev := d.devs[0]
		if p == d.ports[1] {
			dev = d.devs[1]
		}
		buf := append([]byte(nil), old...)
		for len(buf)%a != 0 {
			buf = append(buf, l.Flash.EraseValue)
		}
		return nil, dev.Program(int64(app.Offset), buf)
	})
	reboot := func(what string) {
		d.do(what, func(p diffPort) (any, error) { return p.Reboot(ctx) })
	}
	describe := func(what string) {
		d.do(what, func(p diffPort) (any, error) { return p.Describe(ctx) })
	}
	set := func(k string, v []byte) {
		d.do("kv set "+k, func(p diffPort) (any, error) { return nil, p.Set(ctx, k, v) })
	}
	get := func(k string) {
		d.do("kv get "+k, func(p diffPort) (any, error) {
			v, ok, err := p.Get(ctx, k)
			return fmt.Sprint(v, ok), err
		})
	}
	install := func(ver string, n int, seed uint64, chunk int) []byte {
		img := diffImage(t, l, key, ver, n, seed)
		d.do("init "+ver, func(p diffPort) (any, error) { return nil, p.Init(ctx, hal.InitRequest{Size: uint64(len(img))}) })
		for off := 0; off < len(img); off += chunk {
			end := min(off+chunk, len(img))
			d.do(fmt.Sprintf("write %s at %d", ver, off), func(p diffPort) (any, error) { return nil, p.Write(ctx, uint64(off), img[off:end]) })
			set("otaport.checkpoint", fmt.Appendf(nil, "%s@%d", ver, end))
		}
		d.do("read back "+ver, func(p diffPort) (any, error) {
			b, err := p.Read(ctx, 0, len(img))
			return bytes.Equal(b, img), err
		})
		return img
	}

	reboot("first power-on")
	describe("describe the factory image")
	get("missing")
	set("a", []byte("one"))
	set("b", []byte{})
	set("a", []byte("one"))
	set("a", []byte("two"))
	get("a")
	get("b")
	set("a", nil)
	set("a", nil)
	get("a")
	d.do("kv set an empty key", func(p diffPort) (any, error) { return nil, p.Set(ctx, "", []byte("x")) })
	d.do("kv set a malformed key set", func(p diffPort) (any, error) { return nil, p.Set(ctx, "otaport.keyset", []byte("junk")) })

	// A download with an unaligned chunk size, resumed, rewritten and
	// refused where it differs.
	chunk := max(1000, 3*a) + a/2 + 1
	img := install("2.0.0", 4*chunk+a/3, 2, chunk)
	d.do("init resume", func(p diffPort) (any, error) {
		return nil, p.Init(ctx, hal.InitRequest{Size: uint64(len(img)), Resume: true})
	})
	d.do("write the same bytes again", func(p diffPort) (any, error) { return nil, p.Write(ctx, 0, img[:chunk]) })
	other := bytes.Clone(img[:chunk])
	other[a] ^= 0x5a
	d.do("write other bytes", func(p diffPort) (any, error) { return nil, p.Write(ctx, 0, other) })
	d.do("write misaligned", func(p diffPort) (any, error) {
		if a == 1 {
			return nil, nil
		}
		return nil, p.Write(ctx, 1, img[:a])
	})
	d.do("init too large", func(p diffPort) (any, error) { return nil, p.Init(ctx, hal.InitRequest{Size: 1 << 40}) })
	d.do("set boot bad mode", func(p diffPort) (any, error) { return nil, p.SetBoot(ctx, hal.BootRequest{Mode: 9}) })
	d.do("set boot test", func(p diffPort) (any, error) { return nil, p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest}) })
	describe("describe the request")
	d.do("rollback: cancel", func(p diffPort) (any, error) { return nil, p.Rollback(ctx) })
	d.do("set boot test again", func(p diffPort) (any, error) {
		return nil, p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootTest, Size: uint64(len(img))})
	})
	reboot("power-on: the trial")
	describe("describe the trial")
	d.do("write during the trial", func(p diffPort) (any, error) { return nil, p.Write(ctx, 0, img[:a]) })
	d.do("confirm", func(p diffPort) (any, error) { return nil, p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}) })
	reboot("power-on after the confirm")

	d.swap()
	describe("describe, each port over the other's flash")
	get("b")
	get("otaport.checkpoint")

	// The next image, then a rollback to the one before where there is one.
	img = install("3.0.0", 5000, 3, 4096)
	d.do("set boot permanent", func(p diffPort) (any, error) { return nil, p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootPermanent}) })
	reboot("power-on: permanent")
	d.do("rollback", func(p diffPort) (any, error) { return nil, p.Rollback(ctx) })
	d.do("confirm after a rollback", func(p diffPort) (any, error) { return nil, p.SetBoot(ctx, hal.BootRequest{Mode: hal.BootConfirm}) })
	reboot("power-on after the rollback")
	describe("describe after the rollback")

	// Enough records to compact the log several times, and a value too
	// large for it.
	params, _ := l.Partition(hal.PartParams)
	for i := range 40 {
		set(fmt.Sprintf("k%02d", i%7), bytes.Repeat([]byte{byte(i)}, int(params.Size/40)))
	}
	d.do("kv set too large", func(p diffPort) (any, error) { return nil, p.Set(ctx, "huge", make([]byte, params.Size)) })
	d.swap()
	for i := range 7 {
		get(fmt.Sprintf("k%02d", i))
	}
	set("k03", nil)
	reboot("last power-on")
	describe("describe at the end")
	_ = img
}
