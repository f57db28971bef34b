package plugin_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/otaport/otaport/core/flash"
	"github.com/otaport/otaport/core/hal"
	"github.com/otaport/otaport/core/hal/plugin"
)

// Magic chunks make the test plugin misbehave on request.
var (
	magicCrash = []byte("CRASH!!!")
	magicHang  = []byte("HANG!!!!")
)

// Magic read lengths do the same for Read, which carries no data to the
// port.
const (
	readCrashLen = 0xC4A5
	readHangLen  = 0x4A96
)

// testLayout is a small dual-bank board: 64 KiB sectors, 8-byte program
// unit, an 8 MiB update slot (room for the benchmark's 1 MiB chunks).
func testLayout() hal.Layout {
	return hal.Layout{
		Board:  "test-board",
		Vendor: "otaport",
		SoC:    "emulated",
		Scheme: hal.DualBank,
		// Not otaport's own: the bootloader crosses the wire too.
		Bootloader: hal.Bootloader{Name: hal.BootloaderMCUboot, Mode: hal.ModeDirectXIP},
		Flash: hal.FlashGeometry{
			Size:       18 << 20,
			Sectors:    []hal.SectorRun{{Count: 288, Size: 64 << 10}},
			WriteAlign: 8,
			EraseValue: 0xFF,
		},
		Partitions: []hal.Partition{
			{Name: hal.PartBootloader, Offset: 0, Size: 1 << 20},
			{Name: hal.PartParams, Offset: 1 << 20, Size: 1 << 20},
			{Name: hal.PartApp, Offset: 2 << 20, Size: 8 << 20},
			{Name: hal.PartOTA, Offset: 10 << 20, Size: 8 << 20},
		},
		Signature:    "ed25519",
		BootAttempts: 1,
	}
}

// testPlatform is a minimal port over the flash emulator: enough of the
// contract to carry every call and error across the boundary. It is not
// a bootloader (core/boot is); SetBoot and Reboot only record.
type testPlatform struct {
	layout hal.Layout
	slot   hal.Partition
	dev    *flash.Emulator
	logger *slog.Logger

	mu   sync.Mutex
	boot hal.BootRequest
}

func newTestPlatform(strict bool, logger *slog.Logger) (*testPlatform, error) {
	l := testLayout()
	dev, err := flash.NewMemoryWith(l.Flash, flash.Options{Strict: strict})
	if err != nil {
		return nil, err
	}
	slot, _ := l.Partition(hal.PartOTA)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &testPlatform{layout: l, slot: slot, dev: dev, logger: logger}, nil
}

func (p *testPlatform) Describe(context.Context) (hal.Info, error) {
	p.logger.Info("describe", "board", p.layout.Board)
	p.mu.Lock()
	defer p.mu.Unlock()
	return hal.Info{
		Layout: p.layout,
		Boot: hal.BootState{
			Slots: []hal.SlotState{
				{Name: hal.PartApp, Version: "1.0.0+0", Bootable: true, Active: true, Confirmed: true},
				{Name: hal.PartOTA, Pending: p.boot.Mode == hal.BootTest},
			},
			BootCount:       2,
			SecurityCounter: 7,
		},
		// A claim the server must correct: this platform is built without
		// KV and Reboot in the minimal variant.
		Capabilities: []string{plugin.CapKV, "extra"},
	}, nil
}

func (p *testPlatform) Init(_ context.Context, req hal.InitRequest) error {
	if req.Size == 0 || req.Size > p.slot.Size {
		return hal.Errorf(hal.CodeInvalid, "init: image size %d does not fit the %d bytes of %s", req.Size, p.slot.Size, p.slot.Name)
	}
	if req.Resume {
		return nil
	}
	sector := p.layout.Flash.Sectors[0].Size
	n := (req.Size + sector - 1) / sector * sector
	if err := p.dev.Erase(int64(p.slot.Offset), int64(n)); err != nil {
		return fmt.Errorf("init %s: %w", p.slot.Name, err)
	}
	return nil
}

func (p *testPlatform) Write(_ context.Context, off uint64, data []byte) error {
	switch {
	case bytes.HasPrefix(data, magicCrash):
		// Straight to fd 2, as a panic would: os.Stderr is go-plugin's
		// stdio stream while serving, and os.Exit would not wait for it.
		fmt.Fprintln(os.NewFile(2, "stderr"), "test plugin: crashing on request")
		os.Exit(3)
	case bytes.HasPrefix(data, magicHang):
		time.Sleep(time.Hour) // ignores ctx on purpose: a hung port
	}
	align := uint64(p.layout.Flash.WriteAlign)
	if off%align != 0 {
		return hal.Errorf(hal.CodeMisaligned, "write %s at 0x%x: offset is not a multiple of %d", p.slot.Name, off, align)
	}
	if off > p.slot.Size || uint64(len(data)) > p.slot.Size-off {
		return hal.Errorf(hal.CodeOutOfBounds, "write %s at 0x%x: %d bytes run past its end 0x%x", p.slot.Name, off, len(data), p.slot.Size)
	}
	if r := uint64(len(data)) % align; r != 0 {
		// The short final chunk, padded with the erase value.
		pad := bytes.Repeat([]byte{p.layout.Flash.EraseValue}, int(align-r))
		data = append(slices.Clip(data), pad...)
	}
	if err := p.dev.Program(int64(p.slot.Offset+off), data); err != nil {
		return fmt.Errorf("write %s at 0x%x: %w", p.slot.Name, off, err)
	}
	return nil
}

func (p *testPlatform) Read(_ context.Context, off uint64, n int) ([]byte, error) {
	switch n {
	case readCrashLen:
		fmt.Fprintln(os.NewFile(2, "stderr"), "test plugin: crashing on request")
		os.Exit(3)
	case readHangLen:
		time.Sleep(time.Hour) // ignores ctx on purpose: a hung port
	}
	if n < 0 || off > p.slot.Size || uint64(n) > p.slot.Size-off {
		return nil, hal.Errorf(hal.CodeOutOfBounds, "read %s at 0x%x: %d bytes run past its end 0x%x", p.slot.Name, off, n, p.slot.Size)
	}
	buf := make([]byte, n)
	if _, err := p.dev.ReadAt(buf, int64(p.slot.Offset+off)); err != nil {
		return nil, fmt.Errorf("read %s at 0x%x: %w", p.slot.Name, off, err)
	}
	return buf, nil
}

func (p *testPlatform) SetBoot(_ context.Context, req hal.BootRequest) error {
	if req.Mode < hal.BootTest || req.Mode > hal.BootConfirm {
		return hal.Errorf(hal.CodeInvalid, "set boot: unknown mode %v", req.Mode)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.boot = req
	return nil
}

func (p *testPlatform) Rollback(context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.boot.Mode == 0 {
		return hal.Errorf(hal.CodeNoImage, "rollback: no previous image to return to")
	}
	p.boot = hal.BootRequest{}
	return nil
}

// fullPlatform adds the optional KV and Rebooter to testPlatform.
type fullPlatform struct {
	*testPlatform
	kvMu sync.Mutex
	kv   map[string][]byte
}

func newFullPlatform(strict bool, logger *slog.Logger) (*fullPlatform, error) {
	p, err := newTestPlatform(strict, logger)
	if err != nil {
		return nil, err
	}
	// "pid" lets a test find the plugin process.
	return &fullPlatform{testPlatform: p, kv: map[string][]byte{"pid": fmt.Appendf(nil, "%d", os.Getpid())}}, nil
}

func (p *fullPlatform) Get(_ context.Context, key string) ([]byte, bool, error) {
	p.kvMu.Lock()
	defer p.kvMu.Unlock()
	v, ok := p.kv[key]
	return slices.Clone(v), ok, nil
}

func (p *fullPlatform) Set(_ context.Context, key string, value []byte) error {
	if key == "" {
		return hal.Errorf(hal.CodeInvalid, "kv set: empty key")
	}
	p.kvMu.Lock()
	defer p.kvMu.Unlock()
	if value == nil {
		delete(p.kv, key)
		return nil
	}
	p.kv[key] = slices.Clone(value)
	return nil
}

func (p *fullPlatform) Reboot(context.Context) (hal.RebootResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.boot.Mode == hal.BootTest {
		return hal.RebootResult{Slot: hal.PartOTA, Version: "1.1.0+0", Action: "trial"}, nil
	}
	return hal.RebootResult{Slot: hal.PartApp, Version: "1.0.0+0", Action: "none", Detail: fmt.Sprintf("%d keys", len(slices.Collect(maps.Keys(p.kv))))}, nil
}

var (
	_ hal.Platform = (*testPlatform)(nil)
	_ hal.KV       = (*fullPlatform)(nil)
	_ hal.Rebooter = (*fullPlatform)(nil)
)
