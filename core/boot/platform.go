package boot

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/otaport/otaport/core/bootfmt/mcuboot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/keyset"
)

// Platform is the generic port: hal.Platform, hal.KV and hal.Rebooter over a
// flash device and a board layout. Its methods are safe for concurrent use;
// a mutex serialises them, as one flash controller does.
//
// A Platform remembers its verification of each slot until it erases or
// programs that slot or powers on (Reboot), so that Describe, SetBoot and
// Rollback do not hash an unchanged image again; a write to the device that
// does not go through it is seen at the next power-on, not before (see
// slotCache).
type Platform struct {
	mu     sync.Mutex
	dev    flash.Device
	b      *board
	opts   Options
	s      *store
	closed bool
	cache  slotCache
	trl    trailerCache // an MCUboot board's trailers
	// cur and pad are Write's buffers, kept from call to call (under mu)
	// so that a download allocates nothing per chunk: the garbage they
	// made bounded the plugin's write rate. SetBoot, the end of a
	// download, lets them go: a fleet simulation holds thousands of idle
	// platforms.
	cur, pad []byte
}

// NewPlatform checks layout l against dev (partitions inside the flash, on
// sector boundaries, params of two sectors or more) and reads the params
// partition. It writes nothing.
func NewPlatform(l hal.Layout, dev flash.Device, opts Options) (*Platform, error) {
	b, err := checkLayout(l, dev)
	if err != nil {
		return nil, err
	}
	b.decKey = opts.DecryptKey
	s, err := openStore(dev, b)
	if err != nil {
		return nil, fmt.Errorf("board %q: %w", l.Board, err)
	}
	if b.esp != nil {
		// A flash file of this board's older layout is refused here,
		// where the port is opened, rather than at its first boot.
		if _, err := b.readOtadata(dev); err != nil {
			return nil, fmt.Errorf("board %q: %w", l.Board, err)
		}
	}
	// The cache holds verifications made with these keys: a caller that
	// changed its slice afterwards must not change what they mean.
	opts.Keys = slices.Clone(opts.Keys)
	return &Platform{dev: dev, b: b, opts: opts, s: s}, nil
}

// Close ends the platform; with Options.CloseDevice it closes the device.
func (pl *Platform) Close() error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		return nil
	}
	pl.closed = true
	if c, ok := pl.dev.(io.Closer); ok && pl.opts.CloseDevice {
		return c.Close()
	}
	return nil
}

// ready checks, under the lock, that the platform can serve a call.
func (pl *Platform) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if pl.closed {
		return hal.Errorf(hal.CodeInvalid, "board %q: platform is closed", pl.b.layout.Board)
	}
	return pl.s.reloadIfStale()
}

// update returns the partition new images go to now.
func (pl *Platform) update() hal.Partition {
	return pl.b.slots[pl.updateSlot()]
}

// updateSlot returns the slot new images go to now.
func (pl *Platform) updateSlot() Slot { return pl.b.updateSlot(pl.s.params().Running) }

// check is checkSlot with the platform's keys, through its cache; on a
// direct-xip board, with the first bytes it holds back (xipHeadKey) in
// place.
func (pl *Platform) check(s Slot, minCounter uint32) (slotImage, error) {
	var r io.ReaderAt = pl.dev
	if pl.b.directXIP() {
		if h := pl.xipHead(s); h != nil {
			// Write, Init and the request drop the cache when they
			// change these bytes.
			r = headReader{pl.dev, int64(pl.b.slots[s].Offset), h}
		}
	}
	return pl.cache.check(r, pl.b, s, pl.keys(), minCounter)
}

// checkWritable refuses to touch the update slot while something depends on
// it: during a dual-bank trial it holds the old, confirmed image to fall
// back to; during a single-bank copy it is the copy's source.
func (pl *Platform) checkWritable(op string) error {
	p := pl.s.params()
	if p.Copy == CopyRunning {
		// Only in simulation can the port run before the bootloader has
		// finished: ota is the source of that copy.
		return hal.Errorf(hal.CodeInvalid, "%s %s: the bootloader's copy of ota over app stopped at 0x%x: power on (Reboot) to finish it first", op, pl.update().Name, p.CopyDone)
	}
	if pl.b.layout.Scheme.Reverts() && p.RolledBack {
		// Whatever a process above believes, the next power-on boots
		// the image in the update slot: erasing it would leave nothing.
		return hal.Errorf(hal.CodeBusy, "%s %s: a rollback to the image in %s awaits the next power-on: power on (Reboot) first",
			op, pl.update().Name, pl.update().Name)
	}
	trial, running := p.Trial, p.Running
	switch {
	case pl.b.directXIP():
		pri, sec, err := pl.trailers()
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, pl.update().Name, err)
		}
		trial = xipTrial([2]mcuboot.State{pri, sec}[running])
	case pl.b.mcub != nil:
		pri, _, err := pl.trailers()
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, pl.update().Name, err)
		}
		trial = swapTrial(pri)
	}
	if pl.b.esp != nil {
		v, err := pl.otadata()
		if err != nil {
			return fmt.Errorf("%s %s: %w", op, pl.update().Name, err)
		}
		trial = v.trial()
	}
	if pl.b.layout.Scheme.Reverts() && trial {
		return hal.Errorf(hal.CodeInvalid, "%s %s: the running image in %s is on trial and %s holds the image to fall back to: confirm (SetBoot confirm) or roll back first",
			op, pl.update().Name, running.Name(), pl.update().Name)
	}
	return nil
}

// maxWrite is the most bytes Write and Init take in the update slot: the
// slot, or on an MCUboot board MCUboot's largest image, which leaves the
// trailer's sectors (and on swap-move the sector the move needs) free.
func (pl *Platform) maxWrite() uint64 {
	if pl.b.swap != nil {
		return pl.b.swap.maxImage
	}
	if pl.b.mcub != nil {
		return pl.b.mcub.maxImage
	}
	return pl.update().Size
}

// tooLarge is the error of an image of n bytes that does not fit.
func (pl *Platform) tooLarge(op string, n uint64) error {
	slot := pl.update()
	if pl.b.swap != nil {
		return hal.Errorf(hal.CodeOutOfBounds, "%s %s: image of %d bytes is larger than %d bytes, the most MCUboot swap-move takes on this board ((app sectors - 1) x %d - %d trailer sector(s) of %d bytes): build a smaller image",
			op, slot.Name, n, pl.b.swap.maxImage, pl.b.swap.sector, pl.b.swap.trailerSecs, pl.b.swap.sector)
	}
	if pl.b.mcub != nil {
		return hal.Errorf(hal.CodeOutOfBounds, "%s %s: image of %d bytes is larger than %d bytes, the most that leaves MCUboot's trailer sectors free on this board: build a smaller image",
			op, slot.Name, n, pl.b.mcub.maxImage)
	}
	return hal.Errorf(hal.CodeOutOfBounds, "%s %s: image of %d bytes does not fit in slot %s of %d bytes", op, slot.Name, n, slot.Name, slot.Size)
}

// Describe returns the layout, the boot state read from the slots' images
// (verified, or as verified before when unchanged since) and the boot
// parameters, and the capabilities kv and reboot.
func (pl *Platform) Describe(ctx context.Context) (hal.Info, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return hal.Info{}, err
	}
	l := pl.b.layout
	l.Flash = pl.b.geo
	l.BootAttempts = pl.b.attempts
	var st hal.BootState
	var err error
	if pl.b.directXIP() {
		var xs [2]xipSlot
		if xs, err = pl.xipState(); err == nil {
			p := pl.s.params()
			st = xipBootState(xs, p.Running, p)
		}
	} else if pl.b.mcub != nil {
		var pri, sec mcuboot.State
		if pri, sec, err = pl.trailers(); err == nil {
			st, err = mcubBootState(pl.b, pri, sec, pl.s.params(), pl.check)
		}
	} else if pl.b.esp != nil {
		var v espView
		if v, err = pl.otadata(); err == nil {
			st, err = espBootState(v, pl.s.params(), pl.check)
		}
	} else {
		st, err = bootState(pl.s.params(), pl.check)
	}
	if err != nil {
		return hal.Info{}, fmt.Errorf("describe: %w", err)
	}
	return hal.Info{Layout: l, Boot: st, Capabilities: []string{"kv", hal.CapReadSlot, "reboot"}}, nil
}

// Init prepares the update slot for an image of req.Size bytes: it erases
// the sectors the image will occupy (not the whole slot), or keeps them when
// resuming. Write never programs over bytes that are not erased, whatever
// Init did.
func (pl *Platform) Init(ctx context.Context, req hal.InitRequest) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return err
	}
	slot := pl.update()
	if req.Size == 0 {
		return hal.Errorf(hal.CodeInvalid, "init %s: image size 0: give the size of the image to write", slot.Name)
	}
	if req.Size > pl.maxWrite() {
		return pl.tooLarge("init", req.Size)
	}
	if err := pl.checkWritable("init"); err != nil {
		return err
	}
	if req.Resume {
		return nil
	}
	// The slot is about to change: a request to boot what it held must go
	// first, or a power-on in between would act on a half-written image.
	if p := pl.s.params(); p.Pending && pl.b.slots[p.PendingSlot] == slot {
		p.Pending, p.Mode, p.ImageSize = false, 0, 0
		if err := pl.s.setParams(p); err != nil {
			return fmt.Errorf("init %s: cancel the pending request: %w", slot.Name, err)
		}
	}
	if pl.b.esp != nil {
		if err := pl.cancelESP(pl.updateSlot()); err != nil {
			return fmt.Errorf("init %s: cancel the pending request: %w", slot.Name, err)
		}
	}
	off, end := int64(slot.Offset), pl.b.coverEnd(slot, req.Size)
	pl.cache.drop(pl.updateSlot())
	if pl.b.directXIP() {
		if err := pl.s.set(xipHeadKey, nil); err != nil {
			return fmt.Errorf("init %s: forget the last image's first bytes: %w", slot.Name, err)
		}
	}
	if pl.b.mcub != nil {
		// A request in ota's trailer goes before the image it names:
		// MCUboot must never find a request over a half-written image.
		us := pl.updateSlot()
		pl.dropTrailer(us)
		if err := pl.b.scrambleTrailer(pl.dev, us); err != nil {
			return fmt.Errorf("init %s: %w", slot.Name, err)
		}
		pl.noteTrailer(us, pl.b.erasedTrailer(us))
	}
	if err := pl.dev.Erase(off, end-off); err != nil {
		return flashErr(fmt.Sprintf("init %s: erase 0x%x..0x%x", slot.Name, off, end), err)
	}
	if pl.b.esp != nil {
		if err := pl.invalidateInactiveESP(); err != nil {
			return fmt.Errorf("init %s: %w", slot.Name, err)
		}
	}
	return nil
}

// Write programs data at off in the update slot. A short final chunk is
// padded to the write alignment with the erased value. Units that already
// hold the same bytes are skipped, so a resumed download may send a chunk
// again; a unit that holds other data is refused with hal.ErrNotErased
// (Init the slot again without Resume). data is only read, never kept.
func (pl *Platform) Write(ctx context.Context, off uint64, data []byte) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return err
	}
	s := pl.updateSlot()
	slot := pl.b.slots[s]
	align := uint64(pl.b.geo.WriteAlign)
	if off%align != 0 {
		return hal.Errorf(hal.CodeMisaligned, "write %s at 0x%x: offset is not a multiple of write_align %d", slot.Name, off, align)
	}
	if off > slot.Size || uint64(len(data)) > slot.Size-off {
		return hal.Errorf(hal.CodeOutOfBounds, "write %s at 0x%x: %d bytes reach past the end of the slot (%d bytes)", slot.Name, off, len(data), slot.Size)
	}
	if end := off + uint64(len(data)); end > pl.maxWrite() {
		return hal.Errorf(hal.CodeOutOfBounds, "write %s at 0x%x: %d bytes reach 0x%x, past 0x%x where MCUboot's trailer sectors and the swap's spare sector begin: an image is at most %d bytes on this board",
			slot.Name, off, len(data), end, pl.maxWrite(), pl.maxWrite())
	}
	if len(data) == 0 {
		return nil
	}
	if err := pl.checkWritable("write"); err != nil {
		return err
	}
	if pl.b.directXIP() && off < pl.b.xipHeadSize() {
		n, err := pl.writeXIPHead(s, off, data)
		if err != nil {
			return err
		}
		if off, data = off+uint64(n), data[n:]; len(data) == 0 {
			return nil
		}
	}
	erase := pl.b.geo.EraseValue
	a := int(align)
	buf := data
	if tail := len(data) % a; tail != 0 {
		pl.pad = grow(pl.pad, len(data)-tail+a)
		buf = pl.pad
		copy(buf, data)
		fillBytes(buf[len(data):], erase)
	}
	base := int64(slot.Offset + off)
	pl.cache.drop(s)
	// The flash under buf is read a piece at a time into cur, which is
	// what a platform keeps between chunks: a piece, not a chunk (the
	// engine's default chunk is 256 KiB; a fleet simulation has
	// thousands of platforms downloading at once). A run of units to
	// program may span pieces: start is its first unit until its end is
	// found, so the calls to Program are the same as over a whole chunk.
	piece := max(writePiece/a, 1) * a
	pl.cur = grow(pl.cur, min(piece, len(buf)))
	start := -1
	program := func(end int) error {
		if err := pl.dev.Program(base+int64(start), buf[start:end]); err != nil {
			return flashErr(fmt.Sprintf("write %s at 0x%x", slot.Name, off+uint64(start)), err)
		}
		start = -1
		return nil
	}
	for p := 0; p < len(buf); p += piece {
		q := min(p+piece, len(buf))
		cur := pl.cur[:q-p]
		if _, err := pl.dev.ReadAt(cur, base+int64(p)); err != nil {
			return flashErr(fmt.Sprintf("write %s at 0x%x: read back", slot.Name, off+uint64(p)), err)
		}
		if isErased(cur, erase) {
			// Every piece of a download after Init: the units to
			// program are those of buf that are not all erased value.
			in := buf[:q]
			for u := p; u < q; {
				if start < 0 {
					if u = skipErasedUnits(in, u, a, erase); u == q {
						break
					}
					start = u
				}
				if u = nextErasedUnit(in, u, a, erase); u < q {
					if err := program(u); err != nil {
						return err
					}
				}
			}
			continue
		}
		// Program the runs of units that differ; each must be erased.
		for u := p; u < q; u += a {
			c := cur[u-p : u-p+a]
			if bytes.Equal(c, buf[u:u+a]) {
				if start >= 0 {
					if err := program(u); err != nil {
						return err
					}
				}
				continue
			}
			if !isErased(c, erase) {
				// The run it ends is left unprogrammed, as it was when
				// Write read the whole chunk at once.
				return hal.Errorf(hal.CodeNotErased, "write %s at 0x%x: bytes at 0x%x already hold other data: Init the slot (without Resume) before writing a new image", slot.Name, off, off+uint64(u))
			}
			if start < 0 {
				start = u
			}
		}
	}
	if start >= 0 {
		return program(len(buf))
	}
	return nil
}

// writePiece is how much of the flash Write reads at a time to compare
// with what it writes.
const writePiece = 4 << 10

// grow returns b resized to n bytes, reallocated only when too small.
func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func fillBytes(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}

// skipErasedUnits returns the start of the first write unit (a bytes) at or
// after u (a unit start) that holds anything but the erased value, or
// len(b). Every byte before the first one that is not erased is, so the
// unit that holds that byte is the answer.
func skipErasedUnits(b []byte, u, a int, erase byte) int {
	i := indexNot(b[u:], erase)
	if i < 0 {
		return len(b)
	}
	return u + i - i%a
}

// nextErasedUnit returns the start of the first write unit (a bytes) at or
// after u (a unit start) that holds only the erased value, or len(b). Such
// a unit starts with an erased byte, which IndexByte finds quickly; in
// random data most candidates fail at their next word.
func nextErasedUnit(b []byte, u, a int, erase byte) int {
	for u < len(b) {
		i := bytes.IndexByte(b[u:], erase)
		if i < 0 {
			return len(b)
		}
		us := u + i - i%a
		if isErased(b[us:us+a], erase) {
			return us
		}
		u = us + a
	}
	return len(b)
}

// indexNot returns the index of the first byte of b that is not v, or -1,
// comparing eight bytes at a time.
func indexNot(b []byte, v byte) int {
	w := uint64(v) * 0x0101010101010101
	i := 0
	for ; i+8 <= len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != w {
			break
		}
	}
	for ; i < len(b); i++ {
		if b[i] != v {
			return i
		}
	}
	return -1
}

// Read reads n bytes at off in the update slot.
func (pl *Platform) Read(ctx context.Context, off uint64, n int) ([]byte, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return nil, err
	}
	if n < 0 {
		return nil, hal.Errorf(hal.CodeInvalid, "read %s at 0x%x: negative length %d", pl.update().Name, off, n)
	}
	if err := pl.checkRead(off, n); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if err := pl.readInto(off, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadInto reads len(p) bytes at off in the update slot into p: Read
// without allocating its result. core/hal's plugin server uses it when a
// port has it, to read straight into the memory it shares with the host.
func (pl *Platform) ReadInto(ctx context.Context, off uint64, p []byte) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return err
	}
	if err := pl.checkRead(off, len(p)); err != nil {
		return err
	}
	return pl.readInto(off, p)
}

// checkRead refuses a read of n bytes at off that leaves the update slot.
func (pl *Platform) checkRead(off uint64, n int) error {
	slot := pl.update()
	if off > slot.Size || uint64(n) > slot.Size-off {
		return hal.Errorf(hal.CodeOutOfBounds, "read %s at 0x%x: %d bytes reach past the end of the slot (%d bytes)", slot.Name, off, n, slot.Size)
	}
	if end := off + uint64(n); end > pl.maxWrite() {
		// Only boot requests read and write MCUboot's trailer.
		return hal.Errorf(hal.CodeOutOfBounds, "read %s at 0x%x: %d bytes reach 0x%x, past 0x%x where MCUboot's trailer sectors and the swap's spare sector begin",
			slot.Name, off, n, end, pl.maxWrite())
	}
	return nil
}

func (pl *Platform) readInto(off uint64, p []byte) error {
	slot := pl.update()
	if _, err := pl.dev.ReadAt(p, int64(slot.Offset+off)); err != nil {
		return flashErr(fmt.Sprintf("read %s at 0x%x", slot.Name, off), err)
	}
	if pl.b.directXIP() {
		pl.overlayXIPHead(pl.updateSlot(), off, p)
	}
	return nil
}

// ReadSlot reads n bytes at off in the image slot called slot (app or ota),
// whichever runs: the base a delta image is applied to.
func (pl *Platform) ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return nil, err
	}
	p, err := imageSlot(pl.b.layout, slot, off, n)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if _, err := pl.dev.ReadAt(buf, int64(p.Offset+off)); err != nil {
		return nil, flashErr(fmt.Sprintf("read %s at 0x%x", p.Name, off), err)
	}
	return buf, nil
}

// imageSlot returns the image slot called name of layout l, refusing
// another partition (ReadSlot reaches images, not the params or the
// bootloader) and a read of n bytes at off that leaves it.
func imageSlot(l hal.Layout, name string, off uint64, n int) (hal.Partition, error) {
	if name != hal.PartApp && name != hal.PartOTA {
		return hal.Partition{}, hal.Errorf(hal.CodeInvalid, "read slot %q: not an image slot: give %s or %s", name, hal.PartApp, hal.PartOTA)
	}
	p, ok := l.Partition(name)
	if !ok {
		return hal.Partition{}, hal.Errorf(hal.CodeInvalid, "read slot %s: board %q has no such partition", name, l.Board)
	}
	if n < 0 || off > p.Size || uint64(n) > p.Size-off {
		return hal.Partition{}, hal.Errorf(hal.CodeOutOfBounds, "read %s at 0x%x: %d bytes reach past the end of the slot (%d bytes)", name, off, n, p.Size)
	}
	return p, nil
}

// SetBoot records what the bootloader is to do at the next power-on. Test
// and permanent requests check the image in the update slot first (hash,
// signature, security counter): verification comes before the reboot, not
// after it.
func (pl *Platform) SetBoot(ctx context.Context, req hal.BootRequest) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	pl.cur, pl.pad = nil, nil
	if err := pl.ready(ctx); err != nil {
		return err
	}
	if pl.b.swap != nil {
		return pl.setBootSwap(req)
	}
	if pl.b.overwriteOnly() {
		return pl.setBootOverwrite(req)
	}
	if pl.b.directXIP() {
		return pl.setBootXIP(req)

	}
	if pl.b.esp != nil {
		return pl.setBootESP(req)
	}
	p := pl.s.params()
	switch req.Mode {
	case hal.BootTest, hal.BootPermanent:
		target := pl.b.updateSlot(p.Running)
		si, err := pl.checkRequest(req, target, p.SecurityCounter)
		if err != nil {
			return err
		}
		if pl.b.layout.Scheme == hal.SingleBank && uint64(si.img.TotalSize) > pl.b.slots[SlotApp].Size {
			return hal.Errorf(hal.CodeOutOfBounds, "set boot %s: image of %d bytes does not fit app (%d bytes), which it is copied over", req.Mode, si.img.TotalSize, pl.b.slots[SlotApp].Size)
		}
		// A new install of the slot ends its rejection.
		p.Pending, p.PendingSlot, p.Mode, p.ImageSize, p.RolledBack, p.Rejected = true, target, req.Mode, uint32(si.img.TotalSize), false, false
	case hal.BootConfirm:
		if p.RolledBack {
			// The running image is being given up: confirming it would
			// raise the security counter past the image to return to.
			return hal.Errorf(hal.CodeInvalid, "set boot confirm: the image in %s was rolled back and %s boots at the next power-on: power on (Reboot) first", p.Running.Name(), p.Active.Name())
		}
		if p.Trial {
			p.Active, p.Trial, p.BootCount = p.Running, false, 0
		}
		p.Confirmed = true
		// The running image is good: images older than it (by security
		// counter) may no longer boot.
		if err := pl.raiseCounter(&p, p.Running); err != nil {
			return fmt.Errorf("set boot confirm: %w", err)
		}
	default:
		return hal.Errorf(hal.CodeInvalid, "set boot: mode %v: want test, permanent or confirm", req.Mode)
	}
	if err := pl.s.setParams(p); err != nil {
		return fmt.Errorf("set boot %s: %w", req.Mode, err)
	}
	return nil
}

// raiseCounter raises the device's security counter in p to that of the
// image in slot s, which has just been confirmed: images older than it (by
// security counter) may no longer boot. Every bootloader's confirm does it.
func (pl *Platform) raiseCounter(p *Params, s Slot) error {
	si, err := pl.check(s, 0)
	if err != nil {
		return err
	}
	if si.img != nil {
		p.SecurityCounter = max(p.SecurityCounter, si.img.SecurityCounter)
	}
	return nil
}

// checkRequest checks what a test or permanent request names: the update
// slot may change, the size fits, and the image in target verifies (hash,
// signature, security counter not below minCounter) and is as large as
// the request says.
func (pl *Platform) checkRequest(req hal.BootRequest, target Slot, minCounter uint32) (slotImage, error) {
	slot := pl.b.slots[target]
	if err := pl.checkWritable("set boot"); err != nil {
		return slotImage{}, err
	}
	if req.Size > pl.maxWrite() {
		return slotImage{}, pl.tooLarge("set boot", req.Size)
	}
	si, err := pl.check(target, minCounter)
	if err != nil {
		return slotImage{}, fmt.Errorf("set boot %s: %w", req.Mode, err)
	}
	if !si.bootable() {
		return slotImage{}, hal.Errorf(hal.CodeNoImage, "set boot %s: %v", req.Mode, si.err)
	}
	if req.Size != 0 && req.Size < uint64(si.img.TotalSize) {
		return slotImage{}, hal.Errorf(hal.CodeInvalid, "set boot %s: size %d is less than the image in %s (%d bytes)", req.Mode, req.Size, slot.Name, si.img.TotalSize)
	}
	return si, nil
}

// Rollback returns to the previous image at the next power-on. Swap: as
// dual-bank, in MCUboot's terms (rollbackSwap). Dual-bank:
// the other slot becomes active again, permanently (or a pending request is
// cancelled); the image given up is rejected (Params.Rejected) and never
// boots again until installed again, so there is no rollback to it either.
// Single-bank: a pending copy is cancelled; once copied there is
// no old image left, and it answers hal.ErrUnsupported.
func (pl *Platform) Rollback(ctx context.Context) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return err
	}
	if pl.b.swap != nil {
		return pl.rollbackSwap()
	}
	if pl.b.overwriteOnly() {
		return pl.rollbackOverwrite()
	}
	if pl.b.directXIP() {
		return pl.rollbackXIP()

	}
	if pl.b.esp != nil {
		return pl.rollbackESP()
	}
	p := pl.s.params()
	switch {
	case p.Pending:
		p.Pending, p.Mode, p.ImageSize = false, 0, 0
		// A cancelled image never boots unless installed again.
		p.Rejected = pl.b.layout.Scheme == hal.DualBank
	case pl.b.layout.Scheme == hal.SingleBank:
		return hal.Errorf(hal.CodeUnsupported, "single-bank board %q: nothing is pending, and once ota has been copied over app there is no old image to return to", pl.b.layout.Board)
	case p.Trial:
		// Active is still the old image; leave the trial now rather than
		// after the boot counter runs out.
		p.Trial, p.BootCount, p.RolledBack = false, 0, true
	default:
		other := p.Running.Other()
		// The caller names the operation (the engine's "rollback:"):
		// these errors say only what stands in its way.
		si, err := pl.check(other, p.SecurityCounter)
		if err != nil {
			return err
		}
		si = p.reject(other, si)
		if !si.bootable() {
			return hal.Errorf(hal.CodeNoImage, "no image to return to: %v", si.err)
		}
		p.Active, p.Confirmed, p.RolledBack = other, true, true
	}
	if err := pl.s.setParams(p); err != nil {
		return fmt.Errorf("record the rollback: %w", err)
	}
	return nil
}

// Get returns the value stored under key.
func (pl *Platform) Get(ctx context.Context, key string) ([]byte, bool, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return nil, false, err
	}
	v, ok := pl.s.get(key)
	return v, ok, nil
}

// Set stores value under key in the params partition; a nil value deletes
// the key. After a power cut at any point Get returns the old value or the
// new one.
func (pl *Platform) Set(ctx context.Context, key string, value []byte) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return err
	}
	if key == keyset.StoreKey {
		if err := pl.checkKeySet(value); err != nil {
			return err
		}
		// The verifications cached were made with the keys before.
		defer pl.cache.reset()
	}
	if err := pl.s.set(key, value); err != nil {
		return fmt.Errorf("kv set %q: %w", key, err)
	}
	return nil
}

// Reboot is a power-on of the simulated device: the bootloader reads the
// flash afresh, acts on the boot parameters and boots an image.
func (pl *Platform) Reboot(ctx context.Context) (hal.RebootResult, error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if err := pl.ready(ctx); err != nil {
		return hal.RebootResult{}, err
	}
	// A power-on: the bootloader keeps nothing from before the reset and
	// verifies from the flash every slot it acts on.
	pl.cache.reset()
	pl.trl = trailerCache{}
	if err := pl.s.load(); err != nil {
		return hal.RebootResult{}, err
	}
	return runBoot(pl.dev, pl.b, pl.s, pl.opts)
}

var (
	_ hal.Platform   = (*Platform)(nil)
	_ hal.KV         = (*Platform)(nil)
	_ hal.Rebooter   = (*Platform)(nil)
	_ hal.SlotReader = (*Platform)(nil)
	// What core/hal's server looks for to serve reads without a copy.
	_ interface {
		ReadInto(ctx context.Context, off uint64, p []byte) error
	} = (*Platform)(nil)
)
