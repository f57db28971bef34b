package conformance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"

	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
)

// cases is the kit: one list for Test and Run. Names are stable: scripts
// and issue reports refer to them.
func cases() []testCase {
	return []testCase{
		{name: "describe/layout", run: describeLayout},
		{name: "describe/stable-across-restart", run: describeStable},
		{name: "describe/capabilities", run: describeCapabilities},
		{name: "init/refuses-oversize", run: initOversize},
		{name: "init/refuses-size-zero", run: initSizeZero},
		{name: "init/erases-stale-data", run: initErases},
		{name: "init/resume-keeps-data", run: initResume},
		{name: "write/round-trip", run: writeRoundTrip},
		{name: "write/unaligned-tail", run: writeUnalignedTail},
		{name: "write/across-sectors", run: writeAcrossSectors},
		{name: "write/full-slot", run: writeFullSlot},
		{name: "write/misaligned", run: writeMisaligned},
		{name: "write/out-of-bounds", run: writeOutOfBounds},
		{name: "read/out-of-bounds", run: readOutOfBounds},
		{name: "write/concurrent", run: writeConcurrent},
		{name: "setboot/survives-restart", run: setBootSurvives},
		{name: "setboot/refuses-bad-mode", run: setBootBadMode},
		{name: "read-slot/running-and-update", needs: hal.CapReadSlot, run: readSlot},
		{name: "kv/set-get-delete", needs: "kv", run: kvBasic},
		{name: "kv/many-keys", needs: "kv", run: kvMany},
		{name: "kv/large-value", needs: "kv", run: kvLarge},
		{name: "kv/survives-restart", needs: "kv", run: kvRestart},
	}
}

// describeLayout: the layout a port reports is one a bootloader can use, by
// the same rules the generator and the bootloader apply (hal.Layout.Validate),
// and a boot state that names real slots.
func describeLayout(ctx context.Context, e *env) error {
	l := e.info.Layout
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, p := range l.Validate() {
		errs = append(errs, p)
	}
	active := 0
	for _, s := range e.info.Boot.Slots {
		if s.Name != hal.PartApp && s.Name != hal.PartOTA {
			bad("boot state names slot %q: want app or ota", s.Name)
		}
		if s.Active {
			active++
			if l.Scheme != hal.DualBank && s.Name != hal.PartApp {
				bad("%s board runs from slot %q: it always runs app", l.Scheme, s.Name)
			}
		}
	}
	if active > 1 {
		bad("boot state has %d active slots", active)
	}
	return errors.Join(errs...)
}

// describeStable: a restart reports the same layout and capabilities.
func describeStable(ctx context.Context, e *env) error {
	before := e.info
	if err := e.restart(ctx); err != nil {
		return err
	}
	if !reflect.DeepEqual(before.Layout, e.info.Layout) {
		return fmt.Errorf("layout changed across a restart:\nbefore %+v\nafter  %+v", before.Layout, e.info.Layout)
	}
	if !slices.Equal(before.Capabilities, e.info.Capabilities) {
		return fmt.Errorf("capabilities changed across a restart: %v, then %v", before.Capabilities, e.info.Capabilities)
	}
	return nil
}

// describeCapabilities: a listed capability is implemented.
func describeCapabilities(ctx context.Context, e *env) error {
	if len(e.info.Capabilities) == 0 {
		return skipf("the port lists no optional capabilities")
	}
	for _, c := range e.info.Capabilities {
		switch c {
		case "kv":
			if _, ok := e.p.(hal.KV); !ok {
				return errors.New(`the port lists "kv" but does not implement hal.KV`)
			}
		case "reboot":
			if _, ok := e.p.(hal.Rebooter); !ok {
				return errors.New(`the port lists "reboot" but does not implement hal.Rebooter`)
			}
		case hal.CapReadSlot:
			if _, ok := e.p.(hal.SlotReader); !ok {
				return errors.New(`the port lists "read-slot" but does not implement hal.SlotReader`)
			}
		}
	}
	return nil
}

// initOversize: an image larger than the slot is refused up front, before
// a byte is downloaded; one of exactly the slot's size is accepted.
func initOversize(ctx context.Context, e *env) error {
	err := e.p.Init(ctx, hal.InitRequest{Size: e.slot.Size + 1})
	if err := wantCode(err, fmt.Sprintf("init %s for %d bytes (slot size + 1)", e.slot.Name, e.slot.Size+1), hal.CodeOutOfBounds, hal.CodeInvalid); err != nil {
		return err
	}
	if err := e.p.Init(ctx, hal.InitRequest{Size: e.slot.Size}); err != nil {
		return fmt.Errorf("init %s for its whole size %d: %w", e.slot.Name, e.slot.Size, err)
	}
	return nil
}

// initSizeZero: an image of no bytes is a request that makes no sense.
func initSizeZero(ctx context.Context, e *env) error {
	return wantCode(e.p.Init(ctx, hal.InitRequest{Size: 0}), "init for 0 bytes", hal.CodeInvalid)
}

// initErases: Init without Resume leaves the image's extent erased, so no
// byte of a previous image survives into a new one. A port that skips the
// erase fails here (on NOR, the new data would be ANDed with the old).
func initErases(ctx context.Context, e *env) error {
	n := min(e.slot.Size, 48<<10+5)
	for round := range 2 {
		if err := e.p.Init(ctx, hal.InitRequest{Size: n}); err != nil {
			return fmt.Errorf("init %d bytes (round %d): %w", n, round+1, err)
		}
		if err := e.expectErased(ctx, 0, int(n), fmt.Sprintf("after init (round %d)", round+1)); err != nil {
			return err
		}
		d := e.data(int(n))
		if err := e.write(ctx, 0, d); err != nil {
			return err
		}
		if err := e.expect(ctx, 0, d, fmt.Sprintf("image written after init (round %d)", round+1)); err != nil {
			return err
		}
	}
	return nil
}

// initResume: Init with Resume keeps what was written, also across a
// restart, and the download continues where it stopped.
func initResume(ctx context.Context, e *env) error {
	n := min(e.slot.Size, 64<<10+3)
	half := min(e.up(n/2), n)
	d := e.data(int(n))
	if err := e.p.Init(ctx, hal.InitRequest{Size: n}); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := e.write(ctx, 0, d[:half]); err != nil {
		return err
	}
	if err := e.p.Init(ctx, hal.InitRequest{Size: n, Resume: true}); err != nil {
		return fmt.Errorf("init with resume: %w", err)
	}
	if err := e.expect(ctx, 0, d[:half], "first half after init with resume"); err != nil {
		return err
	}
	if err := e.restart(ctx); err != nil {
		return err
	}
	if err := e.p.Init(ctx, hal.InitRequest{Size: n, Resume: true}); err != nil {
		return fmt.Errorf("init with resume after a restart: %w", err)
	}
	if err := e.expect(ctx, 0, d[:half], "first half after a restart and init with resume"); err != nil {
		return err
	}
	if err := e.write(ctx, half, d[half:]); err != nil {
		return fmt.Errorf("resume the download: %w", err)
	}
	return e.expect(ctx, 0, d, "whole image after the resumed download")
}

// region is data the kit wrote at an offset of the update slot.
type region struct {
	off  uint64
	data []byte
}

// image returns what [0, size) of the slot must read after regs were
// written over erased flash: the data, and the erased value elsewhere,
// including the padding of short final chunks.
func (e *env) image(size uint64, regs []region) []byte {
	b := bytes.Repeat([]byte{e.erased}, int(size))
	for _, r := range regs {
		copy(b[r.off:], r.data)
	}
	return b
}

// writeRoundTrip: writes of many sizes at many aligned offsets, in random
// order, read back exactly, with the bytes between them still erased; then
// reads at arbitrary offsets and lengths agree.
func writeRoundTrip(ctx context.Context, e *env) error {
	a := int(e.align)
	sizes := []int{1, 2, 3, a - 1, a, a + 1, 2*a + 1, 7, 100, 255, 256, 511, 4095, 4096, 4097, 16<<10 + a, 64<<10 + 3}
	var regs []region
	var end uint64
	for _, s := range sizes {
		if s <= 0 {
			continue
		}
		off := end + uint64(e.rng.IntN(4))*e.align
		if off+e.up(uint64(s)) > e.slot.Size {
			break
		}
		regs = append(regs, region{off: off, data: e.data(s)})
		end = off + e.up(uint64(s))
	}
	if len(regs) == 0 {
		return fmt.Errorf("slot %s of %d bytes is too small for any write", e.slot.Name, e.slot.Size)
	}
	if err := e.p.Init(ctx, hal.InitRequest{Size: end}); err != nil {
		return fmt.Errorf("init %d bytes: %w", end, err)
	}
	order := e.rng.Perm(len(regs))
	for _, i := range order {
		if err := e.write(ctx, regs[i].off, regs[i].data); err != nil {
			return err
		}
	}
	want := e.image(end, regs)
	if err := e.expect(ctx, 0, want, fmt.Sprintf("%d writes of 1 to %d bytes in random order", len(regs), len(regs[len(regs)-1].data))); err != nil {
		return err
	}
	for range 64 {
		off := uint64(e.rng.IntN(int(end)))
		n := 1 + e.rng.IntN(int(min(end-off, 9000)))
		if err := e.expect(ctx, off, want[off:off+uint64(n)], fmt.Sprintf("read of %d bytes at an arbitrary offset", n)); err != nil {
			return err
		}
	}
	return nil
}

// writeUnalignedTail: an image whose size is not a multiple of the write
// alignment, written in chunks whose last is short, reads back exactly up
// to its length, with the padding erased; also when it ends at the very end
// of the slot.
func writeUnalignedTail(ctx context.Context, e *env) error {
	lengths := []uint64{3*e.align + 1, 4096*e.align + e.align - 1}
	if e.align == 1 {
		lengths = []uint64{4099}
	}
	for _, n := range lengths {
		if e.up(n) > e.slot.Size {
			continue
		}
		for _, atEnd := range []bool{false, true} {
			off := uint64(0)
			if atEnd {
				off = e.slot.Size - e.up(n)
			}
			if err := e.p.Init(ctx, hal.InitRequest{Size: off + n}); err != nil {
				return fmt.Errorf("init %d bytes: %w", off+n, err)
			}
			d := e.data(int(n))
			if err := e.write(ctx, off, d); err != nil {
				return err
			}
			want := append(slices.Clone(d), bytes.Repeat([]byte{e.erased}, int(e.up(n)-n))...)
			what := fmt.Sprintf("image of %d bytes (write_align %d) and its padding", n, e.align)
			if atEnd {
				what += ", ending at the end of the slot"
			}
			if err := e.expect(ctx, off, want, what); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeAcrossSectors: writes that start in one erase sector and end in
// another (or span several) read back exactly.
func writeAcrossSectors(ctx context.Context, e *env) error {
	// The first, a middle and the last sector boundary inside the slot,
	// relative to it, found by runs: a slot may have millions of sectors.
	m := e.info.Layout.Flash.Map()
	runs := m.Runs(e.slot.Offset, e.slot.End())
	if len(runs) == 0 || (len(runs) == 1 && runs[0].Count == 1) {
		return skipf("slot %s is one erase sector: no write crosses a sector boundary", e.slot.Name)
	}
	first := runs[0].Size
	last := e.slot.Size - runs[len(runs)-1].Size
	mid, above, on := m.Boundary(e.slot.Offset + e.slot.Size/2)
	if !on && mid <= e.slot.Offset {
		mid = above
	}
	picks := []uint64{first, mid - e.slot.Offset, last}
	var regs []region
	var end uint64
	for _, b := range picks {
		start := (b - min(b, 768)) / e.align * e.align
		if start < end {
			continue
		}
		stop := min(e.slot.Size, b+4096+777)
		regs = append(regs, region{off: start, data: e.data(int(stop - start))})
		end = e.up(stop)
	}
	if err := e.p.Init(ctx, hal.InitRequest{Size: end}); err != nil {
		return fmt.Errorf("init %d bytes: %w", end, err)
	}
	for _, r := range regs {
		if err := e.write(ctx, r.off, r.data); err != nil {
			return err
		}
	}
	return e.expect(ctx, 0, e.image(end, regs), fmt.Sprintf("writes across sector boundaries %#x", picks))
}

// writeFullSlot: the whole slot written and read back, also after a
// restart.
func writeFullSlot(ctx context.Context, e *env) error {
	if err := e.p.Init(ctx, hal.InitRequest{Size: e.slot.Size}); err != nil {
		return fmt.Errorf("init the whole slot (%d bytes): %w", e.slot.Size, err)
	}
	d := e.data(int(e.slot.Size))
	if err := e.write(ctx, 0, d); err != nil {
		return err
	}
	if err := e.expect(ctx, 0, d, "the whole slot"); err != nil {
		return err
	}
	if err := e.restart(ctx); err != nil {
		return err
	}
	return e.expect(ctx, 0, d, "the whole slot after a restart")
}

// writeMisaligned: a write at an offset that is not a multiple of the
// write alignment is refused with CodeMisaligned and writes nothing.
func writeMisaligned(ctx context.Context, e *env) error {
	if e.align == 1 {
		return skipf("write_align is 1: every offset is aligned")
	}
	n := min(e.slot.Size, 4*e.align)
	if err := e.p.Init(ctx, hal.InitRequest{Size: n}); err != nil {
		return fmt.Errorf("init %d bytes: %w", n, err)
	}
	offs := []uint64{1, e.align - 1, e.align + e.align/2}
	for _, off := range slices.Compact(offs) {
		err := e.p.Write(ctx, off, e.data(int(e.align)))
		if err := wantCode(err, fmt.Sprintf("write at 0x%x (write_align %d)", off, e.align), hal.CodeMisaligned); err != nil {
			return err
		}
	}
	if err := e.expectErased(ctx, 0, int(n), "flash after refused misaligned writes"); err != nil {
		return err
	}
	d := e.data(int(e.align))
	if err := e.p.Write(ctx, e.align, d); err != nil {
		return fmt.Errorf("aligned write at 0x%x: %w", e.align, err)
	}
	return e.expect(ctx, e.align, d, "aligned write after refused misaligned ones")
}

// writeOutOfBounds: writes that reach past the slot are refused with
// CodeOutOfBounds and write nothing, not even their first part; the last
// unit of the slot is writable.
func writeOutOfBounds(ctx context.Context, e *env) error {
	if err := e.p.Init(ctx, hal.InitRequest{Size: e.slot.Size}); err != nil {
		return fmt.Errorf("init the whole slot: %w", err)
	}
	last := e.slot.Size - e.align
	tests := []struct {
		off uint64
		n   uint64
	}{
		{last, 2 * e.align},
		{e.slot.Size, e.align},
		{e.slot.Size + 16*e.align, e.align},
		{1 << 62, e.align},
	}
	for _, tt := range tests {
		err := e.p.Write(ctx, tt.off, e.data(int(tt.n)))
		what := fmt.Sprintf("write of %d bytes at 0x%x (slot %s is %d bytes)", tt.n, tt.off, e.slot.Name, e.slot.Size)
		if err := wantCode(err, what, hal.CodeOutOfBounds); err != nil {
			return err
		}
	}
	if err := e.expectErased(ctx, last, int(e.align), "last unit of the slot after a refused write across the end"); err != nil {
		return err
	}
	d := e.data(int(e.align))
	if err := e.p.Write(ctx, last, d); err != nil {
		return fmt.Errorf("write of the last unit of the slot: %w", err)
	}
	return e.expect(ctx, last, d, "last unit of the slot")
}

// readOutOfBounds: reads that reach past the slot are refused with
// CodeOutOfBounds.
func readOutOfBounds(ctx context.Context, e *env) error {
	tests := []struct {
		off uint64
		n   int
	}{
		{e.slot.Size - 1, 2},
		{e.slot.Size, 1},
		{e.slot.Size + 4096, 16},
	}
	for _, tt := range tests {
		_, err := e.p.Read(ctx, tt.off, tt.n)
		what := fmt.Sprintf("read of %d bytes at 0x%x (slot %s is %d bytes)", tt.n, tt.off, e.slot.Name, e.slot.Size)
		if err := wantCode(err, what, hal.CodeOutOfBounds); err != nil {
			return err
		}
	}
	b, err := e.p.Read(ctx, e.slot.Size-16, 16)
	if err != nil || len(b) != 16 {
		return fmt.Errorf("read of the last 16 bytes of the slot: %d bytes, %v", len(b), err)
	}
	return nil
}

// readSlot: ReadSlot reaches the running slot, which a delta image is
// applied against, and the update slot by its name: the update slot reads
// by name what Write put there, the running slot's bytes do not change
// while the update slot is written, and a read past a slot or of a
// partition that holds no image is refused.
func readSlot(ctx context.Context, e *env) error {
	sr, ok := e.p.(hal.SlotReader)
	if !ok {
		return errors.New(`the port lists "read-slot" but does not implement hal.SlotReader`)
	}
	running := hal.PartApp
	if r, ok := e.info.Boot.Running(); ok {
		running = r.Name
	}
	if running == e.slot.Name {
		return fmt.Errorf("boot state runs %s, the update slot: the running image would be written over", running)
	}
	rp, ok := e.info.Layout.Partition(running)
	if !ok {
		return fmt.Errorf("layout has no partition %s, the running slot", running)
	}
	n := int(min(rp.Size, 8192))
	before, err := sr.ReadSlot(ctx, running, 0, n)
	if err != nil || len(before) != n {
		return fmt.Errorf("read slot %s: %d bytes at 0x0: got %d, %v", running, n, len(before), err)
	}
	d := e.data(int(min(e.slot.Size, 4096+e.align)))
	if err := e.p.Init(ctx, hal.InitRequest{Size: uint64(len(d))}); err != nil {
		return fmt.Errorf("init %d bytes: %w", len(d), err)
	}
	if err := e.write(ctx, 0, d); err != nil {
		return err
	}
	got, err := sr.ReadSlot(ctx, e.slot.Name, 1, len(d)-1)
	if err != nil {
		return fmt.Errorf("read slot %s (the update slot) by name: %w", e.slot.Name, err)
	}
	if !bytes.Equal(got, d[1:]) {
		return fmt.Errorf("read slot %s by name: %d bytes at 0x1 differ from what Write put there", e.slot.Name, len(d)-1)
	}
	after, err := sr.ReadSlot(ctx, running, 0, n)
	if err != nil {
		return fmt.Errorf("read slot %s after a write to %s: %w", running, e.slot.Name, err)
	}
	if !bytes.Equal(before, after) {
		return fmt.Errorf("slot %s (the running one) changed when %s (the update slot) was written", running, e.slot.Name)
	}
	if _, err := sr.ReadSlot(ctx, running, rp.Size-16, 16); err != nil {
		return fmt.Errorf("read the last 16 bytes of slot %s: %w", running, err)
	}
	if err := wantCode(readErr(sr.ReadSlot(ctx, running, rp.Size-1, 2)), fmt.Sprintf("read slot %s: 2 bytes at its last byte", running), hal.CodeOutOfBounds); err != nil {
		return err
	}
	return wantCode(readErr(sr.ReadSlot(ctx, hal.PartParams, 0, 16)), "read slot params (not an image slot)", hal.CodeInvalid)
}

// readErr is the error of a read.
func readErr(_ []byte, err error) error { return err }

// writeConcurrent: many goroutines writing disjoint regions at once. The
// port may serialise them or refuse some with CodeBusy; it may not mix
// them up: every accepted write reads back, every refused one left the
// flash erased.
func writeConcurrent(ctx context.Context, e *env) error {
	const workers, perWorker = 8, 4
	chunk := e.up(2048 + 1)
	for chunk*workers*perWorker > e.slot.Size && chunk > e.align {
		chunk = max(e.align, chunk/2/e.align*e.align)
	}
	total := chunk * workers * perWorker
	if total > e.slot.Size {
		return skipf("slot %s of %d bytes is too small for %d concurrent writes", e.slot.Name, e.slot.Size, workers*perWorker)
	}
	if err := e.p.Init(ctx, hal.InitRequest{Size: total}); err != nil {
		return fmt.Errorf("init %d bytes: %w", total, err)
	}
	data := e.data(int(total))
	accepted := make([]bool, workers*perWorker)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			// A panic in the port must fail the case, not the process.
			defer func() {
				if r := recover(); r != nil {
					errs[w] = fmt.Errorf("panic in a concurrent call: %v", r)
				}
			}()
			for i := range perWorker {
				// Interleave the workers' chunks so that neighbours in the
				// flash are written by different goroutines.
				k := i*workers + w
				off := uint64(k) * chunk
				d := data[off : off+chunk]
				err := e.p.Write(ctx, off, d)
				if hal.CodeOf(err) == hal.CodeBusy {
					continue
				}
				if err != nil {
					errs[w] = fmt.Errorf("concurrent write at 0x%x: %w", off, err)
					return
				}
				accepted[k] = true
				got, err := e.p.Read(ctx, off, int(chunk))
				if hal.CodeOf(err) == hal.CodeBusy {
					continue
				}
				if err != nil {
					errs[w] = fmt.Errorf("concurrent read at 0x%x: %w", off, err)
					return
				}
				if err := diff(e.slot.Name, off, got, d, "concurrent write read back at once"); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	want := bytes.Repeat([]byte{e.erased}, int(total))
	n := 0
	for k, ok := range accepted {
		if ok {
			copy(want[uint64(k)*chunk:], data[uint64(k)*chunk:uint64(k+1)*chunk])
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("all %d concurrent writes were refused as busy: the port must accept writes that do not overlap in time", len(accepted))
	}
	return e.expect(ctx, 0, want, fmt.Sprintf("%d concurrent writes (%d accepted)", len(accepted), n))
}

// pending returns the names of the slots Describe reports pending.
func (e *env) pending(ctx context.Context) ([]string, error) {
	info, err := e.p.Describe(ctx)
	if err != nil {
		return nil, fmt.Errorf("describe: %w", err)
	}
	var names []string
	for _, s := range info.Boot.Slots {
		if s.Pending {
			names = append(names, s.Name)
		}
	}
	return names, nil
}

// expectPending checks which slot is pending, now and after a restart.
func (e *env) expectPending(ctx context.Context, want []string, what string) error {
	for _, when := range []string{"", " after a restart"} {
		if when != "" {
			if err := e.restart(ctx); err != nil {
				return err
			}
		}
		got, err := e.pending(ctx)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s%s: Describe reports pending slots %q, want %q", what, when, got, want)
		}
	}
	return nil
}

// setBootSurvives: a boot request (test, then permanent) and its
// cancellation by Rollback are persisted: a restart reports the same
// pending state. The image is a real MCUboot image, hash-only unless
// Options.Signer is set.
func setBootSurvives(ctx context.Context, e *env) error {
	usable := e.slot.Size
	if e.info.Layout.Scheme == hal.SingleBank {
		app, _ := e.info.Layout.Partition(hal.PartApp)
		usable = min(usable, app.Size)
	}
	payload := int(min(16<<10, usable/4))
	if payload < 1024 {
		return skipf("slot %s of %d bytes is too small for a test image", e.slot.Name, e.slot.Size)
	}
	img, err := image.Sign(e.data(payload), e.opts.Signer, image.SignOptions{
		Version:    image.Version{Major: 0, Minor: 0, Revision: 1, Build: 7},
		ErasedZero: e.erased == 0,
	})
	if err != nil {
		return fmt.Errorf("make a test image: %w", err)
	}
	size := uint64(len(img))
	for _, mode := range []hal.BootMode{hal.BootTest, hal.BootPermanent} {
		if err := e.p.Init(ctx, hal.InitRequest{Size: size}); err != nil {
			return fmt.Errorf("init %d bytes: %w", size, err)
		}
		if err := e.write(ctx, 0, img); err != nil {
			return err
		}
		if err := e.expect(ctx, 0, img, "test image"); err != nil {
			return err
		}
		err := e.p.SetBoot(ctx, hal.BootRequest{Mode: mode, Size: size})
		if err != nil {
			if hal.CodeOf(err) == hal.CodeNoImage && e.opts.Signer == nil {
				return skipf("the port refuses a hash-only image (%v): give the kit a key the port trusts (Options.Signer)", err)
			}
			return fmt.Errorf("set boot %s for an image of %d bytes: %w", mode, size, err)
		}
		if err := e.expectPending(ctx, []string{e.slot.Name}, fmt.Sprintf("after set boot %s", mode)); err != nil {
			return err
		}
		if err := e.p.Rollback(ctx); err != nil {
			return fmt.Errorf("rollback of a pending %s request: %w", mode, err)
		}
		if err := e.expectPending(ctx, nil, fmt.Sprintf("after rollback of a pending %s request", mode)); err != nil {
			return err
		}
	}
	return nil
}

// setBootBadMode: a boot mode that does not exist is refused as invalid.
func setBootBadMode(ctx context.Context, e *env) error {
	for _, m := range []hal.BootMode{0, 99} {
		if err := wantCode(e.p.SetBoot(ctx, hal.BootRequest{Mode: m}), fmt.Sprintf("set boot mode %d", int(m)), hal.CodeInvalid); err != nil {
			return err
		}
	}
	return nil
}

// kv returns the port's key-value store.
func (e *env) kv() (hal.KV, error) {
	kv, ok := e.p.(hal.KV)
	if !ok {
		return nil, errors.New(`the port lists "kv" but does not implement hal.KV`)
	}
	return kv, nil
}

// paramsSize is the size of the params partition, which bounds what the
// KV cases store.
func (e *env) paramsSize() uint64 {
	p, _ := e.info.Layout.Partition(hal.PartParams)
	return p.Size
}

// kvCheck checks that key holds want (nil: absent).
func kvCheck(ctx context.Context, kv hal.KV, key string, want []byte, what string) error {
	got, ok, err := kv.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("%s: get %q: %w", what, key, err)
	}
	switch {
	case want == nil && ok:
		return fmt.Errorf("%s: get %q: found %d bytes, want it absent", what, key, len(got))
	case want != nil && !ok:
		return fmt.Errorf("%s: get %q: absent, want %d bytes", what, key, len(want))
	case want != nil && !bytes.Equal(got, want):
		return fmt.Errorf("%s: get %q: %d bytes that differ from the %d set", what, key, len(got), len(want))
	}
	return nil
}

// kvClean deletes keys, best effort: the params partition is small.
func kvClean(ctx context.Context, e *env, keys ...string) {
	kv, err := e.kv()
	if err != nil || e.p == nil {
		return
	}
	for _, k := range keys {
		_ = kv.Set(ctx, k, nil)
	}
}

// kvBasic: set, get, overwrite with another length, delete, delete again.
func kvBasic(ctx context.Context, e *env) error {
	kv, err := e.kv()
	if err != nil {
		return err
	}
	const key = "conformance.basic"
	defer kvClean(ctx, e, key)
	if err := kvCheck(ctx, kv, key, nil, "before any set"); err != nil {
		return err
	}
	for i, v := range [][]byte{e.data(40), e.data(13), e.data(40)} {
		if err := kv.Set(ctx, key, v); err != nil {
			return fmt.Errorf("set %q (%d bytes, set %d): %w", key, len(v), i+1, err)
		}
		if err := kvCheck(ctx, kv, key, v, fmt.Sprintf("after set %d", i+1)); err != nil {
			return err
		}
	}
	for i := range 2 {
		if err := kv.Set(ctx, key, nil); err != nil {
			return fmt.Errorf("delete %q (delete %d): %w", key, i+1, err)
		}
		if err := kvCheck(ctx, kv, key, nil, "after delete"); err != nil {
			return err
		}
	}
	return nil
}

// kvKeys returns n key names.
func kvKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("conformance.%s.%02d", prefix, i)
	}
	return keys
}

// kvMany: many keys set, some overwritten, some deleted, all as expected.
func kvMany(ctx context.Context, e *env) error {
	kv, err := e.kv()
	if err != nil {
		return err
	}
	n := int(min(max(e.paramsSize()/256, 4), 32))
	keys := kvKeys("many", n)
	defer kvClean(ctx, e, keys...)
	want := map[string][]byte{}
	for _, k := range keys {
		v := e.data(8 + e.rng.IntN(9))
		if err := kv.Set(ctx, k, v); err != nil {
			return fmt.Errorf("set %q: %w", k, err)
		}
		want[k] = v
	}
	for i, k := range keys {
		switch i % 3 {
		case 0:
			want[k] = e.data(12)
			if err := kv.Set(ctx, k, want[k]); err != nil {
				return fmt.Errorf("overwrite %q: %w", k, err)
			}
		case 1:
			want[k] = nil
			if err := kv.Set(ctx, k, nil); err != nil {
				return fmt.Errorf("delete %q: %w", k, err)
			}
		}
	}
	for _, k := range keys {
		if err := kvCheck(ctx, kv, k, want[k], fmt.Sprintf("%d keys set, a third overwritten, a third deleted", n)); err != nil {
			return err
		}
	}
	return nil
}

// kvLarge: a value of a few KiB (scaled to the params partition) round
// trips, and so does its replacement.
func kvLarge(ctx context.Context, e *env) error {
	kv, err := e.kv()
	if err != nil {
		return err
	}
	size := int(min(max(e.paramsSize()/16, 64), 4096))
	const key = "conformance.large"
	defer kvClean(ctx, e, key)
	for i := range 2 {
		v := e.data(size)
		if err := kv.Set(ctx, key, v); err != nil {
			return fmt.Errorf("set %q to %d bytes (params partition %d bytes): %w", key, size, e.paramsSize(), err)
		}
		if err := kvCheck(ctx, kv, key, v, fmt.Sprintf("value of %d bytes, set %d", size, i+1)); err != nil {
			return err
		}
	}
	return nil
}

// kvRestart: what is set, overwritten and deleted is so after a restart.
func kvRestart(ctx context.Context, e *env) error {
	keys := kvKeys("restart", 3)
	defer kvClean(ctx, e, keys...)
	kv, err := e.kv()
	if err != nil {
		return err
	}
	want := map[string][]byte{}
	for _, k := range keys {
		want[k] = e.data(24)
		if err := kv.Set(ctx, k, want[k]); err != nil {
			return fmt.Errorf("set %q: %w", k, err)
		}
	}
	check := func(what string) error {
		if err := e.restart(ctx); err != nil {
			return err
		}
		kv, err := e.kv()
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := kvCheck(ctx, kv, k, want[k], what); err != nil {
				return err
			}
		}
		return nil
	}
	if err := check("after a restart"); err != nil {
		return err
	}
	kv, err = e.kv()
	if err != nil {
		return err
	}
	want[keys[0]] = e.data(30)
	if err := kv.Set(ctx, keys[0], want[keys[0]]); err != nil {
		return fmt.Errorf("overwrite %q: %w", keys[0], err)
	}
	want[keys[1]] = nil
	if err := kv.Set(ctx, keys[1], nil); err != nil {
		return fmt.Errorf("delete %q: %w", keys[1], err)
	}
	return check("after an overwrite, a delete and a restart")
}
