// Package cport is otaport's C port (ports/c/ota_port.c) on the host: the
// same C a device links, compiled with cgo for every board of the catalog
// (each board's generated ota_board.h, in zz_board_*.c), as a hal.Platform,
// hal.KV and hal.Rebooter over a Go flash.Device. Every flash operation of
// the C code goes through that device, so core/flash's power-cut injector
// cuts the C port where it cuts the Go port; the image check and the key
// set's signatures are core/boot's (boot.CheckSlot, boot.CheckKeySet), as
// on a device they are the bootloader's; Describe and Reboot are core/boot's
// simulated bootloader reading what the C code wrote.
//
// It is served as a plugin by cmd/otaport-c (bin/otaport-<board>-c) and
// linked in-process by the conformance, differential and power-cut tests.
package cport

/*
#cgo CFLAGS: -DOTA_PORT_NO_HAL -I${SRCDIR}/../c
#include <stdlib.h>
#include "ota_hal_plat.h"

extern const ota_flash_ops_t otaport_host_ops;
extern const ota_board_t *const otaport_boards[];
extern const unsigned otaport_board_count;

static const ota_board_t *otaport_board(unsigned i) { return otaport_boards[i]; }
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/cgo"
	"slices"
	"sync"
	"unsafe"

	"github.com/otaport/otaport/core/boot"
	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/image"
	"github.com/otaport/otaport/core/keyset"
	"github.com/otaport/otaport/ports/portkit"
)

// Port is the C port of one board over one flash device. Its methods are
// safe for concurrent use: a mutex serialises the calls into C, whose port
// state (ota_port_t) is not shared with any other Port.
//
// A Port that is dropped without Close frees its C memory when the garbage
// collector finds it unreachable: the power-cut sweep abandons thousands.
type Port struct {
	mu sync.Mutex
	*host
	*cmem
	closed bool
}

// host is what the C port's flash driver (shim.go) reaches through the
// handle in flash_ctx. It does not point back at the Port, so that a
// dropped Port can be collected.
type host struct {
	layout hal.Layout
	dev    flash.Device
	opts   boot.Options
	// flashErr is the error of the flash device under the last failing
	// call from C, which the C code reports as OTA_E_FLASH.
	flashErr error
}

// cmem is the C memory of a Port.
type cmem struct {
	c     *C.ota_port_t // with its workspace
	ctx   *C.uintptr_t  // the handle of the host, the C port's flash_ctx
	h     cgo.Handle
	io    *C.uint8_t // the padded-chunk buffer of ota_port_write_io
	ioLen int
}

// Boards returns the names of the boards the C port is built for here, in
// the order of the generated table (zz_boards.c).
func Boards() []string {
	var names []string
	for i := range C.otaport_board_count {
		names = append(names, C.GoString(C.otaport_board(C.unsigned(i)).name))
	}
	return names
}

// board returns the C port's board called name, or nil.
func board(name string) *C.ota_board_t {
	for i := range C.otaport_board_count {
		b := C.otaport_board(C.unsigned(i))
		if C.GoString(b.name) == name {
			return b
		}
	}
	return nil
}

// New opens the C port of board l.Board over dev, which the caller keeps
// (unless opts.CloseDevice). It writes nothing. The board's ota_board.h, as
// compiled in, must describe l: a header older than the layout is refused.
func New(l hal.Layout, dev flash.Device, opts boot.Options) (*Port, error) {
	b := board(l.Board)
	if b == nil {
		return nil, fmt.Errorf("c port: board %q is not compiled in (boards: %v): regenerate ports/cport", l.Board, Boards())
	}
	if err := sameBoard(b, l); err != nil {
		return nil, fmt.Errorf("c port: board %q: %w", l.Board, err)
	}
	if g := dev.Geometry(); g.Size != l.Flash.Size || g.WriteAlign != l.Flash.WriteAlign || g.EraseValue != l.Flash.EraseValue {
		return nil, fmt.Errorf("c port: board %q: the flash device (size %d, write_align %d) is not the board's (size %d, write_align %d)",
			l.Board, g.Size, g.WriteAlign, l.Flash.Size, l.Flash.WriteAlign)
	}
	p, _ := l.Partition(hal.PartParams)
	ram := C.size_t(3 * (p.Size/2 + 1))
	pt := &Port{host: &host{layout: l, dev: dev, opts: opts}, cmem: &cmem{}}
	pt.c = (*C.ota_port_t)(C.calloc(1, C.size_t(unsafe.Sizeof(C.ota_port_t{}))))
	pt.ctx = (*C.uintptr_t)(C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0)))))
	pt.h = cgo.NewHandle(pt.host)
	*pt.ctx = C.uintptr_t(pt.h)
	pt.c.board = b
	pt.c.ops = &C.otaport_host_ops
	pt.c.flash_ctx = unsafe.Pointer(pt.ctx)
	pt.c.ram = (*C.uint8_t)(C.malloc(ram))
	pt.c.ram_len = C.uint32_t(ram)
	if err := pt.call(func() C.int { return C.ota_port_open(pt.c) }); err != nil {
		pt.free()
		return nil, fmt.Errorf("c port: board %q: %w", l.Board, err)
	}
	runtime.AddCleanup(pt, (*cmem).free, pt.cmem)
	return pt, nil
}

// sameBoard compares the C port's board with layout l.
func sameBoard(b *C.ota_board_t, l hal.Layout) error {
	part := func(name string) hal.Partition { p, _ := l.Partition(name); return p }
	var runs []hal.SectorRun
	for _, r := range unsafe.Slice(b.runs, int(b.run_count)) {
		runs = append(runs, hal.SectorRun{Count: int(r.count), Size: uint64(r.size)})
	}
	scheme := map[hal.Scheme]C.int{hal.SingleBank: C.OTA_SINGLE_BANK, hal.DualBank: C.OTA_DUAL_BANK, hal.Swap: C.OTA_SWAP}[l.Scheme]
	got := []uint64{uint64(b.flash_size), uint64(b.write_align), uint64(b.erase_value),
		uint64(b.params_off), uint64(b.params_size), uint64(b.app_off), uint64(b.app_size), uint64(b.ota_off), uint64(b.ota_size),
		uint64(b.scheme), uint64(b.boot_attempts), uint64(b.otadata_off)}
	want := []uint64{l.Flash.Size, uint64(l.Flash.WriteAlign), uint64(l.Flash.EraseValue),
		part(hal.PartParams).Offset, part(hal.PartParams).Size, part(hal.PartApp).Offset, part(hal.PartApp).Size,
		part(hal.PartOTA).Offset, part(hal.PartOTA).Size, uint64(scheme), uint64(l.BootAttempts), otadataOff(l)}
	if !slices.Equal(got, want) || !slices.Equal(l.Flash.Map().Normal(), (hal.FlashGeometry{Size: l.Flash.Size, Sectors: runs}).Map().Normal()) {
		return fmt.Errorf("the compiled ota_board.h (%v, sectors %v) differs from the layout (%v, sectors %v): run make generate", got, runs, want, l.Flash.Sectors)
	}
	return nil
}

// otadataOff is where an esp-idf board's otadata is, 0 on the others, as
// the C port's board has it.
func otadataOff(l hal.Layout) uint64 {
	if l.Bootloader.Name != hal.BootloaderESPIDF {
		return 0
	}
	p, _ := l.Partition(hal.PartOtadata)
	return p.Offset
}

// free releases the C memory and the handle, once.
func (m *cmem) free() {
	if m.c == nil {
		return
	}
	C.free(unsafe.Pointer(m.c.ram))
	C.free(unsafe.Pointer(m.c))
	C.free(unsafe.Pointer(m.ctx))
	C.free(unsafe.Pointer(m.io))
	m.h.Delete()
	m.c, m.ctx, m.io = nil, nil, nil
}

// Close ends the port; with Options.CloseDevice it closes the device too.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.free()
	if c, ok := p.dev.(io.Closer); ok && p.opts.CloseDevice {
		return c.Close()
	}
	return nil
}

// codes maps the C port's results to hal codes.
var codes = map[C.int]hal.Code{
	C.OTA_E_OUT_OF_BOUNDS: hal.CodeOutOfBounds, C.OTA_E_MISALIGNED: hal.CodeMisaligned,
	C.OTA_E_NOT_ERASED: hal.CodeNotErased, C.OTA_E_FLASH: hal.CodeFlash, C.OTA_E_UNSUPPORTED: hal.CodeUnsupported,
	C.OTA_E_INVALID: hal.CodeInvalid, C.OTA_E_BUSY: hal.CodeBusy, C.OTA_E_NO_IMAGE: hal.CodeNoImage,
}

// call runs f, a call into C, and turns its result into an error: the C
// port's message with its hal code, or for a flash failure wrapping the
// device's error, as core/boot's flashErr does.
func (p *Port) call(f func() C.int) error {
	p.flashErr = nil
	r := f()
	// The cleanup of a dropped Port frees the C memory f used: not
	// before f has returned.
	defer runtime.KeepAlive(p)
	if r == C.OTA_OK {
		return nil
	}
	msg := C.GoString(&p.c.err[0])
	if r == C.OTA_E_FLASH && p.flashErr != nil {
		if hal.CodeOf(p.flashErr) != hal.CodeUnknown {
			return fmt.Errorf("%s: %w", msg, p.flashErr)
		}
		return fmt.Errorf("%s: %w (%w)", msg, p.flashErr, hal.ErrFlash)
	}
	code, ok := codes[r]
	if !ok {
		code = hal.CodeUnknown
	}
	return hal.Errorf(code, "%s", msg)
}

// note keeps a flash error for call and returns the C result of err.
func (p *host) note(err error) C.int {
	if err != nil && !errors.Is(err, io.EOF) {
		p.flashErr = err
		return -1
	}
	return 0
}

// ready checks, under the lock, that the port can serve a call, and reads
// the params partition again after a failed write, as Platform does.
func (p *Port) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if p.closed {
		return hal.Errorf(hal.CodeInvalid, "board %q: platform is closed", p.layout.Board)
	}
	if p.c.stale != 0 {
		return p.call(func() C.int { return C.ota_port_reload(p.c) })
	}
	return nil
}

// Describe returns the layout and the boot state, which core/boot's
// bootloader reads from the flash the C code wrote (boot.Inspect).
func (p *Port) Describe(ctx context.Context) (hal.Info, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return hal.Info{}, err
	}
	st, _, err := boot.Inspect(p.dev, p.layout, p.opts)
	if err != nil {
		return hal.Info{}, fmt.Errorf("describe: %w", err)
	}
	l := p.layout
	l.Flash = p.dev.Geometry()
	l.BootAttempts = max(l.BootAttempts, 1)
	return hal.Info{Layout: l, Boot: st, Capabilities: []string{"kv", hal.CapReadSlot, "reboot"}}, nil
}

// Init prepares the update slot for an image of req.Size bytes.
func (p *Port) Init(ctx context.Context, req hal.InitRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return err
	}
	return p.call(func() C.int { return C.ota_port_init(p.c, C.uint64_t(req.Size), cBool(req.Resume)) })
}

// Write programs data at off in the update slot.
func (p *Port) Write(ctx context.Context, off uint64, data []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return err
	}
	if uint64(len(data)) > 1<<32-1 {
		return hal.Errorf(hal.CodeOutOfBounds, "write at 0x%x: %d bytes: the C port takes at most 4 GiB a call", off, len(data))
	}
	// The buffer a short last unit is padded in, as large as the chunk:
	// the padded run is then one Program, as in the Go port.
	if need := len(data) + int(p.layout.Flash.WriteAlign); len(data)%int(p.layout.Flash.WriteAlign) != 0 && need > p.ioLen {
		C.free(unsafe.Pointer(p.io))
		p.io, p.ioLen = (*C.uint8_t)(C.malloc(C.size_t(need))), need
	}
	return p.call(func() C.int {
		return C.ota_port_write_io(p.c, C.uint64_t(off), cbytes(data), C.uint32_t(len(data)), p.io, C.uint32_t(p.ioLen))
	})
}

// cbytes is the address of b for C, nil when b is empty. C reads it only
// during the call.
func cbytes(b []byte) *C.uint8_t {
	if len(b) == 0 {
		return nil
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0]))
}

// Read reads n bytes at off in the update slot.
func (p *Port) Read(ctx context.Context, off uint64, n int) ([]byte, error) {
	if n < 0 {
		return nil, hal.Errorf(hal.CodeInvalid, "read at 0x%x: negative length %d", off, n)
	}
	buf := make([]byte, n)
	if err := p.ReadInto(ctx, off, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadInto reads len(b) bytes at off in the update slot into b.
func (p *Port) ReadInto(ctx context.Context, off uint64, b []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return err
	}
	if uint64(len(b)) > 1<<32-1 {
		return hal.Errorf(hal.CodeOutOfBounds, "read at 0x%x: %d bytes: the C port takes at most 4 GiB a call", off, len(b))
	}
	return p.call(func() C.int { return C.ota_port_read(p.c, C.uint64_t(off), cbytes(b), C.uint32_t(len(b))) })
}

// ReadSlot reads n bytes at off in the image slot called slot (app or ota):
// the C code's ota_port_read_slot.
func (p *Port) ReadSlot(ctx context.Context, slot string, off uint64, n int) ([]byte, error) {
	ids := map[string]C.int{hal.PartApp: C.OTA_SLOT_APP, hal.PartOTA: C.OTA_SLOT_OTA}
	id, ok := ids[slot]
	if !ok {
		return nil, hal.Errorf(hal.CodeInvalid, "read slot %q: not an image slot: give %s or %s", slot, hal.PartApp, hal.PartOTA)
	}
	if n < 0 || uint64(n) > 1<<32-1 {
		return nil, hal.Errorf(hal.CodeOutOfBounds, "read %s at 0x%x: %d bytes: the C port takes 0 to 4 GiB a call", slot, off, n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if err := p.call(func() C.int { return C.ota_port_read_slot(p.c, id, C.uint64_t(off), cbytes(buf), C.uint32_t(n)) }); err != nil {
		return nil, err
	}
	return buf, nil
}

// SetBoot records what the bootloader is to do at the next power-on.
func (p *Port) SetBoot(ctx context.Context, req hal.BootRequest) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return err
	}
	mode := C.int(req.Mode)
	if req.Mode < hal.BootTest || req.Mode > hal.BootConfirm {
		mode = 0 // refused by the C port, whatever the int
	}
	return p.call(func() C.int { return C.ota_port_set_boot(p.c, mode, C.uint64_t(req.Size)) })
}

// Rollback returns to the previous image at the next power-on.
func (p *Port) Rollback(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return err
	}
	return p.call(func() C.int { return C.ota_port_rollback(p.c) })
}

// Get returns the value stored under key.
func (p *Port) Get(ctx context.Context, key string) ([]byte, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return nil, false, err
	}
	if len(key) > C.OTA_MAX_KEY {
		return nil, false, nil
	}
	k := []byte(key)
	var val *C.uint8_t
	var n C.uint32_t
	var found C.int
	err := p.call(func() C.int {
		found = C.ota_port_kv_get(p.c, (*C.char)(unsafe.Pointer(cbytes(k))), C.uint32_t(len(k)), &val, &n)
		return min(found, 0)
	})
	if err != nil || found == 0 {
		return nil, false, err
	}
	return C.GoBytes(unsafe.Pointer(val), C.int(n)), true, nil
}

// Set stores value under key; a nil value deletes the key. A key set is
// checked first as Platform.Set checks it.
func (p *Port) Set(ctx context.Context, key string, value []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return err
	}
	if key == keyset.StoreKey {
		if err := boot.CheckKeySet(p.dev, p.layout, value, p.opts); err != nil {
			return err
		}
	}
	k := []byte(key)
	val := cbytes(value)
	if value != nil && len(value) == 0 {
		val = (*C.uint8_t)(unsafe.Pointer(p.c.rec)) // any address: an empty value, not a delete
	}
	err := p.call(func() C.int {
		return C.ota_port_kv_set(p.c, (*C.char)(unsafe.Pointer(cbytes(k))), C.uint32_t(len(k)), val, C.uint32_t(len(value)))
	})
	if err != nil {
		return fmt.Errorf("kv set %q: %w", key, err)
	}
	return nil
}

// Reboot is a power-on: core/boot's simulated bootloader acts on what the C
// port wrote and boots an image; the C port then reads params afresh.
func (p *Port) Reboot(ctx context.Context) (hal.RebootResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.ready(ctx); err != nil {
		return hal.RebootResult{}, err
	}
	res, err := boot.Boot(p.dev, p.layout, p.opts)
	p.c.stale = 1
	if rerr := p.call(func() C.int { return C.ota_port_reload(p.c) }); rerr != nil && err == nil {
		err = rerr
	}
	return res, err
}

var (
	_ hal.Platform   = (*Port)(nil)
	_ hal.KV         = (*Port)(nil)
	_ hal.Rebooter   = (*Port)(nil)
	_ hal.SlotReader = (*Port)(nil)
	_ interface {
		ReadInto(ctx context.Context, off uint64, p []byte) error
	} = (*Port)(nil)
)

// Open opens the flash of board l as portkit.Open does (the emulator over
// cfg.Flash, created erased when missing) and returns the C port over it,
// which owns the device: closing it closes the flash. The bootloader checks
// images with cfg.Keys and the keys of cfg.KeyFiles.
func Open(l hal.Layout, cfg portkit.Config) (*Port, error) {
	opts := boot.Options{Keys: slices.Clone(cfg.Keys), CloseDevice: true}
	if cfg.Logger != nil {
		opts.Logger = cfg.Logger.With("board", l.Board, "port", "c")
	}
	keys, err := image.ReadPublicKeys(cfg.KeyFiles)
	if err != nil {
		return nil, fmt.Errorf("c port %s: %s: %w", l.Board, portkit.EnvBootKey, err)
	}
	opts.Keys = append(opts.Keys, keys...)
	dev, err := portkit.EmulatedFlash(l, cfg.Flash)
	if err != nil {
		return nil, fmt.Errorf("open %s flash: %w", l.Board, err)
	}
	p, err := New(l, dev, opts)
	if err != nil {
		if c, ok := dev.(io.Closer); ok {
			c.Close()
		}
		return nil, err
	}
	return p, nil
}
